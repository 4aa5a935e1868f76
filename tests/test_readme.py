"""The README tells a newcomer the truth about the repository it sits in."""

from __future__ import annotations

import re
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


def test_how_it_fits_together_describes_each_path_once():
    rows = layout_rows()
    layers = {f"relance/{layer}/" for layer in ("domain", "contracts", "services", "dev")}
    assert {"workflows/", "activities/", "api/", "config/", "tests/"} | layers <= rows.keys()
    assert {path: texts for path, texts in rows.items() if len(texts) > 1} == {}


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
