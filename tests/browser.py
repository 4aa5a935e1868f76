"""A real browser for tests: Debian's headless Chromium, driven by selenium.

Import the fixture into a test module (``from tests.browser import browser``) and ask for
``browser``: a selenium WebDriver on a fresh, empty profile, closed after the test. It never
downloads anything: the installed ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` are
named, so selenium-manager is not used. Without them the test is skipped, unless
``RELANCE_TESTS_REQUIRE_BROWSER=1`` (CI sets it), where it fails.

WebDriver calls block. In an ``async`` test whose server runs on the test's own event loop
(``live``, ``ServedApp``), make them in a thread (``await asyncio.to_thread(...)``), or the
page waits for a server that waits for the test.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Headless, and none of Chromium's own background traffic (updates, sync, safe browsing):
# on a closed network those connections are refused and slow every page down.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1600",
)
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.access(path, os.X_OK) or shutil.which(path)):
            return f"{path} is not installed (Debian: apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:  # noqa: F821
    missing = _missing()
    if missing:
        if os.environ.get("RELANCE_TESTS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"a browser test needs Chromium: {missing}")
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability(  # requested_urls(); console_errors()
        "goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"}
    )
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def requested_urls(driver) -> list[str]:
    """Every URL the browser has sent a request for since the last call (documents, scripts,
    images, fetches); not those it blocked itself before sending (a Content-Security-Policy)."""
    urls, blocked = {}, set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            urls.setdefault(params["requestId"], params["request"]["url"])
        elif message["method"] == "Network.loadingFailed" and params.get("blockedReason"):
            blocked.add(params["requestId"])
    return [url for request_id, url in urls.items() if request_id not in blocked]


def off_localhost(urls: list[str]) -> list[str]:
    """The URLs among ``urls`` that would leave this machine."""
    return [
        url
        for url in urls
        if urlsplit(url).scheme in ("http", "https", "ws", "wss")
        and urlsplit(url).hostname not in LOCAL_HOSTS
    ]


def console_errors(driver) -> list[str]:
    """The page's console errors since the last call (a script that failed, a resource or an
    inline script the Content-Security-Policy refused)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
