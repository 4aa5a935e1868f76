"""Activities: everything a journey does to the outside world (database, the channels' providers,
CRM).

``build_activities`` wires them to one set of settings; the worker registers the result.

Every activity is declared ``no_thread_cancel_exception=True``. Without it, a worker that shuts
down (a deploy, a restart) or an activity cancelled has the SDK raise an exception inside the
activity's thread at whatever line it is on: inside a database transaction, between taking the
process's SQLite write lock and noting it (relance/domain/db.py), or in the connection pool. The
lock or the connection is then never given back, and every other lead's journey waits behind
it. The activities are short and finish what they started (the send ledger makes a retry safe);
a broadcast batch heartbeats between its parts. tests/test_activity_cancel.py holds every one to it.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Engine

from activities import (  # noqa: F401  (the channels' providers register)
    browse,  # noqa: F401  (registers the "category" message context: the purchase exclusion)
    email,
    sms,
    webhook,
)
from activities.broadcasts import BroadcastActivities
from activities.channels import channel_activities
from activities.commerce import CommerceActivities
from activities.definitions import DefinitionActivities
from activities.enrollment import EnrollmentActivities
from activities.events import EventActivities  # also registers the "event" message context loaders
from activities.leads import LeadActivities
from activities.lists import ListActivities
from activities.reengagement import ReEngagementActivities
from activities.runs import JourneyRunActivities
from activities.sales import SalesActivities
from activities.scoring import ScoringActivities
from activities.triggers import TriggerActivities
from relance.domain.rendering import Renderer
from relance.domain.settings import Settings
from relance.domain.tokens import TokenSigner


def build_activities(settings: Settings, engine: Engine) -> list[Callable]:
    signer = TokenSigner(
        settings.secret_key,
        max_age_seconds=settings.tracking_token_max_age_days * 86400,
        max_age_by_kind={"confirm": settings.confirm_link_max_age_seconds()},
    )
    renderer = Renderer(signer, settings.public_base_url)
    leads = LeadActivities(engine, settings.send_window())
    scoring = ScoringActivities(settings, engine)
    commerce = CommerceActivities(engine, loyal_list=settings.loyal_customers_list)
    events = EventActivities(engine)
    reengagement = ReEngagementActivities(settings, engine)
    sales = SalesActivities(settings, engine, renderer)
    lists = ListActivities(engine, settings)
    enrollment = EnrollmentActivities(engine, settings)
    definitions = DefinitionActivities(settings, engine)
    runs = JourneyRunActivities(engine)
    triggers = TriggerActivities(settings, engine)
    sends = channel_activities(settings, engine, renderer)
    broadcasts = BroadcastActivities(settings, engine, sends)
    return [
        leads.check_consent,
        leads.get_lead_facts,
        leads.get_send_profile,
        leads.read_lead,
        *sends,
        scoring.add_score,
        scoring.decay_scores_page,
        commerce.issue_promo_code,
        commerce.record_purchase,
        events.get_event_schedule,
        events.find_next_event,
        reengagement.enroll_inactive_page,
        reengagement.record_reengagement,
        reengagement.sunset_lead,
        reengagement.record_premium_offer,
        sales.create_sales_task,
        sales.escalate_sales_task,
        sales.notify_sales_task,
        lists.change_list_membership,
        enrollment.record_enrollment_refusal,
        enrollment.check_enrollment,
        enrollment.redirect_lead,
        definitions.evaluate_condition,
        definitions.call_journey_webhook,
        runs.record_journey_run,
        triggers.sweep_triggers,
        broadcasts.freeze_audience,
        broadcasts.send_broadcast_batch,
        broadcasts.record_broadcast,
        definitions.evaluate_switch,
        definitions.read_lead_date,
        definitions.set_lead_attributes,
        definitions.raise_lead_stage,
    ]
