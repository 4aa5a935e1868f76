"""A flood on one tracking link must not stop tracking for everyone.

Anyone holding one email can request its pixel or its links thousands of times. A journey is
told only what it can use (one open per message, one click per message and destination), has a
budget of tracking signals, and a journey that refuses a signal never holds up the others: the
other leads' opens and clicks keep arriving within seconds. Everything goes through the real API,
outbox and Temporal dev server.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from bench.loadgen import run_load
from relance.contracts import search_attributes
from relance.dev.devsink import DevSink
from relance.dev.seeding import TEST_CONVERTER
from relance.dev.serving import ServedApp, listening_socket
from relance.domain.db import make_engine
from relance.domain.models import TrackingEvent
from relance.domain.settings import Settings
from relance.domain.tokens import TokenSigner, TrackingToken
from relance.services import migrate
from relance.services.temporal import bundled_binary
from tests.conftest import LiveStack
from tests.test_api_welcome_e2e import links, sign_up_body, unsubscribe_url
from tests.waiting import eventually
from tests.waiting import signals_received as signals
from worker import build_worker
from workflows.welcome import WelcomeJourney


async def hammer(
    urls: list[str], *, connections: int = 32, api: str | None = None
) -> dict[int, int]:
    """Request every URL over ``connections`` keep-alive connections, as a flood would (the
    benchmarks' light HTTP client: the server, not the client, takes the machine's cores);
    returns the status counts. ``api``: send them to that API instead of the links' own."""
    base = urlsplit(urls[0])
    paths = [urlsplit(url).path for url in urls]
    return (
        await run_load(api or f"{base.scheme}://{base.netloc}", paths, concurrency=connections)
    ).statuses


def hits_of(engine: Engine, lead_id: str) -> list[TrackingEvent]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(TrackingEvent)
                .where(TrackingEvent.lead_id == lead_id)
                .order_by(col(TrackingEvent.id))
            ).all()
        )


async def sign_up(http: httpx.AsyncClient, sink: DevSink) -> tuple[str, str, str]:
    """A lead in the welcome journey; returns (lead id, its pixel, its first tracked link)."""
    email = f"flood-{uuid.uuid4().hex[:10]}@example.com"
    response = await http.post("/leads", json=sign_up_body(email, journeys=["welcome"]))
    assert response.status_code == 201, response.text
    [mail] = await sink.wait_for_mail(to=email, subject_contains="Welcome to", timeout=60)
    [pixel] = links(mail.html, "o")
    return response.json()["lead"]["id"], pixel, links(mail.html, "c")[0]


async def test_a_flood_on_one_lead_s_links_does_not_delay_another_lead_s_click(live: LiveStack):
    flooded, pixel, link = await sign_up(live.http, live.sink)
    other, _, other_link = await sign_up(live.http, live.sink)
    flooded_journey = live.temporal.get_workflow_handle(f"welcome-{flooded}")

    assert await hammer([pixel] * 20_000) == {200: 20_000}
    assert await hammer([link] * 2_000) == {302: 2_000}

    clicked = await live.public.get(other_link)
    assert clicked.status_code == 302
    await eventually(
        lambda: signals(live.temporal, f"welcome-{other}"),
        timeout=8,
        what="the other lead's click to reach its journey",
    )

    # Every hit is kept for reporting; the flooded journey was told one open and one click.
    rows = await eventually(
        lambda: (r := hits_of(live.engine, flooded)) and all(h.delivered_at for h in r) and r,
        timeout=30,
        what="the flood to be settled",
    )
    assert len(rows) == 22_000
    assert [(r.kind, r.signal_outcome) for r in rows if r.signal_outcome] == [
        ("opened", "signalled"),
        ("clicked", "signalled"),
    ]
    assert all(
        r.delivery_note.startswith("not signalled: the journey was told this already")
        for r in rows
        if not r.signal_outcome
    )
    assert await signals(live.temporal, flooded_journey.id) == ["opened", "clicked"]
    history = await flooded_journey.fetch_history()
    assert (
        len(history.events) < 100
    )  # a welcome opened and clicked once: ~55 events (replayed in milliseconds)
    status = await asyncio.wait_for(flooded_journey.query(WelcomeJourney.status), timeout=5)
    assert status.opened and status.clicked


# A journey that refuses signals ------------------------------------------------------------------

SIGNAL_LIMIT = 5  # Temporal refuses a workflow's signals beyond this (10,000 by default)


@pytest.fixture(scope="module")
async def strict_temporal() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server that refuses a workflow's 6th signal, as the real one refuses its 10,001st."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=bundled_binary("temporal"),
        search_attributes=search_attributes.ALL,
        data_converter=TEST_CONVERTER,
        dev_server_extra_args=[
            "--dynamic-config-value",
            f"history.maximumSignalsPerExecution={SIGNAL_LIMIT}",
        ],
    )
    yield env
    await env.shutdown()


@dataclass
class OwnStack:
    settings: Settings
    engine: Engine
    temporal: Client
    http: httpx.AsyncClient
    public: httpx.AsyncClient
    signer: TokenSigner
    api: ServedApp

    def opens(self, lead_id: str, count: int) -> list[str]:
        """Signed pixels of ``count`` distinct messages of the lead's welcome journey."""
        return [
            f"{self.settings.public_base_url}/t/o/"
            + self.signer.sign(
                TrackingToken("open", uuid.uuid4().hex, lead_id, f"welcome-{lead_id}")
            )
            for _ in range(count)
        ]


@pytest.fixture
async def own_stack(
    strict_temporal: WorkflowEnvironment, settings: Settings, sink: DevSink, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[OwnStack]]]:
    """Starts the API and a worker on the strict dev server, with their own database (another
    test's API would settle this test's hits), and the given settings."""
    database_url = f"sqlite:///{tmp_path / 'relance.db'}"
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    async with AsyncExitStack() as running:

        async def start(**overrides) -> OwnStack:
            sock = listening_socket("127.0.0.1", 0)
            own = settings.model_copy(
                update={
                    "database_url": database_url,
                    "temporal_address": strict_temporal.client.service_client.config.target_host,
                    "temporal_task_queue": f"flood-{uuid.uuid4().hex[:8]}",
                    "public_base_url": f"http://127.0.0.1:{sock.getsockname()[1]}",
                    "welcome_relance_by_sms": False,
                    **overrides,
                }
            )
            api = ServedApp(create_app(own), sock=sock, lifespan="on")
            await api.start()
            running.push_async_callback(api.stop)
            await running.enter_async_context(build_worker(strict_temporal.client, own, engine))
            http = await running.enter_async_context(
                httpx.AsyncClient(base_url=api.url, headers={"X-API-Key": own.api_key})
            )
            public = await running.enter_async_context(httpx.AsyncClient())
            return OwnStack(
                own,
                engine,
                strict_temporal.client,
                http,
                public,
                TokenSigner(own.secret_key, max_age_seconds=3600),
                api,
            )

        yield start
    engine.dispose()


async def test_a_journey_that_refuses_signals_does_not_delay_another_journey(
    own_stack, sink: DevSink
):
    """The refusing journey has more refused hits waiting than a batch holds: they must not hold
    up the other lead's click, and its own hits wait in order."""
    stack = await own_stack(tracking_signal_max_attempts=2)
    refusing, _, _ = await sign_up(stack.http, sink)
    other, _, other_link = await sign_up(stack.http, sink)
    opens = stack.opens(refusing, 600)  # 600 different messages: nothing to coalesce
    assert await hammer(opens) == {200: 600}

    await eventually(
        lambda: any(r.attempts and not r.delivered_at for r in hits_of(stack.engine, refusing)),
        timeout=20,
        what="Temporal to refuse the journey's signals",
    )
    assert (await stack.public.get(other_link)).status_code == 302
    await eventually(
        lambda: signals(stack.temporal, f"welcome-{other}"),
        timeout=5,
        what="the other lead's click to reach its journey",
    )

    assert len(await signals(stack.temporal, f"welcome-{refusing}")) == SIGNAL_LIMIT
    settled = [bool(r.delivered_at) for r in hits_of(stack.engine, refusing)]
    assert settled == sorted(
        settled, reverse=True
    )  # in order: no hit settled before an earlier one
    # After its attempts, the refused hit is kept as not signalled, with Temporal's reason; the
    # journey's next hits waited behind it (its order is kept) and go on after it.
    rows = await eventually(
        lambda: (r := hits_of(stack.engine, refusing)) and r[SIGNAL_LIMIT].delivered_at and r,
        timeout=10,
        what="the refused hit to be given up",
    )
    refused = rows[SIGNAL_LIMIT]
    assert refused.signal_outcome == "refused" and refused.attempts == 2
    assert (
        "refused 2 times: exceeded workflow execution limit for signal events"
        in refused.delivery_note
    )
    assert [r.signal_outcome for r in rows[:SIGNAL_LIMIT]] == ["signalled"] * SIGNAL_LIMIT


async def test_a_journey_gets_at_most_its_budget_of_tracking_signals(
    own_stack, sink: DevSink, caplog: pytest.LogCaptureFixture
):
    stack = await own_stack(tracking_signals_per_journey=3)
    lead_id, _, _ = await sign_up(stack.http, sink)
    caplog.set_level(logging.WARNING, logger="relance.services.outbox")
    assert await hammer(stack.opens(lead_id, 12), connections=1) == {200: 12}

    rows = await eventually(
        lambda: (r := hits_of(stack.engine, lead_id)) and all(h.delivered_at for h in r) and r,
        timeout=15,
        what="the hits to be settled",
    )
    assert [r.signal_outcome for r in rows] == ["signalled"] * 3 + [None] * 9
    assert all("has had its 3 open and click signals" in r.delivery_note for r in rows[3:])
    assert await signals(stack.temporal, f"welcome-{lead_id}") == ["opened"] * 3
    said = [r.getMessage() for r in caplog.records if "open and click signals" in r.getMessage()]
    assert said == [
        f"outbox: journey welcome-{lead_id} has had its 3 open and click signals; its further "
        "opens and "
        "clicks are kept for reporting, not signalled (RELANCE_TRACKING_SIGNALS_PER_JOURNEY)"
    ]


async def test_a_journey_is_told_one_open_and_one_click_across_batches_and_restarts(
    own_stack, sink: DevSink
):
    first = await own_stack()
    lead_id, pixel, link = await sign_up(first.http, sink)
    journey = f"welcome-{lead_id}"
    assert await hammer([pixel] * 3 + [link], connections=1) == {200: 3, 302: 1}
    await eventually(  # all four stored (a click's hit is written after its redirect) and settled
        lambda: len(r := hits_of(first.engine, lead_id)) == 4 and all(h.delivered_at for h in r),
        timeout=10,
        what="the first hits to be settled",
    )
    assert await signals(first.temporal, journey) == ["opened", "clicked"]

    await first.api.stop()  # the API restarts: what the journey was told is in the database
    second = await own_stack()
    assert await hammer([pixel] * 2 + [link] * 2, connections=1, api=second.api.url) == {
        200: 2,
        302: 2,
    }
    rows = await eventually(
        lambda: (
            (r := hits_of(second.engine, lead_id))
            and len(r) == 8
            and all(h.delivered_at for h in r)
            and r
        ),
        timeout=10,
        what="the later hits to be settled",
    )
    assert await signals(second.temporal, journey) == ["opened", "clicked"]
    assert [r.signal_outcome for r in rows].count("signalled") == 2
    assert all(
        r.delivery_note.startswith("not signalled: the journey was told this already")
        for r in rows[4:]
    )


async def test_an_unsubscribe_reaches_the_journey_even_when_another_journey_of_the_lead_refuses(
    own_stack, sink: DevSink
):
    stack = await own_stack(tracking_signal_max_attempts=2)
    email = f"flood-{uuid.uuid4().hex[:10]}@example.com"
    response = await stack.http.post(
        "/leads", json=sign_up_body(email, journeys=["welcome", "nurturing"])
    )
    assert response.status_code == 201, response.text
    lead_id = response.json()["lead"]["id"]
    [mail] = await sink.wait_for_mail(to=email, subject_contains="Welcome to Relance,", timeout=60)
    nurture = f"nurture-{lead_id}"
    opens = [
        f"{stack.settings.public_base_url}/t/o/"
        + stack.signer.sign(TrackingToken("open", uuid.uuid4().hex, lead_id, nurture))
        for _ in range(SIGNAL_LIMIT + 3)
    ]
    assert await hammer(opens, connections=1) == {200: SIGNAL_LIMIT + 3}
    await eventually(
        lambda: any(r.attempts and not r.delivered_at for r in hits_of(stack.engine, lead_id)),
        timeout=20,
        what="Temporal to refuse the nurturing journey's signals",
    )

    unsubscribe = unsubscribe_url(mail)
    assert (
        await stack.public.post(unsubscribe, content=b"List-Unsubscribe=One-Click")
    ).status_code == 200
    await eventually(
        lambda: signals(stack.temporal, f"welcome-{lead_id}"),
        timeout=5,
        what="the unsubscribe to reach the welcome journey",
    )
    assert await signals(stack.temporal, f"welcome-{lead_id}") == ["unsubscribed"]
