"""Correlation as a pure function of a recorded trace: the snapshot and the session's events in,
the verdict out, with no probe, no root and no read of this machine (events carry namespace
inodes; the bundle maps them). What per-node agents will send a coordinator is the same data."""

from __future__ import annotations

import json

from ..bundle import Bundle
from ..errors import BundleError
from .correlate import Trace, correlate
from .session import SessionResult


def replay(rec: dict, session: SessionResult | None = None) -> Trace:
    """Re-run diagnose, plan and correlate on a recording (trace(..., record=...)); session: the
    events to correlate instead of the recorded ones (per-node sessions joined, say)."""
    from ..diagnose import diagnose
    from . import RECORDING_VERSION
    from .plan import plan

    if rec.get("version") != RECORDING_VERSION:
        raise BundleError(f"trace recording version {rec.get('version')!r} is not {RECORDING_VERSION}")
    bundle = Bundle.from_json(json.dumps(rec["bundle"]))
    f = rec.get("flow", {})
    diag = diagnose(bundle, rec["src"], rec["dst"], proto=f.get("proto"), port=f.get("port"), size=f.get("size"),
                    sport=f.get("sport"))
    _req, src_host, dst_host = plan(bundle, diag, count=f.get("count") or 1)
    return correlate(session=session or SessionResult.from_dict(rec["session"]), bundle=bundle, diagnosis=diag,
                     src_host=src_host, dst_host=dst_host, src=rec["src"], dst=rec["dst"])
