"""Live snapshots of network namespaces through netlink (pyroute2), one Host per namespace.

How a namespace is entered: each namespace is read in its own short-lived thread that calls
setns(2) on itself only (never the main thread). Everything that thread opens afterwards is in
the namespace: one rtnetlink socket (pyroute2 IPRoute, no fork), the conntrack, sock_diag and
IPVS netlink sockets, the files under /proc/sys/net, and the child processes it starts
(iptables-save, iptables-legacy-save, nft inherit the thread's namespace through fork). This is
several times faster than `IPRoute(netns=...)` (which forks a helper per socket) or one
`ip netns exec` per tool. Namespaces are read concurrently (threads; the GIL is released while
waiting for netlink and child processes).

After every namespace is read, veth peers are resolved across namespaces: each namespace asks
the kernel (RTM_GETNSID with the other namespaces' fds) which netnsid it uses for each of them,
so `peer_netnsid` + `peer_index` name exactly one (host, ifname).
"""

from __future__ import annotations

import datetime as _dt
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterable, Sequence

from ..bundle import Bundle, Host
from ..netns import enter as _setns
from ..netns import in_thread as _in_thread
from ..netns import open_netns as _open_netns
from ..targets import HostRef
from .collectors import COLLECTORS, CollectCtx, CtFilter, proto_number, run_collectors

__all__ = ["HostRef", "collect_host", "collect", "CtFilter", "COLLECTORS", "whole_rules"]

MAX_WORKERS = 4  # measured on 2 cores: 1 -> 265 ms, 4 -> 205 ms, 8 -> 230 ms for 8 netns
# Host.sources beyond "netlink": what else a snapshot read, when those collectors succeeded.
SOURCES = (
    ("procfs", {"sysctls"}),
    ("iptables-save", {"iptables", "iptables-legacy"}),
    ("nft", {"nftables"}),
)


# Set by whole_rules(): the snapshot is for a bundle, which holds every rule.
_WHOLE_RULES: ContextVar[bool] = ContextVar("podpath_whole_rules", default=False)


@contextmanager
def whole_rules():
    """Snapshots taken inside read every iptables rule of a namespace in its own thread, as one
    iptables-save, rather than the few chains a walk needs first and the whole ruleset again when
    the bundle is written (`snapshot -o`: that per-chain read was ~0.25 CPU-s a node at 10,000
    Services, all of it repeated)."""
    token = _WHOLE_RULES.set(True)
    try:
        yield
    finally:
        _WHOLE_RULES.reset(token)


def _flow(flow: Any) -> CtFilter | None:
    if flow is None or isinstance(flow, CtFilter):
        return flow
    if isinstance(flow, dict):
        get = flow.get
    elif isinstance(flow, (tuple, list)):
        vals = list(flow) + [None] * (5 - len(flow))
        get = dict(zip(("src", "dst", "proto", "sport", "dport"), vals)).get
    else:
        get = lambda k: getattr(flow, k, None)  # noqa: E731
    return CtFilter(
        src=get("src"), dst=get("dst"), proto=proto_number(get("proto")),
        sport=get("sport"), dport=get("dport"),
    )


def _new_host(ref: Any) -> Host:
    kind = getattr(ref, "kind", None) or "node"
    node = getattr(ref, "node", None)
    return Host(
        name=ref.name,
        kind=kind,
        node=node if node is not None or kind != "node" else ref.name,
        netns=getattr(ref, "netns", None),
        namespace=getattr(ref, "namespace", None),
        sources=["netlink"],
        identified_by=getattr(ref, "identified_by", None),
        pids=list(getattr(ref, "pids", None) or ()),
        host_veth=getattr(ref, "host_veth", None),
    )


def _read_namespace(ref: Any, fd: int, flow: CtFilter | None, others: Sequence[tuple[int, int]],
                    only: set[str] | None, whole: bool = False) -> tuple[Host, dict[int, int] | None]:
    """Body of one namespace's thread. Returns the Host and {netnsid: index of another ref}
    (None when the kernel would not say)."""
    from pyroute2 import IPRoute

    netns = getattr(ref, "netns", None)
    _setns(fd, netns)
    host = _new_host(ref)
    host.inode = os.fstat(fd).st_ino  # what BPF events carry as the namespace
    nsids: dict[int, int] | None = {}
    with IPRoute() as ipr:
        run_collectors(CollectCtx(host=host, ipr=ipr, flow=flow, whole_rules=whole), only)
        wanted = {l.peer_netnsid for l in host.links if l.peer_netnsid is not None}
        for idx, other_fd in others:
            if not wanted - set(nsids):
                break
            try:  # RTM_GETNSID: the id this namespace uses for the other one
                answer = ipr.get_netnsid(fd=other_fd)
            except Exception:  # noqa: BLE001 - peers then matched by ifindex both ways
                nsids = None
                break
            nsid = answer.get("nsid") if answer else None
            if nsid is not None and nsid >= 0:
                nsids.setdefault(nsid, idx)
    ran = {name for name, _ in COLLECTORS if only is None or name in only} - set(host.gaps)
    for source, names in SOURCES:
        if ran & names:
            host.sources.append(source)
    return host, nsids


def collect_host(ref: Any, *, flow: Any = None, only: Iterable[str] | None = None) -> Host:
    """Read one namespace (ref.netns None = the caller's). Only same-namespace veth peers are
    resolved; use collect() to resolve peers across namespaces."""
    fd = _open_netns(getattr(ref, "netns", None))
    try:
        host, _ = _in_thread(_read_namespace, ref, fd, _flow(flow), (),
                             set(only) if only is not None else None, _WHOLE_RULES.get())
    finally:
        os.close(fd)
    _resolve_peers([host], [{}])
    return host


def collect(refs: Iterable[Any], *, flow: Any = None, only: Iterable[str] | None = None,
            workers: int | None = None) -> Bundle:
    """Read every namespace, concurrently, then resolve veth peers across them.

    flow: (src, dst, proto, sport, dport) (tuple, dict or object; None fields = any) limits the
    conntrack entries kept. only: names of collectors to run (default all, see COLLECTORS)."""
    refs = list(refs)
    flow_ = _flow(flow)
    only_ = set(only) if only is not None else None
    fds: list[int] = []
    try:
        for ref in refs:  # open them all first: a missing namespace fails before any work
            fds.append(_open_netns(getattr(ref, "netns", None)))
        others = [[(j, fds[j]) for j in range(len(refs)) if j != i] for i in range(len(refs))]
        n = max(1, min(len(refs), workers or MAX_WORKERS))
        # Fresh pool per call: its threads setns freely and die with the pool.
        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="podpath-netns") as pool:
            futures = [
                pool.submit(_read_namespace, ref, fds[i], flow_, others[i], only_, _WHOLE_RULES.get())
                for i, ref in enumerate(refs)
            ]
            results = [f.result() for f in futures]
    finally:
        for fd in fds:
            os.close(fd)
    hosts = [h for h, _ in results]
    _resolve_peers(hosts, [m for _, m in results])
    return Bundle(
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        source="live",
        hosts=hosts,
    )


def _resolve_peers(hosts: list[Host], nsid_maps: list[dict[int, int] | None]) -> None:
    """Fill peer_host/peer_name of every veth whose peer namespace was read.

    Exact when RTM_GETNSID answered (nsid map per host); otherwise a peer is accepted only if
    exactly one other host has a veth at peer_index whose own peer index points back."""
    for i, host in enumerate(hosts):
        nsids = nsid_maps[i]
        for link in host.links:
            if link.kind != "veth" or link.peer_index is None:
                continue
            if link.peer_netnsid is None:  # peer in the same namespace
                candidates = [host]
            elif nsids is not None:  # a namespace we did not read: leave unresolved
                candidates = [hosts[nsids[link.peer_netnsid]]] if link.peer_netnsid in nsids else []
            else:
                candidates = [h for h in hosts if h is not host]
            matches = []
            for other in candidates:
                peer = other.link_by_index(link.peer_index)
                if peer is None or peer.kind != "veth":
                    continue
                if peer.peer_index is not None and peer.peer_index != link.index:
                    continue
                if (other is host) != (peer.peer_netnsid is None):
                    continue
                matches.append((other, peer))
            if len(matches) == 1:
                link.peer_host, link.peer_name = matches[0][0].name, matches[0][1].name


def read_rules_whole(bundle: Bundle, workers: int | None = None) -> None:
    """Read whole, concurrently, every big ruleset the snapshot left to read per chain
    (netfilter/live.py): what writing the bundle needs, on both cores rather than one node at a
    time when to_json() gets to each."""
    from ..netfilter.live import LiveSaves

    pending = [h.iptables_save for h in bundle.hosts
               if isinstance(h.iptables_save, LiveSaves) and h.iptables_save.live]
    if len(pending) > 1:
        with ThreadPoolExecutor(max_workers=workers or MAX_WORKERS, thread_name_prefix="podpath-rules") as pool:
            list(pool.map(lambda saves: saves.items(), pending))
