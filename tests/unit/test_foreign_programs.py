"""Foreign programs on the path (cause `tc`), on a saved bundle, without root.

The fixture `lab-healthy.json` is a real `podpath snapshot` of the netns lab. Each test adds what
the `programs` collector records when another tool attached something (tests/lab/test_programs.py
attaches the same things for real and reads them back), then checks what a user would read: the
warning, the program named with id and tag, the command that removes it, and which finding the
trace's correlation blames for a TC_EGRESS drop.
"""

from __future__ import annotations


import pytest

from podpath.tracer.bundle import Attachment, Bundle
from podpath.tracer.checks import WARNING
from podpath.tracer.diagnose import diagnose
from podpath.tracer.trace.explain import evidence_of as _evidence, pick_finding
from lab_bundle import bundle, healthy  # noqa: F401, E402 - shared fixtures




def clsact(device="cni0", hook="tc_egress", **kw) -> Attachment:
    fields = dict(hook=hook, kind="clsact", device=device, id=1794, name="drop_icmp", tag="c99a8cb2c62e5b3f",
                  priority=49152, handle="0x1", filter="bpf", detail="direct-action")
    return Attachment(**{**fields, **kw})


def tc_findings(result):
    return [f for f in result.findings if f.cause == "tc"]


def test_foreign_clsact_on_path_device_is_a_warning_naming_it_with_its_removal(bundle):
    bundle.host("node-b").programs.append(clsact())
    result = diagnose(bundle, "pod-a", "pod-b")
    (f,) = tc_findings(result)
    assert (f.severity, f.node, f.location, f.device) == (WARNING, "node-b", "host", "cni0")
    assert "drop_icmp" in f.object and "1794" in f.object and "c99a8cb2c62e5b3f" in f.object
    assert "cni0 tc_egress" in f.object
    assert f.fix == "ip netns exec fx-node-b tc filter del dev cni0 egress pref 49152 handle 0x1 bpf"
    assert [e.kind for e in f.evidence] == ["program"]
    assert not result.errors  # a program that may pass the packet is not an error


def test_on_a_node_the_fix_has_no_namespace_prefix(bundle):
    node = bundle.host("node-b")
    node.netns = None  # what a snapshot taken on the node itself records
    node.programs.append(clsact(hook="tc_ingress"))
    (f,) = tc_findings(diagnose(bundle, "pod-a", "pod-b"))
    assert f.fix == "tc filter del dev cni0 ingress pref 49152 handle 0x1 bpf"


def test_ours_and_off_path_programs_are_not_reported(bundle):
    node_b = bundle.host("node-b")
    node_b.programs += [clsact(name="pp_tc_egress", ours=True),
                        Attachment(hook="tcx_ingress", kind="tcx", device="cni0", id=7, name="pp_tc_ingress",
                                   tag="00" * 8, priority=0, link_id=9, owners=["99/podpath"], ours=True)]
    bundle.host("node-a").programs.append(clsact(device="lo", hook="tc_ingress"))  # lo is off this path
    assert tc_findings(diagnose(bundle, "pod-a", "pod-b")) == []
    # without a flow every foreign program is listed (diagnose with no targets)
    assert [f.device for f in tc_findings(diagnose(bundle))] == ["lo"]


def test_tcx_and_xdp_fixes_name_the_link_or_the_mode_and_the_holder(bundle):
    node_b = bundle.host("node-b")
    node_b.programs += [
        Attachment(hook="tcx_egress", kind="tcx", device="cni0", id=11, name="agent_egress", tag="ab" * 8,
                   priority=0, link_id=21, owners=["4242/sec-agent"]),
        Attachment(hook="xdp", kind="xdp", device="eth0", id=12, name="xdp_fw", tag="cd" * 8,
                   detail="mode xdpgeneric"),
    ]
    fixes = {f.device: f.fix for f in tc_findings(diagnose(bundle, "pod-a", "pod-b"))}
    assert fixes["cni0"].startswith("bpftool link detach id 21  # held by 4242/sec-agent")
    assert fixes["eth0"] == "ip -n fx-node-b link set dev eth0 xdpgeneric off"


def test_netfilter_link_warns_when_placed_and_only_informs_when_its_netns_is_unknown(bundle):
    placed = Attachment(hook="netfilter", kind="nf-link", id=31, name="nf_fw", tag="ef" * 8, priority=-100,
                        link_id=41, owners=["77/fw"], detail="ip forward; netns of holder 77/fw (...)")
    unknown = Attachment(hook="netfilter", kind="nf-link", id=32, name="nf_other", tag="12" * 8, priority=5,
                         link_id=42, detail="ip input; netns unknown: the kernel does not report it")
    bundle.host("node-b").programs += [placed, unknown]
    found = {f.object: f for f in tc_findings(diagnose(bundle, "pod-a", "pod-b"))}
    assert found[placed.text()].severity == "warning"
    assert found[placed.text()].fix.startswith("bpftool link detach id 41")
    assert found[unknown.text()].severity == "info"


def test_a_tc_egress_drop_is_blamed_on_the_foreign_program_not_unknown(bundle):
    bundle.host("node-b").programs.append(clsact())
    bundle.host("node-b").programs.append(clsact(device="flannel.1", hook="tc_ingress", id=5, name="other"))
    findings = diagnose(bundle, "pod-a", "pod-b").findings
    f = pick_finding(findings, node="node-b", location="host", device="cni0", drop_reason="TC_EGRESS",
                     status="dropped")
    assert f is not None and f.cause == "tc" and f.device == "cni0" and "drop_icmp" in f.object
    assert _evidence(f)[0]["kind"] == "program"


def test_an_unplaced_netfilter_link_is_never_blamed_for_a_lost_packet(bundle):
    bundle.host("node-b").programs.append(
        Attachment(hook="netfilter", kind="nf-link", id=32, name="nf_other", priority=5, link_id=42,
                   detail="ip input; netns unknown: the kernel does not report it"))
    findings = diagnose(bundle, "pod-a", "pod-b").findings
    assert pick_finding(findings, node="node-b", location="host", device="cni0", status="lost") is None


def test_bundle_round_trip_keeps_programs(bundle):
    bundle.host("node-b").programs.append(clsact(owners=["1/init"]))
    again = Bundle.from_json(bundle.to_json())
    assert again.host("node-b").programs == bundle.host("node-b").programs


def test_an_xdp_drop_without_a_reason_is_blamed_on_the_program_even_beside_an_error(bundle):
    """Generic XDP frees a dropped skb as NOT_SPECIFIED in do_xdp_generic (seen in the lab test)."""
    pod_b = bundle.host("pod-b")
    pod_b.programs.append(Attachment(hook="xdp", kind="xdp", device="eth0", id=12, name="xdp_drop_icmp",
                                     tag="cd" * 8, detail="mode xdpgeneric"))
    bundle.host("node-b").link("flannel.1").up = False  # an error on the same node
    findings = diagnose(bundle, "pod-a", "pod-b").findings
    assert any(f.severity == "error" for f in findings)
    f = pick_finding(findings, node="node-b", location="pod-b", device="eth0", drop_reason="NOT_SPECIFIED",
                     status="dropped", drop_location="do_xdp_generic+0x284")
    assert f is not None and f.cause == "tc" and "xdp_drop_icmp" in f.object


def test_a_netfilter_drop_between_two_brackets_finds_the_foreign_link_at_that_hook_and_priority(bundle):
    from podpath.tracer.trace.hooks import nf_links_in_gap

    node_b = bundle.host("node-b")
    fw = Attachment(hook="netfilter", kind="nf-link", id=31, name="nf_fw", priority=-123, link_id=41,
                    owners=["77/fw"], detail="ip forward; netns of holder 77/fw (...)")
    ours = Attachment(hook="netfilter", kind="nf-link", id=32, name="pp_nf_3", priority=-120, link_id=42,
                      detail="ip forward", ours=True)
    node_b.programs += [fw, ours]
    assert nf_links_in_gap(node_b, "forward", -150, -100) == [fw]
    assert nf_links_in_gap(node_b, "input", -150, -100) == []
    assert nf_links_in_gap(node_b, "forward", -100, 0) == []
