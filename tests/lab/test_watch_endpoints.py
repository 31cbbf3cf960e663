"""`podpath watch --kubeconfig`: EndpointSlice changes from the lab's stand-in API server (a real
HTTP watch through the official client, from inside node-a), stamped when they arrive. The
Kubernetes API is the stand-in (this machine runs no cluster); the lab, its kube-proxy rules and
the watch's BPF probe are real."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from conftest import ROOT_BPF_LAB, bpf_lab

pytestmark = ROOT_BPF_LAB

EXE = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "podpath")


def test_endpoint_changes_are_stamped_events(request, tmp_path):
    from podpath.tracer.watch.store import read_table

    lab = bpf_lab(request, "fe")
    out = tmp_path / "w"
    w = subprocess.Popen([EXE, "watch", "--lab", lab.name, "--kubeconfig", str(lab.kubeconfig), "--duration", "7",
                          "-o", str(out)], stderr=subprocess.PIPE, text=True)
    request.addfinalizer(lambda: w.poll() is None and (w.kill(), w.wait()))
    line = w.stderr.readline()  # once listed: every later change is an event
    assert "recording drops" in line, line + w.stderr.read()
    t0 = time.time()
    lab.inject("svc-no-endpoints")
    t1 = time.time()
    time.sleep(1.5)
    t2 = time.time()
    lab.clear("svc-no-endpoints")
    t3 = time.time()
    _, err = w.communicate(timeout=60)
    assert w.returncode == 0, err
    ch = read_table([out], "changes").to_pandas()
    ep = ch[(ch.kind == "endpoints") & (ch.node_name == "node-a")].sort_values("time")
    assert not (ep.action == "error").any(), ep.detail.tolist()
    web = ep[ep.object.str.startswith("default/web ")]
    # the stand-in, like the endpointslice controller, deletes a Service's slice when no pod is left
    assert list(web.action) == ["del", "add"], ep[["time", "action", "object", "detail"]].to_string()
    gone, back = web.iloc[0], web.iloc[1]
    assert t0 <= gone.time.timestamp() <= t1 + 1 and t2 <= back.time.timestamp() <= t3 + 1
    assert gone.detail.startswith("deleted (had ports 8080/TCP; endpoints: 10.244."), gone.detail
    assert back.detail.count(" ready") == 2, back.detail
    # a Service is the cluster's: every node's file has it
    assert len(ch[(ch.kind == "endpoints") & (ch.node_name == "node-b")]) == len(ep)


def test_a_missing_kubeconfig_is_a_one_line_error(tmp_path):
    r = subprocess.run([EXE, "watch", "--kubeconfig", str(tmp_path / "nope"), "--duration", "1", "-o", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "nope' does not exist" in r.stderr, r.stderr
