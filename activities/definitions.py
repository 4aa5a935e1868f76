"""What the interpreter of defined journeys asks the worker: whether a condition node's test
holds for the lead, and why (facts about the lead — score, stage, segment, consent, lists,
counts of events — never its address nor its data); which case of a switch holds first; the
date attribute a delay waits until; the custom attributes an update sets; and a webhook node's
call.

The answer comes from the compiler segments use (relance/domain/segment_query.py), asked of the
one lead: a journey's condition and a segment with the same rules never disagree. Attributes are
checked against the lead schema and written as ``PATCH /leads/{id}/attributes`` writes them
(relance/domain/lead_schema.py ``write_attributes``).

A webhook node's call (``call_journey_webhook``) POSTs to a named endpoint of the settings
(``journey_webhooks``; a definition never gives a URL), signed as the webhook channel signs
(relance/domain/webhook_signing.py: ``X-Relance-Timestamp``, ``X-Relance-Signature`` over
``<timestamp>.<body>``, ``X-Relance-Delivery`` the same on every retry). The body::

    {"type": "journey_webhook", "delivery_id": "...", "lead_id": "...", "journey": "webinar",
     "node": "enrich", "attributes": {"plan": "pro"}}

is serialised here: the lead's data is JSON-escaped text, never a field of its own. A 5xx, a 429,
a connection refused or a timeout raises (Temporal retries it); a 4xx is the receiver's refusal,
answered ``ok: False`` (the journey takes the node's failure branch). The answer's values at the
node's JSON pointers are checked against the lead schema's types and written into the lead's
custom attributes, all or none: a value the schema refuses fails the node; a pointer the answer
does not have leaves its attribute as it was.
"""

from __future__ import annotations

import json
import time
from datetime import date
from typing import Any

from jsonpointer import JsonPointerException, resolve_pointer
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.channels import post_accepted
from relance.contracts.definitions import (
    AttributesChange,
    AttributesChanged,
    ConditionAnswer,
    ConditionQuestion,
    LeadDate,
    LeadDateQuestion,
    StageChange,
    StageChanged,
    SwitchAnswer,
    SwitchQuestion,
    WebhookAnswer,
    WebhookCall,
)
from relance.contracts.sending import SendFailure
from relance.domain.conditions import Test
from relance.domain.lead_schema import AttributeProblems, write_attributes
from relance.domain.models import Lead, utcnow
from relance.domain.scoring import queue_notification
from relance.domain.segment_query import RuleError, evaluate
from relance.domain.segments import QUALIFIED, STAGES, segment_and_stage
from relance.domain.send_window import zone_or_utc
from relance.domain.settings import Settings
from relance.domain.webhook_signing import signed_headers

_ABSENT = object()


class DefinitionActivities:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine

    @activity.defn(name="evaluate_condition", no_thread_cancel_exception=True)
    def evaluate_condition(self, question: ConditionQuestion) -> ConditionAnswer:
        try:
            test = Test.model_validate(question.test)
            with Session(self.engine) as session:
                verdict = evaluate(
                    session, question.lead_id, test, self.settings, promos=question.promos
                )
        except (ValueError, RuleError) as err:
            raise ApplicationError(
                f"not a condition: {err}", type="BadCondition", non_retryable=True
            ) from None
        if verdict is None:
            raise ApplicationError(
                f"lead {question.lead_id} does not exist", type="LeadNotFound", non_retryable=True
            )
        return ConditionAnswer(verdict.holds, verdict.why)

    @activity.defn(name="evaluate_switch", no_thread_cancel_exception=True)
    def evaluate_switch(self, question: SwitchQuestion) -> SwitchAnswer:
        """The first case that holds (from 1; 0: none, the default), and what each case asked
        up to it found."""
        whys = []
        try:
            tests = [Test.model_validate(t) for t in question.tests]
            with Session(self.engine) as session:
                for i, test in enumerate(tests, start=1):
                    verdict = evaluate(
                        session, question.lead_id, test, self.settings, promos=question.promos
                    )
                    if verdict is None:
                        raise ApplicationError(
                            f"lead {question.lead_id} does not exist",
                            type="LeadNotFound",
                            non_retryable=True,
                        )
                    whys.append(f"case {i}: {verdict.why}")
                    if verdict.holds:
                        return SwitchAnswer(i, "; ".join(whys))
        except (ValueError, RuleError) as err:
            raise ApplicationError(
                f"not a condition: {err}", type="BadCondition", non_retryable=True
            ) from None
        return SwitchAnswer(0, "; ".join(whys))

    @activity.defn(name="read_lead_date", no_thread_cancel_exception=True)
    def read_lead_date(self, question: LeadDateQuestion) -> LeadDate:
        """The lead's date attribute (YYYY-MM-DD, checked on write; a value that is no date, the
        lead schema changed since, is no date: None) and its zone."""
        with Session(self.engine) as session:
            lead = self._lead(session, question.lead_id)
            value = (lead.attributes or {}).get(question.attribute)
            try:
                day = date.fromisoformat(value).isoformat() if isinstance(value, str) else None
            except ValueError:
                day = None
            return LeadDate(day, zone_or_utc(lead.time_zone).key)

    @activity.defn(name="set_lead_attributes", no_thread_cancel_exception=True)
    def set_lead_attributes(self, change: AttributesChange) -> AttributesChanged:
        """The values checked against the lead schema as it is now, then written: a retry
        writes the same values again and changes nothing."""
        try:
            values = self.settings.lead_schema().check_attributes(change.values)
        except AttributeProblems as err:
            raise ApplicationError(
                f"attributes not set: {err}", type="BadAttributes", non_retryable=True
            ) from None
        with Session(self.engine) as session:
            lead = self._lead(session, change.lead_id)
            changed = write_attributes(lead, values)
            session.add(lead)
            session.commit()
        return AttributesChanged(changed)

    @activity.defn(name="raise_lead_stage", no_thread_cancel_exception=True)
    def raise_lead_stage(self, change: StageChange) -> StageChanged:
        """The floor moves up, never down: a lead the facts (or an earlier update) put at this
        stage or beyond keeps its stage; a retry finds the floor in place and changes nothing."""
        if change.stage not in STAGES:
            raise ApplicationError(
                f"no lifecycle stage {change.stage!r}", type="BadStage", non_retryable=True
            )
        with Session(self.engine) as session:
            lead = self._lead(session, change.lead_id)
            _, before = segment_and_stage(session, lead.id, self.settings)
            if STAGES.index(change.stage) <= STAGES.index(before):
                return StageChanged(before, raised=False)
            lead.stage_floor = change.stage
            session.add(lead)
            if before not in QUALIFIED and change.stage in QUALIFIED:
                # Sales hears of a lead a journey qualifies as of one whose score qualified it:
                # the same notification (CRM webhook, sales inbox), written with the change.
                queue_notification(
                    session,
                    lead_id=lead.id,
                    score=lead.score,
                    threshold=self.settings.score_mql_threshold,
                    reason=f"stage raised to {change.stage} by {activity.info().workflow_id}",
                    now=utcnow(),
                )
            session.commit()
        return StageChanged(change.stage, raised=True)  # above what the facts said: the floor

    @staticmethod
    def _lead(session: Session, lead_id: str) -> Lead:
        lead = session.get(Lead, lead_id)
        if lead is None:
            raise ApplicationError(
                f"lead {lead_id} does not exist", type="LeadNotFound", non_retryable=True
            )
        return lead

    @activity.defn(name="call_journey_webhook", no_thread_cancel_exception=True)
    def call_journey_webhook(self, call: WebhookCall) -> WebhookAnswer:
        endpoint = self.settings.journey_webhooks.get(call.endpoint)
        if endpoint is None:
            return WebhookAnswer(
                False, f"no endpoint {call.endpoint!r} is configured (RELANCE_JOURNEY_WEBHOOKS)"
            )
        with Session(self.engine) as session:
            lead = session.get(Lead, call.lead_id)
            if lead is None:
                raise ApplicationError(
                    f"lead {call.lead_id} does not exist", type="LeadNotFound", non_retryable=True
                )
            stored = dict(lead.attributes or {})
        body = json.dumps(
            {
                "type": "journey_webhook",
                "delivery_id": call.delivery_id,
                "lead_id": call.lead_id,
                "journey": call.journey,
                "node": call.node,
                "attributes": {name: stored.get(name) for name in call.attributes},
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        headers = signed_headers(
            endpoint.secret or self.settings.secret_key,
            body,
            call.delivery_id,
            timestamp=int(time.time()),
        )
        who = f"{call.endpoint} endpoint"
        try:
            response = post_accepted(
                endpoint.url, who, timeout=endpoint.timeout_seconds, content=body, headers=headers
            )
        except SendFailure as failure:
            if failure.permanent:  # what the receiver answered stays in the worker's log
                activity.logger.warning("journey webhook %s: %s", call.delivery_id, failure)
                return WebhookAnswer(False, f"the {who} refused: {failure.status}")
            raise ApplicationError(failure.reason, type="WebhookUnavailable") from None
        if not call.map:
            return WebhookAnswer(True, f"{response.status_code}: accepted")
        try:
            answer = response.json()
        except ValueError:
            return WebhookAnswer(False, f"{response.status_code}: the answer is no JSON to map")
        return self._write(call, response.status_code, answer)

    def _write(self, call: WebhookCall, status: int, answer: Any) -> WebhookAnswer:
        """The mapped values of the answer, checked and written (all or none)."""
        values, missing = {}, []
        for name, pointer in call.map.items():
            try:
                value = resolve_pointer(answer, pointer, _ABSENT)
            except JsonPointerException:
                value = _ABSENT
            if value is _ABSENT or value is None:
                missing.append(name)
            else:
                values[name] = value
        try:
            checked = self.settings.lead_schema().check_attributes(values)
        except AttributeProblems as err:
            return WebhookAnswer(
                False,
                f"{status}: the answer does not fit the lead schema: "
                + "; ".join(f"{name}: {why}" for name, why in sorted(err.problems.items())),
            )
        if checked:
            with Session(self.engine) as session:
                lead = self._lead(session, call.lead_id)
                write_attributes(lead, checked)
                session.add(lead)
                session.commit()
        why = f"{status}: " + (", ".join(sorted(checked)) + " set" if checked else "nothing set")
        if missing:
            why += f" ({', '.join(sorted(missing))}: not in the answer)"
        return WebhookAnswer(True, why, sorted(checked))
