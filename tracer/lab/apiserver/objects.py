"""Kubernetes objects from an Inventory: a pure function (inventory in, list of dicts out).

What a kubeadm cluster with flannel (VXLAN) and kube-proxy (iptables) would serve for the same
nodes, pods and services: Namespaces, Nodes with flannel's annotations, Pods, Services,
EndpointSlices and the kube-proxy / kube-flannel ConfigMaps. No I/O, no clock: uids come from
uuid5 of (cluster, kind, namespace, name) and every timestamp is `created`, so the same inventory
always gives the same objects (a bench can feed it 5,000 nodes and 150,000 pods).
resourceVersion is left to the server, which numbers changes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from ...bundle import Inventory, NodeInfo, PodInfo, ServiceInfo

KUBE_VERSION = "v1.30.5"
FLANNEL_NETWORK_DEFAULT = "10.244.0.0/16"
DNS_LABEL = {"k8s-app": "kube-dns"}


@dataclass(frozen=True)
class Labels:
    """Pod labels and Service selectors: not in an Inventory, so given beside it."""

    pods: dict[str, dict[str, str]] = field(default_factory=dict)  # "ns/name" -> labels
    selectors: dict[str, dict[str, str]] = field(default_factory=dict)  # "ns/svc" -> selector


def uid(cluster: str, kind: str, namespace: str, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"podpath-lab:{cluster}/{kind}/{namespace}/{name}"))


def _meta(cluster: str, kind: str, name: str, created: str, namespace: str | None = None,
          labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "uid": uid(cluster, kind, namespace or "", name),
                         "creationTimestamp": created}
    if namespace is not None:
        m["namespace"] = namespace
    if labels:
        m["labels"] = dict(labels)
    if annotations:
        m["annotations"] = dict(annotations)
    return m


def namespace_obj(cluster: str, name: str, created: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": _meta(cluster, "Namespace", name, created,
                              labels={"kubernetes.io/metadata.name": name}),
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def node_obj(cluster: str, n: NodeInfo, created: str) -> dict[str, Any]:
    ann = {"flannel.alpha.coreos.com/backend-type": "vxlan",
           "flannel.alpha.coreos.com/kube-subnet-manager": "true",
           "node.alpha.kubernetes.io/ttl": "0",
           "volumes.kubernetes.io/controller-managed-attach-detach": "true"}
    if n.vtep_mac:
        ann["flannel.alpha.coreos.com/backend-data"] = json.dumps({"VNI": 1, "VtepMAC": n.vtep_mac},
                                                                  separators=(",", ":"))
    if n.underlay_ip:
        ann["flannel.alpha.coreos.com/public-ip"] = n.underlay_ip
    spec: dict[str, Any] = {}
    if n.pod_cidr:
        spec = {"podCIDR": n.pod_cidr, "podCIDRs": [n.pod_cidr]}
    addresses = ([{"type": "InternalIP", "address": n.underlay_ip}] if n.underlay_ip else []) + \
        [{"type": "Hostname", "address": n.name}]
    ready = {"type": "Ready", "status": "True", "reason": "KubeletReady",
             "message": "kubelet is posting ready status", "lastHeartbeatTime": created,
             "lastTransitionTime": created}
    boot = uid(cluster, "boot", "", n.name)
    machine = hashlib.sha256(f"{cluster}/{n.name}".encode()).hexdigest()[:32]
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": _meta(cluster, "Node", n.name, created, annotations=ann, labels={
            "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": n.name, "kubernetes.io/os": "linux"}),
        "spec": spec,
        "status": {
            "addresses": addresses,
            "capacity": {"cpu": "2", "memory": "4030000Ki", "pods": "110", "ephemeral-storage": "20511312Ki"},
            "allocatable": {"cpu": "2", "memory": "3927600Ki", "pods": "110", "ephemeral-storage": "18903225108"},
            "conditions": [ready],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"architecture": "amd64", "bootID": boot, "containerRuntimeVersion": "containerd://1.7.22",
                         "kernelVersion": "6.1.0-podpath-lab", "kubeProxyVersion": KUBE_VERSION,
                         "kubeletVersion": KUBE_VERSION, "machineID": machine, "operatingSystem": "linux",
                         "osImage": "Debian GNU/Linux 12 (bookworm)", "systemUUID": uid(cluster, "system", "", n.name)},
        },
    }


def _pod_image(p: PodInfo, labels: dict[str, str]) -> tuple[str, str, list[dict[str, Any]]]:
    """(container name, image, ports) a pod like this one would run."""
    if labels.get("k8s-app") == "kube-dns":
        return "coredns", "registry.k8s.io/coredns/coredns:v1.11.1", [
            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}]
    return "app", "registry.k8s.io/e2e-test-images/agnhost:2.47", []


def pod_obj(cluster: str, p: PodInfo, host_ip: str | None, labels: dict[str, str], created: str) -> dict[str, Any]:
    cname, image, ports = _pod_image(p, labels)
    container: dict[str, Any] = {"name": cname, "image": image, "imagePullPolicy": "IfNotPresent",
                                 "resources": {}, "terminationMessagePath": "/dev/termination-log",
                                 "terminationMessagePolicy": "File"}
    if ports:
        container["ports"] = ports
    cid = hashlib.sha256(f"{cluster}/{p.namespace}/{p.name}/container".encode()).hexdigest()
    conds = [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": created}
             for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]
    status: dict[str, Any] = {
        "phase": "Running", "conditions": conds, "qosClass": "BestEffort", "startTime": created,
        "containerStatuses": [{"name": cname, "ready": True, "started": True, "restartCount": 0, "image": image,
                               "imageID": f"{image.split(':')[0]}@sha256:{cid}", "containerID": f"containerd://{cid}",
                               "state": {"running": {"startedAt": created}}}],
    }
    if host_ip:
        status.update(hostIP=host_ip, hostIPs=[{"ip": host_ip}])
    if p.ip:
        status.update(podIP=p.ip, podIPs=[{"ip": p.ip}])
    spec: dict[str, Any] = {"containers": [container], "dnsPolicy": "ClusterFirst", "enableServiceLinks": True,
                            "restartPolicy": "Always", "schedulerName": "default-scheduler",
                            "serviceAccountName": "default", "terminationGracePeriodSeconds": 30}
    if p.node:
        spec["nodeName"] = p.node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": _meta(cluster, "Pod", p.name, created, p.namespace, labels=labels),
            "spec": spec, "status": status}


def service_obj(cluster: str, s: ServiceInfo, selector: dict[str, str], created: str) -> dict[str, Any]:
    ports = [{"name": sp.name, "port": sp.port, "protocol": sp.protocol, "targetPort": sp.target_port or sp.port}
             for sp in s.ports]
    labels = DNS_LABEL | {"kubernetes.io/name": "CoreDNS"} if selector == DNS_LABEL else {}
    spec: dict[str, Any] = {"type": "ClusterIP", "ports": ports, "sessionAffinity": "None",
                            "internalTrafficPolicy": "Cluster", "ipFamilies": ["IPv4"],
                            "ipFamilyPolicy": "SingleStack"}
    if s.cluster_ip:
        spec.update(clusterIP=s.cluster_ip, clusterIPs=[s.cluster_ip])
    if selector:
        spec["selector"] = dict(selector)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _meta(cluster, "Service", s.name, created, s.namespace, labels=labels),
            "spec": spec, "status": {"loadBalancer": {}}}


def endpointslice_obj(cluster: str, s: ServiceInfo, pods_by_ip: dict[str, PodInfo], created: str) -> dict[str, Any]:
    """The one IPv4 slice of a Service with endpoints (the endpointslice controller's name: svc-xxxxx)."""
    suffix = hashlib.sha256(f"{cluster}/{s.namespace}/{s.name}".encode()).hexdigest()
    name = f"{s.name}-" + "".join(c for c in suffix if c in "bcdfghjklmnpqrstvwxz2456789")[:5]
    endpoints = []
    for ip in s.endpoints:
        ep: dict[str, Any] = {"addresses": [ip],
                              "conditions": {"ready": True, "serving": True, "terminating": False}}
        p = pods_by_ip.get(ip)
        if p is not None:
            if p.node:
                ep["nodeName"] = p.node
            ep["targetRef"] = {"kind": "Pod", "namespace": p.namespace, "name": p.name,
                               "uid": uid(cluster, "Pod", p.namespace, p.name)}
        endpoints.append(ep)
    labels = {"kubernetes.io/service-name": s.name,
              "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
    meta = _meta(cluster, "EndpointSlice", name, created, s.namespace, labels=labels)
    meta["generateName"] = f"{s.name}-"
    meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Service", "name": s.name,
                                "uid": uid(cluster, "Service", s.namespace, s.name),
                                "controller": True, "blockOwnerDeletion": True}]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta,
            "addressType": "IPv4", "endpoints": endpoints,
            "ports": [{"name": sp.name, "port": sp.target_port or sp.port, "protocol": sp.protocol}
                      for sp in s.ports]}


def configmap_obj(cluster: str, namespace: str, name: str, data: dict[str, str], created: str,
                  labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(cluster, "ConfigMap", name, created, namespace, labels=labels), "data": data}


def kube_proxy_config(cluster_cidr: str) -> str:
    return ("apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
            "bindAddress: 0.0.0.0\n"
            f"clusterCIDR: {cluster_cidr}\n"
            "iptables:\n  masqueradeAll: false\n  minSyncPeriod: 1s\n  syncPeriod: 30s\n"
            "kind: KubeProxyConfiguration\n"
            "mode: iptables\n")


def objects(inv: Inventory, cluster: str, created: str, labels: Labels | None = None,
            agents: dict[str, bool] | None = None) -> list[dict[str, Any]]:
    """Every object the API serves for this inventory (cluster: a name that seeds the uids;
    created: an RFC 3339 time, e.g. 2026-01-01T00:00:00Z). agents: node -> agent ready, when
    podpath's DaemonSet runs there (its namespace, DaemonSet and one pod per node are served)."""
    labels = labels or Labels()
    namespaces = ["default", "kube-flannel", "kube-node-lease", "kube-public", "kube-system"]
    if agents is not None:
        namespaces.append(AGENT_NAMESPACE)
    out: list[dict[str, Any]] = [namespace_obj(cluster, ns, created) for ns in sorted(namespaces)]
    host_ip = {n.name: n.underlay_ip for n in inv.nodes}
    out += [node_obj(cluster, n, created) for n in inv.nodes]
    for p in inv.pods:
        key = f"{p.namespace}/{p.name}"
        out.append(pod_obj(cluster, p, host_ip.get(p.node or ""), labels.pods.get(key, {"app": p.name}), created))
    pods_by_ip = {p.ip: p for p in inv.pods if p.ip}
    for s in inv.services:
        out.append(service_obj(cluster, s, labels.selectors.get(f"{s.namespace}/{s.name}", {}), created))
        if s.endpoints:  # the controller deletes the slice's endpoints; an empty Service serves none here
            out.append(endpointslice_obj(cluster, s, pods_by_ip, created))
    out.append(configmap_obj(cluster, "kube-system", "kube-proxy",
                             {"config.conf": kube_proxy_config(inv.cluster_cidr), "kubeconfig.conf": ""},
                             created, labels={"app": "kube-proxy"}))
    net_conf = json.dumps({"Network": inv.cluster_cidr or FLANNEL_NETWORK_DEFAULT, "Backend": {"Type": "vxlan"}})
    out.append(configmap_obj(cluster, "kube-flannel", "kube-flannel-cfg",
                             {"net-conf.json": net_conf, "cni-conf.json": _cni_conf()}, created,
                             labels={"app": "flannel", "tier": "node"}))
    if agents is not None:
        out += agent_objects(cluster, inv, agents, created)
    return out


# ---------------------------------------------------------------- podpath's own DaemonSet (issue 10)

AGENT_NAMESPACE = "podpath"
AGENT_DAEMONSET = "podpath-agent"
AGENT_LABEL = {"app.kubernetes.io/name": "podpath-agent"}
AGENT_PORT = 4244
AGENT_IMAGE = "ghcr.io/podpath/podpath:lab"


def agent_pod_name(cluster: str, node: str) -> str:
    """`podpath-agent-xxxxx`, as the DaemonSet controller names its pods (stable per node)."""
    h = hashlib.sha256(f"{cluster}/{AGENT_DAEMONSET}/{node}".encode()).hexdigest()
    return f"{AGENT_DAEMONSET}-" + "".join(c for c in h if c in "bcdfghjklmnpqrstvwxz2456789")[:5]


def _agent_template() -> dict[str, Any]:
    """The DaemonSet's pod template (deploy/'s in substance): hostNetwork, hostPID, the port declared
    but bound on 127.0.0.1 only (reached through the API server's port-forward)."""
    container = {
        "name": "agent", "image": AGENT_IMAGE, "imagePullPolicy": "IfNotPresent",
        "args": ["agent", "--port", str(AGENT_PORT)],
        "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}}],
        "ports": [{"name": "agent", "containerPort": AGENT_PORT, "hostPort": AGENT_PORT, "protocol": "TCP"}],
        "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN"]}},
        "resources": {}, "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
    }
    return {"containers": [container], "dnsPolicy": "ClusterFirstWithHostNet", "hostNetwork": True,
            "hostPID": True, "restartPolicy": "Always", "schedulerName": "default-scheduler",
            "serviceAccountName": AGENT_DAEMONSET, "serviceAccount": AGENT_DAEMONSET,
            "terminationGracePeriodSeconds": 30,
            "tolerations": [{"operator": "Exists"}]}


def agent_objects(cluster: str, inv: Inventory, ready: dict[str, bool], created: str) -> list[dict[str, Any]]:
    """DaemonSet podpath/podpath-agent and its pod on each node of `ready` (Ready as its agent runs)."""
    ds_uid = uid(cluster, "DaemonSet", AGENT_NAMESPACE, AGENT_DAEMONSET)
    revision = hashlib.sha256(f"{cluster}/{AGENT_DAEMONSET}/1".encode()).hexdigest()[:10]
    pod_labels = AGENT_LABEL | {"controller-revision-hash": revision, "pod-template-generation": "1"}
    nodes = {n.name: n for n in inv.nodes}
    out: list[dict[str, Any]] = []
    for node_name, is_ready in sorted(ready.items()):
        n = nodes.get(node_name)
        if n is None:
            continue
        name = agent_pod_name(cluster, node_name)
        spec = _agent_template() | {"nodeName": node_name}
        cid = hashlib.sha256(f"{cluster}/{AGENT_NAMESPACE}/{name}/agent".encode()).hexdigest()
        flag = "True" if is_ready else "False"
        conds = [{"type": t, "status": "True" if t in ("Initialized", "PodScheduled") else flag,
                  "lastProbeTime": None, "lastTransitionTime": created}
                 for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]
        state = ({"running": {"startedAt": created}} if is_ready else
                 {"waiting": {"reason": "CrashLoopBackOff", "message": "the lab's agent process is not running"}})
        cstatus = {"name": "agent", "ready": is_ready, "started": is_ready, "restartCount": 0 if is_ready else 1,
                   "image": AGENT_IMAGE, "imageID": f"{AGENT_IMAGE.split(':')[0]}@sha256:{cid}",
                   "containerID": f"containerd://{cid}", "state": state}
        ip = n.underlay_ip
        status: dict[str, Any] = {"phase": "Running", "conditions": conds, "qosClass": "BestEffort",
                                  "startTime": created, "containerStatuses": [cstatus]}
        if ip:
            status.update(hostIP=ip, hostIPs=[{"ip": ip}], podIP=ip, podIPs=[{"ip": ip}])
        meta = _meta(cluster, "Pod", name, created, AGENT_NAMESPACE, labels=pod_labels)
        meta["generateName"] = f"{AGENT_DAEMONSET}-"
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": AGENT_DAEMONSET,
                                    "uid": ds_uid, "controller": True, "blockOwnerDeletion": True}]
        out.append({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status})
    count, up = len(out), sum(1 for v in ready.values() if v)
    out.append({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": _meta(cluster, "DaemonSet", AGENT_DAEMONSET, created, AGENT_NAMESPACE, labels=AGENT_LABEL)
        | {"generation": 1},
        "spec": {"selector": {"matchLabels": dict(AGENT_LABEL)},
                 "template": {"metadata": {"labels": dict(AGENT_LABEL)}, "spec": _agent_template()},
                 "updateStrategy": {"type": "RollingUpdate",
                                    "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                 "revisionHistoryLimit": 10},
        "status": {"currentNumberScheduled": count, "desiredNumberScheduled": count, "numberMisscheduled": 0,
                   "numberReady": up, "numberAvailable": up, "updatedNumberScheduled": count,
                   "observedGeneration": 1} | ({"numberUnavailable": count - up} if count > up else {}),
    })
    return out


def _cni_conf() -> str:
    return json.dumps({"name": "cbr0", "cniVersion": "0.3.1", "plugins": [
        {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
        {"type": "portmap", "capabilities": {"portMappings": True}}]}, indent=2)
