"""Journeys: one Temporal workflow per marketer's diagram (``welcome.py``, ...).

``signals.py`` and ``search_attributes.py`` are the journeys' contract with the API and the
Temporal UI; they import nothing else, so any layer may use them. The worker's list of
journeys is ``worker.ALL_JOURNEYS``.
"""
