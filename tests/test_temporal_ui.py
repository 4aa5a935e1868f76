"""The Temporal UI of `make run` shows a journey decrypted, after one step: logging in once.

The real pieces: the dev server started with the command line devstack builds, the front that
serves its UI and the API's codec on one origin (relance/dev/devui.py), the API, a worker, and a
headless Chromium. Before the login the page shows the UI's codec error and encrypted blobs;
after it, the journey's input and its current step in words.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy.engine import Engine
from temporalio.client import Client

from api.main import create_app
from relance.dev.devstack import (
    CODEC_ON_UI_ORIGIN,
    EXAMPLE_SIGNUP,
    can_connect,
    port_is_free,
    temporal_args,
    temporal_ui_internal_port,
    ui_front_args,
)
from relance.dev.devui import create_front
from relance.dev.seeding import TEST_CONVERTER, unique_id
from relance.dev.serving import ServedApp
from relance.domain.settings import Settings
from tests.browser import browser, off_localhost, requested_urls  # noqa: F401  (browser: a fixture)
from worker import build_worker

CODEC_ERROR = "Codec Server could not connect"


def free_ports(count: int, *, consecutive_from: int = 0) -> list[int]:
    """``count`` free ports; the ``consecutive_from``-th and the one after it are both free
    (the UI's port and the dev server's own UI port beside it)."""
    while True:
        ports = random.sample(range(20000, 40000), count)
        pair = ports[consecutive_from] + 1
        if all(port_is_free("127.0.0.1", p) for p in [*ports, pair]) and pair not in ports:
            return ports


@dataclass
class DevStack:
    settings: Settings
    ui: str  # what the browser opens
    http: httpx.AsyncClient  # the API, with its key


@pytest.fixture
def dev_settings(settings: Settings, tmp_path: Path) -> Settings:
    grpc, ui, api = free_ports(3, consecutive_from=1)
    return settings.model_copy(
        update={
            "temporal_address": f"127.0.0.1:{grpc}",
            "temporal_ui_port": ui,
            "api_port": api,
            "api_host": "127.0.0.1",
            "data_dir": tmp_path,
            "temporal_task_queue": unique_id("ui-tests"),
            "public_base_url": f"http://127.0.0.1:{api}",
        }
    )


@pytest.fixture
def dev_server(dev_settings: Settings) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(
        temporal_args(dev_settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        host, port = dev_settings.temporal_address.split(":")
        while not (
            can_connect(host, int(port))
            and can_connect("127.0.0.1", temporal_ui_internal_port(dev_settings))
        ):
            assert process.poll() is None, f"the dev server exited with {process.returncode}"
            assert time.monotonic() < deadline, "the dev server did not come up in 60 s"
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.fixture
async def stack(dev_settings: Settings, dev_server, engine: Engine) -> AsyncIterator[DevStack]:
    s = dev_settings
    api = ServedApp(create_app(s), port=s.api_port, lifespan="on")
    front = ServedApp(
        create_front(ui=f"http://127.0.0.1:{temporal_ui_internal_port(s)}", api=api.url),
        port=s.temporal_ui_port,
    )
    await api.start()
    await front.start()
    client = await Client.connect(s.temporal_address, data_converter=TEST_CONVERTER)
    try:
        async with (
            build_worker(client, s, engine),
            httpx.AsyncClient(base_url=api.url, headers={"X-API-Key": s.api_key}) as http,
        ):
            yield DevStack(s, f"http://localhost:{s.temporal_ui_port}", http)
    finally:
        await front.stop()
        await api.stop()


def test_the_dev_server_is_told_the_codec_on_the_ui_origin_and_the_front_sits_on_the_ui_port(
    dev_settings,
):
    args = temporal_args(dev_settings)
    flag = lambda name: args[args.index(name) + 1]  # noqa: E731
    assert flag("--ui-codec-endpoint") == CODEC_ON_UI_ORIGIN == "/codec"
    assert (
        flag("--ui-port")
        == str(dev_settings.temporal_ui_port + 1)
        != str(dev_settings.temporal_ui_port)
    )
    assert flag("--ui-ip") == "127.0.0.1"
    assert "--ui-disable-news-fetch" in args
    front = ui_front_args(dev_settings)
    assert front[front.index("--listen") + 1] == f"127.0.0.1:{dev_settings.temporal_ui_port}"
    assert front[front.index("--ui") + 1] == f"http://127.0.0.1:{dev_settings.temporal_ui_port + 1}"
    assert front[front.index("--api") + 1] == f"http://127.0.0.1:{dev_settings.api_port}"


async def test_through_the_ui_port_the_codec_decrypts_for_a_logged_in_browser_and_the_ui_answers_the_rest(  # noqa: E501
    stack: DevStack,
):
    """What the browser does on the UI's own origin, without a browser: the page, then a decode
    call with the session cookie the login page set on that same origin."""
    encrypted = await stack.http.post(
        "/codec/encode",
        json={
            "payloads": [
                {
                    "metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                    "data": base64.b64encode(b'"Ada"').decode(),
                }
            ]
        },
    )
    body = encrypted.json()
    async with httpx.AsyncClient(base_url=stack.ui) as browser_like:
        page = await browser_like.get("/namespaces/default/workflows")
        assert (
            page.status_code == 200 and "<html" in page.text.lower()
        )  # Temporal's UI, through the front
        refused = await browser_like.post(
            "/codec/decode?preserveStorageRefs=true", json=body, headers={"X-Namespace": "default"}
        )
        assert (
            refused.status_code == 401
        )  # no session: the codec is not open to whoever reaches the UI
        login = await browser_like.post("/codec/login", data={"api_key": stack.settings.api_key})
        assert login.status_code == 200 and "relance_codec" in browser_like.cookies
        decoded = await browser_like.post(
            "/codec/decode?preserveStorageRefs=true", json=body, headers={"X-Namespace": "default"}
        )
        assert decoded.status_code == 200, decoded.text
        assert base64.b64decode(decoded.json()["payloads"][0]["data"]) == b'"Ada"'


def _all_text(driver) -> str:
    """The page's text, with that of its frames (the UI renders markdown details in an iframe)."""
    texts = [driver.find_element(By.TAG_NAME, "body").text]
    for frame in driver.find_elements(By.TAG_NAME, "iframe"):
        try:
            driver.switch_to.frame(frame)
            texts.append(driver.find_element(By.TAG_NAME, "body").text)
        except Exception:  # a frame that went away while the page re-rendered
            pass
        finally:
            driver.switch_to.default_content()
    return "\n".join(texts)


def _page_text(
    driver, url: str, wanted: str, *, tab: str | None = None, timeout: float = 60
) -> str:
    """Open ``url`` (and ``tab``) until ``wanted`` is on the page; the page's text."""
    deadline = time.monotonic() + timeout
    while True:
        driver.get(url)
        try:
            if tab:
                WebDriverWait(driver, 20).until(
                    lambda d: d.find_element(By.XPATH, f"//*[normalize-space(text())='{tab}']")
                ).click()
            WebDriverWait(driver, 10).until(lambda d: wanted in _all_text(d))
            return _all_text(driver)
        except Exception:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{wanted!r} not on {url} within {timeout:.0f} s:\n" + _all_text(driver)[:3000]
                ) from None


def _log_in(driver, ui: str, api_key: str) -> str:
    driver.get(f"{ui}/codec/login")
    driver.find_element(By.NAME, "api_key").send_keys(api_key)
    login_page = driver.find_element(By.TAG_NAME, "body")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    # The answer is a new page: wait until the login page is gone (reading it while it is being
    # replaced raises a stale element error), then read the answer's text.
    WebDriverWait(driver, 10).until(expected_conditions.staleness_of(login_page))
    wait = WebDriverWait(driver, 10, ignored_exceptions=(StaleElementReferenceException,))
    return wait.until(lambda d: d.find_element(By.TAG_NAME, "body").text)


async def test_after_logging_in_once_the_ui_shows_the_journey_decrypted_and_its_step_in_words(
    stack: DevStack, browser
):
    body = json.loads(EXAMPLE_SIGNUP)
    body["email"] = f"ada-{unique_id('ui')}@example.com"
    signed_up = await stack.http.post("/leads", json=body)
    assert signed_up.status_code == 201, signed_up.text
    lead_id = signed_up.json()["lead"]["id"]
    workflow_id = signed_up.json()["enrollments"][0]["workflow_id"]
    page = f"{stack.ui}/namespaces/default/workflows/{workflow_id}"

    # Before: the UI cannot decrypt (no session), and says so.
    before = await asyncio.to_thread(_page_text, browser, page, CODEC_ERROR)
    assert f'"lead_id": "{lead_id}"' not in before  # the input shows as an encrypted blob

    # The one step: the login page, on the UI's own address.
    answer = await asyncio.to_thread(_log_in, browser, stack.ui, stack.settings.api_key)
    assert "Session open" in answer

    after = await asyncio.to_thread(_page_text, browser, page, f'"lead_id": "{lead_id}"')
    assert CODEC_ERROR not in after
    details = await asyncio.to_thread(
        _page_text, browser, page, "waiting_for_open", tab="User Metadata"
    )
    assert "Welcome email sent; waiting up to 48 h for an open or a click" in details
    assert f"welcome journey for lead {lead_id}" in details  # the summary, decrypted too
    assert off_localhost(requested_urls(browser)) == []
