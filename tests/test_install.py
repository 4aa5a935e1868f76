"""The install (`make install`) upgrades the venv's installers: `python -m venv` seeds pip 23.2.1
and setuptools 65.5.0 (Python 3.11), both with published CVEs. Read from the venv the tests run
in, which `make install` / `make test` created."""

from __future__ import annotations

import sys
from importlib.metadata import version

import pytest
from packaging.version import Version

# The first releases with the published fixes (see BOOTSTRAP in the Makefile).
FIXED = {
    "pip": Version(
        "25.3"
    ),  # CVE-2025-8869 (tar symlinks outside the target), CVE-2023-5752 (Mercurial VCS URLs)
    "setuptools": Version(
        "78.1.1"
    ),  # CVE-2025-47273 (path traversal in PackageIndex), CVE-2024-6345 (code injection)
}


@pytest.mark.skipif(
    sys.prefix == sys.base_prefix, reason="not running in a venv (make install creates one)"
)
@pytest.mark.parametrize("package", sorted(FIXED))
def test_the_venv_installers_carry_the_published_security_fixes(package: str):
    installed = Version(version(package))
    assert installed >= FIXED[package], f"{package} {installed} in {sys.prefix}: run make install"
