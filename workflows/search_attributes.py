"""Custom search attributes, so journeys can be found in the Temporal UI and with ``temporal
workflow list --query 'Journey = "welcome" AND Step = "waiting_for_open"'``."""

from temporalio.common import SearchAttributeKey

JOURNEY = SearchAttributeKey.for_keyword("Journey")
LEAD_ID = SearchAttributeKey.for_keyword("LeadId")
STEP = SearchAttributeKey.for_keyword("Step")
SCORE = SearchAttributeKey.for_int("Score")

ALL = [JOURNEY, LEAD_ID, STEP, SCORE]
