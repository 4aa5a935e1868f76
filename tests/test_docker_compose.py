"""Static checks of docker-compose.yml, the production stack, and of the Dockerfile.

Docker is not needed: the file is read with PyYAML, its ${VARIABLES} interpolated as compose does,
validated against the Compose Specification's JSON schema, and checked against itself (service
names, ports, credentials, start order), against relance.domain.settings.Settings (every RELANCE_*
variable must be a real setting, and its value must parse), against the Temporal dev server the
tests use (same Temporal versions), and for what an operator relies on: pinned images,
healthchecks, replicas, one-shot setup jobs, SMS off unless configured.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from temporalio.common import SearchAttributeIndexedValueType

from relance.contracts import search_attributes
from relance.domain.settings import Settings
from relance.services.temporal import bundled_binary

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

EXPECTED_SERVICES = {
    "temporal-db",
    "temporal-schema",
    "temporal",
    "temporal-namespace",
    "temporal-ui",
    "db",
    "mailcatcher",
    "migrate",
    "api",
    "proxy",
    "worker",
}
APP_SERVICES = ("migrate", "api", "worker")
ONE_SHOT_SERVICES = {"temporal-schema", "temporal-namespace", "migrate"}
SECRET_VARIABLES = (
    "RELANCE_API_KEY",
    "RELANCE_SECRET_KEY",
    "RELANCE_PAYLOAD_KEYS",
    "RELANCE_PAYLOAD_KEY_ID",
)
# What an operator must set before `docker compose up` (compose refuses to start without them).
REQUIRED_ENV = {
    "RELANCE_API_KEY": "an-api-key",
    "RELANCE_SECRET_KEY": "a-secret-key",
    "RELANCE_PAYLOAD_KEYS": '{"k1": "dGVzdC1wYXlsb2FkLWtleS0yMDI2LTMyLWJ5dGVzISE="}',
    "RELANCE_PAYLOAD_KEY_ID": "k1",
}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+alt},
# ${NAME+alt}, $NAME, and $$ for a literal $: the Compose Specification's interpolation.
INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)|(?P<invalid>))"
)


class MissingVariable(Exception):
    pass


def interpolate(value: object, env: Mapping[str, str]) -> object:
    """The file as compose sees it once ${VARIABLES} are replaced from ``env``."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("invalid") is not None:
            raise AssertionError(
                f"invalid interpolation in {value!r}: a lone '$' (write $$ for a literal $)"
            )
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        present = name in env
        non_empty = bool(env.get(name))
        if op in (":-", "-"):
            use_default = not non_empty if op == ":-" else not present
            return arg if use_default else env[name]
        if op in (":?", "?"):
            if (not non_empty) if op == ":?" else (not present):
                raise MissingVariable(f"{name}: {arg}")
            return env[name]
        if op in (":+", "+"):
            return arg if (non_empty if op == ":+" else present) else ""
        return env.get(name, "")

    return INTERPOLATION.sub(replace, value)


@pytest.fixture(scope="module")
def compose() -> dict:
    assert COMPOSE_FILE.is_file(), f"{COMPOSE_FILE} does not exist"
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml is not a YAML mapping"
    assert isinstance(data.get("services"), dict), "docker-compose.yml has no 'services' mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def resolved(compose: dict) -> dict:
    """The file interpolated with only the required secrets set: what a first `up` runs."""
    return interpolate(compose, REQUIRED_ENV)


@pytest.fixture(scope="module")
def resolved_services(resolved: dict) -> dict:
    return resolved["services"]


@pytest.fixture(scope="module")
def relance_env(compose: dict) -> dict[str, str]:
    env = compose.get("x-relance-env")
    assert isinstance(env, dict), (
        "docker-compose.yml has no 'x-relance-env' mapping (the shared RELANCE_* environment)"
    )
    return {str(k): str(v) for k, v in env.items()}


def env_of(service: dict) -> dict[str, str]:
    """A service's environment as a dict, whether written as a mapping or as a KEY=VALUE list."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def command_args(service: dict) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else [str(arg) for arg in command]


def script_lines(service: dict) -> list[list[str]]:
    """The shell lines of a one-shot job run as ``/bin/sh -euc <script>``, each split into words."""
    assert service.get("entrypoint") == ["/bin/sh", "-euc"], (
        f"expected a shell script run with /bin/sh -euc (stop at the first failing step), got "
        f"{service.get('entrypoint')!r}"
    )
    args = command_args(service)
    assert len(args) == 1, f"the script should be a single command argument, got {args!r}"
    return [shlex.split(line) for line in args[0].splitlines() if line.strip()]


def depends_condition(service: dict, on: str) -> str | None:
    depends_on = service.get("depends_on", {})
    assert isinstance(depends_on, dict), (
        "use the long depends_on form, with a condition per service"
    )
    entry = depends_on.get(on)
    return None if entry is None else entry.get("condition")


def healthcheck_command(service: dict) -> list[str]:
    test = (service.get("healthcheck") or {}).get("test")
    if isinstance(test, str):
        return ["CMD-SHELL", test]
    return [str(part) for part in test or []]


def image_parts(image: str) -> tuple[str, str]:
    """('temporalio/server', '1.32.0') from 'temporalio/server:1.32.0'."""
    name, _, tag = image.split("@", 1)[0].rpartition(":")
    assert name and "/" not in tag, f"image {image!r} has no tag"
    return name, tag


def dev_server_versions() -> dict[str, str]:
    """The Temporal Server and UI versions of the dev server `make run` and the tests use."""
    out = subprocess.run(
        [bundled_binary("temporal"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    match = re.search(r"Server (?P<server>\d+\.\d+\.\d+), UI (?P<ui>\d+\.\d+\.\d+)", out)
    assert match, f"unexpected `temporal --version` output: {out!r}"
    return match.groupdict()


def port_mappings(service: dict) -> list[tuple[str | None, str]]:
    """(published, container) pairs from the short 'ports' syntax; published is None if absent."""
    pairs = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            published = entry.get("published")
            pairs.append((None if published is None else str(published), str(entry["target"])))
            continue
        parts = str(entry).split("/")[0].split(":")
        container = parts[-1]
        published = parts[-2] if len(parts) >= 2 else None
        pairs.append((published, container))
    return pairs


def container_ports(service: dict) -> set[str]:
    ports = {container for _, container in port_mappings(service)}
    ports |= {str(port).split("/")[0] for port in service.get("expose", [])}
    return ports


def host_and_port(address: str) -> tuple[str, str]:
    host, sep, port = address.rpartition(":")
    assert sep, f"address {address!r} has no ':port' part"
    return host, port


def test_expected_services_exist(services: dict) -> None:
    missing = EXPECTED_SERVICES - services.keys()
    assert not missing, f"docker-compose.yml is missing these services: {sorted(missing)}"


def test_app_services_use_the_shared_environment(services: dict, relance_env: dict) -> None:
    for name in APP_SERVICES:
        env = env_of(services[name])
        differing = sorted(k for k, v in relance_env.items() if env.get(k) != v)
        assert not differing, (
            f"service {name!r} does not get the shared x-relance-env environment "
            f"(use environment: *relance-env); missing or different: {differing}"
        )


def test_every_relance_variable_is_a_real_setting(services: dict, relance_env: dict) -> None:
    fields = set(Settings.model_fields)
    for variable in relance_env:
        assert variable.startswith("RELANCE_"), (
            f"{variable} in x-relance-env does not start with RELANCE_, so the app never reads it"
        )
    for where, env in [("x-relance-env", relance_env)] + [
        (f"service {name!r}", env_of(services[name])) for name in APP_SERVICES
    ]:
        for variable in env:
            if not variable.startswith("RELANCE_"):
                continue
            field = variable.removeprefix("RELANCE_").lower()
            assert field in fields, (
                f"{variable} in {where} does not match any field of "
                "relance.domain.settings.Settings "
                f"(no field named {field!r}); the app would silently ignore it"
            )


def test_app_services_build_from_the_repository_dockerfile(services: dict) -> None:
    for name in APP_SERVICES:
        build = services[name].get("build")
        context = build.get("context") if isinstance(build, dict) else build
        assert context == ".", (
            f"service {name!r} must be built from the repository root (build: .), got {build!r}"
        )
        dockerfile = (
            build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
        )
        assert (ROOT / dockerfile).is_file(), (
            f"service {name!r} builds with {dockerfile}, but {ROOT / dockerfile} does not exist"
        )


def test_migrate_is_a_one_shot_job(services: dict) -> None:
    migrate = services["migrate"]
    assert command_args(migrate) == ["python", "-m", "relance.services.migrate"], (
        f"migrate should run 'python -m relance.services.migrate', it runs {command_args(migrate)}"
    )
    assert str(migrate.get("restart", "no")) == "no", (
        "migrate must not be restarted: it is a one-shot job that exits when the schema is current"
    )
    condition = migrate.get("depends_on", {}).get("db", {}).get("condition")
    assert condition == "service_healthy", (
        "migrate must wait for the db service to be healthy (depends_on db: service_healthy)"
    )


def test_api_and_worker_wait_for_migrations_and_temporal(services: dict) -> None:
    for name in ("api", "worker"):
        depends_on = services[name].get("depends_on", {})
        assert isinstance(depends_on, dict), (
            f"service {name!r} must use the long depends_on form with conditions"
        )
        migrate_condition = depends_on.get("migrate", {}).get("condition")
        assert migrate_condition == "service_completed_successfully", (
            f"service {name!r} must start only after migrate has finished successfully "
            f"(depends_on migrate: service_completed_successfully), got {migrate_condition!r}"
        )
        assert "temporal" in depends_on, f"service {name!r} does not depend on the temporal service"


def test_worker_runs_worker_py(services: dict) -> None:
    assert command_args(services["worker"]) == ["python", "worker.py"], (
        f"worker should run 'python worker.py', it runs {command_args(services['worker'])}"
    )


def test_api_port_is_consistent(services: dict, relance_env: dict) -> None:
    api_port = relance_env.get("RELANCE_API_PORT")
    assert api_port, "RELANCE_API_PORT is not set in x-relance-env"
    args = command_args(services["api"])
    assert "--port" in args, f"the api command has no --port option: {args}"
    command_port = args[args.index("--port") + 1]
    assert command_port == api_port, (
        f"the api command listens on --port {command_port} but RELANCE_API_PORT is {api_port}"
    )
    assert api_port in container_ports(services["api"]), (
        f"the api service does not expose its port {api_port} to the proxy"
    )
    assert relance_env.get("RELANCE_API_HOST") == "0.0.0.0", (
        "RELANCE_API_HOST must be 0.0.0.0 in a container, or the proxy cannot reach it"
    )


def test_the_api_replicas_are_reached_through_one_published_port(
    services: dict, resolved_services: dict, relance_env: dict
) -> None:
    api_port = relance_env["RELANCE_API_PORT"]
    published = [host for host, _ in port_mappings(services["api"]) if host]
    assert not published, (
        f"the api service publishes host ports {published}: a second replica could not bind them; "
        f"publish the proxy instead"
    )
    proxy = services["proxy"]
    assert ("8000", "8000") in port_mappings(proxy), (
        f"the proxy should publish the API on host port 8000, got {port_mappings(proxy)}"
    )
    mounts = [str(v) for v in proxy.get("volumes", [])]
    caddyfile = next(
        (ROOT / m.split(":", 1)[0] for m in mounts if ":/etc/caddy/Caddyfile" in m), None
    )
    assert caddyfile is not None and caddyfile.is_file(), (
        f"the proxy mounts no Caddyfile of this repository: {mounts}"
    )
    text = caddyfile.read_text(encoding="utf-8")
    assert re.search(rf"dynamic a api {api_port}\b", text), (
        f"{caddyfile.relative_to(ROOT)} must look up every replica of the api service "
        f"(dynamic a api {api_port}), not one fixed address"
    )
    # Behind the proxy, the lead's address (consent and tracking evidence) is in X-Forwarded-For.
    args = command_args(services["api"])
    assert "--proxy-headers" in args and "--forwarded-allow-ips" in args, (
        "uvicorn must trust the proxy's X-Forwarded-For, or every hit is recorded from the "
        f"proxy's address: {args}"
    )
    for name in ("api", "worker"):
        replicas = resolved_services[name].get("deploy", {}).get("replicas")
        assert replicas is not None and int(replicas) >= 2, (
            f"service {name!r} should run several replicas by default (deploy.replicas), got "
            f"{replicas!r}"
        )
        assert "container_name" not in services[name], (
            f"service {name!r} has a container_name: it cannot scale"
        )


def test_smtp_defaults_to_the_mailcatcher_and_can_be_a_real_relay(
    services: dict, compose: dict
) -> None:
    env = interpolate(compose, REQUIRED_ENV)["x-relance-env"]
    host, port = env.get("RELANCE_SMTP_HOST"), env.get("RELANCE_SMTP_PORT")
    assert host == "mailcatcher", (
        f"RELANCE_SMTP_HOST should default to the mailcatcher service, got {host!r}"
    )
    assert port == "1025", (
        f"RELANCE_SMTP_PORT should default to Mailpit's SMTP port 1025, got {port!r}"
    )
    ports = container_ports(services["mailcatcher"])
    assert port in ports, (
        f"the mailcatcher service does not expose port {port} (it exposes {sorted(ports)}), "
        f"so the app could not reach its SMTP server"
    )
    relay = {
        "RELANCE_SMTP_HOST": "smtp.example.com",
        "RELANCE_SMTP_PORT": "587",
        "RELANCE_SMTP_USERNAME": "u",
        "RELANCE_SMTP_PASSWORD": "p",
        "RELANCE_SMTP_STARTTLS": "true",
    }
    env = interpolate(compose, {**REQUIRED_ENV, **relay})["x-relance-env"]
    assert {k: env.get(k) for k in relay} == relay, (
        "a real relay is configured through the RELANCE_SMTP_* variables"
    )


def test_temporal_address_points_at_the_temporal_service(services: dict, relance_env: dict) -> None:
    address = relance_env.get("RELANCE_TEMPORAL_ADDRESS", "")
    host, port = host_and_port(address)
    assert host == "temporal", (
        f"RELANCE_TEMPORAL_ADDRESS should name the temporal service, got host {host!r}"
    )
    assert port == "7233", (
        f"RELANCE_TEMPORAL_ADDRESS should use Temporal's gRPC port 7233, got {port!r}"
    )


def test_temporal_uses_its_database(services: dict) -> None:
    temporal = env_of(services["temporal"])
    temporal_db = env_of(services["temporal-db"])
    assert temporal.get("POSTGRES_SEEDS") == "temporal-db", (
        "temporal's POSTGRES_SEEDS should be the temporal-db service, got "
        f"{temporal.get('POSTGRES_SEEDS')!r}"
    )
    assert temporal.get("POSTGRES_USER") == temporal_db.get("POSTGRES_USER"), (
        "temporal's POSTGRES_USER differs from the temporal-db service's POSTGRES_USER"
    )
    assert temporal.get("POSTGRES_PWD") == temporal_db.get("POSTGRES_PASSWORD"), (
        "temporal's POSTGRES_PWD differs from the temporal-db service's POSTGRES_PASSWORD"
    )


def test_database_url_matches_the_db_service(services: dict, relance_env: dict) -> None:
    url = urlsplit(relance_env.get("RELANCE_DATABASE_URL", ""))
    assert url.scheme == "postgresql+psycopg", (
        f"RELANCE_DATABASE_URL should use the postgresql+psycopg driver, got scheme {url.scheme!r}"
    )
    assert url.hostname == "db", (
        f"RELANCE_DATABASE_URL should point at the db service, got host {url.hostname!r}"
    )
    assert (url.port or 5432) == 5432, (
        f"RELANCE_DATABASE_URL uses port {url.port}, PostgreSQL listens on 5432"
    )
    db_env = env_of(services["db"])
    assert url.username == db_env.get("POSTGRES_USER"), (
        f"RELANCE_DATABASE_URL user {url.username!r} differs from the db service's "
        f"POSTGRES_USER {db_env.get('POSTGRES_USER')!r}"
    )
    assert url.password == db_env.get("POSTGRES_PASSWORD"), (
        "RELANCE_DATABASE_URL password differs from the db service's POSTGRES_PASSWORD"
    )
    database = url.path.lstrip("/")
    expected = db_env.get("POSTGRES_DB", db_env.get("POSTGRES_USER"))
    assert database == expected, (
        f"RELANCE_DATABASE_URL database {database!r} differs from the db service's database "
        f"{expected!r}"
    )


def test_databases_have_healthchecks_and_volumes(compose: dict, services: dict) -> None:
    declared = set((compose.get("volumes") or {}).keys())
    for name in ("db", "temporal-db"):
        service = services[name]
        test = service.get("healthcheck", {}).get("test")
        assert test and "pg_isready" in " ".join(test if isinstance(test, list) else [test]), (
            f"service {name!r} has no pg_isready healthcheck, so depends_on service_healthy never "
            "fires"
        )
        volumes = [str(v) for v in service.get("volumes", [])]
        data_volumes = [v for v in volumes if v.endswith(":/var/lib/postgresql/data")]
        assert data_volumes, (
            f"service {name!r} keeps its data outside a volume; it is lost on recreate"
        )
        volume_name = data_volumes[0].split(":", 1)[0]
        assert volume_name in declared, (
            f"service {name!r} uses volume {volume_name!r}, which is not declared under top-level "
            "volumes"
        )


def test_temporal_ui_is_on_8233_and_talks_to_temporal(services: dict, relance_env: dict) -> None:
    ui = services["temporal-ui"]
    published = {host for host, _ in port_mappings(ui)}
    assert "8233" in published, (
        "temporal-ui should be published on host port 8233 like in dev, it publishes "
        f"{sorted(filter(None, published))}"
    )
    ui_address = env_of(ui).get("TEMPORAL_ADDRESS")
    assert ui_address == relance_env.get("RELANCE_TEMPORAL_ADDRESS"), (
        f"temporal-ui's TEMPORAL_ADDRESS {ui_address!r} differs from RELANCE_TEMPORAL_ADDRESS "
        f"{relance_env.get('RELANCE_TEMPORAL_ADDRESS')!r}"
    )


# How many numbers an exact release has: PostgreSQL counts MAJOR.MINOR, the others
# MAJOR.MINOR.PATCH.
RELEASE_PARTS = {"postgres": 2}
# Images on a Debian or Alpine base name it in the tag: the same version on another base is another
# libc, and a libc change under a database changes how text sorts (its indexes need a REINDEX).
TAG_NAMES_ITS_BASE = {"postgres", "python"}


def assert_pinned(image: str, where: str) -> None:
    name, tag = image_parts(image)
    family = name.rsplit("/", 1)[-1]
    numbers = re.match(r"v?(\d+(?:\.\d+)*)", tag)
    assert tag != "latest" and numbers, f"{where} uses {image!r}: pin an exact version, not {tag!r}"
    parts = len(numbers.group(1).split("."))
    wanted = RELEASE_PARTS.get(family, 3)
    assert parts >= wanted, (
        f"{where} uses {image!r}, a tag that moves with every release of that line; pin the exact "
        f"release ({wanted} numbers, e.g. {'16.15' if wanted == 2 else '1.2.3'})"
    )
    if family in TAG_NAMES_ITS_BASE:
        assert re.search(r"-(bookworm|trixie|alpine\d+\.\d+)$", tag), (
            f"{where} uses {image!r}: name the OS release too (e.g. -bookworm), or a rebuild can "
            "switch it"
        )


def test_every_image_is_pinned_to_an_exact_release(services: dict) -> None:
    for name, service in services.items():
        image = service.get("image")
        if image is None:
            assert "build" in service, f"service {name!r} has neither an image nor a build"
            continue
        assert_pinned(image, f"service {name!r}")


def test_the_dockerfile_pins_its_python_base() -> None:
    bases = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert bases, "the Dockerfile has no FROM line"
    for base in bases:
        assert_pinned(base, "the Dockerfile's FROM")
        name, tag = image_parts(base)
        assert name == "python" and re.fullmatch(r"3\.11\.\d+-slim-bookworm", tag), (
            "the app image should build on python:3.11.<patch>-slim-bookworm (the Python the "
            "project "
            f"supports, on a named Debian release), got {base!r}"
        )


def test_temporal_images_match_the_dev_server(services: dict) -> None:
    versions = dev_server_versions()
    expected = {
        "temporal": ("temporalio/server", versions["server"]),
        "temporal-schema": ("temporalio/admin-tools", versions["server"]),
        "temporal-namespace": ("temporalio/admin-tools", versions["server"]),
        "temporal-ui": ("temporalio/ui", versions["ui"]),
    }
    for name, (image, version) in expected.items():
        got = services[name].get("image", "")
        assert got == f"{image}:{version}", (
            f"service {name!r} runs {got!r}, but the dev server the tests use is Temporal Server "
            f"{versions['server']} with UI {versions['ui']}: expected {image}:{version}"
        )


def test_temporal_is_not_the_auto_setup_image(services: dict) -> None:
    for name, service in services.items():
        assert "auto-setup" not in str(service.get("image", "")), (
            f"service {name!r} runs {service.get('image')!r}, Temporal's development convenience "
            "image; "
            f"use temporalio/server with the schema set up by temporalio/admin-tools"
        )


def test_the_temporal_schema_is_set_up_before_the_server_starts(services: dict) -> None:
    server_env = env_of(services["temporal"])
    schema = services["temporal-schema"]
    assert (
        depends_condition(services["temporal"], "temporal-schema")
        == "service_completed_successfully"
    ), "the temporal server must start only once temporal-schema has finished successfully"
    assert depends_condition(schema, "temporal-db") == "service_healthy", (
        "temporal-schema must wait for its database to be healthy"
    )
    assert str(schema.get("restart", "no")) == "no", "temporal-schema is a one-shot job"
    schema_env = env_of(schema)
    assert schema_env.get("SQL_PLUGIN") == server_env.get("DB") == "postgres12"
    assert schema_env.get("SQL_HOST") == server_env.get("POSTGRES_SEEDS") == "temporal-db"
    assert schema_env.get("SQL_PORT") == server_env.get("DB_PORT")
    assert schema_env.get("SQL_USER") == server_env.get("POSTGRES_USER")
    assert schema_env.get("SQL_PASSWORD") == server_env.get("POSTGRES_PWD")
    steps = [line for line in script_lines(schema) if line and line[0] == "temporal-sql-tool"]
    for database, schema_name in (
        (server_env.get("DBNAME"), "temporal"),
        (server_env.get("VISIBILITY_DBNAME"), "visibility"),
    ):
        assert database, "the server's DBNAME and VISIBILITY_DBNAME should be written out"
        mine = [
            line[line.index("--db") + 2 :]
            for line in steps
            if "--db" in line and line[line.index("--db") + 1] == database
        ]
        assert ["create"] in mine, (
            f"temporal-schema does not create the {database!r} database: {mine}"
        )
        assert ["setup-schema", "-v", "0.0"] in mine, (
            f"temporal-schema does not set up {database!r}'s schema: {mine}"
        )
        update = [m for m in mine if m[:1] == ["update-schema"]]
        assert update == [
            ["update-schema", "-d", f"/etc/temporal/schema/postgresql/v12/{schema_name}/versioned"]
        ], (
            f"temporal-schema must update {database!r} with the {schema_name} schema of its "
            f"release, got {update}"
        )
        assert (
            mine.index(["create"])
            < mine.index(["setup-schema", "-v", "0.0"])
            < mine.index(update[0])
        ), f"{database!r}: create, then setup-schema, then update-schema"


def test_the_namespace_and_search_attributes_are_registered(
    services: dict, relance_env: dict
) -> None:
    job = services["temporal-namespace"]
    assert depends_condition(job, "temporal") == "service_healthy"
    assert str(job.get("restart", "no")) == "no", "temporal-namespace is a one-shot job"
    namespace = relance_env["RELANCE_TEMPORAL_NAMESPACE"]
    lines = script_lines(job)
    creates = [line for line in lines if "namespace" in line and "create" in line]
    assert any(line[line.index("--namespace") + 1] == namespace for line in creates), (
        f"temporal-namespace does not create the {namespace!r} namespace the app uses"
    )
    registered: dict[str, str] = {}
    for line in lines:
        if "search-attribute" in line and "create" in line:
            assert line[line.index("--namespace") + 1] == namespace
            names = [line[i + 1] for i, word in enumerate(line) if word == "--name"]
            types = [line[i + 1] for i, word in enumerate(line) if word == "--type"]
            registered.update(zip(names, types, strict=False))
    cli_type = {
        SearchAttributeIndexedValueType.KEYWORD: "Keyword",
        SearchAttributeIndexedValueType.INT: "Int",
        SearchAttributeIndexedValueType.TEXT: "Text",
        SearchAttributeIndexedValueType.DOUBLE: "Double",
        SearchAttributeIndexedValueType.BOOL: "Bool",
        SearchAttributeIndexedValueType.DATETIME: "Datetime",
        SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
    }
    needed = {key.name: cli_type[key.indexed_value_type] for key in search_attributes.ALL}
    assert registered == needed, (
        f"temporal-namespace registers {registered}, the journeys use {needed} "
        "(relance/contracts/search_attributes.py)"
    )
    for name in ("api", "worker"):
        assert (
            depends_condition(services[name], "temporal-namespace")
            == "service_completed_successfully"
        ), f"service {name!r} must start once the namespace and search attributes exist"


def test_every_long_running_service_has_a_healthcheck(services: dict) -> None:
    for name, service in services.items():
        if name in ONE_SHOT_SERVICES:
            assert str(service.get("restart", "no")) == "no", (
                f'{name!r} is a one-shot job: restart: "no"'
            )
            continue
        command = healthcheck_command(service)
        assert command and command[0] in ("CMD", "CMD-SHELL") and len(command) > 1, (
            f"service {name!r} runs for good but has no healthcheck, so nothing can wait for it or "
            "see it fail"
        )
        assert not (service.get("healthcheck") or {}).get("disable"), (
            f"service {name!r} disables its healthcheck"
        )


def test_the_api_and_worker_healthchecks_check_what_matters(
    services: dict, relance_env: dict
) -> None:
    api_check = " ".join(healthcheck_command(services["api"]))
    assert f"http://127.0.0.1:{relance_env['RELANCE_API_PORT']}/health" in api_check, (
        "the api healthcheck should ask its own /health (200 only while the database takes "
        f"writes): {api_check}"
    )
    assert healthcheck_command(services["worker"])[1:] == ["python", "worker.py", "--check"], (
        "the worker healthcheck should be `python worker.py --check` (this container's worker "
        "polls its task queue)"
    )
    assert "/healthz" in " ".join(healthcheck_command(services["temporal-ui"]))
    assert depends_condition(services["proxy"], "api") == "service_healthy"
    assert depends_condition(services["temporal-ui"], "temporal") == "service_healthy"


def test_secrets_are_required_not_written_in_the_file(relance_env: dict) -> None:
    required = re.compile(r"^\$\{(?P<name>[A-Z0-9_]+):\?[^}]*\}$")
    for variable in SECRET_VARIABLES:
        value = relance_env.get(variable)
        assert value is not None, f"{variable} is missing from x-relance-env"
        match = required.match(value)
        assert match, (
            f"{variable} must come from the environment as ${{{variable}:?...}} so compose refuses "
            "to "
            "start without it; the file sets it some other way (a secret must not be written in "
            "the file)"
        )
        assert match.group("name") == variable, (
            f"{variable} is taken from the environment variable {match.group('name')}, expected "
            f"{variable}"
        )


def test_the_temporal_ui_decrypts_through_the_api_codec_endpoint(
    services: dict, relance_env: dict
) -> None:
    ui = env_of(services["temporal-ui"])
    endpoint = ui.get("TEMPORAL_CODEC_ENDPOINT", "")
    assert endpoint.endswith("/codec"), (
        f"temporal-ui's TEMPORAL_CODEC_ENDPOINT should be the API's /codec, got {endpoint!r}"
    )
    assert "${RELANCE_PUBLIC_BASE_URL" in endpoint, (
        "the UI's codec endpoint is called by the browser: it must be the API's public address"
    )
    assert ui.get("TEMPORAL_CODEC_INCLUDE_CREDENTIALS") == "true", (
        "the UI authenticates to the codec with its cookie"
    )
    assert "RELANCE_CODEC_CORS_ORIGINS" in relance_env


def test_the_file_is_valid_against_the_compose_specification(resolved: dict) -> None:
    # The Compose Specification's JSON schema, as vendored (and kept current) by check-jsonschema.
    schema = json.loads(
        (
            resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
        ).read_text(encoding="utf-8")
    )
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(resolved), key=lambda e: list(e.path)
    )
    assert not errors, "docker-compose.yml breaks the Compose Specification:\n" + "\n".join(
        f"  {'/'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in errors[:10]
    )


def test_compose_refuses_to_start_without_the_secrets(compose: dict) -> None:
    for variable in SECRET_VARIABLES:
        env = {k: v for k, v in REQUIRED_ENV.items() if k != variable}
        with pytest.raises(MissingVariable, match=variable):
            interpolate(compose, env)


def test_the_apps_settings_parse_and_sms_is_off_unless_configured(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    def settings_from(env: dict[str, str]) -> Settings:
        app_env = interpolate(compose, env)["services"]["worker"]["environment"]
        for variable in [k for k in os.environ if k.startswith("RELANCE_")]:
            monkeypatch.delenv(variable)
        for variable, value in app_env.items():
            monkeypatch.setenv(variable, str(value))
        return Settings(_env_file=None)  # every value as the containers get it must parse

    default = settings_from(REQUIRED_ENV)
    assert default.sms_provider_url == "", "no SMS provider is configured by default in compose"
    assert not default.welcome_relance_by_sms and not default.event_reminder_by_sms, (
        "with no SMS provider configured, the journeys' SMS steps must be off (they would only log "
        "refusals)"
    )
    assert default.codec_cors_origins == ["http://localhost:8233"]
    assert default.temporal_address == "temporal:7233" and default.api_host == "0.0.0.0"

    sms = settings_from(
        {
            **REQUIRED_ENV,
            "RELANCE_SMS_PROVIDER_URL": "https://sms.example.com/send",
            "RELANCE_SMS_API_TOKEN": "t",
            "RELANCE_WELCOME_RELANCE_BY_SMS": "true",
            "RELANCE_EVENT_REMINDER_BY_SMS": "true",
        }
    )
    assert sms.sms_provider_url == "https://sms.example.com/send" and sms.sms_api_token == "t"
    assert sms.welcome_relance_by_sms and sms.event_reminder_by_sms
