"""podpath's API reads against a cluster too large to list whole (root only).

No real cluster runs here, so the stand-in API server serves a synthetic one (tracer/lab/apiserver/
scale.py) from a throwaway namespace with only loopback up; the official client reads it through
tracer/kube from a thread inside that namespace, and the server's request log says what was asked.
Sizes are small enough for a test (hundreds of objects) but past the one-page threshold
(WHOLE_SERVICES), so the reads a 150,000-pod cluster needs are the ones exercised. Figures at full
size: bench/bench_api_scale.py.
"""

from __future__ import annotations

import os
import subprocess
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from podpath.tracer.kube import connect, read_inventory, read_services
from podpath.tracer.kube.facts import WHOLE_SERVICES
from podpath.tracer.lab.apiserver import scale
from podpath.tracer.lab.apiserver.scale import ScaleServer
from podpath.tracer.netns import run_in

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: makes a network namespace for the API server"),
]
NODES, PER = 40, 6


def asked(srv: ScaleServer) -> list[tuple[str, dict]]:
    out = []
    for line in srv.requests():
        url = urlsplit(line.split(" ", 1)[1])
        out.append((url.path, {k: unquote(v[0]) for k, v in parse_qs(url.query).items()}))
    return out


@pytest.fixture(scope="module")
def big():
    with ScaleServer("pptest-kube", nodes=NODES, pods_per_node=PER, services=WHOLE_SERVICES * 3) as srv:
        yield srv
    assert subprocess.run(["ip", "netns", "pids", srv.netns], capture_output=True).returncode != 0, "netns left"


def test_a_node_command_reads_nodes_its_pods_and_the_flow_not_the_cluster(big):
    here = 7
    ns1, pod1, _ = scale.pod_ref(NODES, PER, 20 * PER + 1)
    _, pod2, ip2 = scale.pod_ref(NODES, PER, 33 * PER + 4)
    svc_ns, svc = scale.service_ref(150, PER, NODES)
    before = len(big.requests())
    inv = run_in(big.netns, lambda: read_inventory(connect(str(big.kubeconfig)), node_addrs=[scale.node_ip(here)],
                                                   targets=[f"{ns1}/{pod1}", ip2, f"svc/{svc_ns}/{svc}"]))
    assert inv.local_node == scale.node_name(here) and len(inv.nodes) == NODES
    assert {p.name for p in inv.pods} == {f"pod-{k:06d}" for k in range(here * PER, here * PER + PER)} | {pod1, pod2}
    got = {(s.namespace, s.name): s for s in inv.services}
    assert set(got) == {("kube-system", "kube-dns"), (svc_ns, svc)} and inv.dns_service == "kube-system/kube-dns"
    want = [scale.pod_ref(NODES, PER, k % (NODES * PER))[2] for k in (300, 301)]  # svc-00150: pods 2s, 2s+1
    assert got[(svc_ns, svc)].endpoints == want and got[(svc_ns, svc)].ports[0].target_port == 8080
    reqs = asked(big)[before:]
    pods = [q for path, q in reqs if path == "/api/v1/pods"]
    assert pods and all("fieldSelector" in q for q in pods), "pods are never listed cluster-wide"
    svc_lists = [q for path, q in reqs if path == "/api/v1/services"]
    assert svc_lists == [{"limit": str(WHOLE_SERVICES)}], "one page says the cluster is large; no more"
    slices = [(path, q) for path, q in reqs if path.endswith("/endpointslices")]
    assert sorted(slices) == sorted([
        ("/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices",
         {"labelSelector": "kubernetes.io/service-name=kube-dns", "limit": "500"}),
        (f"/apis/discovery.k8s.io/v1/namespaces/{svc_ns}/endpointslices",
         {"labelSelector": f"kubernetes.io/service-name={svc}", "limit": "500"})])
    nodes = [q for path, q in reqs if path == "/api/v1/nodes"]
    assert len(nodes) == 1 and nodes[0]["limit"] == "500"


def test_a_service_learnt_later_is_read_by_name_with_its_slices(big):
    ns, name = scale.service_ref(10, PER, NODES)

    def read():
        kube = connect(str(big.kubeconfig))
        inv = read_inventory(kube, node_addrs=[scale.node_ip(0)])
        before = len(big.requests())
        read_services(kube, inv, [(ns, name), ("kube-system", "kube-dns"), ("default", "no-such-service")])
        return inv, before
    inv, before = run_in(big.netns, read)
    svc = next(s for s in inv.services if (s.namespace, s.name) == (ns, name))
    assert svc.endpoints == [scale.pod_ref(NODES, PER, k)[2] for k in (20, 21)]
    assert len(inv.services) == 2 and not inv.gaps, "kube-dns is not read twice; a missing Service is no gap"
    paths = sorted(line.split("?")[0] for line in big.requests()[before:])
    assert paths == sorted([f"GET /apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
                            f"GET /api/v1/namespaces/{ns}/services/{name}",
                            "GET /api/v1/namespaces/default/services/no-such-service"])


def test_every_pod_pages_once_through_the_official_client(big):
    def read():
        kube = connect(str(big.kubeconfig))
        return kube.paged_json("list", "pods", kube.core.list_pod_for_all_namespaces, limit=17)
    pods = run_in(big.netns, read)
    names = [p["metadata"]["name"] for p in pods]
    assert len(names) == NODES * PER + 1 and len(set(names)) == len(names)
    assert sum(1 for path, q in asked(big) if path == "/api/v1/pods" and q.get("limit") == "17") == -(-len(names) // 17)


def test_a_small_cluster_is_read_whole_with_every_services_endpoints():
    with ScaleServer("pptest-kube", nodes=4, pods_per_node=3, services=WHOLE_SERVICES - 10) as srv:
        inv = run_in(srv.netns, lambda: read_inventory(connect(str(srv.kubeconfig)), node_addrs=[scale.node_ip(0)]))
    assert len(inv.services) == WHOLE_SERVICES - 9 and all(len(s.endpoints) == (1 if s.name == "kube-dns" else 2)
                                                           for s in inv.services)
    assert subprocess.run(["ip", "netns", "pids", srv.netns], capture_output=True).returncode != 0, "netns left"
