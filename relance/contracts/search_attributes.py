"""Custom search attributes, so journeys can be found in the Temporal UI and with ``temporal
workflow list --query 'Journey = "welcome" AND Step = "waiting_for_open"'``."""

from temporalio.common import SearchAttributeKey

JOURNEY = SearchAttributeKey.for_keyword("Journey")
LEAD_ID = SearchAttributeKey.for_keyword("LeadId")
STEP = SearchAttributeKey.for_keyword("Step")
# The lead's score as the journey last saw it (when it read the lead, or scored a click itself):
# a snapshot for finding journeys, not the lead's score. Opens, page views, forms and the daily
# decay are scored in the database without telling the journey; the database (GET /leads/{id},
# and ``score`` in GET /leads/{id}/journeys/{journey}) is authoritative. Keeping it in step
# would take a signal for every score change and a new command in every journey's history.
SCORE = SearchAttributeKey.for_int("Score")

ALL = [JOURNEY, LEAD_ID, STEP, SCORE]
