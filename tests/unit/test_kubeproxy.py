"""kube-proxy (iptables mode) and flannel rule rendering, and the lab's static catalog. No root needed."""

from __future__ import annotations

import re

import pytest

from podpath.tracer.bundle import Inventory
from podpath.tracer.errors import UsageError
from podpath.tracer.lab import dns, kubeproxy
from podpath.tracer.lab.faults import FAULTS, FaultFlow
from podpath.tracer.lab.topology import (
    NODES,
    PODS,
    Names,
    base_inventory,
    check_lab_name,
    node,
    pod,
    service_rules,
)

# --------------------------------------------------------------------------- chain names


@pytest.mark.parametrize("spn, proto, chain", [
    ("kube-system/kube-dns:dns", "udp", "KUBE-SVC-TCOU7JCQXEZGVUNU"),
    ("kube-system/kube-dns:dns-tcp", "tcp", "KUBE-SVC-ERIFXISQEP7F7OF4"),
    ("kube-system/kube-dns:metrics", "tcp", "KUBE-SVC-JD5MR3NA4I4DYORP"),
    ("default/kubernetes:https", "tcp", "KUBE-SVC-NPX46M4PTMTKRN6Y"),
    ("kube-system/kube-dns:dns", "UDP", "KUBE-SVC-TCOU7JCQXEZGVUNU"),  # protocol is lower-cased
])
def test_svc_chain_matches_kube_proxy(spn, proto, chain):
    assert kubeproxy.svc_chain(spn, proto) == chain


@pytest.mark.parametrize("spn, proto, endpoint, chain", [
    # From a real cluster's iptables-save (k3s, flannel): the hash includes the endpoint "ip:port".
    ("kube-system/kube-dns:dns", "udp", "10.42.0.7:53", "KUBE-SEP-4SSQDR46DMIXOOUO"),
    ("kube-system/kube-dns:dns-tcp", "tcp", "10.42.0.7:53", "KUBE-SEP-SPW6OHKWQYLI5PJR"),
    ("default/redis", "tcp", "10.42.0.11:6379", "KUBE-SEP-GP4EVLOCJ42DFVEM"),  # unnamed port
])
def test_sep_chain_includes_endpoint(spn, proto, endpoint, chain):
    assert kubeproxy.sep_chain(spn, proto, endpoint) == chain


def test_service_port_name_without_port_name():
    assert kubeproxy.service_port_name("default", "redis", "") == "default/redis"
    assert kubeproxy.service_port_name("default", "web", "http") == "default/web:http"


@pytest.mark.parametrize("n, printed", [(2, "0.50000000000"), (3, "0.33333333349"), (4, "0.25000000000"),
                                        (5, "0.20000000019")])
def test_probability_as_iptables_save_prints_it(n, printed):
    assert kubeproxy.probability(n) == printed


# --------------------------------------------------------------------------- rendered rules


def _nat(no_endpoints=frozenset()):
    return kubeproxy.render_node(node("node-a"), service_rules(no_endpoints))["nat"]


def _filter(no_endpoints=frozenset()):
    return kubeproxy.render_node(node("node-a"), service_rules(no_endpoints))["filter"]


def test_kube_dns_rules_exactly_as_kube_proxy_writes_them():
    nat = _nat()
    sep = kubeproxy.sep_chain("kube-system/kube-dns:dns", "udp", "10.244.1.3:53")
    assert ('-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" '
            "-m udp --dport 53 -j KUBE-SVC-TCOU7JCQXEZGVUNU") in nat.rules["KUBE-SERVICES"]
    assert nat.rules["KUBE-SVC-TCOU7JCQXEZGVUNU"] == [
        '-A KUBE-SVC-TCOU7JCQXEZGVUNU ! -s 10.244.0.0/16 -d 10.96.0.10/32 -p udp -m comment --comment '
        '"kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-MARK-MASQ',
        f'-A KUBE-SVC-TCOU7JCQXEZGVUNU -m comment --comment "kube-system/kube-dns:dns -> 10.244.1.3:53" -j {sep}',
    ]
    assert nat.rules[sep] == [
        f'-A {sep} -s 10.244.1.3/32 -m comment --comment "kube-system/kube-dns:dns" -j KUBE-MARK-MASQ',
        f'-A {sep} -p udp -m comment --comment "kube-system/kube-dns:dns" -m udp -j DNAT --to-destination 10.244.1.3:53',
    ]


def test_two_endpoints_split_with_statistic_on_the_first_only():
    nat = _nat()
    svc = kubeproxy.svc_chain("default/web:http", "tcp")
    jumps = [r for r in nat.rules[svc] if "KUBE-SEP-" in r]
    assert len(jumps) == 2
    assert "--comment \"default/web:http -> 10.244.0.3:8080\" -m statistic --mode random " \
           "--probability 0.50000000000 -j KUBE-SEP-" in jumps[0]
    assert "statistic" not in jumps[1] and "10.244.1.2:8080" in jumps[1]


def test_nodeports_jump_is_last_in_kube_services():
    assert nat_last().endswith("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")


def nat_last() -> str:
    return _nat().rules["KUBE-SERVICES"][-1]


def test_service_without_endpoints_is_a_filter_reject_and_no_nat_chains():
    f, nat = _filter({"default/web"}), _nat({"default/web"})
    assert f.rules["KUBE-SERVICES"] == [
        '-A KUBE-SERVICES -d 10.96.0.100/32 -p tcp -m comment --comment "default/web:http has no endpoints" '
        "-m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable"]
    web_svc = kubeproxy.svc_chain("default/web:http", "tcp")
    assert web_svc not in nat.chains
    assert not any("default/web" in r for r in nat.rules["KUBE-SERVICES"])
    assert "KUBE-SVC-TCOU7JCQXEZGVUNU" in nat.chains  # other services untouched


def test_flannel_rules_for_the_node_subnet():
    t = kubeproxy.render_node(node("node-b"), service_rules())
    assert t["filter"].rules["FLANNEL-FWD"] == [
        '-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
        '-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
    ]
    post = t["nat"].rules["FLANNEL-POSTRTG"]
    assert '-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN' in post
    assert post[-2].endswith("-j MASQUERADE --random-fully") and "! -d 224.0.0.0/4" in post[-2]
    assert t["filter"].rules["FORWARD"][-1] == '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD'
    assert t["nat"].rules["POSTROUTING"] == [
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
    ]


def test_restore_text_flushes_builtins_and_deletes_stale_chains():
    tables = kubeproxy.render_node(node("node-a"), service_rules({"default/web"}))
    stale = kubeproxy.svc_chain("default/web:http", "tcp")
    text = kubeproxy.restore_text(tables, {"nat": {stale, "KUBE-SERVICES"}, "filter": set()})
    lines = text.splitlines()
    assert lines[0] == "*filter" and lines.count("COMMIT") == 2
    assert "-F FORWARD" in lines and "-F POSTROUTING" in lines
    assert f":{stale} - [0:0]" in lines and lines[lines.index("COMMIT", lines.index("*nat")) - 1] == f"-X {stale}"


def test_services_only_restore_leaves_builtin_and_flannel_chains_alone():
    tables = kubeproxy.render_node(node("node-a"), service_rules({"default/web"}))
    text = kubeproxy.restore_text(tables, {}, services_only=True)
    assert "-F " not in text and "FLANNEL" not in text and "KUBE-FIREWALL" not in text
    assert ":KUBE-SERVICES - [0:0]" in text and "has no endpoints" in text


def test_parse_save_round_trip_and_diff():
    tables = kubeproxy.render_node(node("node-a"), service_rules())
    save = "# Generated by iptables-save v1.8.9 (nf_tables)\n"
    for name, t in tables.items():
        save += f"*{name}\n"
        save += "".join(f":{b} ACCEPT [0:0]\n" for b in kubeproxy.BUILTIN[name])
        save += "".join(f":{c} - [0:0]\n" for c in t.chains)
        save += "\n".join(t.lines()) + "\nCOMMIT\n"
    parsed = kubeproxy.parse_save(save)
    assert kubeproxy.diff(tables, parsed) == []
    parsed["filter"].rules["FORWARD"].insert(0, "-A FORWARD -d 10.244.1.0/24 -j DROP")
    assert kubeproxy.diff(tables, parsed) == ["filter FORWARD: 6 rules differ from the 5 expected"]
    assert kubeproxy.diff(tables, {})  # nothing written yet


# --------------------------------------------------------------------------- lab catalog (static)

CAUSES = {"pod_route", "host_route", "iptables", "ipvs", "ip_conflict", "link_down", "arp", "dns", "fdb",
          "ip_forward", "rp_filter", "mtu", "bridge_port", "no_listener", "unknown"}
REQUIRED = {
    "pod-route-missing": "pod_route", "host-route-missing": "host_route", "forward-drop": "iptables",
    "pod-eth0-down": "link_down", "flannel-down": "link_down", "neigh-wrong-mac": "arp", "fdb-missing": "fdb",
    "fdb-wrong-dst": "fdb", "duplicate-ip": "ip_conflict", "ip-forward-off": "ip_forward",
    "rp-filter-strict": "rp_filter", "mtu-mismatch": "mtu", "veth-detached": "bridge_port",
    "svc-no-endpoints": "iptables", "dns-blocked": "dns", "no-listener": "no_listener", "neigh-failed": "arp",
}


def test_catalog_has_every_required_fault_with_its_cause():
    for name, cause in REQUIRED.items():
        assert name in FAULTS, name
        assert FAULTS[name].cause == cause, name


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_entry_is_well_formed(name):
    from podpath.tracer.lab import probe

    f = FAULTS[name]
    assert f.name == name and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name)
    assert f.cause in CAUSES
    assert f.node in {n.name for n in NODES}
    assert f.location == "host" or f.location in {p.name for p in PODS}
    if f.location != "host":
        assert pod(f.location).node == f.node
    assert f.summary and callable(f.apply) and callable(f.revert)
    probe.resolve(Names("t0"), f.flow.src, f.flow.dst, f.flow.proto, f.flow.port, f.flow.size)  # resolvable
    d = f.to_dict()
    assert set(d) >= {"name", "cause", "node", "location", "summary", "flow"}


def test_flow_text():
    assert FaultFlow("pod-a", "pod-b").text() == "pod-a -> pod-b icmp"
    assert FaultFlow("pod-a", "pod-b", "tcp", 8080).text() == "pod-a -> pod-b tcp/8080"
    assert FaultFlow("pod-a", "svc/default/web:80", "tcp", 80).text() == "pod-a -> svc/default/web:80 tcp"
    assert FaultFlow("pod-a", "pod-b", size=1400).text() == "pod-a -> pod-b icmp size 1400"


def test_probe_resolve_rejects_unknown_targets():
    from podpath.tracer.lab import probe

    with pytest.raises(UsageError):
        probe.resolve(Names("t0"), "nope", "pod-b")
    with pytest.raises(UsageError):
        probe.resolve(Names("t0"), "pod-a", "svc/default/nope:80", "tcp")
    t = probe.resolve(Names("t0"), "10.244.0.2", "svc/kube-system/kube-dns:53", "udp")
    assert (t.src_pod, t.src_netns, t.dst_ip, t.port) == ("pod-a", Names("t0").netns("pod-a"), "10.96.0.10", 53)


def test_topology_names_are_stable_and_flannel_like():
    for p in PODS:
        assert re.fullmatch(r"veth[0-9a-f]{8}", p.host_veth)
        assert p.mac.startswith("0a:58:")
    a, b = node("node-a"), node("node-b")
    assert a.vtep_mac != b.vtep_mac and int(a.vtep_mac[:2], 16) & 0x03 == 0x02  # local, unicast
    assert Names("pp").netns("node-a") == "pp-node-a"
    # Pods: `cni-<uuid>` as CNI names them, the uuid stable per (lab, pod) and distinct across labs.
    pod_ns = Names("pp").netns("pod-a")
    assert re.fullmatch(r"cni-[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", pod_ns)
    assert pod_ns == Names("pp").netns("pod-a") != Names("pq").netns("pod-a") != Names("pp").netns("pod-b")
    assert str(Names("pp").state_file) == "/run/podpath/labs/pp.json"
    for bad in ("", "PP", "p-p", "1pp", "averyveryverylongname"):
        with pytest.raises(UsageError):
            check_lab_name(bad)


def test_base_inventory_contract():
    inv = base_inventory("pp")
    assert isinstance(inv, Inventory)
    assert [n.name for n in inv.nodes] == ["node-a", "node-b"]
    coredns = next(p for p in inv.pods if p.name == "coredns")
    assert (coredns.namespace, coredns.node, coredns.netns) == ("kube-system", "node-b", Names("pp").netns("coredns"))
    assert coredns.netns.startswith("cni-")
    web = next(s for s in inv.services if s.name == "web")
    assert web.cluster_ip == "10.96.0.100" and sorted(web.endpoints) == ["10.244.0.3", "10.244.1.2"]
    assert [(p.name, p.port, p.protocol, p.target_port) for p in web.ports] == [("http", 80, "TCP", 8080)]


def test_dnsmasq_serves_every_service_name():
    argv = dns.dnsmasq_argv(pod("coredns"), Names("pp").pid_file("coredns"))
    assert "--host-record=kube-dns.kube-system.svc.cluster.local,10.96.0.10" in argv
    assert "--host-record=web.default.svc.cluster.local,10.96.0.100" in argv
    assert "--no-resolv" in argv and "--no-hosts" in argv and "--listen-address=10.244.1.3" in argv
    assert "--pid-file=/run/podpath/labs/pp/coredns.pid" in argv
