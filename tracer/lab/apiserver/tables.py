"""meta.k8s.io/v1 Table responses (`Accept: ...;as=Table`): the columns `kubectl get` prints.

Columns and priority as the real server's printers (priority 1 = shown with `-o wide`).
"""

from __future__ import annotations

import datetime
from typing import Any, Callable

Col = tuple[str, str, int, Callable[[dict], Any]]  # name, type, priority, cell


def age(o: dict, now: datetime.datetime | None = None) -> str:
    ts = o["metadata"].get("creationTimestamp")
    if not ts:
        return "<unknown>"
    t = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    s = int(((now or datetime.datetime.now(datetime.timezone.utc)) - t).total_seconds())
    if s < 120:
        return f"{max(s, 0)}s"
    if s < 3600 * 3:
        return f"{s // 60}m"
    if s < 86400 * 2:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def _pod_ready(o: dict) -> str:
    cs = o["status"].get("containerStatuses") or []
    return f"{sum(1 for c in cs if c.get('ready'))}/{len(o['spec'].get('containers') or [])}"


def _ports(o: dict) -> str:
    return ",".join(f"{p['port']}/{p.get('protocol', 'TCP')}" for p in o["spec"].get("ports") or []) or "<none>"


def _addr(o: dict, kind: str) -> str:
    return next((a["address"] for a in o["status"].get("addresses") or [] if a["type"] == kind), "<none>")


def _slice_endpoints(o: dict) -> str:
    addrs = [a for e in o.get("endpoints") or [] for a in e.get("addresses") or []]
    if not addrs:
        return "<unset>"
    return ",".join(addrs[:3]) + (f" + {len(addrs) - 3} more..." if len(addrs) > 3 else "")


def _selector(o: dict) -> str:
    sel = o["spec"].get("selector") or {}
    return ",".join(f"{k}={v}" for k, v in sel.items()) or "<none>"


COLUMNS: dict[str, list[Col]] = {
    "Pod": [
        ("Name", "string", 0, lambda o: o["metadata"]["name"]),
        ("Ready", "string", 0, _pod_ready),
        ("Status", "string", 0, lambda o: o["status"].get("phase", "")),
        ("Restarts", "string", 0, lambda o: str(sum(c.get("restartCount", 0)
                                                     for c in o["status"].get("containerStatuses") or []))),
        ("Age", "string", 0, age),
        ("IP", "string", 1, lambda o: o["status"].get("podIP", "<none>")),
        ("Node", "string", 1, lambda o: o["spec"].get("nodeName", "<none>")),
        ("Nominated Node", "string", 1, lambda o: "<none>"),
        ("Readiness Gates", "string", 1, lambda o: "<none>"),
    ],
    "Node": [
        ("Name", "string", 0, lambda o: o["metadata"]["name"]),
        ("Status", "string", 0, lambda o: "Ready" if any(c["type"] == "Ready" and c["status"] == "True"
                                                         for c in o["status"].get("conditions") or []) else "NotReady"),
        ("Roles", "string", 0, lambda o: "<none>"),
        ("Age", "string", 0, age),
        ("Version", "string", 0, lambda o: o["status"]["nodeInfo"]["kubeletVersion"]),
        ("Internal-IP", "string", 1, lambda o: _addr(o, "InternalIP")),
        ("External-IP", "string", 1, lambda o: _addr(o, "ExternalIP")),
        ("OS-Image", "string", 1, lambda o: o["status"]["nodeInfo"]["osImage"]),
        ("Kernel-Version", "string", 1, lambda o: o["status"]["nodeInfo"]["kernelVersion"]),
        ("Container-Runtime", "string", 1, lambda o: o["status"]["nodeInfo"]["containerRuntimeVersion"]),
    ],
    "Service": [
        ("Name", "string", 0, lambda o: o["metadata"]["name"]),
        ("Type", "string", 0, lambda o: o["spec"].get("type", "ClusterIP")),
        ("Cluster-IP", "string", 0, lambda o: o["spec"].get("clusterIP", "<none>")),
        ("External-IP", "string", 0, lambda o: "<none>"),
        ("Port(s)", "string", 0, _ports),
        ("Age", "string", 0, age),
        ("Selector", "string", 1, _selector),
    ],
    "EndpointSlice": [
        ("Name", "string", 0, lambda o: o["metadata"]["name"]),
        ("AddressType", "string", 0, lambda o: o["addressType"]),
        ("Ports", "string", 0, lambda o: ",".join(str(p.get("port")) for p in o.get("ports") or []) or "<unset>"),
        ("Endpoints", "string", 0, _slice_endpoints),
        ("Age", "string", 0, age),
    ],
    "DaemonSet": [
        ("Name", "string", 0, lambda o: o["metadata"]["name"]),
        ("Desired", "integer", 0, lambda o: o["status"].get("desiredNumberScheduled", 0)),
        ("Current", "integer", 0, lambda o: o["status"].get("currentNumberScheduled", 0)),
        ("Ready", "integer", 0, lambda o: o["status"].get("numberReady", 0)),
        ("Up-to-date", "integer", 0, lambda o: o["status"].get("updatedNumberScheduled", 0)),
        ("Available", "integer", 0, lambda o: o["status"].get("numberAvailable", 0)),
        ("Node Selector", "string", 0, lambda o: ",".join(
            f"{k}={v}" for k, v in (o["spec"]["template"]["spec"].get("nodeSelector") or {}).items()) or "<none>"),
        ("Age", "string", 0, age),
        ("Containers", "string", 1, lambda o: ",".join(c["name"] for c in o["spec"]["template"]["spec"]["containers"])),
        ("Images", "string", 1, lambda o: ",".join(c["image"] for c in o["spec"]["template"]["spec"]["containers"])),
        ("Selector", "string", 1, lambda o: ",".join(f"{k}={v}" for k, v in o["spec"]["selector"]["matchLabels"].items())),
    ],
    "Namespace": [
        ("Name", "string", 0, lambda o: o["metadata"]["name"]),
        ("Status", "string", 0, lambda o: o["status"]["phase"]),
        ("Age", "string", 0, age),
    ],
    "ConfigMap": [
        ("Name", "string", 0, lambda o: o["metadata"]["name"]),
        ("Data", "integer", 0, lambda o: len(o.get("data") or {})),
        ("Age", "string", 0, age),
    ],
}


def table(kind: str, items: list[dict], list_meta: dict, include_object: str = "PartialObjectMetadata") -> dict:
    cols = COLUMNS[kind]
    rows = []
    for o in items:
        row: dict[str, Any] = {"cells": [c[3](o) for c in cols]}
        if include_object == "Object":
            row["object"] = o
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": o["metadata"]}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
            "columnDefinitions": [{"name": n, "type": t, "format": "name" if n == "Name" else "",
                                   "description": n, "priority": p} for n, t, p, _ in cols],
            "rows": rows}
