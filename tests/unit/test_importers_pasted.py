"""Pasted output as operators really paste it (issue 11): the right hosts, nothing invented, absent
is not empty, and the causes found.

Fixtures, because the point is text from other machines: pastes shaped after public issue threads
(tests/fixtures/pasted/threads, each naming its thread) and pastes written for one defect class
(tests/fixtures/pasted/written). IPVS pastes stand in for a kernel this machine does not have.
Each test imports the text and asks what a user would: which hosts, what they hold, what
`diagnose` reports.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from podpath.tracer.bundle import Addr, Route
from podpath.tracer.diagnose import diagnose
from podpath.tracer.errors import BundleError
from podpath.tracer.netfilter.iptables import parse_save
from podpath.tracer.snapshot.importers import Words, import_texts, normalise
from podpath.tracer.snapshot.importers.prompts import header_at, prompt_host
from podpath.tracer.snapshot.importers.scanner import sections

PASTED = Path(__file__).resolve().parent.parent / "fixtures" / "pasted"
CORPUS = sorted(list((PASTED / "threads").glob("*.txt")) + list((PASTED / "written").glob("*.txt")))


def paste(name: str) -> str:
    """The paste of a corpus file: what follows its metadata (source, classes) and the `----` line."""
    path = next(p for p in CORPUS if p.name == name)
    meta, sep, text = path.read_text().partition("----\n")
    assert sep and ("## source: https://" in meta or "## written:" in meta), f"{name} must name its source"
    return text


def bundle_of(name: str):
    return import_texts([(name, paste(name))])


def findings(bundle, severity: str | None = None):
    return [(f.cause, f.node, f.severity) for f in diagnose(bundle).findings if severity in (None, f.severity)]


# --- 1. imported hosts are nodes ---------------------------------------------------------------


def test_a_pasted_host_with_flannel_devices_is_a_node():
    h = bundle_of("flannel_1387_master.txt").hosts[0]
    assert (h.kind, h.node) == ("node", "flannel_1387_master")


def test_a_sysctl_only_paste_is_checked_as_a_node():
    b = bundle_of("sysctl_only.txt")
    assert b.hosts[0].kind == "node"
    assert findings(b, "error") == [("ip_forward", "sysctl_only", "error")]


def test_a_pod_paste_stays_unknown_not_a_node():
    pod_ip_a = paste("exec_prefixes.txt").split("root@node1:~# kubectl exec -n shop web-5f7c9d -c app -- ip a\n")[1]
    pod_ip_a = pod_ip_a.split("root@node1:~#")[0]
    h = import_texts([("web.txt", pod_ip_a)]).hosts[0]
    assert h.kind == "unknown"  # only lo and a veth eth0: a pod's inside, not a node


# --- 2. absent is not empty --------------------------------------------------------------------


def test_ipvs_without_ip_a_is_not_checked_rather_than_missing():
    d = diagnose(bundle_of("opsnull_251_ipvsadm.txt"))
    assert [(f.cause, f.severity) for f in d.findings] == [("ipvs", "info")]
    assert d.findings[0].message.startswith("not checked: no ip a output")
    assert d.partial and "links" in d.not_pasted["opsnull_251_ipvsadm"]


def test_half_pasted_ipvs_says_not_checked_on_both_sides():
    d = diagnose(bundle_of("ipvs_half_pasted.txt"))
    assert sorted((f.node, f.severity, f.message.split("(")[0].strip()) for f in d.findings) == [
        ("node-a", "info", "not checked: no ipvsadm output from node-a"),
        ("node-b", "info", "not checked: no ip a output from node-b"),
    ]


def test_no_fdb_pasted_is_not_checked_not_missing_entries():
    text = paste("json_forms.txt").split("$ bridge -j fdb")[0]  # a healthy node (a negative control below), less its FDB
    d = diagnose(import_texts([("n1.txt", text)]))
    assert [(f.cause, f.severity, f.object) for f in d.findings] == \
        [("fdb", "info", "bridge fdb of n1 (not pasted)")]


# --- 3. several hosts in one paste --------------------------------------------------------------


def test_prompts_with_different_host_names_are_different_hosts():
    b = bundle_of("k3s_1719_two_nodes.txt")
    assert [h.name for h in b.hosts] == ["k3s-master", "k3s-worker"]
    master, worker = b.hosts
    assert [(a.ifname, a.address) for a in master.addrs] == [("enp0s3", "192.168.1.72")]
    assert [(a.ifname, a.address) for a in worker.addrs] == [("enp0s3", "192.168.1.73")]
    assert master.link("enp0s3").mac == "08:00:27:15:3a:2a" and worker.link("enp0s3").mac == "08:00:27:8a:89:53"
    assert [(f.mac, f.dst) for f in master.fdb] == [("d6:ad:6b:77:37:eb", "192.168.1.73")]
    assert [(f.mac, f.dst) for f in worker.fdb] == [("ca:a3:3a:8f:57:36", "192.168.1.72")]


def test_one_prompt_host_throughout_keeps_the_file_name():
    b = import_texts([("ticket-9.txt", "[root@node1 ~]# sysctl net.ipv4.ip_forward\nnet.ipv4.ip_forward = 1\n"
                                       "[root@node1 ~]# ip r\ndefault via 10.0.0.1 dev eth0\n")])
    assert [h.name for h in b.hosts] == ["ticket-9"]


def test_headers_start_hosts():
    b = bundle_of("headers_three_nodes.txt")
    assert [(h.name, h.sysctls["net.ipv4.ip_forward"]) for h in b.hosts] == \
        [("node1", "1"), ("worker1", "0"), ("worker2", "1")]
    assert findings(b, "error") == [("ip_forward", "worker1", "error")]


@pytest.mark.parametrize("line,host", [("=== node3 ===", "node3"), ("--- worker-2 ---", "worker-2"),
                                       ("==> master1 <==", "master1"), ("# worker1", "worker1"),
                                       ("## node02", "node02"), ("=== ip a ===", None)])
def test_header_forms(line, host):
    w = Words(line)
    assert header_at(w, 0) == (host, w.n)


@pytest.mark.parametrize("line", ["# ip a", "# notes", "# Generated by iptables-save v1.8.7 on x", "----"])
def test_not_headers(line):
    assert header_at(Words(line), 0) is None


def test_two_hosts_without_a_boundary_are_not_merged_silently():
    worker = paste("k3s_1719_two_nodes.txt").split("Worker:")[1].replace("[root@k3s-worker ~]# ", "")
    master = paste("k3s_1719_two_nodes.txt").split("Worker:")[0].replace("[root@k3s-master ~]# ", "")
    h = import_texts([("both.txt", master + worker)]).hosts[0]
    assert "enp0s3 was pasted twice with different MACs (08:00:27:15:3a:2a, then 08:00:27:8a:89:53)" \
        in h.gaps["two hosts?"]


def test_exec_prefixes_attribute_output_to_the_pod_or_namespace():
    b = bundle_of("exec_prefixes.txt")
    by_name = {h.name: h for h in b.hosts}
    assert set(by_name) == {"exec_prefixes", "web-5f7c9d", "cni-4f1c2d3e-aaaa", "pid-31337"}
    node = by_name["exec_prefixes"]
    assert sorted(a.address for a in node.addrs) == ["10.244.0.1", "127.0.0.1", "192.168.56.11"]
    assert [(r.dst, r.dev) for r in node.routes] == [("default", "eth0"), ("10.244.0.0/24", "cni0")]
    web = by_name["web-5f7c9d"]
    assert (web.kind, web.namespace, web.node) == ("pod", "shop", None)  # kubectl runs anywhere
    assert [a.address for a in web.addrs if a.ifname == "eth0"] == ["10.244.0.7"]
    ns = by_name["cni-4f1c2d3e-aaaa"]
    assert (ns.kind, ns.node, ns.netns) == ("pod", "exec_prefixes", "cni-4f1c2d3e-aaaa")
    assert [r.dev for r in ns.routes] == ["eth0", "eth0"]
    assert by_name["pid-31337"].neigh[0].dst == "10.244.0.1"


# --- 4. input is not state -----------------------------------------------------------------------


def test_heredoc_tee_echo_and_sysctl_w_do_not_overwrite_a_reading():
    h = bundle_of("heredoc_sysctl.txt").hosts[0]
    assert h.sysctls == {"net.ipv4.ip_forward": "0"}  # not the heredoc's, tee's, the conf file's or -w's 1
    assert "here-document are input" in h.gaps["input"] and "sysctl -w" in h.gaps["input"]
    assert ("ip_forward", "heredoc_sysctl", "error") in findings(import_texts([("heredoc_sysctl.txt",
                                                                                paste("heredoc_sysctl.txt"))]))


def test_sysctl_w_without_prompt_is_input_too():
    h = import_texts([("n.txt", "net.ipv4.ip_forward = 0\nsysctl -w net.ipv4.ip_forward=1\n"
                                "net.ipv4.ip_forward = 1\nip r\ndefault via 10.0.0.1 dev eth0\n")]).hosts[0]
    assert h.sysctls == {"net.ipv4.ip_forward": "0"} and len(h.routes) == 1


def test_a_paste_of_input_only_is_refused_with_one_line():
    with pytest.raises(BundleError, match="only input .* not what the kernel printed"):
        import_texts([("n.txt", "$ sudo sysctl -w net.ipv4.ip_forward=1\nnet.ipv4.ip_forward = 1\n")])


def test_ifconfig_netstat_and_brctl_are_read_as_what_they_are():
    h = bundle_of("ifconfig_netstat.txt").hosts[0]
    assert h.sources == ["ifconfig", "netstat -rn", "brctl show"]
    assert [r.text() for r in h.routes] == ["default via 192.168.56.1 dev eth0",
                                            "10.244.0.0/24 dev cni0 scope link",
                                            "10.244.1.0/24 via 10.244.1.0 dev flannel.1",
                                            "192.168.56.0/24 dev eth0 scope link"]
    assert not [r for r in h.routes if r.dst.startswith("0.0.0.0") or r.type == "broadcast"]
    assert Addr(ifname="flannel.1", address="10.244.0.0", prefixlen=32) in h.addrs
    assert Addr(ifname="eth0", address="192.168.56.11", prefixlen=24) in h.addrs
    assert (h.link("eth0").mac, h.link("eth0").mtu, h.link("cni0").kind) == ("08:00:27:6e:13:47", 1500, "bridge")
    assert h.link("veth1a2b3c4d").master == "cni0"
    assert "unparsed" not in h.gaps


# --- 5. redacted and odd values ------------------------------------------------------------------


def test_redacted_values_are_reported_with_their_line_not_as_ipv6():
    h = bundle_of("redacted_routes.txt").hosts[0]
    assert "ipv6" not in h.gaps
    assert "line 2: `default via 10.xx.xx.1 dev eth0`: gateway '10.xx.xx.1' is redacted" in h.gaps["redacted"]
    assert "line 5: `<node-subnet> dev eth0" in h.gaps["redacted"]
    assert [r.dst for r in h.routes] == ["10.244.0.0/24", "10.244.1.0/24"]


def test_address_less_inet_line_is_reported():
    h = bundle_of("flannel_1387_master.txt").hosts[0]
    assert h.gaps["unparsed values"].startswith("line 15: `inet \t scope global flannel.1`: an inet line without an "
                                                "address")
    assert [a.address for a in h.addrs if a.ifname == "flannel.1"] == []


# --- 6. fragments --------------------------------------------------------------------------------


def test_rules_without_a_table_line_are_put_in_their_table_and_evaluated():
    h = bundle_of("fragment_kube_services.txt").hosts[0]
    legacy = parse_save(h.iptables_save["legacy"])
    assert legacy.tables["filter"].chains["FORWARD"].policy == "DROP"
    assert [r.text.split(" -m")[0] for r in legacy.tables["filter"].chains["KUBE-FORWARD"].rules] == \
        ["-A KUBE-FORWARD -s 10.244.0.0/16", "-A KUBE-FORWARD -d 10.244.0.0/16"]
    sep = legacy.tables["nat"].chains["KUBE-SEP-IT2ZTR26TO4XFPTO"].rules[0]
    assert sep.text.endswith("-j DNAT --to-destination 10.244.0.5:53")
    assert "table inferred (filter for FORWARD, KUBE-FORWARD, nat for KUBE-SERVICES" in h.gaps["iptables"]


def test_the_legacy_warning_starts_the_legacy_ruleset():
    h = bundle_of("legacy_warning.txt").hosts[0]
    nft = parse_save(h.iptables_save["nft"])
    assert list(nft.tables) == ["filter"]
    assert "KUBE-SERVICES" in parse_save(h.iptables_save["legacy"]).tables["nat"].chains


def test_a_table_pasted_whole_wins_over_a_fragment_of_it():
    text = paste("fragment_kube_services.txt") + paste("legacy_warning.txt").split("# Warning:")[1].split("\n", 1)[1]
    h = import_texts([("n.txt", text)]).hosts[0]
    nat = parse_save(h.iptables_save["legacy"]).tables["nat"]
    assert "KUBE-SEP-IT2ZTR26TO4XFPTO" not in nat.chains and "KUBE-SERVICES" in nat.chains
    assert "table nat was pasted whole; the fragment's rules for it were left out" in h.gaps["iptables"]


def test_iptables_S_reads_into_the_commands_table_and_L_is_said_not_evaluated():
    b = bundle_of("iptables_S_and_L.txt")
    h = b.hosts[0]
    rules = parse_save(h.iptables_save["legacy"])
    assert rules.tables["filter"].chains["FORWARD"].policy == "DROP"
    assert [r.text for r in rules.tables["nat"].chains["KUBE-SERVICES"].rules] == \
        ["-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m udp --dport 53 -j KUBE-SVC-TCOU7JCQXEZGVUNU"]
    assert "is not evaluated" in h.gaps["iptables -L"] and "iptables -P FORWARD ACCEPT" in h.gaps["input"]
    f = next(f for f in diagnose(b).findings if f.cause == "iptables")  # the -P typed later changed nothing
    assert (f.severity, f.object) == ("error", ":FORWARD DROP (legacy filter)")


def test_iptables_L_of_a_thread_is_reported_never_read_as_rules_or_routes():
    b = bundle_of("kubernetes_61005_iptables_L.txt")
    h = b.hosts[0]
    assert (h.iptables_save, h.routes, h.sources) == ({}, [], ["iptables -L"])
    assert "chain FORWARD, policy DROP" in h.gaps["iptables -L"] and "unparsed" not in h.gaps
    d = diagnose(b)
    assert d.findings == [] and "iptables" in d.not_pasted["kubernetes_61005_iptables_L"]


def test_xtables_save_header_means_nf_tables():
    h = bundle_of("kubernetes_72370_xtables.txt").hosts[0]
    assert list(h.iptables_save) == ["nft"]


def test_ipvs_persistence_is_kept():
    svc = next(s for s in bundle_of("opsnull_251_ipvsadm.txt").hosts[0].ipvs if s.port == 443)
    assert (svc.address, svc.persistent) == ("10.254.0.1", 10800)


# --- 7. checks partial data allows ---------------------------------------------------------------


def test_own_pod_subnet_routed_off_cni0_and_two_routes_for_it():
    d = diagnose(bundle_of("flannel_2554_stale_route.txt"))
    assert [(f.cause, f.severity, f.object) for f in d.findings] == [
        ("host_route", "error", "10.244.5.0/24 via 10.244.5.0 dev flannel.1 proto boot onlink"),
        ("host_route", "error", "10.244.5.0/24 dev cni0 proto kernel scope link src 10.244.5.1"),
    ]
    assert d.findings[0].fix.startswith("ip route del 10.244.5.0/24 via 10.244.5.0 dev flannel.1")


def test_stale_vtep_mac_on_another_node():
    d = diagnose(bundle_of("flannel_533_stale_vtep.txt"))
    got = {(f.cause, f.node, f.severity, f.object) for f in d.findings if f.severity != "info"}
    assert got == {
        ("arp", "node-2", "error", "10.2.47.0 dev flannel.1 lladdr 2e:97:1b:c0:6a:33 PERMANENT"),
        ("fdb", "node-2", "warning", "2e:97:1b:c0:6a:33 dev flannel.1 dst 172.17.4.101 self permanent"),
    }
    assert not [f for f in d.findings if f.cause == "ip_conflict"]  # a stale VTEP, not a duplicate IP


def test_stale_vtep_across_hosts_without_any_vtep_mac_known():
    text = ("=== a ===\n$ ip neigh\n10.244.9.0 dev flannel.1 lladdr 0e:00:00:00:00:01 PERMANENT\n"
            "=== b ===\n$ ip neigh\n10.244.9.0 dev flannel.1 lladdr 0e:00:00:00:00:01 PERMANENT\n"
            "=== c ===\n$ ip neigh\n10.244.9.0 dev flannel.1 lladdr 0e:00:00:00:00:99 PERMANENT\n")
    d = diagnose(import_texts([("t.txt", text)]))
    assert [(f.cause, f.node, f.severity) for f in d.findings if f.severity != "info"] == [("arp", "c", "warning")]
    assert "stale VTEP" in d.findings[0].message


def test_failed_multicast_neighbours_are_no_arp_failure():
    d = diagnose(bundle_of("multicast_failed.txt"))
    assert [(f.cause, f.object) for f in d.findings] == [("arp", "10.244.0.77 dev cni0 FAILED")]


def test_forward_drop_without_accept_for_the_cluster_cidr():
    d = diagnose(bundle_of("kubernetes_72370_xtables.txt"))
    f = next(f for f in d.findings if f.cause == "iptables")
    assert (f.severity, f.object, f.hook) == ("error", ":FORWARD DROP (nft filter)", "forward")
    assert f.fix.startswith("iptables -A FORWARD -s 10.244.0.0/16 -j ACCEPT && iptables -A FORWARD -d 10.244.0.0/16")


# --- 8. JSON forms -------------------------------------------------------------------------------


def test_json_forms_equal_their_text_forms():
    h = bundle_of("json_forms.txt").hosts[0]
    assert {"ip a", "ip r", "ip neigh", "bridge fdb"} <= set(h.sources)
    assert [(l.name, l.kind, l.up, l.mtu) for l in h.links] == [
        ("lo", "loopback", True, 65536), ("eth0", "ether", True, 1500), ("flannel.1", "vxlan", True, 1450),
        ("cni0", "bridge", True, 1450)]
    assert h.routes[2] == Route(dst="10.244.1.0/24", gateway="10.244.1.0", dev="flannel.1", onlink=True,
                                proto="boot", scope="global")
    assert [(n.dst, n.lladdr, n.state) for n in h.neigh][0] == ("10.244.1.0", "5e:1a:22:90:0b:7c", ["PERMANENT"])
    assert [f.text() for f in h.fdb] == ["5e:1a:22:90:0b:7c dev flannel.1 dst 192.168.56.12 self permanent"]
    text = "\n".join(l for l in paste("json_forms.txt").splitlines() if not l.startswith("$"))
    assert [c for c in {h.name: h for h in import_texts([("x.txt", text)]).hosts}["x"].sources] == \
        ["ip a", "ip r", "ip neigh", "bridge fdb", "ip -j"]  # without command lines too


# --- 9. diagnose says what it could not use ----------------------------------------------------


def test_diagnose_cli_lists_tables_not_pasted_and_says_partial(tmp_path):
    f = tmp_path / "worker1.txt"
    f.write_text(paste("redacted_routes.txt"))
    bundle = tmp_path / "b.json"
    cli = [sys.executable, "-c", "from podpath.cli.main import main; main()"]
    r = subprocess.run(cli + ["snapshot", "import", str(f), "-o", str(bundle)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(cli + ["diagnose", "--bundle", str(bundle)], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in r.stderr
    assert "worker1: not pasted, so not checked: links, fdb, iptables, ipvs, sysctl" in r.stdout
    assert "worker1: redacted: line 2: `default via 10.xx.xx.1 dev eth0`" in r.stdout
    assert "partial data" in r.stderr
    r = subprocess.run(cli + ["diagnose", "--bundle", str(bundle), "-o", "json"], capture_output=True, text=True,
                       timeout=60)
    out = json.loads(r.stdout)
    assert out["partial"] is True and out["not_pasted"] == {"worker1": ["links", "fdb", "iptables", "ipvs", "sysctl"]}
    assert "redacted" in out["not_parsed"]["worker1"]


# --- negative controls ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["healthy_two_nodes.txt", "flannel_342_arp_fdb.txt", "kubeadm_1461_filter_c.txt",
                                  "k3s_1719_two_nodes.txt", "ifconfig_netstat.txt", "json_forms.txt"])
def test_healthy_pastes_give_no_warning_or_error(name):
    assert [f for f in diagnose(bundle_of(name)).findings if f.severity != "info"] == []


def test_healthy_two_nodes_are_complete_and_not_partial():
    b = bundle_of("healthy_two_nodes.txt")
    assert [h.name for h in b.hosts] == ["node1", "node2"]
    d = diagnose(b)
    assert d.findings == [] and d.not_pasted == {"node1": ["ipvs"], "node2": ["iptables", "ipvs"]}


def test_every_corpus_file_imports_and_names_its_source():
    for path in CORPUS:
        b = bundle_of(path.name)
        assert b.hosts, path.name
        assert all(h.sources for h in b.hosts), path.name


@pytest.mark.parametrize("name", [p.name for p in CORPUS if p.name != "headers_three_nodes.txt"])
def test_chat_squashed_pastes_give_the_same_hosts(name):
    """Chat loses the newlines; every host must still hold what it held. (Not `# worker1` headers:
    without its line, `#` is a root prompt or a comment.)"""
    text = paste(name)
    normal = {h.name: host_view(h) for h in import_texts([(name, text)]).hosts}
    squashed = {h.name: host_view(h) for h in import_texts([(name, text.replace("\n", " "))]).hosts}
    assert squashed == normal


# --- the property: mixing pastes never moves output between hosts ------------------------------


def host_view(h) -> dict:
    d = dataclasses.asdict(h)
    d.pop("gaps")
    d["sources"] = sorted(d["sources"])
    return d


def boundaries(text: str, default: str) -> list[tuple[int, str]]:
    """Line indices of a paste where a host is named (a header or a prompt naming a host), plus its
    start and end, each with the section (host) the importer is in there."""
    lines = text.split("\n")
    w = Words(normalise(text))
    by_line, _ = sections(w, default)
    out = [(0, default)]
    for i in range(w.n):
        if w.bol[i] and (header_at(w, i) or prompt_host(w, i)):
            n = w.lines[i] - 1
            out.append((n, by_line[n - 1] if n > 0 else default))
    out.append((len(lines), by_line[-1] if by_line else default))
    return out


NAMES = [p.name for p in CORPUS]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(NAMES), st.sampled_from(NAMES), st.data())
def test_mixing_a_paste_into_another_never_changes_another_hosts_data(a_name, b_name, data):
    """Insert paste B (under a header naming it) into paste A where A names a host (or at either end),
    then resume A's section: every host of A and of B holds exactly what it held alone."""
    assume(a_name != b_name)
    a, b = paste(a_name), paste(b_name)
    a_stem, b_stem = Path(a_name).stem, Path(b_name).stem
    alone_a = {h.name: host_view(h) for h in import_texts([(a_name, a)]).hosts}
    alone_b = {h.name: host_view(h) for h in import_texts([(b_name, b)]).hosts}
    a_sections = set(sections(Words(normalise(a)), a_stem)[1])
    b_sections = set(sections(Words(normalise(b)), b_stem)[1])
    assume(not (set(alone_a) | a_sections) & (set(alone_b) | b_sections))  # one name, one host: merged by design
    n, section = data.draw(st.sampled_from(boundaries(a, a_stem)))
    lines = a.split("\n")
    mixed = "\n".join(lines[:n] + [f"=== {b_stem} ===", b.rstrip("\n"), f"=== {section} ==="] + lines[n:])
    together = {h.name: host_view(h) for h in import_texts([(a_name, mixed)]).hosts}
    for name, view in list(alone_a.items()) + list(alone_b.items()):
        assert together.get(name) == view, f"{name} changed when {b_name} was pasted into {a_name} at line {n}"
