"""Schemathesis over the running API's OpenAPI spec: generated requests, valid and
invalid, against every management operation of the real API on the real dev server, in every
phase (examples, coverage, fuzzing, stateful sequences), bounded to a minute or so. No 5xx, ever;
every status answered is one OpenAPI documents for the operation, with its content type, and the
response matches the schema documented for that status (a 422's ``detail`` is the documented
list, not a sentence); a method the path does not take is a 405 with an ``Allow`` header, and
OPTIONS lists exactly the documented methods; every 4xx explains itself in JSON
(``tests/fuzz/hooks.py``)."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import LiveStack
from tests.test_api_welcome_e2e import new_email, sign_up_body

ROOT = Path(__file__).resolve().parent.parent


CONFORMANCE = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
    "unsupported_method,allow_header_conformance"
)


async def schemathesis(
    live: LiveStack,
    workdir: Path,
    *args: str,
    checks: str = f"{CONFORMANCE},client_errors_are_explained_in_json",
) -> tuple[int, str]:
    command = [
        str(Path(sys.executable).parent / "st"),
        "run",
        f"{live.http.base_url}/openapi.json",
        "--header",
        f"X-API-Key: {live.settings.api_key}",
        "--checks",
        checks,
        "--seed",
        "8",
        "--workers",
        "2",
        "--no-color",
        "--request-timeout",
        "10",
        *args,
    ]
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=workdir,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks", "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=600)
    return process.returncode, output.decode(errors="replace")


async def test_no_generated_request_gets_a_5xx_or_an_undocumented_body(
    live: LiveStack, tmp_path: Path
):
    # Real ids, so that generated requests get past "404 no such lead" to the code behind it.
    lead = (await live.http.post("/leads", json=sign_up_body(new_email()))).json()["lead"]
    event = (
        await live.http.post(
            "/events",
            json={
                "name": "Fuzzing webinar",
                "starts_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
                "join_url": "https://example.com/live",
            },
        )
    ).json()
    (tmp_path / "schemathesis.toml").write_text(
        f'[parameters]\nlead_id = "{lead["id"]}"\nevent_id = "{event["id"]}"\nname = '
        '"loyal-customers"\n'
    )
    code, output = await schemathesis(
        live,
        tmp_path,
        "--exclude-path-regex",
        "^/(u|p|confirm)/",  # public HTML pages for people (tested elsewhere)
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        os.environ.get("RELANCE_FUZZ_EXAMPLES", "25"),
    )
    assert code == 0 and "generated" in output, output[-6000:]


async def test_the_json_error_check_does_catch_an_html_error(live: LiveStack, tmp_path: Path):
    """The check above can fail: the unsubscribe page answers an invalid token with an HTML 404."""
    code, output = await schemathesis(
        live,
        tmp_path,
        "--include-path-regex",
        "^/u/",
        "--include-method",
        "GET",
        "--phases",
        "fuzzing",
        "--max-examples",
        "3",
    )
    assert code != 0 and "without a JSON body" in output, output[-3000:]


async def test_the_pages_for_people_answer_only_what_they_document(live: LiveStack, tmp_path: Path):
    """The unsubscribe, preference and confirmation pages answer HTML, errors included ("this
    link is not valid"): every status and content type they answer is documented, and OPTIONS and
    a method they do not take name every method of the path (GET, HEAD and POST are three
    routes)."""
    code, output = await schemathesis(
        live,
        tmp_path,
        "--include-path-regex",
        "^/(u|p|confirm)/",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "10",
        checks=CONFORMANCE,
    )
    assert code == 0 and "generated" in output, output[-6000:]
