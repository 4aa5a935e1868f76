"""The README tells a newcomer the truth about the repository it sits in."""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

from relance.dev.devstack import EXAMPLE_SIGNUP

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def layout_rows() -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in section("How it fits together").splitlines():
        found = re.match(r"\| `([^`]+)` \| (.+) \|$", line)
        if found:
            rows.setdefault(found[1], []).append(found[2])
    return rows


def tracked_files() -> list[str]:
    return subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()


def test_how_it_fits_together_describes_each_path_once():
    rows = layout_rows()
    layers = {
        f"relance/{p.name}/" for p in (ROOT / "relance").iterdir() if (p / "__init__.py").exists()
    }
    assert {"relance/domain/", "relance/contracts/", "relance/services/", "relance/dev/"} <= layers
    assert {"workflows/", "activities/", "api/", "config/", "tests/"} | layers <= rows.keys()
    assert {path: texts for path, texts in rows.items() if len(texts) > 1} == {}


def test_the_layout_names_every_top_level_directory_and_only_paths_that_exist():
    rows = layout_rows()
    directories = {f"{f.split('/')[0]}/" for f in tracked_files() if "/" in f} - {".ci/"}
    # relance/ is described floor by floor (its layers), each a row of its own.
    described = {path.split("/")[0] + "/" if path.startswith("relance/") else path for path in rows}
    assert sorted(directories - described) == []
    assert [path for path in rows if not (ROOT / path).exists()] == []


def test_the_layout_names_every_api_route_module():
    [api] = layout_rows()["api/"]
    routes = sorted(
        p.name for p in (ROOT / "api" / "routes").glob("*.py") if p.name != "__init__.py"
    )
    assert [name for name in routes if f"`routes/{name}`" not in api] == []


def code_blocks(title: str) -> list[tuple[str, str]]:
    """The ```python blocks of a section, as (the file its first comment names, the code)."""
    blocks = []
    for found in re.finditer(r"```python\n(.*?)```", section(title), re.S):
        code = textwrap.dedent(found[1])
        first, _, rest = code.partition("\n")
        assert first.startswith("# "), f"a block of {title!r} must name its file: {first!r}"
        blocks.append((first[2:].strip(), rest))
    return blocks


def test_the_code_adding_a_journey_shows_is_the_code_that_runs():
    """Each example is cut from a file the suite runs (the tiny journey, the welcome journey's
    tests, the send window's patch): "..." between lines stands for lines left out."""
    blocks = code_blocks("Adding a journey")
    assert {path for path, _ in blocks} >= {
        "tests/tiny_journey.py",
        "tests/test_welcome_journey.py",
    }
    for path, code in blocks:
        source = (ROOT / path).read_text()
        position = 0
        for part in re.split(r"^\s*\.\.\.\n", code, flags=re.M):
            found = source.find(part, position)
            assert found != -1, f"not in {path}:\n{part}"
            position = found + len(part)


def test_the_readme_and_the_docs_link_the_architecture_page():
    assert "(docs/architecture.md)" in section("How it fits together")
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    linked = re.findall(r"\]\(\.\./([^)#]+)\)", architecture)
    assert len(linked) >= 10
    assert [path for path in linked if not (ROOT / path).exists()] == []
    assert "(docs/channels.md)" in section("Adding a channel")


def test_every_config_file_is_named_in_the_layout():
    [config] = layout_rows()["config/"]
    missing = [
        p.name
        for p in sorted((ROOT / "config").iterdir())
        if p.is_file() and f"`{p.name}`" not in config
    ]
    assert missing == []


def test_every_example_consent_carries_its_proof():
    consents = re.findall(r'\{"channel":[^{}]*\}', README + EXAMPLE_SIGNUP)
    assert len(consents) >= 2
    for consent in consents:
        for proof in ("source_url", "ip", "user_agent", "wording_version"):
            assert f'"{proof}"' in consent, consent


def test_every_variable_the_readme_names_is_a_setting():
    from relance.domain.settings import Settings

    fields = {name.upper() for name in Settings.model_fields}
    named = set(re.findall(r"`RELANCE_([A-Z_]{2,})", README))  # not a placeholder such as RELANCE_X
    # "RELANCE_X / _Y" rows name a prefix of two settings; "_MINUTE"-style suffixes stand alone.
    unknown = sorted(
        n for n in named if n not in fields and not any(f.startswith(n) for f in fields)
    )
    assert unknown == []


def test_the_unsubscribe_mailbox_is_documented_as_unread():
    assert "RELANCE_UNSUBSCRIBE_MAILTO" in section("Configuration")
    assert "Relance reads no mailbox" in README
