"""The Python mirror of bpf/podpath.h: the event record, the filter config, and the enums naming
their values.

RawEvent/RawConfig are ctypes Structures with exactly the C layout, and Kind, Point, NeighPoint,
EvFlag, FilterFlag and Limit are the C enums; tests/unit/test_event_layout.py checks sizes, field
offsets and signedness, and every enum's names and values, against the compiled objects' BTF, so
the two cannot drift.
decode() checks the record length before it reads anything, and turns a record into an Event
(plain, JSON-serialisable data: addresses as dotted quads, kinds and drop reasons as names).
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
import struct
from dataclasses import asdict, dataclass, field
from enum import IntEnum, IntFlag

from ..hooks import NF_HOOKS

u8, u16, u32, u64, s32 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int32


class Limit:
    """enum pp_limit (PP_*): counts both sides size things by. Plain ints, not an IntEnum: two
    limits may be equal, and an enum would make the second an alias of the first."""

    NEIGH_ADDRS = 8
    NF_BRACKETS = 8

    @classmethod
    def members(cls) -> dict[str, int]:
        return {k: v for k, v in vars(cls).items() if k.isupper()}


class RawEvent(ctypes.Structure):
    """struct pp_event (bpf/podpath.h)."""

    _fields_ = [
        ("ts_ns", u64), ("skb", u64), ("location", u64),
        ("netns", u32), ("ifindex", u32), ("reason", u32), ("mark", u32), ("len", u32),
        ("saddr", u32), ("daddr", u32), ("outer_saddr", u32), ("outer_daddr", u32), ("tcp_seq", u32),
        ("sport", u16), ("dport", u16), ("ip_id", u16), ("icmp_id", u16), ("icmp_seq", u16),
        ("kind", u8), ("point", u8), ("proto", u8), ("flags", u8), ("icmp_type", u8), ("ttl", u8),
        ("nf_prio", s32), ("cpu", u32), ("fib_table", u32), ("fib_err", s32), ("fib_gw", u32), ("nud_state", u32),
    ]


class RawConfig(ctypes.Structure):
    """struct pp_config (bpf/podpath.h): the filter, written into .data (before load, or after it)."""

    _fields_ = [
        ("saddr", u32), ("daddr", u32), ("sport", u16), ("dport", u16), ("ip_id", u16),
        ("icmp_id", u16), ("flags", u16), ("proto", u8), ("__pad0", u8), ("__pad1", u32),
        ("neigh_addrs", u32 * Limit.NEIGH_ADDRS),
    ]


# The enums of bpf/podpath.h, member for member: the C enumerator is the prefix plus the Python
# name (PP_KIND_ + NETIF_RECEIVE_SKB). tests/unit/test_event_layout.py compares each with the
# compiled objects' BTF, names and values, so neither side can add or renumber one alone.


class Kind(IntEnum):
    """enum pp_kind: which probe saw the packet. Its name, lowercased, is the event's kind."""

    TC = 1
    KFREE_SKB = 2
    CONSUME_SKB = 3
    NETIF_RECEIVE_SKB = 4
    NET_DEV_START_XMIT = 5
    FIB = 6
    NEIGH = 7
    NETFILTER = 8


class Point(IntEnum):
    """enum pp_point (PP_POINT_*): the direction of a tc event."""

    INGRESS = 0
    EGRESS = 1


class NeighPoint(IntEnum):
    """enum pp_neigh_point (PP_NEIGH_*): which neigh tracepoint."""

    CREATE = 0
    UPDATE = 1
    TIMER = 2
    SEND_DEAD = 3


class EvFlag(IntFlag):
    """enum pp_ev_flag (PP_EV_*): pp_event.flags."""

    INNER = 0x01
    TRACKED = 0x02
    MATCHED = 0x04
    REPLY = 0x08
    PARSED = 0x10


class FilterFlag(IntFlag):
    """enum pp_filter_flag (PP_F_*): which pp_config fields are set."""

    SADDR = 0x0001
    DADDR = 0x0002
    PROTO = 0x0004
    SPORT = 0x0008
    DPORT = 0x0010
    IP_ID = 0x0020
    ICMP_ID = 0x0040
    BIDIR = 0x0100
    ALL = 0x8000


# Kernel numbering the events carry as is: netfilter hooks (enum nf_inet_hooks, checked against
# the kernel's BTF by the layout test) and NUD_* bits (include/uapi/linux/neighbour.h: #defines,
# in no BTF).
NF_POINTS = dict(enumerate(NF_HOOKS))  # the kernel's hook number -> its name
NUD_STATES = {0x01: "INCOMPLETE", 0x02: "REACHABLE", 0x04: "STALE", 0x08: "DELAY", 0x10: "PROBE",
              0x20: "FAILED", 0x40: "NOARP", 0x80: "PERMANENT"}
MAX_NEIGH_ADDRS = Limit.NEIGH_ADDRS
# decode() runs per event: plain lookups, built once from the enums
_KIND_NAMES = {int(k): k.name.lower() for k in Kind}
_POINT_NAMES = {int(p): p.name.lower() for p in Point}
_NEIGH_POINT_NAMES = {int(p): p.name.lower() for p in NeighPoint}
_EV_FLAG_NAMES = [(int(f), f.name.lower()) for f in EvFlag]
PROTOS = {"icmp": socket.IPPROTO_ICMP, "tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
PROTO_NAMES = {v: k for k, v in PROTOS.items()}


class EventError(ValueError):
    """A ring buffer record that is not a pp_event (wrong size): the object and podpath disagree."""


@dataclass(frozen=True)
class Filter:
    """What to trace: every field None means "any". bidir also matches the reply."""

    saddr: str | None = None
    daddr: str | None = None
    proto: str | int | None = None
    sport: int | None = None
    dport: int | None = None
    ip_id: int | None = None
    icmp_id: int | None = None
    bidir: bool = False
    all: bool = False  # every IPv4 packet: doctor and benchmarks only
    neigh_addrs: tuple[str, ...] = ()  # next hops whose neighbour entries to watch (at most 8)

    def to_config(self) -> RawConfig:
        c = RawConfig()
        flags = 0
        if self.saddr is not None:
            c.saddr, flags = _ip_be(self.saddr), flags | FilterFlag.SADDR
        if self.daddr is not None:
            c.daddr, flags = _ip_be(self.daddr), flags | FilterFlag.DADDR
        if self.proto is not None:
            p = PROTOS[self.proto] if isinstance(self.proto, str) else int(self.proto)
            c.proto, flags = p, flags | FilterFlag.PROTO
        for name, bit in (("sport", FilterFlag.SPORT), ("dport", FilterFlag.DPORT), ("ip_id", FilterFlag.IP_ID),
                          ("icmp_id", FilterFlag.ICMP_ID)):
            v = getattr(self, name)
            if v is not None:
                setattr(c, name, int(v))
                flags |= bit
        if self.bidir:
            flags |= FilterFlag.BIDIR
        if self.all:
            flags |= FilterFlag.ALL
        c.flags = flags
        for i, a in enumerate(dict.fromkeys(self.neigh_addrs)):
            if i >= Limit.NEIGH_ADDRS:
                break
            c.neigh_addrs[i] = _ip_be(a)
        return c

    def to_bytes(self) -> bytes:
        return bytes(self.to_config())


def _ip_be(addr: str) -> int:
    """Dotted quad -> the u32 whose memory bytes are the address in network order (as in BPF)."""
    return struct.unpack("=I", socket.inet_aton(str(ipaddress.IPv4Address(addr))))[0]


def _ip_str(be: int) -> str:
    return socket.inet_ntoa(struct.pack("=I", be))


@dataclass
class Event:
    """One decoded probe event (see struct pp_event)."""

    ts_ns: int
    kind: str
    point: str | None
    skb: int
    netns: int
    ifindex: int
    saddr: str | None
    daddr: str | None
    proto: str | int | None
    sport: int
    dport: int
    ip_id: int
    icmp_id: int
    icmp_seq: int
    icmp_type: int
    tcp_seq: int
    ttl: int
    len: int
    mark: int
    flags: list[str]
    outer_saddr: str | None = None
    outer_daddr: str | None = None
    reason: int = 0
    drop_reason: str | None = None  # SKB_DROP_REASON_* name without the prefix (kfree_skb)
    location: int = 0
    location_sym: str | None = None  # "func+0x1c" from /proc/kallsyms
    nf_prio: int = 0
    cpu: int = 0
    fib_table: int = 0
    fib_err: int = 0
    fib_gw: str | None = None
    nud_state: str | None = None  # neigh: "FAILED", "REACHABLE|..." (update: the new state)
    extra: dict = field(default_factory=dict)

    @property
    def inner(self) -> bool:
        return "inner" in self.flags

    def to_dict(self) -> dict:
        return asdict(self)


def decode(data: bytes, *, drop_reasons: dict[int, str] | None = None,
           symbolize=None) -> Event:
    """Decode one ring buffer record. EventError if its size is not sizeof(struct pp_event)."""
    size = ctypes.sizeof(RawEvent)
    if len(data) != size:
        raise EventError(f"ring buffer record of {len(data)} bytes, expected {size} (struct pp_event): "
                         "the BPF objects and podpath disagree; rebuild them with `make -C bpf`")
    r = RawEvent.from_buffer_copy(data)
    kind = _KIND_NAMES.get(r.kind, f"kind{r.kind}")
    if kind == "tc":
        point = _POINT_NAMES.get(r.point, str(r.point))
    elif kind == "netfilter":
        point = NF_POINTS.get(r.point, str(r.point))
    elif kind == "netif_receive_skb":
        point = "ingress"
    elif kind == "net_dev_start_xmit":
        point = "egress"
    elif kind == "neigh":
        point = _NEIGH_POINT_NAMES.get(r.point, str(r.point))
    else:
        point = None
    flags = [n for bit, n in _EV_FLAG_NAMES if r.flags & bit]
    parsed = bool(r.flags & EvFlag.PARSED.value)
    inner = bool(r.flags & EvFlag.INNER.value)
    ev = Event(
        ts_ns=r.ts_ns, kind=kind, point=point, skb=r.skb, netns=r.netns, ifindex=r.ifindex,
        saddr=_ip_str(r.saddr) if parsed else None, daddr=_ip_str(r.daddr) if parsed else None,
        proto=PROTO_NAMES.get(r.proto, r.proto) if parsed else None,
        sport=r.sport, dport=r.dport, ip_id=r.ip_id, icmp_id=r.icmp_id, icmp_seq=r.icmp_seq,
        icmp_type=r.icmp_type, tcp_seq=r.tcp_seq, ttl=r.ttl, len=r.len, mark=r.mark, flags=flags,
        outer_saddr=_ip_str(r.outer_saddr) if inner else None,
        outer_daddr=_ip_str(r.outer_daddr) if inner else None,
        reason=r.reason, location=r.location, nf_prio=r.nf_prio, cpu=r.cpu,
    )
    if kind == "fib":
        ev.fib_table, ev.fib_err = r.fib_table, r.fib_err
        ev.fib_gw = _ip_str(r.fib_gw) if r.fib_gw else None
    elif kind == "neigh":
        # neigh_update's reason is the new state; after the others the entry's state says it
        ev.nud_state = nud_name(r.reason if r.point == NeighPoint.UPDATE.value else r.nud_state)
    if kind == "kfree_skb":
        names = drop_reasons or {}
        name = names.get(r.reason)
        ev.drop_reason = name.removeprefix("SKB_DROP_REASON_") if name else str(r.reason)
    if r.location and symbolize is not None and kind == "kfree_skb":  # the only location anyone reads
        ev.location_sym = symbolize(r.location)
    return ev


def nud_name(state: int) -> str:
    names = [n for bit, n in NUD_STATES.items() if state & bit]
    return "|".join(names) if names else "NONE"


class KernelNames:
    """Drop reason names (BTF) and kernel symbols (/proc/kallsyms), loaded in a background thread as
    soon as probes are created, while the tc links attach (that wait is in the kernel, not in
    Python), instead of between the first drop event and the verdict."""

    def __init__(self) -> None:
        import threading
        self._reasons: dict[int, str] = {}
        self._ksyms: Kallsyms | None = None
        self._thread = threading.Thread(target=self._load, name="podpath-ksyms", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        try:
            self._reasons = drop_reason_names()
        except Exception:  # no BTF: reasons stay numbers
            self._reasons = {}
        try:
            self._ksyms = Kallsyms()
        except OSError:
            self._ksyms = None

    def reasons(self) -> dict[int, str]:
        self._thread.join()
        return self._reasons

    def symbolize(self, addr: int) -> str | None:
        self._thread.join()
        return self._ksyms(addr) if self._ksyms else None


class Kallsyms:
    """Kernel text address -> "symbol+0xoff" from /proc/kallsyms (needs root for real addresses).

    Reads the file once (~50 ms in the kernel, no Python parsing) and binary-searches it per
    lookup: the core kernel's symbols are listed in address order; module, BPF and ftrace symbols
    (tagged "\t[name]") follow and are scanned linearly. Indexing 120k lines in Python took
    ~170 ms, all of it between the first drop event and the verdict."""

    TEXT = (b"t", b"T", b"w", b"W")

    def __init__(self, path: str = "/proc/kallsyms") -> None:
        with open(path, "rb") as f:
            self._data = f.read()
        cut = self._data.find(b"\t[")
        self._core_end = len(self._data) if cut < 0 else self._data.rfind(b"\n", 0, cut) + 1

    def _line_at(self, pos: int) -> tuple[int, int]:
        """(start, end) of the line containing byte pos."""
        start = self._data.rfind(b"\n", 0, pos) + 1
        end = self._data.find(b"\n", pos)
        return start, (len(self._data) if end < 0 else end)

    def _parse(self, start: int, end: int) -> tuple[int, bytes, bytes]:
        parts = self._data[start:end].split(maxsplit=3)
        if len(parts) < 3:
            return 0, b"", b""
        return int(parts[0], 16), parts[1], parts[2]

    def _core(self, addr: int) -> tuple[int, bytes] | None:
        """The last core text symbol at or below addr."""
        lo, hi = 0, self._core_end  # invariant: lines starting before lo are <= addr
        best = None
        while lo < hi:
            mid = (lo + hi) // 2
            start, end = self._line_at(mid)
            a, _, _ = self._parse(start, end)
            if a <= addr:
                best = start
                lo = end + 1
            else:
                hi = start
        pos = best
        while pos is not None and pos >= 0:  # back to the nearest text symbol
            start, end = self._line_at(pos)
            a, kind, name = self._parse(start, end)
            if kind in self.TEXT and a:
                return a, name
            if start == 0:
                break
            pos = start - 1
        return None

    def __call__(self, addr: int) -> str | None:
        found = self._core(addr)
        if self._core_end < len(self._data):  # modules and BPF: a linear scan of a short tail
            for line in self._data[self._core_end:].splitlines():
                parts = line.split(maxsplit=3)
                if len(parts) >= 3 and parts[1] in self.TEXT:
                    a = int(parts[0], 16)
                    if a and a <= addr and (found is None or a > found[0]):
                        found = (a, parts[2])
        if found is None or not found[0]:
            return None
        return f"{found[1].decode(errors='replace')}+{addr - found[0]:#x}"


def drop_reason_names() -> dict[int, str]:
    """value -> SKB_DROP_REASON_* from the running kernel's BTF (enum skb_drop_reason)."""
    from .libbpf import vmlinux_enum
    return vmlinux_enum("skb_drop_reason")
