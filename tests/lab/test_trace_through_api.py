"""`podpath trace` through the API server: the lab's two real agents (started by `lab up` as the
DaemonSet's pods), found by label and reached by pods/portforward over WebSocket through the
stand-in API server, exactly as from a laptop or node of a real cluster (issue 10, "Done when").
The coordinator runs inside node-a's namespace as ServiceAccount podpath-coordinator, with no
direct map of the agents (PODPATH_AGENTS_DIRECT unset). Root only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import ROOT_BPF_LAB, bpf_lab  # noqa: E402

pytestmark = ROOT_BPF_LAB

EXE = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "podpath")
COMPARED = ("status", "cause", "node", "location", "device", "hook")


@pytest.fixture(scope="module")
def lab(request):
    return bpf_lab(request, "tta")


def trace(lab, *args: str, kubeconfig=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PODPATH_AGENTS_DIRECT"}
    return subprocess.run(["ip", "netns", "exec", lab.netns("node-a"), EXE, "trace", *args, "--kubeconfig",
                           str(kubeconfig or lab.kubeconfig_coordinator), "-o", "json"],
                          capture_output=True, text=True, timeout=60, env=env)


def test_a_healthy_trace_goes_through_both_agents(lab):
    r = trace(lab, "default/pod-a", "default/pod-b")
    assert r.returncode == 0, r.stderr
    assert "reaching the agents on node-a, node-b" in r.stderr
    d = json.loads(r.stdout)
    assert d["verdict"]["status"] == "delivered"
    assert {h["node"] for h in d["hops"]} == {"node-a", "node-b"}
    assert d["not_observed"] == []


@pytest.mark.parametrize("name", ["forward-drop", "svc-no-endpoints"])
def test_a_fault_through_the_api_server_has_the_lab_traces_verdict(lab, name):
    from podpath.tracer.lab import FAULTS
    from podpath.tracer.lab.source import LabSource
    from podpath.tracer.trace import trace as lab_trace

    f = FAULTS[name].flow
    args = [f.src, f.dst] + (["--proto", f.proto] if f.proto and f.proto != "icmp" else []) + \
        (["--port", str(f.port)] if f.port else [])
    lab.inject(name)
    try:
        want = lab_trace(f.src, f.dst, source=LabSource(lab.name), proto=f.proto, port=f.port).to_dict()["verdict"]
        r = trace(lab, *args)
    finally:
        lab.clear(name)
    assert "Traceback" not in r.stderr, r.stderr
    got = json.loads(r.stdout)
    assert got["not_observed"] == []
    assert {k: got["verdict"][k] for k in COMPARED} == {k: want[k] for k in COMPARED}


def test_without_the_port_forward_rule_it_is_one_line_naming_it(lab):
    r = trace(lab, "default/pod-a", "default/pod-b", kubeconfig=lab.kubeconfig_limited)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("podpath: error:")]
    assert len(errors) == 1, r.stderr
    assert "403" in errors[0] and "resources: [pods/portforward], verbs: [create]" in errors[0]


def test_a_dead_agent_is_named_not_observed_and_up_restarts_it(lab):
    """node-b's agent dies: its pod turns NotReady, find_agents gives node-a's alone, and the trace
    names node-b not observed; `lab up` starts it again."""
    from podpath.tracer.lab import agents, processes

    pid = agents.pid(lab.names, "node-b")
    processes.stop_pid(pid)
    assert any("podpath agent" in d for d in lab.drift())
    try:
        r = trace(lab, "default/pod-a", "default/pod-b")
        assert "Traceback" not in r.stderr, r.stderr
        d = json.loads(r.stdout)
        assert [n["node"] for n in d["not_observed"]] == ["node-b"], d["not_observed"]
        assert not any(h["node"] == "node-b" for h in d["hops"]), "no hop invented for the dead node"
        # node-a saw the reply come back: delivered, said with node-b named not observed, not guessed
        assert d["verdict"]["status"] == "delivered" and r.returncode == 0
        assert "not observed: node-b" in d["verdict"]["message"]
    finally:
        lab.up()
    deadline = time.monotonic() + 5
    while not agents.pid(lab.names, "node-b") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert json.loads(trace(lab, "default/pod-a", "default/pod-b").stdout)["not_observed"] == []
