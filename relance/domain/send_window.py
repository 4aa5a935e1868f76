"""Send windows: when a marketing message may go out, in the lead's own time zone.

Pure and deterministic (no clock, no I/O beyond the time-zone database), so journeys call it
with ``workflow.now()``: an email due Saturday 23:00 in Paris waits for Monday 09:00 Paris time,
whatever the offset is that Monday (DST included).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass
class SendWindow:
    """Days (ISO: 1 = Monday ... 7 = Sunday) and hours ("HH:MM", end exclusive, "24:00" = midnight)
    when a marketing send may start, plus optional holidays ("YYYY-MM-DD", local dates)."""

    days: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    start: str = "09:00"
    end: str = "19:00"
    holidays: list[str] = field(default_factory=list)

    def check(self) -> None:
        """Raise ValueError when the window can never open or is malformed."""
        if not self.days or any(d not in range(1, 8) for d in self.days):
            raise ValueError(f"send window days must be 1 (Monday) to 7 (Sunday), got {self.days}")
        if not _minutes(self.start) < _minutes(self.end):
            raise ValueError(f"send window start {self.start} must be before its end {self.end}")
        for holiday in self.holidays:
            date.fromisoformat(holiday)

    def describe(self) -> str:
        days = ",".join(DAY_NAMES[d - 1] for d in sorted(self.days))
        return f"{days} {self.start}-{self.end}"


def _minutes(hhmm: str) -> int:
    hours, _, minutes = hhmm.partition(":")
    value = int(hours) * 60 + int(minutes or 0)
    if not 0 <= value <= 24 * 60 or not 0 <= int(minutes or 0) < 60:
        raise ValueError(f"not a time of day: {hhmm!r} (HH:MM, 00:00 to 24:00)")
    return value


def zone_or_utc(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def next_open(now_utc: datetime, zone: str, window: SendWindow) -> datetime:
    """The first instant at or after ``now_utc`` inside ``window`` in ``zone``, in UTC.

    ``now_utc`` itself when the window is open. An unknown zone counts as UTC.
    """
    tz = zone_or_utc(zone)
    start, end = _minutes(window.start), _minutes(window.end)
    holidays = set(window.holidays)
    local = now_utc.astimezone(tz)
    for offset in range(0, 400):  # a year and a bit: enough for any window that can open
        day = local.date() + timedelta(days=offset)
        if day.isoweekday() not in window.days or day.isoformat() in holidays:
            continue
        opens = _local(day, start, tz)
        closes = _local(day, end, tz)
        if offset == 0 and opens <= now_utc < closes:
            return now_utc
        if opens > now_utc:
            return opens
    raise ValueError(f"the send window {window.describe()} never opens")


def local_moment(day: date, at: str, zone: str | None) -> datetime:
    """``day`` at ``at`` (HH:MM) in the time zone ``zone`` (unknown: UTC), in UTC."""
    return _local(day, _minutes(at), zone_or_utc(zone))


def _local(day: date, minutes: int, tz: ZoneInfo) -> datetime:
    """``day`` at ``minutes`` past local midnight, in UTC (a time skipped by DST moves forward)."""
    if minutes >= 24 * 60:
        return _local(day + timedelta(days=1), 0, tz)
    wall = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=tz)
    utc = wall.astimezone(UTC)
    return utc
