"""The Source seam: where hosts, pods, nodes, services, resolv.conf and fix-command prefixes come from.

Every live command (`trace`, `diagnose`, `dns`, `snapshot`) takes a Source, never a lab name:
- `NodeSource` (sources/node.py): this machine. The namespace podpath runs in is the node, its pod
  namespaces are discovered (sources/discovery.py), names and cluster facts come from the
  Kubernetes API when one is reachable (tracer/kube/).
- `BundleSource`: a saved bundle file (`podpath snapshot -o FILE`, or `snapshot import`).
- the netns lab's own (tracer/lab/source.py): the lab is a test fixture that looks like a cluster;
  nothing here imports it.

A fix command fits where it will be run: plain for the namespace podpath ran in, `ip netns exec NAME`
for a named namespace, `nsenter -t PID -n` for one only a process holds (checks/base.py reads
Host.netns for that; the sources only fill it in).
"""

from __future__ import annotations

from pathlib import Path

from ..bundle import Bundle, Host, Inventory
from .. import errors
from ..errors import BundleError, UsageError


def require_root(what: str) -> None:
    errors.require_root(f"{what} (it reads other network namespaces)", "or analyse a saved bundle with --bundle FILE")


class Source:
    """Where a live command gets its view of the cluster. Subclasses fill in what they can."""

    label = "source"  # shown in progress lines: "node node-a", "lab pp", "bundle x.json"
    live = True  # the kernel it describes is this machine's: probes can attach, packets can be sent
    # trace(src, dst, **flow) across nodes, or None when this source traces in process; set by
    # tracer.agent.with_agents (the agents sit above trace: trace never imports them)
    remote_trace = None

    def snapshot(self, targets: tuple[str, ...] = (), flow=None) -> Bundle:
        """Every namespace this source sees, read now, with the inventory (cluster facts) it has.
        targets: what the user typed (SRC, DST), so a source backed by an API can look them up."""
        raise NotImplementedError

    def inventory(self) -> Inventory | None:
        return None

    def resolv_conf(self, host: Host) -> str:
        """The text of a pod's resolv.conf, as its resolver reads it."""
        raise UsageError(f"{self.label} cannot read {host.name}'s resolv.conf; give the server with --server IP")

    def preplan(self, src: str, dst: str, **flow):
        """A SessionRequest from names alone, so probes can attach while the snapshot is taken;
        None when this source cannot say the path before its snapshot."""
        return None

    def not_found_hint(self) -> str:
        """What to try when a target is not here (appended to the unknown-target error)."""
        return ""


class BundleSource(Source):
    """A saved bundle: re-analysed offline, nothing live."""

    live = False

    def __init__(self, path: str):
        self.path = path
        self.label = f"bundle {path}"
        self._bundle: Bundle | None = None

    def snapshot(self, targets: tuple[str, ...] = (), flow=None) -> Bundle:
        if self._bundle is None:
            self._bundle = load_bundle(self.path)
        return self._bundle

    def inventory(self) -> Inventory | None:
        return self.snapshot().inventory


def load_bundle(path: str) -> Bundle:
    p = Path(path)
    if not p.is_file():
        raise BundleError(f"bundle file '{path}' does not exist; make one with `podpath snapshot -o {path}`")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise BundleError(f"cannot read bundle '{path}': {e}") from None
    return Bundle.from_json(text)


def read_resolv_conf(path: str, who: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as e:
        raise UsageError(f"cannot read {who}'s resolv.conf ({path}): {e.strerror}; give the server with "
                         "--server IP") from None


__all__ = ["Source", "BundleSource", "load_bundle", "require_root", "read_resolv_conf"]
