"""Helpers the BPF lab tests share: a throwaway lab with built objects, and leak polling."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import time

import pytest


# BPF program ids loaded when the current test started (set by the autouse fixture below): other
# helpers, other labs' agents and traces share this machine's kernel, and their programs are theirs.
_programs_before: set[int] = set()


@pytest.fixture(autouse=True)
def _record_programs_before():
    global _programs_before
    from podpath.tracer.probes import libbpf

    _programs_before = {i for i, _ in libbpf.loaded_programs()} if os.geteuid() == 0 else set()
    yield


def _family(root: int) -> set[int]:
    """root and every process descended from it (a trace it ran, the lab agents it started)."""
    children: dict[int, list[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(pid))
    out, todo = set(), [root]
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo += children.get(p, [])
    return out


def _is_agent(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return b"agent" in argv and any(a.endswith(b"podpath") for a in argv)


def held_by(pid: int, names=None) -> list[tuple[int, str]]:
    """(id, name) of podpath's programs (or those named) a process holds (a program or link fd)."""
    from podpath.tracer.probes import PROGRAM_NAMES, libbpf
    from podpath.tracer.probes.cleanup import program_holders

    wanted = {n[:15] for n in (names or PROGRAM_NAMES)}
    holders = program_holders()
    return [(i, n) for i, n in libbpf.loaded_programs() if n in wanted and pid in holders.get(i, ())]


def this_tests_programs(names=None) -> set[int]:
    """Ids of podpath's programs (or those named) loaded since the test started and held by this
    process, one it started, or no process: what the test loaded (with its lab's agents)."""
    from podpath.tracer.probes import PROGRAM_NAMES, libbpf
    from podpath.tracer.probes.cleanup import program_holders

    wanted = {n[:15] for n in (names or PROGRAM_NAMES)}
    holders, ours = program_holders(), _family(os.getpid())
    return {i for i, n in libbpf.loaded_programs() if n in wanted and i not in _programs_before
            and (not holders.get(i) or holders[i] & ours)}


def _left_now(names) -> list[tuple[int, str, str]]:
    from podpath.tracer.probes import PROGRAM_NAMES, libbpf
    from podpath.tracer.probes.cleanup import program_holders

    wanted = {n[:15] for n in (names or PROGRAM_NAMES)}
    new = [(i, n) for i, n in libbpf.loaded_programs() if n in wanted and i not in _programs_before]
    if not new:
        return []
    holders, ours, attached = program_holders(), _family(os.getpid()), None
    left = []
    for i, n in new:
        held = holders.get(i, set())
        if not held:
            left.append((i, n, "held by no process (attached without a link?)"))
            continue
        mine = held & ours
        if not mine:
            continue  # another process's (another test run, another lab's agent)
        if all(_is_agent(p) for p in mine):
            if attached is None:
                attached = {l["prog_id"] for l in libbpf.links_info()}
            if i not in attached:
                continue  # an idle agent's probe set: loaded between traces, attached to nothing
        left.append((i, n, f"held by pid {sorted(mine)}"))
    return left


def wait_no_programs(timeout: float = 3.0, names=None) -> list:
    """The BPF programs this test left behind, after waiting up to `timeout` s for the kernel to
    free them: podpath's (or those named) loaded now and not when the test started, held by no
    process (a tc filter left attached) or by this process or one it started. Not a leftover: an
    idle `podpath agent`'s programs (it keeps them loaded, attached to nothing), and other
    processes' programs (this kernel is shared)."""
    deadline = time.monotonic() + timeout
    while (left := _left_now(names)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


# Module marks of every test that builds a lab and loads BPF: skipped only without root, and says so.
ROOT_BPF_LAB = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces and loads BPF programs"),
]


PAIR_A_IP, PAIR_B_IP = "192.0.2.1", "192.0.2.2"  # TEST-NET-1: never routed anywhere


def require_bpf_objects() -> None:
    """Fail (never skip: `make -C bpf` is part of the set-up) when the BPF objects are not built."""
    from podpath.tracer.probes import object_path

    if not os.path.exists(object_path("tc")):
        pytest.fail("bpf/tc.bpf.o not built: run `make -C bpf`")


def run_cmd(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command (captured, text); check: a failure raises, naming it with its stderr."""
    p = subprocess.run(argv, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


@contextlib.contextmanager
def veth_pair(prefix: str):
    """(ns_a, ns_b), two new namespaces joined by a veth: va PAIR_A_IP/24 in a <-> vb PAIR_B_IP/24 in
    b, everything up; both namespaces deleted after, even when the test fails."""
    def ip(*argv: str, check: bool = True) -> None:
        run_cmd("ip", *argv, check=check)

    prefix = f"{prefix}-{secrets.token_hex(3)}"
    a, b = f"{prefix}-a", f"{prefix}-b"
    try:
        ip("netns", "add", a)
        ip("netns", "add", b)
        ip("-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b)
        for ns, dev, addr in ((a, "va", PAIR_A_IP), (b, "vb", PAIR_B_IP)):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield a, b
    finally:
        for ns in (a, b):
            ip("netns", "del", ns, check=False)


def fresh_lab(request, prefix: str):
    """A lab named <prefix><4 hex>, up, torn down by the test module's finalizer even on failure."""
    from podpath.tracer.lab import Lab

    lab = Lab(prefix + secrets.token_hex(2))
    request.addfinalizer(lab.down)
    lab.up()
    return lab


STANDIN_AGENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "standin_agent.py")


def standin_agents(request) -> None:
    """The labs this test module brings up run tests/lab/standin_agent.py (it says its node's name,
    then echoes) as their agents, with the contract's command line, in place of `podpath agent`:
    for tests of the transport and the API's view of the DaemonSet, not of the agent itself."""
    import sys

    from podpath.tracer.lab import agents

    mp = pytest.MonkeyPatch()
    mp.setattr(agents, "agent_command", lambda: [sys.executable, "-I", STANDIN_AGENT])
    request.addfinalizer(mp.undo)


def bpf_lab(request, prefix: str):
    """A fresh lab named <prefix><4 hex>, torn down by the test module's finalizer even on failure."""
    from podpath.tracer.lab import Lab

    require_bpf_objects()
    lab = Lab(prefix + secrets.token_hex(2))
    request.addfinalizer(lab.down)
    lab.up()
    return lab



def nobody_can_run_the_checkout() -> None:
    """The non-root CLI tests run podpath as user nobody (setpriv): skip, saying why, when this
    checkout sits under a directory others cannot enter (a clone in `mktemp -d`, mode 0700) —
    there, no unprivileged user could run this copy of podpath at all."""
    from pathlib import Path
    here = Path(__file__).resolve().parents[2]
    for d in [here, *here.parents]:
        if not d.stat().st_mode & 0o001:
            pytest.skip(f"{d} is not searchable by other users (mode {d.stat().st_mode & 0o777:o}), so user "
                        "nobody cannot run this checkout of podpath; clone it somewhere others can read")


def flow_args(f) -> list[str]:
    """A catalog fault's flow (FaultFlow) as `podpath trace/diagnose` arguments (size: ping -s + 28)."""
    out = [f.src, f.dst]
    if f.proto and f.proto != "icmp":
        out += ["--proto", f.proto]
    if f.port:
        out += ["--port", str(f.port)]
    if f.size:
        out += ["--size", str(f.size + 28)]
    if f.sport:
        out += ["--sport", str(f.sport)]
    return out


def podpath_on_node(lab, node: str, *args: str, timeout: float = 60):
    """`podpath ARGS` run inside a lab node's namespace, as an operator runs it on a node."""
    import subprocess
    from pathlib import Path

    exe = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "podpath")
    return subprocess.run(["ip", "netns", "exec", lab.netns(node), exe, *args], capture_output=True, text=True,
                          timeout=timeout)
