"""The watch loop: every `interval` s, the kernel's drop counters become per-key deltas, the
samples are decoded, the node counters read, and the changes that arrived are written, each to
its node's directory (or, in an agent, handed to `sink` to stream to the coordinator, which
writes them). Drops outside the scope (another lab, the machine) are left out."""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from pathlib import Path

from .changes import ChangeWatcher
from .counters import node_counters, softnet
from .kernel import PROTO_NAMES, DropCounter, DropKey, monotonic_to_unix_ns
from .names import Devices, Kallsyms, drop_reasons
from .scope import Scope
from .store import Segments

TABLES = ("drops", "samples", "counters", "changes")


class Recorder:
    def __init__(self, scope: Scope, out: str | Path, *, samples_per_sec: int = 1000, interval: float = 1.0,
                 max_bytes: int = 64 << 20, max_seconds: float = 600, prometheus=None, kube=None,
                 sink=None) -> None:
        # sink(tables): each tick's rows as {table: {column: [values]}} instead of files (an agent's
        # watch: the coordinator writes them); out is then unused
        self.scope, self.out, self.interval, self.sink = scope, Path(out or "."), interval, sink
        self.reasons = drop_reasons()
        self.syms = Kallsyms()
        self.devices = Devices(scope.places)
        self.prometheus = prometheus
        self._seg = {(n, t): Segments(self.out / n, t, max_bytes=max_bytes, max_seconds=max_seconds)
                     for n in scope.nodes for t in TABLES} if sink is None else {}
        self._prev: dict[DropKey, tuple[int, int]] = {}
        self._changes: queue.SimpleQueue = queue.SimpleQueue()
        self._rules: dict[str, tuple[str, set[str]]] = {}
        self._stop = threading.Event()
        self.totals = {"packets": 0, "samples": 0, "out_of_scope": 0}
        self.final_stats: dict[str, int] = {}
        self.kernel = DropCounter(samples_per_sec)
        self._watchers = []
        try:
            self._watchers = [ChangeWatcher(n, ns, self._changes.put) for n, ns in scope.nodes.items()]
            if kube is not None:  # EndpointSlice changes, asked from the first node's namespace
                from .endpoints import EndpointSliceWatcher
                ep = EndpointSliceWatcher(kube, list(scope.nodes), self._changes.put, next(iter(scope.nodes.values())))
                self._watchers.append(ep)
                ep.ready.wait(10)
        except BaseException:
            self.close()
            raise
        self._mono_to_unix = monotonic_to_unix_ns()

    def _place_cols(self, k: DropKey, place) -> dict:
        return {"node_name": place.node, "pod_name": place.pod, "namespace": place.namespace, "netns": k.netns,
                "ifindex": k.ifindex, "interface": self.devices.name(k.netns, k.ifindex),
                "drop_reason_desc": self.reasons.get(k.reason, str(k.reason)), "location": k.location,
                "location_symbol": self.syms(k.location), "ethertype": k.l3_proto,
                "l4_protocol": PROTO_NAMES.get(k.l4_proto, str(k.l4_proto)) if k.l4_proto else None,
                "ip_source": k.saddr, "ip_destination": k.daddr, "source_port": k.sport, "destination_port": k.dport}

    def _rows(self) -> dict[tuple[str, str], dict[str, list]]:
        return defaultdict(lambda: defaultdict(list))

    def tick(self, interval_s: float) -> None:
        now = time.time_ns()
        tables = self._rows()
        cur = self.kernel.read()
        for k, (p, b) in cur.items():
            pp, pb = self._prev.get(k, (0, 0))
            if p == pp:
                continue
            place = self.scope.keep(k.netns)
            if place is None:
                self.totals["out_of_scope"] += p - pp
                continue
            row = tables[(place.node, "drops")]
            row["time"].append(now)
            row["interval_s"].append(interval_s)
            cols = self._place_cols(k, place)
            for c, v in cols.items():
                row[c].append(v)
            row["packets"].append(p - pp)
            row["bytes"].append(b - pb)
            self.totals["packets"] += p - pp
            if self.prometheus is not None:
                self.prometheus.add(cols, p - pp)
        self._prev = cur
        for s in self.kernel.poll(0):
            place = self.scope.keep(s.key.netns)
            if place is None:
                continue
            row = tables[(place.node, "samples")]
            row["time"].append(s.ts_ns + self._mono_to_unix)
            for c, v in self._place_cols(s.key, place).items():
                row[c].append(v)
            row["length"].append(s.len)
            row["mark"].append(s.mark)
            row["cpu"].append(s.cpu)
            self.totals["samples"] += 1
        sn = softnet()
        stats = self.kernel.stats()
        for node, netns in self.scope.nodes.items():
            rows, ruleset_hash, text = node_counters(netns)
            rows += sn + [("watch", k, "", v) for k, v in stats.items()]
            c = tables[(node, "counters")]
            for g, n, o, v in rows:
                c["time"].append(now)
                c["node_name"].append(node)
                c["group"].append(g)
                c["name"].append(n)
                c["object"].append(o)
                c["value"].append(v)
            self._ruleset_change(node, ruleset_hash, set(text), now)
        while True:
            try:
                e = self._changes.get_nowait()
            except queue.Empty:
                break
            ch = tables[(e["node_name"], "changes")]
            ch["time"].append(e["time_ns"])
            for f in ("node_name", "kind", "action", "object", "detail"):
                ch[f].append(e[f])
        if self.sink is not None:
            self.sink({t: dict(rows) for (node, t), rows in tables.items() if node in self.scope.nodes})
        for (node, table), rows in tables.items():
            if (node, table) in self._seg:
                self._seg[(node, table)].append(dict(rows))

    def _ruleset_change(self, node: str, h: str, text: set[str], now: int) -> None:
        prev = self._rules.get(node)
        self._rules[node] = (h, text)
        if prev is None or prev[0] == h:
            return
        for action, lines in (("add", text - prev[1]), ("del", prev[1] - text)):
            for line in sorted(lines):
                self._changes.put({"time_ns": now, "node_name": node, "kind": "ruleset", "action": action,
                                   "object": line, "detail": f"hash {prev[0]} -> {h}"})

    def run(self, duration: float | None) -> None:
        start = last = time.monotonic()
        while not self._stop.is_set():
            left = None if duration is None else start + duration - time.monotonic()
            if left is not None and left <= 0:
                break
            # samples are drained often so the ring buffer does not fill between ticks
            self.kernel._rb.poll(int(min(self.interval, left if left is not None else self.interval) * 200))
            t = time.monotonic()
            if t - last >= self.interval:
                self.tick(t - last)
                last = t
        self.tick(time.monotonic() - last)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        for w in self._watchers:
            w.stop()
        self._watchers = []
        if self.kernel._obj is not None:
            self.final_stats = self.kernel.stats()
        self.kernel.close()
        for s in self._seg.values():
            s.close()
