"""kube-proxy's IPVS mode: the path model through IPVS and the `ipvs` findings, without root.

This machine's kernel has no IPVS, so every test here uses fixtures written in the exact formats
`ipvsadm -Ln` and `ipvsadm -Sn` (ipvsadm 1.31's printf formats) and `ip a` print, read through the
same importer `podpath snapshot import` uses. `ipvs_lab()` turns the real netns-lab snapshot
(tests/fixtures/bundles/lab-healthy.json, kube-proxy in iptables mode) into the same cluster in
IPVS mode: each node gets kube-ipvs0 holding every ClusterIP /32, its IPVS table (node-a pasted as
`ipvsadm -Ln`, node-b as `ipvsadm -Sn`) and kube-proxy's IPVS-mode iptables rules. Each test then
breaks one IPVS object the way a node breaks, by editing that text, and checks what a user reads.
The Vagrant lab will run the same cases against a real IPVS kernel.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podpath.tracer.bundle import Bundle, IpvsDest, IpvsService
from podpath.tracer.diagnose import diagnose
from podpath.tracer.model.ipvs import dest_line, picks, service_line
from podpath.tracer.snapshot.importers import import_texts

FIX = Path(__file__).resolve().parent.parent / "fixtures"
IPVS = FIX / "ipvs"
TICKET = IPVS / "ticket"
WEB = "svc/default/web:80"
WEB_VS = "-A -t 10.96.0.100:80 -s rr"


def no_change(text: str) -> str:
    return text


def ipvs_lab(node_a=no_change, node_b=no_change) -> Bundle:
    """The lab snapshot in kube-proxy IPVS mode; `node_a`/`node_b` edit that node's pasted
    `ip a show kube-ipvs0` + ipvsadm text before it is read (to break one object)."""
    bundle = Bundle.from_json((FIX / "bundles" / "lab-healthy.json").read_text())
    for name, listing, edit in (("node-a", "ipvsadm-Ln", node_a), ("node-b", "ipvsadm-Sn", node_b)):
        node = bundle.host(name)
        text = (IPVS / f"{name}.kube-ipvs0.txt").read_text() + (IPVS / f"{name}.{listing}.txt").read_text()
        pasted = import_texts([(f"{name}.txt", edit(text))]).hosts[0]
        node.links += pasted.links
        node.addrs += pasted.addrs
        node.ipvs = pasted.ipvs
        node.iptables_save["nft"] = (IPVS / f"{name}.iptables-save").read_text()
        node.gaps.pop("ipvs", None)
    return bundle


def drop_lines(*needles: str):
    return lambda text: "\n".join(l for l in text.splitlines() if not any(n in l for n in needles)) + "\n"


def replace(old: str, new: str):
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new)
    return edit


def dest_ln(address: str, weight: int = 1, active: int = 0, inactive: int = 0) -> str:
    """A real-server line exactly as `ipvsadm -Ln` prints it."""
    return "  -> %-28s %-7s %-6d %-10u %-10u" % (address, "Masq", weight, active, inactive)


def ipvs_findings(result, severity: str | None = None):
    return [f for f in result.findings if f.cause == "ipvs" and severity in (None, f.severity)]


def errors(result):
    return [(f.cause, f.node, f.object) for f in result.errors]


# --- healthy ------------------------------------------------------------------------------------


def test_healthy_service_goes_through_ipvs_with_both_endpoints_as_alternatives():
    """Fixture (this kernel has no IPVS): pod-a → default/web in IPVS mode. The ClusterIP is local
    on node-a (kube-ipvs0), IPVS at LOCAL_IN picks each real server in turn, DNATs to it and the
    reply is un-DNATed by IPVS on node-a; no ipvs finding, no error."""
    result = diagnose(ipvs_lab(), "pod-a", WEB)
    assert sorted(p.alternative for p in result.paths) == ["10.244.0.3:8080", "10.244.1.2:8080"]
    assert [p.outcome for p in result.paths] == ["delivered", "delivered"]
    assert [round(p.probability, 3) for p in result.paths] == [0.5, 0.5]
    assert errors(result) == [] and ipvs_findings(result) == []
    for path in result.paths:
        route = next(h for h in path.hops if h.host == "node-a" and h.point == "route")
        assert route.detail == "10.96.0.100: local"  # kube-ipvs0 holds the ClusterIP
        (ipvs,) = [h for h in path.hops if h.point == "ipvs" and h.direction == "request"]
        assert (ipvs.host, ipvs.hook, ipvs.device) == ("node-a", "input", "cni0")
        assert f"DNAT 10.96.0.100 → {path.alternative.split(':')[0]}" in ipvs.detail
        assert [e.object for e in ipvs.evidence] == [WEB_VS, f"-a -t 10.96.0.100:80 -r {path.alternative} -m -w 1"]
        # IPVS, not an iptables DNAT rule, translated it; the request never crosses node-a's FORWARD
        assert not any("DNAT" in h.detail for h in path.hops if h.point == "netfilter")
        assert not any(h.host == "node-a" and h.hook == "forward" for h in path.hops if h.direction == "request")
        undo = [h for h in path.hops if h.direction == "reply" and h.point == "ipvs"]
        assert len(undo) == 1 and undo[0].host == "node-a" and "un-DNAT" in undo[0].detail
        delivered = [h for h in path.hops if h.direction == "reply" and h.point == "deliver"]
        assert delivered[-1].host == "pod-a"


def test_healthy_dns_and_node_wide_checks_find_nothing():
    """Fixture (this kernel has no IPVS): kube-dns over UDP through IPVS is delivered to coredns,
    and the node-wide checks see no problem (kube-ipvs0 is DOWN and holds the same ClusterIPs on
    both nodes by design: neither a down link nor an address conflict)."""
    bundle = ipvs_lab()
    result = diagnose(bundle, "pod-a", "svc/kube-system/kube-dns:53", proto="udp")
    assert [p.outcome for p in result.paths] == ["delivered"] and errors(result) == []
    assert any(h.point == "ipvs" and "UDP 10.96.0.10:53" in h.detail for h in result.paths[0].hops)
    assert diagnose(bundle).findings == []


def test_kube_proxy_ipset_rules_are_one_note_per_node():
    """Fixture (this kernel has no IPVS): kube-proxy's `-m set` rules cannot be evaluated without
    the ipset contents; diagnose says so once per node, as info, instead of once per rule."""
    result = diagnose(ipvs_lab(), "pod-a", WEB)
    notes = [f for f in result.findings if f.cause == "iptables"]
    assert {f.node for f in notes} == {"node-a", "node-b"} and all(f.severity == "info" for f in notes)
    assert "KUBE-CLUSTER-IP" in notes[0].object.split()


def test_node_itself_reaches_the_service_through_local_out():
    """Fixture (this kernel has no IPVS): from node-a's own stack IPVS schedules at LOCAL_OUT."""
    result = diagnose(ipvs_lab(), "node-a", WEB)
    assert [p.outcome for p in result.paths] == ["delivered", "delivered"]
    hooks = {h.hook for p in result.paths for h in p.hops if h.point == "ipvs" and h.direction == "request"}
    assert hooks == {"output"}


@pytest.mark.parametrize("scheduler,weights,shares", [
    ("rr", (1, 3), [0.5, 0.5]),  # the kernel's rr skips weight 0 and ignores the others
    ("wrr", (1, 3), [0.25, 0.75]),
    ("wlc", (2, 2), [0.5, 0.5]),
    ("fo", (1, 3), [1.0]),  # weighted failover: always the highest weight
])
def test_alternative_paths_carry_the_schedulers_share(scheduler, weights, shares):
    """Fixture (this kernel has no IPVS): one alternative path per schedulable real server, each
    with the share of new connections its scheduler gives it."""
    edit = replace(f"TCP  10.96.0.100:80 rr\n{dest_ln('10.244.0.3:8080')}\n{dest_ln('10.244.1.2:8080')}",
                   f"TCP  10.96.0.100:80 {scheduler}\n{dest_ln('10.244.0.3:8080', weights[0])}\n"
                   f"{dest_ln('10.244.1.2:8080', weights[1])}")
    result = diagnose(ipvs_lab(node_a=edit), "pod-a", WEB)
    assert sorted(round(p.probability, 3) for p in result.paths) == sorted(shares)
    assert all(p.outcome == "delivered" for p in result.paths)


# --- one finding per broken object ----------------------------------------------------------------


def test_cluster_ip_missing_from_kube_ipvs0():
    """Fixture (this kernel has no IPVS): node-a lost 10.96.0.100 from kube-ipvs0. A pod's packet
    is then not local, IPVS never sees it and node-a routes it away: lost, blamed on the missing
    address with the command that puts it back."""
    bundle = ipvs_lab(node_a=drop_lines("inet 10.96.0.100/32"))
    result = diagnose(bundle, "pod-a", WEB)
    assert [p.outcome for p in result.paths] == ["lost"]
    (f,) = ipvs_findings(result, "error")
    assert (f.node, f.location, f.object) == ("node-a", "host", "10.96.0.100/32 dev kube-ipvs0")
    assert f.fix.startswith("ip -n fx-node-a addr add 10.96.0.100/32 dev kube-ipvs0")
    assert {e.kind for e in f.evidence} == {"route", "ipvs"}
    assert errors(result) == [("ipvs", "node-a", "10.96.0.100/32 dev kube-ipvs0")]
    # node-a's own stack still reaches it: IPVS takes local traffic at LOCAL_OUT, VIP or not
    from_node = diagnose(bundle, "node-a", WEB)
    assert {p.outcome for p in from_node.paths} == {"delivered"}
    assert ("ipvs", "node-a", "10.96.0.100/32 dev kube-ipvs0") in errors(from_node)


def test_kube_ipvs0_missing_altogether():
    """Fixture (this kernel has no IPVS): node-b has IPVS services but no kube-ipvs0 at all."""
    bundle = ipvs_lab(node_b=lambda text: text[text.index("-A -t"):])  # without its `ip a` part
    result = diagnose(bundle)
    assert ("ipvs", "node-b", "kube-ipvs0 (missing)") in errors(result)
    assert "restart kube-proxy" in next(f for f in result.errors if f.node == "node-b").fix


def test_virtual_service_missing_for_the_service_port():
    """Fixture (this kernel has no IPVS): node-a has no virtual service for web's ClusterIP:80.
    The address is still on kube-ipvs0, so the node's own stack refuses the connection."""
    edit = drop_lines("TCP  10.96.0.100:80", "10.244.0.3:8080", "10.244.1.2:8080")
    result = diagnose(ipvs_lab(node_a=edit), "pod-a", WEB)
    assert [p.outcome for p in result.paths] == ["rejected"]
    (f,) = ipvs_findings(result, "error")
    assert (f.node, f.object) == ("node-a", WEB_VS)
    assert "no virtual service for TCP 10.96.0.100:80" in f.message and "default/web" in f.message
    assert f.fix.startswith("ip netns exec fx-node-a ipvsadm -A -t 10.96.0.100:80 -s rr && ")
    assert "ipvsadm -a -t 10.96.0.100:80 -r 10.244.0.3:8080 -m -w 1" in f.fix
    assert "ipvsadm -a -t 10.96.0.100:80 -r 10.244.1.2:8080 -m -w 1" in f.fix
    assert errors(result) == [("ipvs", "node-a", WEB_VS)]


def test_address_left_on_kube_ipvs0_without_any_virtual_service():
    """Fixture (this kernel has no IPVS): an address on kube-ipvs0 that no virtual service and no
    Service has (a deleted Service's, left behind) is reported with `ip addr del` as the fix."""
    edit = replace("    inet 10.96.0.100/32", "    inet 10.96.7.7/32 scope global kube-ipvs0\n"
                   "       valid_lft forever preferred_lft forever\n    inet 10.96.0.100/32")
    result = diagnose(ipvs_lab(node_b=edit))
    (f,) = ipvs_findings(result)
    assert (f.severity, f.node, f.object) == ("error", "node-b", "10.96.7.7/32 dev kube-ipvs0")
    assert f.fix.startswith("ip -n fx-node-b addr del 10.96.7.7/32 dev kube-ipvs0")


def test_virtual_service_without_real_servers():
    """Fixture (this kernel has no IPVS): web's virtual service on node-a has no real servers
    although the Service has two endpoints: IPVS answers ICMP port unreachable (rejected), and the
    fix adds the endpoints back."""
    result = diagnose(ipvs_lab(node_a=drop_lines("10.244.0.3:8080", "10.244.1.2:8080")), "pod-a", WEB)
    assert [p.outcome for p in result.paths] == ["rejected"]
    fail = next(h for h in result.paths[0].hops if h.status == "fail")
    assert (fail.host, fail.point, fail.reason) == ("node-a", "ipvs", "ipvs_no_dest")
    (f,) = ipvs_findings(result, "error")
    assert (f.node, f.object) == ("node-a", WEB_VS)
    assert "no real servers" in f.message and "has endpoints 10.244.0.3, 10.244.1.2" in f.message
    assert "ipvsadm -a -t 10.96.0.100:80 -r 10.244.1.2:8080 -m -w 1" in f.fix


def test_virtual_service_without_real_servers_and_a_service_without_endpoints():
    """Fixture (this kernel has no IPVS): when the Service has no endpoints either, the fix is to
    look at why (selector, readiness), not to add real servers."""
    bundle = ipvs_lab(node_a=drop_lines("10.244.0.3:8080", "10.244.1.2:8080"))
    next(s for s in bundle.inventory.services if s.name == "web").endpoints = []
    (f,) = ipvs_findings(diagnose(bundle, "pod-a", WEB), "error")
    assert "default/web has no ready endpoints" in f.message
    assert f.fix.startswith("kubectl -n default get endpointslices -l kubernetes.io/service-name=web")


def test_only_weight_zero_real_servers_refuse_like_none():
    """Fixture (this kernel has no IPVS): all real servers at weight 0: IPVS schedules nothing."""
    edit = replace(f"{dest_ln('10.244.0.3:8080')}\n{dest_ln('10.244.1.2:8080')}",
                   f"{dest_ln('10.244.0.3:8080', 0)}\n{dest_ln('10.244.1.2:8080', 0)}")
    result = diagnose(ipvs_lab(node_a=edit), "pod-a", WEB)
    assert [p.outcome for p in result.paths] == ["rejected"]
    assert [f.object for f in ipvs_findings(result, "error")] == [WEB_VS]
    assert "only weight-0 real servers" in ipvs_findings(result, "error")[0].message


def test_real_server_that_is_no_live_pod():
    """Fixture (this kernel has no IPVS): node-a still sends half of web's connections to
    10.244.1.9, an address no pod has. That alternative fails at IPVS's choice; the fix deletes
    the real server."""
    result = diagnose(ipvs_lab(node_a=replace("10.244.1.2:8080 ", "10.244.1.9:8080 ")), "pod-a", WEB)
    by_alt = {p.alternative: p for p in result.paths}
    assert by_alt["10.244.0.3:8080"].outcome == "delivered"
    assert by_alt["10.244.1.9:8080"].outcome == "dropped"
    (f,) = ipvs_findings(result, "error")
    assert (f.node, f.object) == ("node-a", "-a -t 10.96.0.100:80 -r 10.244.1.9:8080 -m -w 1")
    assert "no pod or node has that address" in f.message
    assert f.fix.startswith("ip netns exec fx-node-a ipvsadm -d -t 10.96.0.100:80 -r 10.244.1.9:8080")
    assert errors(result) == [("ipvs", "node-a", f.object)]  # not also an ARP error further on


def test_stale_real_server_on_another_node_is_a_warning_for_this_flow():
    """Fixture (this kernel has no IPVS): the same stale real server on node-b does not break
    pod-a's connections (node-a schedules them), so it is a warning there; node-wide, an error."""
    bundle = ipvs_lab(node_b=replace("10.244.1.2:8080 ", "10.244.1.9:8080 "))
    result = diagnose(bundle, "pod-a", WEB)
    assert all(p.outcome == "delivered" for p in result.paths)
    (f,) = ipvs_findings(result)
    assert (f.severity, f.node) == ("warning", "node-b")
    assert [(f.node, f.severity) for f in ipvs_findings(diagnose(bundle))] == [("node-b", "error")]


def test_real_server_whose_address_now_belongs_to_another_pod():
    """Fixture (this kernel has no IPVS): a real server at a live pod's address that is no
    endpoint of the Service (the IP was reused): named, with the pod that has it now."""
    result = diagnose(ipvs_lab(node_a=replace("10.244.1.2:8080 ", "10.244.1.3:8080 ")))
    (f,) = ipvs_findings(result)
    assert f.object == "-a -t 10.96.0.100:80 -r 10.244.1.3:8080 -m -w 1"
    assert "no endpoint of default/web (10.244.1.3 is coredns's address now)" in f.message


def test_weight_zero_left_behind_is_a_warning_and_not_scheduled():
    """Fixture (this kernel has no IPVS): a weight-0 real server with no connections left is
    stale (kube-proxy deletes drained ones); IPVS sends it nothing, so one path remains."""
    edit = replace(dest_ln("10.244.1.2:8080"), dest_ln("10.244.1.2:8080", 0))
    result = diagnose(ipvs_lab(node_a=edit), "pod-a", WEB)
    assert [(p.alternative, p.probability) for p in result.paths] == [(None, 1.0)]
    assert result.paths[0].outcome == "delivered" and errors(result) == []
    (f,) = ipvs_findings(result)
    assert (f.severity, f.object) == ("warning", "-a -t 10.96.0.100:80 -r 10.244.1.2:8080 -m -w 0")
    assert "left behind" in f.message and "ipvsadm -d -t 10.96.0.100:80 -r 10.244.1.2:8080" in f.fix


def test_weight_zero_still_draining_is_only_info():
    """Fixture (this kernel has no IPVS): weight 0 with connections left is an endpoint draining."""
    edit = replace(dest_ln("10.244.1.2:8080"), dest_ln("10.244.1.2:8080", 0, 1, 3))
    (f,) = ipvs_findings(diagnose(ipvs_lab(node_a=edit)))
    assert f.severity == "info" and "still 4 connections" in f.message


def test_virtual_service_on_another_port_than_the_service():
    """Fixture (this kernel has no IPVS): node-a serves web's ClusterIP on 8080, but the Service
    port is 80. One finding names the wrong virtual service and re-creates it on the right port."""
    result = diagnose(ipvs_lab(node_a=replace("TCP  10.96.0.100:80 rr", "TCP  10.96.0.100:8080 rr")),
                      "pod-a", WEB)
    assert [p.outcome for p in result.paths] == ["rejected"]
    (f,) = ipvs_findings(result, "error")
    assert (f.node, f.object) == ("node-a", "-A -t 10.96.0.100:8080 -s rr")
    assert "default/web's TCP port is 80" in f.message
    assert "ipvsadm -D -t 10.96.0.100:8080 && " in f.fix and "ipvsadm -A -t 10.96.0.100:80 -s rr" in f.fix
    assert "ipvsadm -a -t 10.96.0.100:80 -r 10.244.0.3:8080 -m -w 1" in f.fix


def test_real_server_port_differs_from_the_target_port():
    """Fixture (this kernel has no IPVS): a real server on port 80 while web targets 8080."""
    result = diagnose(ipvs_lab(node_a=replace("10.244.0.3:8080 ", "10.244.0.3:80   ")), "pod-a", WEB)
    (f,) = ipvs_findings(result, "error")
    assert (f.node, f.object) == ("node-a", "-a -t 10.96.0.100:80 -r 10.244.0.3:80 -m -w 1")
    assert "targets port 8080" in f.message
    assert "ipvsadm -a -t 10.96.0.100:80 -r 10.244.0.3:8080 -m -w 1" in f.fix
    # that alternative would reach a port pod-a2 does not serve: blamed on IPVS, not on pod-a2's socket
    assert {p.alternative: p.outcome for p in result.paths} == {"10.244.0.3:80": "rejected",
                                                                 "10.244.1.2:8080": "delivered"}
    assert errors(result) == [("ipvs", "node-a", f.object)]


def test_scheduler_differs_from_kube_proxys():
    """Fixture (this kernel has no IPVS): one virtual service with another scheduler than every
    other on the node (kube-proxy sets one for all): a warning with `ipvsadm -E` as the fix."""
    result = diagnose(ipvs_lab(node_b=replace("-A -t 10.96.0.100:80 -s rr", "-A -t 10.96.0.100:80 -s sh")))
    (f,) = ipvs_findings(result)
    assert (f.severity, f.node, f.object) == ("warning", "node-b", "-A -t 10.96.0.100:80 -s sh")
    assert f.fix == "ip netns exec fx-node-b ipvsadm -E -t 10.96.0.100:80 -s rr"


def test_ipvs_bundle_round_trips_through_json():
    """Fixture (this kernel has no IPVS): a saved IPVS-mode bundle re-analyses offline alike."""
    bundle = ipvs_lab(node_a=replace(dest_ln("10.244.1.2:8080"), dest_ln("10.244.1.2:8080", 0)))
    again = Bundle.from_json(bundle.to_json())
    assert again == bundle
    assert diagnose(again, "pod-a", WEB).to_dict() == diagnose(bundle, "pod-a", WEB).to_dict()


# --- a pasted ticket ------------------------------------------------------------------------------


def ticket(listing: str = "Ln") -> Bundle:
    node1 = (TICKET / "node1.txt").read_text()
    if listing == "Sn":
        start, end = node1.index("[root@node1 ~]# ipvsadm -Ln"), node1.index("[root@node1 ~]# iptables-save")
        node1 = node1[:start] + "[root@node1 ~]# ipvsadm -Sn\n" + (TICKET / "node1.ipvsadm-Sn.txt").read_text() + \
            "\n" + node1[end:]
    return import_texts([("node1.txt", node1), ("pod1.txt", (TICKET / "pod1.txt").read_text())])


@pytest.mark.parametrize("listing", ["Ln", "Sn"])
def test_pasted_ticket_diagnoses_the_cluster_ip_missing_from_kube_ipvs0(listing):
    """Fixture (this kernel has no IPVS): a ticket pasting node1's `ip a`, `ip r`, `ipvsadm -Ln`
    (or -Sn) and `iptables-save`, plus a pod's `ip a` and `ip r` via kubectl exec. The shop
    Service's virtual service exists, but its ClusterIP is not on kube-ipvs0: the pod's packets are
    routed out to the default gateway and lost."""
    bundle = ticket(listing)
    node1 = bundle.host("node1")
    assert set(node1.sources) >= {"ip a", "ip r", f"ipvsadm -{listing}", "iptables-save"}
    assert "unparsed" not in node1.gaps or "Thanks" in node1.gaps["unparsed"]
    result = diagnose(bundle, "pod1", "10.96.14.52", proto="tcp", port=80)
    assert [p.outcome for p in result.paths] == ["lost"]
    fail = next(h for h in result.paths[0].hops if h.status == "fail")
    assert (fail.host, fail.point, fail.reason) == ("node1", "ipvs", "ipvs_vip_not_local")
    assert "default via 192.168.56.1 dev eth0" in fail.detail
    assert errors(result) == [("ipvs", "node1", "10.96.14.52/32 dev kube-ipvs0")]
    assert result.errors[0].fix.startswith("ip addr add 10.96.14.52/32 dev kube-ipvs0")
    assert errors(diagnose(bundle)) == [("ipvs", "node1", "10.96.14.52/32 dev kube-ipvs0")]


def test_pasted_ticket_through_the_cli(tmp_path):
    """Fixture (this kernel has no IPVS): the same ticket through `podpath snapshot import` and
    `podpath diagnose -o json`, the JSON contract other tools read."""
    bundle = tmp_path / "ticket.json"
    cli = [sys.executable, "-c", "from podpath.cli.main import main; main()"]
    imported = subprocess.run(cli + ["snapshot", "import", str(TICKET / "node1.txt"), str(TICKET / "pod1.txt"),
                                     "-o", str(bundle)], capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0, imported.stderr
    run = subprocess.run(cli + ["diagnose", "pod1", "10.96.14.52", "--proto", "tcp", "--port", "80",
                                "--bundle", str(bundle), "-o", "json"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, run.stderr  # errors found
    out = json.loads(run.stdout)
    assert out["outcome"] == "lost"
    first = out["findings"][0]
    assert {k: first[k] for k in ("cause", "severity", "node", "location", "object")} == {
        "cause": "ipvs", "severity": "error", "node": "node1", "location": "host",
        "object": "10.96.14.52/32 dev kube-ipvs0"}
    assert first["fix"].startswith("ip addr add 10.96.14.52/32 dev kube-ipvs0")


# --- properties ---------------------------------------------------------------------------------

SCHEDULERS = ["rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"]
octet = st.integers(0, 255)
address = st.builds(lambda a, b, c, d: f"{a}.{b}.{c}.{d}", octet, octet, octet, octet)
port = st.integers(1, 65535)
dests = st.lists(st.builds(IpvsDest, address=address, port=port, forward=st.sampled_from(["Masq", "Route", "Tunnel"]),
                           weight=st.integers(0, 65535)),
                 max_size=6, unique_by=lambda d: (d.address, d.port))
services = st.builds(IpvsService, proto=st.sampled_from(["TCP", "UDP", "SCTP"]), address=address, port=port,
                     scheduler=st.sampled_from(SCHEDULERS), dests=dests)
fwmark_services = st.builds(lambda mark, sched, ds: IpvsService(proto="FWM", address=None, port=None, fwmark=mark,
                                                                scheduler=sched, dests=ds),
                            st.integers(1, 2 ** 32 - 1), st.sampled_from(SCHEDULERS), dests)


@given(services)
def test_picks_never_schedule_weight_zero_and_shares_sum_to_one(svc):
    """Generated tables instead of a fixture (this kernel has no IPVS): what the schedulers can pick."""
    chosen = picks(svc)
    assert all(p.dest.weight > 0 for p in chosen)
    if any(d.weight > 0 for d in svc.dests):
        assert abs(sum(p.share for p in chosen) - 1) < 1e-9
    else:
        assert chosen == []


@settings(max_examples=60)
@given(st.lists(st.one_of(services, fwmark_services), max_size=5,
                unique_by=lambda s: (s.proto if s.fwmark is None else "FWM", s.address, s.port, s.fwmark)))
def test_rendered_objects_read_back_as_ipvsadm_save(table):
    """Generated text instead of a fixture (this kernel has no IPVS to print a table): objects are
    printed as `ipvsadm -Sn` lines so users can paste them, and the importer reads them back to
    the same table."""
    text = "".join(service_line(s) + "\n" + "".join(dest_line(s, d) + "\n" for d in s.dests) for s in table)
    if not table:
        return
    read = import_texts([("node.txt", text)]).hosts[0].ipvs
    assert read == table
