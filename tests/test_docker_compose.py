"""Static checks of docker-compose.yml, the production stack.

Docker is not needed: the file is read with PyYAML and checked against itself (service names, ports,
credentials) and against relance.settings.Settings (every RELANCE_* variable must be a real setting).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from relance.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"

EXPECTED_SERVICES = {
    "temporal-db",
    "temporal",
    "temporal-ui",
    "db",
    "mailcatcher",
    "migrate",
    "api",
    "worker",
}
APP_SERVICES = ("migrate", "api", "worker")
SECRET_VARIABLES = ("RELANCE_API_KEY", "RELANCE_SECRET_KEY", "RELANCE_PAYLOAD_KEYS", "RELANCE_PAYLOAD_KEY_ID")


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
                f"{variable} in {where} does not match any field of relance.settings.Settings "
                f"(no field named {field!r}); the app would silently ignore it"
            )


def test_app_services_build_from_the_repository_dockerfile(services: dict) -> None:
    for name in APP_SERVICES:
        build = services[name].get("build")
        context = build.get("context") if isinstance(build, dict) else build
        assert context == ".", (
            f"service {name!r} must be built from the repository root (build: .), got {build!r}"
        )
        dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
        assert (ROOT / dockerfile).is_file(), (
            f"service {name!r} builds with {dockerfile}, but {ROOT / dockerfile} does not exist"
        )


def test_migrate_is_a_one_shot_job(services: dict) -> None:
    migrate = services["migrate"]
    assert command_args(migrate) == ["python", "-m", "relance.migrate"], (
        f"migrate should run 'python -m relance.migrate', it runs {command_args(migrate)}"
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
    published_targets = {container for _, container in port_mappings(services["api"])}
    assert api_port in published_targets, (
        f"the api service does not publish its container port {api_port} "
        f"(published container ports: {sorted(published_targets)})"
    )
    assert relance_env.get("RELANCE_API_HOST") == "0.0.0.0", (
        "RELANCE_API_HOST must be 0.0.0.0 in a container, or the published port is unreachable"
    )


def test_smtp_points_at_the_mailcatcher(services: dict, relance_env: dict) -> None:
    host = relance_env.get("RELANCE_SMTP_HOST")
    port = relance_env.get("RELANCE_SMTP_PORT")
    assert host in services, f"RELANCE_SMTP_HOST is {host!r}, which is not a service of the stack"
    assert host == "mailcatcher", f"RELANCE_SMTP_HOST should be the mailcatcher service, got {host!r}"
    assert port == "1025", f"RELANCE_SMTP_PORT should be Mailpit's SMTP port 1025, got {port!r}"
    ports = container_ports(services["mailcatcher"])
    assert port in ports, (
        f"the mailcatcher service does not expose port {port} (it exposes {sorted(ports)}), "
        f"so the app could not reach its SMTP server"
    )


def test_temporal_address_points_at_the_temporal_service(services: dict, relance_env: dict) -> None:
    address = relance_env.get("RELANCE_TEMPORAL_ADDRESS", "")
    host, port = host_and_port(address)
    assert host == "temporal", (
        f"RELANCE_TEMPORAL_ADDRESS should name the temporal service, got host {host!r}"
    )
    assert port == "7233", f"RELANCE_TEMPORAL_ADDRESS should use Temporal's gRPC port 7233, got {port!r}"


def test_temporal_uses_its_database(services: dict) -> None:
    temporal = env_of(services["temporal"])
    temporal_db = env_of(services["temporal-db"])
    assert temporal.get("POSTGRES_SEEDS") == "temporal-db", (
        f"temporal's POSTGRES_SEEDS should be the temporal-db service, got {temporal.get('POSTGRES_SEEDS')!r}"
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
    assert (url.port or 5432) == 5432, f"RELANCE_DATABASE_URL uses port {url.port}, PostgreSQL listens on 5432"
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
        f"RELANCE_DATABASE_URL database {database!r} differs from the db service's database {expected!r}"
    )


def test_databases_have_healthchecks_and_volumes(compose: dict, services: dict) -> None:
    declared = set((compose.get("volumes") or {}).keys())
    for name in ("db", "temporal-db"):
        service = services[name]
        test = service.get("healthcheck", {}).get("test")
        assert test and "pg_isready" in " ".join(test if isinstance(test, list) else [test]), (
            f"service {name!r} has no pg_isready healthcheck, so depends_on service_healthy never fires"
        )
        volumes = [str(v) for v in service.get("volumes", [])]
        data_volumes = [v for v in volumes if v.endswith(":/var/lib/postgresql/data")]
        assert data_volumes, f"service {name!r} keeps its data outside a volume; it is lost on recreate"
        volume_name = data_volumes[0].split(":", 1)[0]
        assert volume_name in declared, (
            f"service {name!r} uses volume {volume_name!r}, which is not declared under top-level volumes"
        )


def test_temporal_ui_is_on_8233_and_talks_to_temporal(services: dict, relance_env: dict) -> None:
    ui = services["temporal-ui"]
    published = {host for host, _ in port_mappings(ui)}
    assert "8233" in published, (
        f"temporal-ui should be published on host port 8233 like in dev, it publishes {sorted(filter(None, published))}"
    )
    ui_address = env_of(ui).get("TEMPORAL_ADDRESS")
    assert ui_address == relance_env.get("RELANCE_TEMPORAL_ADDRESS"), (
        f"temporal-ui's TEMPORAL_ADDRESS {ui_address!r} differs from RELANCE_TEMPORAL_ADDRESS "
        f"{relance_env.get('RELANCE_TEMPORAL_ADDRESS')!r}"
    )


def test_images_are_pinned(services: dict) -> None:
    for name, service in services.items():
        image = service.get("image")
        if image is None:
            assert "build" in service, f"service {name!r} has neither an image nor a build"
            continue
        last_part = image.rsplit("/", 1)[-1]
        assert ":" in last_part or "@sha256:" in image, (
            f"service {name!r} uses image {image!r} without a tag; pin a version"
        )
        tag = last_part.split("@", 1)[0].partition(":")[2]
        assert tag and tag != "latest", f"service {name!r} uses image {image!r}; pin a version, not latest"


def test_secrets_are_required_not_written_in_the_file(relance_env: dict) -> None:
    required = re.compile(r"^\$\{(?P<name>[A-Z0-9_]+):\?[^}]*\}$")
    for variable in SECRET_VARIABLES:
        value = relance_env.get(variable)
        assert value is not None, f"{variable} is missing from x-relance-env"
        match = required.match(value)
        assert match, (
            f"{variable} must come from the environment as ${{{variable}:?...}} so compose refuses to "
            f"start without it; the file sets it some other way (a secret must not be written in the file)"
        )
        assert match.group("name") == variable, (
            f"{variable} is taken from the environment variable {match.group('name')}, expected {variable}"
        )


def test_the_temporal_ui_decrypts_through_the_api_codec_endpoint(services: dict, relance_env: dict) -> None:
    ui = env_of(services["temporal-ui"])
    endpoint = ui.get("TEMPORAL_CODEC_ENDPOINT", "")
    assert endpoint.endswith("/codec"), f"temporal-ui's TEMPORAL_CODEC_ENDPOINT should be the API's /codec, got {endpoint!r}"
    assert "${RELANCE_PUBLIC_BASE_URL" in endpoint, (
        "the UI's codec endpoint is called by the browser: it must be the API's public address")
    assert ui.get("TEMPORAL_CODEC_INCLUDE_CREDENTIALS") == "true", "the UI authenticates to the codec with its cookie"
    assert "RELANCE_CODEC_CORS_ORIGINS" in relance_env
