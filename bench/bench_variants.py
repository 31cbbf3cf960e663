#!/usr/bin/env python3
"""Print what each build of the trace probes costs: the one-shot build (tc.bpf.o, trace.bpf.o: the
filter a load-time constant in .rodata) against the agent's (tc.agent.bpf.o, trace.agent.bpf.o:
the filter in .data, writable after load).

For each build, with the filter a trace of two pods sets (ICMP, one id, both directions, the
path's next hops):
  - load time of the tc object, then of the trace object sharing its maps (all programs), median
  - instructions the verifier processed, per program (bpf_prog_info.verified_insns)
  - ns per run of the tc probe (BPF_PROG_TEST_RUN, repeated) on frames every probe sees: the
    flow's own TCP traffic (iperf3 between the pods: same addresses, not the traced protocol), an
    unrelated flow, the same inside VXLAN, and the traced ICMP echo itself
Builds no namespace and attaches nothing: the programs are only loaded and test-run. With
--lab NAME (a lab already up: `podpath lab up -n NAME`), also ns per run of every program attached
as a trace of pod-a -> pod-b attaches them (bench_trace's figure, kernel.bpf_stats_enabled), each
build in turn: iperf3 between the pods (not matched), then a ping flood with the trace's id.
Printed, never asserted; the load average is printed beside the figures (other work on the machine
skews them). Run as root: `.venv/bin/python bench/bench_variants.py [--loads N] [--lab NAME]`.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import socket
import statistics
import struct
import sys
import time

from podpath.tracer.probes import NF_MATCH_PROGRAM, NF_PROGRAMS, SHARED_MAPS, TRACEPOINTS, libbpf, object_path
from podpath.tracer.probes.events import Filter
from podpath.tracer.probes.libbpf import BPF_NETFILTER, BPF_PROG_TYPE_NETFILTER

POD_A, POD_B = "10.244.0.2", "10.244.1.3"  # what the frames carry; nothing is sent anywhere
NODE_A, NODE_B = "192.168.50.11", "192.168.50.12"
ICMP_ID = 0x7A7A
BPF_PROG_TEST_RUN = 10
BUILDS = (("one-shot (.rodata)", ""), ("agent (.data)", ".agent"))


def loadavg() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def flow_filter() -> Filter:
    return Filter(saddr=POD_A, daddr=POD_B, proto="icmp", icmp_id=ICMP_ID, bidir=True,
                  neigh_addrs=("10.244.0.1", "10.244.1.0", "10.244.1.3"))


def load(variant: str, cfg: bytes):
    """tc then trace object, as ProbeSet loads them (here one after the other, to time each)."""
    kw = {"rodata" if not variant else "data": {"pp_cfg": cfg}}
    t0 = time.perf_counter()
    tc = libbpf.BpfObject(object_path("tc" + variant), **kw)
    t1 = time.perf_counter()
    nf = list(NF_PROGRAMS) + [NF_MATCH_PROGRAM]
    try:
        trace = libbpf.BpfObject(object_path("trace" + variant), reuse_maps={m: tc.map_fd(m) for m in SHARED_MAPS},
                                 autoload=list(TRACEPOINTS) + nf,
                                 prog_types={n: (BPF_PROG_TYPE_NETFILTER, BPF_NETFILTER) for n in nf}, **kw)
    except BaseException:
        tc.close()
        raise
    t2 = time.perf_counter()
    return tc, trace, (t1 - t0) * 1000, (t2 - t1) * 1000


def test_run_ns(prog_fd: int, frame: bytes, repeat: int) -> int:
    """Mean ns per run the kernel measured over `repeat` runs of a tc program on one frame."""
    din = ctypes.create_string_buffer(frame, len(frame))
    dout = ctypes.create_string_buffer(len(frame) + 256)
    a = ctypes.create_string_buffer(80)
    struct.pack_into("=IIII", a, 0, prog_fd, 0, len(frame), len(dout))
    struct.pack_into("=QQII", a, 16, ctypes.addressof(din), ctypes.addressof(dout), repeat, 0)
    r = libbpf.sys_bpf(BPF_PROG_TEST_RUN, a)
    if r < 0:
        raise OSError(-r, f"BPF_PROG_TEST_RUN: {os.strerror(-r)}")
    return struct.unpack_from("=I", a, 36)[0]  # duration


def ipv4(src: str, dst: str, proto: int, l4: bytes) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0x4000, 64, proto, 0,
                       socket.inet_aton(src), socket.inet_aton(dst)) + l4


def eth(payload: bytes) -> bytes:
    f = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00" + payload
    return f + b"\0" * max(0, 64 - len(f))


def vxlan(inner_ip: bytes) -> bytes:
    inner = b"\x02\0\0\0\0\x04\x02\0\0\0\0\x03\x08\x00" + inner_ip
    udp = struct.pack("!HHHH", 49152, 8472, 16 + len(inner), 0) + struct.pack("!II", 0x08000000, 1 << 8)
    return eth(ipv4(NODE_A, NODE_B, socket.IPPROTO_UDP, udp + inner))


def frames() -> dict[str, bytes]:
    tcp = struct.pack("!HHIIBBHHH", 40000, 5201, 1, 0, 0x50, 0x10, 65535, 0, 0) + b"x" * 64
    flow_tcp = ipv4(POD_A, POD_B, socket.IPPROTO_TCP, tcp)
    echo = ipv4(POD_A, POD_B, socket.IPPROTO_ICMP, struct.pack("!BBHHH", 8, 0, 0, ICMP_ID, 1) + b"p" * 56)
    return {
        "pods' TCP (iperf3), not matched": eth(flow_tcp),
        "other pods' TCP, not matched": eth(ipv4("10.244.2.5", "10.244.3.6", socket.IPPROTO_TCP, tcp)),
        "pods' TCP in VXLAN, not matched": vxlan(flow_tcp),
        "the traced echo, matched": eth(echo),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loads", type=int, default=5, help="loads of each build (median)")
    ap.add_argument("--repeat", type=int, default=200000, help="test runs per frame")
    ap.add_argument("--lab", help="a lab that is up: also ns per run of the probes attached on its path")
    ap.add_argument("--seconds", type=int, default=3, help="iperf3 -t with --lab")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root (loads BPF programs)", file=sys.stderr)
        return 4
    cfg = flow_filter().to_bytes()
    results = {}
    times = {label: ([], [], []) for label, _ in BUILDS}
    # the builds take turns, so that a change in the machine's load weighs on both alike
    for i in range(args.loads):
        for label, variant in BUILDS:
            tc, trace, a, b = load(variant, cfg)
            t0 = time.perf_counter()
            trace.close()
            tc.close()
            times[label][0].append(a)
            times[label][1].append(b)
            times[label][2].append((time.perf_counter() - t0) * 1000)
    for label, variant in BUILDS:
        t_tc, t_trace, t_close = times[label]
        insns, ns = {}, {}
        tc, trace, _a, _b = load(variant, cfg)
        try:
            for obj in (tc, trace):
                for name, prog in obj._programs():
                    fd = libbpf.lib().bpf_program__fd(prog)
                    if fd >= 0:
                        insns[name] = libbpf.verified_insns(fd)
            prog = tc.program_fd("pp_tc_ingress")
            for what, frame in frames().items():
                ns[what] = test_run_ns(prog, frame, args.repeat)
        finally:
            trace.close()
            tc.close()
        results[label] = dict(tc=statistics.median(t_tc), trace=statistics.median(t_trace),
                              close=statistics.median(t_close),
                              insns=insns, ns=ns, load=loadavg())
    labels = [label for label, _ in BUILDS]
    print(f"{'measure':<44}" + "".join(f"{x:>22}" for x in labels))

    def row(what, vals):
        print(f"{what:<44}" + "".join(f"{v:>22}" for v in vals))

    row(f"load tc object, ms (median of {args.loads})", [f"{results[x]['tc']:.1f}" for x in labels])
    row("load trace object (all programs), ms", [f"{results[x]['trace']:.1f}" for x in labels])
    row("  both", [f"{results[x]['tc'] + results[x]['trace']:.1f}" for x in labels])
    row("unload both (nothing attached), ms", [f"{results[x]['close']:.1f}" for x in labels])
    row("  load average after", [results[x]["load"] for x in labels])
    total = [sum(results[x]["insns"].values()) for x in labels]
    row("verified insns, all programs", [str(t) for t in total])
    for name in results[labels[0]]["insns"]:
        row(f"  {name}", [str(results[x]["insns"].get(name, "-")) for x in labels])
    row(f"pp_tc_ingress ns per run (x{args.repeat})", ["" for _ in labels])
    for what in results[labels[0]]["ns"]:
        row(f"  {what}", [str(results[x]["ns"][what]) for x in labels])
    print(loadavg())
    if args.lab:
        live_costs(args.lab, args.seconds)
    return 0


def live_costs(lab_name: str, seconds: int) -> None:
    """ns per program run with the probes attached on the lab's path, each build in turn."""
    import subprocess

    import bench_trace as bt
    from podpath.tracer.lab import Lab
    from podpath.tracer.probes import ProbePool

    lab = Lab(lab_name)
    req = bt.path_plan(lab)
    dst = next(x.ip for x in lab.inventory().pods if x.name == "pod-b")
    stats_key = "kernel.bpf_stats_enabled"
    before = bt.sysctl_get(stats_key)
    pool = ProbePool()
    out = {}
    try:
        bt.sysctl_set(stats_key, "1")
        for label, variant in BUILDS:
            p = bt.attached_probes(lab, req, icmp_id=0x7A7A, pool=pool if variant else None)
            try:
                s0 = bt.prog_stats()
                bps, err = bt.iperf(lab, seconds)
                quiet = bt.stats_delta(s0, bt.prog_stats())
                s0 = bt.prog_stats()
                ping = subprocess.Popen(["ip", "netns", "exec", lab.netns("pod-a"), "ping", "-q", "-f", "-c", "2000",
                                         "-e", str(0x7A7A), "-W", "1", dst],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                while ping.poll() is None:
                    p.poll(20)
                    p.events.clear()
                flood = bt.stats_delta(s0, bt.prog_stats())
            finally:
                p.close()
            out[label] = (quiet, flood, bps, err, loadavg())
    finally:
        bt.sysctl_set(stats_key, before)
        pool.close()
    labels = [label for label, _ in BUILDS]
    print(f"\nns per run, probes on lab {lab_name}'s path{'':<9}" + "".join(f"{x:>22}" for x in labels))
    print(f"{'  iperf3 Gb/s (' + str(seconds) + ' s, stats on)':<44}" +
          "".join(f"{(out[x][2] / 1e9):>22.2f}" if not out[x][3] else f"{out[x][3][:20]:>22}" for x in labels))
    for i, what in ((0, "iperf3, not matched"), (1, "ping -f with the trace's id, matched")):
        print(f"  {what}")
        names = sorted(set().union(*(out[x][i] for x in labels)))
        for name in names:
            cells = []
            for x in labels:
                rt, rc = out[x][i].get(name, (0, 0))
                cells.append(f"{rt / rc:.0f} ({rc})" if rc else "-")
            print(f"    {name:<40}" + "".join(f"{c:>22}" for c in cells))
    print(f"{'  load average after':<44}" + "".join(f"{out[x][4]:>22}" for x in labels))


if __name__ == "__main__":
    sys.exit(main())
