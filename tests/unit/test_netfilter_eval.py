"""Evaluating packets through netfilter hooks (iptables-nft, iptables-legacy, native nftables)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podpath.tracer.bundle import Host
from podpath.tracer.errors import BundleError
from podpath.tracer.netfilter import Netfilter, Packet, RuleRef
from podpath.tracer.netfilter.nft import parse_json

FIXTURES = Path(__file__).parent.parent / "fixtures" / "netfilter"
KUBE_SAVE = (FIXTURES / "kube-proxy-flannel.nft.iptables-save").read_text()
LEGACY_SAVE = (FIXTURES / "kube-proxy-flannel.legacy.iptables-save").read_text()

NODE_IP = "192.168.56.11"
LOCAL = {"10.244.1.0", "10.244.1.1", NODE_IP, "127.0.0.1"}
IFACES = {"eth0": NODE_IP, "cni0": "10.244.1.1", "flannel.1": "10.244.1.0"}


@pytest.fixture(scope="module")
def kube() -> Netfilter:
    return Netfilter.from_texts(KUBE_SAVE)


def save(*tables: str) -> str:
    return "\n".join(tables) + "\n"


def filter_table(*rules: str, forward: str = "ACCEPT", chains: tuple[str, ...] = ()) -> str:
    head = ["*filter", ":INPUT ACCEPT [0:0]", f":FORWARD {forward} [0:0]", ":OUTPUT ACCEPT [0:0]"]
    return "\n".join(head + [f":{c} - [0:0]" for c in chains] + list(rules) + ["COMMIT"])


def pod_packet(**kw) -> Packet:
    base = dict(src="10.244.1.2", dst="10.244.2.5", proto="icmp", iif="cni0", oif="flannel.1")
    base.update(kw)
    return Packet(**base)


# ---------------------------------------------------------------------------------------------
# kube-proxy service NAT


def test_dnat_picks_each_of_two_endpoints_with_half_probability(kube):
    pkt = Packet("10.244.1.2", "10.96.0.10", "udp", sport=41000, dport=53, iif="cni0")
    results = kube.evaluate("prerouting", pkt, LOCAL, IFACES)
    assert [(r.packet.dst, r.packet.dport) for r in results] == [
        ("10.244.0.2", 53), ("10.244.1.3", 53)
    ]
    assert [r.probability for r in results] == [0.5, 0.5]
    for r in results:
        assert r.verdict == "accept" and r.decided_by is None
        assert len(r.nat) == 1 and "-j DNAT --to-destination" in r.nat[0].text
        assert r.nat[0].chain.startswith("KUBE-SEP-")
        assert r.packet.mark == 0  # pod source: no KUBE-MARK-MASQ
    chains = [ref.chain for ref in results[0].trail]
    assert chains == ["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-TCOU7JCQXEZGVUNU",
                      "KUBE-SEP-YIL6JZP7A3QYXJU2"]


def test_dnat_three_endpoints_each_one_third(kube):
    pkt = Packet("10.244.1.2", "10.96.0.50", "tcp", sport=41000, dport=80, iif="cni0")
    results = kube.evaluate("prerouting", pkt, LOCAL, IFACES)
    assert [r.packet.dst for r in results] == ["10.244.1.5", "10.244.2.5", "10.244.2.6"]
    assert all(r.packet.dport == 8080 for r in results)
    for r in results:
        assert r.probability == pytest.approx(1 / 3, abs=1e-9)
    assert sum(r.probability for r in results) == pytest.approx(1.0)


def test_non_pod_source_gets_masquerade_mark(kube):
    pkt = Packet(NODE_IP, "10.96.0.1", "tcp", sport=50000, dport=443)
    (r,) = kube.evaluate("output", pkt, LOCAL, IFACES)
    assert (r.packet.dst, r.packet.dport, r.packet.mark) == ("192.168.56.10", 6443, 0x4000)
    assert any(ref.chain == "KUBE-MARK-MASQ" for ref in r.trail)


def test_established_reply_skips_nat(kube):
    pkt = Packet("10.244.1.2", "10.96.0.10", "udp", sport=41000, dport=53, iif="cni0",
                 ct_state="ESTABLISHED")
    (r,) = kube.evaluate("prerouting", pkt, LOCAL, IFACES)
    assert r.packet.dst == "10.96.0.10" and r.nat == [] and r.trail == []
    post = kube.evaluate("postrouting", pod_packet(dst="8.8.8.8", oif="eth0",
                                                   ct_state="ESTABLISHED"), LOCAL, IFACES)
    assert post[0].packet.src == "10.244.1.2"


def test_nodeport_needs_addrtype_local(kube):
    to_node = Packet("192.168.56.1", NODE_IP, "tcp", sport=40000, dport=30080, iif="eth0")
    results = kube.evaluate("prerouting", to_node, LOCAL, IFACES)
    assert len(results) == 3
    assert {r.packet.dst for r in results} == {"10.244.1.5", "10.244.2.5", "10.244.2.6"}
    assert all(r.packet.mark == 0x4000 for r in results)  # KUBE-EXT masquerades external clients
    elsewhere = Packet("192.168.56.1", "192.168.56.99", "tcp", sport=40000, dport=30080, iif="eth0")
    (r,) = kube.evaluate("prerouting", elsewhere, LOCAL, IFACES)
    assert r.packet.dst == "192.168.56.99" and r.nat == []
    # without the node's addresses the rule cannot see LOCAL
    (r,) = kube.evaluate("prerouting", to_node, set(), IFACES)
    assert r.nat == []


def test_no_endpoints_reject_names_rule_and_comment(kube):
    pkt = pod_packet(proto="tcp", dst="10.96.0.60", sport=40000, dport=5432, oif="eth0")
    (r,) = kube.evaluate("forward", pkt, LOCAL, IFACES)
    assert r.verdict == "reject"
    assert r.reject_with == "icmp-port-unreachable"
    assert r.decided_by.comment == "default/db:postgres has no endpoints"
    assert (r.decided_by.table, r.decided_by.chain, r.decided_by.number) == \
        ("filter", "KUBE-SERVICES", 1)
    assert r.decided_by.command() == "iptables -t filter -D KUBE-SERVICES 1"
    assert r.decided_by.backend == "iptables-nft"


def test_nodeport_without_endpoints_rejected_at_input(kube):
    pkt = Packet("192.168.56.1", NODE_IP, "tcp", sport=40000, dport=30432, iif="eth0")
    (r,) = kube.evaluate("input", pkt, LOCAL, IFACES)
    assert r.verdict == "reject" and r.decided_by.chain == "KUBE-EXTERNAL-SERVICES"


def test_masquerade_uses_the_output_interface_address(kube):
    out = pod_packet(dst="1.1.1.1", oif="eth0")
    (r,) = kube.evaluate("postrouting", out, LOCAL, IFACES)
    assert r.packet.src == NODE_IP
    assert r.nat[0].chain == "FLANNEL-POSTRTG" and "MASQUERADE" in r.nat[0].text
    # pod to pod stays unmasqueraded (flannel RETURN rules)
    (r,) = kube.evaluate("postrouting", pod_packet(), LOCAL, IFACES)
    assert r.packet.src == "10.244.1.2" and r.nat == []
    # a packet kube-proxy marked for SNAT is masqueraded and the mark is cleared
    marked = pod_packet(src="192.168.56.1", dst="10.244.2.5", mark=0x4000)
    (r,) = kube.evaluate("postrouting", marked, LOCAL, IFACES)
    assert r.packet.src == "10.244.1.0" and r.packet.mark == 0
    assert r.nat[0].chain == "KUBE-POSTROUTING"


def test_masquerade_without_known_address_is_reported(kube):
    (r,) = kube.evaluate("postrouting", pod_packet(dst="1.1.1.1", oif="eth9"), LOCAL, {})
    assert r.packet.src == "10.244.1.2"
    assert r.unsupported == r.nat


def test_forward_accepted_by_flannel(kube):
    (r,) = kube.evaluate("forward", pod_packet(), LOCAL, IFACES)
    assert r.verdict == "accept"
    assert r.trail[-1].text == '-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT'


def test_kube_forward_drops_invalid(kube):
    (r,) = kube.evaluate("forward", pod_packet(ct_state="INVALID"), LOCAL, IFACES)
    assert r.verdict == "drop"
    assert r.decided_by.text == "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP"


def test_kube_firewall_localnet_rule_is_undecidable_only_for_127(kube):
    pkt = Packet("10.244.1.2", "127.0.0.1", "tcp", sport=1, dport=2, iif="cni0")
    (r,) = kube.evaluate("input", pkt, LOCAL, IFACES)
    assert [u.chain for u in r.unsupported] == ["KUBE-FIREWALL"]  # --ctstate DNAT is unknowable
    (r,) = kube.evaluate("input", pod_packet(dst="10.244.1.1", oif=None), LOCAL, IFACES)
    assert r.unsupported == []


# ---------------------------------------------------------------------------------------------
# Rules, chains, policies


def test_forward_drop_names_exact_rule_number_and_text():
    nf = Netfilter.from_texts(filter_table(
        "[5:420] -A FORWARD -s 10.244.1.0/24 -d 10.244.3.0/24 -j ACCEPT",
        "[0:0] -A FORWARD -i docker0 -j DROP",
        "[9:756] -A FORWARD -s 10.244.1.0/24 -d 10.244.2.0/24 -j DROP",
        "[0:0] -A FORWARD -j ACCEPT",
    ))
    (r,) = nf.evaluate("forward", pod_packet(), LOCAL, IFACES)
    assert r.verdict == "drop"
    ref = r.decided_by
    assert ref.number == 3
    assert ref.text == "-A FORWARD -s 10.244.1.0/24 -d 10.244.2.0/24 -j DROP"
    assert (ref.packets, ref.bytes) == (9, 756)
    assert ref.command() == "iptables -t filter -D FORWARD 3"
    assert ref.show_command() == "iptables -t filter -L FORWARD -v -n --line-numbers"
    assert r.trail == [ref]


def test_policy_drop_names_the_policy():
    nf = Netfilter.from_texts(filter_table("-A FORWARD -s 10.99.0.0/16 -j ACCEPT", forward="DROP"))
    (r,) = nf.evaluate("forward", pod_packet(), LOCAL, IFACES)
    assert r.verdict == "drop"
    assert r.decided_by.number is None and r.decided_by.is_policy
    assert r.decided_by.text == ":FORWARD DROP"
    assert r.decided_by.command() == "iptables -t filter -P FORWARD ACCEPT"


def test_jump_return_and_goto_semantics():
    # A marks bit 1, jumps to B (which RETURNs after marking bit 2), then goes to C (marks bit 4,
    # falls off its end). Falling off C returns to FORWARD (A's caller), skipping A's last rule,
    # and FORWARD's next rule marks bit 8 and drops.
    nf = Netfilter.from_texts(filter_table(
        "-A FORWARD -j A",
        "-A FORWARD -j MARK --or-mark 0x8",
        "-A FORWARD -j DROP",
        "-A A -j MARK --or-mark 0x1",
        "-A A -j B",
        "-A A -g C",
        "-A A -j MARK --or-mark 0x100",
        "-A B -j MARK --or-mark 0x2",
        "-A B -j RETURN",
        "-A B -j MARK --or-mark 0x200",
        "-A C -j MARK --or-mark 0x4",
        chains=("A", "B", "C"),
    ))
    (r,) = nf.evaluate("forward", pod_packet(), LOCAL, IFACES)
    assert r.packet.mark == 0xF
    assert [(ref.chain, ref.number) for ref in r.trail] == [
        ("FORWARD", 1), ("A", 1), ("A", 2), ("B", 1), ("B", 2), ("A", 3), ("C", 1),
        ("FORWARD", 2), ("FORWARD", 3),
    ]
    assert r.decided_by.number == 3


def test_return_from_builtin_chain_applies_policy():
    nf = Netfilter.from_texts(filter_table("-A FORWARD -j RETURN", "-A FORWARD -j ACCEPT",
                                           forward="DROP"))
    (r,) = nf.evaluate("forward", pod_packet(), LOCAL, IFACES)
    assert r.verdict == "drop" and r.decided_by.text == ":FORWARD DROP"


def test_icmp_never_matches_port_rules():
    nf = Netfilter.from_texts(filter_table(
        "-A FORWARD -p tcp -m tcp ! --dport 22 -j DROP",
        "-A FORWARD -m multiport --dports 1:65535 -j DROP",
        "-A FORWARD -p icmp -m icmp --icmp-type echo-request -j REJECT --reject-with icmp-host-prohibited",
    ))
    (r,) = nf.evaluate("forward", pod_packet(), LOCAL, IFACES)
    assert r.verdict == "reject" and r.decided_by.number == 3
    assert r.reject_with == "icmp-host-prohibited"
    (r,) = nf.evaluate("forward", pod_packet(ct_state="ESTABLISHED"), LOCAL, IFACES)
    assert r.verdict == "accept"  # an echo reply is type 0


def test_interface_wildcards_and_negation():
    nf = Netfilter.from_texts(filter_table(
        "-A FORWARD -i veth+ -j DROP",
        "-A FORWARD ! -o flannel.1 -j DROP",
        "-A FORWARD -i cni+ -o flannel.1 -j ACCEPT",
    ))
    (r,) = nf.evaluate("forward", pod_packet(), LOCAL, IFACES)
    assert r.verdict == "accept" and r.trail[0].number == 3
    (r,) = nf.evaluate("forward", pod_packet(oif="eth0"), LOCAL, IFACES)
    assert r.decided_by.number == 2


def test_tcp_reset_and_tcp_flags():
    nf = Netfilter.from_texts(filter_table(
        "-A FORWARD -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -m state --state NEW -j DROP",
        "-A FORWARD -p tcp -m tcp --dport 80 -j REJECT --reject-with tcp-reset",
    ))
    (r,) = nf.evaluate("forward", pod_packet(proto="tcp", sport=1000, dport=80), LOCAL, IFACES)
    assert r.verdict == "reject" and r.reject_with == "tcp-reset" and r.decided_by.number == 2


def test_mark_targets():
    nf = Netfilter.from_texts(save(
        "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n"
        ":OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
        "-A FORWARD -j MARK --set-xmark 0x10/0xff\n"   # (0x1234 & ~0xff) ^ 0x10 = 0x1210
        "-A FORWARD -j MARK --or-mark 0x1\n"           # 0x1211
        "-A FORWARD -j MARK --and-mark 0xfff\n"         # 0x211
        "-A FORWARD -j MARK --xor-mark 0x3\n"           # 0x212
        "-A FORWARD -m mark --mark 0x212 -j MARK --set-mark 0x5/0xf0\n"  # (0x212&~0xf0)|5 = 0x207
        "COMMIT"
    ))
    (r,) = nf.evaluate("forward", pod_packet(mark=0x1234), LOCAL, IFACES)
    assert hex(r.packet.mark) == "0x207"


def test_snat_and_dnat_without_port():
    nf = Netfilter.from_texts(save(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        ":POSTROUTING ACCEPT [0:0]\n"
        "-A PREROUTING -d 10.96.5.5/32 -j DNAT --to-destination 10.244.2.9\n"
        "-A PREROUTING -j DNAT --to-destination 10.244.2.10\n"  # never reached: NAT is terminal
        "-A POSTROUTING -o eth0 -j SNAT --to-source 192.168.56.200:2000-3000\n"
        "COMMIT"
    ))
    (r,) = nf.evaluate("prerouting", pod_packet(dst="10.96.5.5", oif=None), LOCAL, IFACES)
    assert r.packet.dst == "10.244.2.9" and len(r.nat) == 1
    (r,) = nf.evaluate("postrouting", pod_packet(proto="udp", sport=5, dport=6, oif="eth0"),
                       LOCAL, IFACES)
    assert (r.packet.src, r.packet.sport) == ("192.168.56.200", 2000)


def test_unsupported_match_is_reported_and_not_matched():
    nf = Netfilter.from_texts(filter_table(
        "-A FORWARD -s 10.9.0.0/16 -m set --match-set blocked src -j DROP",  # fails on -s first
        "-A FORWARD -m set --match-set blocked src -j DROP",
        "-A FORWARD -m physdev --physdev-is-bridged -j DROP",
        "-A FORWARD -j CONNMARK --save-mark",
        forward="ACCEPT",
    ))
    (r,) = nf.evaluate("forward", pod_packet(), LOCAL, IFACES)
    assert r.verdict == "accept"
    assert [u.number for u in r.unsupported] == [2, 3, 4]
    assert [t.number for t in r.trail] == [4, None]  # CONNMARK ran (unknown effect), then policy


def test_tables_run_in_kernel_priority_order():
    nat = ("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
           ":POSTROUTING ACCEPT [0:0]\n"
           "-A PREROUTING -m mark --mark 0x1 -j DNAT --to-destination 10.244.2.7\nCOMMIT")
    mangle = ("*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n"
              ":OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
              "-A PREROUTING -d 10.96.0.10/32 -j MARK --set-xmark 0x1/0xffffffff\nCOMMIT")
    raw = ("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
           "-A PREROUTING -m mark --mark 0x1 -j DROP\nCOMMIT")  # runs before mangle: no mark yet
    pkt = Packet("10.244.1.2", "10.96.0.10", "udp", sport=1, dport=53, iif="cni0")
    # written in the "wrong" order on purpose: the hook order does not depend on it
    nf = Netfilter.from_texts(save(nat, mangle, raw))
    (r,) = nf.evaluate("prerouting", pkt, LOCAL, IFACES)
    assert r.verdict == "accept" and r.packet.mark == 1 and r.packet.dst == "10.244.2.7"
    # raw's rule did not match: the packet fell through to raw's (accept) policy
    assert [(ref.table, ref.number) for ref in r.trail] == [("raw", None), ("mangle", 1), ("mangle", None), ("nat", 1)]
    # a raw-table drop comes before everything
    nf = Netfilter.from_texts(save(nat, mangle, raw.replace("-m mark --mark 0x1 ", "-d 10.96.0.10/32 ")))
    (r,) = nf.evaluate("prerouting", pkt, LOCAL, IFACES)
    assert r.verdict == "drop" and r.decided_by.table == "raw" and r.nat == []
    # a native nft chain at priority -200 runs between raw (-300) and mangle (-150)
    data = {"nftables": [
        {"table": {"family": "inet", "name": "early"}},
        {"chain": {"family": "inet", "table": "early", "name": "pre", "type": "filter",
                   "hook": "prerouting", "prio": -200, "policy": "accept"}},
        {"rule": {"family": "inet", "table": "early", "chain": "pre", "handle": 4,
                  "expr": [{"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 1}},
                           {"drop": None}]}},
        {"rule": {"family": "inet", "table": "early", "chain": "pre", "handle": 5,
                  "expr": [{"mangle": {"key": {"meta": {"key": "mark"}}, "value": 2}}]}},
    ]}
    nf = Netfilter.from_texts(save(nat, mangle), nftables=data)
    (r,) = nf.evaluate("prerouting", pkt, LOCAL, IFACES)
    assert [ref.table for ref in r.trail if not ref.is_policy] == ["early", "mangle", "nat"]
    assert r.packet.mark == 1 and r.packet.dst == "10.244.2.7"


def test_notrack_in_raw_makes_packet_untracked_and_skips_nat(kube):
    raw = ("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
           "-A PREROUTING -p udp -m udp --dport 53 -j NOTRACK\nCOMMIT\n")
    nf = Netfilter.from_texts(KUBE_SAVE + raw)
    pkt = Packet("10.244.1.2", "10.96.0.10", "udp", sport=1, dport=53, iif="cni0")
    (r,) = nf.evaluate("prerouting", pkt, LOCAL, IFACES)
    assert r.packet.ct_state == "UNTRACKED" and r.packet.dst == "10.96.0.10"


def test_legacy_backend_rules_are_named_as_legacy():
    legacy = filter_table("-A FORWARD -d 10.244.2.5/32 -j DROP")
    nf = Netfilter.from_texts(KUBE_SAVE, legacy)
    (r,) = nf.evaluate("forward", pod_packet(), LOCAL, IFACES)
    assert r.decided_by.backend == "iptables-legacy"
    assert r.decided_by.command() == "iptables-legacy -t filter -D FORWARD 1"


def test_kube_proxy_fixture_same_result_from_legacy_save():
    a = Netfilter.from_texts(KUBE_SAVE)
    b = Netfilter.from_texts(None, LEGACY_SAVE)
    pkt = Packet("10.244.1.2", "10.96.0.50", "tcp", sport=41000, dport=80, iif="cni0")
    ra = a.evaluate("prerouting", pkt, LOCAL, IFACES)
    rb = b.evaluate("prerouting", pkt, LOCAL, IFACES)
    assert [(r.packet, r.probability) for r in ra] == [(r.packet, r.probability) for r in rb]
    assert {ref.backend for r in rb for ref in r.trail} == {"iptables-legacy"}


def test_statistic_outcomes_that_end_the_same_are_kept_separate_by_trail():
    nf = Netfilter.from_texts(filter_table(
        "-A FORWARD -m statistic --mode random --probability 0.25 -j LOG",
        "-A FORWARD -j ACCEPT",
    ))
    results = nf.evaluate("forward", pod_packet(), LOCAL, IFACES)
    assert [r.probability for r in results] == [0.25, 0.75]
    assert [len(r.trail) for r in results] == [2, 1]


def test_bad_hook_and_bad_packet():
    nf = Netfilter.from_texts(KUBE_SAVE)
    with pytest.raises(ValueError):
        nf.evaluate("ingress", pod_packet(), LOCAL, IFACES)
    with pytest.raises(ValueError):
        nf.evaluate("forward", pod_packet(src="fe80::1"), LOCAL, IFACES)


# ---------------------------------------------------------------------------------------------
# Native nftables


@pytest.fixture(scope="module")
def nft_kube() -> Netfilter:
    return Netfilter.from_texts(nftables=json.loads((FIXTURES / "kube-proxy-nftables.json").read_text()))


def test_nft_numgen_vmap_splits_endpoints(nft_kube):
    pkt = Packet("10.244.1.2", "10.96.0.10", "udp", sport=40000, dport=53, iif="cni0")
    results = nft_kube.evaluate("prerouting", pkt, LOCAL, IFACES)
    assert [(r.packet.dst, r.packet.dport, r.probability) for r in results] == [
        ("10.244.0.2", 53, 0.5), ("10.244.0.3", 53, 0.5)
    ]
    assert results[0].nat[0].text == "meta l4proto udp dnat to 10.244.0.2:53"
    assert results[0].nat[0].backend == "nftables"
    assert [ref.chain for ref in results[0].trail] == [
        "nat-prerouting", "services", "service-dns", "endpoint-a"]


def test_nft_mark_for_masquerade_and_masquerade(nft_kube):
    pkt = Packet(NODE_IP, "10.96.0.10", "udp", sport=40000, dport=53)
    (r,) = nft_kube.evaluate("output", pkt, LOCAL, IFACES)
    assert r.verdict == "accept" and r.trail == []  # no output base chain: nothing runs
    pre = nft_kube.evaluate("prerouting", Packet("192.168.56.1", "10.96.0.10", "udp", sport=1,
                                                 dport=53, iif="eth0"), LOCAL, IFACES)
    assert all(r.packet.mark == 0x4000 for r in pre)
    post = nft_kube.evaluate("postrouting", pod_packet(src="192.168.56.1", mark=0x4000),
                             LOCAL, IFACES)
    assert post[0].packet.src == "10.244.1.0" and post[0].packet.mark == 0


def test_nft_no_endpoints_reject_with_comment(nft_kube):
    pkt = pod_packet(proto="tcp", dst="10.96.0.20", sport=4000, dport=80, oif="eth0")
    (r,) = nft_kube.evaluate("forward", pkt, LOCAL, IFACES)
    assert r.verdict == "reject"
    assert r.decided_by.comment == "default/web:http has no endpoints"
    assert r.reject_with == "icmp port-unreachable"
    assert r.decided_by.command() == "nft delete rule ip kube-proxy services-filter handle 31"
    assert r.decided_by.number == 1


@pytest.fixture(scope="module")
def nft_fw() -> Netfilter:
    return Netfilter.from_texts(nftables=json.loads((FIXTURES / "native-firewall.json").read_text()))


def test_nft_policy_drop_names_the_chain(nft_fw):
    (r,) = nft_fw.evaluate("prerouting", pod_packet(oif=None), LOCAL, IFACES)
    assert r.verdict == "drop" and r.decided_by.is_policy
    assert r.decided_by.text == "chain early { type filter hook prerouting priority -150; policy drop; }"
    assert r.decided_by.command() == "nft chain inet fw early '{ policy accept; }'"


def test_nft_rules_in_order(nft_fw):
    # rule 1: 10.244.1.0/24 -> 10.244.2.5 tcp dport 80 drop
    (r,) = nft_fw.evaluate("forward", pod_packet(proto="tcp", sport=1, dport=80), LOCAL, IFACES)
    assert (r.verdict, r.decided_by.number, r.decided_by.handle) == ("drop", 1, 5)
    assert r.decided_by.text == "ip saddr 10.244.1.0/24 ip daddr 10.244.2.5 tcp dport 80 counter drop"
    # named interval set @blocked
    (r,) = nft_fw.evaluate("forward", pod_packet(src="10.9.3.3"), LOCAL, IFACES)
    assert r.decided_by.text == "ip saddr @blocked drop"
    # anonymous set of ports (22, 80-90) accepts tcp 85 from elsewhere
    (r,) = nft_fw.evaluate("forward", pod_packet(src="10.5.0.1", proto="tcp", sport=1, dport=85),
                           LOCAL, IFACES)
    assert r.verdict == "accept" and r.trail[-1].text == "tcp dport { 22, 80-90 } accept"
    # l4proto set + th dport
    (r,) = nft_fw.evaluate("forward", pod_packet(src="10.5.0.1", proto="udp", sport=1, dport=53),
                           LOCAL, IFACES)
    assert r.trail[-1].text == "meta l4proto { tcp, udp } th dport 53 accept"
    # cni0 -> flannel* jumps to sub, which drops
    (r,) = nft_fw.evaluate("forward", pod_packet(src="10.5.0.1"), LOCAL, IFACES)
    assert r.decided_by.chain == "sub" and [t.chain for t in r.trail] == ["fwdc", "sub"]
    # established replies accepted by ct state
    (r,) = nft_fw.evaluate("forward", pod_packet(src="10.5.0.1", iif="eth0", ct_state="ESTABLISHED"),
                           LOCAL, IFACES)
    assert r.verdict == "accept" and r.trail[-1].text == "ct state established,related accept"
    # new from eth0: reject with icmp host-unreachable (rule 8)
    (r,) = nft_fw.evaluate("forward", pod_packet(src="10.5.0.1", iif="eth0"), LOCAL, IFACES)
    assert r.verdict == "reject" and r.reject_with == "icmp host-unreachable"


def test_nft_tables_of_iptables_nft_are_not_evaluated_twice():
    data = json.loads((FIXTURES / "kube-proxy-flannel.iptables-nft.json").read_text())
    assert parse_json(data).tables == {}  # heuristic: every table is iptables-nft's
    both = Netfilter.from_texts(KUBE_SAVE, nftables=data)
    assert sorted(both.nftables.skipped) == ["ip filter", "ip mangle", "ip nat"]
    pkt = Packet("10.244.1.2", "10.96.0.10", "udp", sport=1, dport=53, iif="cni0")
    results = both.evaluate("prerouting", pkt, LOCAL, IFACES)
    assert len(results) == 2
    assert {ref.backend for r in results for ref in r.trail} == {"iptables-nft"}


def test_nft_table_iptables_save_did_not_print_is_evaluated_natively():
    data = {"nftables": [
        {"table": {"family": "ip", "name": "filter", "handle": 1}},
        {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 1,
                   "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
    ]}
    nf = Netfilter.from_texts("", nftables=data, nft_save_known=True)
    (r,) = nf.evaluate("forward", pod_packet(), LOCAL, IFACES)
    assert r.decided_by.backend == "nftables" and r.decided_by.is_policy


def test_nft_malformed_json_raises_bundle_error():
    for bad in ("{", {"nftables": 5}, {"nftables": [{"rule": {"family": "ip", "table": "t",
                                                              "chain": "nope", "expr": []}}]}):
        with pytest.raises(BundleError):
            parse_json(bad)


def test_nft_unknown_expressions_are_reported():
    data = {"nftables": [
        {"table": {"family": "inet", "name": "t"}},
        {"chain": {"family": "inet", "table": "t", "name": "c", "type": "filter",
                   "hook": "forward", "prio": 0, "policy": "accept"}},
        {"rule": {"family": "inet", "table": "t", "chain": "c", "handle": 2,
                  "expr": [{"match": {"op": "==", "left": {"socket": {"key": "transparent"}},
                                      "right": 1}}, {"drop": None}]}},
        {"rule": {"family": "inet", "table": "t", "chain": "c", "handle": 3,
                  "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}},
                                      "right": "cni0"}}, {"queue": {"num": 1}}]}},
    ]}
    nf = Netfilter.from_texts(nftables=data)
    (r,) = nf.evaluate("forward", pod_packet(), LOCAL, IFACES)
    assert r.verdict == "accept" and [u.handle for u in r.unsupported] == [2, 3]


# ---------------------------------------------------------------------------------------------
# Host integration, caching, speed


def test_from_host_reads_bundle_fields_and_caches():
    host = Host(name="node-a", iptables_save={"nft": KUBE_SAVE, "legacy": ""},
                nftables=json.loads((FIXTURES / "native-firewall.json").read_text()))
    nf = Netfilter.from_host(host)
    assert Netfilter.from_host(host) is nf
    assert not nf.is_empty()
    assert any(ref.comment == "default/db:postgres has no endpoints" for ref in nf.rules())
    ipt = [ref for ref in nf.rules() if ref.backend == "iptables-nft"]
    assert len(ipt) == nf.iptables["iptables-nft"].rule_count()  # unreachable chains included
    # equal priority (-150): iptables before native nft; NAT chains run at the NAT hook (-100)
    assert [ref.table for ref in nf.chains_at("prerouting")] == ["mangle", "fw", "nat", "nat2"]


def test_from_host_empty_and_bad():
    assert Netfilter.from_host(Host(name="pod-a")).is_empty()
    empty = Netfilter.from_host(Host(name="pod-b", iptables_save={"nft": ""}))
    (r,) = empty.evaluate("forward", pod_packet(), set(), {})
    assert r.verdict == "accept" and r.trail == [] and r.probability == 1.0
    with pytest.raises(BundleError, match="iptables-legacy-save line 1"):
        Netfilter.from_host(Host(name="x", iptables_save={"legacy": "garbage here"}))


def _big_ruleset(services: int) -> str:
    """kube-proxy-shaped nat table with `services` ClusterIP services of two endpoints each."""
    chains, rules = [], []
    for i in range(services):
        cip = f"10.96.{i // 250}.{i % 250 + 1}"
        svc, sep_a, sep_b = f"KUBE-SVC-{i:016d}", f"KUBE-SEP-A{i:015d}", f"KUBE-SEP-B{i:015d}"
        chains += [svc, sep_a, sep_b]
        rules.append(f'-A KUBE-SERVICES -d {cip}/32 -p tcp -m comment --comment "ns/s{i}:http cluster IP" '
                     f"-m tcp --dport 80 -j {svc}")
        rules.append(f"-A {svc} -m statistic --mode random --probability 0.50000000000 -j {sep_a}")
        rules.append(f"-A {svc} -j {sep_b}")
        for sep, ep in ((sep_a, f"10.244.1.{i % 250 + 2}"), (sep_b, f"10.244.2.{i % 250 + 2}")):
            rules.append(f"-A {sep} -s {ep}/32 -j KUBE-MARK-MASQ")
            rules.append(f"-A {sep} -p tcp -m tcp -j DNAT --to-destination {ep}:8080")
    head = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
            ":POSTROUTING ACCEPT [0:0]", ":KUBE-SERVICES - [0:0]", ":KUBE-MARK-MASQ - [0:0]"]
    head += [f":{c} - [0:0]" for c in chains]
    body = ["-A PREROUTING -j KUBE-SERVICES", "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000"]
    return "\n".join(head + body + rules + ["COMMIT"]) + "\n" + KUBE_SAVE.split("*nat")[0]


def test_few_hundred_rules_evaluate_well_under_a_millisecond():
    nf = Netfilter.from_texts(_big_ruleset(150))  # 150 services: ~1000 rules, 300 in KUBE-SERVICES
    miss = pod_packet()  # walks every KUBE-SERVICES rule
    hit = Packet("10.244.1.2", "10.96.0.150", "tcp", sport=1, dport=80, iif="cni0")  # the last one
    assert len(nf.evaluate("prerouting", hit, LOCAL, IFACES)) == 2
    for pkt, hook in ((miss, "prerouting"), (hit, "prerouting"), (miss, "forward")):
        n = 200
        start = time.perf_counter()
        for _ in range(n):
            nf.evaluate(hook, pkt, LOCAL, IFACES)
        per_call = (time.perf_counter() - start) / n
        assert per_call < 1e-3, f"{hook}: {per_call * 1e6:.0f} us per evaluation"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 100), st.sampled_from(["A", "B", "DROP", "ACCEPT", "RETURN"])),
                min_size=1, max_size=8))
def test_alternative_probabilities_always_sum_to_one(spec):
    rules = []
    for pct, target in spec:
        prob = f" -m statistic --mode random --probability {pct / 100:.11f}" if pct < 100 else ""
        rules.append(f"-A FORWARD{prob} -j {target}")
    rules += ["-A A -m statistic --mode random --probability 0.30000000000 -j DROP",
              "-A B -j MARK --or-mark 0x1"]
    nf = Netfilter.from_texts(filter_table(*rules, chains=("A", "B")))
    results = nf.evaluate("forward", pod_packet(), LOCAL, IFACES)
    assert sum(r.probability for r in results) == pytest.approx(1.0)
    for r in results:
        assert r.verdict in ("accept", "drop", "reject")
        assert (r.decided_by is None) == (r.verdict == "accept")


def test_ruleref_is_hashable_and_printable():
    ref = RuleRef("nftables", "t", "c", 2, "drop", handle=9, family="inet")
    assert {ref: 1}[ref] == 1
    assert str(ref) == "nftables t c #2: drop"


# ---------------------------------------------------------------------------------------------
# nft JSON robustness: odd-but-valid JSON never crashes parsing or evaluation

_KEYS = ["match", "op", "left", "right", "payload", "protocol", "field", "meta", "key", "ct",
         "prefix", "addr", "len", "range", "set", "concat", "accept", "drop", "jump", "goto",
         "target", "reject", "type", "expr", "dnat", "snat", "masquerade", "port", "mangle",
         "value", "vmap", "data", "numgen", "mode", "mod", "offset", "&", "|", "^", "fib",
         "result", "flags", "counter", "xt", "name", "limit", "inv", "elem", "val", "return"]
_ATOMS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 70000),
    st.sampled_from(["ip", "tcp", "udp", "th", "saddr", "daddr", "dport", "sport", "l4proto",
                     "mark", "iifname", "state", "new", "established", "10.244.1.2", "10.0.0.0",
                     "==", "!=", "in", "<", "random", "type", "local", "daddr", "cni*", "@s",
                     "icmp", "echo-request", "port-unreachable", "tcp reset", "c", "x"]),
)
_JSONISH = st.recursive(
    _ATOMS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(_KEYS), inner, min_size=1, max_size=3),
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(_JSONISH, max_size=4), max_size=4),
       st.sampled_from(["prerouting", "forward", "postrouting"]))
def test_odd_nft_json_never_crashes(rules, hook):
    items = [
        {"table": {"family": "inet", "name": "t"}},
        {"set": {"family": "inet", "table": "t", "name": "s", "type": "ipv4_addr",
                 "elem": ["10.244.1.2"]}},
        {"chain": {"family": "inet", "table": "t", "name": "c"}},
        {"chain": {"family": "inet", "table": "t", "name": "base", "type": "nat" if hook !=
                   "forward" else "filter", "hook": hook, "prio": 0, "policy": "accept"}},
    ]
    for n, expr in enumerate(rules):
        items.append({"rule": {"family": "inet", "table": "t", "chain": "base" if n % 2 == 0
                               else "c", "handle": n + 10, "expr": expr}})
    items.append({"rule": {"family": "inet", "table": "t", "chain": "base", "handle": 99,
                           "expr": [{"jump": {"target": "c"}}]}})
    try:
        nf = Netfilter.from_texts(nftables={"nftables": items})
    except BundleError:
        return
    for proto in ("icmp", "tcp"):
        pkt = pod_packet(proto=proto, sport=1 if proto == "tcp" else None,
                         dport=2 if proto == "tcp" else None)
        results = nf.evaluate(hook, pkt, LOCAL, IFACES)
        assert results and sum(r.probability for r in results) == pytest.approx(1.0)
