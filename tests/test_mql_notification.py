"""Crossing the MQL threshold notifies sales once per crossing: a CRM webhook (HMAC-signed body,
retried with backoff against a real local HTTP server that fails first) and an internal email
(real SMTP sink). Falling below and crossing again notifies again."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from sqlmodel import Session, col, select

from relance.dev.seeding import unique_id
from relance.dev.serving import ServedApp
from relance.domain.models import Lead, MqlNotification, utcnow
from relance.domain.scoring import apply_score
from relance.services.mql import DELIVERY_HEADER, SIGNATURE_HEADER, MqlNotifier, verify
from tests.conftest import EMAIL_CONSENT

SECRET = "crm-shared-secret"


class Crm:
    """A CRM endpoint that answers 503 to the first ``failures`` calls of each delivery, then 200.
    (Other tests' leads may cross too, on the shared database: ``calls`` keeps them apart.)"""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.all: list[tuple[bytes, dict]] = []
        self.app = FastAPI()

        @self.app.post("/hooks/mql")
        async def hook(request: Request) -> Response:
            self.all.append((await request.body(), dict(request.headers)))
            tries = sum(
                1
                for _, h in self.all
                if h.get("x-relance-delivery") == request.headers.get("x-relance-delivery")
            )
            return Response(status_code=503 if tries <= self.failures else 200)

    def calls(self, lead_id: str) -> list[tuple[bytes, dict]]:
        return [(b, h) for b, h in self.all if json.loads(b)["lead"]["id"] == lead_id]


@pytest.fixture
async def crm():
    crm = Crm(failures=2)
    served = ServedApp(crm.app)
    await served.start()
    crm.url = f"{served.url}/hooks/mql"
    yield crm
    await served.stop()


def new_lead(engine, score: int = 40) -> str:
    with Session(engine) as session:
        lead = Lead(
            email=f"{unique_id('mql')}@example.com", first_name="Mia", country="FR", score=score
        )
        session.add(lead)
        session.commit()
        return lead.id


def change(engine, lead_id: str, points: int, key: str) -> None:
    with Session(engine) as session:
        apply_score(
            session,
            lead_id=lead_id,
            event="test",
            key=key,
            reason=f"test {points:+d}",
            points=points,
            mql_threshold=50,
        )
        session.commit()


def rows(engine, lead_id: str) -> list[MqlNotification]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(MqlNotification)
                .where(MqlNotification.lead_id == lead_id)
                .order_by(col(MqlNotification.created_at))
            )
        )


async def test_a_crossing_is_signed_retried_with_backoff_and_sent_once(engine, settings, crm, sink):
    notify_to = f"{unique_id('sales')}@sales.example.com"
    settings = settings.model_copy(
        update={
            "mql_webhook_url": crm.url,
            "mql_webhook_secret": SECRET,
            "mql_notify_email": notify_to,
            "mql_retry_base_seconds": 10,
        }
    )
    lead_id = new_lead(engine)
    change(engine, lead_id, 5, unique_id("k"))  # 45: below
    assert rows(engine, lead_id) == []
    change(engine, lead_id, 10, unique_id("k"))  # 55: crosses
    change(engine, lead_id, 10, unique_id("k"))  # 65: above already, no new crossing
    [row] = rows(engine, lead_id)
    assert (row.status, row.score, row.threshold) == ("pending", 55, 50)

    async with httpx.AsyncClient() as http:
        notifier = MqlNotifier(engine, settings, http=http)
        now = utcnow()
        await notifier.deliver_due(now)  # 503: retried later
        [row] = rows(engine, lead_id)
        assert row.attempts == 1 and row.status == "pending" and "503" in row.last_error
        assert (
            row.email_sent_at is not None and row.webhook_sent_at is None
        )  # the email went; only the webhook retries
        await notifier.deliver_due(now + timedelta(seconds=5))
        assert len(crm.calls(lead_id)) == 1  # not due yet
        await notifier.deliver_due(now + timedelta(seconds=10))
        assert len(crm.calls(lead_id)) == 2  # 2nd: 503 again
        await notifier.deliver_due(now + timedelta(seconds=25))
        assert len(crm.calls(lead_id)) == 2  # backoff doubled: 20 s
        await notifier.deliver_due(now + timedelta(seconds=31))
        assert len(crm.calls(lead_id)) == 3
        await notifier.deliver_due(now + timedelta(hours=2))
        assert len(crm.calls(lead_id)) == 3  # sent: never again

    [row] = rows(engine, lead_id)
    assert row.status == "sent" and row.attempts == 3 and row.last_error is None
    bodies = {body for body, _ in crm.calls(lead_id)}
    assert len(bodies) == 1  # the same body every time
    body, headers = crm.calls(lead_id)[-1]
    assert verify(SECRET, body, headers[SIGNATURE_HEADER.lower()])
    assert not verify("another secret", body, headers[SIGNATURE_HEADER.lower()])
    assert headers[DELIVERY_HEADER.lower()] == row.id
    payload = json.loads(body)
    assert (
        payload["type"] == "lead.mql"
        and payload["lead"]["id"] == lead_id
        and payload["score_at_crossing"] == 55
    )
    assert payload["lead"]["stage"] == "mql" and payload["lead"]["segment"] == "hot"
    mails = [
        m for m in await sink.wait_for_mail(to=notify_to) if lead_id.encode() in m.raw
    ]  # other tests' leads cross too
    assert len(mails) == 1 and "MQL" in mails[0].subject and "score 55" in mails[0].subject


async def test_falling_below_and_crossing_again_notifies_again(engine, settings, crm):
    crm.failures = 0
    settings = settings.model_copy(
        update={"mql_webhook_url": crm.url, "mql_webhook_secret": SECRET}
    )
    lead_id = new_lead(engine, 45)
    change(engine, lead_id, 10, unique_id("k"))  # 55: crossing 1
    change(engine, lead_id, -20, unique_id("k"))  # 35: below (a decay, a negative rule)
    change(engine, lead_id, 20, unique_id("k"))  # 55: crossing 2
    assert [r.score for r in rows(engine, lead_id)] == [55, 55]
    async with httpx.AsyncClient() as http:
        await MqlNotifier(engine, settings, http=http).deliver_due(utcnow())
    assert [r.status for r in rows(engine, lead_id)] == ["sent", "sent"]
    assert sorted(json.loads(b)["id"] for b, _ in crm.calls(lead_id)) == sorted(
        r.id for r in rows(engine, lead_id)
    )


async def test_an_endpoint_that_never_answers_ends_failed_after_the_max_attempts(engine, settings):
    settings = settings.model_copy(
        update={
            "mql_webhook_url": "http://127.0.0.1:9/nothing-listens",
            "mql_retry_max_attempts": 2,
            "mql_retry_base_seconds": 1,
        }
    )
    lead_id = new_lead(engine, 49)
    change(engine, lead_id, 1, unique_id("k"))
    async with httpx.AsyncClient() as http:
        notifier = MqlNotifier(engine, settings, http=http)
        now = utcnow()
        await notifier.deliver_due(now)
        await notifier.deliver_due(now + timedelta(seconds=2))
    [row] = rows(engine, lead_id)
    assert row.status == "failed" and row.attempts == 2 and "unreachable" in row.last_error


async def test_end_to_end_a_form_a_pricing_visit_and_a_purchase_make_one_crossing(live, crm):
    """Over HTTP with the real worker: 15 (form) + 5 (fit FR) + 10 (pricing) + 25 (purchase, scored
    by the purchase journey) = 55 crosses 50 once; the notifier tells the CRM once."""
    from tests.test_api_cart_e2e import purchase_event

    crm.failures = 1
    lead = (
        await live.http.post(
            "/leads",
            json={
                "email": f"{unique_id('e2e')}@example.com",
                "country": "FR",
                "consents": [EMAIL_CONSENT],
            },
        )
    ).json()["lead"]
    for _ in range(3):  # pricing page views the same day count once
        await live.http.post(
            "/events/track",
            json={
                "type": "page_view",
                "lead": lead["id"],
                "url": "https://shop.example.com/pricing",
            },
        )
    assert (await live.http.get(f"/leads/{lead['id']}")).json()["score"] == 30 and rows(
        live.engine, lead["id"]
    ) == []
    order = unique_id("o")
    assert (
        await live.http.post("/events/track", json=purchase_event(lead["id"], order))
    ).status_code == 202
    await live.temporal.get_workflow_handle(f"purchase-{order}").result()
    shown = (await live.http.get(f"/leads/{lead['id']}")).json()
    assert (shown["score"], shown["segment"], shown["stage"]) == (55, "hot", "customer")
    [row] = rows(live.engine, lead["id"])
    assert row.score == 55 and "purchase" in row.reason

    settings = live.settings.model_copy(
        update={
            "mql_webhook_url": crm.url,
            "mql_webhook_secret": SECRET,
            "mql_retry_base_seconds": 1,
        }
    )
    async with httpx.AsyncClient() as http:
        notifier = MqlNotifier(live.engine, settings, http=http)
        await notifier.deliver_due(utcnow())
        await notifier.deliver_due(utcnow() + timedelta(seconds=2))
        await notifier.deliver_due(utcnow() + timedelta(seconds=60))
    [row] = rows(live.engine, lead["id"])
    assert row.status == "sent" and row.attempts == 2
    calls = crm.calls(lead["id"])
    assert (
        len(calls) == 2 and len({body for body, _ in calls}) == 1
    )  # one failure, one delivery, same body
    assert verify(SECRET, calls[-1][0], calls[-1][1]["x-relance-signature"])
