"""The hosted preference page (/p/{token}) over HTTP on the live API, and in a real browser.

Every marketing email links to it; the token is the only authority (signed, its own kind), so a
tampered, forged, expired or other kind of token gets a 404 page and changes nothing; the page
shows the lead's data escaped; saving records each change in the consent ledger with the page
as its source and the browser's IP and user agent; "unsubscribe from everything" withdraws every
channel and ends the lead's journey like the one-click unsubscribe. Operators read and change the
same preferences through the API (evidence "api").
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest
from itsdangerous import TimestampSigner
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait
from sqlmodel import Session, col, select

from relance.dev.seeding import make_lead_factory, unique_id
from relance.domain.models import Consent, Lead, TrackingEvent, utcnow
from relance.domain.rendering import Renderer, Tracking
from relance.domain.suppression import suppression_of
from relance.domain.tokens import TokenSigner, TrackingToken
from tests.browser import browser, off_localhost, requested_urls  # noqa: F401  (browser: a fixture)
from tests.conftest import LiveStack
from tests.test_api_welcome_e2e import enroll, journey_when, welcome_mail
from tests.waiting import eventually

FORM = {"content-type": "application/x-www-form-urlencoded"}


def page_url(live: LiveStack, lead_id: str) -> str:
    signer = TokenSigner(live.settings.secret_key, max_age_seconds=86400)
    renderer = Renderer(signer, live.settings.public_base_url)
    return renderer.preferences_url(Tracking(unique_id("m"), lead_id, f"welcome-{lead_id}"))


def topic_rows(live: LiveStack, lead_id: str) -> list[Consent]:
    with Session(live.engine) as session:
        return list(
            session.exec(
                select(Consent)
                .where(Consent.lead_id == lead_id, col(Consent.purpose).startswith("topic:"))
                .order_by(col(Consent.id))
            ).all()
        )


def consents_of(live: LiveStack, lead_id: str) -> list[tuple[str, str, str]]:
    with Session(live.engine) as session:
        return [
            (r.channel, r.purpose, r.status)
            for r in session.exec(
                select(Consent).where(Consent.lead_id == lead_id).order_by(col(Consent.id))
            ).all()
        ]


SAVE_ALL_BUT_OFFERS = (
    "action=save&topic=newsletter&topic=events&topic=product&frequency=as_sent&channel=email"
)


async def test_the_page_shows_the_lead_s_choices_and_saving_records_them_with_evidence(
    live: LiveStack,
):
    lead = make_lead_factory(live.engine)(first_name="<b>Ada</b> & Co")
    url = page_url(live, lead.id)
    page = await live.public.get(url)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert "&lt;b&gt;Ada&lt;/b&gt; &amp; Co" in page.text and "<b>Ada</b>" not in page.text
    for key in ("newsletter", "events", "offers", "product"):
        assert re.search(rf'value="{key}" id="topic-{key}"[^>]*checked', page.text), key
    assert 'id="channel-sms"' not in page.text  # no phone: no SMS to turn on
    assert f'action="/p/{url.rsplit("/", 1)[1]}"' in page.text  # posts to itself, nowhere else

    saved = await live.public.post(
        url,
        content=SAVE_ALL_BUT_OFFERS,
        headers={**FORM, "user-agent": "Mozilla/5.0 (the lead)"},
    )
    assert saved.status_code == 200 and "Your preferences are saved" in saved.text
    assert "location" not in saved.headers
    assert not re.search(r'value="offers" id="topic-offers"[^>]*checked', saved.text)
    rows = topic_rows(live, lead.id)
    assert {(r.purpose, r.status) for r in rows} == {
        ("topic:newsletter", "granted"),
        ("topic:events", "granted"),
        ("topic:product", "granted"),
        ("topic:offers", "withdrawn"),
    }
    assert {(r.ip, r.user_agent) for r in rows} == {("127.0.0.1", "Mozilla/5.0 (the lead)")}
    assert all(r.source_url.startswith("preference page, message ") for r in rows)
    # Saved again as it is: nothing new in the ledger.
    await live.public.post(url, content=SAVE_ALL_BUT_OFFERS, headers=FORM)
    assert len(topic_rows(live, lead.id)) == 4
    api = (await live.http.get(f"/leads/{lead.id}/preferences")).json()
    assert api["topics"] == {"newsletter": True, "events": True, "offers": False, "product": True}


async def test_a_pause_and_the_weekly_pace_from_the_page(live: LiveStack):
    lead = make_lead_factory(live.engine)(phone="+33612345678", consents=("email", "sms"))
    url = page_url(live, lead.id)
    body = "action=save&topic=newsletter&frequency=pause&pause_weeks=4&channel=email"
    saved = await live.public.post(url, content=body, headers=FORM)
    assert saved.status_code == 200 and "Paused until" in saved.text
    with Session(live.engine) as session:
        row = session.get(Lead, lead.id)
        until = row.marketing_paused_until
    assert until is not None and abs(
        until.replace(tzinfo=None) - (utcnow() + timedelta(weeks=4)).replace(tzinfo=None)
    ) < timedelta(minutes=1)
    # SMS was offered (a phone) and not ticked: withdrawn, with the page as its source.
    assert ("sms", "marketing", "withdrawn") in consents_of(live, lead.id)

    weekly = "action=save&topic=newsletter&frequency=weekly&channel=email&channel=sms"
    await live.public.post(url, content=weekly, headers=FORM)
    api = (await live.http.get(f"/leads/{lead.id}/preferences")).json()
    assert api["frequency"] == "weekly" and api["paused_until"] is None
    assert api["channels"] == {"email": True, "sms": True}
    # Turned back on by the lead: the grant carries its proof (the page, its wording).
    with Session(live.engine) as session:
        grant = session.exec(
            select(Consent)
            .where(Consent.lead_id == lead.id, Consent.channel == "sms")
            .order_by(col(Consent.id).desc())
        ).first()
    assert grant.status == "granted" and grant.wording_version == "preference-page-1"
    assert grant.source_url.startswith("preference page, message ") and grant.ip == "127.0.0.1"


@pytest.mark.parametrize(
    "body",
    [
        "action=save&topic=cats&frequency=as_sent",
        "action=save&topic=newsletter&frequency=daily",
        "action=save&topic=newsletter&frequency=pause&pause_weeks=0",
        "action=save&topic=newsletter&frequency=pause&pause_weeks=many",
        "action=delete_me",
    ],
)
async def test_a_form_that_makes_no_sense_is_refused_and_changes_nothing(
    live: LiveStack, body: str
):
    lead = make_lead_factory(live.engine)()
    before = consents_of(live, lead.id)
    response = await live.public.post(page_url(live, lead.id), content=body, headers=FORM)
    assert response.status_code == 422 and "Nothing was changed" in response.text
    assert consents_of(live, lead.id) == before


def expired(live: LiveStack, lead_id: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A link signed 200 days ago (the links live 180)."""
    long_ago = int(utcnow().timestamp()) - 200 * 86400
    with monkeypatch.context() as m:
        m.setattr(TimestampSigner, "get_timestamp", lambda self: long_ago)
        return page_url(live, lead_id)


async def test_a_tampered_forged_expired_or_other_kind_of_link_changes_nothing(
    live: LiveStack, monkeypatch: pytest.MonkeyPatch
):
    lead = make_lead_factory(live.engine)()
    url = page_url(live, lead.id)
    token = url.rsplit("/", 1)[1]
    signer = TokenSigner(live.settings.secret_key, max_age_seconds=86400)
    unsubscribe = signer.sign(TrackingToken("unsubscribe", "m-1", lead.id, "w-1"))
    forged = TokenSigner("not-the-secret", max_age_seconds=86400).sign(
        TrackingToken("preferences", "m-1", lead.id, "w-1")
    )
    bad = {
        "tampered": url[:-6] + ("AAAAAA" if not url.endswith("AAAAAA") else "BBBBBB"),
        "forged": url.replace(token, forged),
        "expired": expired(live, lead.id, monkeypatch),
        "an unsubscribe token": url.replace(token, unsubscribe),
    }
    before = consents_of(live, lead.id)
    for name, link in bad.items():
        assert (await live.public.get(link)).status_code == 404, name
        for body in (SAVE_ALL_BUT_OFFERS, "action=unsubscribe_all"):
            response = await live.public.post(link, content=body, headers=FORM)
            assert response.status_code == 404 and "not valid" in response.text, name
    assert consents_of(live, lead.id) == before
    # HEAD answers like the page and changes nothing either, nor counts a click (a click is
    # stored before its answer).
    assert (await live.public.head(url)).status_code == 200
    with Session(live.engine) as session:
        assert (
            session.exec(select(TrackingEvent).where(TrackingEvent.lead_id == lead.id)).all() == []
        )


async def test_every_marketing_email_links_to_the_page_and_unsubscribe_all_ends_the_journey(
    live: LiveStack,
):
    lead_id, email = await enroll(live)
    mail = await welcome_mail(live, email)
    [url] = set(re.findall(r'href="(http://127\.0\.0\.1:\d+/p/[^"]+)"', mail.html))
    assert url in mail.text
    # The one-click unsubscribe (RFC 8058) stays in the headers.
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # The form posted while the journey waits (a page opened earlier: its visit would be a
    # click, which ends the welcome as clicked first — see below).
    left = await live.public.post(url, content="action=unsubscribe_all", headers=FORM)
    assert left.status_code == 200 and "unsubscribed from everything" in left.text
    consents = (await live.http.get(f"/leads/{lead_id}")).json()["consents"]
    assert "granted" not in consents.values() and consents["email"] == "withdrawn"
    # Withdrawn once, though the page and the one-click path both withdraw.
    assert [c for c in consents_of(live, lead_id) if c[2] == "withdrawn"] == [
        ("email", "marketing", "withdrawn")
    ]
    state = await journey_when(live, lead_id, lambda s: s["status"] == "COMPLETED")
    assert state["result"]["outcome"] == "unsubscribed"
    page = await live.public.get(url)
    assert page.status_code == 200 and "Unsubscribe from everything" in page.text

    async def clicked():
        with Session(live.engine) as session:
            kinds = session.exec(
                select(TrackingEvent.kind).where(TrackingEvent.lead_id == lead_id)
            ).all()
        return kinds if "clicked" in kinds else None

    # opening the page from the email is a click on its link
    kinds = await eventually(clicked, timeout=20, what="the page visit kept as a click")
    assert "unsubscribed" in kinds


async def test_operators_read_and_change_a_lead_s_preferences_with_evidence_api(
    live: LiveStack,
):
    topics = (await live.http.get("/topics")).json()
    assert [t["key"] for t in topics] == ["newsletter", "events", "offers", "product"]
    assert (await live.public.get("/topics")).status_code == 401
    lead = make_lead_factory(live.engine)()
    path = f"/leads/{lead.id}/preferences"
    wrong = await live.http.put(path, json={"topics": {"cats": False}})
    assert wrong.status_code == 422 and "cats" in wrong.text
    assert (await live.http.put(path, json={"pause_weeks": 53})).status_code == 422
    # Granting a channel's consent needs its proof (POST /leads): the API only withdraws one.
    assert (await live.http.put(path, json={"channels": {"email": True}})).status_code == 422
    assert topic_rows(live, lead.id) == []
    changed = await live.http.put(path, json={"topics": {"offers": False}, "frequency": "weekly"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["topics"]["offers"] is False and changed.json()["frequency"] == "weekly"
    [row] = topic_rows(live, lead.id)
    assert (row.purpose, row.status, row.source_url) == ("topic:offers", "withdrawn", "api")
    assert (await live.http.get("/leads/nobody/preferences")).status_code == 404


async def test_in_a_browser_toggling_a_topic_and_saving_changes_the_ledger(
    live: LiveStack, browser
):
    lead = make_lead_factory(live.engine)()
    url = page_url(live, lead.id)

    def toggle_offers_and_save() -> str:
        browser.get(url)
        box = WebDriverWait(browser, 30).until(
            seen.element_to_be_clickable((By.CSS_SELECTOR, "#topic-offers"))
        )
        assert box.is_selected()
        # The label is tied to its box: clicking the words toggles it (an accessible form).
        browser.find_element(By.CSS_SELECTOR, "label[for='topic-offers']").click()
        assert not box.is_selected()
        browser.find_element(By.CSS_SELECTOR, "#preferences button[type=submit]").click()
        notice = WebDriverWait(browser, 30).until(
            seen.presence_of_element_located((By.CSS_SELECTOR, "[role=status]"))
        )
        assert not browser.find_element(By.CSS_SELECTOR, "#topic-offers").is_selected()
        return notice.text

    assert await asyncio.to_thread(toggle_offers_and_save) == "Your preferences are saved."
    offers = [r for r in topic_rows(live, lead.id) if r.purpose == "topic:offers"]
    assert [r.status for r in offers] == ["withdrawn"]
    assert "Chrome" in offers[0].user_agent
    assert off_localhost(requested_urls(browser)) == []


async def test_unsubscribe_from_everything_withdraws_every_channel_and_suppresses_the_address(
    live: LiveStack,
):
    lead = make_lead_factory(live.engine)(phone="+33612345679", consents=("email", "sms"))
    response = await live.public.post(
        page_url(live, lead.id), content="action=unsubscribe_all", headers=FORM
    )
    assert response.status_code == 200
    assert consents_of(live, lead.id)[-2:] == [
        ("email", "marketing", "withdrawn"),
        ("sms", "marketing", "withdrawn"),
    ]
    with Session(live.engine) as session:
        assert suppression_of(session, live.settings.suppression_hash_key, lead.email)


def test_the_re_engagement_preferences_email_links_to_the_preference_page(settings):
    signer = TokenSigner(settings.secret_key, max_age_seconds=86400)
    renderer = Renderer(signer, settings.public_base_url)
    tracking = Tracking("m-1", "lead-1", "reengage-lead-1")
    mail = renderer.email(
        "reengage_preferences",
        {"first_name": "Ada", "locale": "en", "brand_name": "Relance", "site_url": "https://e.x"},
        tracking,
    )
    url = renderer.preferences_url(tracking)
    assert f'href="{url}"' in mail.html and f"Choose my topics: {url}" in mail.text
    assert "e.x/preferences" not in mail.html + mail.text  # the placeholder is gone
    assert signer.verify("preferences", url.rsplit("/", 1)[1]).lead_id == "lead-1"
