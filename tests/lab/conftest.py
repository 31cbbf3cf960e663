"""Helpers the BPF lab tests share: a throwaway lab with built objects, and leak polling."""

from __future__ import annotations

import os
import secrets
import time

import pytest


def wait_no_programs(timeout: float = 3.0) -> list:
    """podpath's BPF programs still loaded after `timeout` s (the kernel frees them asynchronously)."""
    from podpath.tracer.probes import loaded_podpath_programs

    deadline = time.monotonic() + timeout
    while (left := loaded_podpath_programs()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


# Module marks of every test that builds a lab and loads BPF: skipped only without root, and says so.
ROOT_BPF_LAB = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces and loads BPF programs"),
]


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
    from podpath.tracer.probes import object_path

    if not os.path.exists(object_path("tc")):
        pytest.fail("bpf/tc.bpf.o not built: run `make -C bpf`")
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
