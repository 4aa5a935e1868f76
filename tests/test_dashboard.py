"""The dashboard (/dashboard): the reports drawn for people, behind the API key.

Over HTTP: without a session every page sends the browser to the login form; a wrong key gets
the form again with a message and no figure; the right one a signed, HttpOnly, SameSite cookie
for /dashboard only, which a tampered cookie or a changed key does not pass; a lead's data is
escaped. In a real browser (headless Chromium): signing in, the journeys' funnels drawn with the
reports API's very figures, a journey's page (trend, messages, experiment), a lead's timeline,
and nothing requested off this machine nor refused by the pages' Content-Security-Policy.

``RELANCE_DASHBOARD_SCREENSHOT=docs/dashboard.png`` makes the browser test save the journey
page there (the README's picture: run this one test alone, `-k in_a_browser`, over its
seeded data only).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy.engine import Engine

from api.main import create_app
from relance.dev.seeding import seed_journey_figures, unique_id
from relance.dev.serving import ServedApp
from relance.domain.audit import key_fingerprint
from relance.domain.settings import Settings
from tests.browser import (  # noqa: F401  (browser: a fixture)
    browser,
    console_errors,
    off_localhost,
    requested_urls,
)

FORM = {"content-type": "application/x-www-form-urlencoded"}
NAME = "<script>document.title='pwned'</script>"
COOKIE = "relance_dashboard"
SCREENSHOT = "RELANCE_DASHBOARD_SCREENSHOT"


@dataclass
class Seeded:
    journey: str
    leads: list[str]


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[ServedApp]:
    served = ServedApp(create_app(settings), lifespan="on")
    await served.start()
    yield served
    await served.stop()


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    # the README's picture shows a journey's name; the tests' own runs a name of their own
    journey = "webinar-invite" if os.environ.get(SCREENSHOT) else unique_id("dash")
    return Seeded(journey, seed_journey_figures(engine, journey, first_name=NAME))


@pytest.fixture
async def web(api: ServedApp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url) as client:
        yield client


async def sign_in(web: httpx.AsyncClient, key: str = "test-api-key") -> httpx.Response:
    return await web.post("/dashboard/login", content=f"api_key={key}", headers=FORM)


# Over HTTP -----------------------------------------------------------------------------------
async def test_without_a_session_every_page_sends_the_browser_to_the_login_form(
    web: httpx.AsyncClient, seeded: Seeded
):
    for path in (
        "/dashboard",
        f"/dashboard/journeys/{seeded.journey}",
        f"/dashboard/leads/{seeded.leads[0]}",
        f"/dashboard/leads?id={seeded.leads[0]}",
    ):
        answer = await web.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == "/dashboard/login"
        assert seeded.journey not in answer.text
    form = await web.get("/dashboard/login")
    assert form.status_code == 200 and 'name="api_key"' in form.text
    assert seeded.journey not in form.text


async def test_a_wrong_key_gets_the_form_again_with_a_message_and_no_session(
    web: httpx.AsyncClient, seeded: Seeded
):
    for key in ("wrong", ""):
        answer = await sign_in(web, key)
        assert answer.status_code == 401
        assert "That is not the API key." in answer.text and 'name="api_key"' in answer.text
        assert "set-cookie" not in answer.headers
        assert seeded.journey not in answer.text
    assert (await web.get("/dashboard")).status_code == 303


async def test_the_right_key_opens_a_signed_httponly_samesite_session_and_sign_out_ends_it(
    web: httpx.AsyncClient, seeded: Seeded
):
    answer = await sign_in(web)
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/dashboard", "Max-Age=28800"):
        assert attribute in cookie, attribute
    assert "test-api-key" not in cookie  # the key's fingerprint, signed; never the key

    page = await web.get("/dashboard")
    assert page.status_code == 200 and seeded.journey in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "default-src 'none'" in policy
    assert page.headers["cache-control"] == "no-store"

    out = await web.post("/dashboard/logout")
    assert out.status_code == 303 and out.headers["location"] == "/dashboard/login"
    assert (await web.get("/dashboard")).status_code == 303


async def test_a_tampered_cookie_or_one_opened_with_a_former_key_is_no_session(
    api: ServedApp, settings: Settings, seeded: Seeded
):
    sessions = URLSafeTimedSerializer(settings.secret_key, salt="relance.dashboard-session")
    async with httpx.AsyncClient(base_url=api.url) as web:
        opened = (await sign_in(web)).cookies[COOKIE]
    for cookie in (
        opened[:-2] + ("AA" if not opened.endswith("AA") else "BB"),
        sessions.dumps(key_fingerprint("the-former-key")),
        URLSafeTimedSerializer("another-secret", salt="relance.dashboard-session").dumps(
            key_fingerprint(settings.api_key)
        ),
    ):
        async with httpx.AsyncClient(base_url=api.url, cookies={COOKIE: cookie}) as web:
            answer = await web.get(f"/dashboard/journeys/{seeded.journey}")
            assert answer.status_code == 303 and seeded.journey not in answer.text


async def test_a_script_may_send_the_key_in_the_header(web: httpx.AsyncClient, seeded: Seeded):
    page = await web.get(
        f"/dashboard/journeys/{seeded.journey}", headers={"x-api-key": "test-api-key"}
    )
    assert page.status_code == 200 and f"Journey {seeded.journey}" in page.text
    wrong = await web.get("/dashboard", headers={"x-api-key": "nope"})
    assert wrong.status_code == 303


async def test_a_lead_s_data_is_shown_as_text_and_reading_it_is_audited(
    web: httpx.AsyncClient, seeded: Seeded
):
    await sign_in(web)
    page = await web.get(f"/dashboard/leads/{seeded.leads[0]}")
    assert page.status_code == 200
    assert "&lt;script&gt;document.title=" in page.text and NAME not in page.text
    assert "message.sent" in page.text and "journey.entered" in page.text
    audit = await web.get(
        "/audit", params={"lead_id": seeded.leads[0]}, headers={"x-api-key": "test-api-key"}
    )
    assert "lead.timeline" in {entry["action"] for entry in audit.json()}
    missing = await web.get("/dashboard/leads/nobody")
    assert missing.status_code == 404 and "No such lead" in missing.text


async def test_a_range_that_makes_no_sense_shows_the_default_with_a_message(
    web: httpx.AsyncClient, seeded: Seeded
):
    await sign_in(web)
    for query in ("start=2026-13-40", "start=2030-01-02&end=2030-01-01"):
        page = await web.get(f"/dashboard?{query}")
        assert page.status_code == 200 and "showing the last 30 days" in page.text
        assert seeded.journey in page.text
    long_ago = await web.get("/dashboard?start=2000-01-01&end=2000-02-01")
    assert seeded.journey not in long_ago.text and "No journey had a run" in long_ago.text


# In a browser --------------------------------------------------------------------------------
def wait(driver, locator, seconds: float = 30):
    return WebDriverWait(driver, seconds).until(seen.presence_of_element_located(locator))


def figure_of(driver, chart_id: str) -> list[dict]:
    """The traces plotly.js drew in the chart (its ``data``, as the library holds it)."""
    wait(driver, (By.CSS_SELECTOR, f"#{chart_id}[data-drawn='true'] svg"))
    return driver.execute_script(
        "return document.getElementById(arguments[0]).data"
        ".map(t => ({name: t.name || null, x: t.x, y: t.y}));",
        chart_id,
    )


def journey_chart_ids(driver, journey: str) -> list[str]:
    section = driver.find_element(By.XPATH, f"//section[h2/a[normalize-space(text())='{journey}']]")
    return [el.get_attribute("id") for el in section.find_elements(By.CSS_SELECTOR, ".chart")]


async def test_in_a_browser_the_dashboard_draws_the_reports_figures_and_nothing_leaves(
    api: ServedApp, browser, seeded: Seeded, settings: Settings
):
    async with httpx.AsyncClient(
        base_url=api.url, headers={"x-api-key": settings.api_key}
    ) as reports:
        funnel = (await reports.get(f"/reports/journeys/{seeded.journey}?by=day")).json()
        templates = (await reports.get(f"/reports/messages?journey={seeded.journey}")).json()
        arms = (await reports.get(f"/reports/experiments/{seeded.journey}/invite")).json()

    def wrong_key_then_right_key():
        browser.get(f"{api.url}/dashboard")
        field = wait(browser, (By.ID, "api_key"))
        field.send_keys("not-the-key")
        field.submit()
        alert = wait(browser, (By.CSS_SELECTOR, "[role=alert]")).text
        refused = browser.page_source
        # the browser notes the form's 401 as a failed load; nothing else may fail
        assert all("/dashboard/login" in e and "401" in e for e in console_errors(browser))
        field = wait(browser, (By.ID, "api_key"))
        field.send_keys(settings.api_key)
        field.submit()
        wait(browser, (By.XPATH, "//h1[text()='Journeys']"))
        funnel_id, outcomes_id = journey_chart_ids(browser, seeded.journey)
        return alert, refused, figure_of(browser, funnel_id), figure_of(browser, outcomes_id)

    alert, refused, drawn_funnel, drawn_outcomes = await asyncio.to_thread(wrong_key_then_right_key)
    assert alert == "That is not the API key."
    assert seeded.journey not in refused and 'class="chart"' not in refused
    # The funnel as drawn: entered, each step's messages sent, each checkpoint, converted.
    expected = {
        "entered": funnel["entered"],
        **{f"sent: {step}": counts["sent"] for step, counts in funnel["steps"].items()},
        **{f"checkpoint: {name}": n for name, n in funnel["checkpoints"].items()},
        "converted": funnel["converted"],
    }
    assert dict(zip(drawn_funnel[0]["y"], drawn_funnel[0]["x"], strict=True)) == expected
    assert drawn_funnel[0]["y"][0] == "entered" and drawn_funnel[0]["y"][-1] == "converted"
    assert expected["entered"] == 40 and expected["converted"] > 0  # the seeded figures
    assert dict(zip(drawn_outcomes[0]["x"], drawn_outcomes[0]["y"], strict=True)) == {
        "active": funnel["active"],
        **funnel["completed"],
    }

    def journey_page():
        browser.find_element(By.LINK_TEXT, seeded.journey).click()
        wait(browser, (By.XPATH, f"//h1[text()='Journey {seeded.journey}']"))
        trend = figure_of(browser, "chart-trend")
        drawn_arms = figure_of(browser, "chart-arms-invite")
        rows = [
            [cell.text for cell in row.find_elements(By.CSS_SELECTOR, "th, td")]
            for row in browser.find_elements(
                By.XPATH, "//table[caption[starts-with(., 'Per template')]]/tbody/tr"
            )
        ]
        leading = browser.find_element(By.XPATH, "//h3[starts-with(., 'invite:')]").text
        screenshot = os.environ.get(SCREENSHOT)
        if screenshot:
            browser.set_window_size(1280, 1620)
            browser.save_screenshot(screenshot)
        return trend, drawn_arms, rows, leading

    trend, drawn_arms, rows, leading = await asyncio.to_thread(journey_page)
    by_name = {trace["name"]: dict(zip(trace["x"], trace["y"], strict=True)) for trace in trend}
    for name in ("entered", "sent", "converted"):
        assert by_name[name] == {day["day"]: day[name] for day in funnel["days"]}, name
    assert {row[0]: int(row[1]) for row in rows} == {t["template"]: t["sent"] for t in templates}
    skipped = next(row for row in rows if row[0].endswith("_invite"))[2]
    assert "consent: 4" in skipped
    assert drawn_arms[0]["x"] == list(arms["arms"]) and drawn_arms[0]["y"] == [
        a["conversion_rate"] for a in arms["arms"].values()
    ]
    assert f"leading arm {arms['leading_arm']}" in leading

    def lead_page():
        field = browser.find_element(By.ID, "lead-id")
        field.send_keys(seeded.leads[0])
        field.submit()
        name = wait(browser, (By.CSS_SELECTOR, "h1 .lead-name")).text
        kinds = [
            row.find_element(By.CSS_SELECTOR, "th").text
            for row in browser.find_elements(By.CSS_SELECTOR, "table.timeline tbody tr")
        ]
        return name, kinds, browser.title, browser.current_url

    name, kinds, title, url = await asyncio.to_thread(lead_page)
    assert name == NAME and title != "pwned"  # shown as text, never run
    assert {"journey.entered", "message.sent"} <= set(kinds)
    assert url.endswith(f"/dashboard/leads/{seeded.leads[0]}")  # an id, nothing else of hers
    urls = requested_urls(browser)
    assert any(u.endswith("/dashboard/assets/plotly.min.js") for u in urls)
    assert off_localhost(urls) == []
    assert console_errors(browser) == []
