"""Tracking hits are delivered as a stream: a campaign's opens keep coming for minutes, and a
journey hears of each within a fraction of a second, without the outbox waiting for them to stop.
Batches overlap (one is signalled while the next is claimed), yet each journey is handled by one
task at a time: its hits reach it once each, in the order received. Real API, outbox, worker and
Temporal dev server.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from relance.contracts.signals import OPENED, TrackingSignal
from relance.dev.seeding import make_lead_factory
from relance.domain.db import make_engine
from relance.domain.tokens import TokenSigner, TrackingToken
from relance.services import migrate
from relance.services.outbox import OutboxDispatcher
from relance.services.tracking import Hit, record_hits
from tests.conftest import LiveStack
from tests.test_tracking_flood import sign_up
from tests.waiting import eventually, stored_hits
from tests.waiting import signals_received as signals


async def _count_is(names, count: int) -> list[str] | None:
    """The awaited list once it holds at least ``count`` items."""
    found = await names
    return found if len(found) >= count else None


async def signalled_messages(client: Client, workflow_id: str) -> list[str]:
    """The message ids of the opens a journey was told, in the order its history holds them."""
    told = []
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            continue
        attributes = event.workflow_execution_signaled_event_attributes
        if attributes.signal_name == OPENED:
            [signal] = await client.data_converter.decode(
                attributes.input.payloads, [TrackingSignal]
            )
            told.append(signal.message_id)
    return told


async def test_opens_that_keep_coming_reach_their_journey_while_they_still_come(live: LiveStack):
    """An open every 50 ms for 6 s (distinct messages: each must be told): the first reaches
    its journey within 2 s, while the stream is still going, and every one of them does."""
    lead_id, _, _ = await sign_up(live.http, live.sink)
    journey = f"welcome-{lead_id}"
    signer = TokenSigner(live.settings.secret_key, max_age_seconds=3600)
    opens = [
        "/t/o/" + signer.sign(TrackingToken("open", uuid.uuid4().hex, lead_id, journey))
        for _ in range(120)
    ]

    async def keep_opening() -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for n, pixel in enumerate(opens):
            await asyncio.sleep(max(0.0, started + n * 0.05 - loop.time()))
            assert (await live.public.get(pixel)).status_code == 200

    stream = asyncio.create_task(keep_opening())
    try:
        await eventually(
            lambda: stored_hits(live.engine, lead_id), timeout=5, what="the first open stored"
        )
        await eventually(
            lambda: signals(live.temporal, journey),
            timeout=2,
            what="the first open to reach its journey while the opens keep coming",
        )
        assert not stream.done()  # told mid-stream: the outbox did not wait for calm
    finally:
        await stream
    await eventually(
        lambda: (
            len(stored_hits(live.engine, lead_id)) == len(opens)
            and all(h.delivered_at for h in stored_hits(live.engine, lead_id))
        ),
        timeout=15,
        what="every open to be settled",
    )
    # A signal that came while the journey was busy joins its history when that task is done.
    await eventually(
        lambda: _count_is(signals(live.temporal, journey), len(opens)),
        timeout=10,
        what="every open in the journey's history",
    )
    assert len(await signals(live.temporal, journey)) == len(opens)


async def test_overlapping_batches_tell_each_journey_its_hits_once_each_in_order(
    live: LiveStack, tmp_path: Path
):
    """Batches of 5 while 90 hits of three journeys wait: the outbox claims the next batch while
    it signals the last, and leaves out the journeys a batch in flight is settling — else a
    journey's hits would be claimed twice, or signalled out of order."""
    database_url = f"sqlite:///{tmp_path / 'relance.db'}"  # this outbox's own hits only
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    lead = make_lead_factory(engine)()
    journeys = [f"welcome-{(await sign_up(live.http, live.sink))[0]}" for _ in range(3)]
    sent = {journey: [f"{journey}-m{n:02d}" for n in range(30)] for journey in journeys}
    record_hits(
        engine,
        [
            Hit(TrackingToken("open", sent[journey][n], lead.id, journey), OPENED, None, None)
            for n in range(30)
            for journey in journeys  # interleaved, as a campaign's opens are
        ],
    )
    outbox = OutboxDispatcher(
        engine, live.temporal, batch_size=5, max_delay_seconds=0, claims_in_flight=3
    )
    delivering = asyncio.create_task(outbox.run())
    try:
        await eventually(
            lambda: all(h.delivered_at for h in stored_hits(engine, lead.id)),
            timeout=30,
            what="the 90 hits to be settled",
        )
    finally:
        delivering.cancel()
        await asyncio.gather(delivering, return_exceptions=True)
        engine.dispose()
    for journey in journeys:
        told = await eventually(
            lambda j=journey: _count_is(signalled_messages(live.temporal, j), len(sent[j])),
            timeout=10,
            what="every open in the journey's history",
        )
        assert told == sent[journey]


async def test_a_journey_with_many_hits_does_not_hold_up_the_stamps_of_the_others(
    live: LiveStack, tmp_path: Path
):
    """One journey with 200 opens to be told one by one, claimed with another journey's single
    open: that open is stamped delivered while the busy journey is still being told its own —
    each journey is stamped as soon as it is settled, not when the whole claim is."""
    database_url = f"sqlite:///{tmp_path / 'relance.db'}"
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    lead = make_lead_factory(engine)()
    busy, quiet = [f"welcome-{(await sign_up(live.http, live.sink))[0]}" for _ in range(2)]
    record_hits(
        engine,
        [
            Hit(TrackingToken("open", f"busy-m{n:03d}", lead.id, busy), OPENED, None, None)
            for n in range(200)
        ]
        + [Hit(TrackingToken("open", "quiet-m", lead.id, quiet), OPENED, None, None)],
    )
    outbox = OutboxDispatcher(engine, live.temporal, max_delay_seconds=0)
    delivering = asyncio.create_task(outbox.run())
    try:
        await eventually(
            lambda: (
                [h for h in stored_hits(engine, lead.id) if h.workflow_id == quiet][0].delivered_at
            ),
            timeout=10,
            what="the quiet journey's open to be stamped",
        )
        busy_hits = [h for h in stored_hits(engine, lead.id) if h.workflow_id == busy]
        assert not all(h.delivered_at for h in busy_hits)  # stamped before the busy journey
        await eventually(
            lambda: all(h.delivered_at for h in stored_hits(engine, lead.id)),
            timeout=60,
            what="every open to be settled",
        )
    finally:
        delivering.cancel()
        await asyncio.gather(delivering, return_exceptions=True)
        engine.dispose()
    told = await eventually(
        lambda: _count_is(signalled_messages(live.temporal, busy), 200),
        timeout=20,
        what="the busy journey's opens in its history",
    )
    assert told == [f"busy-m{n:03d}" for n in range(200)]  # in order, once each


async def test_hits_not_tried_before_the_lease_ends_go_back_pending_and_are_told_later_in_order(
    live: LiveStack, tmp_path: Path
):
    """A claim's lease is short here (0.2 s): the dispatcher stops starting signals before it
    ends, so no other could take the journey while it still signals. The hits it did not try go
    back pending as they were (no retry waiting, no attempt counted); the next claim tells them,
    after the others, once each."""
    database_url = f"sqlite:///{tmp_path / 'relance.db'}"
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    lead = make_lead_factory(engine)()
    journey = f"welcome-{(await sign_up(live.http, live.sink))[0]}"
    sent = [f"lease-m{n:03d}" for n in range(150)]
    record_hits(
        engine, [Hit(TrackingToken("open", m, lead.id, journey), OPENED, None, None) for m in sent]
    )
    outbox = OutboxDispatcher(engine, live.temporal, lease_seconds=0.2)
    try:
        claimed, settled, blocked = await outbox.deliver_batch()
        assert (claimed, blocked) == (150, False)
        assert 0 < settled < 150  # stopped before the lease ended
        pending = [h for h in stored_hits(engine, lead.id) if h.delivered_at is None]
        assert len(pending) == 150 - settled
        assert all(h.retry_at is None and h.attempts == 0 for h in pending)
        while (await outbox.deliver_batch())[0]:
            pass
    finally:
        engine.dispose()
    hits = stored_hits(engine, lead.id)
    assert all(h.delivered_at and h.attempts == 1 for h in hits)
    told = await eventually(
        lambda: _count_is(signalled_messages(live.temporal, journey), len(sent)),
        timeout=20,
        what="every open in the journey's history",
    )
    assert told == sent


async def test_the_outbox_signals_as_many_journeys_at_once_as_its_concurrency_never_more(
    dev_server_env, tmp_path: Path
):
    """Forty journeys with ten hits each, interleaved as a campaign's opens are, small claims
    (10 hits) and a concurrency of 8: while more than 8 journeys still have hits waiting, the
    outbox signals up to 8 of them at once — it reaches 8, later hits claimed while earlier ones
    are in flight — and never more: what RELANCE_TRACKING_DELIVERY_CONCURRENCY promises the
    Temporal server. (The journeys have ended: each hit is still a round-trip to Temporal,
    answered "not found", and kept as such.)"""
    database_url = f"sqlite:///{tmp_path / 'relance.db'}"
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    lead = make_lead_factory(engine)()
    journeys = [f"ended-{n:02d}-{uuid.uuid4().hex[:8]}" for n in range(40)]
    record_hits(
        engine,
        [
            Hit(TrackingToken("open", f"{journey}-m{n}", lead.id, journey), OPENED, None, None)
            for n in range(10)
            for journey in journeys
        ],
    )
    outbox = OutboxDispatcher(
        engine, dev_server_env.client, batch_size=10, concurrency=8, max_delay_seconds=0
    )
    samples: list[int] = []

    def pending_journeys() -> int:
        return len({h.workflow_id for h in stored_hits(engine, lead.id) if not h.delivered_at})

    delivering = asyncio.create_task(outbox.run())
    deadline = asyncio.get_running_loop().time() + 60
    try:
        while (waiting := await asyncio.to_thread(pending_journeys)) > 0:
            if waiting > 8:
                samples.append(outbox.signalling)
            assert asyncio.get_running_loop().time() < deadline, f"{waiting} journeys unsettled"
            assert not delivering.done()
            await asyncio.sleep(0.01)
    finally:
        delivering.cancel()
        await asyncio.gather(delivering, return_exceptions=True)
        engine.dispose()
    assert samples, "the hits were settled before any sample was taken"
    assert max(samples) == 8, samples
    hits = stored_hits(engine, lead.id)
    assert len(hits) == 400 and all(h.delivered_at for h in hits)
