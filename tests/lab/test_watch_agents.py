"""`podpath watch` across nodes through the agents (issue 12): the lab's two real `podpath agent`
processes (one per node namespace, started by `lab up` as the DaemonSet would be) each record their
node; `podpath watch`, run in node-a's namespace with the lab's kubeconfig as on a cluster node,
writes one directory per node, and `podpath report` reads them unchanged. The coordinator reaches the
agents directly (PODPATH_AGENTS_DIRECT), as tests/lab/test_agent.py does. Real BPF, real faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import ROOT_BPF_LAB, bpf_lab  # noqa: E402

from podpath.tracer.agent import DIRECT_ENV  # noqa: E402
from podpath.tracer.lab import processes  # noqa: E402

pytestmark = ROOT_BPF_LAB

EXE = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "podpath")
NODES = ("node-a", "node-b")


@pytest.fixture(scope="module")
def lab(request):
    return bpf_lab(request, "wa")


@pytest.fixture(scope="module")
def agents(lab):
    """node -> the pid of its agent (lab up started them; a test that kills one starts it again)."""
    from podpath.tracer.lab import agents as lab_agents
    return {n: lab_agents.pid(lab.names, n) or lab_agents.start(lab.names, n) for n in NODES}


def _env(lab) -> dict:
    return {**os.environ, DIRECT_ENV: ",".join(f"{n}={lab.netns(n)}" for n in NODES)}


def _watch(lab, out: Path, *args: str) -> subprocess.Popen:
    """`podpath watch` through the agents, once it says it records (the caller waits for it)."""
    w = subprocess.Popen(["ip", "netns", "exec", lab.netns("node-a"), EXE, "watch", "--kubeconfig",
                          str(lab.kubeconfig), "-o", str(out), *args], stderr=subprocess.PIPE, text=True, env=_env(lab))
    line = w.stderr.readline()
    if "through their agents" not in line:
        w.kill()
        pytest.fail(line + w.stderr.read())
    return w


def _held_after_watch(pid: int) -> list[str]:
    """The BPF links and watch programs an agent holds (after a watch: none). Its trace probe sets
    stay loaded while idle, attached to nothing (their links would show here)."""
    held = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            kind = os.readlink(f"/proc/{pid}/fd/{fd}")
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text() if kind == "anon_inode:bpf-prog" else ""
        except OSError:
            continue
        if kind == "anon_inode:bpf_link":
            held.append("link")
        elif kind == "anon_inode:bpf-prog":
            pid_line = next((x for x in info.splitlines() if x.startswith("prog_id:")), "")
            name = _prog_name(int(pid_line.split()[1])) if pid_line else ""
            if name.startswith("pw_"):
                held.append(name)
    return held


def _prog_name(prog_id: int) -> str:
    r = subprocess.run(["bpftool", "prog", "show", "id", str(prog_id), "-j"], capture_output=True, text=True)
    return json.loads(r.stdout).get("name", "") if r.returncode == 0 and r.stdout.strip() else ""


def _drops(out: Path):
    from podpath.tracer.watch.store import read_table
    return read_table([out], "drops").to_pandas()


def test_intermittent_fault_on_node_b_through_agents(lab, agents, tmp_path):
    """mtu-blackhole on node-b, three times: node-b's agent counts every PKT_TOO_BIG drop (= node-b's
    Ip FragFails, the fault's own kernel counter), node-a's agent writes node-a's directory, and the
    report over the directory names node-b, the cause and the windows."""
    import datetime as dt

    from podpath.tracer.lab.intermittent import INTERMITTENT, run_intermittent
    from podpath.tracer.lab.traffic import Traffic

    f = INTERMITTENT["mtu-blackhole"]
    out = tmp_path / "watch"
    w = _watch(lab, out, "--duration", "40")
    try:
        with Traffic(lab, rate=200, flows=(f.flow,)):
            time.sleep(2)  # a quiet baseline
            windows = run_intermittent(lab, "mtu-blackhole", period=6, duty=0.5, cycles=3)
            time.sleep(1.5)
    finally:
        w.send_signal(signal.SIGTERM)
        _, err = w.communicate(timeout=60)
    assert w.returncode == 128 + 15, err  # stopped by SIGTERM, after writing
    err = " ".join(err.split())  # the console wraps long lines
    assert "Traceback" not in err and "on node-a, node-b; written to" in err and "not observed" not in err, err
    assert sorted(p.name for p in out.iterdir()) == ["node-a", "node-b"]
    d = _drops(out)
    truth = sum(x.packets for x in windows)
    assert truth > 300
    got = int(d[(d.node_name == "node-b") & (d.drop_reason_desc == "PKT_TOO_BIG")].packets.sum())
    assert got == truth, d.groupby(["node_name", "drop_reason_desc"]).packets.sum()
    r = subprocess.run([EXE, "report", str(out), "-o", "json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    bursts = [b for b in rep["bursts"] if b["node"] == "node-b" and b["reason"] == "PKT_TOO_BIG"]
    assert len(bursts) == len(windows), rep["bursts"]
    for x in windows:
        best = max(min(x.end, dt.datetime.fromisoformat(b["end"]).timestamp())
                   - max(x.start, dt.datetime.fromisoformat(b["start"]).timestamp()) for b in bursts)
        assert best >= 0.8 * (x.end - x.start), (x, bursts)
    assert all(b["cause"] == "MTU lowered on cni0 (1450 -> 1400)" for b in bursts), bursts
    assert rep["totals"]["by_node"]["node-b"] >= truth
    # the watch ended: each agent holds no link and no watch program again (idle cost zero)
    assert {n: _held_after_watch(pid) for n, pid in agents.items()} == {"node-a": [], "node-b": []}
    from podpath.tracer.watch.store import read_table
    assert set(read_table([out / "node-a"], "counters").to_pandas().node_name) == {"node-a"}


def test_an_agent_killed_mid_watch_is_named(lab, agents, tmp_path):
    """node-b's agent dies (SIGKILL) two seconds in: the watch names node-b not observed, goes on
    with node-a to the end, and both directories are readable (node-b's up to its last tick)."""
    from podpath.tracer.lab import agents as lab_agents
    from podpath.tracer.watch.store import read_table

    out = tmp_path / "watch"
    w = _watch(lab, out, "--duration", "6")
    try:
        time.sleep(2.5)
        os.kill(agents["node-b"], signal.SIGKILL)
        processes.stop_pid(agents["node-b"])
        _, err = w.communicate(timeout=60)
    finally:
        if w.poll() is None:
            w.kill()
        agents["node-b"] = lab_agents.start(lab.names, "node-b")
    assert w.returncode == 0 and "Traceback" not in err, err
    err = " ".join(err.split())  # the console wraps long lines
    assert "node-b not observed: its agent went away mid-watch" in err, err
    assert "on node-a; written to" in err, err
    c = read_table([out], "counters").to_pandas()
    per_node = c.groupby("node_name").time.nunique()  # ticks per node
    assert per_node["node-a"] >= 5 and 1 <= per_node["node-b"] <= 4, per_node
    r = subprocess.run([EXE, "report", str(out), "-o", "json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_an_older_agent_is_one_line(lab, agents):
    """An agent that does not know `watch` (an older release) answers unknown_type; the coordinator
    turns it into one line naming the node and what to do."""
    from podpath.tracer.agent.client import AgentClient
    from podpath.tracer.agent.protocol import AgentError
    from podpath.tracer.agent.transport import direct
    from podpath.tracer.agent.watch import refused

    c = AgentClient.connect(direct(lab.netns("node-a")), "node-a")
    try:
        with pytest.raises(AgentError) as e:
            c.call({"type": "watch-v0"}, timeout=10)  # what `watch` is to an agent that lacks it
    finally:
        c.close()
    line = refused("node-a", e.value)
    assert "does not know `watch`" in line and "\n" not in line, line


def test_pod_is_watched_on_its_node_only(lab, agents, tmp_path):
    """--pod pod-b through the agents: node-b's agent records (pod-b's namespace and the node's own),
    node-a's has no such pod and is left out, not called unobserved; a pod no node has is one line."""
    out = tmp_path / "watch"
    w = _watch(lab, out, "--pod", "pod-b", "--duration", "3")
    _, err = w.communicate(timeout=60)
    err = " ".join(err.split())
    assert w.returncode == 0 and "not observed" not in err and "on node-b; written to" in err, err
    assert [p.name for p in out.iterdir()] == ["node-b"]
    r = subprocess.run(["ip", "netns", "exec", lab.netns("node-a"), EXE, "watch", "--kubeconfig", str(lab.kubeconfig),
                        "--pod", "nope", "--duration", "1", "-o", str(tmp_path / "x")],
                       capture_output=True, text=True, timeout=60, env=_env(lab))
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "no pod 'nope' on node-a, node-b" in r.stderr, r.stderr
