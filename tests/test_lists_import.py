"""Lists from the API and from journeys; CSV import with consent evidence, deduplication by
normalised email, the suppression list respected, bad rows reported, malformed files refused."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func
from sqlmodel import Session, select
from temporalio import workflow
from temporalio.worker import Worker

from activities import build_activities
from relance.dev.seeding import unique_id
from relance.domain.models import Consent, Lead, ListMember
from tests.conftest import LiveStack

with workflow.unsafe.imports_passed_through():
    from activities.lists import ListActivities
    from relance.contracts.lists import ListChange


async def new_lead(live: LiveStack) -> str:
    r = await live.http.post("/leads", json={"email": f"{unique_id('list')}@example.com"})
    return r.json()["lead"]["id"]


async def test_add_and_remove_list_members_through_the_api(live: LiveStack):
    name = unique_id("vip")
    a, b = await new_lead(live), await new_lead(live)
    r = await live.http.post(
        f"/lists/{name}/members", json={"lead_ids": [a, b, a], "reason": "met at the fair"}
    )
    assert r.status_code == 200 and r.json() == {"list": name, "added": 2, "already": 0}
    again = await live.http.post(f"/lists/{name}/members", json={"lead_ids": [a]})
    assert again.json() == {"list": name, "added": 0, "already": 1}
    members = (await live.http.get(f"/lists/{name}/members")).json()
    assert {m["lead_id"] for m in members} == {a, b} and all(
        m["reason"] == "met at the fair" for m in members
    )
    assert {"name": name, "members": 2} in (await live.http.get("/lists")).json()

    unknown = await live.http.post(f"/lists/{name}/members", json={"lead_ids": [b, "0" * 32]})
    assert unknown.status_code == 404 and "0" * 32 in unknown.json()["detail"]

    assert (await live.http.delete(f"/lists/{name}/members/{a}")).status_code == 204
    assert (await live.http.delete(f"/lists/{name}/members/{a}")).status_code == 404
    assert [m["lead_id"] for m in (await live.http.get(f"/lists/{name}/members")).json()] == [b]
    for bad in ("Has Spaces", "x" * 65):
        r = await live.http.post(f"/lists/{bad}/members", json={"lead_ids": [b]})
        assert r.status_code == 422, bad
    assert (
        await live.http.post(f"/lists/{name}/members", json={"lead_ids": []})
    ).status_code == 422


@workflow.defn(
    name="ListTestJourney", sandboxed=False
)  # a test module imports too much for the sandbox
class ListTestJourney:
    @workflow.run
    async def run(self, lead_id: str) -> list[bool]:
        from datetime import timedelta

        out = []
        for action in ("add", "add", "remove"):
            result = await workflow.execute_activity_method(
                ListActivities.change_list_membership,
                ListChange(lead_id, "journey-list", action, "from a journey"),
                start_to_close_timeout=timedelta(seconds=30),
            )
            out.append(result.changed)
        return out


async def test_a_journey_adds_and_removes_members(time_skipping_env, settings, engine, make_lead):
    lead = make_lead()
    queue = unique_id("lists")
    async with Worker(
        time_skipping_env.client,
        task_queue=queue,
        workflows=[ListTestJourney],
        activities=build_activities(settings, engine),
        activity_executor=ThreadPoolExecutor(2),
    ):
        changed = await time_skipping_env.client.execute_workflow(
            ListTestJourney.run, lead.id, id=unique_id("lj"), task_queue=queue
        )
    assert changed == [True, False, True]
    with Session(engine) as session:
        assert session.exec(select(ListMember).where(ListMember.lead_id == lead.id)).first() is None


def csv_file(text: str) -> dict:
    return {"file": ("leads.csv", text.encode(), "text/csv")}


async def test_csv_import_creates_updates_and_reports_bad_rows(live: LiveStack):
    existing = f"{unique_id('known')}@example.com"
    await live.http.post("/leads", json={"email": existing, "first_name": "Old"})
    erased = f"{unique_id('erased')}@example.com"
    erased_id = (await live.http.post("/leads", json={"email": erased})).json()["lead"]["id"]
    assert (await live.http.delete(f"/leads/{erased_id}")).status_code == 200
    fresh, sms_too = f"{unique_id('new')}@example.com", f"{unique_id('sms')}@example.com"
    name = unique_id("fair")
    text = (
        "\n".join(
            [
                "email,first_name,phone,country,consent,source_url,consented_at,wording_version,ip",
                f"{fresh},Ana,,FR,email,https://example.com/fair,2026-03-01T10:00:00Z,v3,203.0.113.5",  # 2 created  # noqa: E501
                f"  {existing.upper().replace('EXAMPLE.COM', 'Example.COM')}  ,New,,,,,,,",  # 3 updated (dedup)  # noqa: E501
                f"{sms_too},Bo,+33612345678,FR,email;sms,https://example.com/fair,2026-03-01 10:00,v3,",  # 4 created  # noqa: E501
                "not-an-email,X,,,,,,,",  # 5 bad email
                f"{unique_id('nc')}@example.com,Y,,,email,,,,",  # 6 no evidence
                f"{unique_id('ph')}@example.com,Z,12,,,,,,",  # 7 bad phone
                f"{unique_id('fu')}@example.com,Z,,,email,https://example.com/f,2999-01-01T00:00:00Z,v3,",  # 8 future  # noqa: E501
                f"{erased},Back,,,email,https://example.com/f,2026-03-01T10:00:00Z,v3,",  # 9 erased
                f"{unique_id('co')}@example.com,Z,,Narnia,,,,,",  # 10 bad country
                f"{unique_id('ch')}@example.com,Z,,,pigeon,https://example.com/f,2026-03-01T10:00:00Z,v3,",  # 11 bad channel  # noqa: E501
            ]
        )
        + "\n"
    )
    before = count_leads(live)
    r = await live.http.post("/leads/import", files=csv_file(text), params={"list": name})
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["created"], report["updated"]) == (2, 1)
    reasons = {x["line"]: x["reason"] for x in report["rejected"]}
    assert set(reasons) == {5, 6, 7, 8, 9, 10, 11}
    assert (
        "email" in reasons[5]
        and "evidence" in reasons[6]
        and "phone" in reasons[7]
        and "future" in reasons[8]
    )
    assert "suppression list" in reasons[9] and "country" in reasons[10] and "pigeon" in reasons[11]
    assert count_leads(live) == before + 2  # the bad rows wrote nothing

    with Session(live.engine) as session:
        ana = session.exec(select(Lead).where(Lead.email == fresh)).one()
        assert ana.first_name == "Ana" and ana.country == "FR"
        [consent] = session.exec(select(Consent).where(Consent.lead_id == ana.id)).all()
        assert (consent.source_url, consent.wording_version, consent.ip) == (
            "https://example.com/fair",
            "v3",
            "203.0.113.5",
        )
        assert consent.recorded_at.isoformat().startswith(
            "2026-03-01T10:00:00"
        )  # when it was given, as proof
        assert session.exec(select(Lead).where(Lead.email == existing)).one().first_name == "New"
        bo = session.exec(select(Lead).where(Lead.email == sms_too)).one()
        assert {
            c.channel for c in session.exec(select(Consent).where(Consent.lead_id == bo.id))
        } == {"email", "sms"}
    lead = (await live.http.get(f"/leads/{ana.id}")).json()
    assert (
        lead["stage"] == "subscriber" and lead["score"] == 5
    )  # fit (FR) only: an import is not a form
    members = {m["email"] for m in (await live.http.get(f"/lists/{name}/members")).json()}
    assert members == {fresh, existing, sms_too}

    # Importing the same file again: no new lead, the good rows are updates.
    again = (await live.http.post("/leads/import", files=csv_file(text))).json()
    assert (again["created"], again["updated"], len(again["rejected"])) == (0, 3, 7)


def count_leads(live: LiveStack) -> int:
    with Session(live.engine) as session:
        return session.exec(select(func.count()).select_from(Lead)).one()


async def test_a_malformed_file_is_refused_whole(live: LiveStack):
    before = count_leads(live)
    cases = {
        "no email column": b"name,phone\nAna,+33612345678\n",
        "unknown column": b"email,favourite_colour\na@example.com,blue\n",
        "not utf-8": "email\nzo\xe9@example.com\n".encode("latin-1"),
        "empty": b"",
        "binary": b"\x89PNG\r\n\x1a\n\x00\x00",
    }
    for case, raw in cases.items():
        r = await live.http.post("/leads/import", files={"file": ("x.csv", raw, "text/csv")})
        assert r.status_code == 422 and "nothing was imported" in r.json()["detail"][0]["msg"], (
            case,
            r.text,
        )
    no_file = await live.http.post("/leads/import", data={"something": "else"})
    assert no_file.status_code == 422
    assert count_leads(live) == before
