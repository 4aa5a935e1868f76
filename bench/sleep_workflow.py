"""The simulated-time baseline: a workflow that only sleeps (its own module, so the workflow
sandbox imports nothing else)."""

from temporalio import workflow


@workflow.defn(name="BenchSleep")
class BenchSleep:
    @workflow.run
    async def run(self, seconds: float) -> None:
        await workflow.sleep(seconds)
