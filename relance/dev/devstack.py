"""``make run``: the whole stack in one terminal, with readable, prefixed log lines.

Starts, in order: the Temporal dev server (SQLite file under the data folder, the search
attributes registered), the front on the UI's port 8233 (relance/dev/devui.py: the dev server's UI
and the API's codec on one origin), the dev mail sink, the worker and the API. Ctrl-C stops
them all, the API first and Temporal last. On first start it writes a ``.env`` with a fresh
API key and secret key, and prints the key.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from relance.contracts import search_attributes
from relance.dev.supervise import Supervisor
from relance.domain.encryption import keys_env_value, new_key
from relance.domain.send_window import DAY_NAMES, next_open, zone_or_utc
from relance.domain.settings import Settings
from relance.services import migrate
from relance.services.temporal import bundled_binary

ROOT = Path(__file__).resolve().parents[2]
COLOURS = {
    "temporal": "35",
    "ui": "35",
    "mailsink": "33",
    "worker": "36",
    "api": "32",
    "relance": "1",
}
_print_lock = threading.Lock()


def say(name: str, line: str) -> None:
    prefix = f"{name:>8} | "
    if sys.stdout.isatty():
        prefix = f"\033[{COLOURS.get(name, '0')}m{prefix}\033[0m"
    with _print_lock:
        print(prefix + line, flush=True)


def ensure_env_file(path: Path) -> list[str]:
    """Create the API key, the secret key and the payload encryption key on first start;
    returns what was generated. A value set in the environment or already in the file is kept."""
    existing = path.read_text() if path.exists() else ""
    generated = []

    def add(name: str, line: str) -> None:
        nonlocal existing
        existing += ("" if not existing or existing.endswith("\n") else "\n") + line + "\n"
        generated.append(name)

    for name in ("RELANCE_API_KEY", "RELANCE_SECRET_KEY"):
        if f"{name}=" not in existing and not os.environ.get(name):
            add(name, f"{name}={secrets.token_urlsafe(24)}")
    if "RELANCE_PAYLOAD_KEYS=" not in existing and not os.environ.get("RELANCE_PAYLOAD_KEYS"):
        key_id, key = new_key()
        add("RELANCE_PAYLOAD_KEYS", f"RELANCE_PAYLOAD_KEYS='{keys_env_value([(key_id, key)])}'")
        if "RELANCE_PAYLOAD_KEY_ID=" not in existing and not os.environ.get(
            "RELANCE_PAYLOAD_KEY_ID"
        ):
            add("RELANCE_PAYLOAD_KEY_ID", f"RELANCE_PAYLOAD_KEY_ID={key_id}")
    if generated:
        path.write_text(existing)
        path.chmod(0o600)
    return generated


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "localhost", int(port)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_until(what: str, check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.2)


def can_connect(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def temporal_ui_internal_port(s: Settings) -> int:
    """Where the dev server's own UI listens; the browser opens the front (relance/dev/devui.py) on
    ``temporal_ui_port``, which serves the UI and the API's codec from one origin."""
    return s.temporal_ui_port + 1


def temporal_args(s: Settings) -> list[str]:
    host, port = host_port(s.temporal_address)
    args = [
        bundled_binary("temporal"),
        "server",
        "start-dev",
        "--db-filename",
        str(s.data_dir / "temporal.db"),
        "--ip",
        "127.0.0.1" if host == "localhost" else host,
        "--port",
        str(port),
        "--ui-ip",
        "127.0.0.1",
        "--ui-port",
        str(temporal_ui_internal_port(s)),
        "--namespace",
        s.temporal_namespace,
        "--log-level",
        "error",
        # The UI decrypts payloads through the API's codec (api/routes/codec.py), reached on the
        # page's own origin through the front: the browser sends the /codec/login session cookie
        # with no "include cross-origin credentials" setting, which start-dev cannot turn on.
        "--ui-codec-endpoint",
        CODEC_ON_UI_ORIGIN,
        # No newsfeed: the UI would fetch it from the internet on every page.
        "--ui-disable-news-fetch",
    ]
    for key in search_attributes.ALL:
        kind = "Int" if key.indexed_value_type.name == "INT" else "Keyword"
        args += ["--search-attribute", f"{key.name}={kind}"]
    return args


CODEC_ON_UI_ORIGIN = "/codec"


def ui_front_args(s: Settings) -> list[str]:
    """The front on the UI's port: /codec to the API, the rest to the dev server's UI."""
    return [
        sys.executable,
        "-m",
        "relance.dev.devui",
        "--listen",
        f"127.0.0.1:{s.temporal_ui_port}",
        "--ui",
        f"http://127.0.0.1:{temporal_ui_internal_port(s)}",
        "--api",
        f"http://{s.api_host}:{s.api_port}",
    ]


def main() -> int:
    os.chdir(ROOT)
    generated = ensure_env_file(ROOT / ".env")
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    temporal_host, temporal_port = host_port(settings.temporal_address)
    for what, host, port in [
        ("Temporal", temporal_host, temporal_port),
        ("Temporal UI", "127.0.0.1", settings.temporal_ui_port),
        ("Temporal's own UI", "127.0.0.1", temporal_ui_internal_port(settings)),
        ("the mail sink", "127.0.0.1", settings.smtp_port),
        ("the mail sink inbox", "127.0.0.1", settings.mailsink_http_port),
        ("the API", settings.api_host, settings.api_port),
    ]:
        if not port_is_free("127.0.0.1" if host == "localhost" else host, port):
            say(
                "relance",
                f"port {port} for {what} is already in use: is another `make run` still running?",
            )
            return 1

    say("relance", f"bringing the database schema up to date ({settings.database_url})")
    migrate.upgrade(settings.database_url)

    stack = Supervisor(say, cwd=ROOT)  # restarts a child that dies; see relance/dev/supervise.py
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        stack.start("temporal", temporal_args(settings))
        stack.start("mailsink", [sys.executable, "-m", "relance.dev.devsink"])
        stack.start("ui", ui_front_args(settings))
        wait_until("Temporal", lambda: can_connect(temporal_host, temporal_port))
        stack.start("worker", [sys.executable, "worker.py"])
        stack.start(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "api.main:create_app",
                "--host",
                settings.api_host,
                "--port",
                str(settings.api_port),
                "--log-level",
                "warning",
            ],
        )
        api = f"http://{settings.api_host}:{settings.api_port}"
        wait_until("the API", lambda: _healthy(api))
        banner(settings, api, generated)
        stack.wait()  # until Ctrl-C or SIGTERM: a crashed child is restarted, not a reason to stop
        return 0
    except KeyboardInterrupt:
        say("relance", "Ctrl-C: stopping everything")
        return 0
    except RuntimeError as err:
        say("relance", str(err))
        return 1
    finally:
        # Another Ctrl-C while stopping must not orphan anything: each child gets 10 s at most.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        say("relance", "all stopped")


def _stop_on_sigterm(*_) -> None:
    raise KeyboardInterrupt


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# The example sign-up in the banner and the README: a consent with its proof (the form's page,
# the visitor's address and browser, the version of the wording shown), as a real form sends it.
EXAMPLE_SIGNUP = (
    '{"email": "ada@example.com", "first_name": "Ada", "time_zone": "Europe/Paris", '
    '"consents": [{"channel": "email", "source_url": "https://example.com/signup", '
    '"ip": "203.0.113.7", "user_agent": "curl", "wording_version": "2026-01"}], '
    '"journeys": ["welcome"]}'
)


def _days(days: list[int]) -> str:
    days = sorted(set(days))
    if days == [1, 2, 3, 4, 5]:
        return "weekdays"
    if days == [1, 2, 3, 4, 5, 6, 7]:
        return "every day"
    return ", ".join(DAY_NAMES[d - 1].capitalize() for d in days)


def send_window_line(s: Settings, now_utc: datetime, zone: str = "Europe/Paris") -> str:
    """Whether marketing sends wait for the send window, and when it next opens in ``zone``
    (the example lead's): at 21:00 a welcome email waits for the morning, and says so here."""
    window = s.send_window()
    if window is None:
        return (
            "send window off: marketing messages go out at any hour "
            "(RELANCE_SEND_WINDOW_ENABLED=false)"
        )
    holidays = f", except {len(window.holidays)} holiday(s)" if window.holidays else ""
    line = (
        f"send window on: {_days(window.days)} {window.start}–{window.end} in the lead's time "
        f"zone{holidays}; "
    )
    opens = next_open(now_utc, zone, window)
    if opens == now_utc:
        return line + f"open now in {zone}"
    local = opens.astimezone(zone_or_utc(zone))
    return line + f"next opening {local:%a %H:%M} {zone} (marketing sends wait until then)"


def banner(s: Settings, api: str, generated: list[str]) -> None:
    lines = [
        "Relance is running:",
        f"  API and docs      {api}/docs",
        f"  Temporal UI       http://localhost:{s.temporal_ui_port}",
        f"  Dev inbox         http://localhost:{s.mailsink_http_port}",
        f"  API key           {s.api_key}"
        + ("   (new: written to .env)" if "RELANCE_API_KEY" in generated else "   (from .env)"),
        f"  Payload key       {s.payload_key_id}"
        + (
            "   (new: written to .env; Temporal payloads are encrypted)"
            if "RELANCE_PAYLOAD_KEYS" in generated
            else "   (from .env)"
        ),
        # On the UI's own origin (relance/dev/devui.py): the session cookie then goes with the UI's
        # decode calls.
        f"  Decrypt in the UI http://localhost:{s.temporal_ui_port}/codec/login (once per browser, "
        "with the API key)",
        f"  {send_window_line(s, datetime.now(UTC))}",
        "Try it (README.md has the walkthrough):",
        f"  curl -s -X POST {api}/leads -H 'X-API-Key: {s.api_key}' -H 'Content-Type: "
        "application/json' \\",
        f"    -d '{EXAMPLE_SIGNUP}'",
        "Press Ctrl-C to stop everything.",
    ]
    for line in lines:
        say("relance", line)


if __name__ == "__main__":
    sys.exit(main())
