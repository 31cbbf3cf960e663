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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from ..errors import NodeError, PodpathError
from ..netns import existing_inode
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
    netfilter: bool = True  # BPF netfilter links bracketing every hook in each namespace attached
    neigh_addrs: list[str] = field(default_factory=list)  # next hops whose neighbour events to watch
    nftrace: bool = False  # also the kernel's nftrace (adds a temporary nf_tables table per namespace)
    expect_reply: bool = False  # udp: wait for an answer (DNS) instead of ending when it arrives
    # netns -> {"hooks": {hook: [priorities]}, "match": bool}: the netfilter brackets (plan.nf_plan);
    # empty: the default brackets in every namespace attached, matching in the source's
    nf_plan: dict = field(default_factory=dict)
    # A node that only watches (an agent on the destination's or an endpoint's node): no socket, no
    # send; the filter is given (probes.Filter's fields), inject only describes the flow.
    watch_only: bool = False
    filter: dict | None = None

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
    nftrace: list = field(default_factory=list)  # nftrace.NftraceLine, when requested
    expect_reply: bool = False
    # Through agents: the nodes whose agent watched the whole trace, so that silence there is
    # evidence (the packet never arrived). None: one process, which sees what its kernel holds.
    observed_nodes: list[str] | None = None

    def to_dict(self) -> dict:
        d = {"inject": self.inject.to_dict(), "events": [e.to_dict() for e in self.events], "lost": self.lost,
             "attached": [list(a) for a in self.attached], "attach_errors": self.attach_errors,
             "timings": self.timings, "answered": self.answered,
             "nftrace": [x.to_dict() for x in self.nftrace], "expect_reply": self.expect_reply}
        if self.observed_nodes is not None:  # optional: one process's recordings stay as they were
            d["observed_nodes"] = self.observed_nodes
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SessionResult":
        """A recorded session back (JSON round trip): what correlate() needs, with no probe loaded."""
        from ..probes.events import Event
        from .nftrace import NftraceLine

        inj = dict(d["inject"])
        inj["send_windows"] = [tuple(w) for w in inj.get("send_windows", [])]
        return cls(inject=InjectResult(**inj), events=[Event(**e) for e in d.get("events", [])],
                   lost=d.get("lost", 0), attached=[tuple(a) for a in d.get("attached", [])],
                   attach_errors=list(d.get("attach_errors", [])), timings=dict(d.get("timings", {})),
                   answered=bool(d.get("answered")), nftrace=[NftraceLine(**x) for x in d.get("nftrace", [])],
                   expect_reply=bool(d.get("expect_reply")), observed_nodes=d.get("observed_nodes"))


def _ifindex(netns: str, dev: str) -> int | None:
    from ..probes.libbpf import ifindex_in
    try:
        return ifindex_in(netns, dev)
    except PodpathError:
        return None


class Session:
    """One session in stages, so a trace can attach while its snapshot is still being taken:

        s = Session(req, progress).open()   # socket bound, probes loaded, req.attach attached
        s.attach(more)                      # devices the snapshot added (usually none)
        result = s.run(on_result)           # send, wait for the stop condition
        s.close()                           # (also a context manager)
    """

    def __init__(self, req: SessionRequest, progress: Progress | None = None, keep=None, pool=None) -> None:
        """keep(event) -> bool: which events to keep (an agent: its own node's namespaces only).
        pool: a probes.ProbePool to take loaded probes from (an agent), else they load per session."""
        self.req = req
        self.keep = keep
        self.pool = pool
        self.stop_requested = threading.Event()  # set from another thread: end the wait now
        self.say = progress or (lambda _m: None)
        self.timings: dict[str, float] = {}
        self.result: SessionResult | None = None
        self._inj: Injector | None = None
        self._probes = None
        self._t0 = time.perf_counter()
        self._wanted = list(req.attach)  # the plan: attach errors are reported for these only
        self._failed: dict[tuple[str, str], str] = {}
        self._nf_done: set[str] = set()  # namespaces whose hooks are bracketed
        self._nftrace = None
        self.filter = None  # the probes.Filter loaded, once open

    def open(self) -> "Session":
        return self.prepare().load()

    def prepare(self) -> "Session":
        """The socket (the source port is known from here on); no probes yet."""
        req, ir = self.req, self.req.inject
        try:
            if req.watch_only:
                res = InjectResult(proto=ir.proto)
            else:
                self._inj = Injector(ir).__enter__()
                res = self._inj.prepare()
            self.result = SessionResult(inject=res, expect_reply=req.expect_reply)
        except BaseException:
            self.close()
            raise
        return self

    def load(self, likely=()) -> "Session":
        """Load the probes with the flow's filter and attach req.attach (nothing if the socket failed).
        likely: devices the trace will probably need besides req.attach (a pool's best-fitting set)."""
        from ..probes import Filter, Probes

        req, ir, res = self.req, self.req.inject, self.result.inject
        if res.error:  # cannot even open a socket in the pod: nothing to probe
            return self
        try:
            if req.filter is not None:
                f = dict(req.filter)
                f["neigh_addrs"] = tuple(f.get("neigh_addrs") or req.neigh_addrs)
                flt = Filter(**f)
            else:
                flt = Filter(saddr=ir.src, daddr=ir.dst, proto=ir.proto,
                             sport=res.sport if ir.proto in ("tcp", "udp") else None,
                             dport=ir.dport if ir.proto in ("tcp", "udp") else None,
                             icmp_id=ir.icmp_id if ir.proto == "icmp" else None, bidir=True,
                             neigh_addrs=tuple(req.neigh_addrs))
            self.filter = flt
            self.say(f"loading probes ({len(req.attach)} devices)…")
            self._probes = Probes(flt, tracepoints=req.tracepoints, netfilter=req.netfilter, pool=self.pool,
                                  likely=list(req.attach) + list(likely))
            self._probes.keep = self.keep
            self.timings["load_ms"] = (time.perf_counter() - self._t0) * 1000
            t = time.perf_counter()
            self.attach(req.attach, plan=False)  # tc first: the trace object loads meanwhile
            if req.tracepoints:
                self._probes.attach_tracepoints()
            if req.nf_plan:
                self.attach_netfilter(req.nf_plan)
            self.timings["attach_ms"] = (time.perf_counter() - t) * 1000
        except BaseException:
            self.close()
            raise
        return self

    def attach(self, devices: list[tuple[str, str]], *, plan: bool = True) -> None:
        """tc on more devices (skips what is already attached). plan: these are the devices the
        trace needs (from the snapshot); errors on a preplanned device outside it are not reported."""
        if plan:
            self._wanted = list(devices)
        if self._probes is None:
            return
        have = set(self.result.attached)
        todo = [d for d in devices if d not in have and d not in self._failed]
        if todo:
            _attach_all(self._probes, todo, self.result, self._failed)
        self.result.attach_errors = [msg for d, msg in self._failed.items() if d in self._wanted]

    def attach_netfilter(self, nf_plan: dict | None = None) -> None:
        """The netfilter brackets, per namespace (cheap: ~30 µs a link), in namespaces not done yet.
        Without a plan: the default brackets wherever tc is attached, matching in the source."""
        if self._probes is None or not self.req.netfilter:
            return
        if not nf_plan:
            src = self.req.src_netns or self.req.inject.netns
            nf_plan = {ns: {"hooks": None, "match": ns == src}
                       for ns in dict.fromkeys([src] + [ns for ns, _ in self.result.attached])}
        for ns, spec in nf_plan.items():
            if ns in self._nf_done:
                continue
            try:
                self._probes.attach_netfilter(ns, spec.get("hooks"), match=bool(spec.get("match")))
                self._nf_done.add(ns)
            except NodeError as e:
                self._failed[(ns, "netfilter")] = str(e)
                self.result.attach_errors.append(str(e))

    def run(self, on_result: Callable[[SessionResult], None] | None = None) -> SessionResult:
        """Send and wait. on_result is called as soon as the stop condition is met, with the probes
        still open (closing them takes ~0.3 s: it is then not on the verdict's path)."""
        req, out, p = self.req, self.result, self._probes
        if p is None:  # the source could not open a socket
            out.timings = {**self.timings, "result_ms": (time.perf_counter() - self._t0) * 1000}
            if on_result is not None:
                on_result(out)
            return out
        if not self._nf_done:
            self.attach_netfilter(req.nf_plan)  # no plan given: the default brackets
        ir, res = req.inject, out.inject
        src_ns = req.src_netns or ir.netns
        src_ino = existing_inode(src_ns)
        dst_ino = existing_inode(req.dst_netns) if req.dst_netns else None
        src_ifindex = _ifindex(src_ns, req.src_dev)
        if req.nftrace:
            self.start_nftrace([ns for ns, _ in out.attached] + [src_ns], ir.src, ir.dst)
        self.say(f"probes on {len(out.attached)} devices; sending {ir.count} {ir.proto} packet(s)…")
        t_send = time.perf_counter()
        self._inj.send()
        self.timings["send_ms"] = (time.perf_counter() - t_send) * 1000
        if res.error:
            p.poll(30)  # an OUTPUT drop still leaves a kfree_skb with its reason
            for _ in range(3):
                if not p.poll(10):
                    break
        else:
            self.say(f"waiting up to {req.timeout:g}s for the answer…")
            if dst_ino == src_ino:  # to itself: over lo, where no tc probe sits; the socket says it
                out.answered = _wait_socket(p, req, self._inj, self.stop_requested)
            else:
                out.answered = _wait(p, req, res, src_ino, src_ifindex, dst_ino, self.stop_requested)
        self._inj.check_answer()
        if self._nftrace is not None:
            out.nftrace = self._nftrace.result()
        out.events = list(p.events)
        out.lost = p.lost()
        self.timings.update({f"probes_{k}": v for k, v in p.timings.items()})
        self.timings["wait_ms"] = (time.perf_counter() - t_send) * 1000
        self.timings["result_ms"] = (time.perf_counter() - self._t0) * 1000  # stop condition met
        out.timings = dict(self.timings)
        if on_result is not None:
            on_result(out)
        return out

    def start_nftrace(self, namespaces: list[str], src: str, dst: str | None) -> None:
        """The kernel's nf_tables trace of this flow in these namespaces (dst None: any destination,
        a watch-only node behind a Service's DNAT); its lines go into the result."""
        from .nftrace import NfTrace

        if self._nftrace is not None or self._probes is None:
            return
        self.say(f"adding nftrace tables in {len(set(namespaces))} namespaces…")
        self._nftrace = NfTrace(namespaces, src, dst, self.req.inject.proto, sweep=self._probes._lock.alone)
        self.result.attach_errors += self._nftrace.errors

    def start_nftrace_watch(self) -> None:
        """A watch-only node's nftrace, on the namespaces attached, matching what its filter does."""
        f = self.req.filter or {}
        self.start_nftrace([ns for ns, _ in self.result.attached], f.get("saddr") or self.req.inject.src,
                           f.get("daddr") if self.req.filter is not None else self.req.inject.dst)

    def watch(self, on_events: Callable[[list], None] | None = None, poll_ms: int = 20) -> SessionResult:
        """A watch-only session: poll until stop_requested, handing each batch of new events to
        on_events (an agent streams them); then drain and return the result (probes still open)."""
        out, p = self.result, self._probes
        if p is not None:
            if not self._nf_done:
                self.attach_netfilter(self.req.nf_plan)
            while not self.stop_requested.is_set():
                new = p.poll(poll_ms)
                if new and on_events is not None:
                    on_events(new)
            for _ in range(5):
                new = p.poll(0)
                if not new:
                    break
                if on_events is not None:
                    on_events(new)
            if self._nftrace is not None:
                out.nftrace = self._nftrace.result()
            out.events = list(p.events)
            out.lost = p.lost()
            self.timings.update({f"probes_{k}": v for k, v in p.timings.items()})
        self.timings["result_ms"] = (time.perf_counter() - self._t0) * 1000
        out.timings = dict(self.timings)
        return out

    def close(self) -> None:
        t = time.perf_counter()
        try:
            if self._nftrace is not None:
                self._nftrace.close()
                if self.result is not None:
                    self.result.attach_errors += self._nftrace.errors
                self._nftrace = None
            if self._probes is not None:
                alone = self._probes._lock.alone
                self._probes.close()
                self._probes = None
                for ns in self._nf_done:  # after the verdict, off its path: a killed run's tables
                    sweep_nftrace(ns, alone=alone)
        finally:
            if self._inj is not None:
                self._inj.__exit__(None, None, None)
                self._inj = None
        self.timings["close_ms"] = (time.perf_counter() - t) * 1000
        self.timings["total_ms"] = (time.perf_counter() - self._t0) * 1000
        if self.result is not None:
            self.result.timings = dict(self.timings)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sweep_nftrace(ns: str, *, alone: bool) -> None:
    """A killed podpath's --nftrace tables go when the next trace passes through their namespace."""
    from ..probes.nftables import sweep_tables
    try:
        sweep_tables(ns, alone=alone)
    except Exception:  # noqa: BLE001 - no nf_tables here, or nft missing: nothing of ours to find
        pass


def run_session(req: SessionRequest, progress: Progress | None = None,
                on_result: Callable[[SessionResult], None] | None = None) -> SessionResult:
    """The whole session in one call (what a per-node agent runs): open, run, close."""
    with Session(req, progress) as s:
        s.open()
        s.run(on_result)
    return s.result


def _attach_all(p, attach: list[tuple[str, str]], out: SessionResult, failed: dict) -> None:
    """tc on every device, one thread per namespace (each attach enters its namespace itself).
    failed[(netns, dev)] gets the error of each device that could not be attached."""
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
                    failed[(ns, dev)] = str(e)

    if not by_ns:
        return
    with ThreadPoolExecutor(max_workers=min(8, len(by_ns)), thread_name_prefix="podpath-attach") as ex:
        list(ex.map(one_ns, by_ns))


def _wait(p, req: SessionRequest, res: InjectResult, src_ino: int, src_ifindex: int | None,
          dst_ino: int | None, stop: threading.Event | None = None) -> bool:
    """Poll until the answer is back at the source, a drop was seen, the timeout passes, or stop is
    set (a coordinator saw the packet end on another node)."""
    deadline = time.monotonic() + req.timeout
    grace_until = None
    answered = False
    while True:
        now = time.monotonic()
        if now >= deadline or (grace_until is not None and now >= grace_until) or (stop is not None and stop.is_set()):
            break
        p.poll(int(max(1, min(50, ((grace_until or deadline) - now) * 1000))))
        evs = p.events
        if any(_is_answer(e, src_ino, src_ifindex) for e in evs):
            answered = True
            break
        if grace_until is None:
            if any(e.kind == "kfree_skb" for e in evs):
                grace_until = time.monotonic() + 0.01  # a second drop (the reply, a copy) may follow
            elif req.inject.proto == "udp" and not req.expect_reply and dst_ino is not None and any(
                    e.kind == "tc" and e.point == "ingress" and e.netns == dst_ino and "reply" not in e.flags
                    for e in evs):
                grace_until = time.monotonic() + 0.1  # arrived; a reply is optional for udp
    for _ in range(5):  # drain what is left
        if not p.poll(0):
            break
    return answered


def _wait_socket(p, req: SessionRequest, inj, stop: threading.Event | None = None) -> bool:
    """A pod to its own address: the packet never leaves the pod (lo); the answer is the socket's."""
    from .inject import FINAL_ANSWERS

    deadline = time.monotonic() + req.timeout
    while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
        p.poll(10)
        if inj.check_answer() in FINAL_ANSWERS:
            return True
    return False


def _is_answer(e, src_ino: int, src_ifindex: int | None) -> bool:
    return (e.kind == "tc" and e.point == "ingress" and "reply" in e.flags and e.netns == src_ino
            and (src_ifindex is None or e.ifindex == src_ifindex))
