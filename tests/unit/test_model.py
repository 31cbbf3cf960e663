"""The path model and the checks on a saved bundle, without root.

The fixture `lab-healthy.json` is a real `podpath snapshot` of the netns lab (taken on this
machine with `podpath lab up --lab fx && podpath snapshot --lab fx -o ...`). Each test breaks one
kernel object in the bundle, the way a node breaks, and checks what a user would read: the
outcome, the cause, where, the object to blame and a fix that names it. The same breaks are made
for real in tests/lab/test_diagnose.py; these run anywhere.
"""

from __future__ import annotations

from itertools import permutations

import pytest

from podpath.tracer.bundle import Bundle, Neigh
from podpath.tracer.diagnose import diagnose
from podpath.tracer.errors import BundleError, UsageError
from podpath.tracer.model.routing import lookup
from lab_bundle import bundle, healthy  # noqa: F401, E402 - shared fixtures

PODS = ["pod-a", "pod-a2", "pod-b", "coredns"]



def errors(result):
    return [(f.cause, f.node, f.location) for f in result.errors]


@pytest.mark.parametrize("src,dst", list(permutations(PODS, 2)))
def test_healthy_lab_every_pod_pair_is_delivered_without_errors(healthy, src, dst):
    result = diagnose(healthy, src, dst)
    assert result.paths[0].outcome == "delivered"
    assert errors(result) == []


def test_cross_node_path_follows_flannel_data_path(healthy):
    path = diagnose(healthy, "pod-a", "pod-b").paths[0]
    request = [(h.host, h.device, h.point) for h in path.hops if h.direction == "request"
               and h.point in ("egress", "ingress", "encap", "decap", "deliver")]
    hosts = [h for h, _, _ in request]
    assert hosts[0] == "pod-a" and hosts[-1] == "pod-b"
    assert ("node-a", "flannel.1", "encap") in request
    assert ("node-b", "flannel.1", "decap") in request
    assert any(h == "underlay" for h in hosts), "the outer packet crosses the underlay switch"
    reply = [h for h in path.hops if h.direction == "reply"]
    assert reply and reply[-1].host == "pod-a" and reply[-1].point == "deliver"


def test_service_has_one_path_per_endpoint_each_delivered(healthy):
    result = diagnose(healthy, "pod-a", "svc/default/web:80")
    assert result.flow.proto == "tcp" and result.flow.dport == 80
    assert sorted(p.alternative for p in result.paths) == ["10.244.0.3:8080", "10.244.1.2:8080"]
    assert all(p.outcome == "delivered" for p in result.paths)
    assert [round(p.probability, 3) for p in result.paths] == [0.5, 0.5]  # kube-proxy's statistic split
    # the reply comes back from the ClusterIP, not the endpoint (conntrack's reverse DNAT)
    delivered = [h for h in result.paths[0].hops if h.direction == "reply" and h.point == "deliver"]
    assert delivered and delivered[-1].host == "pod-a"


def test_dns_query_to_kube_dns_is_delivered(healthy):
    result = diagnose(healthy, "pod-a", "svc/kube-system/kube-dns:53", proto="udp")
    assert result.paths[0].outcome == "delivered" and errors(result) == []


def test_missing_host_route_is_blamed_on_the_node_with_the_flannel_route_as_fix(bundle):
    node_a = bundle.host("node-a")
    node_a.routes = [r for r in node_a.routes if r.dst != "10.244.1.0/24"]
    result = diagnose(bundle, "pod-a", "pod-b")
    assert result.paths[0].outcome != "delivered"
    f = next(f for f in result.errors if f.cause == "host_route")
    assert (f.node, f.location) == ("node-a", "host")
    assert f.object == "10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink"
    assert "route replace 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink" in f.fix


def test_ip_forward_off_and_a_drop_rule_are_both_reported(bundle):
    """Two problems on one path: diagnose reports both, not only the first."""
    node_b = bundle.host("node-b")
    node_b.sysctls["net.ipv4.ip_forward"] = "0"
    node_b.iptables_save["nft"] = node_b.iptables_save["nft"].replace(
        ":FORWARD ACCEPT [0:0]\n", ":FORWARD ACCEPT [0:0]\n[0:0] -A FORWARD -d 10.244.1.0/24 -j DROP\n", 1)
    result = diagnose(bundle, "pod-a", "pod-b")
    causes = {c for c, n, _ in errors(result) if n == "node-b"}
    assert {"ip_forward", "iptables"} <= causes
    rule = next(f for f in result.errors if f.cause == "iptables")
    assert rule.object == "-A FORWARD -d 10.244.1.0/24 -j DROP"
    assert rule.fix.startswith("ip netns exec fx-node-b iptables -t filter -D FORWARD 1")


def test_wrong_vtep_mac_in_permanent_neighbour_is_an_arp_error(bundle):
    node_a = bundle.host("node-a")
    entry = next(n for n in node_a.neigh if n.ifname == "flannel.1" and n.dst == "10.244.1.0")
    entry.lladdr = "02:00:00:00:00:99"
    result = diagnose(bundle, "pod-a", "pod-b")
    f = next(f for f in result.errors if f.cause == "arp")
    assert (f.node, f.location) == ("node-a", "host") and "02:00:00:00:00:99" in f.object
    vtep = next(l.mac for l in bundle.host("node-b").links if l.name == "flannel.1")
    assert f"lladdr {vtep} dev flannel.1" in f.fix


def test_detached_veth_is_a_bridge_port_problem(bundle):
    node_b = bundle.host("node-b")
    veth = next(l for l in node_b.links if l.peer_host == "pod-b")
    veth.master = None
    result = diagnose(bundle, "pod-a", "pod-b")
    f = next(f for f in result.errors if f.cause == "bridge_port")
    assert f.node == "node-b" and f.device == veth.name and "master cni0" in f.fix
    assert result.paths[0].outcome == "dropped"


def test_mtu_only_breaks_packets_larger_than_the_hop(bundle):
    node_b = bundle.host("node-b")
    node_b.link("eth0").mtu = 1400
    assert diagnose(bundle, "pod-a", "pod-b").paths[0].outcome == "delivered"
    result = diagnose(bundle, "pod-a", "pod-b", size=1400)
    f = next(f for f in result.errors if f.cause == "mtu")
    assert (f.node, f.device) == ("node-b", "eth0")


def test_link_down_in_pod_blames_the_link_not_the_vanished_route(bundle):
    pod_b = bundle.host("pod-b")
    pod_b.link("eth0").up = False
    pod_b.routes = [r for r in pod_b.routes if r.dev != "eth0"]  # the kernel drops routes of a down link
    result = diagnose(bundle, "pod-a", "pod-b")
    assert ("link_down", "node-b", "pod-b") in errors(result)
    assert not any(c == "pod_route" for c, _, _ in errors(result))


def test_failed_neighbour_without_solicitation_breaks_the_last_hop(bundle):
    node_b = bundle.host("node-b")
    node_b.neigh = [n for n in node_b.neigh if n.dst != "10.244.1.2"]
    node_b.neigh.append(Neigh(ifname="cni0", dst="10.244.1.2", state=["FAILED"]))
    # a FAILED entry the kernel re-resolves is only a warning...
    result = diagnose(bundle, "pod-a", "pod-b")
    assert result.paths[0].outcome == "delivered"
    assert any(f.cause == "arp" and f.severity == "warning" for f in result.findings)
    # ...but with ARP solicitation off it is the drop
    node_b.sysctls["net.ipv4.neigh.cni0.mcast_solicit"] = "0"
    result = diagnose(bundle, "pod-a", "pod-b")
    assert ("arp", "node-b", "host") in errors(result)


def test_duplicate_ip_misdelivers_and_names_both_owners(bundle):
    coredns = bundle.host("coredns")
    from podpath.tracer.bundle import Addr

    coredns.addrs.append(Addr(ifname="eth0", address="10.244.1.2", prefixlen=24))
    mac = coredns.link("eth0").mac
    for n in bundle.host("node-b").neigh:
        if n.dst == "10.244.1.2":
            n.lladdr = mac
    result = diagnose(bundle, "pod-a", "pod-b")
    assert result.paths[0].outcome == "misdelivered"
    f = next(f for f in result.errors if f.cause == "ip_conflict")
    assert "pod-b/eth0" in f.object and "coredns/eth0" in f.object


def test_policy_rule_to_an_empty_table_is_followed(bundle):
    from podpath.tracer.bundle import Rule

    node_a = bundle.host("node-a")
    node_a.rules.append(Rule(priority=100, table=42, dst="10.244.1.0/24"))
    node_a.rules.append(Rule(priority=101, action="blackhole", dst="10.244.1.0/24"))
    assert lookup(node_a, "10.244.1.2").route.type == "blackhole"
    result = diagnose(bundle, "pod-a", "pod-b")
    assert ("host_route", "node-a", "host") in errors(result)


def test_no_targets_runs_node_wide_checks(bundle):
    assert diagnose(bundle).findings == []
    bundle.host("node-a").sysctls["net.ipv4.ip_forward"] = "0"
    assert ("ip_forward", "node-a", "host") in errors(diagnose(bundle))


@pytest.mark.parametrize("src,dst,needle", [
    ("pod-zz", "pod-b", "unknown target 'pod-zz'"),
    ("pod-a", "svc/default/nope", "unknown service default/nope"),
    ("pod-a", "svc/default/web:81", "has no port '81'"),
    ("pod-a", "svc//web", "malformed service"),
    ("svc/default/web", "pod-b", "source"),
])
def test_bad_targets_are_one_line_usage_errors(healthy, src, dst, needle):
    with pytest.raises(UsageError) as e:
        diagnose(healthy, src, dst)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_bad_flow_options_are_usage_errors(healthy):
    with pytest.raises(UsageError, match="--port"):
        diagnose(healthy, "pod-a", "pod-b", proto="tcp")
    with pytest.raises(UsageError, match="unknown protocol"):
        diagnose(healthy, "pod-a", "pod-b", proto="sctp")
    with pytest.raises(UsageError, match="ClusterIP does not answer ping"):
        diagnose(healthy, "pod-a", "svc/default/web", proto="icmp")


@pytest.mark.parametrize("text,needle", [
    ("not json", "not JSON"),
    ("[1, 2]", "no 'hosts'"),
    ('{"version": 99, "hosts": []}', "version 99"),
    ('{"version": 1, "hosts": [{"name": "x", "links": 5}]}', "malformed"),
])
def test_malformed_bundles_are_one_line_errors(text, needle):
    with pytest.raises(BundleError) as e:
        Bundle.from_json(text)
    assert needle in str(e.value)


def test_bundle_round_trips_through_json(healthy):
    again = Bundle.from_json(healthy.to_json())
    assert again == healthy


def test_narrower_pod_route_out_of_the_underlay_is_the_root_of_the_arp_failure(bundle):
    """A /25 of node-b's pod CIDR routed out of node-a's eth0: diagnose reports both the ARP failure
    on eth0 and the route; the route explains the ARP failure, so it is what trace names and fixes."""
    from podpath.tracer.bundle import Route
    from podpath.tracer.trace.explain import StopPoint, explain

    bundle.host("node-a").routes.append(Route(dst="10.244.1.0/25", dev="eth0", proto="boot", scope="link"))
    result = diagnose(bundle, "pod-a", "pod-b")
    assert {("arp", "node-a", "host"), ("host_route", "node-a", "host")} <= set(errors(result))
    stop = StopPoint("node-a", "host", "eth0", drop_reason="NEIGH_FAILED", status="dropped")
    f = explain(stop, result.findings)
    assert (f.cause, f.node, f.location) == ("host_route", "node-a", "host")
    assert f.fix.startswith("ip -n fx-node-a route del 10.244.1.0/25 dev eth0") and \
        f.fix.endswith("route replace 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink"), f.fix
