"""Long jump lists (KUBE-SERVICES) walked through the (destination, protocol, port) index give
exactly what the rule-by-rule walk gives, and a big node is read only as far as a packet goes."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podpath.tracer.errors import BundleError
from podpath.tracer.netfilter import Netfilter, Packet
from podpath.tracer.netfilter import index as nf_index
from podpath.tracer.netfilter.iptables import jump_key
from podpath.tracer.netfilter.values import ip_to_int

IPS = ["10.96.0.1", "10.96.0.2", "10.96.0.3", "10.96.0.4"]
PORTS = [53, 80, 443]
TARGETS = ["ACCEPT", "DROP", "REJECT --reject-with icmp-port-unreachable", "RETURN",
           "MARK --set-xmark 0x1/0x1", "SUB", "LOG --log-prefix \"x -d 10.96.0.1\""]
NAT_TARGETS = ["DNAT --to-destination 10.244.1.2:8080", "RETURN", "MARK --set-xmark 0x1/0x1",
               "SUB", "ACCEPT"]

_ip, _port, _proto = st.sampled_from(IPS), st.sampled_from(PORTS), st.sampled_from(["tcp", "udp"])

# Rule bodies after `-A CHAIN`, in iptables-save's canonical order. Most start with a /32
# destination (keyed); some cannot be keyed (negated, a prefix, no destination); some carry
# options that look like keys inside comments, or undecidable matches.
KEYED = [
    st.builds(lambda ip, p, port: f'-d {ip}/32 -p {p} -m comment --comment "ns/s:{port} cluster IP" '
              f"-m {p} --dport {port}", _ip, _proto, _port),
    st.builds(lambda ip: f"-d {ip}/32", _ip),
    st.builds(lambda ip, p: f"-d {ip}/32 -p {p}", _ip, _proto),
    st.builds(lambda ip, p, port: f"-s 10.244.0.0/16 -d {ip}/32 -p {p} -m {p} --dport {port}",
              _ip, _proto, _port),
    st.builds(lambda ip: f"! -s 10.244.0.0/16 -d {ip}/32 -p tcp -m tcp --dport 50:90", _ip),
    st.builds(lambda ip: f"-d {ip}/32 -m physdev --physdev-is-bridged", _ip),
    st.builds(lambda ip, port: f'-d {ip}/32 -p tcp -m comment --comment "x -d 10.96.0.9/32 '
              f'-m tcp --dport 1" -m tcp --dport {port}', _ip, _port),
    st.builds(lambda ip, port: f"-d {ip}/32 -p tcp -m tcp ! --dport {port}", _ip, _port),
    st.builds(lambda ip: f"-d {ip}/32 -m statistic --mode random --probability 0.50000000000", _ip),
    st.builds(lambda ip: f"-d {ip}/32 -p tcp -m multiport --dports 80,443", _ip),
    st.builds(lambda ip, port: f"-d {ip}/32 -p udp -m comment --comment -d -m udp --dport {port}",
              _ip, _port),
    st.builds(lambda ip, port: f"-d {ip}/32 -p tcp -m tcp --dport {port} -m conntrack --ctstate NEW",
              _ip, _port),
]
UNKEYED = [
    st.builds(lambda ip: f"! -d {ip}/32 -p tcp -m tcp --dport 80", _ip),
    st.builds(lambda p, port: f"-p {p} -m {p} --dport {port}", _proto, _port),
    st.just("-d 10.96.0.0/24 -p tcp -m tcp --dport 443"),
    st.builds(lambda ip: f"-d {ip}/32 -p tcp -d 10.96.0.4/32", _ip),
    st.just("-m addrtype --dst-type LOCAL"),
]


def _weighted_rules(targets):
    """Mostly keyed rules (so the index is built), with a few unkeyed ones between them."""
    keyed = st.tuples(st.one_of(*KEYED), st.sampled_from(targets))
    unkeyed = st.tuples(st.one_of(*UNKEYED), st.sampled_from(targets))
    return st.lists(st.one_of(keyed, keyed, keyed, keyed, keyed, unkeyed),
                    min_size=nf_index.MIN_RULES, max_size=80)


def _save(filter_rules, nat_rules) -> str:
    lines = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
             ":POSTROUTING ACCEPT [0:0]", ":LONG - [0:0]", ":SUB - [0:0]",
             "-A PREROUTING -j LONG", "-A PREROUTING -d 10.96.0.2/32 -j LONG"]
    lines += [f"-A LONG {m} -j {t}" for m, t in nat_rules]
    lines += ["-A SUB -m mark --mark 0x1/0x1 -j RETURN", "-A SUB -d 10.96.0.3/32 -j LONG2", "COMMIT"]
    lines.insert(6, ":LONG2 - [0:0]")
    lines[-1:-1] = [f"-A LONG2 {m} -j {t}" for m, t in nat_rules[::-1] if t != "SUB"]
    lines += ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]",
              ":LONG - [0:0]", ":SUB - [0:0]", "-A FORWARD -j LONG", "-A FORWARD -j ACCEPT"]
    lines += [f"-A LONG {m} -j {t}" for m, t in filter_rules]
    lines += ["-A SUB -m mark --mark 0x1/0x1 -j DROP", "-A SUB -j RETURN", "COMMIT"]
    return "\n".join(lines) + "\n"


packets = st.builds(
    lambda dst, proto, dport, mark: Packet(
        "10.244.1.2", dst, proto, sport=40000 if proto in ("tcp", "udp") and dport else None,
        dport=dport if proto in ("tcp", "udp") else None, iif="cni0", oif="flannel.1", mark=mark),
    st.sampled_from(IPS + ["10.96.0.9"]), st.sampled_from(["tcp", "udp", "icmp", "sctp"]),
    st.sampled_from(PORTS + [60, None]), st.sampled_from([0, 1]),
)


def _linear(text: str) -> Netfilter:
    """The same rules walked rule by rule: every chain marked as having no index."""
    nf = Netfilter.from_texts(text)
    for base in nf._bases:
        for chain in base.table_chains:
            chain._index = None
    return nf


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_weighted_rules(TARGETS), _weighted_rules(NAT_TARGETS), st.lists(packets, min_size=1, max_size=6))
def test_indexed_and_linear_walks_give_identical_results(filter_rules, nat_rules, pkts):
    text = _save(filter_rules, nat_rules)
    indexed, linear = Netfilter.from_texts(text), _linear(text)
    for pkt in pkts:
        for hook in ("prerouting", "forward"):
            assert indexed.evaluate(hook, pkt, {"10.244.1.1"}) == linear.evaluate(hook, pkt, {"10.244.1.1"})


def test_the_index_is_used_for_a_kube_services_list():
    rules = [(f'-d 10.96.{i // 250}.{i % 250 + 1}/32 -p tcp -m comment --comment "ns/s{i}:http '
              f'cluster IP" -m tcp --dport 80', "ACCEPT") for i in range(500)]
    rules.insert(250, ("-m addrtype --dst-type LOCAL", "RETURN"))  # one rule the index cannot key
    nf = Netfilter.from_texts(_save(rules, [("-d 10.96.0.1/32", "RETURN")] * 40))
    pkt = Packet("10.244.1.2", "10.96.1.3", "tcp", 40000, 80, "cni0", "flannel.1")
    (res,) = nf.evaluate("forward", pkt)
    # the verdict names the exact rule, as the linear walk would
    assert res.verdict == "accept" and res.decided_by is None
    assert [(r.chain, r.number) for r in res.trail] == [("FORWARD", 1), ("LONG", 254)]
    assert res.trail[1].text.startswith("-A LONG -d 10.96.1.3/32 -p tcp")
    long_chain = next(b for b in nf._by_hook["forward"]).table_chains.get("LONG")
    compiled = [i for i, r in enumerate(long_chain._rules) if r is not None]
    assert compiled == [250, 253]  # the unkeyed rule and the matching one; 499 others never read


def test_jump_key_reads_only_what_a_rule_provably_needs():
    ip = ip_to_int("10.96.0.10")
    assert jump_key('[3:180] -A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m comment --comment '
                    '"kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-SVC-X') == (ip, 17, 53)
    assert jump_key("-A C -d 10.96.0.10/32 -j X") == (ip, None, None)
    assert jump_key("-A C -d 10.96.0.10 -p tcp -m tcp --dport 80:90 -j X") == (ip, None, None)
    assert jump_key("-A C -d 10.96.0.10/32 -p tcp -m tcp ! --dport 80 -j X") == (ip, None, None)
    assert jump_key("-A C -d 10.96.0.10/32 -p tcp -m comment --comment --dport -j X") == (ip, None, None)
    # a destination in a comment is not a destination; a second -d (iptables keeps the last) is unkeyed
    assert jump_key('-A C -d 10.96.0.10/32 -m comment --comment "-d 1.2.3.4" -j X') == (ip, None, None)
    assert jump_key('-A C -m comment --comment "-d 1.2.3.4" -j X') is None
    assert jump_key("-A C -d 10.96.0.10/32 -d 10.96.0.11/32 -j X") is None
    for line in ("-A C ! -d 10.96.0.10/32 -j X", "-A C -d 10.96.0.0/24 -j X", "-A C -j X",
                 "-A C -p tcp -m tcp --dport 80 -j X", "-A C -d 10.96.0.10/32 -p tcp "
                 '-m comment --comment "unterminated -j X', "-A C -d 999.1.1.1/32 -p tcp -m comment "
                 "--comment a -m tcp --dport 80 -j X"):
        assert jump_key(line) is None, line


def test_a_bad_rule_is_reported_when_the_walk_reaches_it_and_not_before():
    text = "\n".join(["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
                      ":UNUSED - [0:0]", ":BAD - [0:0]", "-A FORWARD -d 10.96.0.7/32 -j BAD",
                      "-A UNUSED -m statistic --mode random --probability 2 -j DROP",
                      "-A BAD -m statistic --mode random --probability 2 -j DROP", "COMMIT", ""])
    nf = Netfilter.from_texts(text)  # the structure is fine: nothing parsed yet
    (res,) = nf.evaluate("forward", Packet("10.244.1.2", "10.96.0.8", "icmp", iif="cni0", oif="eth0"))
    assert res.verdict == "accept"
    with pytest.raises(BundleError, match=r"iptables-save \(nf_tables\) line 9: probability 2"):
        nf.evaluate("forward", Packet("10.244.1.2", "10.96.0.7", "icmp", iif="cni0", oif="eth0"))
    with pytest.raises(BundleError, match="line 3: not an iptables-save line"):
        Netfilter.from_texts("*filter\n:INPUT ACCEPT [0:0]\nhello\nCOMMIT\n")


FIXTURE_SAVE = (__import__("pathlib").Path(__file__).parent.parent / "fixtures" / "netfilter" /
                "kube-proxy-flannel.nft.iptables-save").read_text()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_weighted_rules(TARGETS), _weighted_rules(NAT_TARGETS))
def test_listing_every_rule_without_compiling_gives_the_compiled_refs(filter_rules, nat_rules):
    """Netfilter.rules() (rule counters, nftrace) reads refs from the text; they are the refs
    a walk's verdict carries, comments and counters included."""
    for text in (_save(filter_rules, nat_rules), FIXTURE_SAVE):
        listed = Netfilter.from_texts(text).rules()
        compiled = Netfilter.from_texts(text)
        for base in compiled._bases:
            for chain in base.table_chains:
                chain.rules  # compile every rule, so refs come from the parsed rules
        assert listed == compiled.rules()
        assert any(r.comment for r in listed)
