"""A throwaway PostgreSQL cluster (initdb + pg_ctl from the machine's PostgreSQL) on a Unix
socket in a temporary folder, for benchmarks that compare SQLite and PostgreSQL. Migrated to the
latest schema; stopped and removed on exit."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from relance.services import migrate

PORT = 54329  # the socket's name only: the cluster listens on no TCP port


def pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


@contextmanager
def throwaway_postgres(options: str = "") -> Iterator[str]:
    """The database URL of a fresh, migrated cluster (``options``: more server settings, as
    ``-c name=value``). RuntimeError if none can be started."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        raise RuntimeError("no PostgreSQL server is installed (initdb/pg_ctl not found)")
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        if not shutil.which("runuser"):
            raise RuntimeError("running as root without runuser: cannot start PostgreSQL")
        as_user = ["runuser", "-u", "postgres", "--"]
    workdir = Path(tempfile.mkdtemp(prefix="relance-pg-"))
    data, sockets = workdir / "data", workdir / "sock"
    sockets.mkdir()
    if as_user:
        shutil.chown(workdir, "postgres")
        shutil.chown(sockets, "postgres")

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, text=True)

    run(initdb, "-D", str(data), "-U", "relance", "--auth=trust", "-E", "UTF8")
    options = f"-k {sockets} -c listen_addresses='' -p {PORT} {options}".strip()
    run(pg_ctl, "-D", str(data), "-l", str(workdir / "log"), "-w", "-o", options, "start")
    try:
        url = f"postgresql+psycopg://relance@/postgres?host={sockets}&port={PORT}"
        migrate.upgrade(url)
        yield url
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(workdir, ignore_errors=True)
