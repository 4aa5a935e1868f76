"""Segments through the API, as a marketer uses them: save a rule tree, count it, page through
its members, export them as CSV a spreadsheet can open safely, combine segments and lists; bad
rules are refused naming the faulty rule, and nothing is saved."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from sqlalchemy import func
from sqlmodel import Session, select

from relance.dev.seeding import unique_id
from relance.domain.models import Lead, LeadActivity, ListMember, Message, Segment, new_id, utcnow
from tests.conftest import LiveStack


def seed(live: LiveStack, list_name: str, *, opens: int, pricing: bool, **lead) -> str:
    """A lead on ``list_name`` (which keeps each test's leads apart) with its opens and views."""
    now = utcnow()
    with Session(live.engine) as s:
        row = Lead(email=f"{unique_id('sg')}@example.com", **lead)
        s.add(row)
        s.flush()
        s.add(ListMember(list_name=list_name, lead_id=row.id, reason="test"))
        for i in range(opens):
            s.add(
                Message(
                    send_key=new_id(),
                    lead_id=row.id,
                    workflow_id="w",
                    journey="newsletter",
                    step="s",
                    channel="email",
                    template="newsletter",
                    status="sent",
                    sent_at=now - timedelta(days=i + 1),
                    opened_at=now - timedelta(days=i + 1),
                )
            )
        if pricing:
            s.add(
                LeadActivity(
                    lead_id=row.id,
                    kind="page_view",
                    url="https://example.com/pricing",
                    at=now - timedelta(hours=3),
                )
            )
        s.commit()
        return row.id


def in_list(name: str, rules: dict) -> dict:
    return {"all": [{"in_list": name}, rules]}


def segments_saved(live: LiveStack) -> int:
    with Session(live.engine) as s:
        return s.exec(select(func.count()).select_from(Segment)).one()


async def test_a_segment_is_saved_counted_paged_and_exported(live: LiveStack):
    tag = unique_id("seg").replace("-", "_")
    engaged = sorted(
        seed(live, tag, opens=2, pricing=False, first_name=f'=HYPERLINK("x{i}")', score=30)
        for i in range(3)
    )
    seed(live, tag, opens=1, pricing=True, first_name="Once")
    rules = in_list(tag, {"message": {"action": "opened", "at_least": 2, "within": "7d"}})

    created = await live.http.post("/segments", json={"name": "Engaged", "rules": rules})
    assert created.status_code == 201, created.text
    segment = created.json()
    assert segment["name"] == "Engaged" and segment["rules"]["all"][0] == {"in_list": tag}
    sid = segment["id"]
    assert (await live.http.get(f"/segments/{sid}")).json() == segment
    assert sid in [s["id"] for s in (await live.http.get("/segments")).json()]

    assert (await live.http.get(f"/segments/{sid}/count")).json() == {"segment": sid, "count": 3}

    seen, after = [], None
    for _ in range(5):
        page = await live.http.get(
            f"/segments/{sid}/members", params={"limit": 2, **({"after": after} if after else {})}
        )
        assert page.status_code == 200, page.text
        seen += [m["id"] for m in page.json()["members"]]
        after = page.json()["next"]
        if after is None:
            break
    assert seen == engaged
    assert page.json()["members"][-1]["segment"] == "warm"

    export = await live.http.get(f"/segments/{sid}/export")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [r["id"] for r in rows] == engaged
    assert rows[0]["first_name"].startswith("'=HYPERLINK")  # shown as text, never run
    assert rows[0]["score"] == "30" and rows[0]["stage"] == "subscriber"
    assert "plan" in rows[0]  # the custom attributes, one column each

    preview = await live.http.post(
        "/segments/preview",
        json={"rules": in_list(tag, {"page": {"url_contains": "/pricing", "within": "48h"}})},
    )
    assert preview.status_code == 200, preview.text
    assert preview.json()["count"] == 1 and preview.json()["members"][0]["first_name"] == "Once"


async def test_set_operations_and_references_between_segments(live: LiveStack):
    tag = unique_id("seg").replace("-", "_")
    both = seed(live, tag, opens=2, pricing=True)
    opener = seed(live, tag, opens=2, pricing=False)
    seed(live, tag, opens=0, pricing=True)
    post = lambda name, rules: live.http.post("/segments", json={"name": name, "rules": rules})  # noqa: E731
    openers = (
        await post("openers", in_list(tag, {"message": {"action": "opened", "at_least": 2}}))
    ).json()["id"]
    pricing = (await post("pricing", in_list(tag, {"page": {"url_contains": "pricing"}}))).json()[
        "id"
    ]
    not_pricing = await post(
        "openers not on pricing",
        {"all": [{"in_segment": openers}, {"not": {"in_segment": pricing}}]},
    )
    assert not_pricing.status_code == 201, not_pricing.text
    nid = not_pricing.json()["id"]
    page = (await live.http.get(f"/segments/{nid}/members")).json()
    assert [m["id"] for m in page["members"]] == [opener]
    union = await live.http.post(
        "/segments/preview",
        json={"rules": {"any": [{"in_segment": openers}, {"in_segment": pricing}]}},
    )
    assert union.json()["count"] == 3
    both_segments = await live.http.post(
        "/segments/preview",
        json={"rules": {"all": [{"in_segment": openers}, {"in_segment": pricing}]}},
    )
    assert [m["id"] for m in both_segments.json()["members"]] == [both]

    # a cycle is refused at write, naming the rule that closes it
    before = (await live.http.get(f"/segments/{openers}")).json()
    cycle = await live.http.put(
        f"/segments/{openers}", json={"name": "openers", "rules": {"in_segment": nid}}
    )
    assert cycle.status_code == 422, cycle.text
    [problem] = cycle.json()["detail"]
    assert problem["loc"] == ["body", "rules", "in_segment"] and "cycle" in problem["msg"]
    assert (await live.http.get(f"/segments/{openers}")).json() == before

    # a segment another refers to cannot be deleted; once that one is gone, it can
    refused = await live.http.delete(f"/segments/{pricing}")
    assert refused.status_code == 409 and "openers not on pricing" in refused.json()["detail"]
    assert (await live.http.get(f"/segments/{pricing}")).status_code == 200
    assert (await live.http.delete(f"/segments/{nid}")).status_code == 204
    assert (await live.http.delete(f"/segments/{pricing}")).status_code == 204
    assert (await live.http.get(f"/segments/{pricing}")).status_code == 404
    assert (await live.http.get(f"/segments/{pricing}/count")).status_code == 404

    renamed = await live.http.put(
        f"/segments/{openers}", json={"name": "openers (7 days)", "rules": before["rules"]}
    )
    assert renamed.status_code == 200 and renamed.json()["name"] == "openers (7 days)"


BAD_RULES = {
    "an unknown attribute": (
        {"all": [{"score": {"gte": 1}}, {"not": {"attribute": {"name": "shoe", "op": "exists"}}}]},
        ["body", "rules", "all", 1, "not", "attribute"],
        "no attribute 'shoe'",
    ),
    "gt on a string": (
        {"attribute": {"name": "job_title", "op": "gt", "value": "b"}},
        ["body", "rules", "attribute"],
        "gt does not apply to job_title",
    ),
    "an unknown event": (
        {"any": [{"in_list": "x"}, {"event": {"name": "nope"}}]},
        ["body", "rules", "any", 1, "event"],
        "no event 'nope'",
    ),
    "an unknown operator": (
        {"attribute": {"name": "country", "op": "resembles", "value": "FR"}},
        ["body", "rules", "attribute", "op"],
        "",
    ),
    "a segment that does not exist": (
        {"in_segment": "deadbeef"},
        ["body", "rules", "in_segment"],
        "no segment 'deadbeef'",
    ),
}


async def test_bad_rules_are_refused_naming_the_rule_and_nothing_is_saved(live: LiveStack):
    before = segments_saved(live)
    for case, (rules, loc, message) in BAD_RULES.items():
        for answer in (
            await live.http.post("/segments", json={"name": case, "rules": rules}),
            await live.http.post("/segments/preview", json={"rules": rules}),
        ):
            assert answer.status_code == 422, (case, answer.text)
            locs = [d["loc"][: len(loc)] for d in answer.json()["detail"]]
            assert loc in locs, (case, answer.json())
            assert message in " ".join(d["msg"] for d in answer.json()["detail"]), case
    assert segments_saved(live) == before
    missing = await live.http.get("/segments/nope/members")
    assert missing.status_code == 404 and missing.json()["detail"] == "no segment with id nope"
    assert (await live.public.get("/segments")).status_code == 401
