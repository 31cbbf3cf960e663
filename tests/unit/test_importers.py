"""Pasted command output → Bundle (`podpath snapshot import`).

Fixtures in tests/fixtures/pasted/ are genuine output of iproute2 6.1, net-tools arp, bridge and
iptables 1.8.9, captured from a flannel-VXLAN-like node built in throwaway netns by capture.sh
(node1_*, pod1_*); the ipvsadm ones are written with ipvsadm 1.31's own printf formats (this
kernel has no IPVS); ticket_node2.txt and chat_squashed_node3.txt are hand-written tickets.
Every command is checked in its normal and its squashed form (every newline replaced by a space).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podpath.tracer.bundle import (Addr, Bundle, Fdb, Host, IpvsDest, IpvsService, Link, Neigh, Route,
                                   Rule, Vxlan)
from podpath.tracer.errors import BundleError
from podpath.tracer.netfilter.iptables import parse_save
from podpath.tracer.snapshot.importers import COMMANDS, import_texts, recognise

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "pasted"


def load(name: str) -> str:
    return (FIX / name).read_text()


def squash(text: str) -> str:
    return text.replace("\n", " ")


def host_of(text: str, label: str = "node1.txt") -> Host:
    bundle = import_texts([(label, text)])
    assert bundle.source == "import" and len(bundle.hosts) == 1
    return bundle.hosts[0]


@pytest.fixture(params=["normal", "squashed"])
def form(request):
    return (lambda t: t) if request.param == "normal" else squash


def without_lines(gaps: dict[str, str]) -> dict[str, str]:
    """Gaps minus the unparsed note, whose line numbers differ between the two forms."""
    return {k: v for k, v in gaps.items() if k != "unparsed"}


# --- ip a / ip link / ip -d link ---------------------------------------------------------------

NODE1_LINKS = [
    Link(name="lo", index=1, kind="loopback", up=True, carrier=True, mtu=65536, mac="00:00:00:00:00:00"),
    Link(name="eth0", index=2, kind="veth", mtu=1500, mac="08:00:27:3e:11:0b", peer_index=2),
    Link(name="cni0", index=3, kind="bridge", mtu=1450, mac="6a:1c:43:9e:00:01"),
    Link(name="flannel.1", index=4, kind="vxlan", mtu=1450, mac="5e:8f:2b:6a:71:c4",
         vxlan=Vxlan(vni=1, port=8472, learning=False)),
    Link(name="veth3d9c1a75", index=5, kind="veth", mtu=1450, mac="ee:9f:d4:04:82:60", master="cni0",
         peer_index=2),
    Link(name="veth3d9c1a76", index=6, kind="veth", mtu=1450, mac="96:a1:39:a8:17:7a", master="cni0",
         peer_index=2),
    Link(name="vethdead0002", index=7, kind="veth", up=False, carrier=False, mtu=1500,
         mac="e6:7a:cc:a0:91:15", peer_index=8, peer_name="vethdead0001"),
    Link(name="vethdead0001", index=8, kind="veth", up=True, carrier=False, mtu=1500,  # NO-CARRIER
         mac="e2:81:ab:66:e1:a7", peer_index=7, peer_name="vethdead0002"),
]
NODE1_ADDRS = [
    Addr(ifname="lo", address="127.0.0.1", prefixlen=8, scope="host"),
    Addr(ifname="eth0", address="192.168.56.11", prefixlen=24, scope="global"),
    Addr(ifname="cni0", address="10.244.0.1", prefixlen=24, scope="global"),
    Addr(ifname="flannel.1", address="10.244.0.0", prefixlen=32, scope="global"),
]
FLANNEL_GUESS = {"vxlan": "flannel.1: VNI 1, port 8472, learning off assumed (flannel defaults); "
                          "paste `ip -d link show flannel.1` for the real values"}


@pytest.mark.parametrize("fixture", ["node1_ip_a.txt", "node1_ip_addr_show.txt", "node1_ip_color_a.txt"])
def test_ip_addr(fixture, form):
    h = host_of(form(load(fixture)))
    assert h.sources == ["ip a"]
    assert h.kind == "node" and h.node == "node1" and h.name == "node1"  # flannel.1 and cni0 make it a node
    assert h.links == NODE1_LINKS
    assert h.addrs == NODE1_ADDRS  # inet6 skipped silently: the bundle is IPv4
    assert h.gaps == FLANNEL_GUESS


def test_ip_link_has_no_addresses(form):
    h = host_of(form(load("node1_ip_link.txt")))
    assert h.sources == ["ip link"]
    assert h.links == NODE1_LINKS and h.addrs == []


def test_ip_detail_link(form):
    """`ip -d link`: kinds from the detail line, the real VXLAN parameters, bridge port hairpin."""
    h = host_of(form(load("node1_ip_d_link.txt")))
    assert h.sources == ["ip link"] and h.gaps == {}
    flannel = h.link("flannel.1")
    assert flannel.kind == "vxlan"
    assert flannel.vxlan == Vxlan(vni=1, port=8472, local="192.168.56.11", dev="eth0", learning=False)
    assert h.link("cni0").kind == "bridge" and h.link("cni0").hairpin is None
    assert h.link("veth3d9c1a75").hairpin is True and h.link("veth3d9c1a75").master == "cni0"
    assert h.link("eth0").kind == "veth"  # the "veth" detail line, not a guess
    assert [l.kind for l in h.links] == ["loopback", "veth", "bridge", "vxlan", "veth", "veth", "veth", "veth"]


def test_ip_detail_addr_merges_with_plain(form):
    """`ip -d a` then `ip a` of the same host: one link per name, detail kept."""
    h = host_of(form(load("node1_ip_d_a.txt") + load("node1_ip_a.txt")))
    assert [l.name for l in h.links] == [l.name for l in NODE1_LINKS]
    assert h.link("flannel.1").vxlan.local == "192.168.56.11"
    assert h.addrs == NODE1_ADDRS and "vxlan" not in h.gaps


def test_pod_ip_a(form):
    h = host_of(form(load("pod1_ip_a.txt")), "pod1.txt")
    assert h.name == "pod1"
    assert h.link("eth0") == Link(name="eth0", index=2, kind="veth", mtu=1450, mac="0a:58:0a:f4:00:05",
                                  peer_index=5)
    assert h.addrs[1] == Addr(ifname="eth0", address="10.244.0.5", prefixlen=24, scope="global")


def test_ip_brief(form):
    h = host_of(form(load("node1_ip_br_a.txt")))
    assert h.sources == ["ip -br a"]
    assert h.addrs == [Addr(ifname=a.ifname, address=a.address, prefixlen=a.prefixlen) for a in NODE1_ADDRS]
    assert h.link("vethdead0001").carrier is False and h.link("vethdead0002").up is False
    assert h.link("veth3d9c1a75").peer_index == 2 and h.link("cni0").carrier is True


def test_ip_oneline_addresses(form):
    h = host_of(form(load("node1_ip_o_a.txt")))
    assert h.sources == ["ip a"]
    assert [(a.ifname, a.address, a.prefixlen, a.scope) for a in h.addrs] == \
        [(a.ifname, a.address, a.prefixlen, a.scope) for a in NODE1_ADDRS]


# --- ip route / ip rule / ip route get ------------------------------------------------------------

NODE1_ROUTES = [
    Route(dst="default", gateway="192.168.56.1", dev="eth0", proto="dhcp", prefsrc="192.168.56.11",
          metric=100, scope="global"),
    Route(dst="10.96.0.0/12", type="blackhole", proto="boot", scope="global"),
    Route(dst="10.244.0.0/24", dev="cni0", proto="kernel", scope="link", prefsrc="10.244.0.1"),
    Route(dst="10.244.1.0/24", gateway="10.244.1.0", dev="flannel.1", onlink=True, proto="boot", scope="global"),
    Route(dst="10.244.2.0/24", gateway="10.244.2.0", dev="flannel.1", onlink=True, proto="boot", scope="global"),
    Route(dst="172.16.0.0/16", gateway="192.168.56.2", dev="eth0", proto="boot", scope="global"),
    Route(dst="192.168.56.0/24", dev="eth0", proto="kernel", scope="link", prefsrc="192.168.56.11"),
]
LOCAL_ROUTES = [
    Route(dst="10.244.0.0/32", table=255, type="local", dev="flannel.1", proto="kernel", scope="host",
          prefsrc="10.244.0.0"),
    Route(dst="10.244.0.1/32", table=255, type="local", dev="cni0", proto="kernel", scope="host",
          prefsrc="10.244.0.1"),
    Route(dst="10.244.0.255/32", table=255, type="broadcast", dev="cni0", proto="kernel", scope="link",
          prefsrc="10.244.0.1"),
    Route(dst="127.0.0.0/8", table=255, type="local", dev="lo", proto="kernel", scope="host", prefsrc="127.0.0.1"),
    Route(dst="127.0.0.1/32", table=255, type="local", dev="lo", proto="kernel", scope="host", prefsrc="127.0.0.1"),
    Route(dst="127.255.255.255/32", table=255, type="broadcast", dev="lo", proto="kernel", scope="link",
          prefsrc="127.0.0.1"),
    Route(dst="192.168.56.11/32", table=255, type="local", dev="eth0", proto="kernel", scope="host",
          prefsrc="192.168.56.11"),
    Route(dst="192.168.56.255/32", table=255, type="broadcast", dev="eth0", proto="kernel", scope="link",
          prefsrc="192.168.56.11"),
]
MULTIPATH = {"multipath": "172.16.0.0/16: 2 nexthops, kept the first (via 192.168.56.2 dev eth0)"}


@pytest.mark.parametrize("fixture", ["node1_ip_r.txt", "node1_ip_color_r.txt"])
def test_ip_route(fixture, form):
    h = host_of(form(load(fixture)))
    assert h.sources == ["ip r"]
    assert h.routes == NODE1_ROUTES
    assert h.gaps == MULTIPATH
    assert h.routes[3].text() == "10.244.1.0/24 via 10.244.1.0 dev flannel.1 proto boot onlink"


def test_ip_route_table_local_without_table_words(form):
    """`ip r show table local` omits "table local": local/broadcast routes still land in 255."""
    h = host_of(form(load("node1_ip_r_local.txt")))
    assert h.routes == LOCAL_ROUTES and h.gaps == {}


def test_ip_route_table_all(form):
    h = host_of(form(load("node1_ip_route_table_all.txt")))
    table100 = Route(dst="10.50.0.0/16", table=100, gateway="192.168.56.1", dev="eth0", proto="boot",
                     scope="global")
    assert h.routes == [table100] + NODE1_ROUTES + LOCAL_ROUTES
    assert h.gaps == MULTIPATH | {"ipv6": "15 IPv6 entries skipped (podpath reads IPv4)"}


def test_ip_route_arguments_fill_what_output_omits(form):
    """`ip r show table 100` omits the table, `ip r show dev flannel.1` the device."""
    h = host_of(form(load("node1_ip_r_100.txt")))
    assert h.routes == [Route(dst="10.50.0.0/16", table=100, gateway="192.168.56.1", dev="eth0",
                              proto="boot", scope="global")]
    h = host_of(form(load("node1_ip_r_dev_flannel.txt")))
    assert h.routes == NODE1_ROUTES[3:5]


def test_ip_rule(form):
    h = host_of(form(load("node1_ip_rule.txt")))
    assert h.sources == ["ip rule"]
    assert h.rules == [Rule(priority=0, table=255), Rule(priority=32766, table=254), Rule(priority=32767, table=253)]
    h = host_of(form("0:\tfrom all lookup local\n100:\tnot from 10.244.0.0/16 fwmark 0x4000/0x4000 iif cni0 "
                     "lookup 100\n200:\tfrom all to 10.96.0.0/12 blackhole\n"))
    assert h.rules[1] == Rule(priority=100, table=100, src="10.244.0.0/16", iif="cni0", fwmark=0x4000,
                              fwmask=0x4000, invert=True)
    assert h.rules[2] == Rule(priority=200, table=None, action="blackhole", dst="10.96.0.0/12")


def test_ip_route_get(form):
    h = host_of(form(load("node1_ip_r_get.txt")))
    assert h.sources == ["ip r get"] and h.gaps == {} and h.routes == []
    assert h.route_lookups == [
        Route(dst="10.244.1.7/32", table=None, gateway="10.244.1.0", dev="flannel.1", prefsrc="10.244.0.0"),
        Route(dst="10.244.0.5/32", table=None, dev="cni0", prefsrc="10.244.0.1"),
        Route(dst="10.244.0.1/32", table=255, type="local", dev="lo", prefsrc="10.244.0.1"),
        Route(dst="10.96.0.10/32", table=None, type="blackhole"),  # "RTNETLINK answers: Invalid argument"
        Route(dst="8.8.8.8/32", table=None, gateway="192.168.56.1", dev="eth0"),
        Route(dst="10.244.0.6/32", table=None, dev="cni0"),
        Route(dst="172.16.3.4/32", table=None, gateway="192.168.56.2", dev="eth0", prefsrc="192.168.56.11"),
        Route(dst="10.50.1.1/32", table=None, gateway="192.168.56.1", dev="eth0", prefsrc="192.168.56.11"),
    ]


def test_ip_route_get_errors_need_the_query():
    text = "$ ip r get 10.98.0.5\nRTNETLINK answers: No route to host\n$ ip r get 10.97.0.1\n" \
           "RTNETLINK answers: Permission denied\n$ ip r get 10.1.2.3\nRTNETLINK answers: Network is unreachable\n"
    h = host_of(text)
    assert [(r.dst, r.type) for r in h.route_lookups] == [
        ("10.98.0.5/32", "unreachable"), ("10.97.0.1/32", "prohibit"), ("10.1.2.3/32", "unreachable")]
    # without the command line the error names no address: reported, not guessed
    h = host_of("RTNETLINK answers: No route to host\n10.0.0.0/8 dev eth0 scope link\n")
    assert h.route_lookups == [] and "unparsed" in h.gaps


# --- neighbours: ip neigh, arp -a, arp -n -------------------------------------------------------

NODE1_NEIGH = [
    Neigh(ifname="cni0", dst="10.244.0.5", lladdr="0a:58:0a:f4:00:05", state=["REACHABLE"]),
    Neigh(ifname="cni0", dst="10.244.0.77", state=["INCOMPLETE"]),
    Neigh(ifname="cni0", dst="10.244.0.6", lladdr="0a:58:0a:f4:00:06", state=["REACHABLE"]),
    Neigh(ifname="flannel.1", dst="10.244.1.0", lladdr="3a:f1:0c:5d:01:9e", state=["PERMANENT"]),
    Neigh(ifname="flannel.1", dst="10.244.2.0", lladdr="3a:f1:0c:5d:02:9e", state=["PERMANENT"]),
    Neigh(ifname="eth0", dst="192.168.56.2", lladdr="52:54:00:12:35:02", state=["REACHABLE"], router=True),
    Neigh(ifname="eth0", dst="192.168.56.99", state=["INCOMPLETE"]),
    Neigh(ifname="eth0", dst="192.168.56.1", lladdr="9e:71:92:3c:a2:e7", state=["REACHABLE"]),
    Neigh(ifname="eth0", dst="10.244.0.6", lladdr="08:00:27:9d:42:aa", state=["STALE"]),  # same IP, 2 MACs
]


def test_ip_neigh(form):
    h = host_of(form(load("node1_ip_neigh.txt")))
    assert h.sources == ["ip neigh"] and h.gaps == {}
    assert h.neigh == NODE1_NEIGH


def test_ip_neigh_statistics(form):
    """`ip -s neigh` glues "probes" to the counters (`used 1/1/1probes 4`)."""
    h = host_of(form(load("node1_ip_s_neigh.txt")))
    assert h.gaps == {}
    assert sorted(map(repr, h.neigh)) == sorted(map(repr, NODE1_NEIGH))


def test_ip_neigh_show_dev(form):
    h = host_of(form(load("node1_ip_neigh_dev_eth0.txt")))
    assert h.neigh == [n for n in NODE1_NEIGH if n.ifname == "eth0"]
    h = host_of(form("192.168.56.2 lladdr 52:54:00:12:35:02 router STALE\n10.0.0.1 dev eth0 FAILED\n"))
    assert h.neigh == [Neigh(ifname="eth0", dst="10.0.0.1", state=["FAILED"])]
    assert "neigh dev" in h.gaps  # the first line names no device and no command said which


@pytest.mark.parametrize("fixture,source", [("node1_arp_a.txt", "arp -a"), ("node1_arp_n.txt", "arp -n")])
def test_arp(fixture, source, form):
    """net-tools reads /proc/net/arp: complete entries are REACHABLE as far as it can tell."""
    h = host_of(form(load(fixture)))
    assert h.sources == [source] and h.gaps == {}
    expected = [dataclasses.replace(n, router=False, state=["REACHABLE"] if n.state == ["STALE"] else n.state)
                for n in NODE1_NEIGH]
    assert sorted(map(repr, h.neigh)) == sorted(map(repr, expected))  # arp -n lists in its own order
    both = [n for n in h.neigh if n.dst == "10.244.0.6"]
    assert [(n.ifname, n.lladdr) for n in both] == [("cni0", "0a:58:0a:f4:00:06"), ("eth0", "08:00:27:9d:42:aa")]


def test_arp_variants(form):
    text = ("gateway (192.168.56.1) at 52:54:00:12:35:02 [ether] on eth0\n"
            "? (10.244.0.9) at <incomplete> on cni0\n"
            "? (192.168.1.1) at 0:11:22:3:4:5 on en0 ifscope [ethernet]\n"  # BSD / macOS
            "? (10.0.0.9) at 02:00:00:00:00:09 [ether] PERM PUB on eth1\n")
    h = host_of(form(text))
    assert h.neigh == [
        Neigh(ifname="eth0", dst="192.168.56.1", lladdr="52:54:00:12:35:02", state=["REACHABLE"]),
        Neigh(ifname="cni0", dst="10.244.0.9", lladdr=None, state=["INCOMPLETE"]),
        Neigh(ifname="en0", dst="192.168.1.1", lladdr="00:11:22:03:04:05", state=["REACHABLE"]),
        Neigh(ifname="eth1", dst="10.0.0.9", lladdr="02:00:00:00:00:09", state=["PERMANENT"]),
    ]


def test_ip_neigh_wins_over_arp_for_the_same_entry():
    h = host_of(load("node1_arp_a.txt") + load("node1_ip_neigh.txt"))
    assert sorted(map(repr, h.neigh)) == sorted(map(repr, NODE1_NEIGH))
    assert h.sources == ["arp -a", "ip neigh"]


# --- bridge fdb -----------------------------------------------------------------------------------

NODE1_FDB = [
    Fdb(ifname="cni0", mac="6a:1c:43:9e:00:01", master="cni0", flags=["master", "permanent"]),
    Fdb(ifname="flannel.1", mac="3a:f1:0c:5d:02:9e", dst="192.168.56.13", flags=["self", "permanent"]),
    Fdb(ifname="flannel.1", mac="3a:f1:0c:5d:01:9e", dst="192.168.56.12", flags=["self", "permanent"]),
    Fdb(ifname="veth3d9c1a75", mac="0a:58:0a:f4:00:05", master="cni0", flags=["master"]),
    Fdb(ifname="veth3d9c1a75", mac="ee:9f:d4:04:82:60", master="cni0", flags=["master", "permanent"]),
    Fdb(ifname="veth3d9c1a76", mac="0a:58:0a:f4:00:06", master="cni0", flags=["master"]),
    Fdb(ifname="veth3d9c1a76", mac="96:a1:39:a8:17:7a", master="cni0", flags=["master", "permanent"]),
]


def test_bridge_fdb(form):
    """Multicast self entries (33:33:*, 01:00:5e:*) are dropped as the live collector does."""
    h = host_of(form(load("node1_bridge_fdb.txt")))
    assert h.sources == ["bridge fdb"] and h.gaps == {}
    assert h.fdb == NODE1_FDB
    assert h.fdb[2].text() == "3a:f1:0c:5d:01:9e dev flannel.1 dst 192.168.56.12 self permanent"


def test_bridge_fdb_show_dev(form):
    h = host_of(form(load("node1_bridge_fdb_show_dev.txt")))
    assert h.fdb == NODE1_FDB[1:3]


def test_bridge_fdb_vlan_and_flags(form):
    text = ("00:00:00:00:00:00 dev flannel.1 dst 192.168.56.14 self permanent\n"
            "52:54:00:aa:bb:cc dev eth1 vlan 10 master br0 permanent\n"
            "52:54:00:aa:bb:cd dev eth1 vlan 10 extern_learn master br0\n")
    h = host_of(form(text))
    assert h.fdb == [
        Fdb(ifname="flannel.1", mac="00:00:00:00:00:00", dst="192.168.56.14", flags=["self", "permanent"]),
        Fdb(ifname="eth1", mac="52:54:00:aa:bb:cc", master="br0", vlan=10, flags=["master", "permanent"]),
        Fdb(ifname="eth1", mac="52:54:00:aa:bb:cd", master="br0", vlan=10, flags=["extern_learn", "master"]),
    ]


# --- iptables-save --------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["node1_iptables_save_c.txt", "node1_iptables_save.txt"])
def test_iptables_save_nft_verbatim(fixture, form):
    original = load(fixture)
    h = host_of(form(original))
    assert h.sources == ["iptables-save"]
    assert h.iptables_save == {"nft": original}  # newlines restored exactly when squashed
    assert h.gaps == {"iptables-legacy": "iptables-nft-save warns that legacy tables exist; "
                                         "paste `iptables-legacy-save -c` too"}


def test_iptables_save_legacy_and_nft_together(form):
    legacy, nft = load("node1_iptables_legacy_save.txt"), load("node1_iptables_save_c.txt")
    h = host_of(form(legacy + nft))
    assert h.iptables_save == {"legacy": legacy, "nft": nft}
    assert h.gaps == {}  # the legacy tables the warning asks for are there


def test_iptables_save_quoted_words_do_not_split(form):
    text = ('*filter\n:INPUT ACCEPT [0:0]\n'
            '-A INPUT -m comment --comment "old -A rule COMMIT here" -j ACCEPT\n'
            '-A INPUT -m comment --comment "a \\"quoted\\" *nat :X ACCEPT [0:0]" -j DROP\n'
            'COMMIT\n')
    h = host_of(form(text))
    assert h.iptables_save == {"legacy": text}


def test_iptables_fragment_gets_its_inferred_table_and_says_so():
    text = "$ iptables-save | grep KUBE-SVC-TCOU\n-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -j KUBE-SVC-TCOU7JCQXEZGVUNU\n"
    h = host_of(text)
    rules = parse_save(h.iptables_save["legacy"])
    nat = rules.tables["nat"]
    assert [r.text for r in nat.chains["KUBE-SERVICES"].rules] == \
        ["-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -j KUBE-SVC-TCOU7JCQXEZGVUNU"]
    assert "table inferred (nat for KUBE-SERVICES)" in h.gaps["iptables"]


def test_iptables_nft_save_command_names_the_backend():
    h = host_of("# iptables-nft-save\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n")
    assert list(h.iptables_save) == ["nft"]
    h = host_of("$ ip6tables-save\n# Generated by ip6tables-save v1.8.9 (nf_tables) on Thu Nov 26 07:11:31 2026\n"
                "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n")
    assert h.iptables_save == {} and "ip6tables" in h.gaps


# --- ipvsadm --------------------------------------------------------------------------------------

NODE1_IPVS = [
    IpvsService(proto="TCP", address="10.96.0.1", port=443, scheduler="rr",
                dests=[IpvsDest(address="192.168.56.11", port=6443, forward="Masq", weight=1, active=3)]),
    IpvsService(proto="TCP", address="10.96.0.10", port=53, scheduler="rr",
                dests=[IpvsDest(address="10.244.0.5", port=53, weight=1),
                       IpvsDest(address="10.244.1.6", port=53, weight=0, inactive=2)]),
    IpvsService(proto="TCP", address="10.96.0.10", port=9153, scheduler="rr",
                dests=[IpvsDest(address="10.244.0.5", port=9153), IpvsDest(address="10.244.1.6", port=9153)]),
    IpvsService(proto="TCP", address="10.96.45.7", port=80, scheduler="rr", persistent=10800),  # ClientIP affinity kept
    IpvsService(proto="UDP", address="10.96.0.10", port=53, scheduler="rr",
                dests=[IpvsDest(address="10.244.0.5", port=53, weight=1, inactive=12),
                       IpvsDest(address="10.244.1.6", port=53, weight=0, inactive=3)]),
    IpvsService(proto="FWM", address=None, port=None, scheduler="wrr", fwmark=100,
                dests=[IpvsDest(address="10.244.2.9", port=80, forward="Route", weight=2)]),
]


def test_ipvsadm_list(form):
    h = host_of(form(load("node1_ipvsadm_Ln.txt")))
    assert h.sources == ["ipvsadm -Ln"] and h.gaps == {}
    assert h.ipvs == NODE1_IPVS


def test_ipvsadm_save(form):
    """`ipvsadm -Sn` has no connection counters; everything else matches -Ln."""
    h = host_of(form(load("node1_ipvsadm_Sn.txt")))
    assert h.sources == ["ipvsadm -Sn"] and h.gaps == {}
    no_counts = [dataclasses.replace(s, dests=[dataclasses.replace(d, active=0, inactive=0) for d in s.dests])
                 for s in NODE1_IPVS]
    assert h.ipvs == no_counts


# --- sysctl ---------------------------------------------------------------------------------------


def test_sysctl(form):
    h = host_of(form(load("node1_sysctl.txt")))
    assert h.sources == ["sysctl"] and h.gaps == {}
    assert h.sysctl("net.ipv4.ip_forward") == "1"
    assert h.sysctls["net.ipv4.conf.all.rp_filter"] == "0"
    assert h.sysctls["net.ipv4.conf.default.rp_filter"] == "1"
    assert h.sysctls["net.ipv4.conf.flannel.1.forwarding"] == "1"  # sysctl prints flannel/1
    assert h.sysctls["net.ipv4.conf.veth3d9c1a75.rp_filter"] == "1"
    assert len(h.sysctls) == 51


def test_sysctl_sets_link_forwarding_and_other_forms(form):
    h = host_of(form(load("node1_ip_a.txt") + load("node1_sysctl.txt")))
    assert h.link("flannel.1").forwarding is True and h.link("cni0").forwarding is True
    text = ("$ cat /proc/sys/net/ipv4/ip_forward\n0\n"
            "net.ipv4.ip_local_port_range = 32768\t60999\n"
            "net.ipv4.tcp_congestion_control = cubic\n"
            "kernel.hostname = node1\n"
            "sysctl: permission denied on key 'fs.protected_fifos'\n")
    h = host_of(form(text))
    assert h.sysctls == {"net.ipv4.ip_forward": "0", "net.ipv4.tcp_congestion_control": "cubic",
                         "net.ipv4.ip_local_port_range": "32768\t60999"}
    assert h.gaps == {}


# --- whole tickets, prompts, chat damage ----------------------------------------------------------


def test_ticket_with_prompts_prose_and_unsupported_commands():
    h = host_of(load("ticket_node2.txt"), "ticket-4711.txt")
    assert h.name == "ticket-4711" and h.kind == "node"
    assert h.sources == ["ip a", "ip r", "ip r get", "arp -a", "bridge fdb", "sysctl", "ipvsadm -Ln"]
    assert h.link("kube-ipvs0") == Link(name="kube-ipvs0", index=5, kind="dummy", up=False, carrier=False,
                                        mtu=1500, mac="4e:6a:12:c2:aa:01")
    assert h.link("vethf00dbabe") == Link(name="vethf00dbabe", index=7, kind="veth", mtu=1500,
                                          mac="0e:9b:51:23:77:4c", peer_index=3, peer_netnsid=1)
    assert h.link("veth8c1f2e3a").peer_netnsid == 0 and h.link("veth8c1f2e3a").master == "cni0"
    assert h.link("ens33").kind == "ether"
    assert Addr(ifname="ens33", address="192.168.56.12", prefixlen=24, scope="global") in h.addrs
    assert [a.address for a in h.addrs if a.ifname == "kube-ipvs0"] == ["10.96.0.1", "10.96.0.10"]
    assert h.routes[1] == Route(dst="10.244.0.0/24", gateway="10.244.0.0", dev="flannel.1", onlink=True,
                                proto="boot", scope="global")
    assert h.route_lookups == [Route(dst="10.244.0.5/32", table=None, gateway="10.244.0.0", dev="flannel.1",
                                     prefsrc="10.244.1.0")]
    assert [(n.ifname, n.dst, n.lladdr, n.state) for n in h.neigh if n.dst == "10.244.1.5"] == [
        ("cni0", "10.244.1.5", "0a:58:0a:f4:01:05", ["REACHABLE"]),
        ("ens33", "10.244.1.5", "00:0c:29:11:22:33", ["REACHABLE"])]
    assert h.fdb == [Fdb(ifname="flannel.1", mac="5e:8f:2b:6a:71:c4", dst="192.168.56.11",
                         flags=["self", "permanent"])]
    assert h.sysctls == {"net.ipv4.ip_forward": "0"}
    assert h.ipvs[1].dests[1] == IpvsDest(address="10.244.1.9", port=53, weight=0, inactive=4)
    assert h.gaps["unsupported"] == "`kubectl -n kube-system get pods -o wide | grep dns` at line 77"
    assert h.gaps["unparsed"] == ('1 line at line 1 ("Hi team, pods on node2 cannot reach kube"); '
                                  '2 lines at line 78 ("coredns-5d78c9869d-8x2lq   1/1     Runni")')
    assert h.gaps["vxlan"].startswith("flannel.1: VNI 1")


def test_ticket_squashed_keeps_every_object():
    normal = host_of(load("ticket_node2.txt"))
    squashed = host_of(squash(load("ticket_node2.txt")))
    for f in ("links", "addrs", "routes", "route_lookups", "neigh", "fdb", "sysctls", "ipvs", "sources"):
        assert getattr(squashed, f) == getattr(normal, f), f
    assert "kubectl" in squashed.gaps["unparsed"]  # squashed, an unknown command's end cannot be told


def test_chat_squashed_message(form):
    h = host_of(form(load("chat_squashed_node3.txt")), "node3.txt")
    assert h.sources == ["ip r", "arp -a", "iptables-save"]
    assert h.routes[0] == Route(dst="default", gateway="192.168.56.1", dev="eth0", proto="dhcp",
                                prefsrc="192.168.56.13", metric=100, scope="global")
    assert h.routes[3] == Route(dst="10.244.2.0/24", dev="cni0", proto="kernel", scope="link", prefsrc="10.244.2.1")
    assert h.neigh[2] == Neigh(ifname="flannel.1", dst="10.244.1.0", state=["INCOMPLETE"])
    assert h.iptables_save == {"legacy": (
        "# Generated by iptables-save v1.8.7 (legacy) on Tue Mar  4 10:12:01 2025\n*filter\n"
        ":INPUT ACCEPT [8812:1403312]\n:FORWARD DROP [12:720]\n:OUTPUT ACCEPT [8790:1510290]\n"
        ":KUBE-FORWARD - [0:0]\n"
        '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD\n'
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\nCOMMIT\n"
        "# Completed on Tue Mar  4 10:12:01 2025\n")}
    assert h.gaps == {"unparsed": '6 words at line 1 ("node3 still broken, here you go:")'}


PROMPTS = ["$ {}", "# {}", "root@node1:~# {}", "[root@node1 ~]# {}", "user@node1:~$ sudo {}", "node1 ~ # {}",
           "bash-5.1# {}", "(venv) ops@jump:~/k8s$ kubectl exec -n kube-system kube-proxy-x -- {}",
           "❯ {}", "$ sudo ip netns exec cni-1234 {}", "{}"]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_prompts_and_command_lines(prompt, form):
    text = "\n".join([prompt.format("ip -4 addr show"), load("node1_ip_a.txt"),
                      prompt.format("ip route show"), load("node1_ip_r.txt"),
                      prompt.format("arp -an"), load("node1_arp_a.txt"),
                      prompt.format("bridge fdb show"), load("node1_bridge_fdb.txt"),
                      prompt.format("iptables-save -c"), load("node1_iptables_save_c.txt"),
                      prompt.format("ipvsadm -Ln"), load("node1_ipvsadm_Ln.txt"),
                      prompt.format("sysctl net.ipv4.ip_forward"), "net.ipv4.ip_forward = 1"])
    h = host_of(form(text))
    assert h.sources == ["ip a", "ip r", "arp -a", "bridge fdb", "iptables-save", "ipvsadm -Ln", "sysctl"]
    assert without_lines(h.gaps) == without_lines(h.gaps) | FLANNEL_GUESS | MULTIPATH
    assert "unparsed" not in h.gaps, h.gaps
    assert h.links == NODE1_LINKS and h.routes == NODE1_ROUTES and h.fdb == NODE1_FDB and h.ipvs == NODE1_IPVS
    assert h.iptables_save == {"nft": load("node1_iptables_save_c.txt")}


def test_recognise_splits_commands(form):
    text = form(load("ticket_node2.txt"))
    pairs = recognise(text)
    assert [c for c, _ in pairs] == ["ip a", "ip r", "ip r get", "arp -a", "bridge fdb", "sysctl", "ipvsadm -Ln"]
    assert pairs[1][1].split() == ("default via 192.168.56.1 dev ens33 proto dhcp src 192.168.56.12 metric 100 "
                                   "10.244.0.0/24 via 10.244.0.0 dev flannel.1 onlink 10.244.1.0/24 dev cni0 "
                                   "proto kernel scope link src 10.244.1.1 192.168.56.0/24 dev ens33 proto kernel "
                                   "scope link src 192.168.56.12 metric 100").split()
    assert pairs[0][1].startswith("1: lo: <LOOPBACK,UP,LOWER_UP>")
    assert "[root@node2" not in pairs[0][1]  # command lines are not part of the chunks


def test_recognise_by_output_alone():
    assert [c for c, _ in recognise(load("node1_ip_d_link.txt"))] == ["ip link"]
    pairs = recognise(load("node1_arp_n.txt") + load("node1_ip_r_get.txt"))
    assert [c for c, _ in pairs] == ["arp -n"] + ["ip r get"] * 8  # one chunk per command line
    assert recognise("nothing to see here") == []


ALL_FIXTURES = sorted(p.name for p in FIX.glob("*.txt"))


@pytest.mark.parametrize("fixture", ALL_FIXTURES)
def test_every_fixture_parses_alike_squashed(fixture):
    normal, squashed = host_of(load(fixture)), host_of(squash(load(fixture)))
    for f in dataclasses.fields(Host):
        if f.name != "gaps":
            assert getattr(squashed, f.name) == getattr(normal, f.name), f.name
    if fixture != "ticket_node2.txt":  # squashed, an unknown command swallows the lines after it
        assert without_lines(squashed.gaps) == without_lines(normal.gaps)


def test_files_concatenated_without_prompts_equal_separate_files(form):
    names = ["node1_ip_d_a.txt", "node1_ip_r.txt", "node1_ip_neigh.txt", "node1_bridge_fdb.txt",
             "node1_iptables_save_c.txt", "node1_ip_r_local.txt", "node1_sysctl.txt", "node1_ip_rule.txt",
             "node1_ip_link.txt", "node1_ip_r_get.txt", "node1_iptables_legacy_save.txt", "node1_ip_br_a.txt",
             "node1_ipvsadm_Ln.txt", "node1_arp_n.txt"]
    separate = import_texts([(n, load(n)) for n in names], host_name="node1").hosts[0]
    for order in (names, names[::-1], names[1::2] + names[::2]):
        h = host_of(form("".join(load(n) for n in order)))
        for f in ("links", "addrs", "routes", "route_lookups", "neigh", "fdb", "rules", "sysctls", "ipvs"):
            assert sorted(map(repr, getattr(h, f))) == sorted(map(repr, getattr(separate, f))), (f, order)
        assert {k: len(v) for k, v in h.iptables_save.items()} == {"nft": 3031, "legacy": 225}
        assert "unparsed" not in h.gaps


@pytest.mark.parametrize("damage", ["crlf", "indent", "quote", "fence", "ansi", "tabs", "nbsp"])
def test_chat_damage_is_tolerated(damage):
    text = load("node1_ip_a.txt") + load("node1_ip_r.txt") + load("node1_arp_a.txt")
    damaged = {
        "crlf": text.replace("\n", "\r\n"),
        "indent": "".join("    " + line + "\n" for line in text.splitlines()),
        "quote": "".join("> " + line + "\n" for line in text.splitlines()),
        "fence": "here:\n```text\n" + text + "```\n",
        "ansi": load("node1_ip_color_a.txt") + load("node1_ip_color_r.txt") + load("node1_arp_a.txt"),
        "tabs": text.replace("    ", "\t"),
        "nbsp": text.replace("    inet ", "\xa0\xa0\xa0\xa0inet ").replace(" ", " \u200b"),
    }[damage]
    h = host_of(damaged)
    assert h.links == NODE1_LINKS and h.addrs == NODE1_ADDRS and h.routes == NODE1_ROUTES
    assert len(h.neigh) == 9
    assert set(h.gaps) <= {"vxlan", "multipath", "unparsed"}
    if damage != "fence":
        assert "unparsed" not in h.gaps
    # indentation stripped by a chat tool: continuation lines still belong to their interface
    flat = host_of("".join(line.strip() + "\n" for line in load("node1_ip_a.txt").splitlines()))
    assert flat.links == NODE1_LINKS and flat.addrs == NODE1_ADDRS


# --- names, merging, errors, JSON ----------------------------------------------------------------


def test_host_names_and_merging():
    b = import_texts([("tickets/node1.txt", load("node1_ip_a.txt")), ("pod1.log", load("pod1_ip_r.txt"))])
    assert [h.name for h in b.hosts] == ["node1", "pod1"]
    assert [h.kind for h in b.hosts] == ["node", "unknown"]  # a pod's `ip r` alone says nothing of its kind
    assert all(h.netns is None for h in b.hosts)
    b = import_texts([("a.txt", load("node1_ip_a.txt")), ("b.txt", load("node1_ip_r.txt"))], host_name="n1")
    assert len(b.hosts) == 1 and b.hosts[0].name == "n1"
    assert b.hosts[0].sources == ["ip a", "ip r"] and b.hosts[0].links == NODE1_LINKS
    b = import_texts([("-", load("node1_ip_r.txt"))])
    assert b.hosts[0].name == "stdin" and b.created


def test_nothing_recognised_is_a_bundle_error():
    with pytest.raises(BundleError) as e:
        import_texts([("notes.txt", "The pods cannot talk to each other.\nPlease help!\n")])
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("notes.txt: ")
    assert "supported: " in msg
    assert all(c.name in msg for c in COMMANDS)
    with pytest.raises(BundleError):
        import_texts([("empty.txt", "")])
    with pytest.raises(BundleError, match="only-prompt.txt"):
        import_texts([("only-prompt.txt", "$ kubectl get pods\nNo resources found\n")])
    with pytest.raises(BundleError):
        import_texts([("ok.txt", load("node1_ip_r.txt")), ("bad.txt", "hello")])


def test_partly_unrecognised_keeps_going():
    text = load("node1_ip_r.txt") + "this line is not output\nnor this one\nor this\n" + load("node1_arp_a.txt")
    h = host_of(text)
    assert h.routes == NODE1_ROUTES and len(h.neigh) == 9
    assert h.gaps["unparsed"] == '3 lines at line 10 ("this line is not output nor this one")'


def test_bundle_json_round_trip():
    b = import_texts([("node1.txt", load("ticket_node2.txt") + load("node1_ip_d_link.txt"))])
    again = Bundle.from_json(b.to_json())
    assert again == b


def test_registry_is_the_extension_point():
    names = [c.name for c in COMMANDS]
    assert len(names) == len(set(names))
    for cmd in ("ip a", "ip link", "ip r", "ip r get", "ip neigh", "arp -a", "arp -n", "bridge fdb",
                "iptables-save", "ipvsadm -Ln", "ipvsadm -Sn", "sysctl"):
        assert cmd in names


# --- hypothesis -----------------------------------------------------------------------------------

VOCAB = sorted(set(
    load("node1_ip_d_a.txt").split() + load("node1_ip_route_table_all.txt").split()
    + load("node1_ip_s_neigh.txt").split() + load("node1_arp_n.txt").split() + load("node1_arp_a.txt").split()
    + load("node1_bridge_fdb.txt").split() + load("node1_iptables_save_c.txt").split()
    + load("node1_ipvsadm_Ln.txt").split() + load("node1_ipvsadm_Sn.txt").split() + load("node1_ip_rule.txt").split()
    + load("node1_ip_br_a.txt").split() + load("node1_sysctl.txt").split() + load("node1_ip_r_get.txt").split()
    + ["RTNETLINK", "answers:", "$", "#", "ip", "r", "get", "a", "-d", "link", "neigh", "show", "dev", "table",
       "arp", "-a", "-n", "bridge", "fdb", "ipvsadm", "-Ln", "-Sn", "cat", "/proc/sys/net/ipv4/ip_forward", "|",
       "grep", '"', "'", "\\", "(incomplete)", "<incomplete>", "?", "(", ")", "->", "=", "nexthop", "cache",
       "<local>", "FWM", "IPv6", "[fd00::1]:53", "-A", "-a", "-t", "-r", "-m", "-w", "-s", "0", "00", "²",
       "४", "1:", "99999999999999999999", "256.1.1.1", "10.0.0.1/33", "used", "1/1/1probes", "\x1b[31m",
       "`", "```", ">", "\r", "\t", "\xa0", "\u200b", ":X", "[0:0]", "*nat", "COMMIT", "mtu", "lock",
       "via", "inet", "inet6", "peer", "brd", "scope", "vxlan", "id", "local", "dstport", "mode", "master"]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_bundle_error(text):
    try:
        import_texts([("x.txt", text)])
        recognise(text)
    except BundleError:
        pass


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(VOCAB) | st.text(max_size=6), max_size=60),
       st.lists(st.sampled_from([" ", "\n", "  ", "\n    ", "\t"]), min_size=1, max_size=5))
def test_word_soup_raises_only_bundle_error(words, seps):
    text = "".join(w + seps[i % len(seps)] for i, w in enumerate(words))
    try:
        bundle = import_texts([("x.txt", text)])
        Bundle.from_json(bundle.to_json())
    except BundleError:
        pass


DEVS = ["eth0", "ens33", "cni0", "flannel.1", "veth3d9c1a75", "kube-ipvs0", "br-1f2e", "eth0.100"]
octet = st.integers(0, 255)
ipv4 = st.tuples(octet, octet, octet, octet).map(lambda t: ".".join(map(str, t)))


@st.composite
def routes(draw) -> Route:
    kind = draw(st.sampled_from(["unicast", "unicast", "unicast", "local", "broadcast", "blackhole",
                                 "unreachable", "prohibit"]))
    plen = draw(st.integers(0, 32))
    dst = "default" if plen == 0 and draw(st.booleans()) else f"{draw(ipv4)}/{plen}"
    dev = draw(st.sampled_from(DEVS))
    typed = kind in ("blackhole", "unreachable", "prohibit")
    local = kind in ("local", "broadcast")
    return Route(
        dst=dst, type=kind,
        table=255 if local else draw(st.sampled_from([254, 254, 100, 253, 1000])),
        gateway=None if typed or local else draw(st.none() | ipv4),
        dev=None if typed else dev,
        prefsrc=None if typed else draw(st.none() | ipv4),
        scope=draw(st.sampled_from(["global", "link", "host"])),
        metric=draw(st.none() | st.integers(1, 2 ** 32 - 1)),
        onlink=False if typed else draw(st.booleans()),
        proto=draw(st.sampled_from(["kernel", "boot", "static", "dhcp", "bird", "ra"])),
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(routes(), min_size=1, max_size=12, unique_by=lambda r: r.text()), st.booleans())
def test_routes_rendered_then_squashed_parse_back_equal(rs, squashed):
    text = "\n".join(r.text() for r in rs) + "\n"
    h = host_of(squash(text) if squashed else text)
    assert h.routes == rs
    assert h.sources == ["ip r"] and "unparsed" not in h.gaps


neighs = st.builds(
    Neigh, ifname=st.sampled_from(DEVS), dst=ipv4,
    lladdr=st.none() | st.tuples(*[st.integers(0, 255)] * 6).map(lambda t: ":".join(f"{b:02x}" for b in t)),
    state=st.sampled_from([["REACHABLE"], ["STALE"], ["PERMANENT"], ["FAILED"], ["INCOMPLETE"], ["DELAY"]]),
    router=st.booleans())


@settings(max_examples=200, deadline=None)
@given(st.lists(neighs, min_size=1, max_size=10, unique_by=lambda n: (n.ifname, n.dst, n.lladdr)), st.booleans())
def test_neighbours_rendered_then_squashed_parse_back_equal(ns, squashed):
    lines = [f"{n.dst} dev {n.ifname}" + (f" lladdr {n.lladdr}" if n.lladdr else "")
             + (" router" if n.router else "") + f" {n.state[0]} " for n in ns]
    text = "\n".join(lines) + "\n"
    h = host_of(squash(text) if squashed else text)
    assert h.neigh == ns


# --- a real namespace (root only) -----------------------------------------------------------------


def _have_root_tools() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and all(shutil.which(t) for t in ("ip", "bridge"))


@pytest.fixture
def netns():
    name = f"ppimp-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.lab
@pytest.mark.skipif(not _have_root_tools(), reason="needs root and iproute2")
def test_real_namespace_output_round_trips(netns):
    """Build a flannel-like node in a throwaway netns, paste its real output, squashed too."""
    def ip(*args: str) -> None:
        subprocess.run(["ip", "-n", netns, *args], check=True, capture_output=True)

    ip("link", "set", "lo", "up")
    ip("link", "add", "eth0", "type", "veth", "peer", "name", "ul0")
    ip("link", "set", "eth0", "address", "08:00:27:00:00:0b", "up")
    ip("addr", "add", "192.168.56.11/24", "dev", "eth0")
    ip("link", "add", "cni0", "mtu", "1450", "type", "bridge")
    ip("addr", "add", "10.244.0.1/24", "dev", "cni0")
    ip("link", "set", "cni0", "up")
    ip("link", "add", "flannel.1", "mtu", "1450", "type", "vxlan", "id", "1", "local", "192.168.56.11",
       "dev", "eth0", "dstport", "8472", "nolearning")
    ip("link", "set", "flannel.1", "address", "5e:8f:2b:6a:71:c4", "up")
    ip("addr", "add", "10.244.0.0/32", "dev", "flannel.1")
    ip("route", "add", "10.244.1.0/24", "via", "10.244.1.0", "dev", "flannel.1", "onlink")
    ip("neigh", "add", "10.244.1.0", "lladdr", "3a:f1:0c:5d:01:9e", "dev", "flannel.1", "nud", "permanent")
    subprocess.run(["bridge", "-n", netns, "fdb", "append", "3a:f1:0c:5d:01:9e", "dev", "flannel.1",
                    "dst", "192.168.56.12", "self", "permanent"], check=True)

    def out(*cmd: str) -> str:
        return subprocess.run(["ip", "netns", "exec", netns, *cmd], check=True, capture_output=True,
                              text=True).stdout

    text = "".join(f"$ {' '.join(c)}\n{out(*c)}" for c in (
        ("ip", "-d", "a"), ("ip", "r"), ("ip", "neigh"), ("bridge", "fdb"), ("ip", "r", "get", "10.244.1.9")))
    for t in (text, squash(text)):
        h = host_of(t)
        assert h.sources == ["ip a", "ip r", "ip neigh", "bridge fdb", "ip r get"]
        assert h.link("flannel.1").vxlan == Vxlan(vni=1, port=8472, local="192.168.56.11", dev="eth0",
                                                  learning=False)
        assert h.link("cni0").kind == "bridge" and h.link("cni0").mtu == 1450
        assert Addr(ifname="flannel.1", address="10.244.0.0", prefixlen=32, scope="global") in h.addrs
        assert Route(dst="10.244.1.0/24", gateway="10.244.1.0", dev="flannel.1", onlink=True, proto="boot",
                     scope="global") in h.routes
        assert Neigh(ifname="flannel.1", dst="10.244.1.0", lladdr="3a:f1:0c:5d:01:9e",
                     state=["PERMANENT"]) in h.neigh
        assert Fdb(ifname="flannel.1", mac="3a:f1:0c:5d:01:9e", dst="192.168.56.12",
                   flags=["self", "permanent"]) in h.fdb
        assert h.route_lookups[0].gateway == "10.244.1.0" and h.route_lookups[0].dev == "flannel.1"
        assert "unparsed" not in h.gaps
