"""Every fault of the lab catalog, traced with real BPF: the verdict names the status, the cause,
where (node, location, device), the netfilter hook and the kernel's drop reason where there is
one, and agrees with `podpath diagnose` on the same snapshot, or the difference is explained
below (root only; one lab for the module, torn down even when tests fail).
"""

from __future__ import annotations


import pytest
from conftest import ROOT_BPF_LAB, bpf_lab, wait_no_programs

pytestmark = ROOT_BPF_LAB

from podpath.tracer.diagnose import diagnose  # noqa: E402
from podpath.tracer.lab import FAULTS  # noqa: E402
from podpath.tracer.lab.source import lab_snapshot  # noqa: E402
from podpath.tracer.trace import trace  # noqa: E402
from podpath.tracer.lab.source import LabSource  # noqa: E402

# fault -> (status, kernel drop reason or None, netfilter hook or None)
EXPECTED = {
    "pod-route-missing": ("unsent", None, None),
    "host-route-missing": ("misdelivered", "IP_INADDRERRORS", None),  # sent to the underlay router
    "cni-route-missing": ("misdelivered", "IP_INADDRERRORS", None),
    "forward-drop": ("dropped", "NETFILTER_DROP", "forward"),
    "vxlan-blocked": ("dropped", "NETFILTER_DROP", "input"),
    "svc-no-endpoints": ("rejected", "NETFILTER_DROP", "forward"),
    "svc-stale-endpoint": ("lost", None, "prerouting"),  # DNATed there to a gone pod: ARP never answers
    "svc-reply-dropped": ("dropped", "NETFILTER_DROP", "forward"),  # the reply, on node-a
    "dns-blocked": ("dropped", "NETFILTER_DROP", "forward"),
    "coredns-down": ("dropped", "NO_SOCKET", None),
    "dns-no-endpoints": ("rejected", "NETFILTER_DROP", "forward"),
    # coredns' veth has no carrier: cni0 drops or floods the query (OTHERHOST in another pod)
    "dns-pod-down": (("misdelivered", "dropped", "lost"), ("OTHERHOST", None, "NO_CARRIER", "NOT_SPECIFIED"), None),
    "dns-reply-dropped": ("dropped", "NETFILTER_DROP", "forward"),  # the answer, on node-a
    # conntrack (not the rules) sends the client's port to a gone CoreDNS pod: ARP never answers
    "dns-stale-conntrack": ("lost", None, "prerouting"),
    "no-listener": ("rejected", None, None),
    "pod-eth0-down": ("misdelivered", "OTHERHOST", None),  # cni0 floods it to coredns
    "flannel-down": ("dropped", "NO_SOCKET", None),  # no VXLAN socket on node-b's UDP 8472
    "neigh-wrong-mac": ("dropped", "NO_TX_TARGET", None),
    "vtep-mac-stale": ("misdelivered", "OTHERHOST", None),  # node-b's flannel.1 has a new MAC: not for it
    "neigh-failed": ("dropped", "NEIGH_FAILED", None),
    "fdb-missing": ("dropped", "NO_TX_TARGET", None),
    "fdb-wrong-dst": ("lost", None, None),  # ARP for the wrong VTEP outlives the 1 s wait
    "duplicate-ip": ("misdelivered", None, None),  # coredns answers (RST) for pod-b's IP
    "ip-forward-off": ("dropped", "IP_INADDRERRORS", None),
    "rp-filter-strict": ("dropped", "IP_RPFILTER", None),
    "mtu-mismatch": ("dropped", "NOT_SPECIFIED", None),  # the veth refuses a frame over the peer's MTU
    # cni0 has no port for pod-b: while its FDB entry for pod-b's MAC lives the frame goes nowhere
    # (lost); once the entry is gone cni0 floods it to coredns, which drops it (OTHERHOST)
    "veth-detached": (("lost", "misdelivered"), (None, "OTHERHOST"), None),
}

# Where diagnose's first error differs from the trace's cause, and why the trace is right.
EXPLAINED = {
    "rp-filter-strict": "diagnose lists the /32 route first; the kernel's IP_RPFILTER reason names the "
                        "reverse-path filter that turns that route into a drop",
}


@pytest.fixture(scope="module")
def lab(request):
    return bpf_lab(request, "k")


def test_every_fault_is_expected():
    assert set(EXPECTED) == set(FAULTS), "add the new fault to EXPECTED"


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_traced_and_agrees_with_diagnose(lab, name):
    fault = FAULTS[name]
    status, reason, hook = EXPECTED[name]
    kw = dict(proto=fault.flow.proto, port=fault.flow.port, size=fault.flow.size, sport=fault.flow.sport)
    lab.inject(name)
    try:
        t = trace(fault.flow.src, fault.flow.dst, source=LabSource(lab.name), **kw)
        diag = diagnose(lab_snapshot(lab.name), fault.flow.src, fault.flow.dst, **kw)
    finally:
        lab.clear(name)
    v = t.verdict
    print(f"\n{name}: {v.status} {v.cause} at {v.node}/{v.location} {v.device} hook={v.hook} "
          f"reason={v.drop_reason}: {v.message}")
    assert v.status in (status if isinstance(status, tuple) else (status,)) and v.cause == fault.cause, v
    places = {(v.node, v.location)} | {(e["node"], e["location"]) for e in v.evidence}
    assert (fault.node, fault.location) in places, v
    if fault.device:
        assert v.device == fault.device or any(fault.device in e["object"] for e in v.evidence) \
            or fault.device in v.message, v
    assert v.drop_reason in (reason if isinstance(reason, tuple) else (reason,)), v
    assert v.hook == hook, v
    if reason == "NETFILTER_DROP":
        assert v.table and v.counter, "a netfilter drop names the table and the rule whose counter rose"
    assert v.evidence and v.fix, v
    assert not t.delivered
    if name == "svc-stale-endpoint":
        assert t.service["endpoint"].startswith("10.244.1.9") and t.service["endpoint_pod"] is None, t.service
    if name == "dns-stale-conntrack":
        assert t.service["conntrack"] and t.service["endpoint"] == "10.244.1.9:53", t.service
        assert any(e["kind"] == "conntrack" for e in v.evidence) and "conntrack -D" in v.fix, v
    if name == "svc-reply-dropped":
        assert v.direction == "reply" and "the reply" in v.message, v
    errors = [f for f in diag.findings if f.severity == "error"]
    assert any((f.cause, f.node, f.location) == (v.cause, fault.node, fault.location) for f in errors), \
        "diagnose finds the same cause at the same place"
    if name not in EXPLAINED:
        assert errors[0].cause == v.cause, f"diagnose's first error {errors[0]} differs from the trace's {v.cause}"
    assert wait_no_programs() == []
