"""A benchmark's figures, printed as a summary table and kept in docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
TABLE_HEADER = "| date | machine | command | benchmark | ratio | target | details |"
END_OF_TABLE = "<!-- new rows go above this line -->"


@dataclass
class Row:
    benchmark: str
    ratio: str  # the figure against the same run's baseline, e.g. "0.52×"
    target: str  # the figure asked for, and whether it is met
    details: str


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def print_summary(rows: list[Row]) -> None:
    width = max(len(r.benchmark) for r in rows)
    print()
    print(f"{'benchmark':<{width}}  {'ratio':>10}  target")
    for row in rows:
        print(f"{row.benchmark:<{width}}  {row.ratio:>10}  {row.target}")
        print(f"{'':<{width}}  {'':>10}  {row.details}")


def record(rows: list[Row]) -> None:
    """Add the rows to the results table (above the marker), with the date, machine and command."""
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    command = " ".join(["python -m bench"] + sys.argv[1:])
    lines = [
        f"| {date} | {machine()} | `{command}` | {r.benchmark} | **{r.ratio}** | {r.target} "
        f"| {r.details} |"
        for r in rows
    ]
    text = RESULTS.read_text()
    if END_OF_TABLE not in text:
        raise RuntimeError(f"{RESULTS} has lost its marker {END_OF_TABLE!r}")
    RESULTS.write_text(text.replace(END_OF_TABLE, "\n".join(lines) + "\n" + END_OF_TABLE))
