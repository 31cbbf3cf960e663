"""Every catalog fault, found by podpath run inside the blamed node's namespace with the lab's
kubeconfig and no --lab: exactly as an operator runs it on that node of a real cluster.

The node sees only itself and its pods; the other node is known from the stand-in API server's
Node objects. A fault on the source's node is diagnosed along the flow from there; a fault on the
destination's node along the flow as it arrives from the source's node (modelled from the
annotations); a Service or a source elsewhere, by the node-wide checks plus the flow when it can
start there.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import ROOT_BPF_LAB, bpf_lab, flow_args, podpath_on_node  # noqa: E402

from podpath.tracer.lab.faults import FAULTS  # noqa: E402

pytestmark = ROOT_BPF_LAB


@pytest.fixture(scope="module")
def lab(request):
    return bpf_lab(request, "nc")


def on_node(lab, node: str, *args: str):
    return podpath_on_node(lab, node, *args, "--kubeconfig", str(lab.kubeconfig), "-o", "json")


def nodes_of(lab, target: str) -> set[str]:
    """The nodes a flow's end is on: a pod's, or every endpoint's of a Service."""
    inv = lab.inventory()
    if target.startswith("svc/"):
        ns, name = target[4:].split(":")[0].split("/")
        svc = next(s for s in inv.services if (s.namespace, s.name) == (ns, name))
        return {p.node for p in inv.pods if p.ip in svc.endpoints}
    return {p.node for p in inv.pods if p.name == target}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_found_on_its_node(lab, name):
    fault = FAULTS[name]
    lab.inject(name)
    try:
        ends = nodes_of(lab, fault.flow.src) | nodes_of(lab, fault.flow.dst)
        runs = []
        if fault.node in ends:  # the flow starts here, or arrives here
            runs.append(on_node(lab, fault.node, "diagnose", *flow_args(fault.flow)))
        runs.append(on_node(lab, fault.node, "diagnose"))  # node-wide
    finally:
        lab.clear(name)
    found = set()
    for r in runs:
        assert "Traceback" not in r.stderr, r.stderr
        assert r.returncode in (0, 1), r.stderr
        found |= {(f["cause"], f["node"], f["location"]) for f in json.loads(r.stdout)["findings"]
                  if f["severity"] == "error"}
    assert (fault.cause, fault.node, fault.location) in found, \
        f"{name}: want {fault.cause} at {fault.node}/{fault.location} on {fault.node} alone, got {sorted(found)}"
