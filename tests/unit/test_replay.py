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


@pytest.mark.parametrize("path", SESSIONS, ids=lambda p: p.name.removesuffix(".json.gz"))
def test_per_node_sessions_on_far_apart_clocks_join_to_the_same_verdict(path):
    """Each node's events as its own agent stamps them (relative to its own start), one node's clock
    a day ahead of the other's: joined by packet identity, the verdict is the recorded one."""
    import json as _json

    from podpath.tracer.bundle import Bundle
    from podpath.tracer.model.topology import place
    from podpath.tracer.trace.join import join, packet_key, shift, split

    rec = load(path)
    bundle = Bundle.from_json(_json.dumps(rec["bundle"]))
    parts = split(SessionResult.from_dict(rec["session"]), bundle)
    day = 86_400 * 10**9
    skewed = {n: shift(r, (i + 1) * day) for i, (n, r) in enumerate(sorted(parts.items()))}
    src = next(h for h in bundle.hosts if h.kind == "pod" and h.name == rec["src"])
    joined, offsets = join(skewed, place(src)[0])
    with_packets = {n for n, r in parts.items() if any(packet_key(e) for e in r.events)}
    assert with_packets <= set(offsets), f"a node's packets were not joined: {with_packets - set(offsets)}"
    t = replay(rec, joined)
    assert {k: getattr(t.verdict, k) for k in VERDICT_FIELDS} == rec["verdict"], path.name


def test_verdict_cause_is_the_cause_enum_and_json_prints_its_name():
    """Verdict.cause is typed (checks/causes.Cause) end to end: replayed, and read back from JSON,
    it is the enum; `trace -o json` prints the bare name; a name no cause has fails where it is read."""
    from podpath.tracer.checks.causes import Cause
    from podpath.tracer.trace.correlate import trace_from_dict

    broken = [p for p in SESSIONS if p.name.startswith("fdb-missing")]
    t = replay(load(broken[0]))
    assert type(t.verdict.cause) is Cause and t.verdict.cause == load(broken[0])["verdict"]["cause"]
    text = json.dumps(t.to_dict())
    assert f'"cause": "{t.verdict.cause.value}"' in text
    again = trace_from_dict(json.loads(text))
    assert type(again.verdict.cause) is Cause and json.dumps(again.to_dict()) == text
    d = json.loads(text)
    d["verdict"]["cause"] = "route"
    with pytest.raises(ValueError, match="'route' is not a valid Cause"):
        trace_from_dict(d)
