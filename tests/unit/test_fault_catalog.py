"""The fault catalog is one source for the three labs: every fault renders node-level commands,
`--here` takes exactly the faults it can run on a real node, and the IPVS faults' commands, applied
to `ipvsadm` fixtures, make `diagnose` find what each one breaks.

The netns lab runs every FAULTS plan for real (tests/lab/test_lab.py inject/clear, and
tests/lab/test_fault_here.py the same plans through `--here` inside a lab node). IPVS_FAULTS use
fixtures because this kernel has no ip_vs: `ipvsadm` is played by a small interpreter of the five
command shapes the catalog uses, as strict as ipvsadm about objects that exist or not; the Vagrant
lab (KUBE_PROXY_MODE=ipvs) is where they run for real.
"""

from __future__ import annotations

import shlex

import pytest

from podpath.tracer.diagnose import diagnose
from podpath.tracer.lab.faults import FAULTS, IPVS_FAULTS, catalog
from podpath.tracer.lab.plans import Cmd, LabStep, lab_facts
from podpath.tracer.lab.topology import NODES, PODS

from test_ipvs import IPVS, WEB, errors, ipvs_findings, ipvs_lab

LAB_HOSTS = {n.name for n in NODES} | {p.name for p in PODS}


@pytest.mark.parametrize("name", list(catalog()))
def test_every_fault_renders_its_node_level_commands_from_lab_facts(name):
    f = catalog()[name]
    plan = f.lab_plan()
    assert plan.inject and plan.clear
    for step in plan.inject + plan.clear:
        if isinstance(step, Cmd):
            assert step.argv[0] in {"ip", "iptables", "sysctl", "bridge", "conntrack", "ping", "ipvsadm"}, step
            assert step.on == "node" or step.on in LAB_HOSTS, step
            assert shlex.split(step.text().split("] ")[-1]) == list(step.argv)
    if f.here is None:
        # what --here runs: commands only, on the node or in a pod of that node
        assert all(isinstance(s, Cmd) for s in plan.inject + plan.clear), name
        role_pods = {p.name for p in PODS if p.node == f.role}
        assert all(s.on == "node" or s.on in role_pods for s in plan.inject + plan.clear), name
    else:
        assert len(f.here) > 40 and ("kubectl" in f.here or "on a cluster" in f.here), \
            f"{name}: a refusal says what to do on a cluster instead"


def test_lab_steps_are_only_what_another_actor_does_and_such_faults_refuse_here():
    acting = {n for n, f in FAULTS.items() if any(isinstance(s, LabStep) for s in f.lab_plan().inject)}
    assert acting == {"svc-no-endpoints", "svc-stale-endpoint", "dns-no-endpoints", "dns-stale-conntrack",
                      "coredns-down", "no-listener"}
    assert all(FAULTS[n].here for n in acting)
    actors = {s.actor for n in acting for s in FAULTS[n].lab_plan().inject if isinstance(s, LabStep)}
    assert actors == {"kube-proxy", "kubelet", "a client"}
    # the rest inject by node-level commands alone, in the netns lab as on a node
    assert all(isinstance(s, Cmd) for n, f in FAULTS.items() if n not in acting for s in f.lab_plan().inject)


def test_ipvs_faults_are_vagrant_only_and_listed_after_the_netns_ones():
    assert list(catalog()) == list(FAULTS) + list(IPVS_FAULTS)
    assert set(IPVS_FAULTS) == {"ipvs-no-virtual-service", "ipvs-no-real-servers", "ipvs-weight-zero",
                                "ipvs-stale-real-server", "ipvs-vip-missing"}
    assert all(f.labs == ("vagrant",) and f.cause == "ipvs" and f.here is None for f in IPVS_FAULTS.values())
    assert all("netns" in f.labs for f in FAULTS.values())


def test_rendered_from_another_nodes_facts_the_commands_follow_the_facts():
    """A Vagrant node: eth1 underlay, other pod CIDRs. Nothing of the netns lab leaks into the plan."""
    import dataclasses

    f = dataclasses.replace(lab_facts("node-b"), underlay_dev="eth1", underlay_mtu=9000)
    mtu = FAULTS["mtu-mismatch"].plan(f)
    assert [c.text() for c in mtu.inject] == ["ip link set eth1 mtu 1400"]
    assert [c.text() for c in mtu.clear] == ["ip link set eth1 mtu 9000"]
    f = dataclasses.replace(f, sysctls={**f.sysctls, "net.ipv4.ip_forward": "1"})
    assert [c.text() for c in FAULTS["ip-forward-off"].plan(f).clear] == ["sysctl -w net.ipv4.ip_forward=1"]


# --- IPVS faults on fixtures ----------------------------------------------------------------------


class IpvsNode:
    """kube-ipvs0's addresses and the IPVS table of one node, changed by ipvsadm/ip commands."""

    def __init__(self, save: str, addrs: list[str]):
        self.services: dict[str, list[list[str]]] = {}  # "-t vip:port" -> [[rip, weight], ...]
        self.sched: dict[str, str] = {}
        for line in save.splitlines():
            w = line.split()
            if w[0] == "-A":
                self.services[f"{w[1]} {w[2]}"] = []
                self.sched[f"{w[1]} {w[2]}"] = w[w.index("-s") + 1]
            else:
                self.services[f"{w[1]} {w[2]}"].append([w[w.index("-r") + 1], w[w.index("-w") + 1]])
        self.addrs = list(addrs)

    def run(self, argv: tuple[str, ...]) -> None:
        w = list(argv)
        if w[:2] == ["ip", "addr"]:
            op, addr, dev = w[2], w[3], w[5]
            assert dev == "kube-ipvs0"
            assert (addr in self.addrs) == (op == "del"), f"{shlex.join(w)}: RTNETLINK answers: wrong state"
            self.addrs.remove(addr) if op == "del" else self.addrs.append(addr)
            return
        assert w[0] == "ipvsadm", w
        op, vs = w[1], f"{w[2]} {w[3]}"
        if op == "-A":
            assert vs not in self.services, "Service already exists"
            self.services[vs], self.sched[vs] = [], w[w.index("-s") + 1]
            return
        assert vs in self.services, f"{shlex.join(w)}: No such service"
        if op == "-D":
            del self.services[vs]
            return
        reals = self.services[vs]
        rip = w[w.index("-r") + 1]
        have = [r for r in reals if r[0] == rip]
        if op == "-a":
            assert not have, "Destination already exists"
            reals.append([rip, w[w.index("-w") + 1]])
        elif op == "-d":
            assert have, f"{shlex.join(w)}: No such destination"
            reals.remove(have[0])
        elif op == "-e":
            assert have, f"{shlex.join(w)}: No such destination"
            have[0][1] = w[w.index("-w") + 1]
        else:  # pragma: no cover
            raise AssertionError(f"unknown ipvsadm command {shlex.join(w)}")

    def text(self) -> str:
        """`ip a show kube-ipvs0` followed by `ipvsadm -Sn`, as a pasted node text."""
        head = ("7: kube-ipvs0: <BROADCAST,NOARP> mtu 1500 qdisc noop state DOWN group default \n"
                "    link/ether 6e:3c:1a:0f:52:d1 brd ff:ff:ff:ff:ff:ff\n")
        head += "".join(f"    inet {a} scope global kube-ipvs0\n       valid_lft forever preferred_lft forever\n"
                        for a in self.addrs)
        lines = []
        for vs, reals in self.services.items():
            lines.append(f"-A {vs} -s {self.sched[vs]}")
            lines += [f"-a {vs} -r {rip} -m -w {weight}" for rip, weight in reals]
        return head + "\n".join(lines) + "\n"


def fixture_node() -> IpvsNode:
    """node-a's IPVS state: the Sn fixture (same services as node-a's -Ln) and its kube-ipvs0."""
    addrs = [l.split()[1] for l in (IPVS / "node-a.kube-ipvs0.txt").read_text().splitlines() if "inet " in l]
    return IpvsNode((IPVS / "node-b.ipvsadm-Sn.txt").read_text(), addrs)


def run_plan(node: IpvsNode, steps) -> None:
    for c in steps:
        assert isinstance(c, Cmd) and c.on == "node"
        node.run(c.argv)


EXPECTED = {  # what diagnose says on node-a for pod-a -> web, once the fault's commands ran
    "ipvs-no-virtual-service": ("rejected", "-A -t 10.96.0.100:80 -s rr", "no virtual service for TCP 10.96.0.100:80"),
    "ipvs-no-real-servers": ("rejected", "-A -t 10.96.0.100:80 -s rr", "no real servers"),
    "ipvs-weight-zero": ("rejected", "-A -t 10.96.0.100:80 -s rr", "only weight-0 real servers"),
    "ipvs-stale-real-server": ("dropped", "-a -t 10.96.0.100:80 -r 10.244.1.250:8080 -m -w 1",
                               "no pod or node has that address"),
    "ipvs-vip-missing": ("lost", "10.96.0.100/32 dev kube-ipvs0", "10.96.0.100"),
}


def test_every_ipvs_fault_is_expected():
    assert set(EXPECTED) == set(IPVS_FAULTS)


@pytest.mark.parametrize("name", sorted(IPVS_FAULTS))
def test_ipvs_fault_commands_on_the_fixture_are_found_by_diagnose_and_clear_restores(name):
    """Fixture (this kernel has no ip_vs): the fault's own commands edit node-a's IPVS state."""
    fault = IPVS_FAULTS[name]
    plan = fault.lab_plan()
    node = fixture_node()
    healthy = node.text()
    run_plan(node, plan.inject)
    broken = node.text()
    result = diagnose(ipvs_lab(node_a=lambda _text: broken), "pod-a", WEB)
    outcome, obj, words = EXPECTED[name]
    assert outcome in {p.outcome for p in result.paths}
    assert errors(result) == [("ipvs", fault.node, obj)]
    (f,) = ipvs_findings(result, "error")
    assert words in f.message
    run_plan(node, plan.clear)
    assert sorted(node.text().splitlines()) == sorted(healthy.splitlines())
    clean = diagnose(ipvs_lab(node_a=lambda _text: node.text()), "pod-a", WEB)
    assert errors(clean) == [] and {p.outcome for p in clean.paths} == {"delivered"}


@pytest.mark.parametrize("name", sorted(n for n, f in FAULTS.items() if f.here is None))
def test_the_netns_lab_runs_exactly_the_node_level_commands_in_the_right_namespaces(name):
    """What `lab fault inject/clear` does, recorded by a dry BuildCtx: one `ip netns exec` per
    command, in the node's namespace or the pod's. tests/lab/test_lab.py runs them for real."""
    from podpath.tracer.lab.build import BuildCtx
    from podpath.tracer.lab.topology import Names

    f = FAULTS[name]
    names = Names("u1")
    for phase, run in (("inject", f.apply), ("clear", f.revert)):
        with BuildCtx(names, dry=True) as ctx:
            run(ctx, {})
        want = [f"{names.netns(f.role if c.on == 'node' else c.on)}: {shlex.join(c.argv)}"
                for c in getattr(f.lab_plan(), phase)]
        assert ctx.changes == want, phase


@pytest.mark.parametrize("argv, words", [
    (["inject", "ipvs-weight-zero"], "needs kube-proxy in IPVS mode"),
    (["clear", "ipvs-weight-zero"], "runs only with --here"),
    (["inject", "forward-drop", "--param", "pod-a=10.244.0.2"], "--param and --dry-run go with --here"),
    (["inject", "forward-drop", "--here", "--param", "pod-a"], "--param takes ROLE=POD_NAME or ROLE=IP"),
    (["clear", "--all", "--here"], "--here clears one fault at a time"),
    (["inject", "svc-no-endpoints", "--here"], "svc-no-endpoints cannot be injected with --here: kube-proxy"),
    (["inject", "no-such-fault", "--here"], "unknown fault 'no-such-fault'"),
])
def test_fault_cli_refuses_in_one_line_before_touching_anything(argv, words):
    from test_rough_input import assert_clean, run_cli

    code, err = run_cli("lab", "fault", *argv)
    assert code == 2, err
    assert_clean(code, err)
    assert words in err
