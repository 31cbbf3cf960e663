"""One trace across nodes through their agents: the coordinator.

    nodes   the source's, the destination's, (a Service) its endpoints', from the API
    agents  found per node (transport.find_agents, or direct in tests); connected, greeted
    snapshot every node in parallel; inodes remapped per node (they clash across nodes); merged
    plan    diagnose + plan on the merged bundle; the plan split per node by host
    arm     the source first (its socket decides the source port), then the others, watch-only,
            with a filter that has that port and no ClusterIP (DNAT changes it on the source)
    send    through the source's agent; a drop or an arrival streamed by another node ends the wait
    join    per-node results (each on its own arm clock) joined by packet identity (trace/join.py)
    correlate → the same Trace and verdict as a trace in one kernel

A node whose agent is missing, unreachable or dies mid-trace is `not observed`: its hops are
absent, the verdict says which node, and nothing is guessed for it.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from ..bundle import Bundle
from ..errors import PodpathError, UsageError
from ..netns import OWN_NETNS
from .client import AgentClient
from .protocol import AgentError
from .rules import PER_CHAIN, attach_remote_rules

# Inode remap: node i's inode x becomes (i + 1) << INODE_SHIFT | x. nsfs inodes are 32-bit, so the
# remapped values never clash with each other nor with a real one.
INODE_SHIFT = 32
TOKEN_SEP = "\x1f"  # node and netns in one planning token (a character no netns name holds)
EARLY_STOP_GRACE_S = 0.02  # after another node saw the packet die: a second drop (the reply) may follow
UDP_ARRIVAL_GRACE_S = 0.1  # udp arrived at the destination: a reply is optional


def remap_inode(index: int, ino: int | None) -> int | None:
    return None if not ino else ((index + 1) << INODE_SHIFT) | ino


def merge_bundles(bundles: dict[str, Bundle], inventory) -> tuple[Bundle, dict[str, int]]:
    """One bundle of every node's hosts, each node's inodes moved apart; node -> its index."""
    index = {node: i for i, node in enumerate(sorted(bundles))}
    hosts = []
    for node, b in sorted(bundles.items()):
        for h in b.hosts:
            hosts.append(dataclasses.replace(h, inode=remap_inode(index[node], h.inode)))
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return Bundle(hosts=hosts, inventory=inventory, created=created), index


def remap_events(result, index: int):
    """A node's session with its events' namespaces remapped like its hosts."""
    return dataclasses.replace(result, events=[dataclasses.replace(e, netns=remap_inode(index, e.netns) or 0)
                                               for e in result.events])


def join_nodes(parts: dict, index: dict[str, int], source_node: str):
    """Every node's result (each on its own arm clock, its own inodes) as one session on the source's
    clock, in the merged bundle's inodes; and each node's offset (a node absent: not joined)."""
    from ..trace.join import join

    parts = {n: remap_events(r, index[n]) for n, r in parts.items()}
    joined, offsets = join(parts, source_node)
    return dataclasses.replace(
        joined, attached=[a for r in parts.values() for a in r.attached],
        attach_errors=[f"{n}: {e}" for n, r in parts.items() for e in r.attach_errors],
        lost=sum(r.lost for r in parts.values())), offsets


def within_window(joined, src_index: int, timeout: float):
    """The other nodes' events up to the source's deadline (its send + timeout, on the joined clock):
    the window one kernel's trace observes. They watch until told to stop, a little longer."""
    t = joined.inject.t_first_send_ns
    if t is None:
        return joined
    limit = t + int(timeout * 1e9)
    return dataclasses.replace(joined, events=[e for e in joined.events if e.ts_ns <= limit or not e.netns
                                               or e.netns >> INODE_SHIFT == src_index + 1])


def early_request(inv, src: str, dst: str, nodes: set[str], *, proto, port, size, sport, count: int,
                  timeout: float):
    """The source's session from the API's view alone (no snapshot yet): the flow as diagnose will
    build it, the source pod's namespace left to its agent (by address), and the neighbour entries a
    flannel path can touch (each node's VTEP and bridge address and its own). None when the API's
    view cannot say the flow."""
    from ..diagnose import EPHEMERAL_PORT, build_flow
    from ..probes.events import MAX_NEIGH_ADDRS
    from ..targets.resolve import resolve
    from ..trace.inject import InjectRequest, new_icmp_id
    from ..trace.session import SessionRequest

    skel = Bundle(hosts=[], inventory=inv)
    try:
        s, d = resolve(skel, src), resolve(skel, dst)
        flow = build_flow(s, d, proto, port, size, sport)
    except PodpathError:
        return None
    if not flow.src or not flow.dst:
        return None
    svc = d.service
    # the pods first, then each node's VTEP, bridge and own address; a ClusterIP last (never ARPed:
    # the plan lists it after the 8 it can watch)
    neigh = [flow.src] + (list(svc.endpoints) if svc is not None else [flow.dst])
    for n in inv.nodes:
        if n.name in nodes and n.pod_cidr:
            net = n.pod_cidr.split("/")[0]
            base = net.rsplit(".", 1)[0]
            neigh += [net, f"{base}.1", n.underlay_ip or n.internal_ip]
    neigh.append(flow.dst)
    inj = InjectRequest(netns=None, src=flow.src, dst=flow.dst, proto=flow.proto, dport=flow.dport, size=flow.size,
                        count=count, icmp_id=new_icmp_id() if flow.proto == "icmp" else None,
                        sport=flow.sport if flow.sport and flow.sport != EPHEMERAL_PORT else None)
    return SessionRequest(inject=inj, timeout=timeout,
                          neigh_addrs=[a for a in dict.fromkeys(neigh) if a][:MAX_NEIGH_ADDRS])


def path_pods(inv, early, dst: str) -> list[str]:
    """The pods a flow's packets reach: the source, the destination, a Service's endpoints."""
    ips = [early.inject.src, early.inject.dst]
    svc = next((x for x in inv.services if x.cluster_ip == early.inject.dst), None)
    return list(dict.fromkeys(ips + (list(svc.endpoints) if svc is not None else [])))


def fits(early, armed: dict | None, planned) -> bool:
    """Whether the session armed from the API's view is the one the snapshot's plan wants: the same
    packets from the same namespace, and every neighbour entry the plan watches in the filter."""
    if early is None or armed is None:
        return False
    x, y = early.inject, planned.inject
    return ((x.src, x.dst, x.proto, x.dport, x.size, x.count, x.sport) ==
            (y.src, y.dst, y.proto, y.dport, y.size, y.count, y.sport)
            and armed.get("netns") == y.netns and planned.dst_netns is None
            and set(planned.neigh_addrs) <= set(early.neigh_addrs))


def token(node: str, netns: str | None) -> str:
    return f"{node}{TOKEN_SEP}{netns or ''}"


def untoken(tok: str) -> tuple[str, str]:
    node, _, ns = tok.partition(TOKEN_SEP)
    return node, ns or OWN_NETNS


def plan_per_node(bundle: Bundle, diag, node_of_host: dict[str, str], *, count: int, timeout: float):
    """The plan for the merged bundle, split by node: node -> SessionRequest with that node's
    attach list, netfilter brackets and (the source's) inject, in netns names valid there.
    The hosts' netns are swapped for (node, netns) tokens while planning, so two nodes' namespaces
    (both nodes are netns None: "the one podpath runs in") stay apart."""
    from ..trace.plan import plan

    saved = [(h, h.netns) for h in bundle.hosts]
    try:
        for h in bundle.hosts:
            h.netns = token(node_of_host[h.name], h.netns)
        req, src_host, dst_host = plan(bundle, diag, count=count, timeout=timeout)
    finally:
        for h, ns in saved:
            h.netns = ns
    src_node = node_of_host[src_host.name]
    nodes = dict.fromkeys([src_node] + [untoken(t)[0] for t, _ in req.attach] + list(dict.fromkeys(node_of_host.values())))
    out = {}
    for node in nodes:
        r = dataclasses.replace(req, inject=dataclasses.replace(req.inject), attach=[], nf_plan={},
                                neigh_addrs=list(req.neigh_addrs))
        r.attach = [(untoken(t)[1], dev) for t, dev in req.attach if untoken(t)[0] == node]
        r.nf_plan = {untoken(t)[1]: spec for t, spec in req.nf_plan.items() if untoken(t)[0] == node}
        if node == src_node:
            r.inject.netns = untoken(req.inject.netns)[1]
            r.src_netns = untoken(req.src_netns)[1] if req.src_netns else None
            dn = untoken(req.dst_netns) if req.dst_netns else None
            r.dst_netns = dn[1] if dn and dn[0] == node else None
        else:
            r.watch_only, r.src_netns, r.dst_netns = True, None, None
        out[node] = r
    return out, src_host, dst_host, src_node


def watch_filter(req, armed_inject: dict, *, service: bool) -> dict:
    """What the other nodes match: the source pod's flow, with the source port the source's socket
    got. Through a Service the destination address (and port) change on the source node (DNAT), so
    there they are left open: any daddr, from this pod, this protocol and source port (or icmp id)."""
    ir = req.inject
    ported = ir.proto in ("tcp", "udp")
    return {"saddr": ir.src, "daddr": None if service else ir.dst, "proto": ir.proto,
            "sport": armed_inject.get("sport") if ported else None,
            "dport": ir.dport if ported and not service else None,
            "icmp_id": (armed_inject.get("icmp_id") or ir.icmp_id) if ir.proto == "icmp" else None,
            "bidir": True, "neigh_addrs": list(req.neigh_addrs)}


def involved_nodes(inv, src: str, dst: str) -> tuple[str | None, set[str], bool]:
    """(source node, every node the flow can end on, dst is a Service) from the API's inventory."""
    def pod(target: str):
        t = target.split("/", 1)[-1] if "/" in target and not target.startswith("svc/") else target
        ns = target.split("/", 1)[0] if "/" in target else None
        return next((p for p in inv.pods if (p.name == t and (ns is None or p.namespace == ns)) or p.ip == target), None)

    def node_of_ip(ip: str) -> str | None:  # a pod the API listed, else the node whose pod CIDR holds it
        p = next((p for p in inv.pods if p.ip == ip and p.node), None)
        if p is not None:
            return p.node
        n = next((n for n in inv.nodes if ip in (n.internal_ip, n.underlay_ip) or
                  (n.pod_cidr and _in(ip, n.pod_cidr))), None)
        return n.name if n is not None else None

    s = pod(src)
    ends: set[str] = set()
    if dst.startswith("svc/"):
        ns, _, rest = dst[4:].partition("/")
        name = rest.split(":")[0]
        svc = next((x for x in inv.services if (x.namespace, x.name) == (ns, name)), None)
    else:
        svc = next((x for x in inv.services if x.cluster_ip == dst), None)
        d = pod(dst)
        if d is not None and d.node:
            ends.add(d.node)
        elif svc is None:
            ends.add(node_of_ip(dst))
    if svc is not None:
        ends |= {node_of_ip(ip) for ip in svc.endpoints}
    return (s.node if s is not None else None), ends - {None}, dst.startswith("svc/") or svc is not None


def _in(ip: str, cidr: str) -> bool:
    import ipaddress
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


@dataclasses.dataclass
class NotObserved:
    node: str
    why: str


class Coordinator:
    """One trace through agents. find(nodes) -> {node: opener()} (an opener returns a connected
    socket): transport.find_agents + open_agent on a cluster, direct() in the lab tests."""

    def __init__(self, kube, find: Callable[[set[str]], dict[str, Callable]], progress=None) -> None:
        self.kube = kube
        self.find = find
        self.say = progress or (lambda _m: None)
        self.clients: dict[str, AgentClient] = {}
        self.missing: dict[str, str] = {}
        self.timings: dict[str, float] = {}
        self._events: dict[str, list] = {}
        self._ended = threading.Event()  # another node saw the packet end: cut the source's wait
        self._watch = None

    # -- agents ---------------------------------------------------------------------------------

    def connect(self, nodes: set[str], first: dict | None = None) -> dict[str, Future]:
        """Connect to (and greet) every node's agent at once; each gets `first` as soon as it has
        answered hello, without waiting for the others: node -> that request's answer (a future)."""
        openers = self.find(set(nodes))
        for n in nodes - set(openers):
            self.missing[n] = "no podpath agent found on it"
        sent: dict[str, Future] = {}

        def one(node: str):
            try:
                c = AgentClient.connect(openers[node](), node, self._on_event)
            except (PodpathError, OSError, TimeoutError) as e:
                if "version mismatch" in str(e):
                    raise
                return node, str(e)
            if first is not None:
                sent[node] = c.request(first)
            return node, c

        todo = [n for n in nodes if n in openers]
        with ThreadPoolExecutor(max(1, len(todo)), thread_name_prefix="podpath-connect") as ex:
            for node, c in ex.map(one, todo):
                if isinstance(c, AgentClient):
                    self.clients[node] = c
                else:
                    self.missing[node] = c
        return sent

    def _lost(self, node: str, e: Exception) -> None:
        c = self.clients.pop(node, None)
        self.missing[node] = str(e).removeprefix(f"agent on {node}: ")
        if c is not None:
            c.close()

    def _all(self, make: Callable[[str], dict], nodes, timeout: float = 30.0) -> dict[str, dict]:
        """The same request to several agents at once; an agent that fails is not observed."""
        futs = {n: self.clients[n].request(make(n)) for n in nodes if n in self.clients}
        out = {}
        for n, f in futs.items():
            try:
                out[n] = f.result(timeout)
            except (AgentError, TimeoutError) as e:
                self._lost(n, e if str(e) else AgentError(f"no answer within {timeout:g} s"))
        return out

    def _arm(self, sreq, src_node: str, service: bool, pods=()) -> dict[str, dict]:
        """Arm the source (its socket gives the source port), then every other node watch-only with a
        filter holding that port; node -> its `armed` answer. The probes load in the background, and
        attach on the devices of `pods` (addresses) and, across nodes, the VXLAN device and uplink."""
        self.say(f"arming {src_node} (source)…")
        pre = {"pods": list(pods), "cross": len(self.clients) > 1} if pods else None
        armed = self._all(lambda n: {"type": "arm", "session": sreq.to_dict(), "preattach": pre}, [src_node])
        if src_node not in armed or armed[src_node]["inject"].get("error"):
            return armed
        flt = watch_filter(sreq, armed[src_node]["inject"], service=service)
        watch = dataclasses.replace(sreq, inject=dataclasses.replace(sreq.inject, netns=None, payload_hex=None),
                                    attach=[], nf_plan={}, src_netns=None, dst_netns=None, watch_only=True,
                                    filter=flt)
        others = [n for n in self.clients if n != src_node]
        if others:
            self.say(f"arming {', '.join(sorted(others))}…")
            armed.update(self._all(lambda n: {"type": "arm", "session": watch.to_dict(), "preattach": pre}, others))
        return armed

    def _on_event(self, node: str, ev: dict) -> None:
        self._events.setdefault(node, []).append(ev)
        w = self._watch
        if w is None or self._ended.is_set():
            return
        if ev["kind"] == "kfree_skb":
            threading.Timer(EARLY_STOP_GRACE_S, self._ended.set).start()
        elif (w["udp_arrival"] and node == w["dst_node"] and ev["kind"] == "tc" and ev["point"] == "ingress"
              and ev["netns"] == w["dst_ino"] and "reply" not in ev["flags"]):
            threading.Timer(UDP_ARRIVAL_GRACE_S, self._ended.set).start()

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        self.clients.clear()

    # -- the trace ------------------------------------------------------------------------------

    def trace(self, src: str, dst: str, *, proto=None, port=None, size=None, count: int = 1, timeout: float = 1.0,
              payload: bytes | None = None, expect_reply: bool = False, sport=None, on_verdict=None,
              inventory=None, nftrace: bool = False):
        from ..diagnose import diagnose
        from ..kube import read_inventory
        from ..trace.correlate import correlate
        from ..trace.session import SessionResult

        t0 = time.perf_counter()
        # CLOCK_MONOTONIC (every process's) at the start: a caller that timed the process can place it
        self.timings.setdefault("started_monotonic_s", time.monotonic())
        try:
            if inventory is None:
                inventory = read_inventory(self.kube, targets=(src, dst))
                self.timings["inventory_ms"] = (time.perf_counter() - t0) * 1000
            inv = inventory
            src_node, ends, service = involved_nodes(inv, src, dst)
            if src_node is None:
                raise UsageError(f"'{src}' is not a pod the API knows (or has no node yet); trace from a running pod")
            nodes = {src_node} | ends
            self.say(f"reaching the agents on {', '.join(sorted(nodes))}…")
            # each node's snapshot is asked for as soon as its agent has answered hello; the merged
            # bundle's inventory is this API read's, so the agents read only the names they need
            t_conn = time.perf_counter()
            snap_futs = self.connect(nodes, {"type": "snapshot", "targets": [src, dst], "inventory": False,
                                             "rules": PER_CHAIN})
            self.timings["hello_ms"] = (time.perf_counter() - t_conn) * 1000
            if src_node not in self.clients:
                raise AgentError(f"cannot trace from {src}: the agent on its node {src_node} is not reachable "
                                 f"({self.missing.get(src_node)}); check `kubectl -n podpath get pods -o wide`")
            self.timings["connect_ms"] = (time.perf_counter() - t0) * 1000
            self.say(f"snapshotting {len(self.clients)} node(s) while the probes load…")
            # The probes load (the slow part of arming) while the nodes are read: armed from the API's
            # view of the flow, kept if the snapshot's plan agrees, else re-armed from the plan.
            early = early_request(inv, src, dst, nodes, proto=proto, port=port, size=size, sport=sport,
                                  count=count, timeout=timeout)
            armed_early: dict[str, dict] = {}
            if early is not None:
                early.inject.payload_hex = payload.hex() if payload is not None else None
                early.expect_reply, early.nftrace = expect_reply, nftrace
                armed_early = self._arm(early, src_node, service, pods=path_pods(inv, early, dst))
            snaps = {}
            for n, f in snap_futs.items():
                try:
                    snaps[n] = f.result(60)
                except (AgentError, TimeoutError) as e:
                    self._lost(n, e if str(e) else AgentError("no snapshot within 60 s"))
            if src_node not in snaps:
                raise AgentError(f"the agent on {src_node} failed its snapshot: {self.missing.get(src_node)}")
            t_bundles = time.perf_counter()
            self.timings["agent_snapshot_ms"] = max((m.get("timings") or {}).get("total_ms") or 0 for m in snaps.values())
            bundles = {n: Bundle.from_json(_json(m["bundle"])) for n, m in snaps.items()}
            for n, m in snaps.items():  # big tables: read a chain at a time through the node's agent
                attach_remote_rules(bundles[n], m.get("live_rules"), self.clients.get(n), n)
            inv.local_node = None
            merged, index = merge_bundles(bundles, inv)
            node_of_host = {h.name: n for n, b in bundles.items() for h in b.hosts}
            t_snap = time.perf_counter()
            self.timings["snapshot_ms"] = (t_snap - t0) * 1000
            self.timings["bundles_ms"] = (t_snap - t_bundles) * 1000
            diag = diagnose(merged, src, dst, proto=proto, port=port, size=size, sport=sport)
            reqs, src_host, dst_host, src_node = plan_per_node(merged, diag, node_of_host, count=count,
                                                                 timeout=timeout)
            sreq = reqs[src_node]
            sreq.inject.payload_hex = payload.hex() if payload is not None else None
            sreq.expect_reply, sreq.nftrace = expect_reply, nftrace
            t_plan = time.perf_counter()
            self.timings["diagnose_ms"] = (t_plan - t_snap) * 1000
            if armed_early and not fits(early, armed_early.get(src_node), sreq):
                self.say("the snapshot's path differs from the API's: re-arming…")
                self._all(lambda n: {"type": "stop"}, list(armed_early))
                armed_early = {}
            if not armed_early:
                armed_early = self._arm(sreq, src_node, service)
            if src_node not in armed_early:
                raise AgentError(f"the agent on {src_node} could not arm: {self.missing.get(src_node)}")
            self.timings["armed_ms"] = (time.perf_counter() - t0) * 1000
            self.say(f"attaching on {', '.join(sorted(armed_early))}…")
            t_attach = time.perf_counter()
            self._all(lambda n: {"type": "attach", "attach": [list(x) for x in reqs[n].attach] if n in reqs else [],
                                 "nf_plan": reqs[n].nf_plan if n in reqs else {}}, list(armed_early))
            if src_node not in self.clients:
                raise AgentError(f"the agent on {src_node} could not attach: {self.missing.get(src_node)}")
            others = [n for n in armed_early if n != src_node and n in self.clients]
            dst_node = node_of_host.get(dst_host.name) if dst_host is not None else None
            dst_ino = next((h.inode for h in bundles.get(dst_node, Bundle()).hosts if dst_host is not None
                            and h.name == dst_host.name), None)
            self._watch = {"dst_node": dst_node, "dst_ino": dst_ino,
                           "udp_arrival": sreq.inject.proto == "udp" and not expect_reply}
            self.timings["attach_wait_ms"] = (time.perf_counter() - t_attach) * 1000
            self.timings["arm_ms"] = (time.perf_counter() - t_plan) * 1000
            self.say(f"sending {sreq.inject.count} {sreq.inject.proto} packet(s) from {src_node}…")
            t_send = time.perf_counter()
            send = self.clients[src_node].request({"type": "send"})
            while not send.done() and not self._ended.wait(0.005):
                pass
            if not send.done():  # another node saw the end: the source stops waiting
                self.clients[src_node].request({"type": "stop"})
            try:
                src_result = send.result(timeout + 5)
            except (AgentError, TimeoutError) as e:
                self._lost(src_node, e)
                raise AgentError(f"the agent on the source's node {src_node} was lost mid-trace: "
                                 f"{self.missing[src_node]}") from None
            results = {src_node: src_result}
            t_stop = time.perf_counter()
            self.timings["source_result_ms"] = (t_stop - t_send) * 1000
            results.update(self._all(lambda n: {"type": "stop"}, [n for n in others if n in self.clients],
                                     timeout=5.0))
            self.timings["send_ms"] = (time.perf_counter() - t_send) * 1000
            self.timings["others_stop_ms"] = (time.perf_counter() - t_stop) * 1000
            t_corr = time.perf_counter()
            parts = {n: SessionResult.from_dict(m["result"]) for n, m in results.items()}
            joined, offsets = join_nodes(parts, index, src_node)
            joined = within_window(joined, index[src_node], timeout)
            joined.observed_nodes = observed_nodes(parts, offsets)
            t = correlate(session=joined, bundle=merged, diagnosis=diag, src_host=src_host, dst_host=dst_host,
                          src=src, dst=dst)
            self.timings["correlate_ms"] = (time.perf_counter() - t_corr) * 1000
            self._not_observed(t, nodes, parts, offsets)
            self._confirm_by_counters(t, merged, node_of_host)
            self._apply_nftrace(t, merged, node_of_host, parts)
            t.timings.update(self.timings)
            t.timings["verdict_ms"] = (time.perf_counter() - t0) * 1000
            t.timings["offsets_ns"] = offsets
            if on_verdict is not None:
                on_verdict(t)
            return t
        finally:
            self.close()

    def _confirm_by_counters(self, t, merged, node_of_host: dict) -> None:
        """A netfilter drop: the agent of the node that dropped it re-reads that namespace's rule
        counters (what trace() does in process); the verdict stands without them."""
        from ..trace.correlate import apply_counters, wants_counters

        v = t.verdict
        host, node = _verdict_place(merged, v, node_of_host) if wants_counters(v) else (None, None)
        if node not in self.clients:
            return
        t0 = time.perf_counter()
        try:
            m = self.clients[node].request({"type": "counters", "host": host.name}).result(10)
            apply_counters(v, host, Bundle.from_json(_json(m["bundle"])).hosts[0])
        except (AgentError, TimeoutError) as e:
            v.message += f"; rule counters not re-read: {e or 'no answer within 10 s'}"
        self.timings["counters_ms"] = (time.perf_counter() - t0) * 1000

    @staticmethod
    def _apply_nftrace(t, merged, node_of_host: dict, parts: dict) -> None:
        """--nftrace: the lines of the node the verdict points at (namespace names are that node's;
        every node's own is the same /proc/self/ns/net)."""
        from ..trace.correlate import apply_nftrace

        _host, node = _verdict_place(merged, t.verdict, node_of_host)
        lines = parts[node].nftrace if node in parts else []
        if lines:
            apply_nftrace(t.verdict, merged, lines)

    def _not_observed(self, t, nodes: set[str], parts: dict, offsets: dict) -> None:
        """Say which nodes the verdict could not see, and why; never a guess for them."""
        gone = {n: why for n, why in self.missing.items() if n in nodes}
        for n in set(parts) - set(observed_nodes(parts, offsets)):  # it saw packets, none joined the others'
            gone.setdefault(n, "its events share no packet with the source's (not joined)")
        t.not_observed = [{"node": n, "why": why} for n, why in sorted(gone.items())]
        if gone:
            names = ", ".join(sorted(gone))
            v = t.verdict
            v.message = (v.message + "; " if v.message else "") + \
                f"not observed: {names} ({'; '.join(f'{n}: {w}' for n, w in sorted(gone.items()))})"
            if v.status == "lost" and v.node in gone:
                v.node = v.location = v.device = None  # nothing seen there: say so, don't place it


def _verdict_place(merged, v, node_of_host: dict) -> tuple:
    """(the merged bundle's host the verdict points at, the node whose agent holds it), or Nones."""
    from ..trace.correlate import verdict_host

    host = verdict_host(merged, v)
    return host, (node_of_host.get(host.name) if host is not None else None)


def observed_nodes(parts: dict, offsets: dict) -> list[str]:
    """The nodes whose agent watched to the end and whose events joined the source's (or that saw
    nothing at all: their silence is what they observed)."""
    from ..trace.join import packet_key

    return sorted(n for n, r in parts.items() if n in offsets or not any(packet_key(e) for e in r.events))


def _json(obj) -> str:
    import json
    return json.dumps(obj)


def through_agents(source, src: str, dst: str, *, progress=None, **flow):
    """trace() through the source's agents (source.agents: the finder); None when the source pod's
    node has no agent at all (then the caller traces this node in process, as without agents)."""
    from ..kube import read_inventory

    say = progress or (lambda _m: None)
    t0, started = time.perf_counter(), time.monotonic()
    inv = read_inventory(source.kube, targets=(src, dst))
    t_inv = time.perf_counter()
    src_node, ends, _svc = involved_nodes(inv, src, dst)
    found = source.agents({src_node} | ends) if src_node is not None else {}  # one look-up for every node
    if src_node not in found:
        say(f"no podpath agent found on {src_node or 'the source node'}: tracing this node in process")
        return None
    c = Coordinator(source.kube, lambda nodes: {n: o for n, o in found.items() if n in nodes}, say)
    c.timings.update(started_monotonic_s=started, inventory_ms=(t_inv - t0) * 1000,
                     agents_ms=(time.perf_counter() - t_inv) * 1000)
    return c.trace(src, dst, inventory=inv, **flow)
