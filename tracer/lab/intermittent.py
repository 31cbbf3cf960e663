"""Faults that come and go, for `podpath watch` + `podpath report` to catch in the act.

`run_intermittent(lab, name, period=, duty=, cycles=)` turns a fault on for duty*period seconds,
off for the rest, `cycles` times, always leaving it off, and returns every window with the exact
number of packets the fault dropped in it, read from a kernel counter of the lab that only that
fault moves (the ground truth a watch is checked against):

  dns-rule-flap     a DROP rule for UDP to CoreDNS in node-a's filter FORWARD, as a controller
                    fighting kube-proxy inserts and removes it; truth: the rule's own counter
  vtep-neigh-flap   node-a's permanent neighbour for node-b's VTEP (10.244.1.0 on flannel.1) flips
                    to a stale VtepMAC and back, as two flanneld instances fighting do; VXLAN finds
                    no FDB entry for that MAC (NO_TX_TARGET); truth: flannel.1's tx_dropped
  mtu-blackhole     node-b's cni0 MTU drops to 1400 while ICMP frag-needed is filtered in node-b's
                    OUTPUT: large DF packets to pod-b die (PKT_TOO_BIG), small ones pass, and the
                    sender never learns; truth: node-b's Ip FragFails (/proc/net/snmp)
  conntrack-full    node-a's conntrack table (the count is per namespace, the max is the kernel's,
                    nf_conntrack_max) fills up with assured entries, so new flows find no slot;
                    truth: node-a's conntrack `drop` statistic

Not reproduced here, because the knob is the whole machine's on this kernel (a network namespace
cannot set it, and lowering it would break every other namespace): neighbour gc_thresh3 (the ARP
table is one for all namespaces), softnet netdev_max_backlog. The conntrack insert race is a
traffic flow (`dns-parallel` in traffic.py), not a fault: it is always there, and since 5.6 the
kernel resolves the clash instead of dropping.
"""

from __future__ import annotations

import shlex
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from .topology import mac_for, node, pod

if TYPE_CHECKING:  # pragma: no cover
    from .core import Lab

A, B = node("node-a"), node("node-b")
COREDNS, POD_B = pod("coredns"), pod("pod-b")
STALE_VTEP_MAC = mac_for("vtep/node-b/flapping")  # a VtepMAC node-a has no FDB entry for
BLACKHOLE_MTU = 1400
# after a fault is off, a packet another CPU was already carrying can still die of it: the
# ground truth is read once that moment has passed
_SETTLE = 0.1


@dataclass
class Window:
    """When the fault was surely on: from the moment the command that turns it on returned to the
    moment the one that turns it off was started (a command's own latency, tens of ms on a busy
    machine, is on neither side)."""
    start: float  # time.time() once the fault is on
    end: float  # just before it goes off
    packets: int  # what the fault dropped (its ground-truth counter, read once it is off)


Hook = Callable[["Lab", dict], None]


@dataclass
class Intermittent:
    name: str
    summary: str
    node: str  # where the drops happen (the node the report should name)
    reason: str  # the kernel drop reason the dropped packets get
    cause: str  # words the report's cause for these bursts contains
    flow: str  # the lab traffic flow (tracer/lab/traffic.py) that the fault breaks
    on: Hook = field(repr=False)
    off: Callable[["Lab", dict], int] = field(repr=False)  # turns it off; returns the window's truth
    setup: Hook | None = field(default=None, repr=False)  # a standing condition, once before the cycles
    teardown: Hook | None = field(default=None, repr=False)


def _in(lab: "Lab", short: str, *argv: str) -> str:
    r = subprocess.run(["ip", "netns", "exec", lab.netns(short), *argv], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        from ..errors import NodeError
        raise NodeError(f"{' '.join(argv)} in {short}: {r.stderr.strip()}")
    return r.stdout


def _read(lab: "Lab", short: str, fn: Callable[[], int]) -> int:
    from ..netns import run_in
    return run_in(lab.netns(short), fn)


# -------------------------------------------------------------------- dns-rule-flap

_DNS_RULE = ("filter", "FORWARD", f"-d {COREDNS.ip}/32 -p udp -m udp --dport 53 -j DROP")


def _rule_on(lab: "Lab", st: dict) -> None:
    table, chain, rule = _DNS_RULE
    _in(lab, "node-a", "iptables", "-t", table, "-I", chain, "1", *shlex.split(rule))


def _rule_off(lab: "Lab", st: dict) -> int:
    # For an exact count, a gate that accepts the same packets goes in front first: from then on
    # the DROP rule sees nothing, its counter is final, and it can go.
    table, chain, rule = _DNS_RULE
    rule = shlex.split(rule)
    match = rule[:rule.index("-j")]
    _in(lab, "node-a", "iptables", "-t", table, "-I", chain, "1", *match, "-j", "ACCEPT")
    out = _in(lab, "node-a", "iptables", "-t", table, "-L", chain, "2", "-v", "-x", "-n")
    _in(lab, "node-a", "iptables", "-t", table, "-D", chain, *rule)
    _in(lab, "node-a", "iptables", "-t", table, "-D", chain, *match, "-j", "ACCEPT")
    return int(out.split()[0]) if out.strip() else 0


# -------------------------------------------------------------------- vtep-neigh-flap

def _tx_dropped(dev: str) -> Callable[[], int]:
    def read() -> int:
        with open("/proc/thread-self/net/dev") as f:  # /proc/thread-self/net follows the thread's netns
            for line in f.readlines()[2:]:
                name, rest = line.split(":", 1)
                if name.strip() == dev:
                    return int(rest.split()[11])
        raise FileNotFoundError(f"no device {dev}")
    return read


def _vtep_on(lab: "Lab", st: dict) -> None:
    st["tx0"] = _read(lab, "node-a", _tx_dropped("flannel.1"))
    _in(lab, "node-a", "ip", "neigh", "replace", B.subnet_base, "dev", "flannel.1", "lladdr", STALE_VTEP_MAC,
        "nud", "permanent")


def _vtep_off(lab: "Lab", st: dict) -> int:
    _in(lab, "node-a", "ip", "neigh", "replace", B.subnet_base, "dev", "flannel.1", "lladdr", B.vtep_mac,
        "nud", "permanent")
    time.sleep(_SETTLE)
    return _read(lab, "node-a", _tx_dropped("flannel.1")) - st["tx0"]


# -------------------------------------------------------------------- mtu-blackhole

_ICMP_FILTER = ["-p", "icmp", "--icmp-type", "fragmentation-needed", "-j", "DROP"]


def _frag_fails() -> int:
    with open("/proc/thread-self/net/snmp") as f:
        head, vals = [l.split() for l in f if l.startswith("Ip:")][:2]
    return int(vals[head.index("FragFails")])


def _icmp_filter_on(lab: "Lab", st: dict) -> None:
    _in(lab, "node-b", "iptables", "-I", "OUTPUT", "1", *_ICMP_FILTER)


def _icmp_filter_off(lab: "Lab", st: dict) -> None:
    _in(lab, "node-b", "iptables", "-D", "OUTPUT", *_ICMP_FILTER)


def _mtu_on(lab: "Lab", st: dict) -> None:
    st["ff0"] = _read(lab, "node-b", _frag_fails)
    _in(lab, "node-b", "ip", "link", "set", "cni0", "mtu", str(BLACKHOLE_MTU))


def _mtu_off(lab: "Lab", st: dict) -> int:
    from .topology import FLANNEL_MTU
    _in(lab, "node-b", "ip", "link", "set", "cni0", "mtu", str(FLANNEL_MTU))
    time.sleep(_SETTLE)
    return _read(lab, "node-b", _frag_fails) - st["ff0"]


# -------------------------------------------------------------------- conntrack-full
# Filler entries are assured (early_drop never evicts them), UDP between two addresses outside
# every lab network, marked so they can be flushed; sent as raw ctnetlink messages without
# acknowledgement (pyroute2 encodes one template, the ports are patched in: 250 k in a second).

FILLER_MARK = 0x70700000
_FILL_SRC, _FILL_DST = "10.255.254.1", "10.255.254.2"  # never routed: the entries only take slots
# free slots left between windows: more than the lab's own flows hold (a new DNS flow each query
# lives 30 s, nf_conntrack_udp_timeout: 3000 entries at 100 queries/s)
_HEADROOM = 5000


def _ct_template(delete: bool = False) -> tuple[bytes, list[tuple[int, bool]]]:
    """One ctnetlink message (a new filler entry, or its deletion), and where its ports are."""
    from pyroute2.netlink import NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST
    from pyroute2.netlink.nfnetlink.nfctsocket import (IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_NEW, NFCTAttrTuple,
                                                       nfct_msg)
    sp, dp = 0xA1B2, 0xC3D4  # sentinels whose offsets are patched
    orig = NFCTAttrTuple(saddr=_FILL_SRC, daddr=_FILL_DST, proto=17, sport=sp, dport=dp)
    if delete:
        m = nfct_msg.create_from(tuple_orig=orig)
        m["header"]["type"] = (1 << 8) | IPCTNL_MSG_CT_DELETE  # NFNL_SUBSYS_CTNETLINK
        m["header"]["flags"] = NLM_F_REQUEST
    else:
        m = nfct_msg.create_from(
            timeout=3600, status=0x2 | 0x4 | 0x8, mark=FILLER_MARK,  # SEEN_REPLY | ASSURED | CONFIRMED
            tuple_orig=orig, tuple_reply=NFCTAttrTuple(saddr=_FILL_DST, daddr=_FILL_SRC, proto=17, sport=dp, dport=sp))
        m["header"]["type"] = (1 << 8) | IPCTNL_MSG_CT_NEW
        m["header"]["flags"] = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL
    m["nfgen_family"] = socket.AF_INET
    m.encode()
    raw = bytes(m.data[:m["header"]["length"]])
    offs = []
    for needle, is_sport in ((struct.pack("!H", sp), True), (struct.pack("!H", dp), False)):
        i = raw.find(needle)
        while i >= 0:
            offs.append((i, is_sport))
            i = raw.find(needle, i + 1)
    assert len(offs) == (2 if delete else 4), offs
    return raw, offs


def _ct_count() -> int:
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTSocket
    s = NFCTSocket()
    try:
        return dict(s.count()[0]["attrs"])["CTA_STATS_GLOBAL_ENTRIES"]
    finally:
        s.close()


def _ct_max() -> int:
    with open("/proc/sys/net/netfilter/nf_conntrack_max") as f:
        return int(f.read())


def _ct_drops() -> int:
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTSocket
    s = NFCTSocket()
    try:
        return sum(dict(c["attrs"]).get("CTA_STATS_DROP", 0) for c in s.stat())
    finally:
        s.close()


def _ct_send(first: int, n: int, *, delete: bool = False) -> Callable[[], int]:
    """n filler entries numbered from `first` (ports 1024..65023 x 1..) added or deleted, in this
    namespace, unacknowledged (a refused one, table full or already gone, is simply not there)."""
    def body() -> int:
        raw, offs = _ct_template(delete)
        buf = bytearray(raw)
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
        try:
            s.bind((0, 0))
            for i in range(first, first + n):
                sport, dport = 1024 + i % 64000, 1 + i // 64000
                for off, is_sport in offs:
                    struct.pack_into("!H", buf, off, sport if is_sport else dport)
                s.send(buf)
        finally:
            s.close()
        return n
    return body


def _ct_setup(lab: "Lab", st: dict) -> None:
    """Fill node-a's table but for _HEADROOM slots (once: it takes a few seconds)."""
    free = _read(lab, "node-a", _ct_max) - _read(lab, "node-a", _ct_count)
    st["filled"] = _read(lab, "node-a", _ct_send(0, max(0, free - _HEADROOM)))


def _ct_top_up(lab: "Lab", st: dict) -> None:
    """Take every free slot, and keep taking the ones the lab's expiring flows free, until off."""
    while True:
        free = _read(lab, "node-a", _ct_max) - _read(lab, "node-a", _ct_count)
        if free > 0:
            _read(lab, "node-a", _ct_send(st["next"], free + 8))  # a few over: the excess is refused
            st["next"] += free + 8
        if st["stop"].wait(0.05):
            return


def _ct_on(lab: "Lab", st: dict) -> None:
    st["drop0"] = _read(lab, "node-a", _ct_drops)
    st["first"] = st["next"] = st["filled"]
    st["stop"] = threading.Event()
    st["thread"] = threading.Thread(target=_ct_top_up, args=(lab, st), daemon=True, name="ct-full")
    st["thread"].start()


def _ct_off(lab: "Lab", st: dict) -> int:
    st["stop"].set()
    st["thread"].join(10)
    first, n = st["first"], st["next"] - st["first"]
    _read(lab, "node-a", _ct_send(first, n, delete=True))
    return _read(lab, "node-a", _ct_drops) - st["drop0"]


def _ct_teardown(lab: "Lab", st: dict) -> None:
    _in(lab, "node-a", "conntrack", "-D", "--mark", str(FILLER_MARK))


INTERMITTENT: dict[str, Intermittent] = {f.name: f for f in (
    Intermittent("dns-rule-flap", "a DROP rule for UDP to CoreDNS comes and goes in node-a's filter FORWARD chain",
                 "node-a", "NETFILTER_DROP", "DROP rule in filter/FORWARD", "dns", _rule_on, _rule_off),
    Intermittent("vtep-neigh-flap", "node-a's neighbour for node-b's VTEP flips to a stale VtepMAC and back",
                 "node-a", "NO_TX_TARGET", "VTEP neighbour changed", "pod-udp", _vtep_on, _vtep_off),
    Intermittent("mtu-blackhole", f"node-b's cni0 MTU drops to {BLACKHOLE_MTU} with ICMP frag-needed filtered: "
                 "large packets to pod-b vanish", "node-b", "PKT_TOO_BIG", "MTU lowered on cni0", "pod-udp-large",
                 _mtu_on, _mtu_off, _icmp_filter_on, _icmp_filter_off),
    Intermittent("conntrack-full", "node-a's conntrack table fills up with assured entries, then frees up",
                 "node-a", "NETFILTER_DROP", "conntrack table full", "dns-new", _ct_on, _ct_off,
                 _ct_setup, _ct_teardown),
)}


def run_intermittent(lab: "Lab", name: str, *, period: float, duty: float, cycles: int, stop=None) -> list[Window]:
    """Turn the fault on for duty*period s, off for the rest, `cycles` times; always leaves it off."""
    f = INTERMITTENT[name]
    st: dict = {}
    windows: list[Window] = []
    if f.setup:
        f.setup(lab, st)
    try:
        for _ in range(cycles):
            if stop is not None and stop.is_set():
                break
            cycle = time.time()
            f.on(lab, st)
            t0 = time.time()
            try:
                time.sleep(max(0.0, duty * period - (time.time() - cycle)))
            finally:
                t1 = time.time()
                packets = f.off(lab, st)
            windows.append(Window(t0, t1, packets))
            time.sleep(max(0.0, period - (time.time() - cycle)))
    finally:
        if f.teardown:
            f.teardown(lab, st)
    return windows
