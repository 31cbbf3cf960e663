"""The API resources the stand-in serves, and the discovery documents kubectl reads about them."""

from __future__ import annotations

from dataclasses import dataclass

READ_VERBS = ["get", "list", "watch"]


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    singular: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:  # "pods", "endpointslices.discovery.k8s.io": as in error messages
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "namespaces", "Namespace", False, ("ns",), "namespace"),
    Resource("", "v1", "nodes", "Node", False, ("no",), "node"),
    Resource("", "v1", "pods", "Pod", True, ("po",), "pod"),
    Resource("", "v1", "services", "Service", True, ("svc",), "service"),
    Resource("", "v1", "configmaps", "ConfigMap", True, ("cm",), "configmap"),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True, (), "endpointslice"),
    Resource("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), "daemonset"),
)
BY_KIND = {r.kind: r for r in RESOURCES}
GROUPS = {"apps": "v1", "discovery.k8s.io": "v1"}


def find(group: str, version: str, plural: str) -> Resource | None:
    return next((r for r in RESOURCES if (r.group, r.version, r.plural) == (group, version, plural)), None)


def api_versions(server_ip: str, port: int) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": f"{server_ip}:{port}"}]}


def api_group_list() -> dict:
    groups = []
    for g, v in GROUPS.items():
        gv = {"groupVersion": f"{g}/{v}", "version": v}
        groups.append({"name": g, "versions": [gv], "preferredVersion": gv})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str) -> dict | None:
    if group not in GROUPS:
        return None
    gv = {"groupVersion": f"{group}/{GROUPS[group]}", "version": GROUPS[group]}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": [gv], "preferredVersion": gv}


def resource_list(group: str, version: str) -> dict | None:
    rs = [r for r in RESOURCES if r.group == group and r.version == version]
    if not rs:
        return None
    items = []
    for r in rs:
        d = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
             # The real server lists write verbs too; this one refuses them (405), so it says so.
             "verbs": READ_VERBS}
        if r.short_names:
            d["shortNames"] = list(r.short_names)
        items.append(d)
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": items}


AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def aggregated(legacy_core: bool) -> dict:
    """apidiscovery.k8s.io/v2 APIGroupDiscoveryList: /api (the core group) or /apis (named groups),
    what kubectl asks for first (Accept: ...;as=APIGroupDiscoveryList) to skip one call per group."""
    groups = [""] if legacy_core else list(GROUPS)
    items = []
    for g in groups:
        versions = sorted({r.version for r in RESOURCES if r.group == g})
        vs = []
        for v in versions:
            res = []
            for r in RESOURCES:
                if (r.group, r.version) != (g, v):
                    continue
                d = {"resource": r.plural, "responseKind": {"group": g, "version": v, "kind": r.kind},
                     "scope": "Namespaced" if r.namespaced else "Cluster", "singularResource": r.singular,
                     "verbs": READ_VERBS}
                if r.short_names:
                    d["shortNames"] = list(r.short_names)
                res.append(d)
            vs.append({"version": v, "resources": res, "freshness": "Current"})
        meta = {"creationTimestamp": None} | ({"name": g} if g else {})
        items.append({"metadata": meta, "versions": vs})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items}


# The kinds of podpath's deploy/ manifests, known to discovery only (deployable.py), unless served above.
from .deployable import DISCOVERY_ONLY  # noqa: E402 - it builds on Resource, defined above

RESOURCES += tuple(r for r in DISCOVERY_ONLY if find(r.group, r.version, r.plural) is None)
BY_KIND = {r.kind: r for r in RESOURCES}
for _r in DISCOVERY_ONLY:
    if _r.group:
        GROUPS.setdefault(_r.group, _r.version)
