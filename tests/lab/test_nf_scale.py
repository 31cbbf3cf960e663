"""Netfilter at cluster scale on a real lab (root only): thousands of kube-proxy Services loaded
with iptables-restore, native nft tables next to iptables-nft's, and the snapshot and model
reading them. Every rule and table is made inside the lab's own namespaces, which the module's
finalizer deletes even when a test fails.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT_BPF_LAB, bpf_lab

pytestmark = ROOT_BPF_LAB

from podpath.tracer.bundle import Bundle  # noqa: E402
from podpath.tracer.diagnose import diagnose  # noqa: E402
from podpath.tracer.lab import kubeproxy, nsutil  # noqa: E402
from podpath.tracer.lab import topology as T  # noqa: E402
from podpath.tracer.netfilter import Netfilter, Packet  # noqa: E402
from podpath.tracer.lab.source import lab_snapshot  # noqa: E402

SERVICES = 2000


def synthetic_services() -> list:
    return [T.ServiceRules(T.ServiceSpec(f"svc-{i}", "bench", f"10.100.{i // 250}.{i % 250 + 1}",
                                         (T.ServicePort("http", 80, "TCP", 8080),), ()),
                           {"http": [T.Endpoint(f"10.244.9.{i % 250 + 2}", 8080),
                                     T.Endpoint(f"10.244.9.{i % 250 + 3}", 8080)]})
            for i in range(SERVICES)]


def load_services(lab) -> None:
    services = T.service_rules() + synthetic_services()
    for node in T.NODES:
        ns = lab.netns(node.name)
        live = kubeproxy.parse_save(nsutil.run(ns, ["iptables-save"]).stdout)
        text = kubeproxy.restore_text(kubeproxy.render_node(node, services),
                                      {name: set(t.chains) for name, t in live.items()})
        nsutil.run(ns, ["iptables-restore", "--noflush", "-w"], input=text, timeout=120)


def add_services(lab) -> None:
    """The synthetic Services' chains, and their KUBE-SERVICES rules inserted in front, leaving the
    lab's own rules (and a fault made in them) as they are."""
    for node in T.NODES:
        nat = kubeproxy.render_node(node, synthetic_services())["nat"]
        mine = [c for c in nat.chains if c.startswith(("KUBE-SVC-", "KUBE-SEP-"))]
        lines = ["*nat"] + [f":{c} - [0:0]" for c in mine]
        lines += [r for c in mine for r in nat.rules[c]]
        lines += [r.replace("-A KUBE-SERVICES ", "-I KUBE-SERVICES 1 ", 1)
                  for r in nat.rules["KUBE-SERVICES"] if '"bench/' in r]
        nsutil.run(lab.netns(node.name), ["iptables-restore", "--noflush", "-w"],
                   input="\n".join(lines + ["COMMIT", ""]), timeout=120)


@pytest.fixture(scope="module")
def lab(request):
    lab = bpf_lab(request, "nfs")
    load_services(lab)
    return lab


def sh(ns: str, *argv: str, input: str | None = None) -> str:
    p = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                       input=input, timeout=60)
    assert p.returncode == 0, f"{' '.join(argv)}: {p.stderr}"
    return p.stdout


def test_service_among_thousands_is_delivered_through_its_own_rules(lab):
    bundle = lab_snapshot(lab.name)
    node_a = bundle.host("node-a")
    assert node_a.iptables_save["nft"].count("-A KUBE-SERVICES ") > SERVICES
    result = diagnose(bundle, "pod-a", "svc/default/web:80")
    assert sorted(p.alternative for p in result.paths) == ["10.244.0.3:8080", "10.244.1.2:8080"]
    assert all(p.outcome == "delivered" for p in result.paths)
    # the KUBE-SERVICES rule the verdict names is web's, quoted exactly as iptables-save printed it
    nf = Netfilter.from_host(node_a)
    alts = nf.evaluate("output", Packet("10.244.0.2", "10.96.0.100", "tcp", 40000, 80, oif="cni0"))
    services = {r.text for a in alts for r in a.trail if r.chain == "KUBE-SERVICES"}
    assert len(services) == 1 and "10.96.0.100/32" in services.pop()
    bad = nf.evaluate("output", Packet("10.244.0.2", "10.100.7.208", "tcp", 40000, 80, oif="cni0"))
    assert {a.packet.dst for a in bad} == {"10.244.9.209", "10.244.9.210"}  # svc-1957's endpoints


def test_snapshot_keeps_native_nft_tables_and_does_not_repeat_iptables_nft_rules(lab):
    ns = lab.netns("node-b")
    b_ip = next(p.ip for p in lab.inventory().pods if p.name == "pod-b")
    sh(ns, "nft", "-f", "-", input="table inet ppscale {\n chain guard { type filter hook forward priority 10;\n"
       f"  ip daddr {b_ip} counter drop\n }}\n}}\n")
    try:
        bundle = lab_snapshot(lab.name)
    finally:
        sh(ns, "nft", "delete", "table", "inet", "ppscale")
    items = bundle.host("node-b").nftables["nftables"]
    tables = {(i["table"]["family"], i["table"]["name"]) for i in items if "table" in i}
    assert {("ip", "filter"), ("ip", "nat"), ("inet", "ppscale")} <= tables
    rule_tables = {i["rule"]["table"] for i in items if "rule" in i}
    assert rule_tables == {"ppscale"}  # iptables-nft's 10,000s of rules are in iptables_save only
    result = diagnose(Bundle.from_json(bundle.to_json()), "pod-a", "pod-b")  # also through a file
    assert result.paths[0].outcome == "dropped"
    assert any("ppscale" in f.object + f.message for f in result.errors), result.errors


def test_a_snapshot_for_a_bundle_reads_every_rule_at_once(lab):
    """`snapshot -o` (whole_rules): each big namespace's rules are read whole in its own thread, the
    same text iptables-nft-save prints; without it they are read per chain as a walk needs them."""
    from podpath.tracer.netfilter.live import LiveSaves
    from podpath.tracer.snapshot.live import whole_rules

    lazy = lab_snapshot(lab.name).host("node-a").iptables_save
    assert isinstance(lazy, LiveSaves) and lazy.pending("nft") is not None
    with whole_rules():
        bundle = lab_snapshot(lab.name)
    for node in ("node-a", "node-b"):
        saves = bundle.host(node).iptables_save
        assert not isinstance(saves, LiveSaves) or saves.pending("nft") is None  # already read, whole
        saved = sh(lab.netns(node), "iptables-nft-save", "-c")
        def rules(text): return [re.sub(r"\[\d+:\d+\]", "", l) for l in text.splitlines() if l[:1] in "[:-*"]  # counters move
        assert rules(saves["nft"]) == rules(saved) and len(rules(saved)) > 6 * SERVICES
    result = diagnose(Bundle.from_json(bundle.to_json()), "pod-a", "svc/default/web:80")
    assert all(p.outcome == "delivered" for p in result.paths)


def test_chain_names_over_netlink_are_the_chains_iptables_save_declares(lab):
    from podpath.tracer.netfilter.netlink import chain_names
    from podpath.tracer.netns import run_in

    ns = lab.netns("node-a")
    names = run_in(ns, chain_names)
    declared: dict[str, set[str]] = {}
    table = None
    for line in sh(ns, "iptables-nft-save").splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            declared.setdefault(table, set()).add(line[1:].split()[0])
    assert {t: set(c) for t, c in names.items() if t in declared} == declared
    assert all(len(c) == len(set(c)) for c in names.values()) and len(names["nat"]) > 3 * SERVICES


def test_chain_listings_read_back_exactly_as_iptables_save_prints_them(lab):
    """What the counters re-read uses (`iptables -S CHAIN -v`, per chain) gives the same rule text,
    counters and chain headers as iptables-save, on thousands of real kube-proxy rules."""
    from podpath.tracer.netfilter.iptables import listing_to_save

    ns = lab.netns("node-a")
    odd = '-d 10.250.0.9/32 -m comment --comment "a \\"quoted\\" -c 1 2" -j LOG --log-prefix "p -c 3 4 "'
    sh(ns, "iptables", "-t", "filter", "-I", "FORWARD", "1", *shlex.split(odd))
    try:
        for table in ("nat", "filter"):
            listed = listing_to_save(table, sh(ns, "iptables-nft", "-t", table, "-S", "-v"))
            saved = sh(ns, "iptables-nft-save", "-c", "-t", table)
            def body(text): return sorted(l for l in text.splitlines() if l[:1] in "[:-")
            assert body(listed) == body(saved), table
            assert len(body(saved)) > (3 * SERVICES if table == "nat" else 10)
    finally:
        subprocess.run(["ip", "netns", "exec", ns, "iptables", "-t", "filter", "-D", "FORWARD", "1"])


def test_counters_after_a_drop_reread_only_the_drop_chains_and_name_the_rule(lab):
    """A real ping dropped on node-b among thousands of Services: the re-read lists only chains
    holding DROP/REJECT rules or a DROP policy (no KUBE-SVC/KUBE-SEP chain), and the rule whose
    counter rose is the one that dropped it."""
    from podpath.tracer.trace.counters import deltas, reread_rules

    ns = lab.netns("node-b")
    b_ip = next(p.ip for p in lab.inventory().pods if p.name == "pod-b")
    rule = ["-d", f"{b_ip}/32", "-p", "icmp", "-m", "comment", "--comment", "nfs guard", "-j", "DROP"]
    sh(ns, "iptables", "-N", "NFS-GUARD")
    try:
        sh(ns, "iptables", "-A", "NFS-GUARD", *rule)
        sh(ns, "iptables", "-I", "FORWARD", "1", "-j", "NFS-GUARD")
        before = lab_snapshot(lab.name).host("node-b")
        subprocess.run(["ip", "netns", "exec", lab.netns("pod-a"), "ping", "-c", "2", "-i", "0.2", "-W", "1", b_ip],
                       capture_output=True, timeout=10)
        after = reread_rules(before)
        chains = {l.split()[0][1:] for l in after.iptables_save["nft"].splitlines() if l.startswith(":")}
        assert "NFS-GUARD" in chains and not any(c.startswith(("KUBE-SVC-", "KUBE-SEP-")) for c in chains), chains
        found = deltas(before, after)
        assert [(d.rule.chain, d.rule.number, d.packets) for d in found] == [("NFS-GUARD", 1, 2)], found
        assert found[0].rule.text == f'-A NFS-GUARD -d {b_ip}/32 -p icmp -m comment --comment "nfs guard" -j DROP'
    finally:
        for argv in (["-D", "FORWARD", "-j", "NFS-GUARD"], ["-F", "NFS-GUARD"], ["-X", "NFS-GUARD"]):
            subprocess.run(["ip", "netns", "exec", ns, "iptables", *argv], capture_output=True)


FLOWS = [("pod-a", "pod-b", {}), ("pod-a", "svc/default/web:80", {}),
         ("pod-b", "10.100.7.208", {"proto": "tcp", "port": 80}),  # svc-1957, among the thousands
         ("pod-a", "svc/kube-system/kube-dns:53", {"proto": "udp"})]


def same_answers(lab) -> None:
    """A live snapshot (big rulesets read per chain) and the same snapshot read whole (its bundle
    through JSON) diagnose every flow alike, and the live one read no whole ruleset for it."""
    from podpath.tracer.netfilter.live import LiveSaves

    snap = lab_snapshot(lab.name)
    for src, dst, kw in FLOWS:
        diagnose(snap, src, dst, **kw)
    for node in ("node-a", "node-b"):
        saves = snap.host(node).iptables_save
        assert isinstance(saves, LiveSaves) and saves.pending("nft") is not None, node  # not read whole
        assert 0 < saves.pending("nft").reads < 40, (node, saves.pending("nft").reads)
    whole = Bundle.from_json(snap.to_json())  # writing the bundle reads everything
    assert whole.host("node-a").iptables_save["nft"].count("-A KUBE-SEP-") >= 2 * SERVICES
    for src, dst, kw in FLOWS:
        live, full = diagnose(snap, src, dst, **kw).to_dict(), diagnose(whole, src, dst, **kw).to_dict()
        assert live == full, (src, dst)


def test_a_big_live_ruleset_is_read_per_chain_and_answers_as_if_read_whole(lab):
    same_answers(lab)


@pytest.mark.parametrize("fault", ["svc-stale-endpoint", "dns-no-endpoints"])
def test_kube_proxy_checks_find_the_same_faults_in_a_big_live_ruleset(lab, fault):
    """The checks that read kube-proxy's rules (stale KUBE-SEP targets, DNS without endpoints)
    follow only the chains they need in a live ruleset, and find what a whole read finds."""
    try:
        lab.inject(fault)
        add_services(lab)  # the fault's kube-proxy sync deleted them
        found = {f.cause for f in diagnose(lab_snapshot(lab.name), *FLOWS[1][:2]).findings}
        assert found & {"iptables", "dns"}, found
        same_answers(lab)
    finally:
        lab.clear(fault)
        load_services(lab)


def test_a_cluster_ip_among_thousands_is_found_in_a_live_ruleset_without_the_api(lab):
    """No Services from the API: the ClusterIP is looked up in kube-proxy's KUBE-SERVICES rules,
    which a big live ruleset reads as one chain, not whole."""
    from podpath.tracer.netfilter.live import LiveSaves

    snap = lab_snapshot(lab.name)
    snap.inventory.services = []
    result = diagnose(snap, "pod-b", "10.100.7.208", proto="tcp", port=80)  # svc-1957
    assert sorted(p.alternative for p in result.paths) == ["10.244.9.209:8080", "10.244.9.210:8080"]
    saves = snap.host("node-b").iptables_save
    assert isinstance(saves, LiveSaves) and saves.pending("nft") is not None


def test_a_commit_elsewhere_between_the_snapshot_and_the_walk_is_read_through(lab):
    """kube-proxy commits every few seconds on a busy node. A commit that leaves every chain the
    walk already read as it was (here: a new, unrelated chain) does not stop diagnose: the table is
    read again as one generation and the walk goes on in it."""
    ns = lab.netns("node-a")
    snap = lab_snapshot(lab.name)
    sh(ns, "iptables", "-t", "nat", "-N", "NFS-GEN")  # any commit moves the generation on
    try:
        result = diagnose(snap, "pod-a", "svc/default/web:80")
    finally:
        sh(ns, "iptables", "-t", "nat", "-X", "NFS-GEN")
    assert all(p.outcome == "delivered" for p in result.paths)


def test_rules_changed_under_the_walk_are_reported_not_mixed(lab):
    """A commit that changed a chain the walk already read (KUBE-SERVICES, read with the snapshot)
    would make one walk of two rulesets: diagnose stops with one line naming the chain."""
    from podpath.tracer.errors import BundleError

    ns = lab.netns("node-a")
    snap = lab_snapshot(lab.name)
    rule = ["KUBE-SERVICES", "-d", "10.100.255.254/32", "-p", "tcp", "--dport", "9", "-j", "RETURN"]
    sh(ns, "iptables", "-t", "nat", "-I", *rule)
    try:
        with pytest.raises(BundleError, match="node-a's iptables rules changed while podpath read them.*"
                                              "chain KUBE-SERVICES differs"):
            diagnose(snap, "pod-a", "svc/default/web:80")
    finally:
        sh(ns, "iptables", "-t", "nat", "-D", *rule)
    result = diagnose(lab_snapshot(lab.name), "pod-a", "svc/default/web:80")  # a new snapshot: fine
    assert all(p.outcome == "delivered" for p in result.paths)


EXE = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "podpath")


def test_an_agent_sends_a_big_nodes_chain_names_and_reads_chains_on_request(lab):
    """Asked for "rules": "per-chain", the agent `lab up` runs on node-a answers its snapshot with
    the nat table's chain names (live_rules), not its 6,000 chains of rules, and reads any chain
    on a `chains` request, in its namespace, exactly as iptables-save prints it; a request for a
    host or a field it does not have is a one-line bad_request, and the connection goes on."""
    from podpath.tracer.agent import protocol as P
    from podpath.tracer.agent.client import AgentClient
    from podpath.tracer.agent.transport import direct

    c = AgentClient.connect(direct(lab.netns("node-a")), "node-a")
    try:
        snap = c.call({"type": "snapshot", "targets": ["default/pod-a", "default/pod-b"], "inventory": False,
                       "rules": "per-chain"}, timeout=60)
        live = snap["live_rules"]["node-a"]["nft"]
        assert len(live["tables"]["nat"]) > 3 * SERVICES
        sent = Bundle.from_json(json.dumps(snap["bundle"])).host("node-a")
        assert "nft" not in sent.iptables_save  # no rule of it went with the snapshot
        svc = next(c for c in live["tables"]["nat"] if c.startswith("KUBE-SVC-"))
        text = c.call({"type": "chains", "host": "node-a", "table": "nat", "chains": ["KUBE-SERVICES", svc]})["text"]
        saved = sh(lab.netns("node-a"), "iptables-nft-save", "-t", "nat")
        for chain in ("KUBE-SERVICES", svc):
            def rules(t, chain=chain): return [l.split("] ", 1)[-1] for l in t.splitlines() if f"-A {chain} " in l]
            assert rules(text) == rules(saved) and rules(text), chain
        for bad, code in (({"host": "pod-z", "table": "nat", "chains": ["KUBE-SERVICES"]}, "bad_request"),
                          ({"host": "node-a", "table": 7}, "bad_request")):
            with pytest.raises(P.AgentError) as e:
                c.call({"type": "chains", **bad})
            assert e.value.code == code and "\n" not in str(e.value)
        assert c.call({"type": "ping"})["type"] == "pong"
    finally:
        c.close()


def test_a_drop_among_thousands_of_services_through_agents_is_the_lab_trace(lab):
    """`podpath trace` through the lab's agents on a node with 2,000 Services: the coordinator
    walks node-b's rules a chain at a time through its agent, and names the DROP rule (confirmed by
    its counter) as the in-process trace does."""
    from podpath.tracer.agent import DIRECT_ENV
    from podpath.tracer.lab.source import LabSource
    from podpath.tracer.trace import trace

    ns = lab.netns("node-b")
    b_ip = next(p.ip for p in lab.inventory().pods if p.name == "pod-b")
    sh(ns, "iptables", "-N", "NFS-AGENT")
    try:
        sh(ns, "iptables", "-A", "NFS-AGENT", "-d", f"{b_ip}/32", "-p", "icmp", "-j", "DROP")
        sh(ns, "iptables", "-I", "FORWARD", "1", "-j", "NFS-AGENT")
        want = trace("pod-a", "pod-b", source=LabSource(lab.name)).to_dict()["verdict"]
        env = {**os.environ, DIRECT_ENV: ",".join(f"{n}={lab.netns(n)}" for n in ("node-a", "node-b"))}
        r = subprocess.run(["ip", "netns", "exec", lab.netns("node-a"), EXE, "trace", "pod-a", "pod-b",
                            "--kubeconfig", str(lab.kubeconfig), "-o", "json"],
                           capture_output=True, text=True, timeout=120, env=env)
    finally:
        for argv in (["-D", "FORWARD", "-j", "NFS-AGENT"], ["-F", "NFS-AGENT"], ["-X", "NFS-AGENT"]):
            subprocess.run(["ip", "netns", "exec", ns, "iptables", *argv], capture_output=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    got = json.loads(r.stdout)["verdict"]
    keys = ("status", "cause", "node", "hook", "counter")
    assert {k: got.get(k) for k in keys} == {k: want.get(k) for k in keys}, got["message"]
    assert got["cause"] == "iptables" and "NFS-AGENT" in got["counter"], got["message"]
