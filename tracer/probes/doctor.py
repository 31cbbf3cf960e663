"""What this node's kernel lets podpath do: each BPF feature probed for real, then let go.

Tiny programs of each type are loaded (and attached inside a private network namespace where an
attachment is needed), so the answer is the kernel's, and nothing stays loaded afterwards.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass

from ..errors import PodpathError
from ..netns import CLONE_NEWNET

def _ret(imm: int) -> bytes:
    return struct.pack("<BBhi", 0xB7, 0, 0, imm) + struct.pack("<BBhi", 0x95, 0, 0, 0)


CAPS = {"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39}


@dataclass
class Check:
    name: str
    status: str  # ok | fail | warn
    detail: str
    needed: bool = False  # tracing is impossible when this fails (and has no fallback)
    fallback: str = ""


def tracing_possible(checks: list[Check]) -> bool:
    by = {c.name: c for c in checks}
    tc_ok = by["tcx link"].status == "ok" or by["clsact (legacy tc)"].status == "ok"
    return tc_ok and all(c.status == "ok" for c in checks if c.needed)


def run_checks() -> list[Check]:
    from podpath.tracer.probes import libbpf

    checks: list[Check] = []
    try:
        ver = libbpf.version()
        tcx_api = libbpf.has_symbol("bpf_program__attach_tcx")
        checks.append(Check("libbpf", "ok", f"libbpf.so.1 {ver}", True,
                            "libbpf tcx/netfilter API" if tcx_api else
                            "raw bpf(2) for tcx and netfilter links (libbpf < 1.3)"))
    except PodpathError as e:
        checks.append(Check("libbpf", "fail", str(e), True))
        return checks + [_caps()]

    checks.append(_caps())
    checks.append(_guard("BPF objects", True, _objects))
    checks.append(_guard("kernel BTF", True, _btf))
    checks.append(_guard("tp_btf on skb:kfree_skb", True, _tp_btf))
    checks.append(_guard("tcx link", False, _tcx))
    checks.append(_guard("clsact (legacy tc)", False, _clsact))
    checks.append(_guard("BPF netfilter link", False, _netfilter))
    checks.append(_guard("ring buffer", True, _ringbuf))
    checks.append(_guard("fentry/fexit", False, _fentry))
    checks.append(_guard("kprobes", False, _kprobes))
    checks.append(_guard("bpf_stats", False, _stats))
    by = {c.name: c for c in checks}
    if by["tcx link"].status != "ok":
        by["tcx link"].fallback = "clsact filters (swept at start and by cleanup)" \
            if by["clsact (legacy tc)"].status == "ok" else "none: no tc probes"
        by["tcx link"].status = "warn" if by["clsact (legacy tc)"].status == "ok" else "fail"
    return checks


def _guard(name: str, needed: bool, fn) -> Check:
    try:
        status, detail, fallback = fn()
    except PodpathError as e:
        status, detail, fallback = "fail", str(e), ""
    except OSError as e:
        status, detail, fallback = "fail", f"{e.strerror or e}", ""
    return Check(name, status, detail, needed, fallback)


def _errstr(r: int) -> str:
    return f"{errno.errorcode.get(-r, str(-r))}: {os.strerror(-r)}"


def _caps() -> Check:
    eff = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                eff = int(line.split()[1], 16)
    have = [n for n, bit in CAPS.items() if eff >> bit & 1]
    missing = [n for n in ("CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN") if n not in have]
    if missing and "CAP_SYS_ADMIN" not in have:
        return Check("capabilities", "fail", f"missing {', '.join(missing)}: run podpath as root", True)
    return Check("capabilities", "ok", " ".join(have), True)


# what a wheel carries (setup.py); filter_check is test-only. *.agent: `podpath agent`'s build
# of the trace probes (the filter writable after load).
SHIPPED_OBJECTS = ("tc", "trace", "tc.agent", "trace.agent", "watch")


def _objects():
    """podpath's own compiled programs, where it looks for them (a wheel carries them, a checkout
    builds them): each file there and readable by libbpf (ELF and BTF; loading is the trace's job)."""
    from podpath.tracer.probes import bpf_dir, libbpf
    where = bpf_dir()
    missing = [n for n in SHIPPED_OBJECTS if not (where / f"{n}.bpf.o").exists()]
    if missing:
        return ("fail", f"{', '.join(f'{n}.bpf.o' for n in missing)} missing in {where}: install podpath from "
                "its wheel (it carries them), or run `make -C bpf` in a checkout", "")
    lb = libbpf.lib()
    for n in SHIPPED_OBJECTS:
        obj = lb.bpf_object__open_file(str(where / f"{n}.bpf.o").encode(), None)
        if not obj:
            return "fail", f"{n}.bpf.o in {where} is not a BPF object libbpf can open: reinstall or rebuild it", ""
        lb.bpf_object__close(obj)
    return "ok", f"{', '.join(SHIPPED_OBJECTS)} in {where}", "compiled once (CO-RE): no clang on the node"


def _btf():
    from podpath.tracer.probes import libbpf
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "fail", "/sys/kernel/btf/vmlinux missing (CONFIG_DEBUG_INFO_BTF=n): no CO-RE", ""
    n = len(libbpf.vmlinux_enum("skb_drop_reason"))
    return "ok", f"/sys/kernel/btf/vmlinux, enum skb_drop_reason has {n} reasons", "CO-RE relocation"


def _with_prog(prog_type: int, imm: int, fn, **kw):
    from podpath.tracer.probes import libbpf
    fd = libbpf.prog_load_raw(prog_type, _ret(imm), name="pp_doctor", **kw)
    if fd < 0:
        return "fail", f"load: {_errstr(fd)}", ""
    try:
        return fn(fd)
    finally:
        os.close(fd)


def _tp_btf():
    from podpath.tracer.probes import libbpf
    btf_id = libbpf.lib().libbpf_find_vmlinux_btf_id(b"kfree_skb", libbpf.BPF_TRACE_RAW_TP)
    if btf_id < 0:
        return "fail", "no btf_trace_kfree_skb in the kernel BTF", ""

    def attach(fd):
        link = libbpf.raw_tracepoint_open(fd)
        if link < 0:
            return "fail", f"attach: {_errstr(link)}", ""
        os.close(link)
        return "ok", "loaded and attached", "drop events with reason and location"

    return _with_prog(libbpf.BPF_PROG_TYPE_TRACING, 0, attach,
                      expected_attach_type=libbpf.BPF_TRACE_RAW_TP, attach_btf_id=btf_id)


def _fentry():
    from podpath.tracer.probes import libbpf
    btf_id = libbpf.lib().libbpf_find_vmlinux_btf_id(b"tcp_v4_rcv", libbpf.BPF_TRACE_FENTRY)
    if btf_id < 0:
        return "warn", "no tcp_v4_rcv in the kernel BTF", "tracepoints only"

    def attach(fd):
        link = libbpf.link_create_raw(fd, 0, libbpf.BPF_TRACE_FENTRY)
        if link < 0:
            return "warn", f"attach: {_errstr(link)}", "tracepoints only (not needed)"
        os.close(link)
        return "ok", "loaded and attached", "optional extra probes"

    st, detail, fb = _with_prog(libbpf.BPF_PROG_TYPE_TRACING, 0, attach,
                                expected_attach_type=libbpf.BPF_TRACE_FENTRY, attach_btf_id=btf_id)
    return ("warn", detail, "tracepoints only (not needed)") if st == "fail" else (st, detail, fb)


def _in_private_netns(fn):
    """fn() in a thread inside a brand-new network namespace (unshare): only `lo`, invisible to
    `ip netns`, gone when the thread ends."""
    from podpath.tracer.probes import libbpf

    def body():
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            return "fail", f"unshare(CLONE_NEWNET): {os.strerror(e)}", ""
        return fn()

    return libbpf.in_netns_thread(body)


def _tcx():
    from podpath.tracer.probes import libbpf

    def body():
        def attach(fd):
            link = libbpf.link_create_raw(fd, 1, libbpf.BPF_TCX_INGRESS)  # lo is ifindex 1
            if link < 0:
                return "fail", f"attach: {_errstr(link)}", ""
            os.close(link)
            return "ok", "tcx ingress link on lo (private netns)", "tcx links (fd-owned)"
        return _with_prog(libbpf.BPF_PROG_TYPE_SCHED_CLS, -1, attach)

    return _in_private_netns(body)


def _clsact():
    from podpath.tracer.probes import libbpf

    def body():
        def attach(fd):
            libbpf.ClsactFilter(fd, 1, "ingress", "lo").close()
            return "ok", "clsact + bpf filter on lo (private netns)", "fallback where tcx is missing"
        return _with_prog(libbpf.BPF_PROG_TYPE_SCHED_CLS, -1, attach)

    return _in_private_netns(body)


def _netfilter():
    from podpath.tracer.probes import libbpf

    def body():
        def attach(fd):
            link = libbpf.attach_netfilter(fd, "prerouting", -150)
            link.close()
            return "ok", "IPv4 prerouting link (private netns)", "hook/table bracketing"
        return _with_prog(libbpf.BPF_PROG_TYPE_NETFILTER, 1, attach,
                          expected_attach_type=libbpf.BPF_NETFILTER)

    st = _in_private_netns(body)
    return ("warn", st[1], "rule counters and nftrace instead") if st[0] == "fail" else st


def _ringbuf():
    from podpath.tracer.probes import libbpf
    a = ctypes.create_string_buffer(72)
    struct.pack_into("=IIII", a, 0, 27, 0, 0, 4096)  # BPF_MAP_CREATE: RINGBUF, 4 KiB
    fd = libbpf.sys_bpf(0, a)
    if fd < 0:
        return "fail", f"map create: {_errstr(fd)}", ""
    os.close(fd)
    return "ok", "BPF_MAP_TYPE_RINGBUF", "one ring buffer per trace"


def _kprobes():
    if os.path.exists("/sys/bus/event_source/devices/kprobe/type"):
        return "ok", "kprobe PMU present", "not used (tracepoints suffice)"
    return "warn", "no kprobe PMU (CONFIG_KPROBES off)", "tracepoints, tc and netfilter links (not needed)"


def _stats():
    from podpath.tracer.probes import libbpf
    try:
        with open("/proc/sys/kernel/bpf_stats_enabled") as f:
            on = f.read().strip() == "1"
    except OSError:
        on = False
    fd = libbpf.enable_stats()
    if fd < 0:
        return "warn", f"BPF_ENABLE_STATS: {_errstr(fd)}", "no per-probe cost figures"
    os.close(fd)
    return "ok", f"BPF_ENABLE_STATS works (sysctl kernel.bpf_stats_enabled={int(on)})", "run time per probe"
