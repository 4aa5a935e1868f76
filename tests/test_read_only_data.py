"""The API started while its data folder is read-only: ``/health`` says the database refuses
writes (503), a write answers a JSON 503 (not a 500), and once the folder is writable again the
API recovers by itself, without a restart.

Real conditions: the API is its own process (uvicorn, as ``make run`` starts it) on a real
SQLite file whose folder and files are ``chmod``-ed read-only, while another process (the
worker, in production) has the database open, so its ``-wal`` and ``-shm`` files exist. Root
writes through file modes, so when the tests run as root the API and that other process run as
the ``nobody`` user (``setpriv``), for whom the modes hold.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from relance.dev.seeding import TEST_PAYLOAD_KEY_ID, TEST_PAYLOAD_KEYS
from relance.dev.serving import free_ports
from relance.services import migrate
from tests.test_api_welcome_e2e import new_email, sign_up_body

ROOT = Path(__file__).resolve().parents[1]


def as_api_user() -> tuple[list[str], int | None]:
    """The command prefix that runs a process as a user file modes apply to, and its uid."""
    if os.geteuid() != 0:
        return [], None
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip(
            "running as root without setpriv: no unprivileged user to make the folder read-only for"
        )
    nobody = pwd.getpwnam("nobody")
    return [
        setpriv,
        f"--reuid={nobody.pw_uid}",
        f"--regid={nobody.pw_gid}",
        "--clear-groups",
    ], nobody.pw_uid


def set_writable(folder: Path, writable: bool) -> None:
    for path in folder.iterdir():
        path.chmod(0o644 if writable else 0o444)
    folder.chmod(0o755 if writable else 0o555)


@pytest.fixture
def data_folder() -> Iterator[tuple[Path, list[str]]]:
    prefix, uid = as_api_user()
    base = Path(tempfile.mkdtemp(prefix="relance-ro-"))  # under /tmp: reachable by the API user
    base.chmod(0o755)
    folder = base / "var"
    folder.mkdir()
    migrate.upgrade(f"sqlite:///{folder / 'relance.db'}")
    if uid is not None:
        for path in (folder, *folder.iterdir()):
            os.chown(path, uid, -1)
    try:
        yield folder, prefix
    finally:
        folder.chmod(stat.S_IRWXU)
        shutil.rmtree(base, ignore_errors=True)


async def wait_for(check, what: str, timeout: float = 20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result is not None:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_a_read_only_data_folder_is_reported_answered_503_and_recovered_from_without_restart(
    data_folder, dev_server_env
):
    folder, prefix = data_folder
    database = folder / "relance.db"
    # Another process with the database open (the worker): its -wal and -shm files exist.
    holder = subprocess.Popen(
        [
            *prefix,
            sys.executable,
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('PRAGMA "
            "journal_mode=WAL');"
            "c.execute('SELECT count(*) FROM leads').fetchall(); print('open', flush=True); "
            "sys.stdin.read()",
            str(database),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    api = None
    try:
        assert holder.stdout.readline().strip() == "open"
        assert {p.name for p in folder.iterdir()} >= {
            "relance.db",
            "relance.db-wal",
            "relance.db-shm",
        }
        set_writable(folder, False)

        port = free_ports(1)[0]
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "RELANCE_DATA_DIR": str(folder),
            "RELANCE_DATABASE_URL": f"sqlite:///{database}",
            "RELANCE_API_KEY": "ro-test-key",
            "RELANCE_SECRET_KEY": "ro-test-secret",
            "RELANCE_TEMPORAL_ADDRESS": dev_server_env.client.service_client.config.target_host,
            "RELANCE_PAYLOAD_KEYS": json.dumps(TEST_PAYLOAD_KEYS),
            "RELANCE_PAYLOAD_KEY_ID": TEST_PAYLOAD_KEY_ID,
        }
        api = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "api.main:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=folder.parent,
            env=env,
        )
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": "ro-test-key"}, timeout=10
        ) as http:

            async def answered():
                assert api.poll() is None, "the API exited"
                try:
                    return await http.get("/health")
                except httpx.TransportError:
                    return None

            health = await wait_for(answered, "the API to start")
            assert health.status_code == 503, health.text
            assert (
                health.json()["database_writable"] is False
                and health.json()["database"] == "read-only"
            )

            signup = await http.post("/leads", json=sign_up_body(new_email()))
            assert signup.status_code == 503, signup.text
            assert "does not accept writes" in signup.json()["detail"]

            set_writable(folder, True)

            async def healthy():
                response = await http.get("/health")
                return response if response.status_code == 200 else None

            health = await wait_for(
                healthy, "/health to see the database writable again", timeout=10
            )
            assert health.json()["database_writable"] is True and health.json()["database"] == "ok"
            signup = await http.post("/leads", json=sign_up_body(new_email()))
            assert signup.status_code == 201, signup.text
            lead = await http.get(f"/leads/{signup.json()['lead']['id']}")
            assert lead.status_code == 200
    finally:
        for process in (api, holder):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
