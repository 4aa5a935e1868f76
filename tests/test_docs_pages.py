"""The API's documentation pages work on a machine without internet, in a real browser.

A newcomer's first page is /docs. It must render every operation from assets the API serves
itself: no request may leave localhost (no CDN script, stylesheet, favicon or font).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

from api.main import create_app
from relance.dev.serving import ServedApp
from relance.domain.settings import Settings
from tests.browser import browser, off_localhost, requested_urls  # noqa: F401  (browser: a fixture)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[ServedApp]:
    served = ServedApp(create_app(settings))
    await served.start()
    yield served
    await served.stop()


def open_and_wait(driver, url: str, locator: tuple[str, str]):
    driver.get(url)
    return WebDriverWait(driver, 30).until(seen.presence_of_element_located(locator))


async def test_swagger_ui_renders_the_operations_with_nothing_from_outside(api: ServedApp, browser):
    post_leads = (
        By.XPATH,
        "//div[contains(@class,'opblock-post')]"
        "//*[contains(@class,'opblock-summary-path') and @data-path='/leads']",
    )
    block = await asyncio.to_thread(open_and_wait, browser, f"{api.url}/docs", post_leads)
    assert "/leads" in block.text
    operations = await asyncio.to_thread(browser.find_elements, By.CSS_SELECTOR, ".opblock")
    assert len(operations) >= 20  # every route, not an error box
    urls = requested_urls(browser)
    assert any(url.endswith("/openapi.json") for url in urls), urls
    assert off_localhost(urls) == []


async def test_redoc_renders_the_operations_with_nothing_from_outside(api: ServedApp, browser):
    heading = (By.XPATH, "//h2[contains(., 'Create Or Update Lead')]")
    await asyncio.to_thread(open_and_wait, browser, f"{api.url}/redoc", heading)
    urls = requested_urls(browser)
    assert any(url.endswith("/openapi.json") for url in urls), urls
    assert off_localhost(urls) == []
