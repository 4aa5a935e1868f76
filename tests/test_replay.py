"""Replay saved journey histories against today's code: a change that would break journeys
already running in production (non-determinism) fails here, before it ships."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from relance.contracts import search_attributes as sa
from relance.contracts.commerce import PromoRequest, PurchaseRef, issue_promo_code, record_purchase
from relance.contracts.scoring import ScoreChange, add_score
from relance.contracts.sending import SendRequest, send_email
from relance.dev.seeding import TEST_CONVERTER
from worker import ALL_JOURNEYS, SANDBOX_PASSTHROUGH, workflow_runner
from workflows.purchase import PurchaseInput, PurchaseResult
from workflows.recording import JourneyRuns
from workflows.steps import ACTIVITY_OPTIONS

ROOT = Path(__file__).resolve().parent.parent
FOLDER = Path(__file__).parent / "histories"
HISTORIES = sorted(FOLDER.glob("*.json"))

# Every saved history, by the workflow it replays: one per journey and kind of ending at least.
# A history lost (or a journey without one) fails here; a new recording is added here by name.
# ``*_fewer_actions``: paths as journeys run them since the ``fewer-actions`` patch
# (tests/histories/record_fewer_actions.py); the others, as journeys started before it ran.
EXPECTED = {
    "broadcast_first_run": "BroadcastWorkflow",
    "broadcast_last_run": "BroadcastWorkflow",
    "browse_no_interest": "BrowseAbandonmentJourney",
    "browse_recommendation_sent": "BrowseAbandonmentJourney",
    "browse_recommendation_sent_fewer_actions": "BrowseAbandonmentJourney",
    "cart_emptied": "AbandonedCartJourney",
    "cart_purchased": "AbandonedCartJourney",
    "cart_three_reminders": "AbandonedCartJourney",
    "cart_three_reminders_fewer_actions": "AbandonedCartJourney",
    "defined_birthday_reminded": "DefinedJourney",
    "defined_hand_offs_attended": "DefinedJourney",
    "defined_hand_offs_downloaded": "DefinedJourney",
    "defined_redirected": "DefinedJourney",
    "defined_renewal_switch_set_until_date": "DefinedJourney",
    "defined_stage_raised": "DefinedJourney",
    "defined_webinar_clicked": "DefinedJourney",
    "defined_webinar_clicked_fewer_actions": "DefinedJourney",
    "defined_webinar_no_click": "DefinedJourney",
    "defined_webinar_run_entry_in_headers": "DefinedJourney",
    "defined_webinar_run_recorded": "DefinedJourney",
    "event_cancelled": "EventReminderJourney",
    "event_every_step": "EventReminderJourney",
    "event_rescheduled_attended": "EventReminderJourney",
    "event_rescheduled_attended_fewer_actions": "EventReminderJourney",
    "nurturing_downloaded_task_escalated": "LeadNurturingJourney",
    "nurturing_downloaded_task_escalated_fewer_actions": "LeadNurturingJourney",
    "nurturing_gate_not_met": "LeadNurturingJourney",
    "nurturing_meeting_booked": "LeadNurturingJourney",
    "nurturing_reenrolled_excluded": "LeadNurturingJourney",
    "premium_offer_sent": "PremiumOfferJourney",
    "premium_offer_sent_fewer_actions": "PremiumOfferJourney",
    "purchase_first_thank_you": "PurchaseFollowUp",
    "purchase_first_thank_you_fewer_actions": "PurchaseFollowUp",
    "purchase_repeat_loyal_list": "PurchaseFollowUp",
    "reengage_clicked_after_email_2": "ReEngagementJourney",
    "reengage_clicked_after_email_2_fewer_actions": "ReEngagementJourney",
    "reengage_sunset_suppressed": "ReEngagementJourney",
    "reengagement_sweep_first_run": "ReEngagementSweep",
    "reengagement_sweep_last_run": "ReEngagementSweep",
    "scenario_newsletter_redirected": "ScenarioJourney",
    "scenario_newsletter_redirected_checked": "ScenarioJourney",
    "scenario_white_paper_refusal_recorded": "ScenarioJourney",
    "scenario_white_paper_refused": "ScenarioJourney",
    "score_decay_first_run": "ScoreDecaySweep",
    "score_decay_last_run": "ScoreDecaySweep",
    "trigger_sweep": "TriggerSweep",
    "welcome_clicked": "WelcomeJourney",
    "welcome_converted_by_a_purchase": "WelcomeJourney",
    "welcome_double_opt_in_confirmed": "WelcomeJourney",
    "welcome_double_opt_in_not_confirmed": "WelcomeJourney",
    "welcome_double_opt_in_opened_clicked": "WelcomeJourney",
    "welcome_double_opt_in_opened_clicked_fewer_actions": "WelcomeJourney",
    "welcome_no_consent": "WelcomeJourney",
    "welcome_relanced_by_email_no_reaction": "WelcomeJourney",
    "welcome_relanced_by_sms": "WelcomeJourney",
    "welcome_relanced_by_sms_fewer_actions": "WelcomeJourney",
    "welcome_send_window_capped": "WelcomeJourney",
    "welcome_send_window_capped_fewer_actions": "WelcomeJourney",
    "welcome_send_window_first": "WelcomeJourney",
    "welcome_unsubscribed": "WelcomeJourney",
}


def workflow_type(path: Path) -> str:
    started = json.loads(path.read_text())["events"][0]
    return started["workflowExecutionStartedEventAttributes"]["workflowType"]["name"]


def test_the_saved_histories_are_exactly_the_expected_ones_for_their_workflows():
    assert {p.stem: workflow_type(p) for p in HISTORIES} == EXPECTED, (
        "see tests/histories/record*.py"
    )


def test_every_journey_the_worker_runs_has_a_saved_history():
    names = {
        workflow._Definition.must_from_class(journey).name for journey in ALL_JOURNEYS
    }  # as registered
    saved = {workflow_type(p) for p in HISTORIES}
    assert names == saved, (
        f"no saved history: {sorted(names - saved)}; not a journey: {sorted(saved - names)}"
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_saved_history_replays_with_todays_code(name: str):
    """With the worker's own converter (payload encryption on): the saved histories are plain,
    like those of journeys started before encryption was turned on, which must keep running."""
    path = FOLDER / f"{name}.json"
    history = WorkflowHistory.from_json(name, path.read_text())
    await Replayer(
        workflows=ALL_JOURNEYS,
        workflow_runner=workflow_runner(),
        data_converter=TEST_CONVERTER,
        interceptors=[JourneyRuns()],  # the worker's: journeys record their runs
    ).replay_workflow(history)


def test_what_the_shared_journey_modules_load_is_shared_with_them():
    """The worker shares some modules with every journey's sandbox (worker.SANDBOX_PASSTHROUGH)
    instead of running them again in each. What those import of the project must be shared too:
    the converter reads a dataclass's field types from its module as the sandbox sees it, and a
    module only the shared ones imported is not there. Sharing the journeys' frame without the
    contracts failed the premium offer's replay so ("Failed decoding arguments": the send
    result's ``datetime`` undefined), the journey module itself importing nothing of the send."""
    code = (
        "import importlib, json, sys\n"
        "before = set(sys.modules)\n"
        f"for name in {list(SANDBOX_PASSTHROUGH)!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    ours = [m for m in json.loads(run.stdout) if m.split(".")[0] in ("relance", "workflows")]
    assert ours, "the shared modules load nothing of the project?"
    shared = [
        m
        for m in ours
        if any(m == p or m.startswith(p + ".") for p in SANDBOX_PASSTHROUGH)
        or any(p.startswith(m + ".") for p in SANDBOX_PASSTHROUGH)  # a parent package: the
        # sandbox imports it itself (it holds no dataclass)
    ]
    assert ours == shared


# The replay test can fail: today's PurchaseFollowUp, copied, replays its saved history; the same
# copy with one command changed (the purchase no longer scored, no ``workflow.patched``) does not.


async def follow_up(input: PurchaseInput, *, scores_the_purchase: bool) -> PurchaseResult:
    """workflows/purchase.py's PurchaseFollowUp.run, command for command."""
    facts = await workflow.execute_activity(
        record_purchase, PurchaseRef(input.order_id), **ACTIVITY_OPTIONS
    )
    workflow.upsert_search_attributes([sa.LEAD_ID.value_set(facts.lead_id)])
    score = 0
    if scores_the_purchase:  # the one command the altered copy drops
        score = (
            await workflow.execute_activity(
                add_score,
                ScoreChange(
                    lead_id=facts.lead_id,
                    event="purchase",
                    key=f"purchase:{input.order_id}",
                    reason=f"purchase (order {input.order_id})",
                ),
                **ACTIVITY_OPTIONS,
            )
        ).score
    workflow.upsert_search_attributes([sa.SCORE.value_set(score)])
    if not facts.first_purchase:
        workflow.set_current_details(
            f"Repeat purchase: the lead is on the {facts.added_to_list!r} list"
        )
        return PurchaseResult(facts.lead_id, False, score, None, None, facts.added_to_list)
    code = None
    about = f"order:{input.order_id}"
    if input.first_purchase_percent_off > 0:
        code = await workflow.execute_activity(
            issue_promo_code,
            PromoRequest(
                facts.lead_id,
                f"{workflow.info().workflow_id}:next-order",
                input.first_purchase_percent_off,
            ),
            **ACTIVITY_OPTIONS,
        )
        about += f",promo:{code}"
    sent = await workflow.execute_activity(
        send_email,
        SendRequest(
            lead_id=facts.lead_id,
            workflow_id=workflow.info().workflow_id,
            journey="purchase",
            step="thank_you",
            template="purchase_thank_you",
            about=about,
            over_cap="exempt",
        ),
        summary="email purchase_thank_you",
        **ACTIVITY_OPTIONS,
    )
    workflow.set_current_details(f"First purchase: thank-you {sent.status}, promo code {code}")
    return PurchaseResult(facts.lead_id, True, score, sent.status, code, None)


@workflow.defn(name="PurchaseFollowUp", sandboxed=False)
class PurchaseFollowUpCopy:
    @workflow.run
    async def run(self, input: PurchaseInput) -> PurchaseResult:
        return await follow_up(input, scores_the_purchase=True)


@workflow.defn(name="PurchaseFollowUp", sandboxed=False)
class PurchaseFollowUpNoLongerScoring:
    @workflow.run
    async def run(self, input: PurchaseInput) -> PurchaseResult:
        return await follow_up(input, scores_the_purchase=False)


async def test_a_journey_changed_without_a_patch_fails_its_replay():
    history = WorkflowHistory.from_json(
        "purchase", (FOLDER / "purchase_first_thank_you.json").read_text()
    )
    faithful = Replayer(workflows=[PurchaseFollowUpCopy], data_converter=TEST_CONVERTER)
    await faithful.replay_workflow(history)  # the copy is today's code: it replays

    altered = Replayer(workflows=[PurchaseFollowUpNoLongerScoring], data_converter=TEST_CONVERTER)
    with pytest.raises(workflow.NondeterminismError):
        await altered.replay_workflow(history)


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
def test_histories_hold_no_email_address_or_phone_number(path: Path):
    """Workflow inputs, activity results and signals carry ids only: nothing readable about the
    lead."""
    import base64
    import json
    import re

    def payload_texts(node):
        if isinstance(node, dict):
            if "data" in node and "metadata" in node:
                yield base64.b64decode(node["data"]).decode("utf-8", "replace")
            for value in node.values():
                yield from payload_texts(value)
        elif isinstance(node, list):
            for value in node:
                yield from payload_texts(value)

    texts = list(payload_texts(json.loads(path.read_text())))
    assert texts, "no payloads found: has the history format changed?"
    for text in texts:
        assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", text), (
            f"an email address in a payload: {text}"
        )
        assert not re.search(r"\+\d{8,}", text), f"a phone number in a payload: {text}"
