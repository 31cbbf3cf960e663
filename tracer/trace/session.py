"""The per-node unit of a trace: a SessionRequest in, a SessionResult (events) out.

One session loads podpath's probes with one filter, attaches tc on every (namespace, device) it is
given (one thread per namespace), attaches the tracepoints, sends the test packets, polls until
the answer is seen or the timeout passes, and detaches everything (the Probes context manager
closes on every exit path, and every attachment is an fd-owned link the kernel drops if we die).

Both dataclasses are plain data (JSON round-trip), so a future `podpath agent` can run the same
function on each node and stream the result back; in the lab one process sees every node.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from ..errors import NodeError, PodpathError
from ..netns import netns_path
from .inject import InjectRequest, InjectResult, Injector

Progress = Callable[[str], None]


@dataclass
class SessionRequest:
    inject: InjectRequest
    attach: list[tuple[str, str]] = field(default_factory=list)  # (netns, device)
    src_netns: str | None = None  # where the answer must come back (defaults to inject.netns)
    dst_netns: str | None = None
    src_dev: str = "eth0"
    timeout: float = 1.0
    tracepoints: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SessionRequest":
        d = dict(d)
        d["inject"] = InjectRequest(**d["inject"])
        d["attach"] = [tuple(x) for x in d.get("attach", [])]
        return cls(**d)


@dataclass
class SessionResult:
    inject: InjectResult
    events: list = field(default_factory=list)  # probes.Event
    lost: int = 0
    attached: list[tuple[str, str]] = field(default_factory=list)
    attach_errors: list[str] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    answered: bool = False  # the answer was seen at the source (reply at its eth0 ingress)

    def to_dict(self) -> dict:
        return {"inject": self.inject.to_dict(), "events": [e.to_dict() for e in self.events], "lost": self.lost,
                "attached": [list(a) for a in self.attached], "attach_errors": self.attach_errors,
                "timings": self.timings, "answered": self.answered}


def netns_inode(netns: str) -> int:
    return os.stat(netns_path(netns)).st_ino


def _ifindex(netns: str, dev: str) -> int | None:
    from ..probes.libbpf import ifindex_in
    try:
        return ifindex_in(netns, dev)
    except PodpathError:
        return None


def run_session(req: SessionRequest, progress: Progress | None = None,
                on_result: Callable[[SessionResult], None] | None = None) -> SessionResult:
    """on_result (optional) is called with the result as soon as the stop condition is met, before
    the probes and the injector are closed (the close, ~0.3 s, is then not on the verdict's path);
    everything is still closed before this function returns."""
    from ..probes import Filter, Probes

    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    ir = req.inject
    src_ns = req.src_netns or ir.netns
    src_ino = netns_inode(src_ns)
    dst_ino = netns_inode(req.dst_netns) if req.dst_netns else None
    src_ifindex = _ifindex(src_ns, req.src_dev)

    with Injector(ir) as inj:
        res = inj.prepare()
        if res.error:  # cannot even open a socket in the pod
            return SessionResult(inject=res, timings={"total_ms": (time.perf_counter() - t0) * 1000})
        flt = Filter(saddr=ir.src, daddr=ir.dst, proto=ir.proto,
                     sport=res.sport if ir.proto in ("tcp", "udp") else None,
                     dport=ir.dport if ir.proto in ("tcp", "udp") else None,
                     icmp_id=ir.icmp_id if ir.proto == "icmp" else None, bidir=True)
        say(f"loading probes ({len(req.attach)} devices)…")
        out = SessionResult(inject=res)
        with Probes(flt, tracepoints=req.tracepoints) as p:
            timings["load_ms"] = (time.perf_counter() - t0) * 1000
            _attach_all(p, req.attach, out)
            if req.tracepoints:
                p.attach_tracepoints()
            timings["attach_ms"] = (time.perf_counter() - t0) * 1000 - timings["load_ms"]
            say(f"probes on {len(out.attached)} devices; sending {ir.count} {ir.proto} packet(s)…")
            t_send = time.perf_counter()
            inj.send()
            timings["send_ms"] = (time.perf_counter() - t_send) * 1000
            if res.error:
                p.poll(30)  # an OUTPUT drop still leaves a kfree_skb with its reason
                for _ in range(3):
                    if not p.poll(10):
                        break
            else:
                say(f"waiting up to {req.timeout:g}s for the answer…")
                out.answered = _wait(p, req, res, src_ino, src_ifindex, dst_ino)
            inj.check_answer()
            out.events = list(p.events)
            out.lost = p.lost()
            timings.update({f"probes_{k}": v for k, v in p.timings.items()})
            timings["wait_ms"] = (time.perf_counter() - t_send) * 1000
            timings["result_ms"] = (time.perf_counter() - t0) * 1000  # stop condition met
            out.timings = dict(timings)
            if on_result is not None:
                on_result(out)
            t_close = time.perf_counter()
        timings["close_ms"] = (time.perf_counter() - t_close) * 1000
    timings["total_ms"] = (time.perf_counter() - t0) * 1000
    out.timings = timings
    return out


def _attach_all(p, attach: list[tuple[str, str]], out: SessionResult) -> None:
    """tc on every device, one thread per namespace (each attach enters its namespace itself)."""
    by_ns: dict[str, list[str]] = {}
    for ns, dev in attach:
        if dev not in by_ns.setdefault(ns, []):
            by_ns[ns].append(dev)
    lock = threading.Lock()

    def one_ns(ns: str) -> None:
        for dev in by_ns[ns]:
            try:
                p.attach_tc(ns, dev)
                with lock:
                    out.attached.append((ns, dev))
            except NodeError as e:
                with lock:
                    out.attach_errors.append(str(e))

    if not by_ns:
        return
    with ThreadPoolExecutor(max_workers=min(8, len(by_ns)), thread_name_prefix="podpath-attach") as ex:
        list(ex.map(one_ns, by_ns))


def _wait(p, req: SessionRequest, res: InjectResult, src_ino: int, src_ifindex: int | None,
          dst_ino: int | None) -> bool:
    """Poll until the answer is back at the source, a drop was seen, or the timeout passes."""
    deadline = time.monotonic() + req.timeout
    grace_until = None
    answered = False
    while True:
        now = time.monotonic()
        if now >= deadline or (grace_until is not None and now >= grace_until):
            break
        p.poll(int(max(1, min(50, ((grace_until or deadline) - now) * 1000))))
        evs = p.events
        if any(_is_answer(e, src_ino, src_ifindex) for e in evs):
            answered = True
            break
        if grace_until is None:
            if any(e.kind == "kfree_skb" for e in evs):
                grace_until = time.monotonic() + 0.03  # let the ring buffer drain
            elif req.inject.proto == "udp" and dst_ino is not None and any(
                    e.kind == "tc" and e.point == "ingress" and e.netns == dst_ino and "reply" not in e.flags
                    for e in evs):
                grace_until = time.monotonic() + 0.1  # arrived; a reply is optional for udp
    for _ in range(5):  # drain what is left
        if not p.poll(0):
            break
    return answered


def _is_answer(e, src_ino: int, src_ifindex: int | None) -> bool:
    return (e.kind == "tc" and e.point == "ingress" and "reply" in e.flags and e.netns == src_ino
            and (src_ifindex is None or e.ifindex == src_ifindex))
