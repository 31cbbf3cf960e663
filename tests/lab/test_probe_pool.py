"""Warm probes (issue 10): an agent loads podpath's programs once and writes each trace's filter
into the loaded .data. Real BPF on two throwaway namespaces ppwarm-<hex>-a / -b joined by one veth
(TEST-NET-1 addresses, nothing in the root namespace), deleted in the finalizer even on failure.

What a user of an agent relies on: each trace sees its own flow and nothing of the trace before
(unread records, tracked skbs, counters), the programs are the same ones trace after trace, two
sessions at once get two sets, a set given back keeps its links behind a closed gate (traffic over
them gives no event) for the next trace to reuse, and an idle set is attached to nothing once its
linger period (LINGER, short here) is over.
"""

from __future__ import annotations

import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import PAIR_A_IP, PAIR_B_IP, ROOT_BPF_LAB, require_bpf_objects, run_cmd as sh, veth_pair, wait_no_programs  # noqa: E402

from podpath.tracer.netns import inode  # noqa: E402
from podpath.tracer.probes import Filter, ProbePool, Probes, libbpf  # noqa: E402

pytestmark = ROOT_BPF_LAB

A_IP, B_IP = PAIR_A_IP, PAIR_B_IP
LINGER = 1.0  # the pool's linger period here (an agent's: LINGER_S)
FIRST_ID, SECOND_ID = 0x5757, 0x5858


@pytest.fixture
def pair():
    """(ns_a, ns_b): va 192.0.2.1/24 in a <-> vb 192.0.2.2/24 in b."""
    require_bpf_objects()
    with veth_pair("ppwarm") as (a, b):
        yield a, b


@pytest.fixture
def pool():
    p = ProbePool(linger_s=LINGER)
    try:
        yield p
    finally:
        p.close()
        left = wait_no_programs()
        assert not left, f"the pool's programs are still loaded after close: {left}"


def ping(ns: str, ident: int, count: int = 3) -> None:
    r = sh("ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", str(count), "-i", "0.05", "-W", "1",
           "-e", str(ident), B_IP, check=False)
    assert r.returncode == 0, f"ping must succeed with the probes attached: {r.stdout}{r.stderr}"


def flow(ident: int) -> Filter:
    return Filter(saddr=A_IP, daddr=B_IP, proto="icmp", icmp_id=ident)


def attach(p: Probes, a: str, b: str) -> None:
    p.attach_tc(a, "va")
    p.attach_tc(b, "vb")
    p.attach_tracepoints()


def links_running(ids) -> list[dict]:
    return [l for l in libbpf.links_info() if l["prog_id"] in ids]


def wait_unlinked(ids, timeout: float = LINGER + 5) -> list[dict]:
    """The links still running these programs once the linger period is over (expected: none)."""
    deadline = time.monotonic() + timeout
    while (left := links_running(ids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def link_ids(p: Probes, kind: str | None = None) -> set[int]:
    """The ids of a trace's links (of one kind: tc, tp, nf); prog_id reads any BPF fd's id."""
    return {libbpf.prog_id(l.fd) for l in p.links if kind is None or p._held.get(id(l), ((None,),))[0][0] == kind}


def test_a_pooled_set_serves_each_trace_its_own_flow_only(pair, pool):
    """Two traces on one loaded set: the first leaves its records unread; the second, with another
    filter, sees its own flow's packets (both veth ends, every sequence number) and none of the
    first's, not even the first flow's packets sent again while it runs."""
    a, b = pair
    with Probes(flow(FIRST_ID), tracepoints=True, pool=pool) as first:
        ids = first._set.program_ids()
        attach(first, a, b)
        first_links = link_ids(first, "tc")  # what lingers (tracepoints: on every skb of the node)
        assert first_links and link_ids(first) > first_links
        ping(a, FIRST_ID)
        time.sleep(0.1)  # its records wait in the ring buffer, never read
    assert pool.idle() == 1 and pool.held_links() == len(first_links), "the set came back without its tc links"
    with Probes(flow(SECOND_ID), tracepoints=True, pool=pool) as second:
        assert second._set.program_ids() == ids, "the second trace loaded new programs"
        assert second.events == [] and second.lost() == 0
        attach(second, a, b)
        assert link_ids(second, "tc") == first_links and second.reused == len(first_links), \
            "the second trace attached again instead of reusing the lingering links"
        ping(a, FIRST_ID)  # the first trace's flow again: the new filter must not match it
        ping(a, SECOND_ID)
        second.poll(200)
        events = list(second.events)
    assert pool.loads == 1
    tc = [e for e in events if e.kind == "tc"]
    assert not [e for e in events if e.icmp_id == FIRST_ID], "the first trace's flow leaked into the second"
    assert {e.icmp_id for e in tc} == {SECOND_ID}, {(e.icmp_id, e.saddr) for e in tc}
    egress_a = [e.icmp_seq for e in tc if e.point == "egress" and e.netns == inode(a)]
    ingress_b = [e.icmp_seq for e in tc if e.point == "ingress" and e.netns == inode(b)]
    assert egress_a == [1, 2, 3] and ingress_b == [1, 2, 3], (egress_a, ingress_b)


def test_a_set_given_back_forgets_its_tracked_skbs_and_counters(pair, pool):
    """What one trace tracked (skbs seen matching) and counted is gone when the set comes back."""
    import ctypes

    a, b = pair
    with Probes(Filter(proto="icmp"), tracepoints=False, pool=pool) as p:  # no consume_skb: skbs stay tracked
        tc = p.tc
        p.attach_tc(a, "va")
        p.attach_tc(b, "vb")
        ping(a, FIRST_ID)
        p.poll(100)
        assert p.events, "the probes saw nothing"
        lb, key = libbpf.lib(), ctypes.c_uint64()
        assert lb.bpf_map_get_next_key(tc.map_fd("pp_tracked"), None, ctypes.byref(key)) == 0, \
            "a matched skb should be tracked while the trace runs"
    assert lb.bpf_map_get_next_key(tc.map_fd("pp_tracked"), None, ctypes.byref(key)) != 0, "pp_tracked not cleared"
    n = ctypes.c_uint64(1)
    zero = ctypes.c_uint32(0)
    assert lb.bpf_map_lookup_elem(tc.map_fd("pp_ntracked"), ctypes.byref(zero), ctypes.byref(n)) == 0
    assert n.value == 0, "pp_ntracked not reset"


def test_a_lingering_link_behind_the_closed_gate_reports_nothing(pair, pool, monkeypatch):
    """Between traces the links stay attached, gate closed: the flow the last trace matched crosses
    them (and is delivered) without one record, tracked skb or loss; the next trace on the same
    devices reuses them and sees its own packets again. Every kind lingers here (tracepoints too,
    PODPATH_LINGER_KINDS), so the gate is checked in every program kind; by default only tc does."""
    import ctypes

    from podpath.tracer.probes import LINGER_KINDS_ENV

    monkeypatch.setenv(LINGER_KINDS_ENV, "tc,tp,nf")
    a, b = pair
    with Probes(flow(FIRST_ID), tracepoints=True, pool=pool) as p:
        attach(p, a, b)
        s, links = p._set, link_ids(p)
    assert not s.gate() and pool.held_links() == len(links)
    assert {l["id"] for l in links_running(set(s.program_ids().values()))} == links, "the links should linger"
    records = []
    s.sink = records.append
    try:
        ping(a, FIRST_ID)  # the last trace's own flow, over its lingering links
        s._rb.poll(200)
        s._rb.consume()
    finally:
        s.sink = None
    lb, key = libbpf.lib(), ctypes.c_uint64()
    assert records == [], f"{len(records)} records came through the closed gate"
    assert lb.bpf_map_get_next_key(s.tc.map_fd("pp_tracked"), None, ctypes.byref(key)) != 0, \
        "a gated program tracked an skb"
    with Probes(flow(SECOND_ID), tracepoints=True, pool=pool) as q:
        assert q._set is s
        attach(q, a, b)
        assert link_ids(q) == links
        ping(a, SECOND_ID)
        q.poll(200)
        seqs = sorted(e.icmp_seq for e in q.events if e.kind == "tc" and e.point == "egress" and e.netns == inode(a))
    assert seqs == [1, 2, 3], seqs


def test_a_trace_on_other_devices_detaches_the_lingering_links_it_did_not_need(pair, pool):
    """A lingering link on a device the next trace does not use goes when that trace closes; one on
    a device deleted meanwhile (a pod gone) breaks nothing: a new device of the same name gets its
    own link."""
    a, b = pair
    with Probes(flow(FIRST_ID), tracepoints=False, pool=pool) as p:
        p.attach_tc(a, "va")
        p.attach_tc(b, "vb")
        ids = set(p._set.program_ids().values())
        old = link_ids(p)
    sh("ip", "-n", a, "link", "del", "va")  # vb goes with it
    sh("ip", "-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b)
    for ns, dev, ip in ((a, "va", A_IP), (b, "vb", B_IP)):
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
    with Probes(flow(SECOND_ID), tracepoints=False, pool=pool) as q:
        q.attach_tc(a, "va")
        assert q.reused == 0 and not link_ids(q) & old, "a link of the deleted device was reused"
        ping(a, SECOND_ID)
        q.poll(200)
        assert sorted(e.icmp_seq for e in q.events if e.point == "egress") == [1, 2, 3]
        new = link_ids(q)
    running = {l["id"] for l in links_running(ids)}
    assert running == new, f"after the trace: links {running}, only its own {new} should linger"


def test_the_pool_gives_a_trace_the_set_whose_links_fit_it(pair, pool):
    """Two idle sets, one lingering on a's veth, the other on b's: a trace likely to use b's device
    takes the set already attached there and reuses both its links, attaching nothing."""
    a, b = pair
    on_a, on_b = Probes(flow(1), tracepoints=False, pool=pool), Probes(flow(2), tracepoints=False, pool=pool)
    try:
        on_a.attach_tc(a, "va")
        on_b.attach_tc(b, "vb")
        b_links = link_ids(on_b)
    finally:
        on_b.close()
        on_a.close()  # given back last: a plain stack would hand it out next
    with Probes(flow(3), tracepoints=False, pool=pool, likely=[(b, "vb")]) as q:
        q.attach_tc(b, "vb")
        assert q.reused == 2 and link_ids(q) == b_links, "the trace took the set lingering elsewhere"
    assert pool.loads == 2


def test_a_trace_arriving_while_the_last_one_closes_waits_for_its_set(pair, pool, monkeypatch):
    """Back to back through an agent, the next trace can come while the last session is still
    detaching what it did not keep (slow here: 0.3 s): it waits for that set, whose links fit,
    and reuses them, rather than load another set and attach everything again beside them."""
    import threading

    from podpath.tracer import probes as P

    a, b = pair
    first = Probes(flow(1), pool=pool)
    attach(first, a, b)
    tc_links = link_ids(first, "tc")
    slow = P.close_links

    def close_links_slowly(links):
        time.sleep(0.3)
        return slow(links)

    monkeypatch.setattr(P, "close_links", close_links_slowly)
    closing = threading.Thread(target=first.close)
    closing.start()
    try:
        deadline = time.monotonic() + 2
        while not pool._returning and time.monotonic() < deadline:
            time.sleep(0.005)
        assert pool._returning, "the closing session should have its set on the way back"
        with Probes(flow(2), tracepoints=False, pool=pool, likely=[(a, "va"), (b, "vb")]) as q:
            q.attach_tc(a, "va")
            q.attach_tc(b, "vb")
            assert q.reused == len(tc_links) == 4 and link_ids(q) == tc_links, \
                "the trace attached anew beside the set coming back"
            ping(a, 2)
            q.poll(100)
            assert {e.icmp_id for e in q.events} == {2}
    finally:
        closing.join()
    assert pool.loads == 1, "a second set was loaded while the first was on its way back"


def test_two_sessions_at_once_take_two_sets_and_the_pool_keeps_two(pair, pool):
    """Concurrent sessions never share a set (each its own filter and ring buffer); sets beyond
    what the pool keeps idle are unloaded when given back."""
    a, b = pair
    held = [Probes(flow(i), tracepoints=False, pool=pool) for i in (1, 2, 3)]
    try:
        sets = [frozenset(p._set.program_ids().values()) for p in held]
        assert len(set(sets)) == 3 and pool.loads == 3
        for p in held:
            p.attach_tc(a, "va")
        ping(a, 2)
        for p in held:
            p.poll(100)
        assert {e.icmp_id for e in held[1].events} == {2}
        assert not held[0].events and not held[2].events, "one session saw another's flow"
    finally:
        for p in held:
            p.close()
    assert pool.idle() == pool.keep == 2
    assert pool.held_links() > 0, "the idle sets should keep their links for the linger period"
    assert wait_unlinked(set().union(*sets)) == [], "an idle set is still attached after its linger period"
    assert pool.held_links() == 0 and pool.idle() == 2, "the linger period detaches links, keeps the sets loaded"
    deadline = time.monotonic() + 3  # the kernel frees an unloaded program asynchronously
    while True:
        loaded = {i for i, _ in libbpf.loaded_programs()}
        kept = [s for s in sets if s & loaded]
        if len(kept) <= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(kept) == 2 and all(s <= loaded for s in kept), \
        "the pool should keep two idle sets loaded and unload the third"
    assert not links_running(set().union(*sets)), "an idle set is attached somewhere"


def test_a_one_shot_trace_loads_the_constant_filter_build_and_an_agent_the_writable_one(pair, pool):
    """`podpath trace` without agents loads its probes for one trace: tc.bpf.o, the filter a
    load-time constant the verifier prunes on (fewer instructions to verify: a cheaper load); an
    agent's pooled set is tc.agent.bpf.o, the filter in .data for the next trace to rewrite. Both
    see their own flow only; the constant one cannot be given another filter."""
    a, b = pair
    one = Probes(flow(FIRST_ID))
    try:
        pooled = Probes(flow(SECOND_ID), pool=pool)
        try:
            assert os.path.basename(one.tc.path) == "tc.bpf.o"
            assert os.path.basename(pooled.tc.path) == "tc.agent.bpf.o"
            insns = [libbpf.verified_insns(p.tc.program_fd("pp_tc_ingress")) for p in (one, pooled)]
            assert 0 < insns[0] < insns[1], f"verified instructions one-shot/agent: {insns}"
            for p in (one, pooled):
                attach(p, a, b)  # with the tracepoints, which stop tracking a freed skb
            ping(a, FIRST_ID)
            ping(a, SECOND_ID)
            for p in (one, pooled):
                p.poll(100)
            # the packets' events (route lookups and neighbours carry no ICMP id)
            assert {e.icmp_id for e in one.events if e.kind == "tc"} == {FIRST_ID}
            assert {e.icmp_id for e in pooled.events if e.kind == "tc"} == {SECOND_ID}
            with pytest.raises(ValueError, match="constant"):
                one._set.use(flow(SECOND_ID))
        finally:
            pooled.close()
    finally:
        one.close()
