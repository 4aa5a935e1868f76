"""Custom lead attributes and custom events, as a CRM engineer uses them: declared once in the
lead schema (config/lead_schema.yaml), set at sign-up or later, checked on every write, told by
the site, kept once, exported and erased with the lead."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from relance.domain.lead_schema import LeadSchemaError, load_lead_schema
from relance.domain.models import CustomEvent, Lead
from relance.domain.settings import Settings
from tests.conftest import EMAIL_CONSENT, LiveStack


def email() -> str:
    return f"attrs-{uuid.uuid4().hex[:10]}@example.com"


async def sign_up(live: LiveStack, **extra) -> dict:
    answer = await live.http.post(
        "/leads", json={"email": email(), "consents": [EMAIL_CONSENT], **extra}
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["lead"]


def stored(live: LiveStack, lead_id: str) -> dict:
    with Session(live.engine) as session:
        return session.get(Lead, lead_id).attributes


def events_of(live: LiveStack, lead_id: str) -> list[CustomEvent]:
    with Session(live.engine) as session:
        return list(session.exec(select(CustomEvent).where(CustomEvent.lead_id == lead_id)))


async def test_attributes_set_at_sign_up_merged_later_and_removed_by_null(live: LiveStack):
    lead = await sign_up(live, attributes={"plan": "pro", "birthday": "1990-04-12"})
    assert lead["attributes"] == {"plan": "pro", "birthday": "1990-04-12"}

    changed = await live.http.patch(
        f"/leads/{lead['id']}/attributes", json={"company_size": 40, "birthday": None}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["attributes"] == {"plan": "pro", "company_size": 40}
    assert stored(live, lead["id"]) == {"plan": "pro", "company_size": 40}

    # the same address signing up again keeps what it does not mention
    again = await live.http.post(
        "/leads", json={"email": lead["email"], "attributes": {"job_title": "CMO"}}
    )
    assert again.status_code == 200, again.text
    assert again.json()["lead"]["attributes"] == {
        "plan": "pro",
        "company_size": 40,
        "job_title": "CMO",
    }


@pytest.mark.parametrize(
    ("values", "attribute", "says"),
    [
        ({"plan": "platinum"}, "plan", "expected one of free, starter, pro, enterprise"),
        ({"birthday": "12/04/1990"}, "birthday", "YYYY-MM-DD"),
        ({"birthday": "1990-02-30"}, "birthday", "YYYY-MM-DD"),
        ({"company_size": "forty"}, "company_size", "expected a number"),
        ({"company_size": True}, "company_size", "expected a number"),
        ({"favourite_colour": "blue"}, "favourite_colour", "no such attribute"),
    ],
)
async def test_a_wrong_attribute_is_refused_naming_it_and_nothing_changes(
    live: LiveStack, values, attribute, says
):
    lead = await sign_up(live, attributes={"plan": "free"})
    answer = await live.http.patch(
        f"/leads/{lead['id']}/attributes", json={"job_title": "CTO", **values}
    )
    assert answer.status_code == 422, answer.text
    problems = answer.json()["detail"]
    assert [p["loc"] for p in problems] == [["body", attribute]]
    assert says in problems[0]["msg"]
    assert stored(live, lead["id"]) == {"plan": "free"}  # not even the valid job_title

    address = email()
    refused = await live.http.post("/leads", json={"email": address, "attributes": values})
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"][0]["loc"] == ["body", "attributes", attribute]
    with Session(live.engine) as session:
        assert session.exec(select(Lead).where(Lead.email == address)).first() is None


async def test_attributes_of_an_unknown_lead_answer_404(live: LiveStack):
    answer = await live.http.patch("/leads/nobody/attributes", json={"plan": "pro"})
    assert answer.status_code == 404, answer.text


async def test_a_custom_event_is_kept_once_per_id_and_counts_as_activity(live: LiveStack):
    lead = await sign_up(live)
    body = {
        "type": "custom",
        "lead": lead["id"],
        "name": "webinar_attended",
        "properties": {"webinar": "Lead scoring 101", "minutes": 42, "source": "zoom"},
        "id": "zoom-123",
        "occurred_at": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
    }
    first = await live.http.post("/events/track", json=body)
    assert first.status_code == 202, first.text
    assert first.json()["detail"] == "webinar_attended recorded"
    again = await live.http.post("/events/track", json=body)
    assert again.status_code == 202, again.text
    assert "already recorded" in again.json()["detail"]

    (kept,) = events_of(live, lead["id"])
    assert kept.name == "webinar_attended"
    assert kept.properties == {"webinar": "Lead scoring 101", "minutes": 42, "source": "zoom"}
    assert kept.occurred_at.replace(tzinfo=UTC) < datetime.now(UTC) - timedelta(hours=1)
    read = (await live.http.get(f"/leads/{lead['id']}")).json()
    assert read["last_activity_at"] is not None

    # without an id every event is kept
    for _ in range(2):
        answer = await live.http.post(
            "/events/track",
            json={"type": "custom", "lead": lead["id"], "name": "pricing_viewed"},
        )
        assert answer.status_code == 202, answer.text
    assert sorted(e.name for e in events_of(live, lead["id"])) == [
        "pricing_viewed",
        "pricing_viewed",
        "webinar_attended",
    ]


@pytest.mark.parametrize(
    ("change", "loc", "says"),
    [
        ({"name": "webinar_atended"}, ["body", "name"], "no such event"),
        ({"properties": {"minutes": "long"}}, ["body", "properties", "minutes"], "number"),
        ({"properties": {"nested": {"a": 1}}}, ["body", "custom", "properties", "nested"], ""),
        (
            {"occurred_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()},
            ["body", "occurred_at"],
            "future",
        ),
        ({"occurred_at": "2026-01-01T10:00:00"}, ["body", "custom", "occurred_at"], "timezone"),
    ],
)
async def test_a_wrong_custom_event_is_refused_naming_the_field_and_nothing_is_kept(
    live: LiveStack, change, loc, says
):
    lead = await sign_up(live)
    body = {"type": "custom", "lead": lead["id"], "name": "webinar_attended", **change}
    answer = await live.http.post("/events/track", json=body)
    assert answer.status_code == 422, answer.text
    problem = answer.json()["detail"][0]
    assert problem["loc"][: len(loc)] == loc, problem
    assert says.lower() in problem["msg"].lower()
    assert events_of(live, lead["id"]) == []


async def test_custom_attributes_and_events_are_exported_and_erased_with_the_lead(
    live: LiveStack,
):
    lead = await sign_up(live, attributes={"plan": "starter"})
    await live.http.post(
        "/events/track",
        json={"type": "custom", "lead": lead["id"], "name": "trial_started", "properties": {}},
    )
    export = (await live.http.get(f"/leads/{lead['id']}/export")).json()
    assert export["lead"]["attributes"] == {"plan": "starter"}
    assert [e["name"] for e in export["data"]["custom_events"]] == ["trial_started"]

    erased = await live.http.delete(f"/leads/{lead['id']}")
    assert erased.status_code == 200, erased.text
    assert erased.json()["rows_deleted"]["custom_events"] == 1
    with Session(live.engine) as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(CustomEvent)
                .where(CustomEvent.lead_id == lead["id"])
            )
            == 0
        )


def test_the_shipped_lead_schema_loads_and_a_broken_one_names_the_place(tmp_path: Path):
    shipped = load_lead_schema(Settings().lead_schema_file)
    assert {"birthday", "plan"} <= set(shipped.attributes)
    assert "webinar_attended" in shipped.events
    assert load_lead_schema(tmp_path / "absent.yaml").attributes == {}

    for text, says in [
        ("attributes:\n  email: {type: string}\n", "built-in field"),
        ("attributes:\n  plan: {type: enum}\n", "needs `values`"),
        ("attributes:\n  Plan: {type: string}\n", "is not a name"),
        ("attributes:\n  age: {type: integer}\n", "attributes.age.type"),
        ("events: [a, b]\n", "events"),
        ("attributes: {plan: {type: string}\n", "not valid YAML"),
    ]:
        broken = tmp_path / "lead_schema.yaml"
        broken.write_text(text)
        with pytest.raises(LeadSchemaError, match="lead_schema.yaml") as err:
            load_lead_schema(broken)
        assert says in str(err.value), (text, str(err.value))
