"""What a fault is made of: node-level commands (Cmd), what another actor does (LabStep), the
Plan that injects and clears a fault, and the facts of one node a plan is rendered from
(NodeFacts). The netns lab's facts come from its topology (lab_facts), a real node's from what
it shows (tracer/lab/here.py); run_in_lab runs a plan's steps in the netns lab's namespaces.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Union

from ..errors import NodeError
from .topology import CLUSTER_CIDR, NODES, PODS, SERVICES, UNDERLAY_MTU, VXLAN_PORT, node

if TYPE_CHECKING:  # pragma: no cover
    from .build import BuildCtx


# -------------------------------------------------------------------- what a plan is made of


@dataclass(frozen=True)
class Cmd:
    """One node-level command. on: "node" (the node the plan was rendered for), a pod role
    ("pod-b": run inside that pod's network namespace), or another lab node by name."""

    on: str
    argv: tuple[str, ...]
    check: bool = True  # False: removing something that may already be gone, or a probe meant to fail

    def text(self) -> str:
        return ("" if self.on == "node" else f"[{self.on}] ") + shlex.join(self.argv)


@dataclass(frozen=True)
class LabStep:
    """What another actor does on a real cluster, played by the netns lab (never by `--here`)."""

    actor: str  # "kube-proxy", "kubelet", "a client"
    text: str
    run: Callable[["BuildCtx"], None] = field(repr=False, compare=False)


Step = Union[Cmd, LabStep]


@dataclass
class Plan:
    inject: list[Step]
    clear: list[Step]

    def commands(self) -> list[Cmd]:
        return [s for s in self.inject + self.clear if isinstance(s, Cmd)]


def cmd(argv: str, on: str = "node", check: bool = True) -> Cmd:
    return Cmd(on, tuple(shlex.split(argv)), check)


# -------------------------------------------------------------------- the facts a plan is rendered from


@dataclass(frozen=True)
class PeerFacts:
    """Another flannel node as this node's flannel.1 state names it (route, neighbour, FDB)."""

    pod_cidr: str
    subnet_base: str  # its flannel.1 address, the onlink gateway of the route
    vtep_mac: str
    underlay_ip: str


@dataclass(frozen=True)
class PodFacts:
    name: str
    ip: str
    mac: str | None = None  # None (and host_veth, pid): the pod runs on another node
    host_veth: str | None = None
    pid: int | None = None  # a process in its namespace (the pause container), for nsenter

    @property
    def local(self) -> bool:
        return self.host_veth is not None


@dataclass
class NodeFacts:
    name: str
    pod_cidr: str  # this node's flannel subnet, on cni0
    gateway: str  # cni0's address, the pods' gateway
    subnet_base: str  # flannel.1's address
    vtep_mac: str
    underlay_dev: str  # the device flannel.1 sends through (eth0 here and in kind, eth1 in Vagrant)
    underlay_ip: str
    underlay_mtu: int
    cluster_cidr: str
    vxlan_port: int
    peers: list[PeerFacts]
    pods: dict[str, PodFacts]  # by pod name (role names of the lab: pod-a, pod-b, coredns, ...)
    sysctls: dict[str, str]  # current values of every sysctl a fault changes (SYSCTLS)
    services: dict[str, str] = field(default_factory=dict)  # "ns/name" -> ClusterIP
    ipvs: dict[str, list[str]] = field(default_factory=dict)  # "TCP vip:port" -> real servers "ip:port"

    def peer(self) -> PeerFacts:
        if len(self.peers) != 1:
            raise NodeError(f"this node has {len(self.peers)} flannel peers ({', '.join(p.pod_cidr for p in self.peers) or 'none'}); "
                            "the catalog's two-node faults need exactly one: use a two-node lab")
        return self.peers[0]

    def pod(self, role: str, local: bool = True) -> PodFacts:
        """The pod playing `role` (its name, or kubelet's `<role>-<hash>` name), on this node if `local`."""
        found = self.pods.get(role) or next((p for n, p in sorted(self.pods.items()) if n.startswith(role + "-")), None)
        if found is None or (local and not found.local):
            here = ", ".join(sorted(n for n, p in self.pods.items() if p.local)) or "none"
            hint = (f"--param {role}=POD_NAME names a pod of this node to play it" if local else
                    f"--param {role}=IP gives its address (kubectl get pod -o wide)")
            raise NodeError(f"no pod {role!r} {'on this node' if local else 'known'} (this node's pods: {here}); {hint}")
        return found

    def pod_prefixlen(self) -> int:
        return ipaddress.ip_network(self.pod_cidr).prefixlen


SYSCTLS = {  # the sysctls faults change, with what the lab's `up` sets
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.neigh.cni0.mcast_solicit": "3",
    "net.ipv4.neigh.cni0.ucast_solicit": "3",
}


def lab_facts(name: str) -> NodeFacts:
    """The facts of a netns-lab node, from its topology (what `lab up` builds; pure data)."""
    n = node(name)
    return NodeFacts(
        name=n.name, pod_cidr=n.pod_cidr, gateway=n.gateway, subnet_base=n.subnet_base, vtep_mac=n.vtep_mac,
        underlay_dev="eth0", underlay_ip=n.underlay_ip, underlay_mtu=UNDERLAY_MTU, cluster_cidr=CLUSTER_CIDR,
        vxlan_port=VXLAN_PORT,
        peers=[PeerFacts(o.pod_cidr, o.subnet_base, o.vtep_mac, o.underlay_ip) for o in NODES if o.name != name],
        pods={p.name: PodFacts(p.name, p.ip, p.mac, p.host_veth) if p.node == name else PodFacts(p.name, p.ip)
              for p in PODS},
        sysctls=dict(SYSCTLS),
        services={f"{s.namespace}/{s.name}": s.cluster_ip for s in SERVICES},
        ipvs=lab_ipvs(),
    )


def lab_ipvs() -> dict[str, list[str]]:
    """What kube-proxy in IPVS mode would program for the lab's Services (one entry per port)."""
    ips = {p.name: p.ip for p in PODS}
    return {f"{sp.protocol} {s.cluster_ip}:{sp.port}": [f"{ips[e]}:{sp.target_port}" for e in s.endpoints]
            for s in SERVICES for sp in s.ports}


def run_in_lab(ctx: "BuildCtx", role: str, steps: list[Step]) -> None:
    """Run plan steps in the netns lab: a Cmd in its node's (or pod's) namespace, a LabStep as is."""
    from . import nsutil

    for s in steps:
        if isinstance(s, LabStep):
            s.run(ctx)
            continue
        ns = ctx.ns(role if s.on == "node" else s.on)
        ctx.do(f"{ns}: {shlex.join(s.argv)}", nsutil.run, ns, list(s.argv), check=s.check)
