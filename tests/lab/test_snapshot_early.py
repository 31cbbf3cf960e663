"""`podpath snapshot` starts a node's iptables-nft-save before anything else (snapshot/early.py):
what the collector then takes is that namespace's rules, and a save nobody claims is killed and
reaped. Root only: each test makes its own namespace (ppearly-<hex>) with one iptables-nft rule,
and deletes it even when the test fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess

import pytest

from podpath.tracer.netns import inode
from podpath.tracer.snapshot import early
from podpath.tracer.snapshot.live import HostRef, collect_host, whole_rules

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: makes a network namespace and iptables rules"),
    pytest.mark.skipif(shutil.which("iptables-nft-save") is None, reason="iptables-nft-save is not installed"),
]


@pytest.fixture
def ns():
    name = f"ppearly-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        comment = f"podpath-early-{secrets.token_hex(4)}"
        subprocess.run(["ip", "netns", "exec", name, "iptables-nft", "-A", "FORWARD", "-s", "10.244.7.0/24",
                        "-m", "comment", "--comment", comment, "-j", "DROP"], check=True)
        yield name, comment
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _rules(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("#")]  # not the dated header


def test_the_early_save_is_that_namespaces_rules(ns):
    name, comment = ns
    with early.saves_started([name]):
        text = early.claim(inode(name), timeout=30)
    assert text is not None and comment in text
    now = subprocess.run(["ip", "netns", "exec", name, "iptables-nft-save", "-c"], capture_output=True,
                         text=True, check=True).stdout
    assert _rules(text) == _rules(now)


def test_the_snapshot_takes_the_early_save_and_leaves_no_process(ns):
    name, comment = ns
    with early.saves_started([name]):
        started = dict(early._started)
        assert list(started) == [inode(name)]
        with whole_rules():
            host = collect_host(HostRef(name, "node", None, name))
        assert not early._started  # claimed by the iptables collector
    assert comment in host.iptables_save["nft"]
    assert all(p.returncode == 0 for p in started.values())


def test_an_unclaimed_save_is_killed_and_reaped(ns):
    name, _ = ns
    with early.saves_started([name, "ppearly-no-such-namespace"]):  # the missing one: no head start
        started = list(early._started.values())
        assert len(started) == 1
    assert not early._started
    assert all(p.returncode is not None for p in started)  # waited for: no zombie, no orphan
    assert early.claim(inode(name), timeout=1) is None  # nothing left to claim
