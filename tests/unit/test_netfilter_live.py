"""A live ruleset read per chain (netfilter/live.py) answers like the same ruleset read whole, and
reads each chain once. The readers here serve a fixed iptables-save text the way
collectors.read_iptables_chains does (one chain, or a whole table); tests/lab/test_nf_scale.py does
the same against a real kernel with thousands of kube-proxy Services."""

from __future__ import annotations

import copy
import dataclasses

from podpath.tracer.bundle import Host
from podpath.tracer.netfilter import Netfilter, Packet
from podpath.tracer.netfilter import live as L
from podpath.tracer.netfilter.iptables import parse_save

N = 300  # Services: more chains than live.SMALL_TABLE, so nat is read per chain
SAVE = "\n".join(
    ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [5:300]", ":OUTPUT ACCEPT [0:0]",
     "[1:60] -A FORWARD -d 10.244.0.0/16 -j ACCEPT", "COMMIT",
     "*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
     ":POSTROUTING ACCEPT [0:0]", ":KUBE-SERVICES - [0:0]"]
    + [f":KUBE-SVC-{i} - [0:0]" for i in range(N)]
    + ["[0:0] -A PREROUTING -j KUBE-SERVICES"]
    + [f'[0:0] -A KUBE-SERVICES -d 10.96.{i // 250}.{i % 250 + 1}/32 -p tcp -m comment --comment "ns/s{i}:http '
       f'cluster IP" -m tcp --dport 80 -j KUBE-SVC-{i}' for i in range(N)]
    + [f"[{i}:{i * 60}] -A KUBE-SVC-{i} -p tcp -m tcp -j DNAT --to-destination 10.244.1.{i % 250 + 2}:8080"
       for i in range(N)]
    + ["COMMIT", ""])


def serve(save: str):
    """(read_chains, read_all, reads) over one save text, as the collector's readers answer."""
    rs = parse_save(save)
    reads: list = []

    def read_chains(table: str, chains: list[str] | None) -> str:
        reads.append((table, chains))
        t = rs.tables[table]
        names = chains if chains is not None else list(t.chains)
        heads = [f":{n} {t.chains[n].policy or '-'} [{t.chains[n].packets or 0}:{t.chains[n].bytes or 0}]"
                 for n in names if n in t.chains]
        body = [f"[{r.packets}:{r.bytes}] {r.text}" for n in names if n in t.chains for r in t.chains[n].rules]
        return "\n".join([f"*{table}", *heads, *body, "COMMIT", ""])

    def read_all() -> str:
        reads.append(("all", None))
        return save

    return read_chains, read_all, reads


def live_host(save: str = SAVE):
    read_chains, read_all, reads = serve(save)
    tables = {t.name: list(t.chains) for t in parse_save(save).tables.values()}
    preread = {"filter": [read_chains("filter", None)],
               "nat": [read_chains("nat", ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"])]}
    reads.clear()
    backend = L.LiveBackend(tables, preread, read_chains, read_all, "iptables-save (nf_tables)")
    return Host("node-a", iptables_save=L.LiveSaves(live={"nft": backend})), backend, reads


def test_a_walk_reads_the_chains_it_enters_once_and_answers_as_the_whole_text():
    host, backend, reads = live_host()
    whole = Host("node-a", iptables_save={"nft": SAVE})
    pkt = Packet("10.244.0.2", "10.96.0.8", "tcp", 40000, 80, iif="cni0")
    for _ in range(2):
        got = Netfilter.from_host(host).evaluate("prerouting", pkt)
        want = Netfilter.from_host(whole).evaluate("prerouting", pkt)
        assert [(a.verdict, a.packet.dst, [(r.text, r.packets) for r in a.trail]) for a in got] == \
            [(a.verdict, a.packet.dst, [(r.text, r.packets) for r in a.trail]) for a in want]
        assert got[0].packet.dst == "10.244.1.9" and got[0].trail[-1].packets == 7
    assert reads == [("nat", ["KUBE-SERVICES"]), ("nat", ["KUBE-SVC-7"])]
    assert host.iptables_save.pending("nft") is backend and "nft" in host.iptables_save


def test_looking_at_the_text_reads_it_whole_once_and_the_bundle_gets_plain_text():
    host, _, reads = live_host()
    assert len(host.iptables_save) == 1 and list(host.iptables_save) == ["nft"]
    assert reads == []  # neither len() nor iteration over the names reads anything
    assert host.iptables_save["nft"] == SAVE and reads == [("all", None)]
    assert host.iptables_save.get("nft") == SAVE and reads == [("all", None)]
    assert dataclasses.asdict(host)["iptables_save"] == {"nft": SAVE}
    assert copy.deepcopy(host).iptables_save == {"nft": SAVE}


def test_many_single_chain_reads_turn_into_one_read_of_the_table():
    host, backend, reads = live_host()
    chains = backend.ruleset().tables["nat"].chains
    for i in range(L.MAX_CHAIN_READS + 5):
        assert len(chains.get(f"KUBE-SVC-{i}")) == 1
    assert len(reads) == L.MAX_CHAIN_READS + 1 and reads[-1] == ("nat", None)
    assert chains.get("KUBE-SVC-299").rule(0).packets == 299 and chains.get("NOPE") is None
    assert len(reads) == L.MAX_CHAIN_READS + 1


def test_a_check_reading_only_filter_does_not_read_nat():
    host, _, reads = live_host()
    assert L.rule_texts(host.iptables_save, ("filter",)) == [("nft", serve(SAVE)[0]("filter", None))]
    assert reads == []
