"""Keep ``make run``'s processes running: a child that dies is started again, after a pause.

A worker killed by the OOM killer, an API that crashed on a bad reload, Temporal's dev server
gone: the developer expects the stack to come back by itself, not a terminal full of
"stopping everything" and an empty inbox. Every child is restarted the same way, and the log
says so in words::

    worker exited with code -9 (killed by SIGKILL); restarting it in 2 s (attempt 2)

The pause doubles on each failure in a row (1 s, 2 s, 4 s ... up to 30 s), so a child that cannot
start (a port taken, a syntax error) does not spin; once a child has run for a minute, the next
failure counts as the first again. Only :meth:`Supervisor.stop` (Ctrl-C or SIGTERM in
``make run``) stops everything: the children in the reverse order they were started, each
given a grace period after SIGTERM before it is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Backoff:
    first: float = 1.0
    cap: float = 30.0
    stable_after: float = 60.0  # a child that ran this long has recovered: back to ``first``

    def delay(self, attempt: int) -> float:
        """The pause before restart ``attempt`` (1 for the first failure in a row)."""
        return min(self.cap, self.first * 2 ** (attempt - 1))


def describe_exit(code: int) -> str:
    """``exited with code -9 (killed by SIGKILL)``: the code as Popen gives it, with the signal
    named."""
    words = f"exited with code {code}"
    if code < 0:
        try:
            words += f" (killed by {signal.Signals(-code).name})"
        except ValueError:
            pass
    return words


@dataclass
class _Child:
    name: str
    args: list[str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    attempt: int = 0  # failures in a row
    thread: threading.Thread | None = None
    history: list[int] = field(default_factory=list)  # every pid it ran as (tests look at them)


class Supervisor:
    def __init__(
        self,
        say: Callable[[str, str], None],
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        backoff: Backoff = Backoff(),
        stop_timeout: float = 10.0,
        own: str = "relance",
    ) -> None:
        """``say(name, line)`` prints one log line; the supervisor's own lines come as ``own``."""
        self.say = say
        self.own = own
        self.cwd = cwd
        self.env = env
        self.backoff = backoff
        self.stop_timeout = stop_timeout
        self._children: dict[str, _Child] = {}
        self._lock = threading.Lock()  # no child is started while stop() is stopping them
        self._stopping = threading.Event()

    # -- starting and keeping alive ----------------------------------------------------------

    def start(self, name: str, args: list[str]) -> None:
        """Start ``args`` as ``name`` and keep it running until :meth:`stop`."""
        child = _Child(name, args)
        with self._lock:
            if self._stopping.is_set():
                return
            self._children[name] = child
            self.say(self.own, f"starting {name}")
            self._spawn(child)
        child.thread = threading.Thread(
            target=self._keep_alive, args=(child,), name=f"supervise-{name}", daemon=True
        )
        child.thread.start()

    def _spawn(self, child: _Child) -> None:
        process = subprocess.Popen(
            child.args,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            # Ctrl-C reaches only the supervisor, which stops the children in order
            start_new_session=True,
            env={**(self.env if self.env is not None else os.environ), "PYTHONUNBUFFERED": "1"},
        )
        child.process, child.started_at = process, time.monotonic()
        child.history.append(process.pid)
        threading.Thread(target=self._relay, args=(child.name, process), daemon=True).start()

    def _relay(self, name: str, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.say(name, line.rstrip())

    def _keep_alive(self, child: _Child) -> None:
        while True:
            code = child.process.wait()
            if self._stopping.is_set():
                return
            # What it started dies with it: a leftover helper could hold the port it needs again.
            _signal_group(child.process, signal.SIGKILL)
            ran_for = time.monotonic() - child.started_at
            child.attempt = 1 if ran_for >= self.backoff.stable_after else child.attempt + 1
            delay = self.backoff.delay(child.attempt)
            self.say(
                self.own,
                f"{child.name} {describe_exit(code)}; restarting it in {delay:g} s "
                f"(attempt {child.attempt})",
            )
            if self._stopping.wait(delay):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self.say(self.own, f"restarting {child.name}")
                try:
                    self._spawn(child)
                except OSError as err:  # the program itself is gone: say so, and keep trying
                    self.say(self.own, f"cannot start {child.name}: {err}")
                    child.process = _Exited(127)

    # -- looking at it -----------------------------------------------------------------------

    def pid(self, name: str) -> int | None:
        """The pid ``name`` runs as now; None while it is down."""
        child = self._children.get(name)
        process = child.process if child else None
        return process.pid if process is not None and process.poll() is None else None

    def pids(self, name: str) -> list[int]:
        """Every pid ``name`` has run as, oldest first."""
        return list(self._children[name].history)

    def wait(self) -> None:
        """Block until :meth:`stop` (Ctrl-C, as a KeyboardInterrupt, interrupts it)."""
        while not self._stopping.wait(0.5):
            pass

    # -- stopping ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every child, the last started first; a child that ignores SIGTERM is killed."""
        with self._lock:
            self._stopping.set()
            children = list(self._children.values())
        for child in reversed(children):
            process = child.process
            if process is None or process.poll() is not None:
                continue
            self.say(self.own, f"stopping {child.name}")
            _signal_group(process, signal.SIGTERM)  # every part shuts down gracefully on it
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.say(
                    self.own, f"{child.name} did not stop in {self.stop_timeout:g} s; killing it"
                )
                _signal_group(process, signal.SIGKILL)
                process.wait()
            _signal_group(process, signal.SIGKILL)  # what it started and left behind
        for child in children:
            if child.thread is not None:
                child.thread.join(timeout=1)


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    """Signal the child's whole session (it leads its own process group)."""
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class _Exited:
    """Stands for a child that could not be started: it has "exited" with ``code``."""

    def __init__(self, code: int) -> None:
        self.code, self.pid = code, -1

    def wait(self, timeout: float | None = None) -> int:
        return self.code

    def poll(self) -> int:
        return self.code
