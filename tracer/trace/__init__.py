"""`podpath trace`: send a marked test packet, follow it with eBPF, explain where and why it died.

    from podpath.tracer.trace import trace
    t = trace("pod-a", "pod-b", lab="pp")            # needs root
    t.verdict.status, t.verdict.cause, t.hops, t.to_dict()

Stages (each a plain data object): snapshot (tracer.sources) → expected path and findings
(tracer.diagnose) → SessionRequest (session.py: probes + injector, the per-node unit) → events →
correlate (correlate.py: observed hops, verdict, the finding that explains it).
"""

from __future__ import annotations

import os
import time
from typing import Callable

from ..errors import PermissionNeeded, UsageError
from .correlate import ObservedHop, Trace, Verdict, correlate
from .inject import InjectRequest, InjectResult, new_icmp_id
from .session import SessionRequest, SessionResult, run_session

__all__ = ["trace", "plan", "Trace", "Verdict", "ObservedHop", "SessionRequest", "SessionResult",
           "InjectRequest", "InjectResult", "run_session", "correlate", "require_root"]

DEFAULT_TIMEOUT = 1.0


def require_root() -> None:
    if os.geteuid() != 0:
        raise PermissionNeeded("`podpath trace` needs root (it loads eBPF programs and enters pod namespaces); "
                               "without root, use `podpath diagnose SRC DST --bundle FILE`")


def plan(bundle, diagnosis, *, count: int = 1, timeout: float = DEFAULT_TIMEOUT) -> tuple[SessionRequest, object, object]:
    """The session request for a diagnosed flow: which devices to probe, what to send."""
    flow = diagnosis.flow
    hosts = {h.name: h for h in bundle.hosts}
    src_host = hosts.get(flow.src_name) if flow.src_name else None
    if src_host is None:
        src_host = next((h for h in bundle.hosts if h.kind == "pod" and any(a.address == flow.src for a in h.addrs)),
                        None)
    if src_host is None or not src_host.netns:
        raise UsageError(f"cannot find the source's network namespace for {flow.src}; trace from a pod")
    dst_host = hosts.get(flow.dst_name) if flow.dst_name else None
    attach: list[tuple[str, str]] = []

    def add(host, dev):
        if host is None or not host.netns or not dev or dev == "lo":
            return
        if any(l.name == dev for l in host.links) and (host.netns, dev) not in attach:
            attach.append((host.netns, dev))

    add(src_host, "eth0")
    for p in diagnosis.paths:
        for hop in p.hops:
            add(hosts.get(hop.host), hop.device)
    if dst_host is not None and dst_host.kind == "pod":
        add(dst_host, "eth0")
    inj = InjectRequest(netns=src_host.netns, src=flow.src, dst=flow.dst, proto=flow.proto, dport=flow.dport,
                        size=flow.size, count=count, icmp_id=new_icmp_id() if flow.proto == "icmp" else None)
    req = SessionRequest(inject=inj, attach=attach, src_netns=src_host.netns,
                         dst_netns=dst_host.netns if dst_host is not None and dst_host.kind == "pod" else None,
                         timeout=timeout)
    return req, src_host, dst_host


def trace(src: str, dst: str, *, lab: str = "pp", bundle=None, proto: str | None = None, port: int | None = None,
          size: int | None = None, count: int = 1, timeout: float = DEFAULT_TIMEOUT,
          progress: Callable[[str], None] | None = None) -> Trace:
    """Trace one flow in a running lab (root). bundle: a fresh snapshot to reuse (else one is taken)."""
    from ..diagnose import diagnose
    from ..sources import lab_snapshot

    require_root()
    if count < 1:
        raise UsageError("--count must be at least 1")
    if timeout <= 0:
        raise UsageError("--timeout must be positive")
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    if bundle is None:
        say(f"snapshotting lab '{lab}'…")
        bundle = lab_snapshot(lab)
    t_snap = time.perf_counter()
    diag = diagnose(bundle, src, dst, proto=proto, port=port, size=size)
    req, src_host, dst_host = plan(bundle, diag, count=count, timeout=timeout)
    t_plan = time.perf_counter()
    done: dict = {}

    def on_result(result) -> None:  # the stop condition is met; the probes are still open
        done["t_sess"] = time.perf_counter()
        done["trace"] = correlate(session=result, bundle=bundle, diagnosis=diag, src_host=src_host,
                                  dst_host=dst_host, src=src, dst=dst)
        done["t_verdict"] = time.perf_counter()

    result = run_session(req, say, on_result=on_result)
    t_end = time.perf_counter()
    if "trace" not in done:  # the session ended early (nothing sent, nothing to close after)
        on_result(result)
    out = done["trace"]
    # the verdict's time excludes closing probes and injector (done after it, before returning)
    out.timings.update(result.timings)
    out.timings.update({"snapshot_ms": (t_snap - t0) * 1000, "diagnose_ms": (t_plan - t_snap) * 1000,
                        "session_ms": (done["t_sess"] - t_plan) * 1000,
                        "verdict_ms": (done["t_verdict"] - t0) * 1000,
                        "total_ms": (max(t_end, done["t_verdict"]) - t0) * 1000})
    return out
