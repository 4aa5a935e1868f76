"""Record the histories of a defined journey with a task, a webhook call and waits for a custom
event and a download (tests/definitions/webinar_to_sales.yaml) that tests/test_replay.py replays.

    .venv/bin/python -m tests.histories.record_hand_offs

Same rules as ``record.py``; a local CRM answers the webhook node (RELANCE_JOURNEY_WEBHOOKS is set
to it for the recording). Two leads: one attends the webinar (the custom event meets the wait's
filter), one does not and downloads the white paper sent instead; both are enriched by the CRM
and handed to a rep.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import timedelta
from pathlib import Path

import yaml
from fastapi import FastAPI

from relance.contracts.definitions import WaitedEvent, where_key
from relance.contracts.signals import ASSET_DOWNLOADED, AssetSignal
from relance.dev.serving import ServedApp
from relance.services.definitions import checked, compile_definition
from tests.histories.record import recording
from workflows.defined import DefinedJourney

DEFINITION = Path(__file__).parent.parent / "definitions" / "webinar_to_sales.yaml"


def crm() -> FastAPI:
    app = FastAPI()

    @app.post("/hooks/relance")
    async def hook() -> dict:
        return {"company": {"employees": 120}, "account": {"plan": "pro"}}

    return app


async def at(handle, node: str, rec) -> None:
    """Move the clock until the journey waits at ``node`` (the send window may hold a message)."""
    while (await handle.query(DefinedJourney.status)).node != node:
        await rec.env.sleep(timedelta(minutes=30))


async def main() -> None:
    data = yaml.safe_load(DEFINITION.read_text())
    compiled = compile_definition(checked(data), version=1)
    served = ServedApp(crm())
    await served.start()
    os.environ["RELANCE_JOURNEY_WEBHOOKS"] = json.dumps(
        {"crm": {"url": f"{served.url}/hooks/relance"}}
    )
    os.environ["RELANCE_SALES_REPS"] = json.dumps(
        [{"email": "rep@sales.example.com", "name": "Rep"}]
    )
    try:
        async with recording() as rec:
            for name, attends in (
                ("defined_hand_offs_attended", True),
                ("defined_hand_offs_downloaded", False),
            ):
                lead = rec.make_lead()
                handle = await rec.start_defined(compiled, lead)
                await at(handle, "attended", rec)
                if attends:
                    key = where_key({"webinar": "q3-launch"})
                    await handle.signal("webinar_attended", WaitedEvent([key]))
                else:
                    await rec.env.sleep(timedelta(days=7, minutes=1))
                    await at(handle, "downloaded", rec)
                    await handle.signal(ASSET_DOWNLOADED, AssetSignal("white-paper"))
                await rec.save(handle, name)
    finally:
        await served.stop()


if __name__ == "__main__":
    asyncio.run(main())
