"""The probes' cheap pre-check never drops what the filter would match.

pp_addrs_may_match (with the protocol: pp_hdr_may_match) lets a packet skip the L4 read, and the tc
probe skip everything, before filter() is asked. If a change to filter() (a new branch, like the
DNATed-flow one) is not mirrored there, the probes silently miss the trace's packets. So both run
in the kernel, compiled from bpf/filter.bpf.h as the probes are, through BPF_PROG_TEST_RUN on
generated frames, for every combination of filter flags:

- bpf/filter_check.bpf.o (test-only) returns what filter(), the pre-check and filter_packet() with
  the pre-check say of each frame: filter() matched => the pre-check let it through, and the
  pre-checked path gives filter()'s verdict.
- a route lookup (fib:fib_table_lookup) has no skb: the trace probe's pp_fib keeps one that is not
  tied to a packet event of the flow when pp_fib_may_match lets its addresses and protocol through;
  it must, for every packet filter() matches by its addresses (forward, or the reply).
- the real tc probe (pp_tc_ingress, whose pp_tc_may_match is its own code) reports a frame exactly
  when filter() matches it, plain or inside VXLAN: in both builds, the one-shot tc.bpf.o (filter a
  load-time constant the verifier prunes on) and the agent's tc.agent.bpf.o (filter in .data).

Needs root (loads BPF programs); builds no namespace and sends no packet: BPF_PROG_TEST_RUN hands
the frame to the program alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import random
import shutil
import socket
import struct
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from podpath.tracer.probes import libbpf, object_path
from podpath.tracer.probes.events import EvFlag, FilterFlag, RawConfig, RawEvent

from conftest import ROOT_BPF_LAB

pytestmark = ROOT_BPF_LAB + [
    pytest.mark.skipif(not shutil.which("bpftool"), reason="needs bpftool to read filter_check.bpf.o's BTF"),
]

BPF = Path(__file__).resolve().parents[2] / "bpf"
# Small pools, so that fields collide (equal addresses, ports, ids) as often as they differ: the
# filter only ever compares for equality. Documentation ranges: nothing is sent anywhere anyway.
ADDRS = ("192.0.2.1", "192.0.2.2", "198.51.100.7", "198.51.100.8")
PORTS = (53, 1024, 2048, 40000)
IDS = (7, 4242)
PROTOS = (socket.IPPROTO_ICMP, socket.IPPROTO_TCP, socket.IPPROTO_UDP)
ICMP_TYPES = (8, 0, 3)  # echo request, echo reply (both carry the id), unreachable (none)
FLAG_BITS = tuple(FilterFlag)
CONFIGS_PER_FLAG_SET = 3
TC_CONFIGS = 48  # configs the agent's tc probe runs (loaded once, its .data filter rewritten each time)
ONE_SHOT_CONFIGS = 16  # of those, the one-shot tc probe's (loaded once per config: its filter is .rodata)


@dataclass(frozen=True)
class Pkt:
    saddr: str
    daddr: str
    proto: int
    sport: int = 0
    dport: int = 0
    ip_id: int = 0
    icmp_type: int = 8
    icmp_id: int = 0

    def ipv4(self) -> bytes:
        if self.proto == socket.IPPROTO_TCP:
            l4 = struct.pack("!HHIIBBHHH", self.sport, self.dport, 1, 0, 0x50, 0x02, 65535, 0, 0)
        elif self.proto == socket.IPPROTO_UDP:
            l4 = struct.pack("!HHHH", self.sport, self.dport, 8 + 4, 0) + b"\0" * 4
        else:
            l4 = struct.pack("!BBHHH", self.icmp_type, 0, 0, self.icmp_id, 1)
        return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), self.ip_id, 0, 64, self.proto, 0,
                           socket.inet_aton(self.saddr), socket.inet_aton(self.daddr)) + l4

    def frame(self) -> bytes:
        return _eth(self.ipv4())

    def vxlan_frame(self, outer_saddr: str, outer_daddr: str) -> bytes:
        """This packet inside flannel's VXLAN (UDP 8472), as it crosses the underlay."""
        inner = _eth(self.ipv4(), pad=False)
        udp = struct.pack("!HHHH", 49152, 8472, 8 + 8 + len(inner), 0) + struct.pack("!II", 0x08000000, 1 << 8)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp) + len(inner), 1, 0, 64, socket.IPPROTO_UDP, 0,
                         socket.inet_aton(outer_saddr), socket.inet_aton(outer_daddr))
        return _eth(ip + udp + inner)


def _eth(payload: bytes, pad: bool = True) -> bytes:
    f = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + struct.pack("!H", 0x0800) + payload
    return f + b"\0" * (64 - len(f)) if pad and len(f) < 64 else f


def _be(addr: str) -> int:
    return struct.unpack("=I", socket.inet_aton(addr))[0]


def _config(rng: random.Random, flags: int) -> RawConfig:
    """A config with these flags; the fields of unset flags hold values too (they must not count)."""
    c = RawConfig(saddr=_be(rng.choice(ADDRS)), daddr=_be(rng.choice(ADDRS)), sport=rng.choice(PORTS),
                  dport=rng.choice(PORTS), ip_id=rng.choice(IDS), icmp_id=rng.choice(IDS), proto=rng.choice(PROTOS))
    c.flags = flags
    return c


def _packets(rng: random.Random, c: RawConfig) -> list[Pkt]:
    """The flow's packet, its reply, a DNATed request and its reply, random ones; each maybe with
    one field changed: the cases around every branch of filter()."""
    s, d = socket.inet_ntoa(struct.pack("=I", c.saddr)), socket.inet_ntoa(struct.pack("=I", c.daddr))
    other, oport = rng.choice(ADDRS), rng.choice(PORTS)
    base = [
        Pkt(s, d, c.proto, c.sport, c.dport, c.ip_id, 8, c.icmp_id),
        Pkt(d, s, c.proto, c.dport, c.sport, rng.choice(IDS), 0, c.icmp_id),
        Pkt(s, other, c.proto, c.sport, oport, c.ip_id, 8, c.icmp_id),
        Pkt(other, s, c.proto, oport, c.sport, rng.choice(IDS), 0, c.icmp_id),
    ] + [Pkt(rng.choice(ADDRS), rng.choice(ADDRS), rng.choice(PROTOS), rng.choice(PORTS), rng.choice(PORTS),
             rng.choice(IDS), rng.choice(ICMP_TYPES), rng.choice(IDS)) for _ in range(4)]
    out = []
    for p in base:
        out.append(p)
        field, pool = rng.choice((("saddr", ADDRS), ("daddr", ADDRS), ("proto", PROTOS), ("sport", PORTS),
                                  ("dport", PORTS), ("ip_id", IDS), ("icmp_type", ICMP_TYPES), ("icmp_id", IDS)))
        out.append(replace(p, **{field: rng.choice(pool)}))
    return out


def _all_configs() -> list[RawConfig]:
    rng = random.Random(4)  # fixed: a failure reproduces
    configs = []
    for subset in range(1 << len(FLAG_BITS)):
        flags = 0
        for i, bit in enumerate(FLAG_BITS):
            if subset >> i & 1:
                flags |= bit
        configs += [_config(rng, flags) for _ in range(CONFIGS_PER_FLAG_SET)]
    return configs


# ---- bpf(2): the two calls this test needs that the loader does not ----------------------------

def _bpf_cmd(name: str) -> int:
    """A bpf(2) command's number, from the kernel's own BTF (enum bpf_cmd)."""
    return {n: v for v, n in libbpf.vmlinux_enum("bpf_cmd").items()}[name]


def _test_run(prog_fd: int, data: bytes) -> int:
    """BPF_PROG_TEST_RUN of a tc program on one frame: its return value."""
    din = ctypes.create_string_buffer(data, len(data))
    dout = ctypes.create_string_buffer(len(data) + 256)
    a = ctypes.create_string_buffer(80)
    struct.pack_into("=IIII", a, 0, prog_fd, 0, len(data), len(dout))
    struct.pack_into("=QQI", a, 16, ctypes.addressof(din), ctypes.addressof(dout), 1)
    r = libbpf.sys_bpf(_bpf_cmd("BPF_PROG_TEST_RUN"), a)
    assert r == 0, f"BPF_PROG_TEST_RUN failed: errno {-r}"
    return struct.unpack_from("=I", a, 4)[0]


def _map_set(map_fd: int, key: int, value: bytes) -> None:
    k = ctypes.c_uint32(key)
    v = ctypes.create_string_buffer(value, len(value))
    a = ctypes.create_string_buffer(32)
    struct.pack_into("=IIQQQ", a, 0, map_fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0)
    r = libbpf.sys_bpf(_bpf_cmd("BPF_MAP_UPDATE_ELEM"), a)
    assert r == 0, f"BPF_MAP_UPDATE_ELEM failed: errno {-r}"


@pytest.fixture(scope="module")
def check_bits() -> dict[str, int]:
    """enum pp_check (filter_check.bpf.c), from the object's BTF."""
    path = BPF / "filter_check.bpf.o"
    if not path.exists():
        subprocess.run(["make", "-s", "-C", str(BPF)], check=True)
    raw = subprocess.run(["bpftool", "btf", "dump", "file", str(path), "-j"], check=True, capture_output=True,
                         text=True).stdout
    enum = next(t for t in json.loads(raw)["types"] if t["kind"] == "ENUM" and t["name"] == "pp_check")
    return {v["name"].removeprefix("PP_CHECK_"): v["val"] for v in enum["values"]}


@pytest.fixture(scope="module")
def verdicts(check_bits):
    """[(config, packet, bits)] for every config and its packets, from filter_check.bpf.o."""
    out = []
    with libbpf.BpfObject(str(BPF / "filter_check.bpf.o")) as obj:
        prog, cfg_map = obj.program_fd("pp_check_filter"), obj.map_fd("pp_check_cfg")
        rng = random.Random(5)
        for c in _all_configs():
            _map_set(cfg_map, 0, bytes(c))
            for p in _packets(rng, c):
                out.append((c, p, _test_run(prog, p.frame())))
    return out


def _show(c: RawConfig, p: Pkt) -> str:
    flags = "|".join(f.name for f in FilterFlag if c.flags & f) or "none"
    cfg = {f: getattr(c, f) for f in ("sport", "dport", "ip_id", "icmp_id", "proto")}
    return (f"filter {flags} {socket.inet_ntoa(struct.pack('=I', c.saddr))} -> "
            f"{socket.inet_ntoa(struct.pack('=I', c.daddr))} {cfg}; packet {p}")


def test_precheck_lets_through_all_that_filter_matches(verdicts, check_bits):
    bit = check_bits
    assert all(r & bit["PARSED"] for _, _, r in verdicts), "a generated frame did not parse"
    missed = [_show(c, p) for c, p, r in verdicts if r & bit["FILTER"] and not r & bit["MAY"]]
    assert not missed, f"{len(missed)} packets filter() matches but the pre-check drops, e.g. " + "; ".join(missed[:3])
    differ = [_show(c, p) for c, p, r in verdicts if bool(r & bit["FILTER"]) != bool(r & bit["PRECHECKED"])]
    assert not differ, f"{len(differ)} packets the pre-checked path judges unlike filter(), e.g. " + "; ".join(differ[:3])


def _matched_by_addresses(c: RawConfig, p: Pkt) -> bool:
    """filter()'s match as far as a route lookup can see it: the addresses, either way with BIDIR
    (the DNATed flow is matched by its source port, which a lookup does not carry)."""
    def ok(flag: FilterFlag, want: int, addr: str) -> bool:
        return not c.flags & flag or want == _be(addr)
    if c.flags & FilterFlag.ALL:
        return True
    forward = ok(FilterFlag.SADDR, c.saddr, p.saddr) and ok(FilterFlag.DADDR, c.daddr, p.daddr)
    reply = ok(FilterFlag.SADDR, c.saddr, p.daddr) and ok(FilterFlag.DADDR, c.daddr, p.saddr)
    return forward or bool(c.flags & FilterFlag.BIDIR and reply)


def test_route_lookup_precheck_lets_through_what_filter_matches_by_address(verdicts, check_bits):
    """pp_fib's own pre-check: a lookup with the addresses and protocol of a packet filter()
    matches by its addresses is the flow's. PP_F_ALL with a protocol (filter() then takes every
    packet) is among the cases."""
    bit = check_bits
    cases = [(c, p, r) for c, p, r in verdicts if r & bit["FILTER"] and _matched_by_addresses(c, p)]
    missed = [_show(c, p) for c, p, r in cases if not r & bit["FIB_MAY"]]
    assert not missed, f"{len(missed)} lookups the route pre-check drops, e.g. " + "; ".join(missed[:3])
    all_other_proto = [1 for c, p, _ in cases if c.flags & FilterFlag.ALL and c.flags & FilterFlag.PROTO
                       and p.proto != c.proto]
    assert len(all_other_proto) >= 20 and len(cases) < len(verdicts), (len(all_other_proto), len(cases))


def test_the_cases_cover_every_branch(verdicts, check_bits):
    """The property above is only worth what the cases reach: the forward flow, the reply, the
    DNATed flow both ways, and packets the pre-check passes but filter() refuses (it is a
    pre-check, not a second filter) as well as ones it stops."""
    bit = check_bits
    dnat = [(c, p) for c, p, r in verdicts if r & bit["FILTER"] and c.flags & FilterFlag.DADDR
            and not c.flags & FilterFlag.ALL and c.daddr not in (_be(p.saddr), _be(p.daddr))]
    counts = {
        "matched": sum(1 for *_, r in verdicts if r & bit["FILTER"] and not r & bit["REPLY"]),
        "reply": sum(1 for *_, r in verdicts if r & bit["REPLY"]),
        "dnat": len([1 for c, p in dnat if _be(p.saddr) == c.saddr]),
        "dnat_reply": len([1 for c, p in dnat if _be(p.daddr) == c.saddr]),
        "passed_not_matched": sum(1 for *_, r in verdicts if r & bit["MAY"] and not r & bit["FILTER"]),
        "stopped": sum(1 for *_, r in verdicts if not r & bit["MAY"]),
    }
    assert all(n >= 20 for n in counts.values()), counts


@contextlib.contextmanager
def _agent_tc(keys):
    """The agent's build: loaded once for every config, the filter written into its .data."""
    with libbpf.BpfObject(object_path("tc.agent")) as obj:
        def each():
            for key in keys:
                obj.write_data({"pp_cfg": key})
                assert obj.read_data("pp_cfg") == key
                yield key, obj
        yield each()


@contextlib.contextmanager
def _one_shot_tc(keys):
    """`podpath trace`'s build: loaded once per config, the filter a constant in its .rodata."""
    def each():
        for key in keys:
            with libbpf.BpfObject(object_path("tc"), rodata={"pp_cfg": key}) as obj:
                yield key, obj
    yield each()


@pytest.mark.parametrize("build,configs", [(_agent_tc, TC_CONFIGS), (_one_shot_tc, ONE_SHOT_CONFIGS)],
                         ids=["agent", "one-shot"])
def test_tc_probe_reports_exactly_what_filter_matches(verdicts, check_bits, build, configs):
    """The real tc program, whose own pp_tc_may_match reads headers straight from the packet, plain
    and inside VXLAN: an event for a frame exactly when filter() matches it or, through VXLAN, its
    outer or inner packet. The one-shot build, whose filter the verifier knows, must drop no branch
    a config needs."""
    bit = check_bits
    by_config: dict[bytes, list] = {}
    for c, p, r in verdicts:
        by_config.setdefault(bytes(c), []).append((p, r))
    rng = random.Random(6)
    sample = rng.sample(sorted(by_config), TC_CONFIGS)[:configs]
    wrong, reported, total = [], 0, 0
    events: list[bytes] = []
    with libbpf.BpfObject(str(BPF / "filter_check.bpf.o")) as check, build(sample) as loaded:
        check_prog, check_cfg = check.program_fd("pp_check_filter"), check.map_fd("pp_check_cfg")
        for key, obj in loaded:
            with libbpf.RingBuffer(obj.map_fd("pp_events"), events.append) as rb:
                prog, ntracked = obj.program_fd("pp_tc_ingress"), obj.map_fd("pp_ntracked")
                c = RawConfig.from_buffer_copy(key)
                _map_set(check_cfg, 0, key)
                for p, r in by_config[key]:
                    outer = Pkt(rng.choice(ADDRS), rng.choice(ADDRS), socket.IPPROTO_UDP, 49152, 8472)
                    outer_matches = bool(_test_run(check_prog, outer.frame()) & bit["FILTER"])
                    inner_matches = bool(r & bit["FILTER"])
                    for what, frame, expect in (("", p.frame(), inner_matches),
                                                (f"vxlan {outer.saddr} -> {outer.daddr}: ",
                                                 p.vxlan_frame(outer.saddr, outer.daddr), inner_matches or outer_matches)):
                        events.clear()
                        _test_run(prog, frame)
                        # a matched skb is tracked; each run's skb is new: forget it (no false "seen")
                        _map_set(ntracked, 0, bytes(8))
                        rb.consume()
                        matched = [e for e in events if RawEvent.from_buffer_copy(e).flags & EvFlag.MATCHED]
                        total += 1
                        reported += bool(matched)
                        if bool(matched) != expect or len(events) != len(matched):
                            wrong.append(f"{what}{_show(c, p)}: {len(events)} events, expected {int(expect)}")
    assert not wrong, f"{len(wrong)} of {total} frames: " + "; ".join(wrong[:3])
    assert 0 < reported < total
