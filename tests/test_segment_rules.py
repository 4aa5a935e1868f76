"""Rule segments, compiled to SQL, on SQLite and on PostgreSQL: a scripted set of leads (opens,
clicks, page views, custom events, consents, lists, custom attributes) and the leads each rule
selects. Every rule is answered the two ways the compiler reads history (all leads at once for a
segment, one lead for a journey's condition): the answers must be the same lead for lead."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.testing import ActivityEnvironment

from activities.definitions import DefinitionActivities
from relance.contracts.definitions import ConditionQuestion
from relance.domain.conditions import Test as Rules
from relance.domain.conditions import problems
from relance.domain.db import make_engine
from relance.domain.models import (
    Consent,
    CustomEvent,
    Lead,
    LeadActivity,
    ListMember,
    Message,
    Order,
    Segment,
    new_id,
    utcnow,
)
from relance.domain.segment_query import (
    ONE_LEAD,
    Compiler,
    RuleError,
    count,
    evaluate,
    member_ids,
    segment_members,
    stored_segments,
)
from relance.domain.settings import Settings
from relance.services import migrate
from tests.test_postgres import postgres_url  # noqa: F401  (the throwaway PostgreSQL)

# Seed 000's two behavioural segments, as a marketer writes them.
OPENED_TWO_LAST_WEEK = {"message": {"action": "opened", "at_least": 2, "within": "7d"}}
PRICING_LAST_48H = {"page": {"url_contains": "/pricing", "within": "48h"}}


@dataclass
class World:
    engine: Engine
    ids: dict[str, str]  # name -> lead id
    names: dict[str, str]  # lead id -> name


def _message(lead_id: str, template: str, **stamps) -> Message:
    return Message(
        send_key=new_id(),
        lead_id=lead_id,
        workflow_id="w",
        journey="newsletter",
        step="s",
        channel=stamps.pop("channel", "email"),
        template=template,
        status="sent",
        sent_at=stamps.get("opened_at") or utcnow() - timedelta(days=20),
        **stamps,
    )


def script(engine: Engine) -> World:
    """Five leads, each with a story."""
    now = utcnow()
    ago = lambda **kw: now - timedelta(**kw)  # noqa: E731
    soon = (now + timedelta(days=10)).date().isoformat()
    ids: dict[str, str] = {}
    with Session(engine) as s:
        for name, country, score, attrs in (
            ("ana", "FR", 60, {"plan": "pro", "company_size": 40, "renewal_date": soon}),
            ("ben", "FR", 25, {"plan": "free", "job_title": "Head of =Growth"}),
            ("cleo", "DE", 5, {}),
            ("dan", None, 0, {"company_size": 3}),
            ("eve", "ES", 30, {"plan": "enterprise"}),
        ):
            lead = Lead(
                email=f"{name}-{new_id()[:8]}@example.com",
                first_name=name.title(),
                country=country,
                score=score,
                attributes=attrs,
                time_zone="Europe/Paris" if country == "FR" else "UTC",
                created_at=ago(days=100) if name != "eve" else ago(days=2),
            )
            s.add(lead)
            s.flush()
            ids[name] = lead.id
        a, b, c, d, e = (ids[n] for n in ("ana", "ben", "cleo", "dan", "eve"))
        s.add_all(
            [
                # ana: three newsletters opened this week, the pricing page an hour ago
                *[_message(a, "newsletter", opened_at=ago(days=i + 1)) for i in range(3)],
                LeadActivity(
                    lead_id=a, kind="page_view", url="https://ex.com/pricing", at=ago(hours=1)
                ),
                # ben: one open this week, two before; pricing three days ago
                _message(b, "newsletter", opened_at=ago(days=2)),
                *[_message(b, "promo", opened_at=ago(days=10 + i)) for i in range(2)],
                LeadActivity(
                    lead_id=b, kind="page_view", url="https://ex.com/pricing", at=ago(days=3)
                ),
                # cleo: the pricing page in capitals 30 h ago, two webinars, on the vip list
                LeadActivity(
                    lead_id=c, kind="page_view", url="https://ex.com/PRICING?x=1", at=ago(hours=30)
                ),
                LeadActivity(
                    lead_id=c, kind="page_view", url="https://ex.com/blog/a_b", at=ago(hours=2)
                ),
                CustomEvent(
                    lead_id=c,
                    name="webinar_attended",
                    properties={"webinar": "growth", "minutes": 50},
                    occurred_at=ago(days=1),
                ),
                CustomEvent(
                    lead_id=c,
                    name="webinar_attended",
                    properties={"webinar": "growth", "minutes": 20},
                    occurred_at=ago(days=5),
                ),
                ListMember(list_name="vip", lead_id=c, reason="test"),
                # dan: two promos clicked (so opened) in two days, a trial 40 days ago, a customer
                *[
                    _message(d, "promo", opened_at=ago(hours=5 + i), clicked_at=ago(hours=4 + i))
                    for i in range(2)
                ],
                CustomEvent(
                    lead_id=d,
                    name="trial_started",
                    properties={"plan": "pro"},
                    occurred_at=ago(days=40),
                ),
                Order(id=new_id(), lead_id=d, total=10),
                ListMember(list_name="vip", lead_id=d, reason="test"),
                # eve: a webinar of another series; an SMS opened... (SMS has no opens) sent
                CustomEvent(
                    lead_id=e,
                    name="webinar_attended",
                    properties={"webinar": "other"},
                    occurred_at=ago(days=1),
                ),
                _message(e, "sms_promo", channel="sms"),
                # consents: ana granted; ben granted then withdrawn; dan granted sms only
                Consent(lead_id=a, channel="email", status="granted"),
                Consent(lead_id=b, channel="email", status="granted"),
                Consent(lead_id=b, channel="email", status="withdrawn"),
                Consent(lead_id=d, channel="sms", status="granted"),
            ]
        )
        s.commit()
    return World(engine, ids, {v: k for k, v in ids.items()})


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request) -> World:
    if request.param == "sqlite":
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='relance-seg-')) / 'seg.db'}"
        migrate.upgrade(url)
    else:
        url = request.getfixturevalue("postgres_url")
    return script(make_engine(url))


def chosen(world: World, rules: dict, settings: Settings) -> set[str]:
    """The names of the leads the rules select, asserting both readings agree."""
    test = Rules.model_validate(rules)
    with Session(world.engine) as s:
        Compiler(settings, resolve=stored_segments(s)).check(test)
        all_at_once = {world.names[i] for i in member_ids(s, test, settings)}
        correlated = {world.names[i] for i in member_ids(s, test, settings, strategy=ONE_LEAD)}
        one_by_one = {
            name
            for name, lead_id in world.ids.items()
            if evaluate(s, lead_id, test, settings).holds
        }
        assert count(s, test, settings) == len(all_at_once)
        assert count(s, test, settings, strategy=ONE_LEAD) == len(all_at_once)
    assert all_at_once == correlated == one_by_one, (all_at_once, correlated, one_by_one)
    return all_at_once


CASES = {
    "opened at least 2 emails last week": (OPENED_TWO_LAST_WEEK, {"ana", "dan"}),
    "visited the pricing page in the last 48 h": (PRICING_LAST_48H, {"ana", "cleo"}),
    "both": ({"all": [OPENED_TWO_LAST_WEEK, PRICING_LAST_48H]}, {"ana"}),
    "either": ({"any": [OPENED_TWO_LAST_WEEK, PRICING_LAST_48H]}, {"ana", "cleo", "dan"}),
    "opened an email of one template": (
        {"message": {"action": "opened", "template": "promo", "within": "30d"}},
        {"ben", "dan"},
    ),
    "clicked in the last day": ({"message": {"action": "clicked", "within": "1d"}}, {"dan"}),
    "sent an sms": ({"message": {"action": "sent", "channel": "sms"}}, {"eve"}),
    "pricing with a wildcard pattern": (
        {"page": {"url_matches": "https://*/pricing*", "within": "7d"}},
        {"ana", "ben", "cleo"},
    ),
    "a page pattern's _ is an underscore": ({"page": {"url_matches": "*/a_b"}}, {"cleo"}),
    "webinars twice in a week": (
        {"event": {"name": "webinar_attended", "at_least": 2, "within": "7d"}},
        {"cleo"},
    ),
    "an event with a property": (
        {"event": {"name": "webinar_attended", "where": {"webinar": "other"}}},
        {"eve"},
    ),
    "an event with a number property": (
        {"event": {"name": "webinar_attended", "where": {"minutes": 50}}},
        {"cleo"},
    ),
    "an old trial is not within 30 days": (
        {"event": {"name": "trial_started", "within": "30d"}},
        set(),
    ),
    "in France": ({"attribute": {"name": "country", "op": "eq", "value": "FR"}}, {"ana", "ben"}),
    "not in France (no country counts)": (
        {"attribute": {"name": "country", "op": "ne", "value": "FR"}},
        {"cleo", "dan", "eve"},
    ),
    "country in a list": (
        {"attribute": {"name": "country", "op": "in", "value": ["DE", "ES"]}},
        {"cleo", "eve"},
    ),
    "a custom enum": (
        {"attribute": {"name": "plan", "op": "in", "value": ["pro", "enterprise"]}},
        {"ana", "eve"},
    ),
    "not on the pro plan, with no plan": (
        {"not": {"attribute": {"name": "plan", "op": "eq", "value": "pro"}}},
        {"ben", "cleo", "dan", "eve"},
    ),
    "a number attribute": (
        {"attribute": {"name": "company_size", "op": "gt", "value": 10}},
        {"ana"},
    ),
    "an attribute present": (
        {"attribute": {"name": "company_size", "op": "exists"}},
        {"ana", "dan"},
    ),
    "a string contains, whatever the case": (
        {"attribute": {"name": "job_title", "op": "contains", "value": "growth"}},
        {"ben"},
    ),
    "a date within the next days": (
        {"attribute": {"name": "renewal_date", "op": "in_next_days", "days": 30}},
        {"ana"},
    ),
    "created in the last week": (
        {"attribute": {"name": "created_at", "op": "in_last_days", "days": 7}},
        {"eve"},
    ),
    "created before a date": (
        {"attribute": {"name": "created_at", "op": "before", "value": "2000-01-01"}},
        set(),
    ),
    "hot or warm": ({"segment": ["hot", "warm"]}, {"ana", "ben", "eve"}),
    "customers": ({"stage": "customer"}, {"dan"}),
    "score bounds": ({"score": {"gte": 5, "lte": 30}}, {"ben", "cleo", "eve"}),
    "email consent now": ({"consent": "email"}, {"ana"}),
    "sms consent": ({"consent": "sms"}, {"dan"}),
    "on a list": ({"in_list": "vip"}, {"cleo", "dan"}),
    "in France who clicked, not customers": (
        {
            "all": [
                {"attribute": {"name": "country", "op": "in", "value": ["FR", "DE"]}},
                {"not": {"stage": "customer"}},
                {"any": [{"message": {"action": "opened", "within": "30d"}}, {"in_list": "vip"}]},
            ]
        },
        {"ana", "ben", "cleo"},
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_rule_selects_the_leads_it_says(world: World, settings: Settings, case: str):
    rules, expected = CASES[case]
    assert chosen(world, rules, settings) == expected


def save(world: World, name: str, rules: dict) -> str:
    with Session(world.engine) as s:
        row = Segment(name=name, rules=rules)
        s.add(row)
        s.commit()
        return row.id


def test_segments_combine_with_lists_by_union_intersection_and_exclusion(
    world: World, settings: Settings
):
    openers = save(world, "openers", OPENED_TWO_LAST_WEEK)
    pricing = save(world, "pricing", PRICING_LAST_48H)
    union = {"any": [{"in_segment": openers}, {"in_list": "vip"}]}
    assert chosen(world, union, settings) == {"ana", "dan", "cleo"}
    intersection = {"all": [{"in_segment": openers}, {"in_segment": pricing}]}
    assert chosen(world, intersection, settings) == {"ana"}
    exclusion = {"all": [{"in_segment": pricing}, {"not": {"in_list": "vip"}}]}
    assert chosen(world, exclusion, settings) == {"ana"}
    nested = save(world, "nested", union)
    assert chosen(world, {"not": {"in_segment": nested}}, settings) == {"ben", "eve"}
    with Session(world.engine) as s:
        assert {world.names[i] for i in segment_members(s, nested, settings, page=1)} == {
            "ana",
            "cleo",
            "dan",
        }


def test_a_journey_condition_says_why_with_the_facts(world: World, settings: Settings):
    test = Rules.model_validate({"all": [{"score": {"gte": 50}}, OPENED_TWO_LAST_WEEK]})
    with Session(world.engine) as s:
        ana = evaluate(s, world.ids["ana"], test, settings)
        ben = evaluate(s, world.ids["ben"], test, settings)
        assert evaluate(s, "nobody", test, settings) is None
    assert ana.holds and ana.why == (
        "(score >= 50: yes (score 60) and opened message at least 2× within 7d: yes)"
    )
    assert not ben.holds and ben.why.startswith("(score >= 50: no (score 25)")


SCHEMA_MISTAKES = {
    "unknown attribute": (
        {"all": [{"score": {"gte": 1}}, {"not": {"attribute": {"name": "shoe", "op": "exists"}}}]},
        "all[1].not.attribute",
        "no attribute 'shoe'",
    ),
    "gt on a string": (
        {"any": [{"attribute": {"name": "job_title", "op": "gt", "value": "a"}}]},
        "any[0].attribute",
        "gt does not apply to job_title, a string",
    ),
    "a value not of the enum": (
        {"attribute": {"name": "plan", "op": "eq", "value": "platinum"}},
        "attribute",
        "expected one of free, starter, pro, enterprise",
    ),
    "a number given as text": (
        {"attribute": {"name": "company_size", "op": "lt", "value": "ten"}},
        "attribute",
        "expected a number",
    ),
    "unknown event": (
        {"all": [{"event": {"name": "webinar_atended"}}]},
        "all[0].event",
        "no event 'webinar_atended'",
    ),
}


@pytest.mark.parametrize("case", SCHEMA_MISTAKES)
def test_a_rule_the_lead_schema_refuses_is_named_by_its_path(settings: Settings, case: str):
    rules, path, message = SCHEMA_MISTAKES[case]
    test = Rules.model_validate(rules)
    [problem] = problems(test, settings.lead_schema())
    assert problem.path == path and message in problem.message
    with pytest.raises(RuleError) as raised:
        Compiler(settings).check(test)
    assert raised.value.problems == [problem]


def test_saved_journey_condition_shapes_still_read():
    """The condition trees journeys were written with before segments keep their meaning."""
    old = {"all": [{"score": {"gte": 20}}, {"stage": "mql"}, {"not": {"in_list": "do_not_call"}}]}
    assert Rules.model_validate(old).describe() == (
        "(score >= 20 and stage in mql and not (in list do_not_call))"
    )


def test_a_journey_condition_and_the_segment_of_the_same_rules_agree(
    world: World, settings: Settings
):
    """The journeys' condition activity answers through the segments' compiler."""
    rules = {"all": [{"segment": ["hot", "warm", "cold"]}, PRICING_LAST_48H]}
    members = chosen(world, rules, settings)
    activities = DefinitionActivities(settings, world.engine)
    answers = {
        name: ActivityEnvironment().run(
            activities.evaluate_condition, ConditionQuestion(lead_id, rules)
        )
        for name, lead_id in world.ids.items()
    }
    assert {name for name, a in answers.items() if a.holds} == members == {"ana", "cleo"}
    assert answers["ben"].why == (
        "(segment in hot/warm/cold: yes (segment warm) and "
        "viewed a page containing /pricing within 2d: no)"
    )
