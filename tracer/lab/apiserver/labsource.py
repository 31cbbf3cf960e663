"""What the lab adds to its inventory for the API: pod labels, Service selectors, timestamps."""

from __future__ import annotations

import datetime

from ..topology import PODS, SERVICES
from .objects import Labels


def lab_labels() -> Labels:
    """The lab's pod labels and Service selectors: each Service selects the pods it lists."""
    pods: dict[str, dict[str, str]] = {}
    sel: dict[str, dict[str, str]] = {}
    for s in SERVICES:
        label = {"k8s-app": "kube-dns"} if s.name == "kube-dns" else {"app": s.name}
        sel[f"{s.namespace}/{s.name}"] = label
        for p in PODS:
            if p.name in s.endpoints:
                pods.setdefault(f"{p.namespace}/{p.name}", {}).update(label)
    for p in PODS:
        pods.setdefault(f"{p.namespace}/{p.name}", {"app": p.name})
    return Labels(pods=pods, selectors=sel)


def rfc3339(iso: str) -> str:
    try:
        t = datetime.datetime.fromisoformat(iso)
    except ValueError:
        t = datetime.datetime.now(datetime.timezone.utc)
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
