"""Names and addresses of the netns lab: a two-node flannel VXLAN cluster.

Pure data, no kernel access: everything here is derived from the lab name, so any process can
compute the same namespaces, MACs and addresses the builder used (stable across `up`s).

    <lab>-underlay   bridge br0 = the physical switch; ports node-a, node-b, cp (192.168.56.0/24);
                     192.168.56.1 on br0 is the nodes' default gateway (a router that forwards nothing)
    <lab>-node-a     eth0 192.168.56.11, cni0 10.244.0.1/24, flannel.1 10.244.0.0/32
    <lab>-node-b     eth0 192.168.56.12, cni0 10.244.1.1/24, flannel.1 10.244.1.0/32
    <lab>-cp         eth0 192.168.56.10: the stand-in Kubernetes API server on :6443, no route out
    pod-a   10.244.0.2 (node-a)             pod-b    10.244.1.2 (node-b), web :8080
    pod-a2  10.244.0.3 (node-a), web :8080   coredns  10.244.1.3 (node-b), DNS :53

Pod namespaces are named as the CNI plugins name them, `cni-<uuid>` (uuid5 of lab and pod name, so
stable across `up`s); each holds a holder process (a pause container) whose /etc/hostname is the pod
name. The friendly pod names live only in the lab's inventory and its API server.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..bundle import Inventory, NodeInfo, PodInfo, ServiceInfo, ServicePort
from ..errors import UsageError

DEFAULT_LAB = "pp"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/12"
UNDERLAY_CIDR = "192.168.56.0/24"
# The physical network's router, on br0 in the underlay namespace: the nodes' default gateway. It does
# not forward (ip_forward=0), so traffic that leaves the cluster network dies there, inside the lab.
UNDERLAY_GATEWAY = "192.168.56.1"
UNDERLAY_MTU = 1500
VXLAN_OVERHEAD = 50
FLANNEL_MTU = UNDERLAY_MTU - VXLAN_OVERHEAD  # 1450: flannel.1, cni0, veths, pod eth0
VXLAN_VNI = 1
VXLAN_PORT = 8472
CLUSTER_DOMAIN = "cluster.local"
DNS_SERVICE_IP = "10.96.0.10"

RUN_ROOT = Path("/run/podpath/labs")  # <lab>.json state file, <lab>/ pid files and logs
NETNS_ETC = Path("/etc/netns")  # /etc/netns/<netns>/resolv.conf, bind-mounted by `ip netns exec`

_LAB_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")


def mac_for(tag: str) -> str:
    """A stable, locally administered unicast MAC for `tag` (same tag, same MAC, every up)."""
    b = bytearray(hashlib.sha256(f"podpath/{tag}".encode()).digest()[:6])
    b[0] = (b[0] & 0xFC) | 0x02
    return ":".join(f"{x:02x}" for x in b)


def pod_mac(ip: str) -> str:
    """The CNI bridge plugin's classic pod MAC: 0a:58 + the four bytes of the pod IP."""
    return "0a:58:" + ":".join(f"{int(o):02x}" for o in ip.split("."))


@dataclass(frozen=True)
class NodeSpec:
    name: str
    underlay_ip: str
    pod_cidr: str  # 10.244.N.0/24

    @property
    def subnet_base(self) -> str:  # 10.244.N.0: flannel.1's address and the remote gateway
        return self.pod_cidr.split("/")[0]

    @property
    def gateway(self) -> str:  # 10.244.N.1 on cni0
        return str(ipaddress.ip_network(self.pod_cidr)[1])

    @property
    def vtep_mac(self) -> str:
        return mac_for(f"vtep/{self.name}")

    @property
    def eth0_mac(self) -> str:
        return mac_for(f"eth0/{self.name}")

    @property
    def cni0_mac(self) -> str:
        return mac_for(f"cni0/{self.name}")

    @property
    def underlay_port(self) -> str:  # br0's port (in the underlay) facing this node's eth0
        return self.name


@dataclass(frozen=True)
class PodSpec:
    name: str
    namespace: str
    node: str
    ip: str
    server: str | None = None  # "web" (TCP 8080) or "dns" (dnsmasq, UDP+TCP 53)

    @property
    def mac(self) -> str:
        return pod_mac(self.ip)

    @property
    def host_veth(self) -> str:
        """`veth` + 8 hex characters, like flannel's CNI (bridge plugin) names the host end."""
        return "veth" + hashlib.sha256(f"podpath/veth/{self.name}".encode()).hexdigest()[:8]

    @property
    def host_veth_mac(self) -> str:
        return mac_for(f"hostveth/{self.name}")


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    namespace: str
    cluster_ip: str
    ports: tuple[ServicePort, ...]
    endpoints: tuple[str, ...]  # pod names

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{CLUSTER_DOMAIN}"


NODES: tuple[NodeSpec, ...] = (
    NodeSpec("node-a", "192.168.56.11", "10.244.0.0/24"),
    NodeSpec("node-b", "192.168.56.12", "10.244.1.0/24"),
)
PODS: tuple[PodSpec, ...] = (
    PodSpec("pod-a", "default", "node-a", "10.244.0.2"),
    PodSpec("pod-a2", "default", "node-a", "10.244.0.3", server="web"),
    PodSpec("pod-b", "default", "node-b", "10.244.1.2", server="web"),
    PodSpec("coredns", "kube-system", "node-b", "10.244.1.3", server="dns"),
)
WEB_PORT = 8080
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("kube-dns", "kube-system", DNS_SERVICE_IP,
                (ServicePort("dns", 53, "UDP", 53), ServicePort("dns-tcp", 53, "TCP", 53)), ("coredns",)),
    ServiceSpec("web", "default", "10.96.0.100", (ServicePort("http", 80, "TCP", WEB_PORT),),
                ("pod-a2", "pod-b")),
)
UNDERLAY = "underlay"  # short name of the switch namespace
UNDERLAY_BRIDGE = "br0"
CONTROL_PLANE = "cp"  # short name of the control-plane namespace (the API server's machine)
CONTROL_PLANE_IP = "192.168.56.10"
APISERVER_PORT = 6443
APISERVER_URL = f"https://{CONTROL_PLANE_IP}:{APISERVER_PORT}"


def node(name: str) -> NodeSpec:
    for n in NODES:
        if n.name == name:
            return n
    raise KeyError(name)


def pod(name: str) -> PodSpec:
    for p in PODS:
        if p.name == name:
            return p
    raise KeyError(name)


def service(namespace: str, name: str) -> ServiceSpec:
    for s in SERVICES:
        if s.namespace == namespace and s.name == name:
            return s
    raise KeyError(f"{namespace}/{name}")


def pods_on(node_name: str) -> list[PodSpec]:
    return [p for p in PODS if p.node == node_name]


def other_nodes(node_name: str) -> list[NodeSpec]:
    return [n for n in NODES if n.name != node_name]


def check_lab_name(name: str) -> str:
    if not _LAB_NAME.match(name or ""):
        raise UsageError(f"lab name {name!r} must be 1-12 lower-case letters or digits, starting with a letter "
                         "(namespaces are named <lab>-node-a, <lab>-underlay, ...)")
    return name


@dataclass(frozen=True)
class Names:
    """Every name that depends on the lab name."""

    lab: str

    def netns(self, short: str) -> str:
        """The namespace of a short name: `<lab>-node-a` for the machines, `cni-<uuid>` for pods."""
        if short in _POD_NAMES:
            return cni_netns(self.lab, short)
        return f"{self.lab}-{short}"

    @property
    def all_short(self) -> list[str]:
        return [UNDERLAY, CONTROL_PLANE] + [n.name for n in NODES] + [p.name for p in PODS]

    @property
    def all_netns(self) -> list[str]:
        return [self.netns(s) for s in self.all_short]

    @property
    def state_file(self) -> Path:
        return RUN_ROOT / f"{self.lab}.json"

    @property
    def run_dir(self) -> Path:
        return RUN_ROOT / self.lab

    def pid_file(self, pod_name: str) -> Path:
        return self.run_dir / f"{pod_name}.pid"

    def log_file(self, pod_name: str) -> Path:
        return self.run_dir / f"{pod_name}.log"

    def holder_pid_file(self, pod_name: str) -> Path:
        return self.run_dir / f"{pod_name}.holder.pid"

    @property
    def apiserver_dir(self) -> Path:  # CA, serving cert and key, tokens
        return self.run_dir / "apiserver"

    @property
    def kubeconfig(self) -> Path:
        return self.run_dir / "kubeconfig"

    @property
    def kubeconfig_limited(self) -> Path:
        return self.run_dir / "kubeconfig-limited"

    @property
    def kubeconfig_agent(self) -> Path:  # ServiceAccount podpath-agent: what the lab's agents run with
        return self.run_dir / "kubeconfig-agent"

    @property
    def kubeconfig_coordinator(self) -> Path:  # ServiceAccount podpath-coordinator: finds and reaches agents
        return self.run_dir / "kubeconfig-coordinator"

    def agent_pid_file(self, node_name: str) -> Path:
        return self.run_dir / f"{node_name}.agent.pid"

    def agent_log_file(self, node_name: str) -> Path:
        return self.run_dir / f"{node_name}.agent.log"

    def etc_dir(self, short: str) -> Path:
        return NETNS_ETC / self.netns(short)


_POD_NAMES = frozenset(p.name for p in PODS)


def cni_netns(lab: str, pod_name: str) -> str:
    """`cni-<uuid>` as containerd's CNI setup names a pod's namespace; stable per (lab, pod)."""
    return f"cni-{uuid.uuid5(uuid.NAMESPACE_URL, f'podpath-lab:{lab}/{pod_name}')}"


def resolv_conf(p: PodSpec) -> str:
    return (f"search {p.namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\n"
            f"nameserver {DNS_SERVICE_IP}\n"
            "options ndots:5\n")


def base_inventory(lab: str) -> Inventory:
    """The lab's inventory as `up` builds it (no faults applied)."""
    names = Names(lab)
    return Inventory(
        cluster_cidr=CLUSTER_CIDR,
        service_cidr=SERVICE_CIDR,
        nodes=[NodeInfo(name=n.name, netns=names.netns(n.name), underlay_ip=n.underlay_ip, underlay_dev="eth0",
                        vtep_mac=n.vtep_mac, pod_cidr=n.pod_cidr) for n in NODES],
        pods=[PodInfo(name=p.name, namespace=p.namespace, node=p.node, netns=names.netns(p.name), ip=p.ip,
                      mac=p.mac, host_veth=p.host_veth) for p in PODS],
        services=[ServiceInfo(name=s.name, namespace=s.namespace, cluster_ip=s.cluster_ip,
                              ports=[ServicePort(sp.name, sp.port, sp.protocol, sp.target_port) for sp in s.ports],
                              endpoints=[pod(e).ip for e in s.endpoints]) for s in SERVICES],
    )


@dataclass
class Endpoint:
    ip: str
    port: int
    pod: str = ""


@dataclass
class ServiceRules:
    """What kube-proxy needs to write one service: its spec and its ready endpoints per port."""

    spec: ServiceSpec
    endpoints: dict[str, list[Endpoint]] = field(default_factory=dict)  # port name -> endpoints


def service_rules(no_endpoints: set[str] | frozenset[str] = frozenset(),
                  stale: dict[str, list[str]] | None = None) -> list[ServiceRules]:
    """Services with their endpoints; services named in no_endpoints ("ns/name") get none, and
    those in stale ("ns/name" -> endpoint IPs) get these instead (a kube-proxy behind the API)."""
    out = []
    for s in SERVICES:
        eps: dict[str, list[Endpoint]] = {}
        key = f"{s.namespace}/{s.name}"
        for sp in s.ports:
            if key in no_endpoints:
                eps[sp.name] = []
            elif stale and key in stale:
                eps[sp.name] = [Endpoint(ip, sp.target_port or sp.port, "") for ip in stale[key]]
            else:
                eps[sp.name] = [Endpoint(pod(e).ip, sp.target_port or sp.port, e) for e in s.endpoints]
        out.append(ServiceRules(s, eps))
    return out
