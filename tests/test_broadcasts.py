"""Broadcasts: one campaign to a list, in waves, through the same send ledger as journeys.

The pace and the send windows run on the time-skipping server (hours of waves in seconds); the
API's answers on the live stack (tests/conftest.py ``live``).
"""

from __future__ import annotations

import uuid

from sqlmodel import Session, select
from temporalio.converter import value_to_type

from relance.contracts.broadcasts import BroadcastResult
from relance.domain.audiences import Audience
from relance.domain.db import session_scope
from relance.domain.lists import add_member
from relance.domain.models import Broadcast, Message
from relance.services import broadcasts
from relance.services.broadcasts import BroadcastSpec
from worker import build_worker

TEMPLATE = "nurture_welcome_newsletter"


def new_list(engine, leads) -> str:
    name = f"bc-{uuid.uuid4().hex[:10]}"
    with session_scope(engine) as session:
        for lead in leads:
            add_member(session, list_name=name, lead_id=lead.id, reason="test")
    return name


async def run_broadcast(
    client, settings, engine, spec: BroadcastSpec
) -> tuple[str, BroadcastResult]:
    queue = f"bc-{uuid.uuid4().hex[:8]}"
    s = settings.model_copy(update={"temporal_task_queue": queue})
    with Session(engine) as session:
        broadcast = broadcasts.create(session, spec)
    async with build_worker(client, s, engine):
        handle = await broadcasts.start(client, s, broadcast)
        result = value_to_type(BroadcastResult, await handle.result())
    return handle.id, result


def messages_of(engine, workflow_id: str) -> list[Message]:
    with Session(engine) as session:
        return list(session.exec(select(Message).where(Message.workflow_id == workflow_id)).all())


async def test_a_broadcast_goes_out_once_to_each_lead_at_the_pace_asked(
    client, settings, engine, sink, make_lead
):
    """30 leads with consent and 5 without at 360 an hour: every consenting lead gets the message
    once, the others are skipped for want of consent, and the sends are spread over the run at
    the pace asked (within 5 %), not sent at once."""
    consenting = [make_lead() for _ in range(30)]
    refusing = [make_lead(consents=()) for _ in range(5)]
    name = new_list(engine, consenting + refusing)
    workflow_id, result = await run_broadcast(
        client, settings, engine, BroadcastSpec(Audience("list", name), TEMPLATE, per_hour=360)
    )
    assert result.status == "completed"
    assert (result.counts.sent, result.counts.skipped) == (30, {"no_consent": 5})
    for lead in consenting:
        assert len(sink.mails_to(lead.email)) == 1
    for lead in refusing:
        assert sink.mails_to(lead.email) == []
    sent = sorted(m.counted_at for m in messages_of(engine, workflow_id) if m.status == "sent")
    span = (sent[-1] - sent[0]).total_seconds()
    assert abs(span - 29 * 10) <= 0.05 * 29 * 10, span
    with Session(engine) as session:
        row = session.get(Broadcast, workflow_id.removeprefix("broadcast-"))
    assert (row.status, row.sent, row.skipped_by_reason) == ("completed", 30, {"no_consent": 5})
