"""Replay saved journey histories against today's code: a change that would break journeys
already running in production (non-determinism) fails here, before it ships."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tests.conftest import TEST_CONVERTER
from worker import ALL_JOURNEYS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_there_are_histories_to_replay():
    assert len(HISTORIES) >= 4, "run `python -m tests.histories.record`"


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_saved_history_replays_with_todays_code(path: Path):
    """With the worker's own converter (payload encryption on): the saved histories are plain,
    like those of journeys started before encryption was turned on, which must keep running."""
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    await Replayer(workflows=ALL_JOURNEYS, data_converter=TEST_CONVERTER).replay_workflow(history)


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
def test_histories_hold_no_email_address_or_phone_number(path: Path):
    """Workflow inputs, activity results and signals carry ids only: nothing readable about the lead."""
    import base64
    import json
    import re

    def payload_texts(node):
        if isinstance(node, dict):
            if "data" in node and "metadata" in node:
                yield base64.b64decode(node["data"]).decode("utf-8", "replace")
            for value in node.values():
                yield from payload_texts(value)
        elif isinstance(node, list):
            for value in node:
                yield from payload_texts(value)

    texts = list(payload_texts(json.loads(path.read_text())))
    assert texts, "no payloads found: has the history format changed?"
    for text in texts:
        assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", text), f"an email address in a payload: {text}"
        assert not re.search(r"\+\d{8,}", text), f"a phone number in a payload: {text}"
