"""Traces through per-node agents (issue 10): two real `podpath agent` processes, one in each lab
node's namespace, driven by `podpath trace` run inside node-a's namespace with the lab's
kubeconfig, exactly as on a node of a real cluster. The coordinator reaches the agents directly
(PODPATH_AGENTS_DIRECT: a connection opened inside each node's namespace to its 127.0.0.1:4244);
through the API server's port-forward is the transport's test. Each verdict must be the in-process
lab trace's (one kernel sees every node there; here each agent sees only its node).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import ROOT_BPF_LAB, bpf_lab, flow_args  # noqa: E402

from podpath.tracer.agent import DIRECT_ENV  # noqa: E402
from podpath.tracer.agent import protocol as P  # noqa: E402
from podpath.tracer.lab import FAULTS  # noqa: E402
from podpath.tracer.lab import processes  # noqa: E402

pytestmark = ROOT_BPF_LAB

EXE = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "podpath")
NODES = ("node-a", "node-b")
# counter: a netfilter drop's rule confirmed by its packet counter, re-read by that node's agent
COMPARED = ("status", "cause", "node", "location", "device", "hook", "counter")
# The catalog faults traced through agents: a filter drop on the destination's node, a Service with
# no endpoints, a reply dropped on the way home, DNS (blocked, and its server down), faults on the
# destination node's devices and sysctls, the underlay, and an MTU mismatch.
THROUGH_AGENTS = ("forward-drop", "vxlan-blocked", "svc-no-endpoints", "svc-reply-dropped", "dns-blocked",
                  "coredns-down", "dns-reply-dropped", "no-listener", "flannel-down", "neigh-failed",
                  "fdb-missing", "rp-filter-strict", "ip-forward-off", "mtu-mismatch", "host-route-missing",
                  "cni-route-missing", "pod-eth0-down", "vtep-mac-stale")


class Agents:
    """The lab's agents: `lab up` runs one `podpath agent` per lab node, in the node's namespace
    (tracer/lab/agents.py); tests kill one and start it again."""

    def __init__(self, lab) -> None:
        self.lab = lab
        self.pids: dict[str, int] = {}

    def start(self, node: str) -> int:
        from podpath.tracer.lab import agents as lab_agents

        pid = lab_agents.pid(self.lab.names, node) or lab_agents.start(self.lab.names, node)
        self.pids[node] = pid
        return pid

    def kill(self, node: str, sig=signal.SIGKILL) -> None:
        pid = self.pids.pop(node, None)
        if pid:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
            processes.stop_pid(pid)

    def stop(self) -> None:
        for node in list(self.pids):
            self.kill(node, signal.SIGTERM)

    def env(self) -> dict:
        return {**os.environ, DIRECT_ENV: ",".join(f"{n}={self.lab.netns(n)}" for n in NODES)}

    def connect(self, node: str) -> socket.socket:
        from podpath.tracer.agent.transport import direct
        return direct(self.lab.netns(node))


# The lab agents' linger period here (PODPATH_LINGER_S; an agent's default is 30 s): longer than
# the gap between two traces in a row, short enough to wait out before checking an idle agent.
AGENT_LINGER_S = 4.0


@pytest.fixture(scope="module")
def lab(request):
    from podpath.tracer.probes import LINGER_ENV

    env = pytest.MonkeyPatch()  # the agents inherit it: the ones `lab up` starts and Agents.start's
    env.setenv(LINGER_ENV, str(AGENT_LINGER_S))
    request.addfinalizer(env.undo)
    return bpf_lab(request, "ag")


@pytest.fixture(scope="module")
def agents(lab, request):
    a = Agents(lab)
    request.addfinalizer(a.stop)
    for n in NODES:
        a.start(n)
    return a


def trace_through_agents(lab, agents, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", lab.netns("node-a"), EXE, "trace", *args, "--kubeconfig",
                           str(lab.kubeconfig), "-o", "json"], capture_output=True, text=True, timeout=timeout,
                          env=agents.env())


def in_process(lab, f) -> dict:
    from podpath.tracer.lab.source import LabSource
    from podpath.tracer.trace import trace

    t = trace(f.src, f.dst, source=LabSource(lab.name), proto=f.proto, port=f.port, size=f.size, sport=f.sport)
    return t.to_dict()


def rule_of(verdict: dict, key: str):
    """A verdict field as compared; the counter without its count (a TCP answer the kernel resends
    after 1 s counts twice when one trace waits longer than the other)."""
    value = verdict.get(key)
    return re.sub(r" \(\+\d+ packets?\)$", "", value) if key == "counter" and value else value


def verdict_of(r: subprocess.CompletedProcess) -> dict:
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)


def bpf_fds(pid: int, kind: str) -> list[str]:
    """The /proc/PID/fdinfo of each BPF fd of this kind ("bpf_link", "bpf-prog") a process holds."""
    out = []
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"anon_inode:{kind}":
                    out.append(Path(f"/proc/{pid}/fdinfo/{fd}").read_text())
            except OSError:
                continue
    except OSError:
        return []
    return out


def bpf_links(pid: int) -> int:
    """How many BPF links a process holds: what it has attached (an idle agent: none)."""
    return len(bpf_fds(pid, "bpf_link"))


def link_ids(pid: int) -> set[int]:
    """The ids of the BPF links a process holds (an agent between traces: its lingering links)."""
    return {int(line.split()[1]) for info in bpf_fds(pid, "bpf_link")
            for line in info.splitlines() if line.startswith("link_id:")}


def program_ids(pid: int) -> set[int]:
    """The ids of the BPF programs a process holds loaded (an agent: its probe sets)."""
    return {int(line.split()[1]) for info in bpf_fds(pid, "bpf-prog")
            for line in info.splitlines() if line.startswith("prog_id:")}


def podpath_attached_in_lab(lab, agents) -> list[str]:
    """podpath's tcx programs on any device of the lab's namespaces, BPF links still held by a lab
    agent, and any link on the machine running one of the agents' programs (netfilter links and
    tracepoints: the kernel names no namespace for them, so who holds them is the check). Loaded
    programs are expected: an idle agent keeps them, unattached."""
    from podpath.tracer.lab.topology import NODES as LAB_NODES
    from podpath.tracer.netns import run_in
    from podpath.tracer.snapshot.bpfprogs import name_programs, tcx_programs

    def ours_here() -> list[str]:
        return [f"{a.device} {a.hook} {a.name}" for a in
                name_programs([x for i, dev in socket.if_nameindex() for x in tcx_programs(i, dev)]) if a.ours]

    spaces = [lab.netns(n.name) for n in LAB_NODES] + [h.netns for h in lab.hosts() if h.netns]
    found = [f"{ns}: {x}" for ns in dict.fromkeys(spaces) for x in run_in(ns, ours_here)]
    found += [f"agent of {n} (pid {pid}) holds {k} BPF links" for n, pid in agents.pids.items()
              if (k := bpf_links(pid))]
    from podpath.tracer.probes.libbpf import links_info
    theirs = {i: n for n, pid in agents.pids.items() for i in program_ids(pid)}
    found += [f"link {l['id']} runs program {l['prog_id']} of the agent of {theirs[l['prog_id']]}"
              for l in links_info() if l["prog_id"] in theirs]
    return found


def wait_nothing_attached(lab, agents, timeout: float = AGENT_LINGER_S + 5) -> list[str]:
    """What stays attached once the agents' links have outlived their linger period."""
    deadline = time.monotonic() + timeout
    while (left := podpath_attached_in_lab(lab, agents)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_healthy_flow_is_delivered_across_both_nodes(lab, agents):
    r = trace_through_agents(lab, agents, "default/pod-a", "default/pod-b")
    d = verdict_of(r)
    assert d["verdict"]["status"] == "delivered", d["verdict"]
    seen = {h["node"] for h in d["hops"]}
    assert seen == {"node-a", "node-b"}, f"each agent saw its own node's hops: {seen}"
    assert d["not_observed"] == []
    assert r.returncode == 0


def agents_programs(agents) -> dict[str, set[int]]:
    return {n: program_ids(pid) for n, pid in agents.pids.items()}


def test_idle_agents_keep_programs_loaded_and_attach_nothing(lab, agents):
    """After a trace an agent still holds podpath's programs (loaded once: the verifier's work is
    not paid per trace) and, once its links' linger period is over, no link: nothing of it runs on
    the node's traffic."""
    from podpath.tracer.probes import PROGRAM_NAMES
    from podpath.tracer.probes.libbpf import prog_info

    assert verdict_of(trace_through_agents(lab, agents, "default/pod-a", "default/pod-b"))["verdict"]["status"] \
        == "delivered"
    assert wait_nothing_attached(lab, agents) == []
    for node, ids in agents_programs(agents).items():
        names = {prog_info(i)[0] for i in ids if prog_info(i)}
        assert {n[:15] for n in PROGRAM_NAMES} <= names, f"{node}'s agent does not hold podpath's programs: {names}"
        assert bpf_links(agents.pids[node]) == 0


def test_back_to_back_traces_reuse_the_loaded_programs(lab, agents):
    """Traces in a row through the same agents, each another flow and fault (tcp to a port nobody
    listens on, icmp healthy, tcp to a Service without endpoints): each verdict is the in-process
    lab trace's, and the agents hold the same programs throughout (loaded once, each trace's filter
    written into them) and reuse the links of the trace before (lingering behind the closed gate;
    the same flow twice: every one), so nothing of one trace (a drop, a tracked skb) reaches the
    next. Idle past the linger period, they hold no link."""
    wants = {}
    for name in ("no-listener", "svc-no-endpoints"):  # first: the agents' traces then follow each other
        lab.inject(name)
        try:
            wants[name] = in_process(lab, FAULTS[name].flow)["verdict"]
        finally:
            lab.clear(name)
    verdict_of(trace_through_agents(lab, agents, "default/pod-a", "default/pod-b"))  # warm
    before = agents_programs(agents)
    assert all(before.values()), before
    links = {n: link_ids(pid) for n, pid in agents.pids.items()}
    assert all(links.values()), f"the agents should keep the warm trace's links for the next: {links}"
    for i, name in enumerate((None, "no-listener", None, "svc-no-endpoints")):
        if name is None:
            got = verdict_of(trace_through_agents(lab, agents, "default/pod-a", "default/pod-b"))["verdict"]
            assert (got["status"], got["cause"]) == ("delivered", None), got["message"]
        else:
            lab.inject(name)
            try:
                got = verdict_of(trace_through_agents(lab, agents, *flow_args(FAULTS[name].flow)))["verdict"]
            finally:
                lab.clear(name)
            want = wants[name]
            assert {k: got[k] for k in COMPARED} == {k: want[k] for k in COMPARED}, \
                f"{name}: through agents {got['message']!r}, in process {want['message']!r}"
        assert agents_programs(agents) == before, f"after {name or 'the healthy trace'}: the agents loaded again"
        now = {n: link_ids(pid) for n, pid in agents.pids.items()}
        if i == 0:  # the warm trace's flow again: every link reused, none attached
            assert now == links, f"the same flow again attached anew: {links} -> {now}"
        else:
            assert all(now[n] & links[n] for n in now), f"after {name or 'the healthy trace'}: no link reused " \
                f"({links} -> {now})"
        links = now
    assert wait_nothing_attached(lab, agents) == []


# Faults whose packet dies in the lab's underlay: the switch namespace joining the nodes, which no
# node's agent sees (on a cluster: the physical network). In one kernel the lab trace sees the drop
# there; through agents the packet is lost after the node that sent it onto the wire, and the verdict
# says so: (status, cause, node, device) through agents.
UNDERLAY = {
    "host-route-missing": ("lost", "host_route", "node-a", "eth0"),  # node-a sent it to the underlay router
    "cni-route-missing": ("lost", "host_route", "node-b", "eth0"),  # node-b sent it back to the router
    # the switch's veth refused node-b's 1400 MTU; node-b's agent saw nothing arrive, so node-b's MTU
    # (the snapshot's finding there) explains it
    "mtu-mismatch": ("lost", "mtu", "node-a", "eth0"),
}


def test_two_coordinators_at_once_are_isolated(lab, agents):
    """Two traces through the same agents at the same time, each its own session and filter."""
    cmds = [("default/pod-a", "default/pod-b"), ("default/pod-a", "default/pod-b", "--proto", "tcp", "--port", "8080")]
    procs = [subprocess.Popen(["ip", "netns", "exec", lab.netns("node-a"), EXE, "trace", *c, "--kubeconfig",
                               str(lab.kubeconfig), "-o", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=agents.env()) for c in cmds]
    outs = [p.communicate(timeout=60) for p in procs]
    for (out, err), c in zip(outs, cmds):
        assert "Traceback" not in err, err
        d = json.loads(out)
        assert d["verdict"]["status"] == "delivered", (c, d["verdict"]["message"])
        assert {h["node"] for h in d["hops"]} == {"node-a", "node-b"}
    icmp, tcp = (json.loads(o) for o, _ in outs)
    assert (icmp["flow"]["proto"], tcp["flow"]["proto"]) == ("icmp", "tcp")
    assert wait_nothing_attached(lab, agents) == []


# Faults where the first of the two traces leaves the neighbour entry it tried (INCOMPLETE, then
# FAILED) for the second to meet: whether the packet is lost waiting for ARP or dropped with
# NEIGH_FAILED (or flooded) depends on which trace went first, not on the agents. Compared on the
# cause and the node.
NEIGH_STATEFUL = {"pod-eth0-down", "neigh-failed"}


@pytest.mark.parametrize("name", THROUGH_AGENTS)
def test_fault_verdict_through_agents_is_the_lab_trace(lab, agents, name):
    fault = FAULTS[name]
    lab.inject(name)
    try:
        want = in_process(lab, fault.flow)["verdict"]
        got = verdict_of(trace_through_agents(lab, agents, *flow_args(fault.flow)))
    finally:
        lab.clear(name)
    assert got["not_observed"] == [], got["not_observed"]
    v = got["verdict"]
    if name in UNDERLAY:
        assert "at underlay/" in want["message"], f"{name}: the lab trace saw it die elsewhere: {want['message']}"
        assert (v["status"], v["cause"], v["node"], v["device"]) == UNDERLAY[name], v["message"]
        return
    if name in NEIGH_STATEFUL:
        assert (v["cause"], v["node"]) == (want["cause"], want["node"]), \
            f"{name}: through agents {v['message']!r}, in process {want['message']!r}"
        return
    assert {k: rule_of(v, k) for k in COMPARED} == {k: rule_of(want, k) for k in COMPARED}, \
        f"{name}: through agents {v['message']!r}, in process {want['message']!r}"
    if name == "forward-drop":  # a filter DROP rule on node-b: its agent re-read the counter
        assert v["counter"] and "confirmed by its packet counter (+1)" in v["message"], v["message"]


def test_nftrace_through_agents_names_the_rule_and_leaves_nothing(lab, agents):
    """--nftrace through agents: node-b's agent runs the kernel's nf_tables trace where the filter
    DROP rule sits, and the verdict names the rule as the in-process lab trace does; afterwards no
    podpath_nftrace_* table and no `nft monitor` process is left in any lab namespace."""
    from podpath.tracer.lab.source import LabSource
    from podpath.tracer.probes.nftables import podpath_tables
    from podpath.tracer.trace import trace

    fault = FAULTS["forward-drop"]
    lab.inject("forward-drop")
    try:
        f = fault.flow
        want = trace(f.src, f.dst, source=LabSource(lab.name), proto=f.proto, port=f.port, nftrace=True).verdict
        got = verdict_of(trace_through_agents(lab, agents, *flow_args(f), "--nftrace"))["verdict"]
    finally:
        lab.clear("forward-drop")
    assert want.nftrace and "drop" in want.nftrace, want.message

    def rule(line: str) -> str:  # the rule as nft prints it, without its counter's running values
        return re.sub(r"counter packets \d+ bytes \d+", "counter", line)
    assert (got["status"], got["node"], got["hook"], rule(got["nftrace"])) == \
        (want.status, want.node, want.hook, rule(want.nftrace)), got["message"]
    assert ("nftrace confirms the rule" in got["message"]) == ("nftrace confirms the rule" in want.message)
    left = [f"{ns}/{t}" for ns in lab.names.all_netns for _, t in podpath_tables(ns)]
    assert left == [], f"nftrace tables left: {left}"
    inodes = {os.stat(f"/run/netns/{ns}").st_ino for ns in lab.names.all_netns}
    monitors = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            if b"monitor" in cmd and os.stat(f"/proc/{pid}/ns/net").st_ino in inodes:
                monitors.append(int(pid))
        except OSError:
            continue
    assert monitors == [], "an `nft monitor trace` outlived the trace"


def test_dns_lookup_through_agents(lab, agents):
    """`podpath dns` from node-a: the query's trace crosses to coredns on node-b through the agents."""
    lab.inject("dns-blocked")
    try:
        r = subprocess.run(["ip", "netns", "exec", lab.netns("node-a"), EXE, "dns", "pod-a", "kubernetes.default",
                            "--kubeconfig", str(lab.kubeconfig), "-o", "json"], capture_output=True, text=True,
                           timeout=60, env=agents.env())
    finally:
        lab.clear("dns-blocked")
    assert "Traceback" not in r.stderr, r.stderr
    d = json.loads(r.stdout)
    v = d["trace"]["verdict"]
    assert (v["status"], v["cause"], v["node"], v["hook"]) == ("dropped", "dns", "node-b", "forward"), v


def test_a_node_without_agent_is_not_observed_and_no_agents_traces_in_process(lab, agents):
    """Only node-a's agent is known: node-b is named not observed, nothing is guessed there. With
    --no-agents the same command traces node-a in process, reaching no agent."""
    env = {**os.environ, DIRECT_ENV: f"node-a={lab.netns('node-a')}"}
    base = ["ip", "netns", "exec", lab.netns("node-a"), EXE, "trace", "default/pod-a", "default/pod-b",
            "--kubeconfig", str(lab.kubeconfig), "-o", "json"]
    d = verdict_of(subprocess.run(base, capture_output=True, text=True, timeout=60, env=env))
    assert d["not_observed"] == [{"node": "node-b", "why": "no podpath agent found on it"}]
    assert {h["node"] for h in d["hops"]} == {"node-a"}
    assert "not observed: node-b" in d["verdict"]["message"]
    r = subprocess.run(base + ["--no-agents"], capture_output=True, text=True, timeout=60, env=agents.env())
    local = verdict_of(r)
    assert local["not_observed"] == [] and {h["node"] for h in local["hops"]} == {"node-a"}
    assert "connect_ms" in d["timings"] and "connect_ms" not in local["timings"], "--no-agents reached no agent"
    assert local["verdict"]["status"] == "delivered"


def test_agent_survives_garbage_and_wrong_versions(lab, agents):
    # wrong version: one line naming both versions, then the connection closes
    with agents.connect("node-a") as s:
        s.sendall(P.encode({"type": "hello", "protocol": 99, "id": 1}))
        line = P.LineReader(s).readline()
        msg = json.loads(line)
        assert msg["type"] == "error" and msg["code"] == "version"
        assert "99" in msg["message"] and str(P.PROTOCOL) in msg["message"]
    with agents.connect("node-a") as s:
        r = P.LineReader(s)

        def answer() -> dict:
            while True:
                m = json.loads(r.readline())
                if m["type"] != "heartbeat":
                    return m

        s.sendall(b"this is not json\n")
        assert answer()["code"] == "bad_json"
        s.sendall(b'{"type": "snapshot", "id": 2}\n')  # before hello
        assert answer()["code"] == "bad_request"
        s.sendall(P.encode({"type": "hello", "protocol": P.PROTOCOL, "id": 3}))
        assert answer()["type"] == "hello"
        for bad, code in ((b"[1, 2]\n", "bad_request"), (b'{"type": "reboot", "id": 4}\n', "unknown_type"),
                          (b'{"type": "stop", "id": 5}\n', "not_armed"), (b'{"type": "arm", "id": 6}\n', "bad_request"),
                          (b'{"type": "arm", "id": 7, "session": {"inject": 3}}\n', "bad_request"),
                          (b'{"type": "counters", "id": 8, "host": "node-a"}\n', "bad_request"),  # no snapshot yet
                          (b"\xff\xfe\n", "bad_json")):
            s.sendall(bad)
            assert answer()["code"] == code, bad
        s.sendall(b'{"type": "pi')  # half a line, the rest later
        time.sleep(0.2)
        s.sendall(b'ng", "id": 8}\n')
        assert answer() == {"type": "pong", "id": 8, "state": "idle", "node": "node-a"}
        s.sendall(b"x" * (P.MAX_LINE + 10) + b"\n" + P.encode({"type": "ping", "id": 9}))
        assert answer()["code"] == "too_long"
        assert answer()["id"] == 9
    with agents.connect("node-a") as s:  # a coordinator that vanishes mid-line
        s.sendall(b'{"type": "hello", "proto')
    r = trace_through_agents(lab, agents, "default/pod-a", "default/pod-b")
    assert verdict_of(r)["verdict"]["status"] == "delivered"
    assert agents.pids["node-a"] and processes.alive_in(agents.pids["node-a"], lab.netns("node-a"))


def test_agent_killed_mid_trace_is_named_not_observed(lab, agents):
    """node-b's agent dies after it armed: the verdict names node-b not observed, guesses nothing
    there, and nothing of podpath stays attached in the lab."""
    assert wait_nothing_attached(lab, agents) == []  # no lingering link: more than 4 means armed
    lab.inject("fdb-wrong-dst")  # the packet goes to the wrong VTEP: the source waits its whole timeout
    proc = subprocess.Popen(["ip", "netns", "exec", lab.netns("node-a"), EXE, "trace", "default/pod-a",
                             "default/pod-b", "--timeout", "4", "--kubeconfig", str(lab.kubeconfig), "-o", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=agents.env())
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # attached: node-b's agent holds its probes' links
            if bpf_links(agents.pids["node-b"]) > 4:
                break
            time.sleep(0.02)
        else:
            pytest.fail("node-b's agent never armed")
        agents.kill("node-b")
        out, err = proc.communicate(timeout=30)
        left = wait_nothing_attached(lab, agents)
    finally:
        if proc.poll() is None:
            proc.kill()
        lab.clear("fdb-wrong-dst")
        agents.start("node-b")
    assert "Traceback" not in err, err
    d = json.loads(out)
    assert [n["node"] for n in d["not_observed"]] == ["node-b"], d["not_observed"]
    assert "node-b" in d["verdict"]["message"]
    assert not any(h["node"] == "node-b" for h in d["hops"]), "no hop invented for the dead node"
    assert d["verdict"]["node"] != "node-b" or d["verdict"]["status"] != "lost"
    assert proc.returncode != 0
    assert left == [], "podpath left attached after the trace"


def test_snapshot_without_inventory_names_the_same_hosts(lab, agents):
    """A coordinator reads the cluster's facts itself and asks each agent for its hosts only
    ("inventory": false): every host has the name, identity and namespace a full snapshot gives
    it (the agent still reads its pods and the targets from the API), and the bundle carries none
    of the Nodes or Services the coordinator would discard."""
    from podpath.tracer.agent.client import AgentClient

    c = AgentClient.connect(agents.connect("node-b"), "node-b")
    try:
        def hosts(msg: dict) -> list:
            return sorted((h["name"], h["kind"], h["namespace"], h["identified_by"], h["inode"])
                          for h in msg["bundle"]["hosts"])

        targets = ["default/pod-a", "default/pod-b"]
        full = c.call({"type": "snapshot", "targets": targets})
        lean = c.call({"type": "snapshot", "targets": targets, "inventory": False})
    finally:
        c.close()
    assert hosts(lean) == hosts(full)
    assert ("pod-b", "pod", "default", "api") in {h[:4] for h in hosts(lean)}
    assert full["bundle"]["inventory"]["nodes"] and full["bundle"]["inventory"]["services"]
    assert lean["bundle"]["inventory"]["nodes"] == [] and lean["bundle"]["inventory"]["services"] == []
    assert lean["bundle"]["inventory"]["local_node"] == "node-b"
