"""End to end on the real dev server: HTTP enroll → SMTP sink → pixel/click → journey state.

These run with the product's default, double opt-in on: every enrollment confirms through the
link of the confirmation email received in the sink (``enroll``), as a lead would: the link opens
a page, its button confirms.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from urllib.parse import urlsplit

import pytest
from sqlmodel import Session, select

from relance.domain.models import Consent
from tests.conftest import LiveStack
from tests.waiting import settled_hits, signals_received


def sign_up_body(email: str, **extra) -> dict:
    return {
        "email": email,
        "first_name": "Grace",
        "locale": "fr-FR",
        "time_zone": "Europe/Paris",
        "consents": [
            {
                "channel": "email",
                "purpose": "marketing",
                "source_url": "https://example.com/newsletter",
                "ip": "203.0.113.9",
                "user_agent": "Mozilla/5.0",
                "wording_version": "2026-01",
            }
        ],
        **extra,
    }


def new_email() -> str:
    return f"Grace.{uuid.uuid4().hex[:10]}@Example.COM"


@pytest.fixture
def double_opt_in(live: LiveStack, monkeypatch: pytest.MonkeyPatch) -> LiveStack:
    """The live API with double opt-in on, the product's default (the shared test settings turn it
    off for the tests about something else). Read at each sign-up, so it applies at once."""
    monkeypatch.setattr(live.settings, "double_opt_in", True)
    return live


@pytest.fixture(autouse=True)
def _this_module_runs_with_double_opt_in(double_opt_in: LiveStack) -> None:
    pass


CONFIRMATION_SUBJECT = "Please confirm your subscription to Relance"


def confirm_link(mail) -> str:
    [url] = set(re.findall(r'href="(http://127\.0\.0\.1:\d+/confirm/[^"]+)"', mail.html))
    assert url in mail.text  # the text part carries the same link
    return url


async def press_confirm(live: LiveStack, url: str, user_agent: str = "Mozilla/5.0 (the lead)"):
    """Open the confirmation link in a browser (a page, which confirms nothing) and press its
    button (the form's POST); returns the answer to the POST."""
    page = await live.public.get(url, headers={"user-agent": user_agent})
    assert page.status_code == 200 and "Yes, subscribe me" in page.text, page.text
    [action] = re.findall(r"<form method='post' action='([^']+)'>", page.text)
    assert action == urlsplit(url).path  # the button posts to this very link, on this site
    return await live.public.post(action, headers={"user-agent": user_agent})


async def confirm(live: LiveStack, email: str, user_agent: str = "Mozilla/5.0 (the lead)") -> str:
    """Confirm through the link of the confirmation email the lead received; returns the link."""
    [mail] = await live.sink.wait_for_mail(to=email, subject_contains=CONFIRMATION_SUBJECT)
    url = confirm_link(mail)
    response = await press_confirm(live, url, user_agent)
    assert response.status_code == 200 and "your subscription is confirmed" in response.text, (
        response.text
    )
    return url


async def enroll(live: LiveStack) -> tuple[str, str]:
    """Sign up with the welcome journey; with double opt-in on, confirm as the lead would."""
    email = new_email()
    response = await live.http.post("/leads", json=sign_up_body(email, journeys=["welcome"]))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["created"] is True
    [enrollment] = body["enrollments"]
    assert (
        enrollment["status"] == "started"
        and enrollment["workflow_id"] == f"welcome-{body['lead']['id']}"
    )
    if live.settings.double_opt_in:
        assert body["lead"]["consents"]["email"] == "pending"
        await confirm(live, email.lower())
    return body["lead"]["id"], email.lower()


async def welcome_mail(live: LiveStack, email: str):
    [mail] = await live.sink.wait_for_mail(to=email, subject_contains="Welcome to")
    return mail


async def journey_when(live: LiveStack, lead_id: str, predicate, timeout: float = 10.0) -> dict:
    """Poll GET /leads/{id}/journeys/welcome until the predicate holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await live.http.get(f"/leads/{lead_id}/journeys/welcome")
        assert response.status_code == 200, response.text
        state = response.json()
        if predicate(state):
            return state
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"journey never reached the expected state; last: {state}")
        await asyncio.sleep(0.05)


def links(html: str, kind: str) -> list[str]:
    return re.findall(rf'(?:src|href)="(http://127\.0\.0\.1:\d+/t/{kind}/[^"]+)"', html)


async def test_enroll_over_http_then_the_pixel_hit_advances_the_journey(live: LiveStack):
    lead_id, email = await enroll(live)
    mail = await welcome_mail(live, email)
    assert mail.subject == "Welcome to Relance, Grace!"
    await journey_when(live, lead_id, lambda s: s["step"] == "waiting_for_open")

    [pixel] = links(mail.html, "o")
    response = await live.public.get(pixel)
    assert response.status_code == 200 and response.headers["content-type"] == "image/gif"
    assert len(response.content) == 43 and "no-store" in response.headers["cache-control"]

    state = await journey_when(live, lead_id, lambda s: s["opened"])
    assert (
        state["status"] == "RUNNING"
        and state["step"] == "waiting_for_click"
        and not state["clicked"]
    )
    # The messages are the journey's own, as its status query has them (times and all).
    raw = await live.temporal.get_workflow_handle(f"welcome-{lead_id}").query("status")
    assert state["messages"] == raw["messages"] and raw["messages"][-1]["step"] == "welcome"
    confirmation, message = (await live.http.get(f"/leads/{lead_id}/messages")).json()
    assert (
        confirmation["step"].startswith("confirm-")
        and confirmation["template"] == "welcome_confirm"
    )
    assert (confirmation["kind"], confirmation["opened_at"]) == ("transactional", None)
    assert message["status"] == "sent" and message["opened_at"] is not None

    # The open scores email_opened once per message (config/scoring.yaml), a second hit nothing
    # more.
    rules = live.settings.scoring_rules().events
    assert (await live.public.get(pixel)).status_code == 200
    hits = await settled_hits(live.engine, lead_id, kind="opened", count=2)
    assert [h.delivery_note for h in hits if h.kind == "opened"][1].startswith(
        "not signalled: the journey was told"
    )
    # A third open, settled in a later batch than the second: by then the outbox has scored
    # whatever the second would have made it score.
    assert (await live.public.get(pixel)).status_code == 200
    await settled_hits(live.engine, lead_id, kind="opened", count=3)
    assert (await live.http.get(f"/leads/{lead_id}")).json()["score"] == rules[
        "form_submitted"
    ] + rules["email_opened"]

    # The Temporal UI finds the journey by its search attributes.
    found = [
        wf.id
        async for wf in live.temporal.list_workflows(
            f'Journey = "welcome" AND LeadId = "{lead_id}"'
        )
    ]
    assert found == [f"welcome-{lead_id}"]


async def test_a_click_redirects_to_the_signed_destination_and_raises_the_score(live: LiveStack):
    lead_id, email = await enroll(live)
    mail = await welcome_mail(live, email)
    click = links(mail.html, "c")[0]

    response = await live.public.get(click)
    assert response.status_code == 302
    assert response.headers["location"] == "https://example.com/guides/first-journey"

    state = await journey_when(live, lead_id, lambda s: s["status"] == "COMPLETED")
    rules = live.settings.scoring_rules().events  # the sign-up form, then the click
    assert (
        state["result"]["outcome"] == "clicked"
        and state["score"] == rules["form_submitted"] + rules["email_clicked"]
    )
    lead = (await live.http.get(f"/leads/{lead_id}")).json()
    assert (
        lead["score"] == rules["form_submitted"] + rules["email_clicked"]
        and lead["last_activity_at"] is not None
    )


async def test_tampered_or_forged_tokens_signal_nothing_and_redirect_nowhere(live: LiveStack):
    lead_id, email = await enroll(live)
    mail = await welcome_mail(live, email)
    [pixel] = links(mail.html, "o")
    click = links(mail.html, "c")[0]
    pixel_token, click_token = pixel.rsplit("/", 1)[1], click.rsplit("/", 1)[1]

    def tamper(token: str) -> str:
        middle = len(token) // 3
        return token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]

    response = await live.public.get(f"/t/o/{tamper(pixel_token)}")
    assert response.status_code == 200 and response.headers["content-type"] == "image/gif"
    for bad in (tamper(click_token), pixel_token, "not-a-token", click_token + "x"):
        response = await live.public.get(f"/t/c/{bad}")
        assert response.status_code == 404 and "location" not in response.headers, bad

    # A click is stored before it is answered, and hits are stored in the order they arrive: once
    # the last bad click is answered, a wrongly kept hit (the bad open's too) is in the outbox.
    # Once the outbox has settled everything of the lead's, a wrong signal would have been sent.
    kept = await settled_hits(live.engine, lead_id, count=1)
    assert [e.kind for e in kept] == ["email_confirmed"]  # the confirmation only
    state = await journey_when(live, lead_id, lambda s: s["step"] == "waiting_for_open")
    assert not state["opened"] and not state["clicked"]
    assert not {"opened", "clicked"} & set(
        await signals_received(live.temporal, f"welcome-{lead_id}")
    )


async def test_enrolling_twice_answers_409_with_the_running_journey(live: LiveStack):
    lead_id, _ = await enroll(live)
    response = await live.http.post(f"/leads/{lead_id}/journeys/welcome")
    assert response.status_code == 409
    body = response.json()
    assert (
        body["workflow_id"] == f"welcome-{lead_id}"
        and "already in the welcome journey" in body["detail"]
    )


async def test_signing_up_again_updates_the_same_lead(live: LiveStack):
    email = new_email()
    first = await live.http.post("/leads", json=sign_up_body(email))
    again = await live.http.post("/leads", json=sign_up_body(email.upper(), first_name="G."))
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["lead"]["id"] == first.json()["lead"]["id"]
    assert again.json()["lead"]["first_name"] == "G."
    assert (
        again.json()["lead"]["consents"]["email"] == "pending"
    )  # double opt-in: not confirmed yet


def unsubscribe_url(mail) -> str:
    header = mail.message["List-Unsubscribe"]
    return re.search(r"<(http[^>]+/u/[^>]+)>", header).group(1)


async def test_one_click_unsubscribe_withdraws_consent_and_ends_the_journey(live: LiveStack):
    lead_id, email = await enroll(live)
    mail = await welcome_mail(live, email)
    url = unsubscribe_url(mail)

    page = await live.public.get(url)
    assert page.status_code == 200 and "<form method='post'" in page.text
    response = await live.public.post(
        url,
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200 and "unsubscribed" in response.text  # RFC 8058: no redirect
    again = await live.public.post(url, content=b"List-Unsubscribe=One-Click")
    assert again.status_code == 200

    state = await journey_when(live, lead_id, lambda s: s["status"] == "COMPLETED")
    assert state["result"]["outcome"] == "unsubscribed" and state["result"]["relanced_by"] is None
    assert (await live.http.get(f"/leads/{lead_id}")).json()["consents"]["email"] == "withdrawn"
    with Session(live.engine) as session:
        rows = session.exec(
            select(Consent).where(Consent.lead_id == lead_id).order_by(Consent.id)
        ).all()
    assert [r.status for r in rows] == [
        "pending",
        "granted",
        "withdrawn",
    ]  # twice clicked, recorded once


async def test_a_tampered_unsubscribe_link_changes_nothing(live: LiveStack):
    lead_id, email = await enroll(live)
    mail = await welcome_mail(live, email)
    url = unsubscribe_url(mail)
    forged = url[:-6] + ("AAAAAA" if not url.endswith("AAAAAA") else "BBBBBB")

    assert (await live.public.get(forged)).status_code == 404
    response = await live.public.post(forged, content=b"List-Unsubscribe=One-Click")
    assert response.status_code == 404 and "location" not in response.headers
    assert (await live.http.get(f"/leads/{lead_id}")).json()["consents"]["email"] == "granted"


async def test_many_concurrent_enrollments_all_succeed(live: LiveStack):
    """More concurrent sign-ups than the database pool has connections (15): none may wait on
    another's session while it awaits Temporal."""
    responses = await asyncio.wait_for(
        asyncio.gather(
            *(
                live.http.post("/leads", json=sign_up_body(new_email(), journeys=["welcome"]))
                for _ in range(40)
            )
        ),
        timeout=30,
    )
    assert [r.status_code for r in responses] == [201] * 40
    ids = {r.json()["enrollments"][0]["workflow_id"] for r in responses}
    assert len(ids) == 40
