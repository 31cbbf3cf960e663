"""eBPF probes: load podpath's BPF objects with one filter, attach them, read one event stream.

    from podpath.tracer.probes import Probes, Filter
    with Probes(Filter(saddr="10.244.0.2", daddr="10.244.1.3", proto="icmp", icmp_id=4242, bidir=True)) as p:
        p.attach_tc("pp-node1", "cni0")          # tcx ingress+egress, in that namespace
        p.attach_tracepoints()                   # kfree_skb, consume_skb, netif_receive_skb, xmit
        ... send the test packets ...
        events = p.poll(timeout_ms=200)          # list[Event]
        p.lost()                                 # ring buffer reservations that failed

Pooled links linger (a `podpath agent`): a set given back keeps its tcx, tracepoint and netfilter
links attached behind its closed gate (every program returns at once while pp_gate is 0), and the
next trace that takes it reuses each one on a device, namespace, hook or tracepoint it needs (an
attach or detach waits out an RCU grace period holding RTNL: a snapshot taken meanwhile waits for
it). Links the new trace does not need are detached when it closes, after its result; a set idle
for LINGER_S detaches them all, so an idle agent holds no link.

tc.bpf.o is loaded first; trace.bpf.o reuses its maps (one ring buffer, one tracked-skb table, one
loss counter). Every attachment is a link fd owned by this process (tcx, tp_btf, netfilter), so the
kernel detaches everything if the process dies; the clsact fallback (kernels without tcx) is the
one exception and is swept by `sweep_clsact`.

The filter is a global of the objects, in one of two builds of the same source (bpf/maps.bpf.h):
a trace that loads its own probes loads tc.bpf.o/trace.bpf.o with it in .rodata, a constant the
verifier prunes on (a cheaper load); a `podpath agent` keeps sets of tc.agent.bpf.o/
trace.agent.bpf.o loaded, with it in .data, and writes each trace's filter into one (ProbePool:
Probes(flt, pool=...) takes a set, writes the filter, clears the last trace's leftovers; close()
detaches and gives it back). A Filter in, Events out, either way.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

from ..errors import NodeError
from . import libbpf
from .events import Event, EventError, Filter, Kallsyms, KernelNames, Kind, Limit, RawConfig, RawEvent, decode
from .libbpf import BPF_NETFILTER, BPF_PROG_TYPE_NETFILTER, ClsactFilter, Link

__all__ = ["Probes", "ProbeSet", "ProbePool", "LINGER_S", "Filter", "NF_BRACKETS", "NF_HOOKS", "TRACEPOINTS", "Event", "EventError", "RawEvent", "RawConfig", "decode", "Kallsyms",
           "bpf_dir", "object_path", "PROGRAM_NAMES", "loaded_podpath_programs", "sweep_clsact"]

SHARED_MAPS = ("pp_events", "pp_tracked", "pp_ntracked", "pp_lost", "pp_last_ours")
TC_PROGRAMS = {"ingress": "pp_tc_ingress", "egress": "pp_tc_egress"}
TRACEPOINTS = ("pp_kfree_skb", "pp_consume_skb", "pp_netif_rcv", "pp_xmit", "pp_fib",
               "pp_neigh_create", "pp_neigh_update", "pp_neigh_timer", "pp_neigh_dead")
NF_PROGRAMS = tuple(f"pp_nf_{i}" for i in range(Limit.NF_BRACKETS))  # one per bracket; follow tracked skbs
NF_MATCH_PROGRAM = "pp_nf_m0"  # bracket 0 that also matches the filter (where test packets are created)
from ..hooks import NF_HOOKS  # noqa: E402 - one home for hook names
NF_PRI_FIRST, NF_PRI_LAST = -(2 ** 31), 2 ** 31 - 1  # the kernel refuses links at exactly these
# Where the brackets sit: the start of the hook, just before each iptables table (raw -300,
# mangle -150, nat/DNAT -100, filter 0, security 50, nat/SNAT 100), and the end. A packet that
# passed bracket i but not i+1 was taken by what sits between their priorities.
NF_BRACKETS = (NF_PRI_FIRST + 1, -301, -151, -101, -1, 49, 99, NF_PRI_LAST - 1)
_KIND_OFFSET = RawEvent.kind.offset
_KIND_KFREE = Kind.KFREE_SKB.value
PROGRAM_NAMES = tuple(TC_PROGRAMS.values()) + TRACEPOINTS + NF_PROGRAMS + (NF_MATCH_PROGRAM,)
GATE_OPEN, GATE_CLOSED = (1).to_bytes(4, "little"), bytes(4)  # pp_gate in .data
# How long an idle pooled set keeps its links (gated) for the next trace to reuse: long enough for
# an operator's traces in a row, short enough that an agent left alone soon holds no link at all.
LINGER_S = 30.0
LINGER_ENV = "PODPATH_LINGER_S"  # overrides LINGER_S (tests: about a second)
# Which links linger: tc (tcx: its attach and detach hold RTNL, which the agent's snapshot needs),
# tp (tracepoints), nf (netfilter brackets). Gated, each still costs traffic a call per packet where
# it sits, and tracepoints sit on every skb of the node (kfree_skb, consume_skb): only tcx links,
# on the path's devices, are worth it; tracepoint and netfilter links attach in microseconds without
# RTNL. PODPATH_LINGER_KINDS (e.g. "tc,tp,nf") overrides it to compare (bench/bench_agent.py).
LINGER_KINDS, LINGER_KINDS_ENV = "tc", "PODPATH_LINGER_KINDS"
# How long take() waits for a set on its way back (its session detaching the links it did not keep)
# whose links fit better: that detaching takes 10-100 ms, more on a busy node; attaching the links
# anew on another set would take as long, and leave both sets' links attached.
RETURN_WAIT_S = 1.0


_kept_names: KernelNames | None = None  # a long-running agent's: drop reasons and kallsyms read once


def keep_kernel_names() -> None:
    """Read drop reason names (BTF) and kernel symbols once for every later Probes of this process
    (`podpath agent`), instead of once per trace."""
    global _kept_names
    if _kept_names is None:
        _kept_names = KernelNames()


def bpf_dir() -> Path:
    """Where the built objects are: $PODPATH_BPF_DIR, else the podpath.bpf package folder."""
    env = os.environ.get("PODPATH_BPF_DIR")
    if env:
        return Path(env)
    import podpath.bpf
    return Path(podpath.bpf.__file__).parent


def object_path(name: str) -> str:
    p = bpf_dir() / f"{name}.bpf.o"
    if not p.exists():
        raise NodeError(f"BPF object {p} not built: run `make -C bpf`")
    return str(p)


def _netns_ino(netns: str | None) -> int:
    from ..netns import OWN_NETNS, inode
    ino = inode(netns or OWN_NETNS)
    if ino is None:
        raise NodeError(f"network namespace '{netns}' does not exist; list them with `ip netns list`")
    return ino


def _netns_cookie() -> int:
    """The calling thread's network namespace's cookie (SO_NETNS_COOKIE): unlike its inode number,
    never reused by a later namespace, so a lingering link is reused only in its own namespace."""
    import socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            return int.from_bytes(s.getsockopt(socket.SOL_SOCKET, 71, 8), "little")  # SO_NETNS_COOKIE (5.14)
        except OSError:
            return -os.stat("/proc/thread-self/ns/net").st_ino  # older kernels: the inode, negated


def _all_or_none(makers) -> list:
    """Call each attach in turn; if one fails, close the ones already made (no half-attached state)."""
    made = []
    try:
        for make in makers:
            made.append(make())
    except BaseException:
        for link in made:
            link.close()
        raise
    return made


def loaded_podpath_programs() -> list[tuple[int, str]]:
    """podpath's programs loaded anywhere on the machine (between traces: only agents' idle sets)."""
    names = {n[:15] for n in PROGRAM_NAMES}
    return [(i, n) for i, n in libbpf.loaded_programs() if n in names]


def sweep_clsact(netns: str | None, ifnames) -> int:
    """Remove podpath's legacy clsact filters from devices in a namespace; how many were removed."""
    def body():
        import socket
        n = 0
        for ifname in ifnames:
            try:
                n += ClsactFilter.sweep(socket.if_nametoindex(ifname))
            except OSError:
                continue
        return n
    return libbpf.in_netns_thread(body, netns)


class ProbeSet:
    """podpath's two objects loaded, with their shared maps and one ring buffer reader: no links.

    ProbeSet(flt): `podpath trace` loads one per trace, the one-shot objects with the flow's filter
    as a load-time constant (.rodata). ProbeSet(): an agent keeps some loaded (ProbePool), the
    agent objects, and writes each trace's filter into their .data (use()). Records go to `sink`
    (a Probes' reader), or nowhere while the set is idle."""

    def __init__(self, flt: Filter | None = None, *, tracepoints: bool = True, netfilter: bool = True) -> None:
        self.objs: list[libbpf.BpfObject] = []
        self.sink = None  # sink(bytes) for each ring buffer record; None: dropped
        self.timings: dict[str, float] = {}
        # links kept attached (gate closed) between pooled traces: key -> Held (keys: Probes.attach_*)
        self.held: dict[tuple, Held] = {}
        self.idle_since = 0.0  # time.monotonic() when last given back
        self._rb = None
        self._trace_obj: libbpf.BpfObject | None = None
        self._trace_err: BaseException | None = None
        self._trace_thread: threading.Thread | None = None
        # no filter yet: the agent variant, whose filter use() writes; else the constant one
        self.writable = flt is None
        variant = ".agent" if self.writable else ""
        try:
            cfg = {"pp_cfg": flt.to_bytes()} if flt is not None else None
            self.tc = libbpf.BpfObject(object_path("tc" + variant), rodata=cfg)
            self.objs.append(self.tc)
            if tracepoints or netfilter:
                # The trace object (tracepoints, netfilter brackets: most of the verifier's work)
                # loads in the background, while tc links attach: each tcx attach waits for an
                # RCU grace period in the kernel, so the two overlap almost entirely.
                shared = {m: self.tc.map_fd(m) for m in SHARED_MAPS}
                nf = list(NF_PROGRAMS) + [NF_MATCH_PROGRAM]
                load = (list(TRACEPOINTS) if tracepoints else []) + (nf if netfilter else [])

                def load_trace():
                    t = time.perf_counter()
                    try:
                        self._trace_obj = libbpf.BpfObject(
                            object_path("trace" + variant), rodata=cfg, reuse_maps=shared, autoload=load,
                            prog_types={n: (BPF_PROG_TYPE_NETFILTER, BPF_NETFILTER) for n in nf})
                    except BaseException as e:  # raised where the object is first needed
                        self._trace_err = e
                    self.timings["load_trace_ms"] = (time.perf_counter() - t) * 1000

                self._trace_thread = threading.Thread(target=load_trace, name="podpath-load", daemon=True)
                self._trace_thread.start()
            self._rb = libbpf.RingBuffer(self.tc.map_fd("pp_events"), self._on_record)
        except BaseException:
            self.close()
            raise

    def _on_record(self, data: bytes) -> None:
        if self.sink is not None:
            self.sink(data)

    @property
    def trace(self) -> libbpf.BpfObject | None:
        """The tracepoint/netfilter object, once its background load is done (None: not loaded)."""
        self._join_trace()
        if self._trace_err is not None:
            err, self._trace_err = self._trace_err, None
            raise err
        return self._trace_obj

    def _join_trace(self) -> None:
        if self._trace_thread is not None:
            self._trace_thread.join()
            self._trace_thread = None
            if self._trace_obj is not None:
                self.objs.append(self._trace_obj)

    def use(self, flt: Filter) -> None:
        """Ready the loaded set for a new trace (its lingering links gated): the filter written into
        both objects, and nothing left of the last trace (its unread records, tracked skbs,
        counters)."""
        if not self.writable:
            raise ValueError("this probe set was loaded with its filter as a constant: load it without one to reuse it")
        cfg = {"pp_cfg": flt.to_bytes()}
        for o in (self.tc, self.trace):
            if o is not None:
                o.write_data(cfg)
        self.reset()

    def set_gate(self, open_: bool) -> None:
        """Open or close the gate every program checks first (both objects' .data). A set loads
        open (harmless: it has no link yet); one given back to a pool is closed while its links
        linger, so use() writes the next filter behind it."""
        for o in (self.tc, self.trace):
            if o is not None:
                o.write_data({"pp_gate": GATE_OPEN if open_ else GATE_CLOSED})

    def gate(self) -> bool:
        return self.tc.read_data("pp_gate") != GATE_CLOSED

    def release(self) -> list:
        """Take away every lingering link (for the caller to close)."""
        held, self.held = self.held, {}
        return [h.link for h in held.values()]

    def reusable(self, likely) -> tuple[int, int]:
        """How well this set's lingering links fit a trace on these (netns, device) pairs: the
        devices it already has links on, then how many links it has."""
        want = set(likely)
        return sum(1 for h in self.held.values() if h.where in want), len(self.held)

    def reset(self) -> None:
        """Drop unread records and clear the per-trace maps (the maps every object shares)."""
        sink, self.sink = self.sink, None
        try:
            self._rb.consume()
        finally:
            self.sink = sink
        _clear_hash(self.tc.map_fd("pp_tracked"))
        for name in ("pp_ntracked", "pp_lost", "pp_last_ours"):
            _zero_array(self.tc.map_fd(name), per_cpu=name != "pp_ntracked")

    def program_ids(self) -> dict[str, int]:
        """name -> kernel id of every program loaded (tests: the same ids trace after trace)."""
        out = {}
        for o in self.objs:
            for name, prog in o._programs():
                fd = libbpf.lib().bpf_program__fd(prog)
                if fd >= 0:
                    out[name] = libbpf.prog_id(fd)
        return out

    def close(self) -> None:
        self._join_trace()  # never leave a loader behind that would create an object after close
        close_links(self.release())
        if self._rb is not None:
            self._rb.close()
            self._rb = None
        for o in reversed(self.objs):
            o.close()
        self.objs.clear()


def _possible_cpus() -> int:
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            spec = f.read().strip()
        return max(int(p.split("-")[-1]) for p in spec.split(",")) + 1
    except (OSError, ValueError):
        return os.cpu_count() or 1


def _zero_array(fd: int, *, per_cpu: bool) -> None:
    """Entry 0 of a (per-CPU) array of u64 back to zero."""
    import ctypes
    vals = (ctypes.c_uint64 * (_possible_cpus() if per_cpu else 1))()
    key = ctypes.c_uint32(0)
    r = libbpf.lib().bpf_map_update_elem(fd, ctypes.byref(key), vals, 0)
    if r < 0:
        raise NodeError(f"cannot reset a probe map: {os.strerror(-r)}")


def _clear_hash(fd: int) -> None:
    """Delete every entry of a hash map keyed by u64 (pp_tracked: a few, or at most its size)."""
    import ctypes
    import errno
    lb = libbpf.lib()
    key = ctypes.c_uint64()
    while lb.bpf_map_get_next_key(fd, None, ctypes.byref(key)) == 0:
        r = lb.bpf_map_delete_elem(fd, ctypes.byref(key))
        if r < 0 and r != -errno.ENOENT:  # ENOENT: gone meanwhile (LRU eviction), the next one
            raise NodeError(f"cannot reset a probe map: {os.strerror(-r)}")


class Held:
    """A link a pooled set keeps between traces. where: (netns, device) of a tc link (a trace's
    likely devices pick the set); prio: the priority a netfilter link got (its bracket's events map
    back to it)."""
    __slots__ = ("link", "where", "prio")

    def __init__(self, link, where=None, prio=None) -> None:
        self.link, self.where, self.prio = link, where, prio


class ProbePool:
    """Loaded ProbeSets an agent keeps between traces. take() gives a set to one session (a loaded
    one, or a new one when all are taken: two coordinators at once); give() takes it back, its gate
    closed and its links lingering. At most `keep` idle sets stay loaded; a set idle for linger_s
    seconds detaches its links (a thread here), so an idle agent soon holds none.

    An agent answers before it closes the session, so back-to-back traces may overlap: take() then
    waits (at most RETURN_WAIT_S) for a set on its way back whose links fit the trace better than
    any idle one's, rather than attach them all again on another set (or load one); otherwise it
    picks the idle set whose links fit the trace best."""

    def __init__(self, keep: int = 2, linger_s: float | None = None) -> None:
        self.keep = keep
        if linger_s is None:
            linger_s = float(os.environ.get(LINGER_ENV) or LINGER_S)
        self.linger_s = linger_s
        self.loads = 0  # sets loaded since start (a warm agent: 1, or 2 with concurrent traces)
        self._idle: list[ProbeSet] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the reaper waits on it
        self._returning: list[ProbeSet] = []  # sets a session is closing, on their way back
        self._returned = threading.Condition(self._lock)  # take() waits on it for one of them
        self._closing = False
        self._reaper: threading.Thread | None = None
        self._preload: threading.Thread | None = None

    def preload(self) -> None:
        """Load one set in the background (an agent at start), so the first trace does not wait."""
        def run():
            s = None
            try:
                s = self._load()
                s.trace  # noqa: B018 - wait for the trace object too (raises if it failed)
                self.give(s)
            except BaseException:  # noqa: BLE001 - the first take() loads again and says why
                if s is not None:
                    s.close()
        self._preload = threading.Thread(target=run, name="podpath-preload", daemon=True)
        self._preload.start()

    def _load(self) -> ProbeSet:
        s = ProbeSet()
        with self._lock:
            self.loads += 1
        return s

    def take(self, likely=()) -> ProbeSet:
        """An idle set (the one whose lingering links fit `likely`, (netns, device) pairs, best),
        else a newly loaded one."""
        t = self._preload
        if t is not None:
            t.join()
            self._preload = None
        end = time.monotonic() + RETURN_WAIT_S
        with self._lock:
            while True:
                best = max(self._idle, key=lambda s: s.reusable(likely), default=None)
                fit = best.reusable(likely)[0] if best is not None else -1  # devices it has links on
                left = end - time.monotonic()
                if left <= 0 or not any(r.reusable(likely)[0] > fit for r in self._returning):
                    break
                self._returned.wait(left)
            if best is not None:
                self._idle.remove(best)
                return best
        return self._load()

    @contextmanager
    def returning(self, s: ProbeSet):
        """A session is closing `s` (its links detaching) and will give it back or close it within
        the block: a take() meanwhile may wait for it."""
        with self._lock:
            self._returning.append(s)
        try:
            yield
        finally:
            with self._lock:
                self._returning.remove(s)
                self._returned.notify_all()

    def give(self, s: ProbeSet) -> None:
        """Back to the pool, its gate closed (the caller's), links lingering."""
        s.sink = None
        try:
            s.reset()  # the last trace's leftovers go now, off the next trace's path
        except Exception:  # noqa: BLE001 - a set that cannot be reset is not reused
            s.close()
            return
        with self._lock:
            if len(self._idle) < self.keep and not self._closing:
                s.idle_since = time.monotonic()
                self._idle.append(s)
                if s.held:
                    self._start_reaper()
                    self._wake.notify()
                return
        s.close()

    def _start_reaper(self) -> None:  # under self._lock
        if self._reaper is None:
            self._reaper = threading.Thread(target=self._reap, name="podpath-linger", daemon=True)
            self._reaper.start()

    def _reap(self) -> None:
        """Detach the links of sets idle for linger_s (their programs stay loaded)."""
        while True:
            with self._lock:
                if self._closing:
                    return
                now, due, wait = time.monotonic(), [], None
                for s in self._idle:
                    if s.held:
                        left = s.idle_since + self.linger_s - now
                        if left <= 0:
                            due += s.release()
                        else:
                            wait = left if wait is None else min(wait, left)
                if not due:
                    self._wake.wait(wait)
                    continue
            close_links(due)  # errors: nothing to do but let the fds go

    def idle(self) -> int:
        with self._lock:
            return len(self._idle)

    def held_links(self) -> int:
        """Links the idle sets keep attached (gated)."""
        with self._lock:
            return sum(len(s.held) for s in self._idle)

    def close(self) -> None:
        if self._preload is not None:
            self._preload.join()
            self._preload = None
        with self._lock:
            self._closing = True
            self._wake.notify_all()
            sets, self._idle = self._idle, []
        for s in sets:
            s.close()


class Probes:
    """One trace's probes: a loaded ProbeSet with its filter, the links, and the events read.

    Without a pool the set is loaded for this trace (the filter set before load) and unloaded on
    close; with one (an agent) it is taken from the pool, the filter written into it, its lingering
    links reused where this trace needs them, and given back on close, gate closed, with this
    trace's links lingering (the ones it did not need detached). likely: the (netns, device) pairs
    the trace will probably attach (picks the pooled set whose links fit best)."""

    def __init__(self, flt: Filter, *, tracepoints: bool = True, netfilter: bool = False,
                 pool: ProbePool | None = None, likely=()) -> None:
        self.filter = flt
        self.links: list[Link | ClsactFilter] = []
        self.reused = 0  # links a pooled set had lingering that this trace took over
        self._held: dict[int, tuple[tuple, Held]] = {}  # id(link) -> its key and Held: may linger
        self.events: list[Event] = []
        self.keep = None  # keep(event) -> bool: events to keep (an agent: its own node's namespaces)
        self.timings: dict[str, float] = {}
        self._pool = pool
        self._set: ProbeSet | None = None
        self._names = _kept_names or KernelNames()
        self._since_ns = 0  # records older than this are a previous trace's (a pooled set)
        from .cleanup import RunLock
        self._lock = RunLock()  # alone: no other podpath runs, so any podpath clsact filter is a leftover
        # (netns inode, hook number) -> the priority each bracket's link was attached at
        self.nf_priorities: dict[tuple[int, int], list[int]] = {}
        t0 = time.perf_counter()
        try:
            if pool is not None:
                self._set = pool.take(likely)
                self._set.use(flt)
                self._since_ns = time.monotonic_ns()  # bpf_ktime_get_ns is CLOCK_MONOTONIC
                self._set.set_gate(True)
            else:
                self._set = ProbeSet(flt, tracepoints=tracepoints, netfilter=netfilter)
            self.tc = self._set.tc
            self._set.sink = self._on_record
        except BaseException:
            s, self._set = self._set, None
            if s is not None:
                s.close()  # half-loaded or not writable: never back to the pool
            self.close()
            raise
        self.timings["load_ms"] = (time.perf_counter() - t0) * 1000

    @property
    def trace(self) -> libbpf.BpfObject | None:
        """The tracepoint/netfilter object, once its background load is done (None: not loaded)."""
        t = self._set.trace
        if self._pool is None:  # a pooled set's load was another trace's (or the agent's start)
            self.timings.update(self._set.timings)
        return t

    # -- attach ---------------------------------------------------------------------------------

    def attach_tc(self, netns: str | None, ifname: str, directions=("ingress", "egress"),
                  mode: str = "auto") -> list:
        """tc programs on a device inside netns (a /run/netns name, a path, or None = ours).
        mode: tcx, clsact, or auto (tcx, then clsact if the kernel has no tcx)."""
        t0 = time.perf_counter()

        def body():
            import socket
            try:
                ifindex = socket.if_nametoindex(ifname)
            except OSError:
                raise NodeError(f"no device {ifname} in network namespace {netns or '(current)'}") from None
            what = f"{netns or '-'}/{ifname}"
            ns_id = _netns_cookie() if self._pool is not None else None

            def one(d):
                if ns_id is not None:
                    key = ("tc", ns_id, ifindex, d)  # the cookie: never another namespace's device
                    held = self._claim(key)
                    if held is not None:
                        return held.link
                fd = self.tc.program_fd(TC_PROGRAMS[d])
                if mode in ("tcx", "auto"):
                    try:
                        link = libbpf.attach_tcx(fd, ifindex, d, what)
                        if ns_id is not None:  # a clsact filter never lingers: no fd would own it
                            self._hold(link, key, Held(link, where=(netns, ifname)))
                        return link
                    except NodeError:
                        if mode == "tcx":
                            raise
                if self._lock.alone:  # a killed run's filter would block ours: sweep it first
                    ClsactFilter.sweep(ifindex, [d])
                return ClsactFilter(fd, ifindex, d, what)

            return _all_or_none(lambda d=d: one(d) for d in directions)

        made = libbpf.in_netns_thread(body, netns)
        self.links.extend(made)
        self.timings["attach_tc_ms"] = self.timings.get("attach_tc_ms", 0) + (time.perf_counter() - t0) * 1000
        return made

    def attach_tracepoints(self, names=TRACEPOINTS) -> list[Link]:
        if self.trace is None:
            raise NodeError("probes were loaded without tracepoints")
        t0 = time.perf_counter()
        made = []
        for n in names:
            held = self._claim(("tp", n)) if self._pool is not None else None
            link = held.link if held is not None else None
            if link is None:
                link = self.trace.attach(n)
                if self._pool is not None:
                    self._hold(link, ("tp", n), Held(link))
            made.append(link)
        self.links.extend(made)
        self.timings["attach_tp_ms"] = (time.perf_counter() - t0) * 1000
        return made

    def attach_netfilter(self, netns: str | None, brackets: dict[str, list[int]] | None = None, *,
                         match: bool = False, hooks=NF_HOOKS) -> list[Link]:
        """BPF netfilter links (IPv4) in a namespace: pp_nf_<i> at the i-th priority of each hook's
        brackets (default NF_BRACKETS at every hook; see tracer/trace/plan.nf_brackets for the ones
        fitted to a snapshot's tables). match: bracket 0 matches the filter itself (the namespaces
        where test packets are created); elsewhere the links follow skbs a tc probe tracked.

        A priority already held by another trace's link is moved by up to 15, away from the table
        it precedes (the gaps between tables are wider); events map back to the priority used."""
        if self.trace is None:
            raise NodeError("probes were loaded without the netfilter programs")
        plan = brackets if brackets is not None else {h: list(NF_BRACKETS) for h in hooks}
        ino = _netns_ino(netns)
        t0 = time.perf_counter()

        def one(hook: str, i: int, prios: list[int], ns_id):
            # only OUTPUT creates packets; at every other hook the skb is already tracked
            name = NF_MATCH_PROGRAM if (match and i == 0 and hook == "output") else NF_PROGRAMS[i]
            used = self.nf_priorities.setdefault((ino, libbpf.NF_HOOKS[hook]), [None] * len(prios))
            key = ("nf", ns_id, hook, name, i, prios[i])
            held = self._claim(key) if ns_id is not None else None
            if held is not None:
                used[i] = held.prio  # where it was attached: its events map back to it
                return held.link
            fd = self.trace.program_fd(name)
            step = 1 if prios[i] <= NF_PRI_FIRST + 1 else -1
            for k in range(16):
                prio = prios[i] + step * k
                try:
                    link = libbpf.attach_netfilter(fd, hook, prio)
                except libbpf.PriorityTaken:
                    continue
                used[i] = prio
                if ns_id is not None:
                    self._hold(link, key, Held(link, prio=prio))
                return link
            raise NodeError(f"netfilter {hook}: priorities {prios[i]}..{prio} all held by other BPF links; "
                            "too many traces at once in this namespace?")

        for hook, prios in plan.items():
            if not 1 <= len(prios) <= len(NF_PROGRAMS) or prios != sorted(prios):
                raise ValueError(f"netfilter brackets for {hook} must be 1..{len(NF_PROGRAMS)} rising priorities")

        def body():
            ns_id = _netns_cookie() if self._pool is not None else None
            return _all_or_none(lambda h=h, i=i, ps=ps: one(h, i, ps, ns_id)
                                for h, ps in plan.items() for i in range(len(ps)))

        made = libbpf.in_netns_thread(body, netns)
        self.links.extend(made)
        self.timings["attach_nf_ms"] = self.timings.get("attach_nf_ms", 0) + (time.perf_counter() - t0) * 1000
        return made

    def _claim(self, key: tuple) -> Held | None:
        """The link the pooled set has lingering under key, now this trace's (None: attach one)."""
        held = self._set.held.pop(key, None)
        if held is None:
            return None
        self._held[id(held.link)] = (key, held)
        self.reused += 1
        self.timings["reused_links"] = self.reused
        return held

    def _hold(self, link, key: tuple, held: Held) -> None:
        self._held[id(link)] = (key, held)

    # -- events ---------------------------------------------------------------------------------

    def _on_record(self, data: bytes) -> None:
        if self._since_ns and int.from_bytes(data[:8], "little") < self._since_ns:
            return  # a previous trace's program run that ended as its links went
        kfree = len(data) > _KIND_OFFSET and data[_KIND_OFFSET] == _KIND_KFREE
        reasons = self._names.reasons() if kfree else None
        ev = decode(data, drop_reasons=reasons, symbolize=self._names.symbolize)
        if ev.kind == "netfilter":  # the program only knows its bracket; we know its priority
            i = ev.extra["bracket"] = ev.nf_prio
            prios = self.nf_priorities.get((ev.netns, libbpf.NF_HOOKS.get(ev.point, -1)))
            if prios and 0 <= i < len(prios):
                ev.nf_prio = prios[i]
                ev.extra["last"] = i == len(prios) - 1  # the end of the hook: the packet left it
                ev.extra["next_prio"] = prios[i + 1] if i + 1 < len(prios) else None
        if self.keep is None or self.keep(ev):
            self.events.append(ev)

    def poll(self, timeout_ms: int = 100) -> list[Event]:
        """Read what the ring buffer holds (waiting up to timeout_ms for the first record); returns
        the new events (also kept in self.events)."""
        start = len(self.events)
        self._set._rb.poll(timeout_ms)
        self._set._rb.consume()
        return self.events[start:]

    def lost(self) -> int:
        """Events BPF could not submit (ring buffer full), summed over CPUs."""
        import ctypes
        ncpu = _possible_cpus()
        vals = (ctypes.c_uint64 * ncpu)()
        key = ctypes.c_uint32(0)
        r = libbpf.lib().bpf_map_lookup_elem(self.tc.map_fd("pp_lost"), ctypes.byref(key), vals)
        return sum(vals) if r == 0 else 0

    # -- teardown -------------------------------------------------------------------------------

    def close(self) -> None:
        """Detach every link, then unload the set; or, pooled, close the set's gate, keep this
        trace's links lingering in it, detach the ones it held that this trace did not need, and
        give it back. Safe to call twice."""
        s, self._set = self._set, None
        linger = self._pool is not None and s is not None
        if linger:
            try:
                s.set_gate(False)
            except Exception:  # noqa: BLE001 - a set whose gate will not close lingers nothing
                linger = False
        if linger:
            kinds = (os.environ.get(LINGER_KINDS_ENV) or LINGER_KINDS).split(",")
            keep = {id(l) for l in self.links if id(l) in self._held and self._held[id(l)][0][0] in kinds}
            drop = [l for l in reversed(self.links) if id(l) not in keep] + s.release()
            s.held = {key: held for key, held in (self._held[id(l)] for l in self.links if id(l) in keep)}
        else:
            drop = list(reversed(self.links)) + (s.release() if s is not None else [])
        self.links.clear()
        self._held.clear()
        with self._pool.returning(s) if linger else nullcontext():
            errors = close_links(drop)
            if s is not None:
                s.sink = None
                if linger and not errors:
                    self._pool.give(s)
                else:  # a link that would not close: its programs must not serve another trace
                    s.close()
        if getattr(self, "_lock", None) is not None:
            self._lock.close()
        if errors:
            raise errors[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


CLOSERS = 16  # links detached side by side


def close_links(links: list[Link]) -> list[Exception]:
    """Close links side by side; the errors, in links' order. Detaching a kprobe or a device's
    program waits in the kernel for an RCU grace period (10-100 ms), and closes that wait together
    share them: one after another, a trace's 84 links took 1.3 s after its verdict."""
    from concurrent.futures import ThreadPoolExecutor

    def close(link: Link) -> Exception | None:
        try:
            link.close()
        except Exception as e:  # noqa: BLE001 - keep closing the rest
            return e
        return None

    if len(links) > 1:
        try:
            with ThreadPoolExecutor(max_workers=min(CLOSERS, len(links)), thread_name_prefix="podpath-detach") as pool:
                return [e for e in pool.map(close, links) if e is not None]
        except RuntimeError:  # no new threads (the interpreter is shutting down): one after another
            pass
    return [e for e in map(close, links) if e is not None]
