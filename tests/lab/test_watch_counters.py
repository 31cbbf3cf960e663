"""The node counters `podpath watch` reads each second, against the kernel's own views of the same
numbers, in a throwaway namespace: conntrack over ctnetlink equals /proc/net/stat/nf_conntrack and
counts the entries really in the table."""

from __future__ import annotations

import secrets
import subprocess

import pytest

from conftest import ROOT_BPF_LAB

pytestmark = ROOT_BPF_LAB


@pytest.fixture
def netns(request):
    name = "pwc" + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", name], check=True)
    request.addfinalizer(lambda: subprocess.run(["ip", "netns", "del", name], check=False))
    return name


def test_conntrack_over_netlink_matches_proc_and_the_table(netns):
    from podpath.tracer.lab.intermittent import _ct_send
    from podpath.tracer.netns import run_in
    from podpath.tracer.watch.counters import _CT_WANT, _per_cpu_sums, conntrack

    def both():
        return (dict((n, v) for _g, n, _o, v in conntrack()),
                _per_cpu_sums("/proc/thread-self/net/stat/nf_conntrack", _CT_WANT))

    ct, _ = run_in(netns, both)
    assert ct["count"] == 0 and ct["max"] == int(open("/proc/sys/net/netfilter/nf_conntrack_max").read())
    run_in(netns, _ct_send(0, 300))
    run_in(netns, _ct_send(0, 100, delete=True))
    ct, proc = run_in(netns, both)
    assert ct["count"] == 200  # this namespace's entries only
    listed = subprocess.run(["ip", "netns", "exec", netns, "conntrack", "-C"], capture_output=True, text=True)
    assert int(listed.stdout) == 200
    assert {k: ct[k] for k in proc} == proc  # the kernel's per-CPU statistics, two ways
