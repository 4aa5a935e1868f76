"""The real `make run` stack (`python -m relance.dev.devstack`: Temporal's dev server, the inbox,
the worker, the API) on free ports and a throwaway data folder: a part killed with SIGKILL comes
back by itself, the inbox still holds its mail after it was killed, and Ctrl-C stops everything
in order, leaving no process behind."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
import threading
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from relance.dev.serving import free_ports
from tests.conftest import EMAIL_CONSENT
from tests.test_supervise import Log, _gone, _wait_gone

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.failure


def _children(pid: int) -> dict[int, str]:
    """The live processes whose parent is ``pid``, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found[int(entry.name)] = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                )
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return found


def _pid_of(stack: subprocess.Popen, needle: str) -> int:
    [pid] = [pid for pid, cmd in _children(stack.pid).items() if needle in cmd and not _gone(pid)]
    return pid


@pytest.fixture
def stack(tmp_path):
    names = ("temporal", "ui", "smtp", "inbox", "api")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    env = {
        **os.environ,
        "RELANCE_DATA_DIR": str(tmp_path / "var"),
        "RELANCE_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'relance.db'}",
        "RELANCE_TEMPORAL_ADDRESS": f"localhost:{ports['temporal']}",
        "RELANCE_TEMPORAL_UI_PORT": str(ports["ui"]),
        "RELANCE_SMTP_PORT": str(ports["smtp"]),
        "RELANCE_MAILSINK_HTTP_PORT": str(ports["inbox"]),
        "RELANCE_API_PORT": str(ports["api"]),
        # Set here, so the stack writes no .env into the checkout.
        "RELANCE_API_KEY": "stack-test-key",
        "RELANCE_SECRET_KEY": "stack-test-secret",
        "RELANCE_PAYLOAD_KEYS": '{"t1":"dGVzdC1wYXlsb2FkLWtleS0yMDI2LTMyLWJ5dGVzISE="}',
        "RELANCE_PAYLOAD_KEY_ID": "t1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "relance.dev.devstack"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    log = Log()

    def read() -> None:
        for line in process.stdout:
            name, _, text = line.rstrip("\n").partition(" | ")
            log(name.strip(), text)

    threading.Thread(target=read, daemon=True).start()
    try:
        log.wait_for("relance", r"^Press Ctrl-C to stop everything\.$", timeout=120)
        yield process, log, ports
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def _send(port: int) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = (
        "hello@relance.localhost",
        "ada@example.com",
        "Confirm your address",
    )
    msg.set_content("http://localhost:8000/confirm/" + "x" * 120, cte="quoted-printable")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.send_message(msg)


def test_make_run_restarts_what_dies_and_stops_only_on_ctrl_c(stack):
    process, log, ports = stack

    # The worker is killed (the OOM killer): it comes back, and the log says so in plain words.
    worker = _pid_of(process, "worker.py")
    os.kill(worker, signal.SIGKILL)
    said, _ = log.wait_for(
        "relance",
        r"^worker exited with code -9 \(killed by SIGKILL\); "
        r"restarting it in 1 s \(attempt 1\)$",
        timeout=30,
    )
    log.wait_for("worker", r"worker: ready", after=said, timeout=60)
    assert process.poll() is None
    assert _pid_of(process, "worker.py") != worker

    # The inbox is killed with a confirmation mail in it: it comes back with the mail.
    _send(ports["smtp"])
    os.kill(_pid_of(process, "relance.dev.devsink"), signal.SIGKILL)
    said, _ = log.wait_for(
        "relance", r"^mailsink exited with code -9 .*; restarting it in 1 s", after=said
    )
    log.wait_for("mailsink", r"mail sink: SMTP on", after=said, timeout=30)
    mails = httpx.get(f"http://127.0.0.1:{ports['inbox']}/api/mails", timeout=10).json()
    assert [m["subject"] for m in mails] == ["Confirm your address"]

    # Temporal's dev server is killed: it comes back on its database, and a new sign-up still
    # gets its confirmation mail (the worker and the API reconnect by themselves).
    os.kill(_pid_of(process, "start-dev"), signal.SIGKILL)
    said, _ = log.wait_for(
        "relance", r"^temporal exited with code -9 .*; restarting it in 1 s", after=said
    )
    log.wait_for("temporal", r"Temporal Server:", after=said, timeout=60)
    lead = httpx.post(
        f"http://127.0.0.1:{ports['api']}/leads",
        headers={"X-API-Key": "stack-test-key"},
        timeout=30,
        json={"email": "bob@example.com", "consents": [EMAIL_CONSENT], "journeys": ["welcome"]},
    )
    assert lead.status_code in (200, 201), lead.text
    mails = httpx.get(
        f"http://127.0.0.1:{ports['inbox']}/api/mails",
        timeout=70,
        params={"to": "bob@example.com", "wait": 60},
    ).json()
    assert mails and "confirm" in mails[0]["subject"].lower()

    # Ctrl-C: everything stops, the API first and Temporal last, and nothing is left running.
    started = [line.removeprefix("starting ") for line in log.own() if line.startswith("starting ")]
    assert {"temporal", "mailsink", "worker", "api"} <= set(started)
    children = _children(process.pid)
    assert len(children) == len(started), children
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    log.wait_for("relance", r"^all stopped$")
    stops = [line for line in log.own() if line.startswith("stopping ")]
    assert stops == [
        f"stopping {name}" for name in reversed(started)
    ]  # the API first, Temporal last
    assert stops[0] == "stopping api" and stops[-1] == "stopping temporal"
    assert all(_wait_gone(pid) for pid in children), {
        p: c for p, c in children.items() if not _gone(p)
    }
