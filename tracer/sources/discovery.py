"""Which network namespaces are this node's pods, found as containerd, CRI-O and docker lay them out.

No CRI socket or crictl: the kernel already says it.
- Candidates: every mounted namespace under /run/netns (CNI names them `cni-<uuid>`) and every
  distinct /proc/*/ns/net (the pause or holder process of an unnamed one).
- A candidate is this node's when a veth in the node's namespace has its peer there: the node's
  netnsid for the candidate (RTM_GETNSID) is the IFLA_LINK_NETNSID of one of its veths. A veth
  whose node end holds an IPv4 address is the node's uplink (a lab's switch, a VM's), not a pod.
- Who it is, without the API: the pod name kubelet writes into /etc/hostname, read through a holder
  process's own root (/proc/PID/root/etc/hostname); its resolv.conf the same way.

Everything runs in one thread inside the node's namespace (tracer.netns.run_in), so "the node" is
whatever namespace podpath was started in: the root namespace on a real node, a node's namespace
in the lab.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from ..netns import NETNS_RUN_DIR, inode, run_in


@dataclass
class Namespace:
    """One pod namespace of the node, as the kernel shows it."""

    inode: int
    path: str  # what to open: /run/netns/NAME, or /proc/PID/ns/net of a holder
    name: str | None = None  # its name under /run/netns, if it has one
    pids: list[int] = field(default_factory=list)  # processes inside (the pause/holder first)
    host_veth: str | None = None  # the veth end in the node's namespace
    hostname: str | None = None  # kubelet's /etc/hostname in a holder's root: the pod name
    resolv_conf: str | None = None  # path of the pod's own resolv.conf, through a holder's root


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def own_inode() -> int:
    return inode(None)


def _named() -> dict[int, str]:
    """inode -> name of every mounted namespace under /run/netns."""
    out: dict[int, str] = {}
    try:
        names = sorted(os.listdir(NETNS_RUN_DIR))
        dir_dev = os.stat(NETNS_RUN_DIR).st_dev
    except OSError:
        return out
    for name in names:
        try:
            st = os.stat(os.path.join(NETNS_RUN_DIR, name))
        except OSError:
            continue
        if st.st_dev != dir_dev:  # a bind-mounted nsfs file, not a stale empty one
            out.setdefault(st.st_ino, name)
    return out


def holders_by_inode() -> dict[int, list[int]]:
    """inode -> pids of the processes in each network namespace."""
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        ino = inode(f"/proc/{entry}/ns/net")
        if ino is None:
            continue  # gone, or a kernel thread
        out.setdefault(ino, []).append(int(entry))
    for pids in out.values():
        pids.sort()
    return out


def _node_hostnames() -> set[str]:
    """Host names that are the node's own, not a pod's (a holder started without a private
    /etc/hostname sees the node's file)."""
    names = {socket.gethostname()}
    for path in ("/proc/1/root/etc/hostname", "/etc/hostname"):
        text = _read(path)
        if text and text.strip():
            names.add(text.strip())
    return names


def identify(ns: Namespace, node_names: set[str]) -> None:
    """The pod name and resolv.conf kubelet gave the namespace's processes, if any says so."""
    for pid in ns.pids:
        text = _read(f"/proc/{pid}/root/etc/hostname")
        name = text.strip() if text else ""
        if name and name not in node_names:
            ns.hostname = name
            if os.path.exists(f"/proc/{pid}/root/etc/resolv.conf"):
                ns.resolv_conf = f"/proc/{pid}/root/etc/resolv.conf"
            return
    if ns.name and os.path.exists(f"/etc/netns/{ns.name}/resolv.conf"):  # the `ip netns exec` convention
        ns.resolv_conf = f"/etc/netns/{ns.name}/resolv.conf"
    elif ns.pids and os.path.exists(f"/proc/{ns.pids[0]}/root/etc/resolv.conf"):
        ns.resolv_conf = f"/proc/{ns.pids[0]}/root/etc/resolv.conf"


def _discover(prefer: frozenset[int] = frozenset()) -> list[Namespace]:
    from pyroute2 import IPRoute

    ours = own_inode()
    named, holders = _named(), holders_by_inode()
    candidates = {ino: Namespace(inode=ino, path="", name=named.get(ino), pids=holders.get(ino, []))
                  for ino in set(named) | set(holders) if ino != ours}
    found: list[Namespace] = []
    with IPRoute() as ipr:
        veths: dict[int, list[tuple[int, str]]] = {}  # netnsid -> (ifindex, name) of our veths there
        for m in ipr.link("dump"):
            info = m.get_attr("IFLA_LINKINFO")
            nsid = m.get_attr("IFLA_LINK_NETNSID")
            if info is not None and info.get_attr("IFLA_INFO_KIND") == "veth" and nsid is not None:
                veths.setdefault(nsid, []).append((m["index"], m.get_attr("IFLA_IFNAME")))
        if not veths:
            return []
        uplinks = {m["index"] for m in ipr.addr("dump", family=socket.AF_INET)}
        # The netnsids our pod veths lead to: each is one namespace, so once all are found no other
        # candidate can be attached, and the rest of the machine's namespaces (other nodes' pods,
        # in a lab every other lab's) need no RTM_GETNSID each. The likely ones are asked first.
        wanted = {nsid for nsid, ends in veths.items() if nsid >= 0 and any(i not in uplinks for i, _ in ends)}
        for ino, ns in sorted(candidates.items(), key=lambda c: (c[0] not in prefer, c[0])):
            if not wanted:
                break
            paths = ([os.path.join(NETNS_RUN_DIR, ns.name)] if ns.name else []) + \
                [f"/proc/{pid}/ns/net" for pid in ns.pids[:3]]
            for path in paths:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    continue  # the holder exited meanwhile
                try:
                    if os.fstat(fd).st_ino != ino:
                        continue  # the pid was reused
                    answer = ipr.get_netnsid(fd=fd)
                except Exception:  # noqa: BLE001 - a namespace we cannot ask about is not ours
                    answer = None
                finally:
                    os.close(fd)
                nsid = answer.get("nsid") if answer else None
                ends = veths.get(nsid, []) if nsid is not None and nsid >= 0 else []
                pod_ends = [name for index, name in ends if index not in uplinks]
                if pod_ends:
                    ns.path, ns.host_veth = path, pod_ends[0]
                    found.append(ns)
                    wanted.discard(nsid)
                break
    found.sort(key=lambda ns: ns.inode)
    node_names = _node_hostnames()
    for ns in found:
        identify(ns, node_names)
    return found


def discover(node_netns: str | None = None, likely: set[int | None] | frozenset[int] = frozenset()) -> list[Namespace]:
    """The pod namespaces attached to the node (node_netns: None = the namespace podpath runs in).
    likely: inodes of namespaces expected among them (asked first; the answer is the same)."""
    prefer = frozenset(i for i in likely if i is not None)
    return run_in(node_netns, lambda: _discover(prefer))
