"""`podpath dns` against the netns lab (dnsmasq plays CoreDNS behind kube-dns's ClusterIP), with
real BPF (root only): answers for each lab service, the ndots:5 search-list expansion, and every
DNS fault of the catalog traced to where the query or its answer was lost.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT_BPF_LAB, bpf_lab, wait_no_programs

pytestmark = ROOT_BPF_LAB

from podpath.tracer.dns import lookup  # noqa: E402
from podpath.tracer.lab.source import LabSource  # noqa: E402

PODPATH = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "podpath")


@pytest.fixture(scope="module")
def lab(request):
    return bpf_lab(request, "d")


@pytest.fixture
def faulted(lab):
    injected = []

    def inject(name):
        lab.inject(name)
        injected.append(name)
    yield inject
    for name in injected:
        lab.clear(name)
    assert wait_no_programs() == []


def services(lab):
    return {(s.namespace, s.name): s for s in lab.inventory().services}


@pytest.mark.parametrize("pod", ["pod-a", "pod-b"])
def test_every_lab_service_resolves_from_a_pod(lab, pod):
    for (ns, name), svc in services(lab).items():
        short = name if ns == "default" else f"{name}.{ns}"
        r = lookup(pod, short, source=LabSource(lab.name))
        assert r.ok and r.status == "answered", (short, r.attempts)
        assert any(a.endswith(f"IN A {svc.cluster_ip}") for a in r.answer), r.answer
        assert r.attempts[-1].name == f"{name}.{ns}.svc.cluster.local.", r.attempts
        t = r.trace
        assert t["verdict"]["status"] == "delivered", t["verdict"]
        assert t["service"]["endpoint_pod"] == "coredns" and t["service"]["reverse_nat"], t["service"]
    assert wait_no_programs() == []


def test_ndots_5_expansion_is_shown(lab):
    r = lookup("pod-a", "example.com", source=LabSource(lab.name))
    assert [a.name for a in r.attempts] == ["example.com.default.svc.cluster.local.", "example.com.svc.cluster.local.",
                                            "example.com.cluster.local.", "example.com."]
    assert [a.rcode for a in r.attempts[:3]] == ["NXDOMAIN"] * 3
    assert r.status == "refused" and not r.ok  # the lab's DNS forwards nothing outside the cluster
    assert set(r.conntrack) == {"node-a", "node-b"} and "insert_failed" in r.conntrack["node-a"]


@pytest.mark.parametrize("fault,status,cause,node,location,direction", [
    ("dns-blocked", "timeout", "dns", "node-b", "host", "request"),
    ("dns-no-endpoints", "unreachable", "dns", "node-a", "host", "request"),
    ("coredns-down", "unreachable", "dns", "node-b", "coredns", "request"),
    ("dns-pod-down", "timeout", "link_down", "node-b", "coredns", "request"),
    ("dns-reply-dropped", "timeout", "dns", "node-a", "host", "reply"),
    ("dns-stale-conntrack", "timeout", "dns", "node-a", "host", "request"),
])
def test_dns_fault_is_found_by_the_traced_query(lab, faulted, fault, status, cause, node, location, direction):
    from podpath.tracer.lab import FAULTS
    faulted(fault)
    r = lookup("pod-a", "web", source=LabSource(lab.name), sport=FAULTS[fault].flow.sport)
    v = r.trace["verdict"]
    print(f"\n{fault}: {r.status}; {v['status']} {v['cause']} at {v['node']}/{v['location']}: {v['message']}")
    assert (r.status, r.ok) == (status, False), r.attempts
    assert len(r.attempts) == 1 and r.attempts[0].traced
    assert (v["cause"], v["node"], v["location"]) == (cause, node, location), v
    assert v["status"] != "delivered" and v["evidence"] and v["fix"], v
    if v["status"] in ("dropped", "lost"):
        assert v["direction"] == direction, v


def test_cli_json_and_exit_codes(lab, faulted):
    p = subprocess.run([PODPATH, "dns", "pod-a", "web", "--lab", lab.name, "-o", "json"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["ok"] and d["answer"] and d["resolv"]["ndots"] == 5 and d["trace"]["verdict"]["status"] == "delivered"
    faulted("dns-blocked")
    p = subprocess.run([PODPATH, "dns", "pod-a", "web", "--lab", lab.name], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "lookup failed" in p.stdout and "cause dns" in p.stdout, p.stdout
    p = subprocess.run([PODPATH, "dns", "pod-a", "web", "--type", "BOGUS", "--lab", lab.name],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.startswith("podpath: error: unknown record type") \
        and "Traceback" not in p.stderr, p.stderr
