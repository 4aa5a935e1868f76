"""Record the history of a defined journey with a switch, an update setting an attribute, a
delay until a date attribute and messages about their own topics, that tests/test_replay.py
replays.

    .venv/bin/python -m tests.histories.record_defined_nodes

Same rules as ``record.py``. The renewal reminder (tests/definitions/renewal.yaml) for a lead in
Tokyo with a renewal date 40 days ahead and no plan: the switch takes its default, the update
sets the starter plan, the delay waits until 30 days before the renewal at 09:00 local time, the
reminder goes out about offers.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml
from sqlmodel import Session

from relance.domain.models import Lead
from relance.services.definitions import checked, compile_definition
from tests.histories.record import recording

RENEWAL = Path(__file__).parents[1] / "definitions" / "renewal.yaml"


async def main() -> None:
    async with recording() as rec:
        compiled = compile_definition(checked(yaml.safe_load(RENEWAL.read_text())), version=1)
        lead = rec.make_lead()
        now = await rec.env.get_current_time()
        with Session(rec.engine) as session:
            row = session.get(Lead, lead.id)
            row.time_zone = "Asia/Tokyo"
            renewal = now.astimezone(ZoneInfo("Asia/Tokyo")).date() + timedelta(days=40)
            row.attributes = {"renewal_date": renewal.isoformat()}
            session.commit()
        handle = await rec.start_defined(compiled, lead)
        await rec.save(handle, "defined_renewal_switch_set_until_date")


if __name__ == "__main__":
    asyncio.run(main())
