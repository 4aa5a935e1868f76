"""The one rule language of Relance: a tree of tests about a lead, read by segments (a saved rule
tree, counted and listed over all leads) and by journey conditions (the same tree asked of one
lead). Both go through one SQL compiler (relance/domain/segment_query.py), so a journey's
condition and a segment can never disagree about a lead.

A test is exactly one of:

    score        {gte, lte}: the lead's score within bounds
    stage        subscriber / lead / mql / sql / customer (one or a list)
    segment      hot / warm / cold (one or a list), from the score thresholds
    consent      a consent channel (email, sms, webhook): marketing consent granted now
    in_list      a list's name: the lead is on it
    in_segment   a saved segment's id: the lead is in it (set operations: all / any / not over
                 in_segment and in_list are intersection / union / exclusion)
    attribute    {name, op, value | days}: a built-in field (country, locale, time_zone,
                 created_at, last_activity_at...) or a custom attribute of the lead schema
    event        {name, at_least, within, where}: a custom event of the lead schema performed at
                 least N times within a period, its properties equal to ``where``'s values
    message      {action, template, channel, at_least, within}: messages sent / opened /
                 clicked within a period (of one template, or any)
    page         {url_contains | url_matches, at_least, within}: pages viewed
    promo_used   a message node's id: the promo code this journey run issued there was
                 redeemed (a journey's test: a segment may not use it)
    all / any / not   of other tests

Attribute operators, by the attribute's type:

    eq ne in not_in                 any type (ne / not_in also hold when the lead has no value)
    gt gte lt lte                   number
    contains                        string
    before after                    date and datetime (an ISO date or date-time)
    in_last_days in_next_days       date and datetime: within the last / next N days
    exists not_exists               any type

A tree's shape is checked by the pydantic models below; what only the lead schema knows (an
attribute or event that does not exist, an operator or a value of the wrong type) by
``problems``, which names each faulty test by its path in the tree (``all[1].not.attribute``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from relance.domain.lead_schema import AttributeSpec, LeadSchema, coerce

Name = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
SEGMENT_ID = r"^[a-z0-9]{1,32}$"
MAX_DURATION = timedelta(days=366)

_SHORT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _duration(value: Any) -> Any:
    """ "48h", "2d", "30m", "1w" (what a marketer writes), besides ISO 8601 ("P2D") and seconds."""
    if isinstance(value, str) and (m := _SHORT.match(value)):
        return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    return value


def bounded(value: timedelta) -> timedelta:
    if not timedelta(0) < value <= MAX_DURATION:
        raise ValueError("a duration is more than 0 and at most 366 days")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    Field(json_schema_extra={"examples": ["48h", "2d", "P7D"]}),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScoreTest(_Strict):
    gte: int | None = Field(default=None, description="score at least this")
    lte: int | None = Field(default=None, description="score at most this")

    @model_validator(mode="after")
    def _one_bound(self) -> ScoreTest:
        if self.gte is None and self.lte is None:
            raise ValueError("a score test needs gte or lte")
        return self


# Built-in fields an attribute test may read, by type (the lead's profile columns).
BUILT_IN_TYPES: dict[str, str] = {
    "country": "string",
    "locale": "string",
    "time_zone": "string",
    "first_name": "string",
    "created_at": "datetime",
    "updated_at": "datetime",
    "last_signup_at": "datetime",
    "last_activity_at": "datetime",
}

Op = Literal[
    "eq",
    "ne",
    "in",
    "not_in",
    "gt",
    "gte",
    "lt",
    "lte",
    "contains",
    "before",
    "after",
    "in_last_days",
    "in_next_days",
    "exists",
    "not_exists",
]
OPS_BY_TYPE: dict[str, frozenset[str]] = {
    "string": frozenset({"eq", "ne", "in", "not_in", "contains", "exists", "not_exists"}),
    "enum": frozenset({"eq", "ne", "in", "not_in", "exists", "not_exists"}),
    "number": frozenset(
        {"eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists", "not_exists"}
    ),
    "bool": frozenset({"eq", "ne", "exists", "not_exists"}),
    "date": frozenset(
        {"eq", "ne", "before", "after", "in_last_days", "in_next_days", "exists", "not_exists"}
    ),
    "datetime": frozenset(
        {"before", "after", "in_last_days", "in_next_days", "exists", "not_exists"}
    ),
}
Scalar = bool | int | float | str


class AttributeTest(_Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")] = Field(
        description="a built-in field (country, locale, created_at...) or a custom attribute"
    )
    op: Op
    value: Scalar | list[Scalar] | None = Field(
        default=None, description="in / not_in: a list; exists / *_days: none"
    )
    days: int | None = Field(default=None, ge=0, le=3660, description="in_last_days, in_next_days")

    @model_validator(mode="after")
    def _operands(self) -> AttributeTest:
        if self.op in ("exists", "not_exists"):
            if self.value is not None or self.days is not None:
                raise ValueError(f"{self.op} takes no value")
        elif self.op in ("in_last_days", "in_next_days"):
            if self.days is None or self.value is not None:
                raise ValueError(f"{self.op} takes `days` (and no value)")
        elif self.op in ("in", "not_in"):
            if not isinstance(self.value, list) or not 1 <= len(self.value) <= 200:
                raise ValueError(f"{self.op} takes a list of 1 to 200 values")
        elif self.value is None or isinstance(self.value, list) or self.days is not None:
            raise ValueError(f"{self.op} takes one value")
        return self


class EventTest(_Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")] = Field(
        description="a custom event of the lead schema"
    )
    at_least: int = Field(default=1, ge=1, le=100_000)
    within: Duration | None = Field(default=None, description="the period, up to now (any time)")
    where: dict[str, Scalar] = Field(
        default_factory=dict, max_length=10, description="properties equal to these values"
    )

    @model_validator(mode="after")
    def _period(self) -> EventTest:
        if self.within is not None:
            bounded(self.within)
        return self


class MessageTest(_Strict):
    action: Literal["sent", "opened", "clicked"]
    template: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,64}$")] | None = Field(
        default=None, description="messages of this template (any by default)"
    )
    channel: Literal["email", "sms", "webhook"] | None = None
    at_least: int = Field(default=1, ge=1, le=100_000, description="distinct messages")
    within: Duration | None = None

    @model_validator(mode="after")
    def _period(self) -> MessageTest:
        if self.within is not None:
            bounded(self.within)
        return self


class PageTest(_Strict):
    url_contains: str | None = Field(default=None, min_length=1, max_length=500)
    url_matches: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="the whole URL against a pattern where * is any text: https://*/pricing*",
    )
    at_least: int = Field(default=1, ge=1, le=100_000, description="page views")
    within: Duration | None = None

    @model_validator(mode="after")
    def _one_pattern(self) -> PageTest:
        if (self.url_contains is None) == (self.url_matches is None):
            raise ValueError("a page test has url_contains or url_matches, not both")
        if self.within is not None:
            bounded(self.within)
        return self


LEAVES = (
    "score",
    "stage",
    "segment",
    "consent",
    "in_list",
    "in_segment",
    "attribute",
    "event",
    "message",
    "page",
    "promo_used",
)


class Test(_Strict):
    """One fact about the lead (exactly one of the fields), or all / any / not of others."""

    score: ScoreTest | None = None
    stage: list[Literal["subscriber", "lead", "mql", "sql", "customer"]] | None = None
    segment: list[Literal["hot", "warm", "cold"]] | None = None
    consent: Literal["email", "sms", "webhook"] | None = Field(
        default=None, description="marketing consent granted on this consent channel"
    )
    in_list: Name | None = Field(default=None, description="the lead is in this list")
    in_segment: Annotated[str, StringConstraints(pattern=SEGMENT_ID)] | None = Field(
        default=None, description="the lead is in this saved segment (its id)"
    )
    attribute: AttributeTest | None = None
    event: EventTest | None = None
    message: MessageTest | None = None
    page: PageTest | None = None
    promo_used: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,23}$")] | None = Field(
        default=None, description="the code issued at this message node was redeemed"
    )
    all: list[Test] | None = Field(default=None, min_length=1, max_length=20)
    any: list[Test] | None = Field(default=None, min_length=1, max_length=20)
    not_: Test | None = Field(default=None, alias="not")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _one_value(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in ("stage", "segment"):  # one value or a list of them
                if isinstance(data.get(name), str):
                    data = {**data, name: [data[name]]}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> Test:
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a condition is exactly one of "
                + ", ".join(LEAVES)
                + f", all, any, not (got {', '.join(given) or 'none'})"
            )
        return self

    @property
    def kind(self) -> str:
        """The test's field: one of LEAVES, or all / any / not."""
        for name in (*LEAVES, "all", "any"):
            if getattr(self, name) is not None:
                return name
        return "not"

    def describe(self) -> str:
        if self.score is not None:
            return " and ".join(
                f"score {op} {v}"
                for op, v in ((">=", self.score.gte), ("<=", self.score.lte))
                if v is not None
            )
        if self.stage is not None:
            return f"stage in {'/'.join(self.stage)}"
        if self.segment is not None:
            return f"segment in {'/'.join(self.segment)}"
        if self.consent is not None:
            return f"consent for {self.consent}"
        if self.in_list is not None:
            return f"in list {self.in_list}"
        if self.in_segment is not None:
            return f"in segment {self.in_segment}"
        if self.attribute is not None:
            a = self.attribute
            operand = a.days if a.days is not None else a.value
            return f"{a.name} {a.op}" + ("" if operand is None else f" {operand}")
        if self.event is not None:
            e = self.event
            where = "".join(f" {k}={v}" for k, v in e.where.items())
            return f"{e.name}{where}{_times(e.at_least)}{_period(e.within)}"
        if self.message is not None:
            m = self.message
            what = f"{m.channel or ''} message{'' if m.template is None else ' ' + m.template}"
            return f"{m.action} {what.strip()}{_times(m.at_least)}{_period(m.within)}"
        if self.page is not None:
            p = self.page
            pattern = f"containing {p.url_contains}" if p.url_contains else f"like {p.url_matches}"
            return f"viewed a page {pattern}{_times(p.at_least)}{_period(p.within)}"
        if self.promo_used is not None:
            return f"promo code of {self.promo_used} redeemed"
        if self.not_ is not None:
            return f"not ({self.not_.describe()})"
        parts, word = (self.all, " and ") if self.all is not None else (self.any or [], " or ")
        return "(" + word.join(p.describe() for p in parts) + ")"

    def children(self) -> list[tuple[str, Test]]:
        """The sub-tests with their path step (``all[0]``, ``not``)."""
        if self.all is not None:
            return [(f"all[{i}]", t) for i, t in enumerate(self.all)]
        if self.any is not None:
            return [(f"any[{i}]", t) for i, t in enumerate(self.any)]
        if self.not_ is not None:
            return [("not", self.not_)]
        return []

    def walk(self, path: str = "") -> list[tuple[str, Test]]:
        """Every leaf test with its path in the tree (``any[1].not``; ``""`` for the root)."""
        if self.kind in LEAVES:
            return [(path, self)]
        return [
            leaf
            for step, child in self.children()
            for leaf in child.walk(f"{path}.{step}" if path else step)
        ]

    def promo_nodes(self) -> set[str]:
        """The message nodes whose promo codes the tree asks about (``promo_used``)."""
        return {t.promo_used for _, t in self.walk() if t.promo_used is not None}

    def segments_named(self) -> set[str]:
        return {t.in_segment for _, t in self.walk() if t.in_segment is not None}


def _times(at_least: int) -> str:
    return "" if at_least == 1 else f" at least {at_least}×"


def _period(within: timedelta | None) -> str:
    if within is None:
        return ""
    seconds = within.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f" within {int(seconds // size)}{unit}"
    return f" within {int(seconds)}s"


# Checks against the lead schema -------------------------------------------------------------------
@dataclass(frozen=True)
class RuleProblem:
    path: str  # the test's place in the tree: "all[1].not.attribute" ("" for the root)
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(root)'}: {self.message}"


def attribute_type(schema: LeadSchema, name: str) -> tuple[str, AttributeSpec | None] | None:
    """(type, the custom attribute's spec) of a built-in field or custom attribute; None if
    neither."""
    if name in BUILT_IN_TYPES:
        return BUILT_IN_TYPES[name], None
    spec = schema.attributes.get(name)
    return None if spec is None else (spec.type, spec)


def problems(test: Test, schema: LeadSchema) -> list[RuleProblem]:
    """What the lead schema says is wrong in the tree, each problem at its test's path."""
    found: list[RuleProblem] = []
    for path, leaf in test.walk():
        if leaf.attribute is not None:
            where = f"{path}.attribute" if path else "attribute"
            found += [RuleProblem(where, m) for m in _attribute_problems(leaf.attribute, schema)]
        elif leaf.event is not None:
            where = f"{path}.event" if path else "event"
            found += [RuleProblem(where, m) for m in _event_problems(leaf.event, schema)]
    return found


def _attribute_problems(a: AttributeTest, schema: LeadSchema) -> list[str]:
    typed = attribute_type(schema, a.name)
    if typed is None:
        known = sorted({*BUILT_IN_TYPES, *schema.attributes})
        return [f"no attribute {a.name!r} (known: {', '.join(known)})"]
    kind, spec = typed
    if a.op not in OPS_BY_TYPE[kind]:
        allowed = ", ".join(sorted(OPS_BY_TYPE[kind]))
        return [f"{a.op} does not apply to {a.name}, a {kind} (use one of {allowed})"]
    values = a.value if isinstance(a.value, list) else [] if a.value is None else [a.value]
    out = []
    for value in values:
        try:
            typed_value(kind, spec, a.op, value)
        except ValueError as err:
            out.append(f"{a.name} {a.op} {value!r}: {err}")
    return out


def typed_value(kind: str, spec: AttributeSpec | None, op: str, value: Any) -> Any:
    """An operand as the compiler compares it; ValueError saying what was expected."""
    if kind == "datetime" or (kind == "date" and op in ("before", "after")):
        if not isinstance(value, str):
            raise ValueError("expected an ISO date (YYYY-MM-DD) or date-time")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("expected an ISO date (YYYY-MM-DD) or date-time") from None
        if kind == "date":
            return parsed.date().isoformat()
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if spec is not None:
        return coerce(spec, value)
    if not isinstance(value, str):  # the built-in fields are strings
        raise ValueError("expected a string")
    return value


def _event_problems(e: EventTest, schema: LeadSchema) -> list[str]:
    spec = schema.events.get(e.name)
    if spec is None:
        known = ", ".join(sorted(schema.events)) or "none"
        return [f"no event {e.name!r} in the lead schema (known: {known})"]
    out = []
    for key, value in e.where.items():
        declared = spec.properties.get(key)
        if declared is None:
            continue  # undeclared properties are kept as given: compared as given
        try:
            coerce(declared, value)
        except ValueError as err:
            out.append(f"property {key} = {value!r}: {err}")
    return out
