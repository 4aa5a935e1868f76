"""The stack a benchmark runs against, all on this machine: a migrated SQLite database, the real
Temporal dev server (with payload encryption, as in production), the dev mail sink, and the
worker and the API as separate processes (``python worker.py``, uvicorn), like ``make run``.

``RELANCE_BENCH_PROFILE=DIR`` runs the API and the worker under py-spy and writes their samples
to DIR (one file a process started: ``api.txt``, ``worker.txt``, ``worker-cache-20.txt``...).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from relance.contracts import search_attributes
from relance.dev.devsink import DevSink
from relance.dev.serving import free_ports
from relance.domain.db import make_engine
from relance.domain.encryption import EncryptionCodec, encrypted_converter, new_key
from relance.domain.settings import Settings
from relance.services import migrate
from relance.services.temporal import bundled_binary

ROOT = Path(__file__).resolve().parent.parent


def say(message: str) -> None:
    print(f"bench | {message}", flush=True)


def env_for(settings: Settings) -> dict[str, str]:
    fields = (
        "database_url",
        "temporal_address",
        "temporal_task_queue",
        "smtp_host",
        "smtp_port",
        "sms_provider_url",
        "api_key",
        "secret_key",
        "public_base_url",
        "payload_key_id",
        "worker_max_cached_workflows",
        "tracking_machine_seconds",
        "tracking_delivery_concurrency",
        "tracking_delivery_max_delay_seconds",
        "broadcast_send_concurrency",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELANCE_")}
    env.update({f"RELANCE_{f.upper()}": str(getattr(settings, f)) for f in fields})
    env["RELANCE_PAYLOAD_KEYS"] = json.dumps(settings.payload_keys)
    env["RELANCE_REENGAGEMENT_SCHEDULE_ENABLED"] = "false"  # no sweep in the middle of a measure
    env["RELANCE_SEND_WINDOW_ENABLED"] = (
        "false"  # the figures must not depend on the hour they are taken
    )
    return env


def process_rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pid_running(needle: str) -> int | None:
    """The process whose command line contains ``needle`` (Linux)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace"
                ):
                    return int(entry.name)
            except OSError:
                continue
    return None


@dataclass
class Stack:
    settings: Settings
    engine: Engine
    client: Client
    sink: DevSink
    workdir: Path
    api_url: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    @property
    def server_pid(self) -> int | None:
        """The Temporal dev server's process (found by its database file)."""
        return pid_running(str(self.workdir / "temporal.db"))

    def start(self, name: str, *, label: str | None = None) -> subprocess.Popen:
        """Start the worker or the API; ``label`` names its log and profile (default: name)."""
        port = self.api_url.rsplit(":", 1)[1]
        commands = {
            "worker": [sys.executable, str(ROOT / "worker.py")],
            "api": [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "bench.app:create_bench_app",
                "--host",
                "127.0.0.1",
                "--port",
                port,
                "--log-level",
                "warning",
            ],
        }
        command = commands[name]
        profile = os.environ.get("RELANCE_BENCH_PROFILE")
        if profile:
            Path(profile).mkdir(parents=True, exist_ok=True)
            command = [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--format",
                "raw",
                "--rate",
                "200",
                "--gil",
                "-o",
                str(Path(profile) / f"{label or name}.txt"),
                "--",
            ] + command
        self.logs[name] = self.workdir / f"{label or name}.log"
        log = self.logs[name].open("w")
        self.processes[name] = subprocess.Popen(
            command, cwd=ROOT, env=env_for(self.settings), stdout=log, stderr=subprocess.STDOUT
        )
        return self.processes[name]

    def pid_of(self, name: str) -> int:
        """The worker's or the API's own process: under py-spy, py-spy's child."""
        pid = self.processes[name].pid
        if not os.environ.get("RELANCE_BENCH_PROFILE"):
            return pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            if children:
                return int(children[0])
            time.sleep(0.05)
        raise RuntimeError(f"py-spy started no {name} process")

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        if os.environ.get("RELANCE_BENCH_PROFILE"):
            process.send_signal(signal.SIGINT)  # py-spy writes its samples on Ctrl-C
        else:
            process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a hung process must not outlive the run
            process.kill()
            process.wait(timeout=10)

    async def wait_ready(self, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                process = self.processes[name]
                if process.poll() is not None:
                    raise RuntimeError(f"the {name} stopped: {self.logs[name].read_text()[-2000:]}")
                if name == "worker" and "ready:" in self.logs[name].read_text():
                    return
                if name == "api":
                    try:
                        if (await http.get(f"{self.api_url}/health")).status_code == 200:
                            return
                    except httpx.HTTPError:
                        pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"the {name} did not come up within {timeout:g} s")


async def open_stack(exit_stack: AsyncExitStack, *, task_queue: str = "bench") -> Stack:
    workdir = Path(exit_stack.enter_context(tempfile.TemporaryDirectory(prefix="relance-bench-")))
    url = f"sqlite:///{workdir / 'bench.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    say("starting the Temporal dev server (SQLite file) and the mail sink")
    key_id, key = new_key()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=bundled_binary("temporal"),
        search_attributes=search_attributes.ALL,
        dev_server_database_filename=str(workdir / "temporal.db"),
        data_converter=encrypted_converter(
            EncryptionCodec({key_id: base64.b64decode(key)}, key_id)
        ),
    )
    exit_stack.push_async_callback(env.shutdown)
    sink = await exit_stack.enter_async_context(DevSink(smtp_port=0, http_port=0))
    port = free_ports(1)[0]
    settings = Settings(
        _env_file=None,
        database_url=url,
        temporal_address=env.client.service_client.config.target_host,
        temporal_task_queue=task_queue,
        smtp_host="127.0.0.1",
        smtp_port=sink.smtp_port,
        sms_provider_url=f"http://127.0.0.1:{sink.http_port}/sms",
        api_key="bench",
        secret_key="bench",
        public_base_url=f"http://127.0.0.1:{port}",
        payload_keys={key_id: key},
        payload_key_id=key_id,
        # The benchmarks sign each link the instant before they request it; a campaign's links
        # are minutes or days old. With the default, the first 2 s of every load were clicks
        # "too fast to be a person", kept and not signalled (relance/domain/engagement.py).
        tracking_machine_seconds=0,
    )
    stack = Stack(settings, engine, env.client, sink, workdir, f"http://127.0.0.1:{port}")

    def stop_all() -> None:
        for name in list(stack.processes):
            stack.stop(name)

    exit_stack.callback(stop_all)
    return stack
