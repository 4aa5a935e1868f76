"""Read and check the nurturing sequence file (``RELANCE_NURTURING_SEQUENCE_FILE``, YAML).

The file is validated with pydantic, then turned into the journey's plain dataclasses
(``relance.contracts.nurturing.NurturingSequence``), which travel in the journey's input:
editing the file changes the next enrollments, never a running journey. A mistake is reported
with the file and the step it is in:

    config/nurturing.yaml: step 4 (demo_proposal): requires.max_loops: ...
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from relance.contracts.nurturing import Gate, NurturingSequence, NurturingStep
from relance.domain.rendering import TEMPLATES_DIR

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,40}$")]
AssetName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
Template = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,100}$")]


class SequenceError(ValueError):
    """The sequence file is missing or wrong; the message says where."""


class GateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    downloaded: AssetName
    alternatives: list[Template] = Field(min_length=1, max_length=10)
    max_loops: int = Field(default=2, ge=0, le=10)
    retry_after_days: float = Field(default=4.0, gt=0, le=365)
    on_exhausted: Literal["end", "skip"] = "end"


class StepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    template: Template
    delay_days: float = Field(default=4.0, ge=0, le=365)
    requires: GateConfig | None = None


class HandOffConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    on_download: list[AssetName] = Field(default_factory=list)
    on_mql: bool = True


class SequenceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: list[StepConfig] = Field(min_length=1, max_length=50)
    assets: dict[AssetName, Annotated[str, StringConstraints(min_length=1, max_length=500)]] = (
        Field(default_factory=dict)
    )
    hand_off: HandOffConfig = Field(default_factory=HandOffConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> SequenceFile:
        seen: set[str] = set()
        for step in self.steps:
            if step.name in seen:
                raise ValueError(f"two steps are named {step.name!r}")
            seen.add(step.name)
        return self


def _where(loc: tuple, raw: dict) -> str:
    parts = list(loc)
    if len(parts) >= 2 and parts[0] == "steps" and isinstance(parts[1], int):
        steps = raw.get("steps") or []
        name = (
            steps[parts[1]].get("name")
            if parts[1] < len(steps) and isinstance(steps[parts[1]], dict)
            else None
        )
        rest = ".".join(str(p) for p in parts[2:])
        return (
            f"step {parts[1] + 1}" + (f" ({name})" if name else "") + (f": {rest}" if rest else "")
        )
    return ".".join(str(p) for p in parts) or "the file"


def parse_sequence(
    text: str, *, source: str = "sequence", templates_dir: Path = TEMPLATES_DIR
) -> NurturingSequence:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SequenceError(f"{source}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise SequenceError(f"{source}: expected a mapping with 'steps'")
    try:
        config = SequenceFile.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"{_where(e['loc'], raw)}: {e['msg']}" for e in err.errors())
        raise SequenceError(f"{source}: {problems}") from err
    for index, step in enumerate(config.steps, 1):
        templates = [step.template, *(step.requires.alternatives if step.requires else [])]
        for template in templates:
            if not (templates_dir / "email" / f"{template}.jinja").is_file():
                raise SequenceError(
                    f"{source}: step {index} ({step.name}): template {template!r} not found "
                    f"(expected templates/email/{template}.jinja)"
                )
    return NurturingSequence(
        version=hashlib.sha256(text.encode()).hexdigest()[:12],
        steps=[
            NurturingStep(
                name=s.name,
                template=s.template,
                delay_days=s.delay_days,
                gate=Gate(
                    downloaded=s.requires.downloaded,
                    alternatives=list(s.requires.alternatives),
                    max_loops=s.requires.max_loops,
                    retry_after_days=s.requires.retry_after_days,
                    on_exhausted=s.requires.on_exhausted,
                )
                if s.requires
                else None,
            )
            for s in config.steps
        ],
        assets=dict(config.assets),
        hand_off_downloads=list(config.hand_off.on_download),
        hand_off_on_mql=config.hand_off.on_mql,
    )


def load_sequence(path: Path) -> NurturingSequence:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise SequenceError(
            f"cannot read the nurturing sequence file {path}: {err.strerror}"
        ) from err
    return parse_sequence(text, source=str(path))
