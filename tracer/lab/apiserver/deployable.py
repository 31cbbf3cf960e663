"""Kinds the stand-in knows by name only, so `kubectl apply --dry-run=client -f deploy/` can map
podpath's own manifests to resources, as it does against a real server: discovery lists them, a
GET answers 404 NotFound and a list is empty (none exists here), and writes stay refused (405).
resources.py adds each one that is not served for real already (the DaemonSet, once the lab
registers its agents as one)."""

from __future__ import annotations

from .resources import Resource

RBAC = "rbac.authorization.k8s.io"

DISCOVERY_ONLY: tuple[Resource, ...] = (
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",), "serviceaccount"),
    Resource("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), "daemonset"),
    Resource(RBAC, "v1", "clusterroles", "ClusterRole", False, (), "clusterrole"),
    Resource(RBAC, "v1", "clusterrolebindings", "ClusterRoleBinding", False, (), "clusterrolebinding"),
    Resource(RBAC, "v1", "roles", "Role", True, (), "role"),
    Resource(RBAC, "v1", "rolebindings", "RoleBinding", True, (), "rolebinding"),
)
