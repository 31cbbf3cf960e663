"""Where things are: which namespaces to read, and what a user's SRC/DST names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HostRef:
    """A namespace to read and the name it gets in the bundle (node-a, pod-a, underlay)."""

    name: str
    kind: str = "node"  # node, pod, network
    node: str | None = None
    netns: str | None = None  # a name under /run/netns, a path (/proc/PID/ns/net), or None = ours
    namespace: str | None = None  # Kubernetes namespace of a pod
    identified_by: str | None = None  # api, inventory, hostname, ip, unknown (see bundle.Host)
    pids: tuple[int, ...] = ()  # processes holding the namespace
    host_veth: str | None = None  # a pod's veth end in its node's namespace
