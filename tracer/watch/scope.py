"""What one watch covers, from a Source (the seam every live command uses): the nodes whose
counters and changes it reads, and every namespace inode it attributes drops to.

On a node (NodeSource): this namespace is the node (named by its hostname) and its discovered pod
namespaces are its pods. In the netns lab (LabSource): every lab node and pod, by the lab's own
inventory; the lab's switch namespace is its own place. Drops in any other namespace (another
lab, the machine itself) are not this watch's and are left out.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from ..netns import existing_inode, inode
from .names import Place


@dataclass
class Scope:
    nodes: dict[str, str | None] = field(default_factory=dict)  # node name -> netns (None: ours)
    places: dict[int, Place] = field(default_factory=dict)  # netns inode -> Place
    pod_filter: str | None = None

    def keep(self, inode: int) -> Place | None:
        p = self.places.get(inode)
        if p is None:
            return None
        if self.pod_filter and p.pod != self.pod_filter and p.pod is not None:
            return None
        return p


def scope_of(source, pod: str | None = None, node_name: str | None = None) -> Scope:
    """node_name: this node's name on a node (an agent knows it; default the hostname)."""
    sc = Scope(pod_filter=pod)
    if hasattr(source, "hosts"):  # the lab: its inventory names every namespace
        for r in source.hosts():
            ino = inode(r.netns)
            if ino is None:  # gone since the lab listed it
                continue
            if r.kind == "node":
                sc.nodes[r.name] = r.netns
                sc.places[ino] = Place(r.name, None, None, r.netns)
            elif r.kind == "pod" and r.node:
                sc.places[ino] = Place(r.node, r.name, r.namespace, r.netns)
            else:
                sc.places[ino] = Place(r.name, None, None, r.netns)
    else:
        from ..sources.discovery import discover
        node = node_name or socket.gethostname()
        sc.nodes[node] = None
        sc.places[existing_inode(None)] = Place(node)
        for ns in discover(None):
            sc.places[ns.inode] = Place(node, ns.hostname or ns.name or f"netns-{ns.inode}", None, ns.path)
    if pod and not any(p.pod == pod for p in sc.places.values()):
        from ..errors import UsageError
        pods = sorted({p.pod for p in sc.places.values() if p.pod})
        raise UsageError(f"no pod {pod!r} here; pods: {', '.join(pods) or '(none)'}")
    return sc
