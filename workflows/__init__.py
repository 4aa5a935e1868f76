"""Journeys: one Temporal workflow per marketer's diagram (``welcome.py``, ...).

``signals.py`` and ``search_attributes.py`` are the journeys' contract with the API and the
Temporal UI; they import nothing else, so any layer may use them. Every journey is declared in
the catalogue (``relance/contracts/catalogue.py``: its workflow, ids, goals, rules, input), from
which the worker registers it (``worker.workflow_classes()``).
"""
