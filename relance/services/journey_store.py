"""Journeys written as data, stored: a draft per key, its published versions, its lifecycle.

    create (a checked draft) ─► publish ─► version 1 ─► edit the draft ─► publish ─► version 2
                                   │
                  pause (no new entries, the leads in it go on) ◄─► resume
                                   │
                  archive: no new entries, never published again

- every draft stored is a checked one (relance/services/definitions.py ``checked``: the checks
  of ``POST /journeys/check``), and publishing checks it again (templates may have gone);
- a version is written once and never changed: its body, its compiled form (what enrollment
  puts in the workflow's input, so a lead keeps the version it entered with) and a hash of its
  content; publishing a draft with the content of the current version answers that version;
- a key is the journey's for good: it cannot be one of the catalogue's coded journeys (a name,
  a label of messages and rules, an id prefix), and an archived one is not reused (its versions
  and the messages sent under it keep it);
- races end as one request would: each change takes the definition's row first (a write, so
  SQLite's writers and PostgreSQL's row lock queue them), and a unique (key, version) is the
  last net (``retry_on_conflict`` runs the loser again, which then finds the version).

The functions take a session and commit; what they refuse raises ``NotFound`` or ``Conflict``
(the API answers 404 / 409) or ``DefinitionError`` (422, each problem naming its node).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import Session, col, select

from relance.contracts import catalogue
from relance.contracts.signals import ASSET_DOWNLOADED
from relance.domain.db import make_engine, retry_on_conflict
from relance.domain.definitions import Definition, Trigger
from relance.domain.journey_rules import JourneyRules
from relance.domain.models import JourneyDefinition, JourneyVersion, Segment, utcnow
from relance.domain.settings import get_settings
from relance.services.definitions import (
    DefinitionError,
    Problem,
    checked,
    compile_definition,
    compiled_input,
    known_templates,
    parse,
    read_file,
    trigger_problems,
)

log = logging.getLogger("relance.journeys")

DRAFT, PUBLISHED, PAUSED, ARCHIVED = "draft", "published", "paused", "archived"
STATUSES = (DRAFT, PUBLISHED, PAUSED, ARCHIVED)
RESERVED = ("schema", "check")  # the API's own paths under /journeys


class NotFound(LookupError):
    """No such definition (or no published version of it): a 404."""


class Conflict(ValueError):
    """The definition's state refuses the change (a key taken, archived, never published): 409."""


def coded_keys() -> set[str]:
    """What a defined journey's key may not be: the catalogue's names, the labels of their
    messages and rules, and their id prefixes."""
    coded = {n for e in catalogue.JOURNEYS.values() for n in (e.name, e.label, e.prefix)}
    return coded | set(RESERVED)


def content_hash(definition: Definition) -> str:
    """The hash of what the definition says (its normalised form): the same journey written
    another way (YAML or JSON, "48h" or "2d", the fields in another order) hashes the same."""
    normal = definition.model_dump(mode="json", by_alias=True)
    if not normal["triggers"]:  # a journey written before triggers existed hashes as it did
        del normal["triggers"]
    text = json.dumps(normal, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


# Checking against what is stored --------------------------------------------------------------
def _published_others(session: Session, key: str) -> list[Definition]:
    """The current versions of the other defined journeys (their redirects may loop with it)."""
    rows = session.exec(
        select(JourneyVersion)
        .join(
            JourneyDefinition,
            (col(JourneyDefinition.key) == col(JourneyVersion.key))
            & (col(JourneyDefinition.version) == col(JourneyVersion.version)),
        )
        .where(col(JourneyVersion.key) != key)
    ).all()
    return [parse(r.body) for r in rows]


def check_body(
    session: Session,
    data: Any,
    *,
    templates: set[str] | None = None,
    source: str = "",
    webhooks: Collection[str] | None = None,
) -> Definition:
    """``data`` checked as publishing checks it (its templates, its redirects with the other
    journeys published, the endpoints its webhook nodes call: ``webhooks``, else the
    settings'), or DefinitionError naming each node at fault."""
    definition = parse(data, source)
    settings = get_settings()
    definition = checked(
        data,
        source=source,
        templates=known_templates() if templates is None else templates,
        others=_published_others(session, definition.key),
        lead_schema=settings.lead_schema(),
        topics=settings.topics(),
        webhooks=set(settings.journey_webhooks) if webhooks is None else webhooks,
    )
    if definition.triggers:
        problems = trigger_problems(
            definition,
            get_settings().lead_schema(),
            lambda segment_id: session.get(Segment, segment_id) is not None,
        )
        if problems:
            raise DefinitionError(problems, source)
    return definition


# Reading ------------------------------------------------------------------------------------------
def get(session: Session, key: str) -> JourneyDefinition:
    row = session.get(JourneyDefinition, key)
    if row is None:
        raise NotFound(f"no defined journey with the key {key!r}")
    return row


def all_definitions(session: Session) -> list[JourneyDefinition]:
    return list(session.exec(select(JourneyDefinition).order_by(col(JourneyDefinition.key))))


def versions(session: Session, key: str) -> list[JourneyVersion]:
    get(session, key)
    return list(
        session.exec(
            select(JourneyVersion)
            .where(JourneyVersion.key == key)
            .order_by(col(JourneyVersion.version))
        )
    )


def current_version(session: Session, row: JourneyDefinition) -> JourneyVersion | None:
    if row.version is None:
        return None
    return session.exec(
        select(JourneyVersion).where(
            JourneyVersion.key == row.key, JourneyVersion.version == row.version
        )
    ).one()


def _lock(session: Session, key: str) -> JourneyDefinition:
    """The definition's row, taken for this transaction (a write first: concurrent changes of
    the same journey queue here instead of both reading the old state)."""
    taken = session.execute(
        update(JourneyDefinition)
        .where(col(JourneyDefinition.key) == key)
        .values(updated_at=JourneyDefinition.updated_at)
    )
    if taken.rowcount == 0:
        session.rollback()
        raise NotFound(f"no defined journey with the key {key!r}")
    row = session.get(JourneyDefinition, key, populate_existing=True)
    assert row is not None
    return row


# Changing -----------------------------------------------------------------------------------------
@retry_on_conflict
def create_draft(
    *,
    session: Session,
    data: Any,
    templates: set[str] | None = None,
    webhooks: Collection[str] | None = None,
) -> JourneyDefinition:
    definition = check_body(session, data, templates=templates, webhooks=webhooks)
    if definition.key in coded_keys():
        raise Conflict(
            f"the key {definition.key!r} is a coded journey's (the catalogue's names, labels "
            "and id prefixes are taken): choose another"
        )
    if session.get(JourneyDefinition, definition.key) is not None:
        raise Conflict(
            f"a defined journey with the key {definition.key!r} exists: "
            f"replace its draft with PUT /journeys/{definition.key}"
        )
    row = JourneyDefinition(key=definition.key, draft=data, draft_hash=content_hash(definition))
    session.add(row)
    session.commit()  # a concurrent create of the same key: IntegrityError, run again: 409
    return row


@retry_on_conflict
def replace_draft(
    *,
    session: Session,
    key: str,
    data: Any,
    templates: set[str] | None = None,
    webhooks: Collection[str] | None = None,
) -> JourneyDefinition:
    definition = check_body(session, data, templates=templates, webhooks=webhooks)
    if definition.key != key:
        raise DefinitionError(
            [Problem(None, f"key: the definition's key {definition.key!r} is not {key!r}")]
        )
    row = _lock(session, key)
    if row.status == ARCHIVED:
        session.rollback()
        raise Conflict(f"the {key} journey is archived: its draft cannot change any more")
    row.draft, row.draft_hash, row.updated_at = data, content_hash(definition), utcnow()
    session.add(row)
    session.commit()
    return row


@dataclass(frozen=True)
class Published:
    version: JourneyVersion
    created: bool  # False: the draft was the current version already


@retry_on_conflict
def publish(
    *,
    session: Session,
    key: str,
    templates: set[str] | None = None,
    webhooks: Collection[str] | None = None,
) -> Published:
    """The draft checked again and published as the next version; the current version when
    the draft says what it says."""
    row = _lock(session, key)
    if row.status == ARCHIVED:
        session.rollback()
        raise Conflict(f"the {key} journey is archived: it is not published again")
    current = current_version(session, row)
    if current is not None and current.content_hash == row.draft_hash:
        session.rollback()
        return Published(current, created=False)
    try:
        definition = check_body(session, row.draft, templates=templates, webhooks=webhooks)
    except DefinitionError:
        session.rollback()
        raise
    number = (row.version or 0) + 1
    version = JourneyVersion(
        key=key,
        version=number,
        body=row.draft,
        compiled=compiled_input(compile_definition(definition, version=number)),
        content_hash=row.draft_hash,
    )
    session.add(version)
    moved = session.execute(
        update(JourneyDefinition)
        .where(col(JourneyDefinition.key) == key)
        .where(
            col(JourneyDefinition.version).is_(None)
            if row.version is None
            else col(JourneyDefinition.version) == row.version
        )
        .values(
            version=number,
            status=PUBLISHED if row.status == DRAFT else row.status,
            updated_at=utcnow(),
        )
    )
    if moved.rowcount != 1:  # another publish got there first: run again, find its version
        raise StaleDataError(f"the {key} journey was published meanwhile")
    session.commit()
    invalidate_triggers()
    return Published(version, created=True)


MOVES = {
    # action: (the states it applies to, the state it leads to)
    "pause": ((PUBLISHED, PAUSED), PAUSED),
    "resume": ((PAUSED, PUBLISHED), PUBLISHED),
    "archive": ((DRAFT, PUBLISHED, PAUSED, ARCHIVED), ARCHIVED),
}


@retry_on_conflict
def move(*, session: Session, key: str, action: str) -> JourneyDefinition:
    """Pause, resume or archive (doing it twice is doing it once)."""
    allowed, to = MOVES[action]
    row = _lock(session, key)
    if row.status not in allowed:
        session.rollback()
        why = (
            "it was never published: publish it first"
            if row.status == DRAFT
            else "it is archived: it takes no leads any more"
        )
        raise Conflict(f"the {key} journey cannot {action}: {why}")
    row.status, row.updated_at = to, utcnow()
    session.add(row)
    session.commit()
    invalidate_triggers()
    return row


# Enrolling ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Enrollable:
    key: str
    version: int
    compiled: dict[str, Any]  # the compiled definition of its current version
    rules: JourneyRules


def enrollable(session: Session, key: str) -> Enrollable:
    """The current version a lead enters, or NotFound (no such journey, never published) /
    Conflict (paused, archived)."""
    row = session.get(JourneyDefinition, key)
    if row is None:
        raise NotFound(f"no journey named {key!r} (neither coded nor defined)")
    if row.status == DRAFT:
        raise NotFound(f"the {key} journey is a draft: publish it before enrolling leads")
    if row.status in (PAUSED, ARCHIVED):
        raise Conflict(f"the {key} journey is {row.status}: it takes no new leads")
    version = current_version(session, row)
    assert version is not None
    return Enrollable(key, version.version, version.compiled, parse(version.body).rules)


def keys_with_goal(session: Session, goal: str) -> list[str]:
    """The defined journeys one of whose versions ends on ``goal`` (a lead may be on any)."""
    rows = session.exec(select(JourneyVersion.key, JourneyVersion.compiled)).all()
    return sorted({key for key, compiled in rows if goal in compiled.get("goals", [])})


# Entry triggers (relance/services/triggers.py) --------------------------------------------------
@dataclass(frozen=True)
class Triggered:
    """A published (not paused) journey that has entry triggers: what its triggers enroll."""

    journey: Enrollable
    triggers: tuple[Trigger, ...]


@dataclass(frozen=True)
class TriggerIndex:
    journeys: tuple[Triggered, ...]
    waiting: dict[str, tuple[str, ...]]  # a signal's name -> the keys of journeys waiting for it
    # a custom event's name -> a journey's key -> the property filters its waits for it have
    # (``where``, in any of its versions: a lead runs the version it entered with)
    filters: dict[str, dict[str, tuple[dict[str, Any], ...]]] = field(default_factory=dict)


TRIGGERS_TTL_SECONDS = 30.0  # another process's publish or pause is seen within this
_index: tuple[float, TriggerIndex] | None = None
_index_lock = threading.Lock()


def invalidate_triggers() -> None:
    """Forget the cached triggers (a definition was published, paused, resumed or archived)."""
    global _index
    with _index_lock:
        _index = None


def trigger_index(session: Session) -> TriggerIndex:
    """The published journeys' triggers, and which journeys wait for which signal, cached in the
    process: the API's requests that may trigger a journey (a custom event, a list joined) read
    the database once every ``TRIGGERS_TTL_SECONDS`` at most, and at once after this process
    published or paused a definition."""
    global _index
    cached = _index
    if cached is not None and time.monotonic() - cached[0] < TRIGGERS_TTL_SECONDS:
        return cached[1]
    rows = session.exec(
        select(
            JourneyDefinition.key,
            JourneyDefinition.status,
            JourneyDefinition.version,
            JourneyVersion.version,
            JourneyVersion.body,
            JourneyVersion.compiled,
        ).join(JourneyVersion, col(JourneyVersion.key) == col(JourneyDefinition.key))
    ).all()
    journeys, waiting = [], {}
    filters: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for key, status, current, version, body, compiled in rows:
        for node in compiled.get("nodes", []):
            if node.get("event") == "signal" and node.get("signal"):
                waiting.setdefault(node["signal"], set()).add(key)
            # A wait for a custom event (by its name, as a signal's) or a download (the
            # nurturing journey's signal, ASSET_DOWNLOADED).
            if node.get("type") == "wait_for" and node.get("event") == "custom":
                waiting.setdefault(node["signal"], set()).add(key)
                if node.get("where"):
                    known = filters.setdefault(node["signal"], {}).setdefault(key, [])
                    if node["where"] not in known:
                        known.append(node["where"])
            if node.get("type") == "wait_for" and node.get("event") == "downloaded":
                waiting.setdefault(ASSET_DOWNLOADED, set()).add(key)
        if status != PUBLISHED or version != current:
            continue
        definition = parse(body)
        if definition.triggers:
            journeys.append(
                Triggered(
                    Enrollable(key, version, compiled, definition.rules),
                    tuple(definition.triggers),
                )
            )
    index = TriggerIndex(
        tuple(sorted(journeys, key=lambda t: t.journey.key)),
        {name: tuple(sorted(keys)) for name, keys in waiting.items()},
        {name: {k: tuple(w) for k, w in by_key.items()} for name, by_key in filters.items()},
    )
    with _index_lock:
        _index = (time.monotonic(), index)
    return index


# Files: config/journeys/*.yaml ----------------------------------------------------------------
@dataclass(frozen=True)
class Loaded:
    path: Path
    outcome: str  # published | unchanged | skipped
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: {self.detail}"


def load_files(engine: Engine, paths: Iterable[Path]) -> list[Loaded]:
    """Each file checked, and published when its content is new: a file never seen is created
    and published, a changed one becomes its journey's next version, an unchanged one is left
    alone, an invalid one is skipped (nothing of it is stored). A file's content replaces the
    journey's draft: a journey kept in a file is edited in the file."""
    report = []
    for path in sorted(paths):
        try:
            with Session(engine, expire_on_commit=False) as session:
                report.append(_load_one(session, path))
        except DefinitionError as err:
            problems = "; ".join(str(p) for p in err.problems)
            report.append(Loaded(path, "skipped", f"skipped, it cannot be published: {problems}"))
        except Conflict as err:
            report.append(Loaded(path, "skipped", f"skipped: {err}"))
    return report


def _load_one(session: Session, path: Path) -> Loaded:
    data = read_file(path)
    definition = check_body(session, data, source=str(path))
    row = session.get(JourneyDefinition, definition.key)
    digest = content_hash(definition)
    current = current_version(session, row) if row is not None else None
    if row is not None and row.draft_hash == digest and current is not None:
        if current.content_hash == digest:  # nothing to write (a read-only database starts)
            return Loaded(path, "unchanged", f"{definition.key} unchanged (version {row.version})")
    if row is None:
        create_draft(session=session, data=data)
    elif row.draft_hash != digest:
        replace_draft(session=session, key=definition.key, data=data)
    published = publish(session=session, key=definition.key)
    v = published.version.version
    if not published.created:
        return Loaded(path, "unchanged", f"{definition.key} unchanged (version {v})")
    return Loaded(path, "published", f"{definition.key} published as version {v}")


def load_dir(engine: Engine, directory: Path) -> list[Loaded]:
    """``load_files`` of the directory's *.yaml and *.yml files (none there: nothing to do)."""
    if not directory.is_dir():
        return []
    return load_files(engine, [*directory.glob("*.yaml"), *directory.glob("*.yml")])


def load_at_start(engine: Engine, directory: Path) -> list[Loaded]:
    """``load_dir``, each file's outcome logged in plain words; whatever goes wrong (a database
    not migrated yet, not writable) is logged too, and the caller starts all the same."""
    try:
        report = load_dir(engine, directory)
    except Exception as err:  # noqa: BLE001 - the API starts without its journey files
        log.error("journey definitions in %s were not loaded: %s", directory, err)
        return []
    for loaded in report:
        if loaded.outcome == "skipped":
            log.warning("journey definition %s", loaded)
        else:
            log.info("journey definition %s", loaded)
    return report


def main(directory: str) -> int:
    """``python -m relance journeys load DIR`` (into RELANCE_DATABASE_URL's database): one
    line per file; exit 1 when a file was skipped."""
    engine = make_engine(get_settings().database_url)
    try:
        report = load_dir(engine, Path(directory))
    finally:
        engine.dispose()
    for loaded in report:
        print(loaded)
    if not report:
        print(f"{directory}: no journey definition (*.yaml) there")
    return 1 if any(loaded.outcome == "skipped" for loaded in report) else 0
