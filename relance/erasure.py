"""Erase a lead, as for a GDPR erasure request (right to be forgotten).

This is the MINIMAL version, written for the re-engagement sunset (issue 5): it deletes every
row of the lead in every table that has a ``lead_id`` column, then the lead itself, in one
transaction. It does not touch Temporal histories (they hold ids only, never an address), nor
keep an audit record of the erasure beyond the returned report and a log line with ``actor``
and ``reason``. The fuller erasure is built separately and replaces this module at merge.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

from relance import models  # noqa: F401  (registers every table on SQLModel.metadata)
from relance.models import Lead

log = logging.getLogger("relance.erasure")


@dataclass
class ErasureReport:
    lead_id: str
    rows_deleted: dict[str, int] = field(default_factory=dict)  # table -> rows; "leads" is 1 or 0


def erase_lead(engine: Engine, lead_id: str, *, actor: str, reason: str) -> ErasureReport:
    """Delete the lead and every row that refers to it. Erasing an unknown lead deletes nothing."""
    report = ErasureReport(lead_id)
    with Session(engine) as session:
        # Children first (reverse dependency order), so foreign keys hold at every statement.
        for table in reversed(SQLModel.metadata.sorted_tables):
            if table.name == Lead.__tablename__ or "lead_id" not in table.c:
                continue
            deleted = session.execute(delete(table).where(table.c.lead_id == lead_id)).rowcount
            if deleted:
                report.rows_deleted[table.name] = deleted
        report.rows_deleted[Lead.__tablename__] = session.execute(
            delete(Lead.__table__).where(Lead.__table__.c.id == lead_id)).rowcount
        session.commit()
    log.info("erased lead %s (actor %s, reason %s): %s", lead_id, actor, reason, report.rows_deleted)
    return report
