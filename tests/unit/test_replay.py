"""Correlation re-run on recorded traces, without root: every catalog fault's trace (and a healthy
one), recorded in the lab by scripts/record_sessions.py, gives the same verdict again from its
snapshot and events alone. Fixtures, since a unit test cannot load BPF; the lab tests trace live."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from podpath.tracer.trace import VERDICT_FIELDS
from podpath.tracer.trace.replay import replay
from podpath.tracer.trace.session import SessionResult

SESSIONS = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "sessions").glob("*.json.gz"))


def load(path: Path) -> dict:
    with gzip.open(path, "rt") as f:
        return json.load(f)


def test_every_catalog_fault_has_a_recording():
    from podpath.tracer.lab import FAULTS

    names = {p.name.removesuffix(".json.gz") for p in SESSIONS}
    assert set(FAULTS) | {"healthy"} <= names, f"record them: scripts/record_sessions.py (missing {set(FAULTS) - names})"


@pytest.mark.parametrize("path", SESSIONS, ids=lambda p: p.name.removesuffix(".json.gz"))
def test_replayed_verdict_is_the_recorded_one(path):
    rec = load(path)
    t = replay(rec)
    got = {k: getattr(t.verdict, k) for k in VERDICT_FIELDS}
    assert got == rec["verdict"], path.name
    assert len(t.hops) == rec["hops"]


def test_session_round_trips_through_json():
    rec = load(SESSIONS[0])
    again = SessionResult.from_dict(json.loads(json.dumps(rec["session"]))).to_dict()
    assert json.loads(json.dumps(again)) == rec["session"]  # tuples come back as JSON lists
    assert len(SessionResult.from_dict(rec["session"]).events) == len(rec["session"]["events"]) > 0
