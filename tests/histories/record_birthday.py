"""Record the histories of defined journeys with a promo code and a redirect that
tests/test_replay.py replays.

    .venv/bin/python -m tests.histories.record_birthday

Same rules as ``record.py``. The birthday journey (config/journeys/birthday.yaml) for a lead who
never uses the code: the code issued, three days, the condition, the reminder with the same code.
A redirect into a published definition: the enrollment through the enrollment path, then the end
(redirected).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml
from sqlmodel import Session

from relance.services import journey_store
from relance.services.definitions import checked, compile_definition
from tests.histories.record import recording

BIRTHDAY = Path(__file__).parents[2] / "config" / "journeys" / "birthday.yaml"
TARGET = {
    "key": "history_target",
    "name": "a redirect's target",
    "topic": "newsletter",
    "nodes": [
        {"id": "case", "type": "message", "template": "nurture_case_study", "next": "done"},
        {"id": "done", "type": "exit"},
    ],
}
SOURCE = {
    "key": "history_source",
    "name": "a redirect",
    "topic": "newsletter",
    "nodes": [
        {"id": "paper", "type": "message", "template": "nurture_white_paper", "next": "on"},
        {"id": "on", "type": "redirect", "journey": "history_target", "guard": "once"},
    ],
}


async def main() -> None:
    async with recording() as rec:
        with Session(rec.engine) as session:
            journey_store.create_draft(session=session, data=TARGET)
            journey_store.publish(session=session, key=TARGET["key"])
        for name, data in (
            ("defined_birthday_reminded", yaml.safe_load(BIRTHDAY.read_text())),
            ("defined_redirected", SOURCE),
        ):
            compiled = compile_definition(checked(data), version=1)
            lead = rec.make_lead()
            handle = await rec.start_defined(compiled, lead)
            await rec.save(handle, name)


if __name__ == "__main__":
    asyncio.run(main())
