"""The hourly sweep's activity: the date and segment-entered triggers of the defined journeys
(relance/services/triggers.py), enrolling with the worker's Temporal client."""

from __future__ import annotations

import logging
from dataclasses import asdict

from sqlalchemy.engine import Engine
from temporalio import activity

from relance.contracts.triggers import TriggerSweepInput, TriggerSweepResult
from relance.domain.models import utcnow
from relance.domain.settings import Settings
from relance.services.triggers import sweep

log = logging.getLogger("relance.activities.triggers")


class TriggerActivities:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine

    @activity.defn(name="sweep_triggers", no_thread_cancel_exception=True)
    async def sweep_triggers(self, input: TriggerSweepInput) -> TriggerSweepResult:
        now = input.now or utcnow()
        result = await sweep(activity.client(), self.settings, self.engine, now)
        log.info("trigger sweep at %s: %s", now.isoformat(), result)
        return TriggerSweepResult(**asdict(result))
