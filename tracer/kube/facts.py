"""Cluster facts from the API as an Inventory: nodes, the pods that matter, Services, endpoints.

Read as a large cluster allows: nodes and Services paged (limit/continue); pods never listed
cluster-wide — only this node's (fieldSelector spec.nodeName) and the ones the user named (by name
in their namespace, or fieldSelector status.podIP).
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any, Iterable

from ..bundle import Inventory, NodeInfo, PodInfo, ServiceInfo, ServicePort
from ..errors import ApiError
from .client import Kube

FLANNEL = "flannel.alpha.coreos.com/"
TARGET_IP = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


def node_info(n: Any) -> NodeInfo:
    ann = n.metadata.annotations or {}
    internal = next((a.address for a in (n.status.addresses or []) if a.type == "InternalIP"), None) \
        if n.status else None
    vtep = None
    try:
        vtep = (json.loads(ann.get(FLANNEL + "backend-data") or "{}") or {}).get("VtepMAC")
    except (ValueError, AttributeError):
        vtep = None
    spec = n.spec
    return NodeInfo(name=n.metadata.name, underlay_ip=ann.get(FLANNEL + "public-ip") or internal,
                    vtep_mac=vtep.lower() if isinstance(vtep, str) else None,
                    pod_cidr=(spec.pod_cidr if spec else None), internal_ip=internal)


def pod_info(p: Any) -> PodInfo:
    st, spec = p.status, p.spec
    return PodInfo(name=p.metadata.name, namespace=p.metadata.namespace, node=spec.node_name if spec else None,
                   ip=st.pod_ip if st else None, host_network=bool(spec and spec.host_network),
                   phase=st.phase if st else None)


def service_info(s: Any, slices: list) -> ServiceInfo:
    ns, name = s.metadata.namespace, s.metadata.name
    mine = [sl for sl in slices if sl.metadata.namespace == ns
            and (sl.metadata.labels or {}).get("kubernetes.io/service-name") == name]
    target_by_name: dict[str | None, int] = {}
    endpoints: list[str] = []
    for sl in mine:
        for port in sl.ports or []:
            if port.port is not None:
                target_by_name.setdefault(port.name or None, port.port)
        for ep in sl.endpoints or []:
            ready = ep.conditions.ready if ep.conditions and ep.conditions.ready is not None else True
            if ready:
                endpoints += [a for a in ep.addresses or [] if a not in endpoints]
    ports = []
    for sp in s.spec.ports or []:
        target = sp.target_port if isinstance(sp.target_port, int) else None
        target = target_by_name.get(sp.name or None, target)
        ports.append(ServicePort(name=sp.name or "", port=sp.port, protocol=sp.protocol or "TCP",
                                 target_port=target))
    cluster_ip = s.spec.cluster_ip if s.spec.cluster_ip not in (None, "None", "") else None
    return ServiceInfo(name=name, namespace=ns, cluster_ip=cluster_ip, ports=ports, endpoints=endpoints)


def read_inventory(kube: Kube, *, node_name: str | None = None, node_addrs: Iterable[str] = (),
                   targets: Iterable[str] = ()) -> Inventory:
    """What the API says about this node, the named targets, and every Service.

    A fact the user's RBAC does not allow is recorded in inv.gaps (and said once), unless it is
    one podpath cannot work without (nodes)."""
    inv = Inventory(cluster_cidr=None, service_cidr=None, source="kubernetes")
    nodes = kube.paged("list", "nodes", kube.core.list_node)
    inv.nodes = [node_info(n) for n in nodes]
    addrs = set(node_addrs)
    local = next((n for n in inv.nodes if n.name == node_name), None) or \
        next((n for n in inv.nodes if addrs & {n.internal_ip, n.underlay_ip}), None)
    inv.local_node = local.name if local else node_name
    pods: dict[tuple[str, str], PodInfo] = {}
    if local is not None:
        for p in kube.paged("list", "pods", kube.core.list_pod_for_all_namespaces,
                            field_selector=f"spec.nodeName={local.name}"):
            info = pod_info(p)
            pods[(info.namespace, info.name)] = info
    for t in targets:
        for info in _target_pods(kube, t):
            pods.setdefault((info.namespace, info.name), info)
    inv.pods = list(pods.values())
    slices = _optional(inv, "endpointslices", lambda: kube.paged(
        "list", "endpointslices", kube.discovery.list_endpoint_slice_for_all_namespaces, group="discovery.k8s.io"))
    services = _optional(inv, "services", lambda: kube.paged("list", "services",
                                                             kube.core.list_service_for_all_namespaces))
    inv.services = [service_info(s, slices or []) for s in services or []]
    if slices is None:  # without EndpointSlices nothing says which endpoints are real
        for s in inv.services:
            s.endpoints = []
    if any(s.namespace == "kube-system" and s.name == "kube-dns" for s in inv.services):
        inv.dns_service = "kube-system/kube-dns"
    proxy = _optional(inv, "configmaps", lambda: kube.call("get", "configmaps", kube.core.read_namespaced_config_map,
                                                           "kube-proxy", "kube-system", namespace="kube-system"))
    if proxy is not None and proxy.data:
        conf = proxy.data.get("config.conf") or ""
        m = re.search(r"^mode:\s*\"?([A-Za-z]*)\"?", conf, re.M)
        inv.kube_proxy_mode = (m.group(1) if m and m.group(1) else "iptables")  # "" means the default
        m = re.search(r"^clusterCIDR:\s*\"?([0-9./]+)", conf, re.M)
        if m:
            inv.cluster_cidr = m.group(1)
    flannel = _optional(inv, "configmaps", lambda: kube.call(
        "get", "configmaps", kube.core.read_namespaced_config_map, "kube-flannel-cfg", "kube-flannel",
        namespace="kube-flannel"))
    if flannel is not None and flannel.data:
        try:
            net = json.loads(flannel.data.get("net-conf.json") or "{}").get("Network")
            if net:
                inv.cluster_cidr = str(ipaddress.ip_network(net, strict=False))
        except ValueError:
            pass
    return inv


def _optional(inv: Inventory, what: str, read):
    """A fact podpath can do without: a refusal is a gap (said in the findings), not an abort."""
    from .client import ApiUnreachable
    try:
        return read()
    except ApiUnreachable:
        raise
    except ApiError as e:
        inv.gaps.setdefault(what, str(e))
        return None


def _target_pods(kube: Kube, text: str) -> list[PodInfo]:
    """The pod a SRC/DST names: [ns/]pod by name, or an IP by status.podIP."""
    text = text.strip()
    if not text or text.startswith(("svc/", "node/")):
        return []
    if TARGET_IP.match(text):
        return [pod_info(p) for p in kube.paged("list", "pods", kube.core.list_pod_for_all_namespaces,
                                                  field_selector=f"status.podIP={text}")]
    ns, _, name = text.rpartition("/")
    found = kube.call("get", "pods", kube.core.read_namespaced_pod, name, ns or "default",
                      namespace=ns or "default")
    if found is not None:
        return [pod_info(found)]
    if ns:
        return []
    # a bare name outside `default` (coredns): look it up by name across namespaces
    return [pod_info(p) for p in kube.paged("list", "pods", kube.core.list_pod_for_all_namespaces,
                                              field_selector=f"metadata.name={name}")]
