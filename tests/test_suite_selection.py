"""The suite selects what it says it selects. ``pytest -m "not failure"`` (a quick run without
the slow failure scenarios) still runs the security and fuzz tests: only the tests where a part
of the stack dies (a worker killed, Temporal restarted, the SMTP server failing) carry the
``failure`` marker. And a plain run does not load the schemathesis and hypothesis pytest plugins:
the fuzz test runs schemathesis's own CLI in a subprocess, so they only slow every start-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Collects with the given options in a fresh interpreter, as `pytest` on the command line does
# (the project's addopts included), and says which tests were selected and deselected, and
# which of the heavy modules the start-up imported.
COLLECT = """
import json, sys
import pytest

class Recorder:
    selected, deselected = [], []
    def pytest_deselected(self, items):
        self.deselected.extend(item.nodeid for item in items)
    def pytest_collection_finish(self, session):
        self.selected.extend(item.nodeid for item in session.items)

recorder = Recorder()
code = pytest.main(
    ["--collect-only", "-q", "-p", "no:cacheprovider", *sys.argv[1:]], plugins=[recorder]
)
loaded = sorted(m for m in ("hypothesis", "schemathesis") if m in sys.modules)
print("RESULT " + json.dumps({"code": int(code), "selected": recorder.selected,
                              "deselected": recorder.deselected, "loaded": loaded}))
"""


def collect(*options: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", COLLECT, *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["code"] == 0, done.stdout[-3000:]
    return result


# The failure scenarios: a part of the stack dies (a worker, Temporal, the mail server, a child
# of `make run`). Only these files carry the marker.
FAILURE_SCENARIOS = {"tests/test_failures.py", "tests/test_devstack_supervision.py"}


def files(nodeids: list[str]) -> set[str]:
    return {nodeid.split("::", 1)[0] for nodeid in nodeids}


def test_not_failure_drops_only_the_failure_scenarios_and_keeps_security_and_fuzz():
    result = collect("-m", "not failure")
    assert files(result["deselected"]) == FAILURE_SCENARIOS, sorted(files(result["deselected"]))
    assert not files(result["selected"]) & FAILURE_SCENARIOS
    selected = set(result["selected"])
    for module in (
        "tests/test_security.py",
        "tests/test_api_fuzz.py",
    ):  # all of them (none deselected, above)
        assert any(n.startswith(module + "::") for n in selected), (module, sorted(selected))
    assert (
        "tests/test_api_fuzz.py::test_no_generated_request_gets_a_5xx_or_an_undocumented_body"
        in selected
    )
    # The other way round: `-m failure` runs the failure scenarios, nothing else.
    assert FAILURE_SCENARIOS == files(collect("-m", "failure")["selected"])


def test_a_plain_start_up_loads_neither_schemathesis_nor_hypothesis():
    result = collect()  # the whole suite, as `make test` collects it
    assert len(result["selected"]) > 100 and result["loaded"] == [], result["loaded"]
