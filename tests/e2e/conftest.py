"""Shared pytest fixtures for the end-to-end tests.

Keep this small and generic: fixtures that locate what was built.  The
build directory is $POSTERN_BUILD (tests/run.py sets it), else build/ at
the top of the tree.
"""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def build_dir():
    d = Path(os.environ.get("POSTERN_BUILD", ROOT / "build"))
    if not d.is_dir():
        pytest.fail(f"no build directory {d} (set POSTERN_BUILD)")
    return d


@pytest.fixture(scope="session")
def postern_bin(build_dir):
    p = build_dir / "src" / "postern" / "postern"
    if not os.access(p, os.X_OK):
        pytest.fail(f"{p} is not built")
    return p
