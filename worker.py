"""The Relance worker: runs every journey and every activity on the ``relance`` task queue.

    python worker.py          # run the worker
    python worker.py --check  # health check: exit 0 if this machine's worker is polling
                              # its task queue

Reads its configuration from RELANCE_* environment variables (see relance/domain/settings.py).
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import importlib
import logging
import os
import signal
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.common import HeaderCodecBehavior
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import workflows
from activities import build_activities
from activities.runs import RunEntries
from relance.contracts import catalogue
from relance.contracts.catalogue import SCENARIOS, CatalogueError, Journey, scenario_links
from relance.contracts.journey_graph import JourneyGraphError, Link, TargetRules, check_graph
from relance.domain.db import make_engine
from relance.domain.journey_rules import cooldown_of
from relance.domain.lead_schema import LeadSchemaError
from relance.domain.scoring_rules import RulesError
from relance.domain.settings import Settings, get_settings
from relance.domain.topics import TopicsError
from relance.services.journeys import check_topics, rules_for
from relance.services.mql import MqlNotifier
from relance.services.nurturing import SequenceError, load_sequence
from relance.services.schedules import (
    ensure_reengagement_schedule,
    ensure_score_decay_schedule,
    ensure_trigger_sweep_schedule,
)
from relance.services.temporal import connect, ensure_search_attributes
from workflows.recording import JourneyRuns

log = logging.getLogger("relance.worker")


def workflow_class(entry: Journey) -> type:
    """The class of the entry's workflow (``"module:Class"``), checked against its type name."""
    module, _, name = entry.workflow.partition(":")
    cls = getattr(importlib.import_module(module), name, None)
    defn = getattr(cls, "__temporal_workflow_definition", None)
    if defn is None or defn.name != entry.workflow_type:
        raise CatalogueError(
            f"the {entry.name} journey's workflow {entry.workflow} is not a workflow named "
            f"{entry.workflow_type!r}"
        )
    return cls


def workflow_classes() -> list[type]:
    """Every workflow of the catalogue (relance/contracts/catalogue.py), for the worker."""
    return [workflow_class(entry) for entry in catalogue.workflow_types()]


# What the worker runs (the catalogue's workflows as it stood at start-up; build_worker reads it
# again, so a journey registered since is run too).
ALL_JOURNEYS = workflow_classes()


# The modules every journey shares, taken from the worker's own import instead of being executed
# again in each journey's sandbox. A journey the worker no longer holds in its cache (more
# journeys active than RELANCE_WORKER_MAX_CACHED_WORKFLOWS) is rebuilt from its history at its
# next signal or timer, and each rebuild used to run these modules again: most of the CPU of a
# signal under load. They are safe to share: the contracts (dataclasses, enums, activity stubs)
# and the send window's arithmetic hold no state and touch no clock or I/O, and the journeys'
# frame (steps, Journey base, goals) keeps each journey's state on the journey itself, its
# module-level values are constants. Each journey's own module is still run afresh per journey.
# One copy of each class for the sandbox and the converter alike: a result decoded into a
# contract's dataclass is an instance of the very class the journey imported.
SANDBOX_PASSTHROUGH = (
    "relance.contracts",
    "relance.domain.send_window",
    "workflows.goals",
    "workflows.journey",
    "workflows.steps",
)


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox the journeys run in, for the worker and for the replay of saved histories."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*SANDBOX_PASSTHROUGH)
    )


def compile_journeys() -> None:
    """Write the bytecode of the journeys' modules once, at start-up. Each journey's own module
    is run again in every sandbox the worker builds (a new journey, or one rebuilt from its
    history), and without bytecode each of those compiles it from source: a third of a rebuild.
    PYTHONDONTWRITEBYTECODE (the dev environment's and the image's) only stops the imports from
    writing it. Where the code is read-only, nothing is written: the image compiles it when it
    is built (Dockerfile)."""
    for folder in workflows.__path__:
        compileall.compile_dir(folder, maxlevels=0, quiet=2)


def journey_links() -> list[Link]:
    """The declared graph of "journey A may enroll a lead into B"."""
    return scenario_links(SCENARIOS)


def target_rules(settings: Settings):
    """What the graph's guards are checked against: each target's enrollment rules."""

    def rules_of(target: str) -> TargetRules:
        name = target if target in catalogue.JOURNEYS else catalogue.scenario_entry_name(target)
        rules = rules_for(settings, catalogue.entry(name).label)
        cooldown = cooldown_of(rules, settings.reenroll_cooldown_days)
        return TargetRules(rules.reenroll, cooldown.total_seconds() / 86400)

    return rules_of


def build_worker(
    client: Client,
    settings: Settings,
    engine: Engine,
    *,
    task_queue: str | None = None,
    links: list[Link] | None = None,
) -> Worker:
    """A worker with every journey and activity, for ``worker.py`` and for the tests. Raises
    JourneyGraphError when journeys enroll each other in a loop that nothing guards."""
    check_graph(journey_links() if links is None else links, target_rules(settings))
    # The journeys' activities carry their run's entry in a header (the lead's id among it):
    # encrypted like every payload (the client's codec), and decrypted where the activity runs.
    client = Client(**{**client.config(), "header_codec_behavior": HeaderCodecBehavior.CODEC})
    return Worker(
        client,
        task_queue=task_queue or settings.temporal_task_queue,
        workflows=workflow_classes(),
        workflow_runner=workflow_runner(),
        activities=build_activities(settings, engine),
        activity_executor=ThreadPoolExecutor(max_workers=32),
        max_concurrent_activities=32,
        max_cached_workflows=settings.worker_max_cached_workflows,
        # Journeys record their runs: the end as an activity, the entry with their activities.
        interceptors=[JourneyRuns(), RunEntries(engine)],
    )


# An idle worker's long poll lasts about a minute before it polls again, and Temporal records the
# time each poll started: a worker that last polled longer ago than this has stopped polling.
POLL_FRESHNESS = timedelta(seconds=150)


async def polling_problem(
    client: Client,
    settings: Settings,
    *,
    host: str | None = None,
    freshness: timedelta = POLL_FRESHNESS,
) -> str:
    """Why the worker on ``host`` (this machine by default) is not healthy, or "" when it is.

    Healthy means what the journeys need: Temporal answers, and a worker process of this host
    (the SDK names each worker ``<pid>@<hostname>``; in a container the hostname is the
    container's) has polled both the workflow and the activity tasks of the task queue recently.
    A process that is up but stuck, or cut off from Temporal, fails this check.
    """
    host = host or socket.gethostname()
    since = datetime.now(UTC) - freshness
    for kind, queue_type in (
        ("workflow", TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
        ("activity", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
    ):
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=settings.temporal_namespace,
                task_queue=TaskQueue(name=settings.temporal_task_queue),
                task_queue_type=queue_type,
            ),
            timeout=timedelta(seconds=10),
        )
        ours = [p for p in described.pollers if p.identity.rpartition("@")[2] == host]
        if not ours:
            return (
                f"no worker of host {host!r} polls the {kind} tasks of task queue "
                f"{settings.temporal_task_queue!r}"
            )
        last = max(p.last_access_time.ToDatetime(tzinfo=UTC) for p in ours)
        if last < since:
            return (
                f"the worker of host {host!r} last polled the {kind} tasks of task queue "
                f"{settings.temporal_task_queue!r} at {last:%H:%M:%S} UTC, over {freshness} ago"
            )
    return ""


async def check() -> int:
    """``python worker.py --check``: the container health check (0 healthy, 1 not)."""
    settings = get_settings()
    try:
        client = await connect(settings)
        problem = await polling_problem(client, settings)
    except Exception as err:  # Temporal unreachable, or refusing: not healthy either
        problem = f"cannot ask Temporal at {settings.temporal_address}: {err}"
    print(
        f"worker unhealthy: {problem}" if problem else "worker healthy: polling its task queue",
        file=sys.stderr if problem else sys.stdout,
    )
    return 1 if problem else 0


async def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s worker: %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("temporalio").setLevel(logging.WARNING)
    settings = get_settings()
    try:
        sequence = load_sequence(
            settings.nurturing_sequence_file
        )  # a broken sequence file stops the worker here
    except SequenceError as err:
        raise SystemExit(f"worker: {err}") from None
    try:
        rules = settings.scoring_rules()  # a broken scoring rules file stops the worker here
    except RulesError as err:
        raise SystemExit(f"worker: {err}") from None
    try:
        schema = settings.lead_schema()  # a broken lead schema file stops the worker here
    except LeadSchemaError as err:
        raise SystemExit(f"worker: {err}") from None
    log.info(
        "lead schema: %d custom attributes, %d custom events",
        len(schema.attributes),
        len(schema.events),
    )
    log.info(
        "scoring rules: %s; %d page rules, %d fit rules",
        rules.events,
        len(rules.pages),
        len(rules.fit),
    )
    try:
        check_topics(settings)  # a broken topics file stops the worker here
    except TopicsError as err:
        raise SystemExit(f"worker: {err}") from None
    log.info("topics: %s", ", ".join(settings.topics().keys))
    log.info(
        "nurturing sequence %s: %s", sequence.version, " -> ".join(s.name for s in sequence.steps)
    )
    try:
        # a loop between journeys that nothing guards stops the worker here
        check_graph(journey_links(), target_rules(settings))
    except JourneyGraphError as err:
        raise SystemExit(f"worker: {err}") from None
    compile_journeys()
    log.info("connecting to Temporal at %s", settings.temporal_address)
    client = await connect(settings)
    await ensure_search_attributes(client, settings.temporal_namespace)
    await ensure_reengagement_schedule(client, settings)
    await ensure_score_decay_schedule(client, settings)
    await ensure_trigger_sweep_schedule(client, settings)
    engine = make_engine(settings.database_url)
    worker = build_worker(client, settings, engine)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    notifier = asyncio.create_task(MqlNotifier(engine, settings).run(), name="mql-notifier")
    async with worker:
        log.info(
            "ready: running %s on task queue %r",
            ", ".join(j.__name__ for j in workflow_classes()),
            settings.temporal_task_queue,
        )
        await stop.wait()
        log.info("stopping: finishing the tasks in hand")
        notifier.cancel()
        await asyncio.gather(notifier, return_exceptions=True)
    log.info("stopped")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The Relance worker.")
    parser.add_argument(
        "--check",
        action="store_true",
        help="health check: exit 0 if this machine's worker is polling its task queue, else 1",
    )
    if parser.parse_args().check:
        code = asyncio.run(check())
        sys.stdout.flush()
        sys.stderr.flush()
        # A short-lived process that connected a Temporal client can abort while the interpreter
        # shuts down (the SDK's Rust threads outlive it: temporalio/sdk-python#300), about one
        # run in three here, which would report a healthy worker as unhealthy. Nothing is left to
        # clean up: leave without the interpreter's shutdown, with the check's own exit code.
        os._exit(code)
    asyncio.run(main())
