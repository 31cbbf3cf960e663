"""Who may do what on the stand-in: RBAC rules per user, as (Cluster)Roles bound to them would grant.

A rule is what a PolicyRule says: verbs, resources (a subresource as "pods/portforward"), and where
it holds (a ClusterRole binding: everywhere; a RoleBinding: one namespace). system:masters may do
anything, as on a real cluster. The rules of `agent` and `coordinator` are issue 10's contract,
the same deploy/ binds.
"""

from __future__ import annotations

from dataclasses import dataclass

READ = frozenset({"get", "list", "watch"})
# What a trace reads about the cluster (kube/facts.py): nodes, pods, Services, EndpointSlices and
# the kube-proxy / flannel ConfigMaps.
CLUSTER_FACTS = frozenset({"pods", "nodes", "services", "endpointslices", "configmaps"})
AGENT_NAMESPACE = "podpath"


@dataclass(frozen=True)
class Rule:
    verbs: frozenset[str]
    resources: frozenset[str]  # plural names are unique across the served groups, so no group here
    namespace: str | None = None  # None: cluster-wide

    def allows(self, verb: str, resource: str, namespace: str | None) -> bool:
        return (verb in self.verbs and resource in self.resources
                and (self.namespace is None or self.namespace == namespace))


RULES: dict[str, tuple[Rule, ...]] = {
    "limited": (Rule(READ, frozenset({"nodes", "pods", "services", "namespaces"})),),
    # The agent names the pods of its node like `podpath trace` on a node does: read-only.
    "agent": (Rule(READ, CLUSTER_FACTS),),
    # The coordinator finds agents and reads what the trace needs; it reaches agents only through
    # port-forward, and only to pods in the agents' namespace (a Role there, not a ClusterRole).
    "coordinator": (Rule(frozenset({"get", "list"}), CLUSTER_FACTS),
                    Rule(frozenset({"create"}), frozenset({"pods/portforward"}), AGENT_NAMESPACE)),
}


def allowed(token_name: str, groups: list[str], verb: str, resource: str, namespace: str | None) -> bool:
    if "system:masters" in groups:
        return True
    return any(r.allows(verb, resource, namespace) for r in RULES.get(token_name, ()))
