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
