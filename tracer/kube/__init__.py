"""The Kubernetes API, through the official client: names and cluster facts for the Source seam.

    kube = connect(kubeconfig=None, context=None)   # None when no cluster config is found
    inv = read_inventory(kube, node_addrs=[...], targets=["default/pod-a", "svc/kube-system/kube-dns"])

Config is found as kubectl finds it: --kubeconfig FILE, then $KUBECONFIG, then ~/.kube/config, then
the in-cluster service account. Errors are one line: a 401/403 names the verb, resource and the RBAC
rule to add (ApiError); an unreachable server names its URL (ApiUnreachable), and node sources fall
back to node-only discovery, saying so.
"""

from .client import ApiUnreachable, Kube, connect
from .facts import read_inventory, read_services

__all__ = ["Kube", "connect", "ApiUnreachable", "read_inventory", "read_services"]
