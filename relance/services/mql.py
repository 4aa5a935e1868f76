"""Tell sales when a lead becomes marketing-qualified: once per crossing of the MQL threshold.

``queue_notification`` (relance/domain/scoring.py) writes a ``mql_notifications`` row in the
transaction that raised the score (``apply_score``): a crossing is never lost, and never queued
twice. Falling below the threshold (decay, negative rules) and crossing again queues a new one.

``MqlNotifier`` (run by the worker beside its journeys) delivers each row, off every request:

- to the CRM, when ``RELANCE_MQL_WEBHOOK_URL`` is set: ``POST`` of a JSON body, signed
  ``X-Relance-Signature: sha256=<hex HMAC-SHA256 of the body>`` with ``RELANCE_MQL_WEBHOOK_SECRET``
  (or the secret key), ``X-Relance-Delivery: <notification id>`` (the same on every retry: the
  CRM can drop a duplicate after a lost answer). Any 2xx is delivered; anything else is retried;
- to the sales inbox, when ``RELANCE_MQL_NOTIFY_EMAIL`` is set: an internal email (no tracking,
  no consent: it goes to staff), with a stable Message-ID.

A failure is retried with exponential backoff (``mql_retry_base_seconds`` doubling, at most one
hour) up to ``mql_retry_max_attempts``, then the row is ``failed`` (its ``last_error`` says why).
Each channel is stamped when done, so a retry never repeats the one that succeeded. Several
workers share the table: a row is claimed (``claimed_until``) before it is delivered.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formataddr, formatdate

import httpx
from sqlalchemy import or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from relance.domain.models import Lead, MqlNotification, as_utc, utcnow
from relance.domain.segments import segment_and_stage
from relance.domain.settings import Settings
from relance.domain.webhook_signing import (  # noqa: F401  (sign, verify: what the CRM does)
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    sign,
    signed_headers,
    verify,
)
from relance.services.smtp import deliver

log = logging.getLogger("relance.services.mql")

CLAIM = timedelta(minutes=2)


class MqlNotifier:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        http: httpx.AsyncClient | None = None,
        poll_seconds: float = 2.0,
        batch_size: int = 50,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.http = http
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size

    @property
    def secret(self) -> str:
        return self.settings.mql_webhook_secret or self.settings.secret_key

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=10.0) as http:
            self.http = self.http or http
            while True:
                try:
                    await self.deliver_due()
                except Exception:  # a database hiccup must not stop notifications for good
                    log.exception("mql: delivery round failed; will try again")
                await asyncio.sleep(self.poll_seconds)

    async def deliver_due(self, now: datetime | None = None) -> int:
        """Deliver every notification due at ``now``; returns how many were completed."""
        now = now or utcnow()
        done = 0
        for row_id in await asyncio.to_thread(self._claim, now):
            done += await self._deliver(row_id, now)
        return done

    def _claim(self, now: datetime) -> list[str]:
        with Session(self.engine) as session:
            ids = session.exec(
                select(MqlNotification.id)
                .where(
                    col(MqlNotification.status) == "pending",
                    col(MqlNotification.next_attempt_at) <= now,
                    or_(
                        col(MqlNotification.claimed_until).is_(None),
                        col(MqlNotification.claimed_until) < now,
                    ),
                )
                .order_by(col(MqlNotification.created_at))
                .limit(self.batch_size)
            ).all()
            claimed = []
            for row_id in ids:
                taken = session.execute(
                    update(MqlNotification)
                    .where(
                        col(MqlNotification.id) == row_id,
                        col(MqlNotification.status) == "pending",
                        or_(
                            col(MqlNotification.claimed_until).is_(None),
                            col(MqlNotification.claimed_until) < now,
                        ),
                    )
                    .values(claimed_until=now + CLAIM)
                ).rowcount
                if taken:
                    claimed.append(row_id)
            session.commit()
            return claimed

    def _load(self, row_id: str) -> tuple[MqlNotification, Lead | None]:
        with Session(self.engine) as session:
            row = session.get(MqlNotification, row_id)
            return row, session.get(Lead, row.lead_id)

    def body(self, row: MqlNotification, lead: Lead) -> bytes:
        with Session(self.engine) as session:
            segment, stage = segment_and_stage(session, lead.id, self.settings)
        payload = {
            "type": "lead.mql",
            "id": row.id,
            "crossed_at": as_utc(row.created_at).isoformat(),
            "threshold": row.threshold,
            "score_at_crossing": row.score,
            "reason": row.reason,
            "lead": {
                "id": lead.id,
                "email": lead.email,
                "first_name": lead.first_name,
                "phone": lead.phone,
                "country": lead.country,
                "score": lead.score,
                "segment": segment,
                "stage": stage,
            },
        }
        return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()

    async def _deliver(self, row_id: str, now: datetime) -> int:
        row, lead = await asyncio.to_thread(self._load, row_id)
        s = self.settings
        if lead is None:  # erased meanwhile (its rows go with it); nothing to tell
            return 0
        if not s.mql_webhook_url and not s.mql_notify_email:
            await asyncio.to_thread(
                self._finish,
                row_id,
                "skipped",
                now,
                "no RELANCE_MQL_WEBHOOK_URL nor RELANCE_MQL_NOTIFY_EMAIL",
            )
            return 1
        error = None
        stamps: dict[str, datetime] = {}
        if s.mql_webhook_url and row.webhook_sent_at is None:
            body = self.body(row, lead)
            try:
                answer = await self.http.post(
                    s.mql_webhook_url,
                    content=body,
                    headers=signed_headers(self.secret, body, row.id),
                )
                if 200 <= answer.status_code < 300:
                    stamps["webhook_sent_at"] = now
                else:
                    error = f"webhook answered {answer.status_code}"
            except httpx.HTTPError as err:
                error = f"webhook unreachable: {type(err).__name__}: {err}"
        if s.mql_notify_email and row.email_sent_at is None:
            try:
                await asyncio.to_thread(self._email, row, lead)
                stamps["email_sent_at"] = now
            except Exception as err:  # SMTP down or refusing: retried like the webhook
                error = (error + "; " if error else "") + f"email: {type(err).__name__}: {err}"
        await asyncio.to_thread(self._record, row_id, stamps, error, now)
        if error is None:
            log.info("mql: lead %s notified (crossing %s)", row.lead_id, row.id)
            return 1
        log.warning("mql: notification %s for lead %s: %s; will retry", row.id, row.lead_id, error)
        return 0

    def _email(self, row: MqlNotification, lead: Lead) -> None:
        s = self.settings
        mime = EmailMessage()
        mime["From"] = s.sales_mail_from or s.mail_from
        mime["To"] = s.mql_notify_email
        mime["Subject"] = f"New MQL: {lead.first_name or lead.email} (score {row.score})"
        mime["Date"] = formatdate(localtime=False)
        mime["Message-ID"] = f"<mql-{row.id}@{s.mail_domain}>"
        mime["Auto-Submitted"] = "auto-generated"
        mime.set_content(
            f"{formataddr((lead.first_name or '', lead.email))} reached the MQL threshold "
            f"({row.threshold}): "
            f"score {row.score}.\nWhy: {row.reason}\nCountry: {lead.country or '-'}\nPhone: "
            f"{lead.phone or '-'}\n"
            f"Lead id: {lead.id}\n"
        )
        deliver(s, mime, s.mql_notify_email)

    def _record(
        self, row_id: str, stamps: dict[str, datetime], error: str | None, now: datetime
    ) -> None:
        s = self.settings
        with Session(self.engine) as session:
            row = session.get(MqlNotification, row_id)
            for key, value in stamps.items():
                setattr(row, key, value)
            row.attempts += 1
            row.claimed_until = None
            if error is None:
                row.status, row.sent_at, row.last_error = "sent", now, None
            else:
                row.last_error = error[:500]
                if row.attempts >= s.mql_retry_max_attempts:
                    row.status = "failed"
                else:
                    delay = min(s.mql_retry_base_seconds * 2 ** (row.attempts - 1), 3600.0)
                    row.next_attempt_at = now + timedelta(seconds=delay)
            session.add(row)
            session.commit()

    def _finish(self, row_id: str, status: str, now: datetime, note: str) -> None:
        with Session(self.engine) as session:
            session.execute(
                update(MqlNotification)
                .where(col(MqlNotification.id) == row_id)
                .values(status=status, last_error=note[:500], claimed_until=None)
            )
            session.commit()
