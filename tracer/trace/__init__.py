"""`podpath trace`: send a marked test packet, follow it with eBPF, explain where and why it died.

    from podpath.tracer.trace import trace
    t = trace("default/pod-a", "default/pod-b", source=source)   # needs root; see tracer/sources
    t.verdict.status, t.verdict.cause, t.hops, t.to_dict()

Stages (each a plain data object): snapshot (tracer.sources) → expected path and findings
(tracer.diagnose) → SessionRequest (plan.py; session.py: probes + injector, the per-node unit) →
events → correlate (correlate.py: observed hops, verdict, the finding that explains it). Where the
source knows the path from names alone (the netns lab), the probes attach while the snapshot is
taken (Source.preplan).
"""

from __future__ import annotations

import time
from typing import Callable

from concurrent.futures import ThreadPoolExecutor

from .. import errors
from ..errors import PodpathError, UsageError
from .correlate import ObservedHop, Trace, Verdict, correlate
from .inject import InjectRequest, InjectResult
from .plan import plan, same_flow
from .session import Session, SessionRequest, SessionResult, run_session

__all__ = ["trace", "plan", "Session", "Trace", "Verdict", "ObservedHop", "SessionRequest", "SessionResult",
           "InjectRequest", "InjectResult", "run_session", "correlate", "require_root"]

DEFAULT_TIMEOUT = 1.0


def require_root() -> None:
    errors.require_root("`podpath trace` (it loads eBPF programs and enters pod namespaces)",
                        "without root, use `podpath diagnose SRC DST --bundle FILE`")


def trace(src: str, dst: str, *, source, bundle=None, proto: str | None = None, port: int | None = None,
          size: int | None = None, count: int = 1, timeout: float = DEFAULT_TIMEOUT,
          progress: Callable[[str], None] | None = None,
          on_verdict: Callable[[Trace], None] | None = None, nftrace: bool = False,
          payload: bytes | None = None, expect_reply: bool = False, sport: int | None = None,
          record: Callable[[dict], None] | None = None) -> Trace:
    """Trace one flow (root). source: where hosts and names come from (tracer.sources: this node,
    the netns lab). bundle: a fresh snapshot of it to reuse (else one is taken, while the probes
    attach when the source can say the path early). payload: what a udp test packet carries (a DNS
    query). on_verdict(trace) is called as soon as the verdict is known, before the probes are
    closed (the CLI prints there)."""
    from ..diagnose import diagnose

    require_root()
    if not source.live:
        raise UsageError(f"{source.label} is a saved snapshot: a trace needs the live kernel; "
                         "use `podpath diagnose --bundle FILE`")
    if payload is None and (proto or "").lower() == "udp" and port == 53:
        payload, expect_reply = dns_probe_query(), True  # a query DNS servers answer: the reply is traced too
    if count < 1:
        raise UsageError("--count must be at least 1")
    if timeout <= 0:
        raise UsageError("--timeout must be positive")
    say = progress or (lambda _m: None)
    # a cluster with agents: every node's part, joined (recordings stay in process)
    if source.remote_trace is not None and record is None:
        t = source.remote_trace(src, dst, proto=proto, port=port, size=size, count=count, timeout=timeout,
                                progress=say, on_verdict=on_verdict, payload=payload, expect_reply=expect_reply,
                                sport=sport, nftrace=nftrace)
        if t is not None:
            return t
    t0 = time.perf_counter()
    session: Session | None = None
    snap_ms: dict = {}
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="podpath-snapshot") as ex:
            snap = None
            if bundle is None:
                say(f"snapshotting {source.label} while the probes attach…")
                def snapshot():
                    t = time.perf_counter()
                    b = source.snapshot((src, dst))
                    snap_ms["snapshot_only_ms"] = (time.perf_counter() - t) * 1000
                    return b

                snap = ex.submit(snapshot)
                try:
                    pre = source.preplan(src, dst, proto=proto, port=port, size=size, count=count,
                                         timeout=timeout, sport=sport)
                except PodpathError:
                    pre = None  # diagnose below says what is wrong, from the snapshot
                if pre is not None:
                    pre.nftrace = nftrace
                    pre.inject.payload_hex = payload.hex() if payload is not None else None
                    pre.expect_reply = expect_reply
                    session = Session(pre, say).open()
                    snap_ms["probes_ready_ms"] = (time.perf_counter() - t0) * 1000
                bundle = snap.result()
        t_snap = time.perf_counter()
        diag = diagnose(bundle, src, dst, proto=proto, port=port, size=size, sport=sport)
        req, src_host, dst_host = plan(bundle, diag, count=count, timeout=timeout)
        req.nftrace = nftrace
        req.inject.payload_hex = payload.hex() if payload is not None else None
        req.expect_reply = expect_reply
        if session is not None and not same_flow(session.req, req):
            session.close()
            session = None
        if session is None:
            session = Session(req, say).open()
        else:
            session.attach(req.attach)  # what the snapshot's path adds to the lab's usual one
        session.attach_netfilter(req.nf_plan)  # brackets fitted to each namespace's tables
        t_plan = time.perf_counter()
        done: dict = {}

        def on_result(result) -> None:  # the stop condition is met; the probes are still open
            done["t_sess"] = time.perf_counter()
            t = correlate(session=result, bundle=bundle, diagnosis=diag, src_host=src_host,
                          dst_host=dst_host, src=src, dst=dst)
            if record is not None:  # what correlate saw and said, before the live counters and nftrace
                record(recording(src, dst, dict(proto=proto, port=port, size=size, sport=sport, count=count),
                                 bundle, result, t))
            _confirm_by_counters(t, bundle)
            if result.nftrace:
                from .correlate import apply_nftrace
                apply_nftrace(t.verdict, bundle, result.nftrace)
            done["t_verdict"] = time.perf_counter()
            t.timings.update(snap_ms)
            t.timings.update({"snapshot_ms": (t_snap - t0) * 1000, "diagnose_ms": (t_plan - t_snap) * 1000,
                              "verdict_ms": (done["t_verdict"] - t0) * 1000})
            done["trace"] = t
            if on_verdict is not None:
                on_verdict(t)

        session.run(on_result)
    finally:
        if session is not None:
            session.close()
    out = done["trace"]
    out.timings.update(session.timings)
    out.timings["total_ms"] = (time.perf_counter() - t0) * 1000
    return out


RECORDING_VERSION = 1
VERDICT_FIELDS = ("status", "cause", "node", "location", "device", "hook", "drop_reason", "direction")


def recording(src: str, dst: str, flow: dict, bundle, result, t: Trace) -> dict:
    """One trace as data: the snapshot, the session's events and correlate's verdict, so correlation
    can be re-run without root or probes (replay.py; tests/fixtures/sessions)."""
    import json

    return {"version": RECORDING_VERSION, "src": src, "dst": dst, "flow": flow,
            "bundle": json.loads(bundle.to_json(indent=None)), "session": result.to_dict(),
            "verdict": {k: getattr(t.verdict, k) for k in VERDICT_FIELDS}, "hops": len(t.hops)}


def _confirm_by_counters(t: Trace, bundle) -> None:
    """A netfilter drop: re-read that namespace's rules and see which counter rose (counters.py)."""
    from .correlate import apply_counters, verdict_host, wants_counters
    from .counters import reread_rules

    v = t.verdict
    if not wants_counters(v):
        return
    host = verdict_host(bundle, v)
    if host is None:
        return
    t0 = time.perf_counter()
    try:
        apply_counters(v, host, reread_rules(host))
    except PodpathError as e:  # the verdict stands without the counters
        v.message += f"; rule counters not re-read: {e}"
    t.timings["counters_ms"] = (time.perf_counter() - t0) * 1000


DNS_PROBE_NAME = "kubernetes.default.svc.cluster.local."


def dns_probe_query() -> bytes:
    """What a udp trace to port 53 sends: a real query (any answer, even NXDOMAIN, comes back),
    not podpath's marker, which a DNS server ignores."""
    import dns.message
    return dns.message.make_query(DNS_PROBE_NAME, "A").to_wire()
