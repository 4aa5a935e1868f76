"""Custom lead attributes and custom events: what a lead carries beyond the built-in profile
(a birthday, a plan, a renewal date) and what the site tells about them beyond carts and page
views (a webinar attended, a trial started). Both are declared in one YAML file
(``RELANCE_LEAD_SCHEMA_FILE``, config/lead_schema.yaml), checked at worker and API start and
re-read when it changes, so that segments, journey conditions and triggers can be checked
against what exists before they ship.

- An attribute has a type: ``string``, ``number``, ``bool``, ``date`` (``YYYY-MM-DD``: a
  birthday has no time and no zone) or ``enum`` (one of its ``values``). A value is checked on
  every write (``POST /leads``, ``PATCH /leads/{id}/attributes``); a ``null`` removes it. The
  values live in ``leads.attributes`` (JSON), so they are exported and erased with the lead.
- An event has a name and may declare typed properties; other properties are kept as given
  (scalars only). An event the file does not declare is refused: a typo in the site's tracking
  code answers 422 instead of feeding a segment nobody reads.
"""

from __future__ import annotations

import math
import re
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from relance.domain.config_files import read_model, watched
from relance.domain.models import Lead, utcnow

NAME = r"^[a-z][a-z0-9_]{0,63}$"
# The built-in profile's fields: an attribute may not shadow one (a segment on ``country`` means
# the lead's country, always).
BUILT_IN = frozenset(
    {
        "id",
        "email",
        "first_name",
        "phone",
        "locale",
        "time_zone",
        "country",
        "score",
        "stage",
        "segment",
        "created_at",
        "updated_at",
        "last_signup_at",
        "last_activity_at",
    }
)
MAX_STRING = 1000  # characters of a string attribute or property
MAX_PROPERTIES = 50

AttributeType = Literal["string", "number", "bool", "date", "enum"]


class LeadSchemaError(ValueError):
    """The lead schema file is missing, not YAML, or wrong (the message names the place)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AttributeSpec(_Strict):
    type: AttributeType
    description: str = Field(default="", max_length=500)
    values: list[str] | None = Field(
        default=None, min_length=1, max_length=200, description="enum: the allowed values"
    )

    @model_validator(mode="after")
    def _values_for_enum(self) -> AttributeSpec:
        if (self.type == "enum") != (self.values is not None):
            raise ValueError("an enum attribute needs `values`, and only an enum has them")
        return self


class EventSpec(_Strict):
    description: str = Field(default="", max_length=500)
    properties: dict[str, AttributeSpec] = Field(default_factory=dict, max_length=MAX_PROPERTIES)


class LeadSchema(_Strict):
    attributes: dict[str, AttributeSpec] = Field(default_factory=dict, max_length=200)
    events: dict[str, EventSpec] = Field(default_factory=dict, max_length=500)

    @model_validator(mode="after")
    def _names(self) -> LeadSchema:
        for kind, names in (("attributes", self.attributes), ("events", self.events)):
            for name in names:
                if not re.match(NAME, name):
                    raise ValueError(
                        f"{kind}: {name!r} is not a name (lower case letters, digits and _, "
                        "starting with a letter, at most 64)"
                    )
        shadowing = sorted(BUILT_IN & set(self.attributes))
        if shadowing:
            raise ValueError(
                f"attributes: {', '.join(shadowing)} is a built-in field of the lead, "
                "not a custom attribute"
            )
        return self

    def check_attributes(self, values: dict[str, Any]) -> dict[str, Any]:
        """The values as stored (a date as ``YYYY-MM-DD``, ``None`` to remove), or
        AttributeProblems naming each attribute at fault."""
        problems: dict[str, str] = {}
        out: dict[str, Any] = {}
        for name, value in values.items():
            spec = self.attributes.get(name)
            if spec is None:
                problems[name] = (
                    "no such attribute: declare it in the lead schema (known: "
                    + (", ".join(sorted(self.attributes)) or "none")
                    + ")"
                )
                continue
            try:
                out[name] = None if value is None else coerce(spec, value)
            except ValueError as err:
                problems[name] = str(err)
        if problems:
            raise AttributeProblems(problems)
        return out

    def check_event(self, name: str, properties: dict[str, Any]) -> dict[str, Any]:
        """The properties as stored, or AttributeProblems naming each one at fault (the key
        ``""`` for the event's name)."""
        spec = self.events.get(name)
        if spec is None:
            raise AttributeProblems(
                {
                    "": f"no such event: {name!r}; declare it in the lead schema (known: "
                    + (", ".join(sorted(self.events)) or "none")
                    + ")"
                }
            )
        problems: dict[str, str] = {}
        out: dict[str, Any] = {}
        for key, value in properties.items():
            declared = spec.properties.get(key)
            try:
                if value is None:
                    out[key] = None
                elif declared is not None:
                    out[key] = coerce(declared, value)
                elif isinstance(value, bool | int | float | str):
                    out[key] = _scalar(value)
                else:
                    raise ValueError("a property is a string, a number or a bool")
            except ValueError as err:
                problems[key] = str(err)
        if problems:
            raise AttributeProblems(problems)
        return out


class AttributeProblems(ValueError):
    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{k or 'name'}: {v}" for k, v in problems.items()))


def _scalar(value: bool | int | float | str) -> bool | int | float | str:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("a number must be finite")
    if isinstance(value, str) and len(value) > MAX_STRING:
        raise ValueError(f"at most {MAX_STRING} characters")
    return value


def coerce(spec: AttributeSpec, value: Any) -> Any:
    """One value checked against its type. Raises ValueError saying what was expected."""
    if spec.type == "string":
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return _scalar(value)
    if spec.type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("expected a number")
        return _scalar(value)
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return value
    if spec.type == "date":
        if not isinstance(value, str):
            raise ValueError("expected a date as YYYY-MM-DD")
        try:
            if len(value) != 10:  # fromisoformat takes 19900412 and week dates too
                raise ValueError
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise ValueError("expected a date as YYYY-MM-DD") from None
    assert spec.values is not None
    if value not in spec.values:
        raise ValueError(f"expected one of {', '.join(spec.values)}")
    return value


def merged_attributes(stored: dict | None, changes: dict) -> dict:
    """A given value replaces the stored one; ``None`` removes it. A new dict, so the ORM sees
    the change."""
    out = dict(stored or {})
    for name, value in changes.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def write_attributes(lead: Lead, values: dict[str, Any]) -> list[str]:
    """Merge checked values (``check_attributes``'s) into the lead's custom attributes, as
    ``PATCH /leads/{id}/attributes`` and a journey's update write them (the caller commits).
    Returns the attributes whose stored value changed: none when the same values are written
    again (a retried activity)."""
    before = dict(lead.attributes or {})
    lead.attributes = merged_attributes(before, values)
    lead.updated_at = utcnow()
    return sorted(n for n in values if before.get(n) != lead.attributes.get(n))


def load_lead_schema(path: Path | str) -> LeadSchema:
    """Read and check the file. A missing file is an empty schema (no custom attribute or
    event); a wrong one raises LeadSchemaError with the file and the place."""
    return read_model(
        path,
        LeadSchema,
        LeadSchemaError,
        what="the lead schema",
        shape="a mapping with `attributes` and `events`",
        missing=LeadSchema(),
    )


lead_schema_from = watched(load_lead_schema)  # the schema in a file, re-read when it changes
