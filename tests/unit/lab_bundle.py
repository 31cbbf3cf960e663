"""Fixtures the unit tests share: the real lab snapshot a healthy lab gives (no root needed).

Imported by the tests that use them (`from lab_bundle import bundle, healthy`), not a conftest.py:
tests/lab has a conftest of its own that its modules import by name, and two modules called
`conftest` would shadow each other."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent.parent / "fixtures" / "bundles" / "lab-healthy.json"


@pytest.fixture(scope="module")
def healthy():
    from podpath.tracer.bundle import Bundle

    return Bundle.from_json(FIXTURE.read_text())


@pytest.fixture
def bundle(healthy):
    """A copy of the healthy lab snapshot each test may break as it likes."""
    return copy.deepcopy(healthy)
