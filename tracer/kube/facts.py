"""Cluster facts from the API as an Inventory: nodes, the pods that matter, Services, endpoints.

Read as a cluster of 5,000 nodes and 150,000 pods allows (bench/bench_api_scale.py). Each read
says what bounds it:
- Nodes: all of them, paged (limit/continue). A node command needs every other node's podCIDR,
  VTEP MAC and underlay IP (routes and flannel triples are checked against each). Bounded by the
  node count, read as JSON: the client's typed models cost about a millisecond a Node.
- Pods: never listed cluster-wide. This node's by fieldSelector spec.nodeName (bounded by the
  node's pod capacity), and the targets: [ns/]pod by name (a GET), an IP by fieldSelector
  status.podIP, a bare name outside `default` by fieldSelector metadata.name.
- Services and EndpointSlices: a cluster whose Services fit in one page of WHOLE_SERVICES is read
  whole (every Service's endpoints are then checked against this node's rules). A larger one is
  read as the flow needs it: the target Services and the cluster DNS Service by name, and their
  EndpointSlices by label kubernetes.io/service-name in their namespace; other Services'
  endpoints are not checked there (bounded by the number of targets, not the cluster).
"""

from __future__ import annotations

import ipaddress
import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from ..bundle import Inventory, NodeInfo, PodInfo, ServiceInfo, ServicePort
from ..errors import ApiError
from .client import Kube

FLANNEL = "flannel.alpha.coreos.com/"
TARGET_IP = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DNS_SERVICE = ("kube-system", "kube-dns")
# A cluster with at most this many Services is read whole, in one page; beyond, only the flow's.
WHOLE_SERVICES = 100
PAGE = 500
READERS = 4  # API reads at once (each its own connection, as kubectl's parallel reads)
# What is read, by path (Kube.json: the generated typed APIs cost most of a second to import)
NODES, PODS, SERVICES = "/api/v1/nodes", "/api/v1/pods", "/api/v1/services"
POD, SERVICE, CONFIGMAP = "/api/v1/namespaces/{}/pods/{}", "/api/v1/namespaces/{}/services/{}", \
    "/api/v1/namespaces/{}/configmaps/{}"
SLICES, NS_SLICES = "/apis/discovery.k8s.io/v1/endpointslices", "/apis/discovery.k8s.io/v1/namespaces/{}/endpointslices"


def path(template: str, *names: str) -> str:
    from urllib.parse import quote
    return template.format(*(quote(n, safe="") for n in names))


def node_info(n: dict) -> NodeInfo:
    meta, spec, status = n.get("metadata") or {}, n.get("spec") or {}, n.get("status") or {}
    ann = meta.get("annotations") or {}
    internal = next((a.get("address") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), None)
    try:
        vtep = (json.loads(ann.get(FLANNEL + "backend-data") or "{}") or {}).get("VtepMAC")
    except (ValueError, AttributeError):
        vtep = None
    return NodeInfo(name=meta.get("name"), underlay_ip=ann.get(FLANNEL + "public-ip") or internal,
                    vtep_mac=vtep.lower() if isinstance(vtep, str) else None,
                    pod_cidr=spec.get("podCIDR"), internal_ip=internal)


def pod_info(p: dict) -> PodInfo:
    meta, spec, status = p.get("metadata") or {}, p.get("spec") or {}, p.get("status") or {}
    return PodInfo(name=meta.get("name"), namespace=meta.get("namespace") or "default", node=spec.get("nodeName"),
                   ip=status.get("podIP"), host_network=bool(spec.get("hostNetwork")), phase=status.get("phase"))


def service_info(s: dict, slices: list[dict]) -> ServiceInfo:
    """A Service and its ready endpoints, from the EndpointSlices labelled with its name."""
    meta, spec = s.get("metadata") or {}, s.get("spec") or {}
    target_by_name: dict[str | None, int] = {}
    endpoints: list[str] = []
    for sl in slices:
        for port in sl.get("ports") or []:
            if port.get("port") is not None:
                target_by_name.setdefault(port.get("name") or None, port["port"])
        for ep in sl.get("endpoints") or []:
            ready = (ep.get("conditions") or {}).get("ready")
            if ready is None or ready:
                endpoints += [a for a in ep.get("addresses") or [] if a not in endpoints]
    ports = []
    for sp in spec.get("ports") or []:
        target = sp.get("targetPort") if isinstance(sp.get("targetPort"), int) else None
        target = target_by_name.get(sp.get("name") or None, target)
        ports.append(ServicePort(name=sp.get("name") or "", port=sp.get("port"), protocol=sp.get("protocol") or "TCP",
                                 target_port=target))
    cluster_ip = spec.get("clusterIP") if spec.get("clusterIP") not in (None, "None", "") else None
    return ServiceInfo(name=meta.get("name"), namespace=meta.get("namespace") or "default", cluster_ip=cluster_ip,
                       ports=ports, endpoints=endpoints)


def read_inventory(kube: Kube, *, node_name: str | None = None, node_addrs: Iterable[str] = (),
                   targets: Iterable[str] = ()) -> Inventory:
    """What the API says about this node, the named targets, and the Services (see the module's doc
    for what bounds each read).

    A fact the user's RBAC does not allow is recorded in inv.gaps (and said once), unless it is
    one podpath cannot work without (nodes).

    The reads that do not depend on each other go at once (a laptop is tens of milliseconds from
    its API server, and a trace waits for all of them): the targets, the Services and their
    endpoints, the two ConfigMaps, beside the Nodes and then this node's pods."""
    targets = list(targets)
    inv = Inventory(cluster_cidr=None, service_cidr=None, source="kubernetes")
    with ThreadPoolExecutor(READERS, thread_name_prefix="podpath-api") as ex:
        found = [ex.submit(_target_pods, kube, t) for t in targets]
        services = ex.submit(_services_apart, kube, {DNS_SERVICE} | {svc for t in targets if (svc := service_target(t))})
        maps = [ex.submit(_configmap_apart, kube, ns, name) for ns, name in
                (("kube-system", "kube-proxy"), ("kube-flannel", "kube-flannel-cfg"))]
        inv.nodes = [node_info(n) for page in kube.pages_json("list", "nodes", NODES, limit=PAGE)
                     for n in page]
        addrs = set(node_addrs)
        local = next((n for n in inv.nodes if n.name == node_name), None) or \
            next((n for n in inv.nodes if addrs & {n.internal_ip, n.underlay_ip}), None)
        inv.local_node = local.name if local else node_name
        inv.pods = _pods(kube, local.name if local is not None else None, [f.result() for f in found])
        # each part's gaps in the order the reads were once made one after the other
        part = services.result()
        inv.services = part.services
        inv.gaps.update({k: v for k, v in part.gaps.items() if k not in inv.gaps})
        (proxy, proxy_gaps), (flannel, flannel_gaps) = (f.result() for f in maps)
    for gaps in (proxy_gaps, flannel_gaps):
        for k, v in gaps.items():
            inv.gaps.setdefault(k, v)
    if any((s.namespace, s.name) == DNS_SERVICE for s in inv.services):
        inv.dns_service = "/".join(DNS_SERVICE)
    data = (proxy or {}).get("data")
    if data:
        conf = data.get("config.conf") or ""
        m = re.search(r"^mode:\s*\"?([A-Za-z]*)\"?", conf, re.M)
        inv.kube_proxy_mode = (m.group(1) if m and m.group(1) else "iptables")  # "" means the default
        m = re.search(r"^clusterCIDR:\s*\"?([0-9./]+)", conf, re.M)
        if m:
            inv.cluster_cidr = m.group(1)
    data = (flannel or {}).get("data")
    if data:
        try:
            net = json.loads(data.get("net-conf.json") or "{}").get("Network")
            if net:
                inv.cluster_cidr = str(ipaddress.ip_network(net, strict=False))
        except ValueError:
            pass
    return inv


def read_names(kube: Kube, node_name: str, targets: Iterable[str] = ()) -> Inventory:
    """Only what names node_name's namespaces (sources/node.py name_hosts): its pods and the
    targets, read at once; no Nodes, Services or ConfigMaps. For an agent whose coordinator reads
    the cluster's facts itself (the `snapshot` request's "inventory": false)."""
    inv = Inventory(cluster_cidr=None, service_cidr=None, source="kubernetes", local_node=node_name)
    targets = list(targets)
    with ThreadPoolExecutor(READERS, thread_name_prefix="podpath-api") as ex:
        found = [ex.submit(_target_pods, kube, t) for t in targets]
        inv.pods = _pods(kube, node_name, [f.result() for f in found])
    return inv


def _pods(kube: Kube, node: str | None, targets: list[list[PodInfo]]) -> list[PodInfo]:
    """The node's pods (fieldSelector spec.nodeName; none without a node), then the targets' others."""
    pods: dict[tuple[str, str], PodInfo] = {}
    if node is not None:
        for p in kube.paged_json("list", "pods", PODS, limit=PAGE, field_selector=f"spec.nodeName={node}"):
            info = pod_info(p)
            pods[(info.namespace, info.name)] = info
    for infos in targets:
        for info in infos:
            pods.setdefault((info.namespace, info.name), info)
    return list(pods.values())


def _services_apart(kube: Kube, wanted: set[tuple[str, str]]) -> Inventory:
    """_read_services into an inventory of its own (its services and gaps), for a reader thread."""
    part = Inventory(cluster_cidr=None, service_cidr=None, source="kubernetes")
    _read_services(kube, part, wanted)
    return part


def _configmap_apart(kube: Kube, namespace: str, name: str) -> tuple[dict | None, dict[str, str]]:
    """A ConfigMap podpath can do without (None, and the gap, when refused), for a reader thread."""
    part = Inventory(cluster_cidr=None, service_cidr=None, source="kubernetes")
    got = _optional(part, "configmaps", lambda: kube.json("get", "configmaps", path(CONFIGMAP, namespace, name),
                                                          namespace=namespace))
    return got, part.gaps


def service_target(text: str) -> tuple[str, str] | None:
    """(namespace, name) of a `svc/[ns/]name[:port]` target."""
    text = text.strip()
    if not text.startswith("svc/"):
        return None
    ns, _, name = text[4:].split(":", 1)[0].rpartition("/")
    return (ns or "default", name) if name else None


def _read_services(kube: Kube, inv: Inventory, wanted: set[tuple[str, str]]) -> None:
    """inv.services: every Service of a small cluster, else the wanted ones; each with its endpoints."""
    first = _optional(inv, "services", lambda: kube.json("list", "services", SERVICES, limit=WHOLE_SERVICES))
    if first is None:
        return
    whole = not (first.get("metadata") or {}).get("continue")
    if whole:
        services = first.get("items") or []
        slices = _optional(inv, "endpointslices", lambda: kube.paged_json(
            "list", "endpointslices", SLICES, group="discovery.k8s.io", limit=PAGE))
    else:
        services, slices = _named_services(kube, inv, wanted)
    inv.services = _with_endpoints(services, slices)


def read_services(kube: Kube, inv: Inventory, names: Iterable[tuple[str, str]]) -> None:
    """Add these Services (namespace, name) and their endpoints to inv, unless it has them: for a
    caller that learns after read_inventory which Services matter (the ones whose kube-proxy rules
    the flow crossed on this node). Bounded by len(names): a GET and a labelled list each."""
    have = {(s.namespace, s.name) for s in inv.services}
    wanted = {n for n in names if n not in have}
    if wanted and "services" not in inv.gaps:
        services, slices = _named_services(kube, inv, wanted)
        inv.services += _with_endpoints(services, slices)


def _named_services(kube: Kube, inv: Inventory, wanted: set[tuple[str, str]]) -> tuple[list[dict], list[dict] | None]:
    """Services by name, and their EndpointSlices by label kubernetes.io/service-name (None: refused)."""
    services = [s for ns, name in sorted(wanted) if (s := _optional(inv, "services", lambda ns=ns, name=name: kube.json(
        "get", "services", path(SERVICE, ns, name), namespace=ns)))]
    slices: list[dict] | None = []
    for s in services:
        ns, name = s["metadata"].get("namespace"), s["metadata"]["name"]
        got = _optional(inv, "endpointslices", lambda ns=ns, name=name: kube.paged_json(
            "list", "endpointslices", path(NS_SLICES, ns), group="discovery.k8s.io", namespace=ns, label_selector=f"{SERVICE_NAME_LABEL}={name}"))
        if got is None:
            return services, None
        slices += got
    return services, slices


def _with_endpoints(services: list[dict], slices: list[dict] | None) -> list[ServiceInfo]:
    by_service: dict[tuple[str, str], list[dict]] = {}
    for sl in slices or []:
        meta = sl.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if owner:
            by_service.setdefault((meta.get("namespace"), owner), []).append(sl)
    out = [service_info(s, by_service.get((s["metadata"].get("namespace"), s["metadata"]["name"]), []))
           for s in services]
    if slices is None:  # without EndpointSlices nothing says which endpoints are real
        for s in out:
            s.endpoints = []
    return out


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
        return [pod_info(p) for p in kube.paged_json("list", "pods", PODS, limit=PAGE,
                                                       field_selector=f"status.podIP={text}")]
    ns, _, name = text.rpartition("/")
    found = kube.json("get", "pods", path(POD, ns or "default", name), namespace=ns or "default")
    if found is not None:
        return [pod_info(found)]
    if ns:
        return []
    # a bare name outside `default` (coredns): look it up by name across namespaces
    return [pod_info(p) for p in kube.paged_json("list", "pods", PODS, limit=PAGE,
                                                   field_selector=f"metadata.name={name}")]
