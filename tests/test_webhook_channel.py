"""The webhook channel: a journey message as a signed JSON POST to the configured receiver (a
WhatsApp or push gateway, a Zapier-like automation), through the send ledger like email and SMS.

A real local HTTP receiver (FastAPI on a real port) answers what each test tells it to; the
welcome journey runs on the time-skipping server with the real activities, and relances on the
best channel the lead accepts, webhook first.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict

import pytest
from fastapi import FastAPI, Request, Response
from sqlmodel import Session, select
from temporalio.client import Client

from relance.contracts.channels import CHANNELS, CONSENT_CHANNELS, NAMES
from relance.dev.serving import ServedApp
from relance.domain.models import Message
from relance.domain.webhook_signing import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    verify,
)
from tests.conftest import EMAIL_CONSENT, LiveStack, unique_id
from tests.waiting import eventually
from worker import build_worker
from workflows.welcome import WelcomeInput, WelcomeJourney, WelcomeResult

SECRET = "gateway-shared-secret"
BEST_FIRST = ["webhook", "sms", "email"]


class Receiver:
    """A gateway: records every POST; answers each lead's calls with the statuses a test queued
    for that lead (``answer``), then 200 with its own id."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, dict]] = []
        self.queued: dict[str, list[int]] = defaultdict(list)
        self.app = FastAPI()

        @self.app.post("/hooks/messages")
        async def hook(request: Request) -> Response:
            body = await request.body()
            self.calls.append((body, dict(request.headers)))
            queued = self.queued[json.loads(body)["lead_id"]]
            if queued:
                return Response(status_code=queued.pop(0), content=b"not now")
            return Response(
                content=json.dumps({"id": f"gw-{len(self.calls)}"}),
                media_type="application/json",
            )

    def answer(self, lead_id: str, *statuses: int) -> None:
        self.queued[lead_id].extend(statuses)

    def of(self, lead_id: str) -> list[tuple[dict, dict]]:
        return [(json.loads(b), h) for b, h in self.calls if json.loads(b)["lead_id"] == lead_id]

    def raw_of(self, lead_id: str) -> list[tuple[bytes, dict]]:
        return [(b, h) for b, h in self.calls if json.loads(b)["lead_id"] == lead_id]


@pytest.fixture(scope="module")
async def receiver():
    receiver = Receiver()
    served = ServedApp(receiver.app)
    await served.start()
    receiver.url = f"{served.url}/hooks/messages"
    yield receiver
    await served.stop()


@pytest.fixture
def webhook_settings(settings, receiver):
    return settings.model_copy(
        update={
            "webhook_url": receiver.url,
            "webhook_secret": SECRET,
            "temporal_task_queue": unique_id("webhook"),
        }
    )


@pytest.fixture
async def worker(client, webhook_settings, engine):
    async with build_worker(client, webhook_settings, engine) as running:
        yield running


async def relance(client: Client, settings, lead, channels=BEST_FIRST) -> WelcomeResult:
    """A welcome journey whose email is never opened: it ends after relancing."""
    return await client.execute_workflow(
        WelcomeJourney.run,
        WelcomeInput(lead_id=lead.id, relance_channels=channels),
        id=unique_id(f"welcome-{lead.id}"),
        task_queue=settings.temporal_task_queue,
    )


def rows(engine, lead_id: str) -> list[Message]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(Message).where(Message.lead_id == lead_id).order_by(Message.created_at)
            )
        )


async def test_a_lead_who_accepts_the_webhook_is_relanced_through_it_once_signed(
    client, webhook_settings, worker, engine, receiver, make_lead, sink
):
    lead = make_lead(consents=("email", "webhook"), phone="+33612000001")
    result = await relance(client, webhook_settings, lead)

    assert result.relanced_by == "webhook"
    assert [(m.step, m.channel, m.status) for m in result.messages] == [
        ("welcome", "email", "sent"),
        ("relance_webhook", "webhook", "sent"),
    ]
    [(raw, headers)] = receiver.raw_of(lead.id)
    assert verify(
        SECRET,
        raw,
        headers[SIGNATURE_HEADER.lower()],
        headers[TIMESTAMP_HEADER.lower()],
        tolerance_seconds=300,
    )
    assert not verify("another-secret", raw, headers[SIGNATURE_HEADER.lower()], time.time())
    payload = json.loads(raw)
    row = next(r for r in rows(engine, lead.id) if r.channel == "webhook")
    assert payload["delivery_id"] == payload["message_id"] == headers[DELIVERY_HEADER.lower()]
    assert payload["message_id"] == row.id == result.messages[1].message_id
    assert (payload["template"], payload["subject"]) == (
        "welcome_relance",
        "Ada, did you see your welcome guide?",
    )
    assert f"{webhook_settings.public_base_url}/t/c/" in payload["body"]  # the link is tracked
    assert payload["unsubscribe_url"].startswith(f"{webhook_settings.public_base_url}/u/")
    assert "email" not in payload and "phone" not in payload  # the receiver knows the lead by id
    assert (row.status, row.subject, row.provider_id, row.attempts) == (
        "sent",
        payload["subject"],
        "gw-" + str(receiver.calls.index((raw, headers)) + 1),
        1,
    )
    assert len(sink.mails_to(lead.email)) == 1  # the welcome only: no email relance besides


async def test_a_500_is_retried_and_delivered_once_under_the_same_delivery_id(
    client, webhook_settings, worker, engine, receiver, make_lead
):
    lead = make_lead(consents=("email", "webhook"))
    receiver.answer(lead.id, 500, 503)
    result = await relance(client, webhook_settings, lead)

    assert result.relanced_by == "webhook"
    calls = receiver.of(lead.id)
    assert len(calls) == 3
    assert len({h[DELIVERY_HEADER.lower()] for _, h in calls}) == 1  # one delivery, retried
    [row] = [r for r in rows(engine, lead.id) if r.channel == "webhook"]
    assert row.status == "sent" and row.attempts == 3
    assert row.reason.startswith("sent on attempt 3;") and "answered 503" in row.reason, row.reason


async def test_a_400_fails_the_message_for_good_and_the_relance_falls_to_the_next_channel(
    client, webhook_settings, worker, engine, receiver, make_lead, sink
):
    lead = make_lead(consents=("email", "webhook"))  # no phone: SMS is passed over
    receiver.answer(lead.id, 400)
    result = await relance(client, webhook_settings, lead)

    assert len(receiver.of(lead.id)) == 1  # never retried
    assert result.relanced_by == "email"
    by_step = {r.step: r for r in rows(engine, lead.id)}
    assert by_step["relance_webhook"].status == "failed"
    assert "refused: 400" in by_step["relance_webhook"].reason
    assert by_step["relance_email"].status == "sent"
    assert len(await sink.wait_for_mail(to=lead.email, count=2)) == 2


async def test_without_webhook_consent_nothing_is_posted(
    client, webhook_settings, worker, engine, receiver, make_lead
):
    """Preferred but not granted: the journey passes it over. Asked for as the only channel:
    the send ledger refuses it (recorded skipped) and nothing reaches the receiver."""
    passed_over = make_lead(consents=("email",))
    result = await relance(client, webhook_settings, passed_over)
    assert result.relanced_by == "email"
    assert [m.step for m in result.messages] == ["welcome", "relance_email"]

    only_webhook = make_lead(consents=("email",))
    result = await relance(client, webhook_settings, only_webhook, channels=["webhook"])
    assert result.relanced_by is None
    [row] = [r for r in rows(engine, only_webhook.id) if r.channel == "webhook"]
    assert (row.status, row.reason) == ("skipped", "no marketing consent for webhook")
    assert receiver.of(passed_over.id) == [] and receiver.of(only_webhook.id) == []


async def test_without_a_receiver_configured_the_webhook_send_is_skipped(
    client, settings, engine, make_lead
):
    own = settings.model_copy(update={"temporal_task_queue": unique_id("no-webhook")})
    lead = make_lead(consents=("email", "webhook"))
    async with build_worker(client, own, engine):
        result = await relance(client, own, lead)
    assert result.relanced_by == "email"
    by_step = {r.step: r for r in rows(engine, lead.id)}
    assert by_step["relance_webhook"].status == "skipped"
    assert by_step["relance_webhook"].reason == "no webhook receiver is configured"


async def test_lead_data_is_json_escaped_text_never_a_field_or_code(
    client, webhook_settings, worker, receiver, make_lead
):
    name = 'Eve","lead_id":"someone-else","x":"{{ 7 * 7 }}\nhttps://evil.example/login'
    lead = make_lead(consents=("email", "webhook"), first_name=name)
    await relance(client, webhook_settings, lead)

    [(payload, _)] = receiver.of(lead.id)
    assert payload["lead_id"] == lead.id and "x" not in payload
    assert '"lead_id":"someone-else","x":"{{ 7 * 7 }}' in payload["body"]  # as written
    # not evaluated: where the expression was written, no 49 (a signed link may hold the digits)
    assert '"x":"49' not in payload["body"]
    assert "https://evil.example/login" in payload["body"]  # text, not a tracked redirect
    assert "\n" not in payload["subject"]


def test_a_signature_is_over_the_timestamp_and_the_body():
    body = b'{"type":"message"}'
    signature = sign(SECRET, body, 1_700_000_000)
    assert verify(SECRET, body, signature, "1700000000")
    assert not verify(SECRET, body, signature, "1700000001")  # another time: another signature
    assert not verify(SECRET, body + b" ", signature, 1_700_000_000)
    assert not verify(SECRET, body, signature, 1_700_000_000, tolerance_seconds=300)  # too old
    assert signature != sign(SECRET, body)  # the MQL webhook's: the body alone


def test_every_channel_has_a_provider_and_templates(settings, engine):
    from pathlib import Path

    from activities import build_activities

    registered = {a.__name__ for a in build_activities(settings, engine)}
    assert {c.activity for c in CHANNELS} <= registered
    templates = Path(__file__).resolve().parent.parent / "templates"
    for c in CHANNELS:
        assert (templates / c.template_dir / f"welcome_relance{c.template_suffix}").is_file(), c


async def test_the_api_takes_and_shows_webhook_consent_and_messages(
    live: LiveStack, client, webhook_settings, worker, receiver, make_lead
):
    """The API's enums come from the channel list: OpenAPI says so, a consent on the webhook is
    taken, an unknown channel is a 422, and a webhook message is listed like any other. Its
    unsubscribe link withdraws the webhook consent, not the email one."""
    schemas = (await live.http.get("/openapi.json")).json()["components"]["schemas"]
    assert schemas["ConsentIn"]["properties"]["channel"]["enum"] == list(CONSENT_CHANNELS)
    assert schemas["MessagePublic"]["properties"]["channel"]["enum"] == list(NAMES)

    webhook_consent = {**EMAIL_CONSENT, "channel": "webhook"}
    refused = await live.http.post(
        "/leads",
        json={
            "email": f"{unique_id('fax')}@example.com",
            "consents": [{**webhook_consent, "channel": "fax"}],
        },
    )
    assert refused.status_code == 422, refused.text
    created = await live.http.post(
        "/leads",
        json={"email": f"{unique_id('hook')}@example.com", "consents": [webhook_consent]},
    )
    assert created.status_code == 201, created.text
    assert created.json()["lead"]["consents"]["webhook"] == "granted"

    lead = make_lead(consents=("email", "webhook"))
    await relance(client, webhook_settings, lead)
    messages = (await live.http.get(f"/leads/{lead.id}/messages")).json()
    assert {(m["step"], m["channel"], m["status"]) for m in messages} == {
        ("welcome", "email", "sent"),
        ("relance_webhook", "webhook", "sent"),
    }

    [(payload, _)] = receiver.of(lead.id)
    path = "/u/" + payload["unsubscribe_url"].rpartition("/u/")[2]
    answer = await live.public.post(path, content=b"List-Unsubscribe=One-Click")
    assert answer.status_code < 300, answer.text

    async def consents() -> dict | None:
        current = (await live.http.get(f"/leads/{lead.id}")).json()["consents"]
        return current if current["webhook"] == "withdrawn" else None

    current = await eventually(consents, timeout=20, what="the webhook consent withdrawn")
    assert current["email"] == "granted"
