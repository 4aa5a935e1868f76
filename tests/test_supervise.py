"""`make run` keeps its processes running: a child that dies is restarted after a growing pause,
the log says so in words, and only a stop (Ctrl-C) ends them all, in order, leaving nothing behind.

Real child processes throughout (small Python programs standing for Temporal, the inbox, the
worker and the API), killed with SIGKILL as the OOM killer would.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from relance.dev.supervise import Backoff, Supervisor, describe_exit

# Prints its pid, starts a grandchild (as uvicorn's or Temporal's helpers would), then idles.
CHILD = """
import os, subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(f"ready pid={os.getpid()} grandchild={grandchild.pid}", flush=True)
time.sleep(600)
"""
CRASHES_AT_ONCE = "import sys; print('cannot bind 8000', flush=True); sys.exit(3)"


class Log:
    """The supervisor's `say`, recorded; tests wait on a line with a deadline."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self._changed = threading.Condition()

    def __call__(self, name: str, line: str) -> None:
        with self._changed:
            self.lines.append((name, line))
            self._changed.notify_all()

    def wait_for(
        self, name: str, pattern: str, *, after: int = 0, timeout: float = 20.0
    ) -> tuple[int, re.Match]:
        """The first line from ``name`` matching ``pattern`` at index ``after`` or later."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index in range(after, len(self.lines)):
                    who, line = self.lines[index]
                    if who == name and (found := re.search(pattern, line)):
                        return index, found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"no {name!r} line matching {pattern!r} within {timeout} s; log:\n"
                        + "\n".join(f"{w:>8} | {l}" for w, l in self.lines)
                    )
                self._changed.wait(remaining)

    def own(self) -> list[str]:
        with self._changed:
            return [line for who, line in self.lines if who == "relance"]


def _gone(pid: int) -> bool:
    """Not running: no such process, or only a zombie waiting for a reaper."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def supervisor(log: Log):
    running = Supervisor(log, backoff=Backoff(first=0.1, cap=0.4, stable_after=30), stop_timeout=5)
    yield running
    running.stop()


def _start_stack(supervisor: Supervisor, log: Log) -> dict[str, re.Match]:
    names = ["temporal", "mailsink", "worker", "api"]
    for name in names:
        supervisor.start(name, [sys.executable, "-c", CHILD])
    return {name: log.wait_for(name, r"ready pid=(\d+) grandchild=(\d+)")[1] for name in names}


def test_the_backoff_doubles_up_to_its_cap():
    backoff = Backoff()
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_an_exit_is_said_in_words():
    assert describe_exit(-9) == "exited with code -9 (killed by SIGKILL)"
    assert describe_exit(3) == "exited with code 3"


def test_a_killed_worker_is_restarted_and_the_log_says_so(supervisor, log):
    ready = _start_stack(supervisor, log)
    first_pid = int(ready["worker"][1])
    assert supervisor.pid("worker") == first_pid

    os.kill(first_pid, signal.SIGKILL)
    said, _ = log.wait_for(
        "relance",
        r"^worker exited with code -9 \(killed by SIGKILL\); "
        r"restarting it in 0\.1 s \(attempt 1\)$",
    )
    _, again = log.wait_for("worker", r"ready pid=(\d+)", after=said)
    second_pid = int(again[1])
    assert second_pid != first_pid and supervisor.pid("worker") == second_pid

    # Killed again at once: the pause doubles.
    os.kill(second_pid, signal.SIGKILL)
    said, _ = log.wait_for(
        "relance",
        r"^worker exited with code -9 .*; restarting it in 0\.2 s \(attempt 2\)$",
        after=said,
    )
    log.wait_for("worker", r"ready pid=(\d+)", after=said)

    # Nothing else was stopped or restarted meanwhile: the rest of the stack kept its processes.
    for name in ("temporal", "mailsink", "api"):
        assert supervisor.pid(name) == int(ready[name][1])
    assert not [line for line in log.own() if "stopping" in line]


def test_the_inbox_and_temporal_are_restarted_too(supervisor, log):
    ready = _start_stack(supervisor, log)
    for name in ("mailsink", "temporal"):
        os.kill(int(ready[name][1]), signal.SIGKILL)
        said, _ = log.wait_for("relance", rf"^{name} exited with code -9 .*; restarting it in")
        _, again = log.wait_for(name, r"ready pid=(\d+)", after=said)
        assert supervisor.pid(name) == int(again[1]) != int(ready[name][1])


def test_a_child_that_keeps_crashing_is_retried_ever_more_slowly(supervisor, log):
    supervisor.start("api", [sys.executable, "-c", CRASHES_AT_ONCE])
    delays = []
    said = 0
    for attempt in range(1, 5):
        said, found = log.wait_for(
            "relance",
            rf"^api exited with code 3; restarting it in ([\d.]+) s "
            rf"\(attempt {attempt}\)$",
            after=said,
        )
        delays.append(float(found[1]))
        said += 1
    assert delays == [0.1, 0.2, 0.4, 0.4]  # doubling, then capped
    assert len(supervisor.pids("api")) >= 4


def test_a_child_that_ran_a_while_starts_again_from_the_first_pause(log):
    supervisor = Supervisor(
        log, backoff=Backoff(first=0.1, cap=10, stable_after=1.0), stop_timeout=5
    )
    try:
        supervisor.start("worker", [sys.executable, "-c", CHILD])
        _, ready = log.wait_for("worker", r"ready pid=(\d+)")
        os.kill(int(ready[1]), signal.SIGKILL)
        said, _ = log.wait_for("relance", r"^worker exited .*\(attempt 1\)$")
        _, ready = log.wait_for("worker", r"ready pid=(\d+)", after=said)
        os.kill(int(ready[1]), signal.SIGKILL)
        said, _ = log.wait_for("relance", r"^worker exited .*in 0\.2 s \(attempt 2\)$", after=said)
        _, ready = log.wait_for("worker", r"ready pid=(\d+)", after=said)
        time.sleep(1.2)  # the worker now runs longer than stable_after (the scenario, not a check)
        os.kill(int(ready[1]), signal.SIGKILL)
        log.wait_for("relance", r"^worker exited .*in 0\.1 s \(attempt 1\)$", after=said + 1)
    finally:
        supervisor.stop()


def test_stop_ends_everything_api_first_temporal_last_and_leaves_nothing_behind(supervisor, log):
    ready = _start_stack(supervisor, log)
    os.kill(int(ready["worker"][1]), signal.SIGKILL)  # its grandchild is left behind by the kill
    said, _ = log.wait_for("relance", r"^worker exited")
    _, restarted = log.wait_for("worker", r"ready pid=(\d+) grandchild=(\d+)", after=said)

    supervisor.stop()
    own = log.own()
    stops = [line for line in own if line.startswith("stopping ")]
    assert stops == ["stopping api", "stopping worker", "stopping mailsink", "stopping temporal"]
    pids = [int(m[n]) for m in [*ready.values(), restarted] for n in (1, 2)]
    assert all(_wait_gone(pid) for pid in pids), [pid for pid in pids if not _gone(pid)]
    assert all(supervisor.pid(name) is None for name in ready)
    assert not [line for line in own[own.index("stopping api") :] if "restarting" in line]


def test_a_stop_during_a_pause_does_not_start_the_child_again(log):
    supervisor = Supervisor(log, backoff=Backoff(first=30, cap=30, stable_after=60), stop_timeout=5)
    supervisor.start("worker", [sys.executable, "-c", CHILD])
    _, ready = log.wait_for("worker", r"ready pid=(\d+)")
    os.kill(int(ready[1]), signal.SIGKILL)
    log.wait_for("relance", r"^worker exited .*restarting it in 30 s")
    started = time.monotonic()
    supervisor.stop()
    assert time.monotonic() - started < 5  # the 30 s pause does not hold the stop up
    assert supervisor.pids("worker") == [int(ready[1])] and supervisor.pid("worker") is None
