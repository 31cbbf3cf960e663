"""Live snapshot collectors against real network namespaces (root only).

The fixture builds its own small flannel-like topology in namespaces named ppsnap-<hex>-*,
never touching the root namespace's configuration, and deletes them in its finalizer.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys

import pytest

from podpath.tracer.bundle import Bundle, Link, Listener, Neigh, Route, Rule, Vxlan
from podpath.tracer.errors import NodeError
from podpath.tracer.snapshot.live import HostRef, collect, collect_host

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(
        os.geteuid() != 0,
        reason="needs root: builds network namespaces and reads them with setns(2)",
    ),
]

MAC = {
    "cni0": "0a:58:0a:f4:00:01",
    "vetha": "0a:58:0a:f4:00:a1",
    "vethb": "0a:58:0a:f4:00:b1",
    "pa-eth0": "0a:58:0a:f4:00:02",
    "pb-eth0": "0a:58:0a:f4:00:03",
    "node-eth0": "52:54:00:00:50:02",
    "under-eth0": "52:54:00:00:50:03",
    "flannel.1": "0a:58:0a:f4:00:00",
    "remote-vtep": "0a:58:0a:f4:01:00",
}

LISTENER = r"""
import socket, sys, time
t = socket.socket(); t.bind(("10.244.0.3", 8080)); t.listen()
d = socket.socket(socket.AF_INET6); d.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
d.bind(("::", 9090)); d.listen()
v6 = socket.socket(socket.AF_INET6); v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
v6.bind(("::", 9191)); v6.listen()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 5353))
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.connect(("10.244.0.1", 9))
print("ready", flush=True)
time.sleep(600)
"""


def sh(*argv: str, input: str | None = None) -> str:
    p = subprocess.run(argv, input=input, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {p.stderr.strip()}")
    return p.stdout


def ip_batch(ns: str, cmds: str) -> None:
    sh("ip", "-n", ns, "-batch", "-", input=cmds)


def in_ns(ns: str, script: str) -> str:
    return sh("ip", "netns", "exec", ns, "sh", "-ec", script)


def build(p: str) -> dict:
    node, pa, pb, under = f"{p}node", f"{p}pa", f"{p}pb", f"{p}under"
    for ns in (node, pa, pb, under):
        sh("ip", "netns", "add", ns)
    ip_batch(node, f"""
link set lo up
link add cni0 address {MAC['cni0']} mtu 1450 type bridge
addr add 10.244.0.1/24 dev cni0
link add vetha address {MAC['vetha']} mtu 1450 type veth peer name eth0 address {MAC['pa-eth0']} mtu 1450 netns {pa}
link add vethb address {MAC['vethb']} mtu 1450 type veth peer name eth0 address {MAC['pb-eth0']} mtu 1450 netns {pb}
link set vetha master cni0
link set vethb master cni0
link set vetha type bridge_slave hairpin on
link set vetha up
link set vethb up
link set cni0 up
link add eth0 address {MAC['node-eth0']} mtu 1500 type veth peer name eth0 address {MAC['under-eth0']} netns {under}
addr add 192.168.50.2/24 dev eth0
link set eth0 up
link add flannel.1 address {MAC['flannel.1']} mtu 1450 type vxlan id 1 dstport 8472 nolearning local 192.168.50.2 dev eth0
addr add 10.244.0.0/32 dev flannel.1
link set flannel.1 up
route add 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink
neigh add 10.244.1.0 lladdr {MAC['remote-vtep']} dev flannel.1 nud permanent
neigh add 10.244.0.99 dev cni0 nud failed
neigh add 10.244.0.98 dev cni0 nud incomplete
neigh add 192.168.50.3 lladdr {MAC['under-eth0']} dev eth0 nud permanent
rule add from 10.244.0.0/24 to 10.96.0.0/12 lookup 100 pref 100
rule add fwmark 0x10/0xff lookup 101 pref 101
rule add not from 10.0.0.0/8 lookup 101 pref 102
rule add iif vethb unreachable pref 103
route add default via 192.168.50.1 dev eth0 table 100
route add 10.96.0.0/12 dev eth0 table 100 metric 5 proto static scope link
route add blackhole 10.200.0.0/16 table 101
route add 10.77.0.0/16 table 101 nexthop via 192.168.50.3 dev eth0 nexthop via 192.168.50.4 dev eth0
route add 10.99.0.0/16 dev eth0 table 200
link add brdown type bridge
link add vdown0 type veth peer name vdown1
link set vdown0 up
""")
    sh("bridge", "-n", node, "fdb", "append", MAC["remote-vtep"], "dev", "flannel.1",
       "dst", "192.168.50.3", "self", "permanent")
    sh("bridge", "-n", node, "fdb", "append", "00:00:00:00:00:00", "dev", "flannel.1",
       "dst", "192.168.50.3", "self", "permanent")
    for ns, addr in ((pa, "10.244.0.2"), (pb, "10.244.0.3")):
        ip_batch(ns, f"""
link set lo up
addr add {addr}/24 dev eth0
link set eth0 up
route add default via 10.244.0.1 dev eth0
route add 10.244.0.0/16 via 10.244.0.1 dev eth0
""")
    ip_batch(under, "link set lo up\naddr add 192.168.50.3/24 dev eth0\nlink set eth0 up\n")
    in_ns(node, """
echo 1 > /proc/sys/net/ipv4/ip_forward
echo 0 > /proc/sys/net/ipv4/conf/all/rp_filter
echo 1 > /proc/sys/net/ipv4/conf/default/rp_filter
echo 2 > /proc/sys/net/ipv4/conf/eth0/rp_filter
echo 0 > /proc/sys/net/ipv4/conf/vethb/forwarding
echo 1 > /proc/sys/net/ipv4/conf/cni0/proxy_arp
echo 1 > /proc/sys/net/ipv4/conf/flannel.1/accept_local
if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
  echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables; fi
iptables-nft -N FLANNEL-FWD
iptables-nft -A FORWARD -j FLANNEL-FWD
iptables-nft -A FLANNEL-FWD -s 10.244.0.0/16 -j ACCEPT
iptables-legacy -t nat -N FLANNEL-POSTRTG
iptables-legacy -t nat -A POSTROUTING -j FLANNEL-POSTRTG
iptables-legacy -t nat -A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE
nft add table inet ppsnap
nft add chain inet ppsnap input '{ type filter hook input priority 0; policy accept; }'
nft add rule inet ppsnap input tcp dport 9999 drop
conntrack -I -p tcp -s 10.244.0.2 -d 10.96.0.10 --sport 40000 --dport 80 \
  -r 10.244.1.5 -q 10.244.0.2 --reply-port-src 8080 --reply-port-dst 40000 \
  --state ESTABLISHED -t 300 -u ASSURED -m 7
conntrack -I -p udp -s 10.244.0.3 -d 10.244.1.9 --sport 5353 --dport 53 -t 300
conntrack -I -p tcp -s 10.244.0.9 -d 10.244.0.3 --sport 1234 --dport 8080 --state SYN_SENT -t 300
""")
    listener = subprocess.Popen(
        ["ip", "netns", "exec", pb, sys.executable, "-c", LISTENER],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    if listener.stdout.readline().strip() != "ready":
        listener.kill()
        raise RuntimeError(f"listener did not start: {listener.stderr.read()}")
    return {"node": node, "pa": pa, "pb": pb, "under": under, "listener": listener}


def teardown(p: str, topo: dict) -> None:
    proc = topo.get("listener")
    if proc is not None:
        proc.kill()
        proc.wait()
    for ns in sh("ip", "netns", "list").split("\n"):
        name = ns.split(" ")[0]
        if name.startswith(p):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture(scope="module")
def topo():
    prefix = f"ppsnap-{secrets.token_hex(3)}-"
    t: dict = {}
    try:
        t = build(prefix)
        t["refs"] = [
            HostRef("node-a", "node", "node-a", t["node"]),
            HostRef("pod-a", "pod", "node-a", t["pa"], "default"),
            HostRef("pod-b", "pod", "node-a", t["pb"], "default"),
            HostRef("underlay", "node", None, t["under"]),
        ]
        t["bundle"] = collect(t["refs"])
        yield t
    finally:
        teardown(prefix, t)


def ip_json(ns: str, *args: str):
    return json.loads(sh("ip", "-j", "-n", ns, *args))


def link_index(ns: str, name: str) -> int:
    return ip_json(ns, "link", "show", "dev", name)[0]["ifindex"]


# --- tests --------------------------------------------------------------------------------


def test_hosts_identity_sources_and_gaps(topo):
    b = topo["bundle"]
    assert [h.name for h in b.hosts] == ["node-a", "pod-a", "pod-b", "underlay"]
    node, pa = b.host("node-a"), b.host("pod-a")
    assert (node.kind, node.node, node.netns, node.namespace) == ("node", "node-a", topo["node"], None)
    assert (pa.kind, pa.node, pa.netns, pa.namespace) == ("pod", "node-a", topo["pa"], "default")
    assert b.host("underlay").node == "underlay"  # a node's own name
    assert b.source == "live" and b.created
    for h in b.hosts:
        assert h.sources == ["netlink", "procfs", "iptables-save", "nft"], h.name
        # IPVS is read where kube-proxy keeps it, in nodes (a pod's own table is not the cluster's)
        assert h.gaps == ({} if h.kind == "pod" else {"ipvs": "kernel has no IPVS (ip_vs)"}), h.name
        assert h.ipvs == []


def test_links_node(topo):
    node = topo["bundle"].host("node-a")
    ns = topo["node"]
    idx = {n: link_index(ns, n) for n in
           ("lo", "cni0", "vetha", "vethb", "eth0", "flannel.1", "brdown", "vdown0", "vdown1")}
    pa_eth0 = link_index(topo["pa"], "eth0")
    under_eth0 = link_index(topo["under"], "eth0")
    nsid = {l["ifname"]: l.get("link_netnsid") for l in ip_json(ns, "link", "show")}
    got = {l.name: l for l in node.links}
    assert set(got) == set(idx)

    assert got["lo"] == Link("lo", idx["lo"], "loopback", True, True, 65536, "00:00:00:00:00:00",
                             forwarding=True)
    assert got["cni0"] == Link("cni0", idx["cni0"], "bridge", True, True, 1450, MAC["cni0"],
                               forwarding=True)
    assert got["vetha"] == Link(
        "vetha", idx["vetha"], "veth", True, True, 1450, MAC["vetha"], master="cni0",
        peer_index=pa_eth0, peer_netnsid=nsid["vetha"], peer_host="pod-a", peer_name="eth0",
        hairpin=True, forwarding=True)
    assert got["vethb"].hairpin is False and got["vethb"].forwarding is False
    assert (got["vethb"].peer_host, got["vethb"].peer_name) == ("pod-b", "eth0")
    assert got["eth0"] == Link(
        "eth0", idx["eth0"], "veth", True, True, 1500, MAC["node-eth0"],
        peer_index=under_eth0, peer_netnsid=nsid["eth0"], peer_host="underlay",
        peer_name="eth0", forwarding=True)
    assert isinstance(nsid["vetha"], int) and nsid["vetha"] != nsid["eth0"]
    assert got["flannel.1"] == Link(
        "flannel.1", idx["flannel.1"], "vxlan", True, True, 1450, MAC["flannel.1"],
        vxlan=Vxlan(vni=1, port=8472, local="192.168.50.2", dev="eth0", learning=False),
        forwarding=True)
    d = got["brdown"]
    assert (d.kind, d.up, d.carrier, d.master, d.peer_index) == ("bridge", False, False, None, None)
    # vdown0 is up but its peer is down: NO-CARRIER; a same-namespace veth pair
    v0, v1 = got["vdown0"], got["vdown1"]
    assert (v0.up, v0.carrier, v1.up, v1.carrier) == (True, False, False, False)
    assert (v0.peer_index, v0.peer_netnsid, v0.peer_host, v0.peer_name) == (
        idx["vdown1"], None, "node-a", "vdown1")
    assert (v1.peer_host, v1.peer_name) == ("node-a", "vdown0")


def test_links_pods_point_back(topo):
    b = topo["bundle"]
    for pod, veth, mac in (("pod-a", "vetha", MAC["pa-eth0"]), ("pod-b", "vethb", MAC["pb-eth0"])):
        eth0 = b.host(pod).link("eth0")
        assert (eth0.kind, eth0.up, eth0.carrier, eth0.mtu, eth0.mac) == ("veth", True, True, 1450, mac)
        assert eth0.peer_index == b.host("node-a").link(veth).index
        assert (eth0.peer_host, eth0.peer_name, eth0.master, eth0.hairpin) == ("node-a", veth, None, None)
    u = b.host("underlay").link("eth0")
    assert (u.peer_host, u.peer_name) == ("node-a", "eth0")


def test_addrs(topo):
    b = topo["bundle"]
    got = {(a.ifname, a.address, a.prefixlen, a.scope) for a in b.host("node-a").addrs}
    assert got == {
        ("lo", "127.0.0.1", 8, "host"),
        ("cni0", "10.244.0.1", 24, "global"),
        ("eth0", "192.168.50.2", 24, "global"),
        ("flannel.1", "10.244.0.0", 32, "global"),
    }
    assert {(a.ifname, a.address, a.prefixlen) for a in b.host("pod-b").addrs} == {
        ("lo", "127.0.0.1", 8), ("eth0", "10.244.0.3", 24)}


def test_rules(topo):
    rules = topo["bundle"].host("node-a").rules
    assert rules == [
        Rule(0, 255),
        Rule(100, 100, src="10.244.0.0/24", dst="10.96.0.0/12"),
        Rule(101, 101, fwmark=0x10, fwmask=0xFF),
        Rule(102, 101, src="10.0.0.0/8", invert=True),
        Rule(103, None, action="unreachable", iif="vethb"),
        Rule(32766, 254),
        Rule(32767, 253),
    ]


def test_routes(topo):
    routes = topo["bundle"].host("node-a").routes
    main = [r for r in routes if r.table == 254]
    assert sorted(main, key=lambda r: r.dst) == [
        Route("10.244.0.0/24", 254, "unicast", None, "cni0", "10.244.0.1", "link", None, False, "kernel"),
        Route("10.244.1.0/24", 254, "unicast", "10.244.1.0", "flannel.1", None, "global", None, True, "boot"),
        Route("192.168.50.0/24", 254, "unicast", None, "eth0", "192.168.50.2", "link", None, False, "kernel"),
    ]
    assert [r for r in routes if r.table == 100] == [
        Route("default", 100, "unicast", "192.168.50.1", "eth0", None, "global", None, False, "boot"),
        Route("10.96.0.0/12", 100, "unicast", None, "eth0", None, "link", 5, False, "static"),
    ]
    assert [r for r in routes if r.table == 101] == [
        Route("10.77.0.0/16", 101, "unicast", "192.168.50.3", "eth0", None, "global", None, False, "boot"),
        Route("10.77.0.0/16", 101, "unicast", "192.168.50.4", "eth0", None, "global", None, False, "boot"),
        Route("10.200.0.0/16", 101, "blackhole", scope="global", proto="boot"),
    ]  # a multipath route gives one Route per nexthop
    assert not [r for r in routes if r.table == 200]  # no rule looks it up
    local = {(r.type, r.dst, r.dev) for r in routes if r.table == 255}
    assert ("local", "10.244.0.1/32", "cni0") in local
    assert ("broadcast", "10.244.0.255/32", "cni0") in local
    assert ("local", "127.0.0.0/8", "lo") in local
    assert "10.244.1.0/24 via 10.244.1.0 dev flannel.1 proto boot onlink" in {r.text() for r in main}
    pod = topo["bundle"].host("pod-a").routes
    assert [r for r in pod if r.table == 254 and r.gateway] == [
        Route("default", 254, "unicast", "10.244.0.1", "eth0", None, "global", None, False, "boot"),
        Route("10.244.0.0/16", 254, "unicast", "10.244.0.1", "eth0", None, "global", None, False, "boot"),
    ]


def test_neighbours(topo):
    neigh = topo["bundle"].host("node-a").neigh
    assert sorted(neigh, key=lambda n: (n.ifname != 'cni0', n.dst)) == [
        Neigh("cni0", "10.244.0.98", None, ["INCOMPLETE"]),
        Neigh("cni0", "10.244.0.99", None, ["FAILED"]),
        Neigh("flannel.1", "10.244.1.0", MAC["remote-vtep"], ["PERMANENT"]),
        Neigh("eth0", "192.168.50.3", MAC["under-eth0"], ["PERMANENT"]),
    ]
    assert [n.text() for n in neigh if n.ifname == "flannel.1"] == [
        f"10.244.1.0 dev flannel.1 lladdr {MAC['remote-vtep']} PERMANENT"]


def test_fdb(topo):
    fdb = topo["bundle"].host("node-a").fdb
    vx = [f for f in fdb if f.ifname == "flannel.1"]
    assert sorted((f.mac, f.master, f.dst, f.vlan, f.flags) for f in vx) == [
        ("00:00:00:00:00:00", None, "192.168.50.3", None, ["self", "permanent"]),
        (MAC["remote-vtep"], None, "192.168.50.3", None, ["self", "permanent"]),
    ]
    # the bridge's own (local) entry for each port's MAC
    for port in ("vetha", "vethb"):
        local = [f for f in fdb if f.ifname == port and f.mac == MAC[port] and f.vlan is None]
        assert len(local) == 1 and local[0].master == "cni0", port
        assert "permanent" in local[0].flags
    assert not [f for f in fdb if f.mac.startswith(("33:33:", "01:00:5e:"))]


def test_sysctls(topo):
    b = topo["bundle"]
    s = b.host("node-a").sysctls
    expected = {
        "net.ipv4.ip_forward": "1",
        "net.ipv4.conf.all.rp_filter": "0",
        "net.ipv4.conf.default.rp_filter": "1",
        "net.ipv4.conf.eth0.rp_filter": "2",
        "net.ipv4.conf.vethb.forwarding": "0",
        "net.ipv4.conf.vetha.forwarding": "1",
        "net.ipv4.conf.all.forwarding": "1",
        "net.ipv4.conf.cni0.proxy_arp": "1",
        "net.ipv4.conf.all.proxy_arp": "0",
        "net.ipv4.conf.flannel.1.accept_local": "1",
        "net.ipv4.conf.all.accept_local": "0",
    }
    assert {k: s.get(k) for k in expected} == expected
    devs = {"all", "default", "lo", "cni0", "vetha", "vethb", "eth0", "flannel.1", "brdown",
            "vdown0", "vdown1"}
    for dev in devs:
        for key in ("rp_filter", "forwarding", "proxy_arp", "accept_local"):
            assert f"net.ipv4.conf.{dev}.{key}" in s
    if os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables"):
        assert s["net.bridge.bridge-nf-call-iptables"] == "1"
    pod = b.host("pod-a").sysctls
    assert pod["net.ipv4.ip_forward"] == "0"  # read in the pod's namespace, not the node's
    assert "net.ipv4.conf.vetha.rp_filter" not in pod and "net.ipv4.conf.eth0.rp_filter" in pod


def _rules_of(text: str) -> list[str]:
    return [re.sub(r"^\[\d+:\d+\] ", "", l) for l in text.splitlines() if not l.startswith("#")]


def test_iptables_both_backends(topo):
    b = topo["bundle"]
    node = b.host("node-a")
    assert set(node.iptables_save) == {"nft", "legacy"}
    nft = _rules_of(node.iptables_save["nft"])
    assert "*filter" in nft and "-A FORWARD -j FLANNEL-FWD" in nft
    assert "-A FLANNEL-FWD -s 10.244.0.0/16 -j ACCEPT" in nft
    assert not any("MASQUERADE" in l for l in nft)
    assert node.iptables_save["nft"].lstrip().startswith("# Generated by iptables")
    legacy = _rules_of(node.iptables_save["legacy"])
    assert "*nat" in legacy and "-A POSTROUTING -j FLANNEL-POSTRTG" in legacy
    assert "-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE" in legacy
    assert not any("FLANNEL-FWD" in l for l in legacy)
    for pod in ("pod-a", "pod-b", "underlay"):
        assert b.host(pod).iptables_save == {}  # no tables: nothing stored, no gap


def test_nftables(topo):
    b = topo["bundle"]
    items = b.host("node-a").nftables["nftables"]
    tables = {(i["table"]["family"], i["table"]["name"]) for i in items if "table" in i}
    assert ("inet", "ppsnap") in tables and ("ip", "filter") in tables
    rules = [i["rule"] for i in items if "rule" in i and i["rule"]["table"] == "ppsnap"]
    assert len(rules) == 1 and {"drop": None} in rules[0]["expr"]
    assert any(e.get("match", {}).get("right") == 9999 for e in rules[0]["expr"])
    pod_items = b.host("pod-a").nftables["nftables"]
    assert not [i for i in pod_items if "table" in i]


def test_listeners(topo):
    b = topo["bundle"]
    assert b.host("pod-b").listeners == [
        Listener("tcp", "10.244.0.3", 8080),
        Listener("tcp", "0.0.0.0", 9090),  # [::] dual-stack accepts IPv4
        Listener("udp", "0.0.0.0", 5353),  # the connected UDP socket is not a listener
    ]
    assert b.host("pod-a").listeners == []


def test_conntrack_all_and_flow(topo):
    node = topo["bundle"].host("node-a")
    got = {(c.proto, c.src, c.dst, c.sport, c.dport): c for c in node.conntrack}
    c = got[("tcp", "10.244.0.2", "10.96.0.10", 40000, 80)]
    assert (c.reply_src, c.reply_dst, c.reply_sport, c.reply_dport, c.state, c.mark) == (
        "10.244.1.5", "10.244.0.2", 8080, 40000, "ESTABLISHED", 7)
    u = got[("udp", "10.244.0.3", "10.244.1.9", 5353, 53)]
    assert (u.reply_src, u.reply_dst, u.state, u.mark) == ("10.244.1.9", "10.244.0.3", "UNREPLIED", 0)
    assert got[("tcp", "10.244.0.9", "10.244.0.3", 1234, 8080)].state == "SYN_SENT"
    assert topo["bundle"].host("pod-a").conntrack == []

    node_ref = topo["refs"][0]
    # the pod IP behind the service: matched through the reply tuple
    h = collect_host(node_ref, flow=("10.244.0.2", "10.244.1.5", "tcp", None, 8080),
                     only={"conntrack"})
    assert [(x.src, x.dst, x.dport) for x in h.conntrack] == [("10.244.0.2", "10.96.0.10", 80)]
    h = collect_host(node_ref, flow={"src": "10.244.0.3", "proto": "udp"}, only={"conntrack"})
    assert [(x.proto, x.dst) for x in h.conntrack] == [("udp", "10.244.1.9")]
    h = collect_host(node_ref, flow=("10.244.0.9", "10.244.0.3", 6, 1234, 8081), only={"conntrack"})
    assert h.conntrack == []


def test_missing_namespace_is_node_error(topo):
    ref = HostRef("ghost", "node", None, "ppsnap-does-not-exist-0")
    with pytest.raises(NodeError) as e:
        collect_host(ref)
    msg = str(e.value)
    assert "\n" not in msg and "ppsnap-does-not-exist-0" in msg and "does not exist" in msg
    with pytest.raises(NodeError):
        collect([topo["refs"][0], ref])


def test_missing_tools_become_gaps(topo, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    h = collect_host(topo["refs"][0], only={"links", "iptables", "iptables-legacy", "nftables"})
    assert h.gaps == {
        "iptables": "iptables-save not installed",
        "iptables-legacy": "iptables-legacy-save not installed",
        "nftables": "nft not installed",
    }
    assert h.sources == ["netlink"] and h.iptables_save == {} and h.nftables is None
    assert h.link("cni0") is not None  # the snapshot went on


def test_collect_host_alone_and_root_namespace(topo):
    h = collect_host(topo["refs"][1])
    assert h.name == "pod-a" and h.link("eth0").peer_host is None  # peer not in this snapshot
    assert h.link("eth0").peer_index is not None
    root = collect_host(HostRef("here", "node", None, None), only={"links", "addrs"})
    assert root.link("lo") is not None and root.netns is None and root.gaps == {}


def test_bundle_round_trips_json(topo):
    b = topo["bundle"]
    assert Bundle.from_json(b.to_json()) == b


def test_peer_fallback_without_netnsid_answers(topo):
    """When RTM_GETNSID cannot be asked, peers are matched by ifindex pointing both ways."""
    import copy

    from podpath.tracer.snapshot.live import _resolve_peers

    hosts = copy.deepcopy(topo["bundle"].hosts)
    for h in hosts:
        for l in h.links:
            l.peer_host = l.peer_name = None
    _resolve_peers(hosts, [None] * len(hosts))
    assert hosts == topo["bundle"].hosts
