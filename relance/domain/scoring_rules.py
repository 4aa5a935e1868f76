"""The scoring rules: a YAML file (``RELANCE_SCORING_RULES_FILE``, config/scoring.yaml) giving
points per event, per page and per fit rule, and the decay.

The file is validated with pydantic when the worker and the API start (a mistake stops them with
the file and the place: ``config/scoring.yaml: pages.0.url_pattern: ...``), and re-read when it
changes. Plain configuration like the settings that name it: nothing here touches the database
(relance/domain/scoring.py applies the rules).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from relance.domain.config_files import read_model, watched

if TYPE_CHECKING:
    from relance.domain.models import Lead

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,40}$")]
Points = Annotated[int, Field(ge=-1000, le=1000)]

# The events the code scores (journeys and API); a rules file must give each one points (0 is fine).
KNOWN_EVENTS = (
    "email_opened",
    "email_clicked",
    "form_submitted",
    "purchase",
    "reengaged",
    "page_view",
)


class RulesError(ValueError):
    """The scoring rules file is missing or wrong; the message says where."""


class PageRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    url_pattern: str = Field(
        min_length=1, max_length=500, description="a regular expression searched in the URL"
    )
    points: Points

    @field_validator("url_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"not a regular expression: {err}") from None
        return value

    def matches(self, url: str) -> bool:
        return re.search(self.url_pattern, url) is not None


class FitRule(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: Name
    field: Literal["country", "locale", "time_zone"]
    values: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        alias="in", min_length=1
    )
    points: Points

    def matches(self, lead: Lead) -> bool:
        value = getattr(lead, self.field)
        return value is not None and value.casefold() in {v.casefold() for v in self.values}


class DecayRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    percent: float = Field(default=10, ge=0, le=100, description="0: no decay")
    every_days: int = Field(default=30, ge=1, le=3650)


class ScoringRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: dict[Name, Points]
    pages: list[PageRule] = Field(default_factory=list)
    fit: list[FitRule] = Field(default_factory=list)
    decay: DecayRule = Field(default_factory=DecayRule)

    @model_validator(mode="after")
    def _complete(self) -> ScoringRules:
        missing = [e for e in KNOWN_EVENTS if e not in self.events]
        if missing:
            raise ValueError(f"events: give points (0 is fine) for {', '.join(missing)}")
        for kind, rules in (("pages", self.pages), ("fit", self.fit)):
            names = [r.name for r in rules]
            if len(set(names)) != len(names):
                raise ValueError(f"{kind}: rule names must be unique")
        return self

    def points(self, event: str) -> int | None:
        return self.events.get(event)

    def page_points(self, url: str) -> tuple[str, int]:
        """(rule name, points) for a page view: the first matching page rule, else ``page_view``."""
        for rule in self.pages:
            if rule.matches(url):
                return rule.name, rule.points
        return "page_view", self.events["page_view"]


def load_rules(path: Path | str) -> ScoringRules:
    """Read and check the rules file. Raises RulesError with the file and the place of a mistake."""
    return read_model(
        path,
        ScoringRules,
        RulesError,
        what="the scoring rules",
        shape="a mapping with `events`, `pages`, `fit`, `decay`",
    )


rules_from = watched(load_rules)  # the rules in a file, re-read when it changes
