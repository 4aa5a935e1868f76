"""The right to be forgotten: erase every row about a lead, keep only what proves it was done.

``erase_lead`` deletes the lead and every row of every table that refers to a lead, in one
transaction. Which tables: every table of ``SQLModel.metadata`` with a ``lead_id`` column or a
foreign key to ``leads.id`` (so a table added later is erased without anyone remembering to),
except those listed in ``KEPT`` with the reason they are kept. What remains:

- ``suppression_list``: an HMAC-SHA256 of the normalised address (no lead id, nothing
  readable), so a re-import or a new sign-up of that address is refused;
- ``audit_log``: the entries about the lead (actor, action, time), and the erasure's own entry
  with the reason and how many rows were deleted from each table.

Nor is anything left on disk (SQLite): deleted bytes are zeroed (``secure_delete``, set on every
connection by ``relance.domain.db``) and the write-ahead log, which still holds copies of the pages
the rows were on, is checkpointed and truncated after the commit. PostgreSQL keeps deleted rows as
dead tuples in its data files until VACUUM reclaims their space (autovacuum does, in time).

Journeys are not this module's business (it is plain database work, callable from an
activity): ``DELETE /leads/{id}`` closes and deletes the lead's Temporal executions first.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import Table, delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

from relance.domain import audit
from relance.domain.db import checkpoint_wal
from relance.domain.models import Lead, utcnow
from relance.domain.suppression import suppress

log = logging.getLogger("relance.services.erasure")

# Tables holding a lead id that an erasure keeps on purpose, and why.
KEPT = {
    "audit_log": "proof that the lead's data was accessed and erased, and when; the lead id is a "
    "random id "
    "that identifies no one once the lead's rows are gone",
}


@dataclass
class ErasureReport:
    lead_id: str
    found: (
        bool  # False: no such lead (already erased, or never existed); stray rows are still removed
    )
    actor: str
    reason: str
    erased_at: datetime
    rows_deleted: dict[str, int] = field(default_factory=dict)
    suppressed: bool = False  # the address's hash is on the suppression list
    kept: dict[str, str] = field(default_factory=lambda: dict(KEPT))

    def as_dict(self) -> dict:
        out = asdict(self)
        out["erased_at"] = self.erased_at.isoformat()
        return out


def lead_columns(table: Table) -> list[str]:
    """The columns of ``table`` that hold a lead id."""
    names = {
        fk.parent.name for fk in table.foreign_keys if fk.column.table.name == Lead.__tablename__
    }
    if "lead_id" in table.columns:
        names.add("lead_id")
    return sorted(names)


def tables_to_erase() -> list[Table]:
    """Every table with a lead id but ``leads`` itself and ``KEPT``, children before parents."""
    return [
        table
        for table in reversed(SQLModel.metadata.sorted_tables)
        if table.name != Lead.__tablename__ and table.name not in KEPT and lead_columns(table)
    ]


def erase_lead(
    engine: Engine, lead_id: str, *, actor: str, reason: str, hash_key: str
) -> ErasureReport:
    """Erase the lead's rows everywhere, suppress its address, log it. Idempotent: erasing an
    unknown lead removes any stray rows and answers ``found=False``.

    ``hash_key`` keys the suppression hash: the settings' ``suppression_hash_key``.
    """
    report = ErasureReport(
        lead_id=lead_id, found=False, actor=actor, reason=reason, erased_at=utcnow()
    )
    with Session(engine) as session:
        lead = session.get(Lead, lead_id)
        if lead is not None:
            report.found = True
            suppress(
                session, hash_key, lead.email, "erased"
            )  # before the row goes: needs the address
            report.suppressed = True
        for table in tables_to_erase():
            for column in lead_columns(table):
                result = session.execute(delete(table).where(table.c[column] == lead_id))
                if result.rowcount:
                    report.rows_deleted[table.name] = (
                        report.rows_deleted.get(table.name, 0) + result.rowcount
                    )
        if lead is not None:
            session.execute(delete(Lead).where(Lead.id == lead_id))
            report.rows_deleted[Lead.__tablename__] = 1
        audit.record(
            session,
            actor=actor,
            action=audit.ERASE,
            lead_id=lead_id,
            detail={"reason": reason, "found": report.found, "rows_deleted": report.rows_deleted},
        )
        session.commit()
    if not checkpoint_wal(engine):
        log.warning(
            "erasure of lead %s: the write-ahead log could not be emptied now (a reader held on); "
            "the next checkpoint will",
            lead_id,
        )
    return report
