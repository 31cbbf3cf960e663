#!/usr/bin/env python3
"""Prove the fault catalog on a lab, the way an operator would: for each fault `--here` can run
there, inject it on its node, run `podpath diagnose` on the node it blames (the flow from there
when the flow starts or ends there, and node-wide), check it names the fault's cause at its place,
and clear it. One driver per lab decides only how a command reaches a node:

    labs/prove_catalog.py netns LAB        # ip netns exec LAB-node-x   (runs here: tests/lab)
    labs/prove_catalog.py kind [CLUSTER]   # nsenter into the kind node container's namespace
    labs/prove_catalog.py vagrant          # vagrant ssh node-x -c 'sudo ...'
    ... [--fault NAME ...]                 # only these faults

Ends with one line `N passed, M failed`; exit 1 when any failed. Pods on the other node are given
to `--here` as `--param ROLE=IP`, read from the cluster (`kubectl get pods`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROLES = ("pod-a", "pod-a2", "pod-b", "coredns")  # the catalog's pod roles
SERVICES = {"svc/default/web": ("pod-a2", "pod-b"), "svc/kube-system/kube-dns": ("coredns",)}  # their endpoints


class Driver:
    """How a command reaches a lab node, and the kubeconfig podpath uses there."""

    podpath = "podpath"
    kubeconfig = "/etc/kubernetes/admin.conf"

    def node_name(self, role: str) -> str:
        return role

    def argv(self, role: str, argv: list[str]) -> list[str]:
        raise NotImplementedError

    def run(self, role: str, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(role, list(argv)), capture_output=True, text=True, timeout=300)


class Netns(Driver):
    def __init__(self, lab: str):
        self.lab = lab
        self.podpath = str(Path(sys.executable).with_name("podpath"))
        self.kubeconfig = f"/run/podpath/labs/{lab}/kubeconfig"

    def argv(self, role, argv):
        return ["ip", "netns", "exec", f"{self.lab}-{role}", *argv]


class Kind(Driver):
    def __init__(self, cluster: str):
        self.cluster = cluster
        self.podpath = os.environ.get("PODPATH", "podpath")
        self.nodes = {}
        out = subprocess.run(["kubectl", "--context", f"kind-{cluster}", "get", "nodes", "-o", "json"],
                             capture_output=True, text=True, check=True).stdout
        for n in json.loads(out)["items"]:
            self.nodes[n["metadata"]["labels"].get("podpath.io/lab-node")] = n["metadata"]["name"]
        # podpath inside a node's namespace reaches the API server by the control plane's address
        cp = self.nodes["node-a"]
        ip = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", cp],
                            capture_output=True, text=True, check=True).stdout.strip()
        text = subprocess.run(["kind", "get", "kubeconfig", "--internal", "--name", cluster],
                              capture_output=True, text=True, check=True).stdout
        path = ROOT / "kind" / ".kubeconfig-internal"
        path.write_text(text.replace(f"https://{cp}:6443", f"https://{ip}:6443"))
        self.kubeconfig = str(path)

    def node_name(self, role):
        return self.nodes[role]

    def argv(self, role, argv):
        pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", self.nodes[role]],
                             capture_output=True, text=True, check=True).stdout.strip()
        return ["nsenter", "-t", pid, "-n", *argv]


class Vagrant(Driver):
    kubeconfig = "/root/podpath-admin.conf"

    def __init__(self):
        # node-b has only its kubelet's credentials: give both nodes node-a's admin kubeconfig
        text = subprocess.run(["vagrant", "ssh", "node-a", "-c", "sudo cat /etc/kubernetes/admin.conf"],
                              capture_output=True, text=True, check=True).stdout
        for role in ("node-a", "node-b"):
            subprocess.run(["vagrant", "ssh", role, "-c", f"sudo tee {self.kubeconfig} >/dev/null"], input=text,
                           text=True, check=True)

    def argv(self, role, argv):
        return ["vagrant", "ssh", role, "-c", "sudo " + shlex.join(argv)]


def flow_args(flow: dict) -> list[str]:
    out = [flow["src"], flow["dst"]]
    if flow["proto"] != "icmp":
        out += ["--proto", flow["proto"]]
    if flow.get("port"):
        out += ["--port", str(flow["port"])]
    if flow.get("size"):
        out += ["--size", str(flow["size"] + 28)]
    return out


def pods(d: Driver) -> dict[str, tuple[str, str]]:
    """Role -> (node, ip) of the lab's pods, as the cluster lists them (CoreDNS: its first pod)."""
    r = d.run("node-a", "kubectl", "--kubeconfig", d.kubeconfig, "get", "pods", "-A", "-o", "json")
    if r.returncode != 0:
        sys.exit(f"prove: cannot list pods: {r.stderr.strip()}")
    out: dict[str, tuple[str, str]] = {}
    for p in json.loads(r.stdout)["items"]:
        name, node, ip = p["metadata"]["name"], p["spec"].get("nodeName"), p.get("status", {}).get("podIP")
        for role in ROLES:
            if (name == role or name.startswith(role + "-")) and role not in out and ip:
                out[role] = (node, ip)
    return out


def prove(d: Driver, fault: dict, where: dict[str, tuple[str, str]]) -> str | None:
    """None when the fault broke what it should and diagnose named it on its node; else why not."""
    role, blamed = fault["role"], fault["node"]
    local = {r for r, (n, _) in where.items() if n == d.node_name(role)}
    params = [a for r, (_, ip) in where.items() if r not in local for a in ("--param", f"{r}={ip}")]
    r = d.run(role, d.podpath, "lab", "fault", "inject", fault["name"], "--here", *params)
    if r.returncode != 0:
        return f"inject: {r.stderr.strip()}"
    try:
        flow = fault["flow"]
        ends = {where.get(e, ("", ""))[0] for e in (flow["src"], flow["dst"])}
        ends |= {where[r][0] for svc, backs in SERVICES.items() if flow["dst"].startswith(svc)
                 for r in backs if r in where}
        runs = [["diagnose", *flow_args(flow)]] if d.node_name(blamed) in ends else []
        runs.append(["diagnose"])
        found = set()
        for args in runs:
            out = d.run(blamed, d.podpath, *args, "--kubeconfig", d.kubeconfig, "-o", "json")
            if out.returncode not in (0, 1):
                return f"{' '.join(args)}: {out.stderr.strip()}"
            found |= {(f["cause"], f["node"], f["location"]) for f in json.loads(out.stdout)["findings"]
                      if f["severity"] == "error"}
        want = (fault["cause"], d.node_name(blamed))
        hit = [f for f in found if f[:2] == want and (f[2] == fault["location"] or
                                                     f[2].startswith(fault["location"] + "-"))]
        return None if hit else f"want {fault['cause']} at {blamed}/{fault['location']}, got {sorted(found)}"
    finally:
        c = d.run(role, d.podpath, "lab", "fault", "clear", fault["name"], "--here")
        if c.returncode != 0:
            print(f"prove: clearing {fault['name']} failed: {c.stderr.strip()}", file=sys.stderr)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("lab", choices=["netns", "kind", "vagrant"])
    ap.add_argument("name", nargs="?", help="netns: the lab's name; kind: the cluster (podpath)")
    ap.add_argument("--fault", action="append", default=[], help="only this fault (repeat for several)")
    a = ap.parse_args(argv)
    d = Netns(a.name or "pp") if a.lab == "netns" else Kind(a.name or "podpath") if a.lab == "kind" else Vagrant()
    from podpath.tracer.lab.faults import catalog  # roles and flows, as `lab fault list` gives them

    faults = [{**f.to_dict(), "role": f.role} for f in catalog().values()
              if f.here is None and a.lab in f.labs and (not a.fault or f.name in a.fault)]
    where = pods(d)
    passed = failed = 0
    for f in faults:
        why = prove(d, f, where)
        print(f"{'ok  ' if why is None else 'FAIL'} {f['name']}" + ("" if why is None else f": {why}"))
        passed, failed = passed + (why is None), failed + (why is not None)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
