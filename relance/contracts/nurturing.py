"""The nurturing sequence as the journey runs it: plain dataclasses read from the sequence file
(relance/services/nurturing.py) that travel in the journey's input, so editing the file changes
the next enrollments, never a running journey."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Gate:
    """A validation rule: the step goes out only once the lead downloaded ``downloaded``."""

    downloaded: str  # an asset name, e.g. "white-paper"
    alternatives: list[str]  # templates of the feedback loop, in order (the last one repeats)
    max_loops: int = 2  # how many alternatives at most before giving up on the step
    retry_after_days: float = 4.0  # how long each alternative waits for the condition
    on_exhausted: str = "end"  # end (the journey) | skip (the step, and go on)


@dataclass
class NurturingStep:
    name: str
    template: str
    delay_days: float  # wait before this step (from the previous one)
    gate: Gate | None = None


@dataclass
class NurturingSequence:
    version: str  # a hash of the file it came from
    steps: list[NurturingStep]
    assets: dict[str, str] = field(
        default_factory=dict
    )  # asset -> part of its URL: a click on it is a download
    hand_off_downloads: list[str] = field(
        default_factory=list
    )  # a download of one of these makes a sales task
    hand_off_on_mql: bool = True  # crossing the MQL threshold makes a sales task
