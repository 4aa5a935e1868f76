"""What a journey's result says when it ends: ``GET /leads/{id}/journeys/{journey}`` returns it as
``result``, as the journey wrote it (its JSON). Clients read these names: they stay as they were
while the journeys share one result base (``JourneyResult``: outcome, reason, messages)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest
from temporalio.converter import DataConverter

from workflows.abandoned_cart import CartResult
from workflows.browse import BrowseResult
from workflows.event_reminder import EventReminderResult
from workflows.nurturing import NurturingResult
from workflows.premium import PremiumResult
from workflows.purchase import PurchaseResult
from workflows.reengagement import ReEngagementResult
from workflows.scenario import ScenarioResult
from workflows.steps import JourneyResult, SentMessage
from workflows.welcome import WelcomeOutcome, WelcomeResult

# Each result's JSON keys, as the API has always returned them.
KEYS = {
    WelcomeResult: {"outcome", "reason", "messages", "opened", "clicked", "relanced_by", "score"},
    NurturingResult: {
        "outcome",
        "reason",
        "messages",
        "steps_sent",
        "loops",
        "downloads",
        "score",
        "tasks",
    },
    BrowseResult: {"outcome", "reason", "messages", "category"},
    EventReminderResult: {"outcome", "reason", "messages", "attended"},
    ReEngagementResult: {"outcome", "reason", "messages", "reaction", "score", "rows_deleted"},
    ScenarioResult: {"outcome", "reason", "messages", "chain", "redirected_to"},
    # Not journeys with a reason: the cart's messages are its own, the others report a send.
    CartResult: {"outcome", "reminders_sent", "messages"},
    PremiumResult: {"status", "reason", "message_id"},
    PurchaseResult: {
        "lead_id",
        "first_purchase",
        "score",
        "thank_you",
        "promo_code",
        "added_to_list",
    },
}
WITH_REASON = [WelcomeResult, NurturingResult, BrowseResult, EventReminderResult]
WITH_REASON += [ReEngagementResult, ScenarioResult]


@pytest.mark.parametrize("result", list(KEYS), ids=lambda r: r.__name__)
def test_each_result_keeps_the_names_clients_read(result):
    assert {f.name for f in dataclasses.fields(result)} == KEYS[result]


@pytest.mark.parametrize("result", WITH_REASON, ids=lambda r: r.__name__)
def test_a_journey_that_ends_with_a_reason_returns_a_journey_result(result):
    assert issubclass(result, JourneyResult)


def test_the_json_holds_the_outcome_value_and_the_messages():
    sent = SentMessage(
        "welcome", "email", "welcome_new", "sent", "m1", datetime(2026, 1, 5, tzinfo=UTC)
    )
    result = WelcomeResult(
        WelcomeOutcome.CLICKED,
        "the lead clicked a link",
        opened=True,
        clicked=True,
        score=12,
        relanced_by="sms",
        messages=[sent],
    )
    payload = DataConverter.default.payload_converter.to_payloads([result])[0]
    as_json = json.loads(payload.data)
    assert as_json["outcome"] == "clicked" and as_json["reason"] == "the lead clicked a link"
    assert as_json["relanced_by"] == "sms" and as_json["messages"][0]["template"] == "welcome_new"
    decoded = DataConverter.default.payload_converter.from_payloads([payload], [WelcomeResult])[0]
    assert decoded == result and decoded.outcome is WelcomeOutcome.CLICKED
