"""Bundles store rule text compressed (version 2) and still read version-1 bundles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from podpath.tracer.bundle import BUNDLE_VERSION, Bundle, Host
from podpath.tracer.errors import BundleError

FIXTURES = Path(__file__).parent.parent / "fixtures"
KUBE_SAVE = (FIXTURES / "netfilter" / "kube-proxy-flannel.nft.iptables-save").read_text()
NATIVE = json.loads((FIXTURES / "netfilter" / "native-firewall.json").read_text())


def _kube_services(n: int) -> str:
    rules = [f'-A KUBE-SERVICES -d 10.100.{i // 250}.{i % 250}/32 -p tcp -m comment --comment '
             f'"bench/svc-{i}:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-{i:016X}' for i in range(n)]
    return "*nat\n:KUBE-SERVICES - [0:0]\n" + "\n".join(rules) + "\nCOMMIT\n"


@pytest.mark.parametrize("services,big_nodes", [(5000, 1), (12000, 1), (12000, 2)])
def test_rule_text_is_compressed_on_disk_and_plain_in_memory(services, big_nodes):
    """Whatever the size (over 1 MB of rules a node's are compressed beside the others')."""
    big = _kube_services(services)
    others = [Host(name=f"node-{i}", iptables_save={"nft": big}) for i in range(1, big_nodes)]
    b = Bundle(hosts=[Host(name="node-a", iptables_save={"nft": big, "legacy": KUBE_SAVE},
                           nftables=NATIVE), Host(name="pod-a")] + others)
    text = b.to_json()
    raw = json.loads(text)
    assert raw["version"] == BUNDLE_VERSION == 2
    assert "KUBE-SERVICES" not in text  # no rule text in the clear
    assert len(text) < len(big) * big_nodes / 5  # kube-proxy's repetitive rules compress well
    again = Bundle.from_json(text)
    assert again == b
    assert again.host("node-a").iptables_save["nft"] == big
    assert again.host("node-a").nftables == NATIVE
    assert again.host("pod-a").iptables_save == {} and again.host("pod-a").nftables is None


def test_version_1_bundles_still_read():
    v1_text = (FIXTURES / "bundles" / "lab-healthy.json").read_text()
    assert json.loads(v1_text)["version"] == 1
    v1 = Bundle.from_json(v1_text)
    node = next(h for h in v1.hosts if h.iptables_save)
    assert "-A " in next(iter(node.iptables_save.values()))  # plain text, as version 1 stored it
    again = Bundle.from_json(v1.to_json())  # written back as version 2
    assert again == v1 and again.version == BUNDLE_VERSION


@pytest.mark.parametrize("mutate,where", [
    (lambda h: h["iptables_save"].update(nft="not base64!"), "hosts[0].iptables_save.nft"),
    (lambda h: h["iptables_save"].update(nft="aGVsbG8="), "hosts[0].iptables_save.nft"),  # not zlib
    (lambda h: h["iptables_save"].update(nft=5), "hosts[0].iptables_save.nft"),
    (lambda h: h.update(nftables={"nftables": []}), "hosts[0].nftables"),  # a version-1 value
])
def test_bad_compressed_rules_are_one_line_errors_naming_the_field(mutate, where):
    raw = json.loads(Bundle(hosts=[Host(name="n", iptables_save={"nft": KUBE_SAVE},
                                        nftables=NATIVE)]).to_json())
    mutate(raw["hosts"][0])
    with pytest.raises(BundleError) as e:
        Bundle.from_json(json.dumps(raw))
    assert where in str(e.value) and "\n" not in str(e.value)
