"""The netns lab with real namespaces and real traffic (root only).

One lab per module, named t<4 hex> so it never collides with a user's `pp` lab or another session;
its finalizer tears it down even when tests fail. Traffic stays inside lab namespaces.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import socket
from itertools import permutations
from pathlib import Path

import pytest

from podpath.tracer.errors import LabError, UsageError
from podpath.tracer.lab import FAULTS, FaultFlow, Lab
from podpath.tracer.lab.topology import NODES, PODS, SERVICES, node, pod

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0,
                       reason="needs root: builds network namespaces, veths, VXLAN and iptables rules"),
]

TIMEOUT = 1.0


@pytest.fixture(scope="module")
def lab(request):
    name = "t" + secrets.token_hex(2)
    lab = Lab(name)

    def fin():
        lab.down()
        mine = set(lab.names.all_netns)
        leftovers = [ns for ns in os.listdir("/run/netns") if ns in mine or ns.startswith(f"{name}-")] \
            if os.path.isdir("/run/netns") else []
        assert not leftovers, f"namespaces left after down: {leftovers}"
    request.addfinalizer(fin)
    changes = lab.up()
    assert changes, "a fresh up must build something"
    return lab


@pytest.fixture
def ipr(lab):
    from pyroute2 import IPRoute

    opened = {}

    def get(short):
        if short not in opened:
            opened[short] = IPRoute(netns=lab.netns(short), flags=0)
        return opened[short]
    yield get
    for i in opened.values():
        i.close()


def link(ipr, name):
    return ipr.link("get", ifname=name)[0]


def ok(lab, flow: FaultFlow):
    r = lab.probe(flow, timeout=TIMEOUT)
    return r.ok, r


# --------------------------------------------------------------------------- build


def test_flannel_vxlan_device(lab, ipr):
    for n in NODES:
        i = ipr(n.name)
        fl = link(i, "flannel.1")
        data = fl.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
        assert fl.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "vxlan"
        assert data.get("IFLA_VXLAN_ID") == 1
        assert data.get("IFLA_VXLAN_PORT") == 8472
        assert data.get("IFLA_VXLAN_LEARNING") == 0
        assert data.get("IFLA_VXLAN_LOCAL") == n.underlay_ip
        assert data.get("IFLA_VXLAN_LINK") == link(i, "eth0")["index"]
        assert fl.get("IFLA_MTU") == 1450 and fl.get("IFLA_ADDRESS") == n.vtep_mac
        addrs = [(a.get("IFA_ADDRESS"), a["prefixlen"]) for a in i.get_addr(family=socket.AF_INET,
                                                                             index=fl["index"])]
        assert addrs == [(n.subnet_base, 32)]
        assert link(i, "eth0").get("IFLA_MTU") == 1500


def test_flannel_route_neighbour_fdb_triple(lab, ipr):
    for n in NODES:
        (r,) = [x for x in NODES if x.name != n.name]
        i = ipr(n.name)
        fl = link(i, "flannel.1")["index"]
        routes = [x for x in i.get_routes(family=socket.AF_INET, table=254)
                  if x.get("RTA_DST") == r.subnet_base and x["dst_len"] == 24]
        assert len(routes) == 1
        assert routes[0].get("RTA_GATEWAY") == r.subnet_base and routes[0].get("RTA_OIF") == fl
        assert routes[0]["flags"] & 0x4  # onlink
        neigh = [x for x in i.get_neighbours(family=socket.AF_INET, ifindex=fl) if x.get("NDA_DST") == r.subnet_base]
        assert len(neigh) == 1 and neigh[0].get("NDA_LLADDR") == r.vtep_mac and neigh[0]["state"] & 0x80
        fdb = [(f.get("NDA_LLADDR"), f.get("NDA_DST"), f["state"] & 0x80, f["flags"] & 0x2)
               for f in i.fdb("dump", ifindex=fl) if f["ifindex"] == fl and f.get("NDA_DST")]
        assert fdb == [(r.vtep_mac, r.underlay_ip, 0x80, 0x2)]


def test_cni0_bridge_and_pod_wiring(lab, ipr):
    for n in NODES:
        i = ipr(n.name)
        cni0 = link(i, "cni0")
        assert cni0.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "bridge" and cni0.get("IFLA_MTU") == 1450
        ports = sorted(x.get("IFLA_IFNAME") for x in i.get_links() if x.get("IFLA_MASTER") == cni0["index"])
        assert ports == sorted(p.host_veth for p in PODS if p.node == n.name)
        for p in (p for p in PODS if p.node == n.name):
            hv = link(i, p.host_veth)
            assert hv.get("IFLA_MTU") == 1450 and hv["flags"] & 1
            assert i.brport("show", index=hv["index"])[0].get_nested("IFLA_PROTINFO", "IFLA_BRPORT_MODE") == 1
            pi = ipr(p.name)
            eth0 = link(pi, "eth0")
            assert eth0.get("IFLA_MTU") == 1450 and eth0.get("IFLA_ADDRESS") == p.mac
            routes = {(x.get("RTA_DST"), x["dst_len"]): x.get("RTA_GATEWAY")
                      for x in pi.get_routes(family=socket.AF_INET, table=254)}
            assert routes == {(None, 0): n.gateway, ("10.244.0.0", 16): n.gateway,
                              (n.subnet_base, 24): None}
            assert link(pi, "lo")["flags"] & 1
            resolv = Path(f"/etc/netns/{lab.netns(p.name)}/resolv.conf").read_text()
            assert f"search {p.namespace}.svc.cluster.local svc.cluster.local cluster.local" in resolv
            assert "nameserver 10.96.0.10" in resolv and "options ndots:5" in resolv


def test_underlay_switch_and_no_link_to_the_root_namespace(lab, ipr):
    u = ipr("underlay")
    br0 = link(u, "br0")
    assert sorted(x.get("IFLA_IFNAME") for x in u.get_links() if x.get("IFLA_MASTER") == br0["index"]) == \
        ["cp", "node-a", "node-b"]
    # Every veth of the lab has its peer inside the lab: pair them up by (ifindex, peer ifindex).
    ends = []
    for short in ["underlay", "cp"] + [n.name for n in NODES] + [p.name for p in PODS]:
        for x in ipr(short).get_links():
            if x.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "veth":
                ends.append((short, x["index"], x.get("IFLA_LINK")))
    assert len(ends) == 14
    for short, idx, peer in ends:
        assert any(o[1] == peer and o[2] == idx and o[0] != short for o in ends), (short, idx)


def test_sysctls_and_iptables(lab):
    from podpath.tracer.lab import kubeproxy, nsutil
    from podpath.tracer.lab.topology import service_rules

    for n in NODES:
        ns = lab.netns(n.name)
        assert nsutil.sysctl_get(ns, ["net.ipv4.ip_forward"]) == {"net.ipv4.ip_forward": "1"}
        save = nsutil.run(ns, ["iptables-save"]).stdout
        assert ":KUBE-SVC-TCOU7JCQXEZGVUNU - [0:0]" in save
        for chain in ("KUBE-SERVICES", "KUBE-MARK-MASQ", "KUBE-POSTROUTING", "KUBE-NODEPORTS", "KUBE-FORWARD",
                      "KUBE-EXTERNAL-SERVICES", "FLANNEL-FWD", "FLANNEL-POSTRTG"):
            assert f":{chain} - [0:0]" in save
        # Exactly the rendered rules, line for line, as iptables-save prints them back.
        assert kubeproxy.diff(kubeproxy.render_node(n, service_rules()), kubeproxy.parse_save(save)) == []
    assert nsutil.sysctl_get(lab.netns("underlay"), ["net.ipv4.ip_forward"])["net.ipv4.ip_forward"] == "0"


def test_up_twice_changes_nothing(lab, ipr):
    from podpath.tracer.lab import processes

    before = {(s, x.get("IFLA_IFNAME")): x["index"] for s in ("node-a", "pod-b") for x in ipr(s).get_links()}
    from podpath.tracer.lab.apiserver import control

    def pids():
        return ({p.name: processes.server_pid(lab.names, p) for p in PODS if p.server},
                {p.name: processes.holder_pid(lab.names, p) for p in PODS}, control.server_pid(lab.names))
    was = pids()
    assert lab.up() == []
    assert lab.drift() == []
    after = {(s, x.get("IFLA_IFNAME")): x["index"] for s in ("node-a", "pod-b") for x in ipr(s).get_links()}
    assert after == before
    assert pids() == was and all(was[1].values()) and was[2]


def test_every_pod_has_a_holder_that_reads_like_kubelet_made_it(lab):
    """What node-side discovery reads: the holder's /etc/hostname (pod name) and resolv.conf."""
    from podpath.tracer.lab import processes
    from podpath.tracer.lab.topology import resolv_conf

    for p in PODS:
        pid = processes.holder_pid(lab.names, p)
        assert pid, f"{p.name} has no holder"
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{lab.netns(p.name)}").st_ino
        assert Path(f"/proc/{pid}/root/etc/hostname").read_text().strip() == p.name
        assert Path(f"/proc/{pid}/root/etc/resolv.conf").read_text() == resolv_conf(p)


def test_a_dead_holder_is_drift_and_up_restarts_it(lab):
    from podpath.tracer.lab import processes

    p = pod("pod-b")
    old = processes.holder_pid(lab.names, p)
    processes.stop_pid(old)
    drift = lab.drift()
    assert any("holder of pod-b" in d for d in drift), drift
    assert any("holder of pod-b" in c for c in lab.up())
    new = processes.holder_pid(lab.names, p)
    assert new and new != old
    assert Path(f"/proc/{new}/root/etc/hostname").read_text().strip() == "pod-b"
    assert lab.drift() == []


def test_control_plane_sits_on_the_underlay_with_no_way_out(lab, ipr):
    from podpath.tracer.lab.build import addrs_of, routes_of

    cp = ipr("cp")
    eth0 = link(cp, "eth0")
    assert addrs_of(cp, eth0["index"]) == ["192.168.56.10/24"]
    assert [r["dst"] for r in routes_of(cp)] == ["192.168.56.0/24"]
    # The API port answers from a node, and the node reaches it over the switch (br0's port `cp`).
    from podpath.tracer.netns import run_in

    def connect():
        with socket.create_connection(("192.168.56.10", 6443), timeout=1):
            return True
    assert run_in(lab.netns("node-a"), connect)


# --------------------------------------------------------------------------- real traffic


def test_ping_every_pod_pair_both_ways(lab):
    failed = []
    for a, b in permutations([p.name for p in PODS], 2):
        good, r = ok(lab, FaultFlow(a, b))
        if not good:
            failed.append(f"{a} -> {b}: {r.detail}")
    assert not failed


def test_full_size_ping_crosses_vxlan(lab):
    assert ok(lab, FaultFlow("pod-a", "pod-b", size=1400))[0]
    assert ok(lab, FaultFlow("pod-b", "pod-a", size=1422))[0]  # 1422 + 28 = 1450: the pod MTU exactly


@pytest.mark.parametrize("src", ["pod-a", "pod-a2", "pod-b"])
def test_web_cluster_ip_reaches_both_endpoints(lab, src):
    seen = set()
    for _ in range(60):
        good, r = ok(lab, FaultFlow(src, "svc/default/web:80", "tcp", 80))
        assert good, r.detail
        seen.add(r.answered_by)
        if seen == {"pod-a2", "pod-b"}:
            break
    assert seen == {"pod-a2", "pod-b"}


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_dns_answers_every_service_via_the_cluster_ip(lab, proto):
    from podpath.tracer.lab import dns, nsutil

    query = dns.query_udp if proto == "udp" else dns.query_tcp
    for s in SERVICES:
        rcode, addrs = nsutil.in_netns(lab.netns("pod-a"), query, "10.96.0.10", s.fqdn, TIMEOUT)
        assert (rcode, addrs) == ("NOERROR", [s.cluster_ip])
    rcode, addrs = nsutil.in_netns(lab.netns("pod-a"), query, "10.96.0.10", "nope.default.svc.cluster.local", TIMEOUT)
    assert rcode == "NXDOMAIN" and addrs == []


def test_status_json_contract(lab):
    import typer
    from typer.testing import CliRunner

    from podpath.cli import lab as lab_cli

    app = typer.Typer()
    lab_cli.register(app)
    res = CliRunner().invoke(app, ["lab", "status", "--name", lab.name, "-o", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert {"nodes", "pods", "services", "faults"} <= set(data)
    assert data["faults"] == [] and data["drift"] == []
    assert data["kubeconfig"] == str(lab.kubeconfig) and lab.kubeconfig.exists()
    assert [n["name"] for n in data["nodes"]] == ["node-a", "node-b"]
    for n in data["nodes"]:
        assert set(n) >= {"name", "netns", "underlay_ip", "underlay_dev", "vtep_mac", "pod_cidr"}
        assert n["netns"] == lab.netns(n["name"]) and n["vtep_mac"] == node(n["name"]).vtep_mac
    for p in data["pods"]:
        assert set(p) >= {"name", "namespace", "node", "netns", "ip", "mac", "host_veth"}
        assert p["ip"] == pod(p["name"]).ip
    dns_svc = next(s for s in data["services"] if s["name"] == "kube-dns")
    assert set(dns_svc) >= {"name", "namespace", "cluster_ip", "ports", "endpoints"}
    assert dns_svc["namespace"] == "kube-system" and dns_svc["endpoints"] == ["10.244.1.3"]
    assert {(p["name"], p["protocol"]) for p in dns_svc["ports"]} == {("dns", "UDP"), ("dns-tcp", "TCP")}


def test_inventory_and_hosts(lab):
    inv = lab.inventory()
    assert [dataclasses.asdict(n)["netns"] for n in inv.nodes] == [lab.netns("node-a"), lab.netns("node-b")]
    # Pods live in CNI-named namespaces; friendly names only in the inventory.
    for p in inv.pods:
        assert p.netns.startswith("cni-") and p.name not in p.netns and lab.name not in p.netns
        assert p.netns == lab.netns(p.name) and os.path.exists(f"/run/netns/{p.netns}")
    assert len({p.netns for p in inv.pods}) == len(PODS)
    hosts = {h.name: h for h in lab.hosts()}
    assert set(hosts) == {"node-a", "node-b", "pod-a", "pod-a2", "pod-b", "coredns", "underlay"}
    assert (hosts["coredns"].kind, hosts["coredns"].node, hosts["coredns"].namespace) == ("pod", "node-b", "kube-system")
    assert hosts["underlay"].kind == "network" and hosts["node-a"].kind == "node"
    assert Lab.load(lab.name).name == lab.name
    with pytest.raises(LabError, match="is not up"):
        Lab.load("tnotup")


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_breaks_its_flow_and_clear_restores(lab, name):
    f = FAULTS[name]
    good, r = ok(lab, f.flow)
    assert good, f"healthy lab: {f.flow.text()} failed: {r.detail}"
    try:
        lab.inject(f.name)
        assert lab.faults() == [name]
        assert lab.drift(), "an injected fault must show as drift from what up builds"
        good, r = ok(lab, f.flow)
        assert not good, f"{name} injected, yet {f.flow.text()} works: {r.detail}"
    finally:
        lab.clear(f.name)
    assert lab.faults() == []
    assert lab.drift() == [], "clear must restore exactly what up built"
    good, r = ok(lab, f.flow)
    assert good, f"{name} cleared, yet {f.flow.text()} fails: {r.detail}"


def test_vtep_mac_stale_neighbour_and_fdb_agree_with_each_other_not_with_the_annotation(lab, ipr):
    """The stale-VTEP-MAC-after-reboot class: node-b's flannel.1 and its Node annotation carry the
    new MAC; node-a's permanent neighbour and FDB entry both still carry the old one."""
    from podpath.tracer.lab.build import fdb_of, neighs_of
    from podpath.tracer.lab.faults import REBOOTED_VTEP_MAC
    from podpath.tracer.lab.topology import mac_for

    b = node("node-b")
    assert REBOOTED_VTEP_MAC == mac_for("vtep/node-b/rebooted") != b.vtep_mac
    lab.inject("vtep-mac-stale")
    try:
        assert link(ipr("node-b"), "flannel.1").get("IFLA_ADDRESS") == REBOOTED_VTEP_MAC
        annotated = next(n for n in lab.inventory().nodes if n.name == "node-b").vtep_mac
        assert annotated == REBOOTED_VTEP_MAC
        a = ipr("node-a")
        idx = link(a, "flannel.1")["index"]
        neigh = next(e for e in neighs_of(a, idx) if e["dst"] == b.subnet_base)
        assert (neigh["lladdr"], b.underlay_ip) in fdb_of(a, idx)  # neighbour and FDB agree...
        assert neigh["lladdr"] == b.vtep_mac != annotated  # ...on the old MAC, not the annotation's
        assert not ok(lab, FAULTS["vtep-mac-stale"].flow)[0]
    finally:
        lab.clear("vtep-mac-stale")
    assert next(n for n in lab.inventory().nodes if n.name == "node-b").vtep_mac == b.vtep_mac
    assert ok(lab, FAULTS["vtep-mac-stale"].flow)[0]


def test_svc_no_endpoints_shows_in_the_inventory(lab):
    lab.inject("svc-no-endpoints")
    try:
        web = next(s for s in lab.inventory().services if s.name == "web")
        assert web.endpoints == []
    finally:
        lab.clear("svc-no-endpoints")
    assert len(next(s for s in lab.inventory().services if s.name == "web").endpoints) == 2


def test_inject_twice_and_clear_not_injected_are_noops(lab):
    assert "not injected" in lab.clear("fdb-missing")[0]
    lab.inject("fdb-missing")
    try:
        assert "already injected" in lab.inject("fdb-missing")[0]
        assert lab.faults() == ["fdb-missing"]
    finally:
        lab.clear("fdb-missing")
    with pytest.raises(UsageError, match="podpath lab fault list"):
        lab.inject("no-such-fault")


def test_up_repairs_injected_faults_and_a_half_built_lab(lab):
    from pyroute2 import IPRoute
    from pyroute2 import netns as pnetns

    from podpath.tracer.lab import processes

    several = ["pod-route-missing", "forward-drop", "fdb-wrong-dst", "duplicate-ip", "ip-forward-off",
               "mtu-mismatch", "no-listener", "svc-no-endpoints", "neigh-failed", "flannel-down", "veth-detached"]
    for name in several:
        lab.inject(name)
    # Half-built: pod-a2's namespace gone (its server keeps the old one alive), node-a's flannel.1 deleted.
    pnetns.remove(lab.netns("pod-a2"))
    with IPRoute(netns=lab.netns("node-a"), flags=0) as i:
        i.link("del", index=i.link("get", ifname="flannel.1")[0]["index"])
    changes = lab.up()
    assert any("faults undone" in c for c in changes)
    assert lab.faults() == [] and lab.drift() == []
    assert processes.server_pid(lab.names, pod("pod-a2"))
    for name in several:
        good, r = ok(lab, FAULTS[name].flow)
        assert good, f"{name}: {r.detail}"
    assert ok(lab, FaultFlow("pod-b", "pod-a2"))[0]
    assert lab.up() == []


def test_down_removes_everything_and_is_idempotent(lab):
    from podpath.tracer.lab import processes

    from podpath.tracer.lab.apiserver import control

    pids = [processes.server_pid(lab.names, p) for p in PODS if p.server]
    pids += [processes.holder_pid(lab.names, p) for p in PODS] + [control.server_pid(lab.names)]
    assert all(pids)
    lab.down()
    mine = set(lab.names.all_netns)
    assert not [ns for ns in os.listdir("/run/netns") if ns.startswith(f"{lab.name}-") or ns in mine]
    assert not any(Path(f"/proc/{pid}").exists() and
                   Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
                   for pid in pids)
    assert not any(Path(f"/etc/netns/{lab.netns(s)}").exists() for s in lab.names.all_short)
    assert not lab.names.state_file.exists() and not lab.names.run_dir.exists()
    assert lab.down() == []
    with pytest.raises(LabError, match="is not up"):
        Lab.load(lab.name)
