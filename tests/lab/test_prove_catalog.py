"""labs/prove_catalog.py, the script that proves the catalog on a kind or Vagrant lab, run here on
the netns lab: the same loop (inject --here on the fault's node, `podpath diagnose` on the node it
blames names the cause at its place, clear --here), only the driver differs (`ip netns exec`
instead of nsenter into a kind node or `vagrant ssh`). The kind and Vagrant drivers have not run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import fresh_lab  # noqa: E402

from podpath.tracer.lab.faults import FAULTS  # noqa: E402

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces, veths and VXLAN"),
]
SCRIPT = Path(__file__).resolve().parents[2] / "labs" / "prove_catalog.py"


@pytest.fixture(scope="module")
def lab(request):
    return fresh_lab(request, "pv")


def prove(lab, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "netns", lab.name, *args], capture_output=True, text=True,
                          timeout=900)


# One fault per kind of place the loop handles (a pod, host A, host B, a DNS pod, the overlay): every
# fault's --here commands are run by test_fault_here.py and its diagnosis on the node by
# test_node_catalog.py; this proves the script's loop, which is the same for each (all 20 took 62 s).
# `python labs/prove_catalog.py netns NAME` runs them all.
SAMPLE = ("pod-route-missing", "host-route-missing", "forward-drop", "dns-pod-down", "fdb-wrong-dst")


def test_here_faults_are_proven_on_the_netns_lab(lab):
    here = [n for n, f in FAULTS.items() if f.here is None and n in SAMPLE]
    assert len(here) == len(SAMPLE), "the sample names faults that run --here"
    r = prove(lab, *[a for n in here for a in ("--fault", n)])
    assert r.stdout.splitlines()[-1] == f"{len(here)} passed, 0 failed", r.stdout + r.stderr
    assert r.returncode == 0
    assert [line.split()[1] for line in r.stdout.splitlines()[:-1]] == here
    assert lab.drift() == [], "every fault cleared"


def test_a_fault_that_did_not_happen_fails_the_proof(lab):
    """The proof can fail: through a driver whose inject silently does nothing (a node where the
    commands never ran), diagnose finds no dns error on node-b, and prove says what it wanted."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("prove_catalog", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    class Lying(mod.Netns):
        def run(self, role, *argv):
            if "inject" in argv:
                argv = ("true",)
            return super().run(role, *argv)

    d = Lying(lab.name)
    fault = {**FAULTS["dns-blocked"].to_dict(), "role": "node-b"}
    why = mod.prove(d, fault, mod.pods(d))
    assert why is not None and why.startswith("want dns at node-b/host, got"), why
    assert lab.drift() == []
