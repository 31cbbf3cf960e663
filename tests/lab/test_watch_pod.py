"""`podpath watch --pod P` in the netns lab: only that pod's drops (and its nodes'), none of
another pod's; an unknown pod is a one-line error. Real BPF, real UDP to closed ports."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT_BPF_LAB, bpf_lab

pytestmark = ROOT_BPF_LAB

EXE = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "podpath")


def _send(lab, src: str, dst: str, n: int, port: int) -> None:
    from podpath.tracer.netns import run_in

    def body():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(n):
                s.sendto(b"podpath", (dst, port))
                time.sleep(0.001)  # no burst for a socket buffer to drop
    run_in(lab.netns(src), body)


@pytest.fixture(scope="module")
def lab(request):
    return bpf_lab(request, "fp")


def test_pod_filter_keeps_one_pods_drops(lab, request, tmp_path):
    from podpath.tracer.lab.topology import pod
    from podpath.tracer.watch.store import read_table

    out = tmp_path / "w"
    w = subprocess.Popen([EXE, "watch", "--lab", lab.name, "--pod", "pod-b", "--duration", "6", "-o", str(out)],
                         stderr=subprocess.PIPE, text=True)
    request.addfinalizer(lambda: w.poll() is None and (w.kill(), w.wait()))
    line = w.stderr.readline()
    assert "recording drops" in line, line + w.stderr.read()
    _send(lab, "pod-a2", pod("pod-b").ip, 200, 9)  # dies in pod-b: nobody listens on :9
    _send(lab, "pod-a", "127.0.0.1", 150, 9)  # dies in pod-a, which is not watched
    _, err = w.communicate(timeout=60)
    assert w.returncode == 0, err
    d = read_table([out], "drops").to_pandas()
    nosock = d[d.drop_reason_desc == "NO_SOCKET"]
    assert int(nosock[nosock.pod_name == "pod-b"].packets.sum()) == 200
    assert set(d.pod_name.dropna()) == {"pod-b"}, d.groupby("pod_name").packets.sum()
    assert set(nosock[nosock.destination_port == 9].pod_name) == {"pod-b"}  # pod-a's 150 are not there


def test_unknown_pod_is_a_one_line_error(lab, tmp_path):
    r = subprocess.run([EXE, "watch", "--lab", lab.name, "--pod", "nope", "--duration", "1", "-o", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "no pod 'nope'" in r.stderr and "pod-b" in r.stderr, r.stderr
