"""The API server's object generation (a pure function) and its selectors, without a lab or root.

Every generated object is checked against the published Kubernetes schemas (kubernetes-validate,
strict: unknown fields fail); the served behaviour against real clients is tests/lab/test_apiserver.py.
"""

from __future__ import annotations

import json

import pytest

from podpath.tracer.lab.apiserver.labsource import lab_labels
from podpath.tracer.lab.apiserver.objects import objects
from podpath.tracer.lab.apiserver.selectors import SelectorError, field_matcher, label_matcher
from podpath.tracer.lab.apiserver.server import Store
from podpath.tracer.lab.faults import FAULTS, REBOOTED_VTEP_MAC
from podpath.tracer.lab.topology import NODES, base_inventory

CREATED = "2026-01-01T00:00:00Z"


def gen(inv=None):
    return objects(inv or base_inventory("pp"), "pp", CREATED, lab_labels())


def test_every_object_validates_strictly_against_kubernetes_1_30():
    import kubernetes_validate

    objs = gen()
    assert {o["kind"] for o in objs} == {"Namespace", "Node", "Pod", "Service", "EndpointSlice", "ConfigMap"}
    for o in objs:
        kubernetes_validate.validate(o, "1.30.0", strict=True)


def test_generation_is_pure_and_deterministic():
    assert gen() == gen()
    assert gen()[0]["metadata"]["uid"] != objects(base_inventory("pq"), "pq", CREATED, lab_labels())[0]["metadata"]["uid"]


def test_a_service_emptied_by_a_fault_has_no_endpointslice_and_keeps_its_selector():
    inv = base_inventory("pp")
    FAULTS["svc-no-endpoints"].patch_inventory(inv)
    objs = gen(inv)
    assert not [o for o in objs if o["kind"] == "EndpointSlice" and o["metadata"]["namespace"] == "default"]
    web = next(o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == "web")
    assert web["spec"]["selector"] == {"app": "web"}


def test_vtep_mac_stale_changes_only_node_b_annotation():
    inv = base_inventory("pp")
    FAULTS["vtep-mac-stale"].patch_inventory(inv)
    nodes = {o["metadata"]["name"]: o for o in gen(inv) if o["kind"] == "Node"}
    macs = {n: json.loads(o["metadata"]["annotations"]["flannel.alpha.coreos.com/backend-data"])["VtepMAC"]
            for n, o in nodes.items()}
    assert macs == {"node-a": NODES[0].vtep_mac, "node-b": REBOOTED_VTEP_MAC}


def test_store_numbers_changes_and_records_events():
    st = Store()
    st.replace(gen())
    rv = st.rv
    assert st.replace(gen()) == 0 and st.rv == rv  # same objects: no new resourceVersion
    inv = base_inventory("pp")
    FAULTS["vtep-mac-stale"].patch_inventory(inv)
    FAULTS["svc-no-endpoints"].patch_inventory(inv)
    assert st.replace(gen(inv)) == 2
    events = [(e.type, e.obj["kind"], e.obj["metadata"]["name"]) for e in st.history if e.rv > rv]
    assert ("MODIFIED", "Node", "node-b") in events
    assert any(t == "DELETED" and k == "EndpointSlice" and n.startswith("web-") for t, k, n in events)


def test_store_lists_in_key_order_and_forgets_old_events():
    from podpath.tracer.lab.apiserver import server

    st = Store()
    st.replace(gen())
    pods = [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in st.of_kind("Pod", None)]
    assert pods == sorted(pods) and len(pods) == 4
    assert [o["metadata"]["name"] for o in st.of_kind("Pod", "kube-system")] == ["coredns"]
    from podpath.tracer.lab.apiserver.selectors import single_equality
    eq = single_equality("status.podIP=10.244.1.3", "Pod")
    assert [o["metadata"]["name"] for o in st.by_field("Pod", *eq)] == ["coredns"]
    assert single_equality("status.podIP!=x", "Pod") is None and single_equality("a=b,c=d", "Pod") is None
    keep, server.MAX_HISTORY = server.MAX_HISTORY, 3
    try:
        inv = base_inventory("pp")
        FAULTS["svc-no-endpoints"].patch_inventory(inv)
        st.replace(gen(inv))
        assert len(st.history) == 3 and st.history[-1].rv == st.rv
    finally:
        server.MAX_HISTORY = keep


POD = {"metadata": {"name": "p", "namespace": "default", "labels": {"app": "web", "tier": "fe"}},
       "spec": {"nodeName": "node-b"}, "status": {"podIP": "10.244.1.2", "phase": "Running"}}


@pytest.mark.parametrize("sel, hit", [
    ("app=web", True), ("app==web", True), ("app!=web", False), ("app in (web, db)", True),
    ("app notin (web)", False), ("tier", True), ("!tier", False), ("app=web,tier=be", False), ("", True),
])
def test_label_selectors(sel, hit):
    assert label_matcher(sel)(POD) is hit


def test_field_selectors_and_the_real_servers_400():
    assert field_matcher("spec.nodeName=node-b,status.phase=Running", "Pod")(POD)
    assert not field_matcher("status.podIP!=10.244.1.2", "Pod")(POD)
    with pytest.raises(SelectorError, match="field label not supported: spec.nodeName"):
        field_matcher("spec.nodeName=x", "Service")
    with pytest.raises(SelectorError, match="unable to parse"):
        label_matcher("a in b")


# --------------------------------------------------------------------------- a cluster's worth of objects

def scale_store(nodes=12, per=5, services=30) -> Store:
    from podpath.tracer.lab.apiserver.scale import synthetic_inventory

    st = Store()
    st.replace(objects(synthetic_inventory(nodes, per, services), "scale", CREATED))
    return st


def pages(st: Store, kind: str, limit: int, match=None, namespace=None) -> list[list[dict]]:
    """Every page of a list as a client pages it: limit, then the continue token of each page."""
    import base64

    from podpath.tracer.lab.apiserver.server import _page

    out, token = [], None
    while True:
        meta: dict = {}
        items, meta = _page(st.listing(kind, namespace), match, str(limit), token, meta, st.rv)
        out.append((items, meta))
        token = meta.get("continue")
        if not token:
            return out
        json.loads(base64.urlsafe_b64decode(token))  # a token as the real server writes it


def test_pages_cover_every_object_once_in_key_order():
    st = scale_store()
    got = pages(st, "Pod", 7)
    keys = [f"{o['metadata']['namespace']}/{o['metadata']['name']}" for items, _ in got for o in items]
    assert len(keys) == 12 * 5 + 1 and keys == sorted(keys) and len(set(keys)) == len(keys)
    assert [len(items) for items, _ in got[:-1]] == [7] * (len(got) - 1)
    assert [m.get("remainingItemCount") for _, m in got] == [61 - 7 * (i + 1) for i in range(len(got) - 1)] + [None]


def test_a_filtered_list_pages_only_matches_and_says_no_remaining_count():
    st = scale_store()
    on_node = lambda o: o["spec"].get("nodeName") == "node-00003"  # noqa: E731
    got = pages(st, "Pod", 2, match=on_node)
    names = [o["metadata"]["name"] for items, _ in got for o in items]
    assert sorted(names) == [f"pod-{k:06d}" for k in range(15, 20)]
    assert all("remainingItemCount" not in m for _, m in got) and len(got) == 3


def test_a_continue_token_the_server_did_not_write_is_a_400_message():
    from podpath.tracer.lab.apiserver.server import _page

    with pytest.raises(ValueError, match="continue key is not valid"):
        _page(scale_store().listing("Pod"), None, "5", "not-a-token", {}, 1)


def test_indexes_answer_a_field_a_label_and_a_namespace():
    from podpath.tracer.lab.apiserver import selectors

    st = scale_store()
    by_ip = st.indexed("Pod", "field:status.podIP", selectors.FIELDS["Pod"]["status.podIP"], "100.64.0.4")
    assert [o["metadata"]["name"] for o in by_ip.items] == ["pod-000002"]
    svc = st.objects[("Service", "ns-010", "svc-00005")]
    sl = st.indexed("EndpointSlice", "label:kubernetes.io/service-name",
                    lambda o: selectors.labels_of(o).get("kubernetes.io/service-name"), "svc-00005")
    assert [o["metadata"]["namespace"] for o in sl.items] == ["ns-010"]
    assert sl.items[0]["metadata"]["ownerReferences"][0]["uid"] == svc["metadata"]["uid"]
    in_ns = st.listing("Service", "ns-010")
    assert {o["metadata"]["namespace"] for o in in_ns.items} == {"ns-010"} and in_ns.keys == sorted(in_ns.keys)
    assert selectors.single_label_equality("kubernetes.io/service-name=web") == ("kubernetes.io/service-name", "web")
    assert selectors.single_label_equality("a!=b") is None and selectors.single_label_equality("a=b,c=d") is None
