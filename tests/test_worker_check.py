"""The worker's health check (``python worker.py --check``), the one docker-compose.yml runs.

An operator's orchestrator restarts or stops routing to a worker it sees unhealthy, so the check
must say "healthy" only when this machine's worker really takes journey tasks, and "unhealthy"
when nothing polls. Checked against the real dev server and a real worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from temporalio.testing import WorkflowEnvironment

from relance.dev.seeding import TEST_PAYLOAD_KEY_ID, TEST_PAYLOAD_KEYS, unique_id
from relance.domain.settings import Settings
from worker import build_worker, polling_problem

ROOT = Path(__file__).resolve().parent.parent


async def wait_until_healthy(
    env: WorkflowEnvironment, settings: Settings, deadline_s: float = 20.0
) -> str:
    """Poll the check until it passes or the deadline; returns the last problem ("" once
    healthy)."""
    deadline = time.monotonic() + deadline_s
    problem = "not checked"
    while time.monotonic() < deadline:
        problem = await polling_problem(env.client, settings)
        if not problem:
            return ""
        await asyncio.sleep(0.2)
    return problem


def run_check(
    env: WorkflowEnvironment, task_queue: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """``python worker.py --check`` as the container runs it: configured by RELANCE_* variables
    only."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RELANCE_")}
    environment.update(
        {
            "RELANCE_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "RELANCE_TEMPORAL_TASK_QUEUE": task_queue,
            "RELANCE_PAYLOAD_KEYS": json.dumps(TEST_PAYLOAD_KEYS),
            "RELANCE_PAYLOAD_KEY_ID": TEST_PAYLOAD_KEY_ID,
        }
    )
    return subprocess.run(
        [sys.executable, str(ROOT / "worker.py"), "--check"],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_a_polling_worker_is_healthy_and_a_queue_nobody_polls_is_not(
    dev_server_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    queue = unique_id("health")
    queue_settings = settings.model_copy(update={"temporal_task_queue": queue})

    problem = await polling_problem(dev_server_env.client, queue_settings)
    assert "no worker" in problem and queue in problem, problem

    async with build_worker(dev_server_env.client, queue_settings, engine):
        assert await wait_until_healthy(dev_server_env, queue_settings) == ""
        # Another machine's worker does not make this one healthy: in compose each replica checks
        # itself.
        elsewhere = await polling_problem(
            dev_server_env.client, queue_settings, host="another-container"
        )
        assert "no worker of host 'another-container'" in elsewhere, elsewhere
        # A worker whose last poll is older than the freshness window has stopped taking tasks.
        stale = await polling_problem(dev_server_env.client, queue_settings, freshness=timedelta(0))
        assert "last polled" in stale, stale


async def test_the_command_line_check_exits_0_only_while_the_worker_polls(
    dev_server_env: WorkflowEnvironment, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    queue = unique_id("health-cli")
    queue_settings = settings.model_copy(update={"temporal_task_queue": queue})

    # Several runs each: the exit code must be the check's every time, never a crash at exit
    # (the orchestrator counts any non-zero code as a failed check).
    for _ in range(4):
        idle = await asyncio.to_thread(run_check, dev_server_env, queue, tmp_path)
        assert idle.returncode == 1, (idle.returncode, idle.stdout, idle.stderr)
        assert "worker unhealthy" in idle.stderr and queue in idle.stderr, idle.stderr

    async with build_worker(dev_server_env.client, queue_settings, engine):
        assert await wait_until_healthy(dev_server_env, queue_settings) == ""
        for _ in range(4):
            polling = await asyncio.to_thread(run_check, dev_server_env, queue, tmp_path)
            assert polling.returncode == 0, (polling.returncode, polling.stdout, polling.stderr)
            assert "worker healthy" in polling.stdout


def test_the_check_reports_an_unreachable_temporal(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RELANCE_")}
    environment.update(
        {
            "RELANCE_TEMPORAL_ADDRESS": "127.0.0.1:1",  # nothing listens on port 1
            "RELANCE_PAYLOAD_KEYS": json.dumps(TEST_PAYLOAD_KEYS),
            "RELANCE_PAYLOAD_KEY_ID": TEST_PAYLOAD_KEY_ID,
        }
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "worker.py"), "--check"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "cannot ask Temporal at 127.0.0.1:1" in result.stderr, result.stderr
