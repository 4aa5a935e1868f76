"""Record the double opt-in histories of the welcome journey that tests/test_replay.py replays:
confirmed (then the welcome clicked, or opened then clicked: the journey's whole path) and never
confirmed (the ``double-opt-in`` patch path).

    .venv/bin/python -m tests.histories.record_double_opt_in

Same rules as ``record.py``.
"""

from __future__ import annotations

import asyncio
import re

from relance.contracts.signals import CLICKED, EMAIL_CONFIRMED, OPENED, TrackingSignal
from relance.domain.db import session_scope
from relance.domain.models import Consent
from relance.domain.tokens import TokenSigner
from relance.services.tracking import Hit, record_hits
from tests.histories.record import TASK_QUEUE, recording
from workflows.welcome import WelcomeInput, WelcomeJourney


async def main() -> None:
    async with recording() as rec:
        signer = TokenSigner(rec.settings.secret_key, max_age_seconds=3600)
        for name, confirms, opens in (
            ("welcome_double_opt_in_confirmed", True, False),
            ("welcome_double_opt_in_opened_clicked", True, True),
            ("welcome_double_opt_in_not_confirmed", False, False),
        ):
            lead = rec.make_lead(consents=())
            with session_scope(rec.engine) as session:
                session.add(
                    Consent(
                        lead_id=lead.id,
                        channel="email",
                        status="pending",
                        source_url="https://example.com/form",
                    )
                )
            handle = await rec.env.client.start_workflow(
                WelcomeJourney.run,
                WelcomeInput(lead_id=lead.id),
                id=f"welcome-{lead.id}",
                task_queue=TASK_QUEUE,
            )
            if confirms:
                [mail] = await rec.sink.wait_for_mail(to=lead.email)
                token = signer.verify(
                    "confirm", re.search(r'/confirm/([^"]+)"', mail.html).group(1)
                )
                record_hits(rec.engine, [Hit(token, EMAIL_CONFIRMED, "recorder", "203.0.113.1")])
                await handle.signal(EMAIL_CONFIRMED, TrackingSignal(token.message_id))
                await rec.sink.wait_for_mail(to=lead.email, count=2)
                await asyncio.sleep(0.5)
                status = await handle.query(WelcomeJourney.status)
                welcome = status.messages[1].message_id
                if opens:
                    await handle.signal(OPENED, TrackingSignal(welcome))
                    await eventually_step(handle, "waiting_for_click")
                await handle.signal(CLICKED, TrackingSignal(welcome, "https://example.com/x"))
            await rec.save(handle, name)


async def eventually_step(handle, step: str) -> None:
    """Wait (with a deadline) until the journey shows ``step``."""
    for _ in range(100):
        if (await handle.query(WelcomeJourney.status)).step == step:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the journey never reached {step}")


if __name__ == "__main__":
    asyncio.run(main())
