"""Configuration changes as events, stamped when the kernel announces them: route, neighbour, FDB
and link notifications from an rtnetlink socket opened inside each node's namespace, and rule
additions and deletions from `nft monitor` there (iptables-nft rules are nftables rules)."""

from __future__ import annotations

import select
import socket
import subprocess
import threading
import time
from collections.abc import Callable

from ..netns import run_in

RTMGRP_LINK, RTMGRP_NEIGH, RTMGRP_IPV4_ROUTE = 0x1, 0x4, 0x40
_KINDS = {16: ("link", "new"), 17: ("link", "del"), 24: ("route", "new"), 25: ("route", "del"),
          28: ("neigh", "new"), 29: ("neigh", "del")}
_NUD = {0x01: "INCOMPLETE", 0x02: "REACHABLE", 0x04: "STALE", 0x08: "DELAY", 0x10: "PROBE", 0x20: "FAILED",
        0x40: "NOARP", 0x80: "PERMANENT"}

Emit = Callable[[dict], None]  # {time_ns, node_name, kind, action, object, detail}


class _Links:
    """ifindex -> (name, MTU) of one namespace, kept current from link notifications, so a
    neighbour names its device and an MTU change says what it was before."""

    def __init__(self, links: dict[int, tuple[str, int | None]]) -> None:
        self.links = links

    def name(self, index: int) -> str:
        return self.links.get(index, (f"if{index}", None))[0]

    def update(self, index: int, name: str, mtu: int | None, gone: bool) -> int | None:
        """The MTU before this notification."""
        before = self.links.get(index, (name, None))[1]
        if gone:
            self.links.pop(index, None)
        else:
            self.links[index] = (name, mtu)
        return before


def _links_now() -> dict[int, tuple[str, int | None]]:
    from pyroute2 import IPRoute
    with IPRoute() as ipr:  # opened by a thread inside the namespace (run_in): its socket is there
        return {l["index"]: (l.get_attr("IFLA_IFNAME"), l.get_attr("IFLA_MTU")) for l in ipr.get_links()}


def _describe(msg, links: _Links) -> tuple[str, str, str, str] | None:
    kind = _KINDS.get(msg["header"]["type"])
    if kind is None:
        return None
    what, action = kind
    if what == "link":
        obj = msg.get_attr("IFLA_IFNAME") or links.name(msg["index"])
        mtu = msg.get_attr("IFLA_MTU")
        before = links.update(msg["index"], obj, mtu, action == "del")
        shown = f"mtu {before}->{mtu}" if before is not None and mtu is not None and before != mtu else f"mtu={mtu}"
        detail = f"flags={msg['flags']:#x} {shown}"
    elif what == "route":
        dst = msg.get_attr("RTA_DST")
        obj = f"{dst}/{msg['dst_len']}" if dst else "default"
        detail = f"via={msg.get_attr('RTA_GATEWAY')} oif={msg.get_attr('RTA_OIF')} table={msg.get_attr('RTA_TABLE')}"
    else:
        if msg["family"] == socket.AF_BRIDGE:
            what = "fdb"
        obj = f"{msg.get_attr('NDA_DST')} lladdr={msg.get_attr('NDA_LLADDR')} dev {links.name(msg['ifindex'])}"
        detail = _NUD.get(msg["state"], f"state={msg['state']:#x}")
    return what, action, obj, detail


class ChangeWatcher:
    """Threads that watch one node's namespace until stop()."""

    def __init__(self, node: str, netns: str | None, emit: Emit) -> None:
        self.node, self.netns, self.emit = node, netns, emit
        self._stop = threading.Event()
        self._sock = run_in(netns, self._open_rtnl)
        self._links = _Links(run_in(netns, _links_now))  # after the socket: no change falls between
        self._nft = run_in(netns, lambda: subprocess.Popen(
            ["nft", "-a", "monitor", "rules"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
        self._threads = [threading.Thread(target=self._rtnl_loop, daemon=True, name=f"pw-rtnl-{node}"),
                         threading.Thread(target=self._nft_loop, daemon=True, name=f"pw-nft-{node}")]
        for t in self._threads:
            t.start()

    @staticmethod
    def _open_rtnl() -> socket.socket:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((0, RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE))
        return s

    def _rtnl_loop(self) -> None:
        from pyroute2.netlink.rtnl.marshal import MarshalRtnl
        marshal = MarshalRtnl()
        while not self._stop.is_set():
            r, _, _ = select.select([self._sock], [], [], 0.2)
            if not r:
                continue
            try:
                data = self._sock.recv(1 << 20)
            except OSError as e:  # ENOBUFS: notifications lost; say so as an event
                self.emit({"time_ns": time.time_ns(), "node_name": self.node, "kind": "netlink",
                           "action": "overrun", "object": "", "detail": str(e)})
                continue
            now = time.time_ns()
            for msg in marshal.parse(data):
                d = _describe(msg, self._links)
                if d:
                    self.emit({"time_ns": now, "node_name": self.node, "kind": d[0], "action": d[1],
                               "object": d[2], "detail": d[3]})

    def _nft_loop(self) -> None:
        """`nft -a monitor rules` prints `insert|add rule ip filter FORWARD ... drop # handle 29` and
        `delete rule ip filter FORWARD handle 29`: a deletion gets its rule's text back by handle."""
        by_handle: dict[str, str] = {}
        for line in self._nft.stdout:
            now = time.time_ns()
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            text, _, handle = line.partition(" # handle ")
            if line.startswith(("add rule", "insert rule")):
                action, obj = "add", text
                by_handle[handle.strip()] = text
            elif line.startswith("delete rule"):
                h = line.rsplit(" handle ", 1)[-1].strip()
                action, obj = "del", by_handle.pop(h, text)
            else:
                action, obj = "other", text
            self.emit({"time_ns": now, "node_name": self.node, "kind": "rule", "action": action,
                       "object": obj, "detail": line})
            if self._stop.is_set():
                break

    def stop(self) -> None:
        self._stop.set()
        if self._nft.poll() is None:
            self._nft.terminate()
            try:
                self._nft.wait(2)
            except subprocess.TimeoutExpired:
                self._nft.kill()
                self._nft.wait()
        for t in self._threads:
            t.join(2)
        self._sock.close()
