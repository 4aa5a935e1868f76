"""A granted marketing consent is kept as proof (GDPR art. 7(1)): through the API it needs where it
was given (``source_url``) and the wording shown (``wording_version``), its time being the
server's; a CSV row needs the same and its own ``consented_at``. A consent without them is
refused with a 422 naming what is missing, and nothing is stored. The browser's IP and user
agent are kept when given, not required (a server-side integration has no browser)."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from relance.dev.seeding import unique_id
from relance.domain.models import Consent, Lead
from tests.conftest import LiveStack
from tests.test_api_bad_input import counts
from tests.test_lists_import import csv_file

SOURCE = "https://example.com/newsletter"


def sign_up(*consents: dict) -> dict:
    return {"email": f"{unique_id('proof')}@example.com", "consents": list(consents)}


@pytest.mark.parametrize(
    "consent,missing",
    [
        ({"channel": "email"}, "source_url, wording_version"),
        ({"channel": "email", "source_url": SOURCE}, "wording_version"),
        ({"channel": "sms", "wording_version": "2026-01"}, "source_url"),
        ({"channel": "email", "source_url": SOURCE, "wording_version": ""}, "wording_version"),
    ],
)
async def test_a_marketing_consent_without_its_proof_is_refused_naming_what_is_missing(
    live: LiveStack, consent: dict, missing: str
):
    before = counts(live)
    response = await live.http.post("/leads", json=sign_up(consent))
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"][:3] == ["body", "consents", 0]
    # the field's name, in the message or as the place of the error
    said = f"{error['loc']} {error['msg']}"
    assert all(name in said for name in missing.split(", ")), said
    assert counts(live) == before  # no lead, no consent with null evidence


async def test_a_server_side_consent_with_its_proof_is_stored_without_a_browser(live: LiveStack):
    body = sign_up({"channel": "email", "source_url": SOURCE, "wording_version": "2026-01"})
    response = await live.http.post("/leads", json=body)
    assert response.status_code == 201, response.text
    [consent] = (await live.http.get(f"/leads/{response.json()['lead']['id']}/consents")).json()
    assert (consent["status"], consent["source_url"], consent["wording_version"]) == (
        "granted",
        SOURCE,
        "2026-01",
    )
    assert consent["recorded_at"] and consent["ip"] is None and consent["user_agent"] is None


async def test_a_withdrawal_needs_no_proof(live: LiveStack):
    response = await live.http.post("/leads", json=sign_up({"channel": "email", "granted": False}))
    assert response.status_code == 201, response.text
    [consent] = (await live.http.get(f"/leads/{response.json()['lead']['id']}/consents")).json()
    assert consent["status"] == "withdrawn"


async def test_a_csv_consent_needs_the_same_proof_and_its_own_time(live: LiveStack):
    no_wording, complete = f"{unique_id('csv')}@example.com", f"{unique_id('csv')}@example.com"
    text = (
        "\n".join(
            [
                "email,consent,source_url,consented_at,wording_version",
                f"{no_wording},email,{SOURCE},2026-03-01T10:00:00Z,",
                f"{complete},email,{SOURCE},2026-03-01T10:00:00Z,v3",
            ]
        )
        + "\n"
    )
    report = (await live.http.post("/leads/import", files=csv_file(text))).json()
    assert report["created"] == 1
    [rejected] = report["rejected"]
    assert rejected["email"] == no_wording and "wording_version" in rejected["reason"]
    with Session(live.engine) as session:
        assert session.exec(select(Lead).where(Lead.email == no_wording)).first() is None
        lead = session.exec(select(Lead).where(Lead.email == complete)).one()
        [consent] = session.exec(select(Consent).where(Consent.lead_id == lead.id)).all()
        assert consent.wording_version == "v3"
