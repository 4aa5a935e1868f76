"""The YAML configuration files (scoring rules, topics, lead schema): read, checked by their
pydantic model, and re-read when they change. A mistake raises the file's own error class with
the file and the place (``config/topics.yaml: topics.0.key: ...``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def read_model(
    path: Path | str,
    model: type[M],
    error: type[Exception],
    *,
    what: str,
    shape: str,
    missing: M | None = None,
) -> M:
    """``path`` parsed as YAML and checked as ``model``. ``what`` names the file's content in
    a read error ("the topics"); ``shape`` says what the top must be; ``missing``: what a file
    that does not exist stands for (None: it is an error)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        if missing is not None:
            return missing
        raise error(f"{path}: cannot read {what}: {err.strerror or err}") from None
    except OSError as err:
        raise error(f"{path}: cannot read {what}: {err.strerror or err}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML: {err}") from None
    if raw is None and missing is not None:
        raw = {}
    if not isinstance(raw, dict):
        raise error(f"{path}: expected {shape}")
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in err.errors()
        )
        raise error(f"{path}: {problems}") from None


def watched(load: Callable[[Path], M]) -> Callable[[Path | str], M]:
    """``load`` behind a cache keyed by the file's modification time: re-read when it changes."""

    @lru_cache(maxsize=8)
    def cached(path: str, mtime: float) -> M:
        return load(Path(path))

    def current(path: Path | str) -> M:
        path = Path(path)
        try:
            mtime = path.stat().st_mtime
        except OSError:
            mtime = -1.0
        return cached(str(path), mtime)

    return current
