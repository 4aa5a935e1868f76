"""The public links of an email, over HTTP on the live API: each is accepted only as it was
written, the confirmation link's GET (what a corporate link scanner does) confirms nothing, and a
HEAD answers like the GET without acting (a HEAD is never an open, a click, an unsubscribe or a
confirmation).

Negative checks wait on an event, not on time: clicks, unsubscribes and confirmations are
answered once stored; an open is stored a moment later, in the recorder's next group commit,
which commits in arrival order — so once a later click is answered, every open before it is in.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from relance.domain.models import Message, TrackingEvent
from tests.conftest import LiveStack
from tests.test_api_welcome_e2e import (
    CONFIRMATION_SUBJECT,
    confirm_link,
    double_opt_in,  # noqa: F401 (fixture)
    links,
    new_email,
    press_confirm,
    sign_up_body,
    unsubscribe_url,
    welcome_mail,
)

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def spellings(url: str) -> dict[str, str]:
    """The same link written differently, as it reaches the server (percent-encoded)."""
    last = ALPHABET.index(url[-1])
    return {
        "padding": url + "=",
        "double padding": url + "==",
        "%FF": url + "%FF",
        "an emoji": url + "%F0%9F%98%80",
        "an emoji in the signature": url[:-3] + "%F0%9F%98%80" + url[-3:],
        "the signature's last character bumped (its unused bit)": url[:-1] + ALPHABET[last ^ 1],
    }


async def sign_up_pending(live: LiveStack) -> tuple[str, str]:
    email = new_email()
    response = await live.http.post("/leads", json=sign_up_body(email, journeys=["welcome"]))
    assert response.status_code == 201, response.text
    assert response.json()["lead"]["consents"]["email"] == "pending"
    return response.json()["lead"]["id"], email.lower()


async def email_consent(live: LiveStack, lead_id: str) -> str:
    return (await live.http.get(f"/leads/{lead_id}")).json()["consents"]["email"]


def hits_on(live: LiveStack, message_id: str) -> list[str]:
    with Session(live.engine) as session:
        rows = session.exec(
            select(TrackingEvent.kind)
            .where(TrackingEvent.message_id == message_id)
            .order_by(col(TrackingEvent.id))
        ).all()
    return list(rows)


def message_of(live: LiveStack, lead_id: str, step: str) -> str:
    with Session(live.engine) as session:
        return session.exec(
            select(Message.id).where(Message.lead_id == lead_id, col(Message.step).startswith(step))
        ).one()


async def test_a_link_written_any_other_way_does_nothing_on_every_kind_of_public_link(
    double_opt_in: LiveStack,
):
    live = double_opt_in
    lead_id, email = await sign_up_pending(live)
    [confirmation] = await live.sink.wait_for_mail(to=email, subject_contains=CONFIRMATION_SUBJECT)
    confirm_url = confirm_link(confirmation)

    # Confirm: neither the page nor its button accepts another spelling; the consent stays pending.
    for variant, url in spellings(confirm_url).items():
        for method in ("GET", "POST"):
            response = await live.public.request(method, url)
            assert response.status_code == 404 and "not valid" in response.text, (variant, method)
    assert await email_consent(live, lead_id) == "pending"
    assert (
        await press_confirm(live, confirm_url)
    ).status_code == 200  # the link as written still works
    assert await email_consent(live, lead_id) == "granted"

    mail = await welcome_mail(live, email)
    [pixel] = links(mail.html, "o")
    click = links(mail.html, "c")[0]
    unsubscribe = unsubscribe_url(mail)
    welcome = message_of(live, lead_id, "welcome")

    # Open: the GIF is served either way (mail clients get no error), but only the real link counts.
    for variant, url in spellings(pixel).items():
        response = await live.public.get(url)
        assert response.status_code == 200 and response.headers["content-type"] == "image/gif", (
            variant
        )
    # Click: 404, redirected nowhere.
    for variant, url in spellings(click).items():
        response = await live.public.get(url)
        assert response.status_code == 404 and "location" not in response.headers, variant
    # Unsubscribe: neither the page nor the one-click POST accepts another spelling.
    for variant, url in spellings(unsubscribe).items():
        assert (await live.public.get(url)).status_code == 404, variant
        response = await live.public.post(
            url,
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 404 and "not valid" in response.text, variant
    assert await email_consent(live, lead_id) == "granted"

    # The real click, answered once stored, comes after every open above: none of them was kept.
    assert (await live.public.get(click)).status_code == 302
    assert hits_on(live, welcome) == ["clicked"]
    response = await live.public.post(
        unsubscribe,
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200 and await email_consent(live, lead_id) == "withdrawn"


async def test_opening_the_confirmation_link_confirms_nothing_pressing_its_button_does(
    double_opt_in: LiveStack,
):
    """A mail security gateway opens every link of an incoming email before the person does."""
    live = double_opt_in
    lead_id, email = await sign_up_pending(live)
    [confirmation] = await live.sink.wait_for_mail(to=email, subject_contains=CONFIRMATION_SUBJECT)
    url = confirm_link(confirmation)

    for _ in range(3):
        page = await live.public.get(url, headers={"user-agent": "Mimecast link scanner"})
        assert page.status_code == 200 and "Yes, subscribe me" in page.text
        assert "location" not in page.headers
    # The GET stored nothing (a confirmation would have been committed before the page was
    # answered).
    assert await email_consent(live, lead_id) == "pending"
    assert hits_on(live, message_of(live, lead_id, "confirm-")) == []

    response = await press_confirm(live, url, "Mozilla/5.0 (the lead)")
    assert response.status_code == 200 and "your subscription is confirmed" in response.text
    assert "location" not in response.headers  # a page on this site, not a redirect
    assert await email_consent(live, lead_id) == "granted"
    consents = (await live.http.get(f"/leads/{lead_id}/consents")).json()
    assert [(c["status"], c["user_agent"]) for c in consents][-1] == (
        "granted",
        "Mozilla/5.0 (the lead)",
    )
    assert "Welcome to" in (await welcome_mail(live, email)).subject


def same_answer(head, get) -> None:
    assert head.status_code == get.status_code
    assert head.content == b""
    for name in ("content-type", "content-length", "cache-control", "location"):
        assert head.headers.get(name) == get.headers.get(name), name


async def test_head_answers_like_get_on_every_public_link_and_acts_on_none(
    double_opt_in: LiveStack,
):
    live = double_opt_in
    lead_id, email = await sign_up_pending(live)
    [confirmation] = await live.sink.wait_for_mail(to=email, subject_contains=CONFIRMATION_SUBJECT)
    confirm_url = confirm_link(confirmation)

    head = await live.public.head(confirm_url)
    assert head.status_code == 200
    assert await email_consent(live, lead_id) == "pending"  # a HEAD is not a confirmation
    same_answer(head, await live.public.get(confirm_url))
    assert (await live.public.head(confirm_url[:-4] + "AAAA")).status_code == 404
    await press_confirm(live, confirm_url)

    mail = await welcome_mail(live, email)
    [pixel] = links(mail.html, "o")
    click = links(mail.html, "c")[0]
    unsubscribe = unsubscribe_url(mail)
    welcome = message_of(live, lead_id, "welcome")

    heads = {
        name: await live.public.head(url)
        for name, url in (("pixel", pixel), ("click", click), ("unsubscribe", unsubscribe))
    }
    assert {name: r.status_code for name, r in heads.items()} == {
        "pixel": 200,
        "click": 302,
        "unsubscribe": 200,
    }
    assert heads["click"].headers["location"] == "https://example.com/guides/first-journey"
    assert (await live.public.head(click + "x")).status_code == 404
    assert await email_consent(live, lead_id) == "granted"  # a HEAD is not an unsubscribe

    # The GETs after: the same answers, and they are the only hits kept (the click, answered once
    # stored, comes after the open, so the open is in too).
    same_answer(heads["pixel"], await live.public.get(pixel))
    same_answer(heads["click"], await live.public.get(click))
    same_answer(heads["unsubscribe"], await live.public.get(unsubscribe))
    assert hits_on(live, welcome) == ["opened", "clicked"]
    assert await email_consent(live, lead_id) == "granted"
