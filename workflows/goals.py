"""Which journeys declare which goals, and how a lead's running journeys are found.

A goal ends every running journey of the lead that declares it (as converted). The goals are
declared in the catalogue (relance/contracts/catalogue.py), with each journey. The journeys are
found by their ids, which are known by construction (``<prefix>-<lead id>``), rather than by a
visibility query on ``LeadId``: visibility is eventually consistent (a journey started a second
ago may be missing from it) and needs an advanced-visibility store; a known id list is exact, and
signalling a closed journey is simply answered "not found".
"""

from __future__ import annotations

from relance.contracts.catalogue import goals_of, journeys_with_goal

__all__ = ["goals_of", "journeys_with_goal"]
