"""What the lab should hold: the desired state `up` builds, as pure data derived from topology.py.

No kernel access and no pyroute2 here (so anything may import it, and a test can read it): the
devices of every machine in the order they are made, addresses, routes, flannel's neighbour/FDB
entries, sysctls, kube-proxy's rules and the files kubelet gives a pod. build.py reconciles the
kernel to it with netlink calls; faults.py breaks single pieces of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from . import kubeproxy, topology
from .topology import (
    CONTROL_PLANE,
    CONTROL_PLANE_IP,
    FLANNEL_MTU,
    NODES,
    SERVICES,
    UNDERLAY,
    UNDERLAY_BRIDGE,
    UNDERLAY_CIDR,
    UNDERLAY_GATEWAY,
    UNDERLAY_MTU,
    VXLAN_PORT,
    VXLAN_VNI,
    NodeSpec,
    PodSpec,
    mac_for,
    node,
    other_nodes,
    pods_on,
    resolv_conf,
    service_rules,
)

# ---------------------------------------------------------------- routes


@dataclass(frozen=True)
class RouteSpec:
    dst: str  # "default" or "a.b.c.d/len"
    dev: str
    gateway: str | None = None
    onlink: bool = False
    kernel: bool = False  # a connected route: proto kernel scope link src <prefsrc>
    prefsrc: str | None = None

    def text(self) -> str:
        s = self.dst + (f" via {self.gateway}" if self.gateway else "") + f" dev {self.dev}"
        if self.kernel:
            s += f" proto kernel scope link src {self.prefsrc}"
        return s + (" onlink" if self.onlink else "")


def flannel_route(n: NodeSpec, remote: NodeSpec) -> RouteSpec:
    return RouteSpec(remote.pod_cidr, "flannel.1", gateway=remote.subnet_base, onlink=True)


def node_routes(n: NodeSpec) -> list[RouteSpec]:
    return [
        RouteSpec(UNDERLAY_CIDR, "eth0", kernel=True, prefsrc=n.underlay_ip),
        RouteSpec(n.pod_cidr, "cni0", kernel=True, prefsrc=n.gateway),
        RouteSpec("default", "eth0", gateway=UNDERLAY_GATEWAY),
    ] + [flannel_route(n, r) for r in other_nodes(n.name)]


def pod_routes(p: PodSpec) -> list[RouteSpec]:
    gw = node(p.node).gateway
    return [
        RouteSpec(node(p.node).pod_cidr, "eth0", kernel=True, prefsrc=p.ip),
        RouteSpec("default", "eth0", gateway=gw),
        RouteSpec("10.244.0.0/16", "eth0", gateway=gw),
    ]


def control_plane_routes() -> list[RouteSpec]:
    """Only the connected route: the API server's machine has no way out of the underlay."""
    return [RouteSpec(UNDERLAY_CIDR, "eth0", kernel=True, prefsrc=CONTROL_PLANE_IP)]


# ---------------------------------------------------------------- flannel's triple and cni0


def flannel_neighs(n: NodeSpec) -> dict[str, str]:
    """{remote flannel.1 address: remote VtepMAC}: the permanent neighbours on flannel.1."""
    return {r.subnet_base: r.vtep_mac for r in other_nodes(n.name)}


def flannel_fdb(n: NodeSpec) -> set[tuple[str, str]]:
    """{(remote VtepMAC, remote underlay IP)}: flannel.1's FDB entries."""
    return {(r.vtep_mac, r.underlay_ip) for r in other_nodes(n.name)}


def cni_pod_macs(n: NodeSpec) -> dict[str, str]:
    """{pod IP: pod MAC} behind cni0: the only answers cni0's learned neighbours may hold."""
    return {p.ip: p.mac for p in pods_on(n.name)}


# ---------------------------------------------------------------- sysctls


def node_sysctls(n: NodeSpec) -> dict[str, str]:
    return {
        "net.ipv6.conf.all.disable_ipv6": "1",
        "net.ipv6.conf.default.disable_ipv6": "1",
        "net.ipv4.ip_forward": "1",
        "net.bridge.bridge-nf-call-iptables": "1",
        "net.ipv4.conf.all.rp_filter": "0",
        "net.ipv4.conf.default.rp_filter": "0",
    }


def node_dev_sysctls(n: NodeSpec) -> dict[str, str]:
    """Per-device sysctls, set once the devices exist (keys use '/' around the device name)."""
    return {
        "net.ipv4.conf/flannel.1/rp_filter": "0",
        "net.ipv4.conf/cni0/rp_filter": "0",
        "net.ipv4.neigh/cni0/mcast_solicit": "3",
        "net.ipv4.neigh/cni0/ucast_solicit": "3",
        "net.ipv4.neigh/cni0/app_solicit": "0",
    }


PLAIN_SYSCTLS = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}
UNDERLAY_SYSCTLS = {**PLAIN_SYSCTLS, "net.bridge.bridge-nf-call-iptables": "0", "net.ipv4.ip_forward": "0"}


def namespace_sysctls(short: str) -> dict[str, str]:
    """The sysctls a namespace gets before any of its links exist (IPv6 off first)."""
    if short == UNDERLAY:
        return UNDERLAY_SYSCTLS
    if short in {n.name for n in NODES}:
        return node_sysctls(node(short))
    return PLAIN_SYSCTLS


# ---------------------------------------------------------------- devices and addresses


@dataclass(frozen=True)
class LinkSpec:
    """An existing device's settings; None leaves one alone (master "" means no master)."""

    ns: str  # short name: "node-a", "pod-b", "underlay", "cp"
    name: str
    mtu: int | None = None
    mac: str | None = None
    master: str | None = None
    up: bool = True
    hairpin: bool | None = None


@dataclass(frozen=True)
class VethPair:
    """One end `a_name` in namespace a_ns, the other `b_name` in b_ns."""

    a_ns: str
    a_name: str
    b_ns: str
    b_name: str
    a_mac: str | None
    b_mac: str | None
    mtu: int


@dataclass(frozen=True)
class BridgeSpec:
    ns: str
    name: str
    mtu: int
    mac: str | None


@dataclass(frozen=True)
class VxlanSpec:
    """flannel's VXLAN device: no learning, its FDB is written by flannel (flannel_fdb)."""

    node: NodeSpec
    name: str = "flannel.1"
    vni: int = VXLAN_VNI
    port: int = VXLAN_PORT
    dev: str = "eth0"
    mtu: int = FLANNEL_MTU


@dataclass(frozen=True)
class Addresses:
    """Exactly these IPv4 addresses on the device (others are removed)."""

    ns: str
    dev: str
    cidrs: tuple[str, ...]


@dataclass(frozen=True)
class RouteTable:
    """Exactly these routes in the namespace's main table (others are removed)."""

    ns: str
    routes: tuple[RouteSpec, ...]


BuildStep = Union[LinkSpec, VethPair, BridgeSpec, VxlanSpec, Addresses, RouteTable]


def switch() -> list[BuildStep]:
    """The underlay namespace: br0 is the physical switch, the gateway address on it."""
    return [
        LinkSpec(UNDERLAY, "lo"),
        BridgeSpec(UNDERLAY, UNDERLAY_BRIDGE, UNDERLAY_MTU, None),
        LinkSpec(UNDERLAY, UNDERLAY_BRIDGE, mtu=UNDERLAY_MTU),
        Addresses(UNDERLAY, UNDERLAY_BRIDGE, (f"{UNDERLAY_GATEWAY}/24",)),
    ]


def control_plane() -> list[BuildStep]:
    """<lab>-cp: eth0 192.168.56.10/24 on br0's port `cp`, only the connected route (no way out)."""
    mac = mac_for("eth0/cp")
    return [
        LinkSpec(CONTROL_PLANE, "lo"),
        VethPair(CONTROL_PLANE, "eth0", UNDERLAY, CONTROL_PLANE, a_mac=mac, b_mac=None, mtu=UNDERLAY_MTU),
        LinkSpec(UNDERLAY, CONTROL_PLANE, mtu=UNDERLAY_MTU, master=UNDERLAY_BRIDGE),
        LinkSpec(CONTROL_PLANE, "eth0", mtu=UNDERLAY_MTU, mac=mac),
        Addresses(CONTROL_PLANE, "eth0", (f"{CONTROL_PLANE_IP}/24",)),
        RouteTable(CONTROL_PLANE, tuple(control_plane_routes())),
    ]


def node_devices(n: NodeSpec) -> list[BuildStep]:
    """A node's devices (eth0 on the switch, cni0, flannel.1) and then its pods'. Routes come later."""
    steps: list[BuildStep] = [
        LinkSpec(n.name, "lo"),
        VethPair(n.name, "eth0", UNDERLAY, n.underlay_port, a_mac=n.eth0_mac, b_mac=None, mtu=UNDERLAY_MTU),
        LinkSpec(UNDERLAY, n.underlay_port, mtu=UNDERLAY_MTU, master=UNDERLAY_BRIDGE),
        LinkSpec(n.name, "eth0", mtu=UNDERLAY_MTU, mac=n.eth0_mac),
        Addresses(n.name, "eth0", (f"{n.underlay_ip}/24",)),
        BridgeSpec(n.name, "cni0", FLANNEL_MTU, n.cni0_mac),
        LinkSpec(n.name, "cni0", mtu=FLANNEL_MTU, mac=n.cni0_mac),
        Addresses(n.name, "cni0", (f"{n.gateway}/24",)),
        VxlanSpec(n),
        LinkSpec(n.name, "flannel.1", mtu=FLANNEL_MTU, mac=n.vtep_mac),
        Addresses(n.name, "flannel.1", (f"{n.subnet_base}/32",)),
    ]
    for p in pods_on(n.name):
        steps += pod_devices(p)
    return steps


def pod_devices(p: PodSpec) -> list[BuildStep]:
    """A pod: eth0 paired with its host veth on cni0 (hairpin, as the bridge CNI sets it), its routes."""
    return [
        LinkSpec(p.name, "lo"),
        VethPair(p.node, p.host_veth, p.name, "eth0", a_mac=p.host_veth_mac, b_mac=p.mac, mtu=FLANNEL_MTU),
        LinkSpec(p.node, p.host_veth, mtu=FLANNEL_MTU, mac=p.host_veth_mac, master="cni0", hairpin=True),
        LinkSpec(p.name, "eth0", mtu=FLANNEL_MTU, mac=p.mac),
        Addresses(p.name, "eth0", (f"{p.ip}/24",)),
        RouteTable(p.name, tuple(pod_routes(p))),
    ]


# ---------------------------------------------------------------- rules and files


def node_rules(n: NodeSpec, no_endpoints: frozenset[str] = frozenset(),
               stale: dict[str, list[str]] | None = None) -> dict[str, kubeproxy.Table]:
    """kube-proxy's and flannel's iptables rules on a node, per table."""
    return kubeproxy.render_node(n, service_rules(no_endpoints, stale))


def service_endpoints() -> dict[str, set[str]]:
    """{ClusterIP: its endpoints' pod IPs}: where a Service's conntrack entries may still point."""
    return {s.cluster_ip: {topology.pod(e).ip for e in s.endpoints} for s in SERVICES}


def pod_files(p: PodSpec) -> dict[str, str]:
    """What kubelet writes for a pod, by file name under /etc/netns/<pod netns>/."""
    return {"resolv.conf": resolv_conf(p), "hostname": p.name + "\n"}
