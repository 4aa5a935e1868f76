"""The topics marketing messages are about (newsletter, events, offers, ...): a YAML file
(``RELANCE_TOPICS_FILE``, config/topics.yaml) giving each topic's key, label, description and
default for a lead who has not chosen.

The file is validated with pydantic when the worker and the API start (a mistake stops them with
the file and the place: ``config/topics.yaml: topics.1.key: ...``), and re-read when it changes.
Plain configuration: a lead's choices are in the consent ledger (relance/domain/consent.py,
``topic_consents``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from relance.domain.config_files import read_model, watched

DEFAULT_TOPICS_FILE = Path(__file__).resolve().parents[2] / "config" / "topics.yaml"
TopicKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,40}$")]


class TopicsError(ValueError):
    """The topics file is missing or wrong; the message says where."""


class Topic(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: TopicKey
    label: str = Field(min_length=1, max_length=80)
    description: str = Field(default="", max_length=300)
    # For a lead who has not chosen for this topic: on (sent) or off (not sent until they turn
    # it on). Changing it changes it for every lead who has not chosen.
    default: bool


class Topics(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    topics: list[Topic] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Topics:
        keys = [t.key for t in self.topics]
        doubles = sorted({k for k in keys if keys.count(k) > 1})
        if doubles:
            raise ValueError(f"each topic key once: {', '.join(doubles)} more than once")
        return self

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(t.key for t in self.topics)

    def get(self, key: str) -> Topic | None:
        return next((t for t in self.topics if t.key == key), None)

    def check_named(self, named: Iterable[str], where: str) -> None:
        """Every topic ``where`` sends on is declared (a typo stops the start, not a send)."""
        missing = sorted(set(named) - set(self.keys))
        if missing:
            raise TopicsError(
                f"{where} sends on the topic(s) {', '.join(missing)}, which the topics file does "
                f"not declare (declared: {', '.join(self.keys)})"
            )


def _load(path: Path) -> Topics:
    return read_model(
        path,
        Topics,
        TopicsError,
        what="the topics",
        shape="a mapping with `topics`, a list of topics",
    )


topics_from = watched(_load)  # the topics in a file, re-read when it changes
