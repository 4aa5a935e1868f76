"""Journeys: one Temporal workflow per marketer's diagram. ``ALL_JOURNEYS`` is what the worker runs."""

from workflows.welcome import WelcomeJourney

ALL_JOURNEYS = [WelcomeJourney]
