"""Record the hourly trigger sweep's history (the defined journeys' date and segment triggers).

.venv/bin/python -m tests.histories.record_triggers
"""

from __future__ import annotations

import asyncio

from relance.contracts.triggers import TriggerSweepInput
from tests.histories.record import TASK_QUEUE, recording
from workflows.triggers import TriggerSweep


async def main() -> None:
    async with recording() as rec:
        handle = await rec.env.client.start_workflow(
            TriggerSweep.run, TriggerSweepInput(), id="trigger-sweep-record", task_queue=TASK_QUEUE
        )
        await rec.save(handle, "trigger_sweep")


if __name__ == "__main__":
    asyncio.run(main())
