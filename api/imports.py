"""CSV import of leads (``POST /leads/import``), with consent evidence, one row at a time.

Columns (a header line is required; order free; names case-insensitive):

    email            required; the deduplication key (normalised as sign-ups are)
    first_name, phone, country       optional, as in ``POST /leads``
    consent          channels granted, separated by ``;`` or ``|``
                     (``email``, ``sms``, ``email;sms``; any consent channel of
                     relance/contracts/channels.py); empty: no consent recorded (the lead is a
                     subscriber-to-be, not contacted)
    source_url, consented_at, wording_version, ip
                     the consent's evidence, kept in the ledger: ``source_url``, ``wording_version``
                     and ``consented_at`` (ISO 8601, not in the future) are required with a consent,
                     as they are in ``POST /leads`` (api/schemas.py, CONSENT_PROOF), the time being
                     the row's own

Each row is all or nothing: a bad row is reported with its line number and why, and writes
nothing; the good rows are saved. An address on the suppression list (erased, or unsubscribed)
is refused: an import never re-subscribes anyone. A consent older than the lead's latest
withdrawal on that channel is refused too. A malformed file (not UTF-8 CSV, no ``email``
column, unknown columns, too big: RELANCE_IMPORT_MAX_BYTES) is refused whole with a 4xx and
writes nothing.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from fastapi import HTTPException, status
from pydantic import ValidationError
from sqlmodel import Session

from api import crud
from api.errors import unprocessable
from api.schemas import CONSENT_PROOF, ImportRejection, ImportReport, LeadCreate, in_range
from relance.contracts.channels import CONSENT_CHANNELS
from relance.domain.consent import latest_consent
from relance.domain.lists import add_member
from relance.domain.models import as_utc, utcnow
from relance.domain.settings import Settings
from relance.domain.suppression import suppression_of

COLUMNS = (
    "email",
    "first_name",
    "phone",
    "country",
    "consent",
    "source_url",
    "consented_at",
    "wording_version",
    "ip",
)
MAX_ROWS = 50_000


def parse_csv(raw: bytes, max_bytes: int) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the rows (with their line numbers). Raises 4xx for a malformed file."""

    def bad(msg: str) -> HTTPException:
        return unprocessable(f"malformed CSV file: {msg}; nothing was imported", "body", "file")

    if len(raw) > max_bytes:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"the file is larger than {max_bytes / 2**20:g} MB; split it",
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise bad(f"not UTF-8 text (byte {err.start})") from None
    if "\x00" in text:
        raise bad("binary content")
    try:
        dialect = csv.Sniffer().sniff(text.split("\n", 1)[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise bad("the file is empty") from None
    except csv.Error as err:
        raise bad(str(err)) from None
    if "email" not in header:
        raise bad(f"no `email` column in the header (columns: {', '.join(COLUMNS)})")
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise bad(
            f"unknown columns {', '.join(repr(u) for u in unknown)} (known: {', '.join(COLUMNS)})"
        )
    if len(set(header)) != len(header):
        raise bad("a column appears twice in the header")
    rows = []
    try:
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            if len(rows) >= MAX_ROWS:
                raise HTTPException(
                    status.HTTP_413_CONTENT_TOO_LARGE, f"more than {MAX_ROWS} rows; split the file"
                )
            rows.append((reader.line_num, fields))
    except csv.Error as err:
        raise bad(f"line {reader.line_num}: {err}") from None
    return header, [
        (
            line,
            {h: v.strip() for h, v in zip(header, fields, strict=False)}
            | ({"__extra__": "1"} if len(fields) > len(header) else {}),
        )
        for line, fields in rows
    ]


def _reason(err: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'][-1:]) or 'row'}: {e['msg']}" for e in err.errors()
    )


def import_row(
    session: Session,
    settings: Settings,
    row: dict[str, str],
    list_name: str | None,
    joined: list[str] | None = None,
) -> bool:
    """One row, in its own transaction. Returns created; raises ValueError(reason) to reject it.
    ``joined``: gets the lead's id when it is new on ``list_name``."""
    if "__extra__" in row:
        raise ValueError("more fields than the header has columns")
    channels = [
        c.strip().lower() for c in row.get("consent", "").replace("|", ";").split(";") if c.strip()
    ]
    if any(c not in CONSENT_CHANNELS for c in channels):
        raise ValueError(
            f"consent: {row['consent']!r} is not a list of channels among "
            f"{', '.join(CONSENT_CHANNELS)} (e.g. email;sms)"
        )
    consented_at = None
    if channels:
        missing = [name for name in (*CONSENT_PROOF, "consented_at") if not row.get(name)]
        if missing:
            raise ValueError(
                f"a consent needs its evidence: {', '.join(missing)} missing "
                "(source_url, wording_version and consented_at are required with a consent)"
            )
        try:
            consented_at = datetime.fromisoformat(row["consented_at"].replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"consented_at: {row['consented_at']!r} is not an ISO 8601 date"
            ) from None
        if consented_at.tzinfo is None:
            consented_at = consented_at.replace(tzinfo=UTC)
        if consented_at.year > utcnow().year + 1:  # year 9999 (converting it to UTC may overflow)
            raise ValueError("consented_at is in the future")
        consented_at = in_range(consented_at, "consented_at").astimezone(
            UTC
        )  # year 1, 1850: refused
        if consented_at > utcnow():
            raise ValueError("consented_at is in the future")
    fields = {k: row[k] for k in ("first_name", "phone", "country") if row.get(k)}
    evidence = {k: row[k] for k in ("source_url", "wording_version", "ip") if row.get(k)}
    try:
        data = LeadCreate(
            email=row.get("email", ""),
            consents=[{"channel": c, **evidence} for c in channels],
            **fields,
        )
    except ValidationError as err:
        raise ValueError(_reason(err)) from None
    entry = (
        suppression_of(session, settings.suppression_hash_key, data.email)
        if settings.suppression_hash_key
        else None
    )
    if entry is not None:
        raise ValueError(
            "the address is on the suppression list (erased at the person's request)"
            if entry.reason == "erased"
            else f"the address is on the suppression list ({entry.reason}): an import does not "
            "re-subscribe"
        )
    existing = crud.get_lead_by_email(session=session, email=data.email)
    if existing is not None:
        for channel in channels:
            latest = latest_consent(session, existing.id, channel)
            if (
                latest is not None
                and latest.status == "withdrawn"
                and as_utc(latest.recorded_at) > consented_at
            ):
                raise ValueError(
                    f"{channel} consent: the lead withdrew it on "
                    f"{as_utc(latest.recorded_at):%Y-%m-%d}, "
                    f"after the imported consent"
                )
    try:
        lead, created = crud.upsert_lead(
            session=session,
            data=data,
            default_phone_region=settings.default_phone_region,
            suppression_key=settings.suppression_hash_key,
            settings=settings,
            form=False,
            consented_at=consented_at,
        )
    except HTTPException as err:  # phone, suppression (raised before anything is written)
        session.rollback()
        detail = (
            err.detail
            if isinstance(err.detail, str)
            else "; ".join(d.get("msg", "") for d in err.detail)
        )
        raise ValueError(detail) from None
    if list_name:
        new = add_member(
            session, list_name=list_name, lead_id=lead.id, reason="imported from a CSV file"
        )
        session.commit()
        if new and joined is not None:
            joined.append(lead.id)
    return created


def import_leads(
    *,
    session: Session,
    settings: Settings,
    raw: bytes,
    list_name: str | None,
    joined: list[str] | None = None,
) -> ImportReport:
    """``joined``: gets the ids of the leads new on ``list_name`` (its triggers enroll them)."""
    _, rows = parse_csv(raw, settings.import_max_bytes)
    report = ImportReport(created=0, updated=0, rejected=[])
    for line, row in rows:
        try:
            created = import_row(session, settings, row, list_name, joined)
        except ValueError as err:
            session.rollback()
            report.rejected.append(
                ImportRejection(line=line, email=row.get("email") or None, reason=str(err))
            )
            continue
        except Exception:
            session.rollback()
            raise
        if created:
            report.created += 1
        else:
            report.updated += 1
    return report
