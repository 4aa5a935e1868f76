"""Record the history of a defined journey whose update raises the lead's lifecycle stage, that
tests/test_replay.py replays.

    .venv/bin/python -m tests.histories.record_defined_stage

Same rules as ``record.py``. Sales accepted the lead: an update marks it sql and puts it on the
sales list, then the journey ends.
"""

from __future__ import annotations

import asyncio

from relance.services.definitions import checked, compile_definition
from tests.histories.record import recording

SALES_ACCEPTED = {
    "key": "sales_accepted",
    "name": "Sales accepted the lead",
    "nodes": [
        {
            "id": "accepted",
            "type": "update",
            "stage": "sql",
            "add_to_list": "webinar_hot",
            "next": "done",
        },
        {"id": "done", "type": "exit"},
    ],
}


async def main() -> None:
    async with recording() as rec:
        compiled = compile_definition(checked(SALES_ACCEPTED), version=1)
        lead = rec.make_lead()
        handle = await rec.start_defined(compiled, lead)
        await rec.save(handle, "defined_stage_raised")


if __name__ == "__main__":
    asyncio.run(main())
