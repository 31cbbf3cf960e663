"""`podpath lab fault inject NAME --here`: one catalog fault on the node podpath runs on.

A Vagrant or kind node (or, in the tests, a netns-lab node entered with `ip netns exec`) is read
for the facts the catalog's plans need (faults.NodeFacts): flannel.1 and cni0, flannel's route,
neighbour and FDB entry for each peer, the underlay device, /run/flannel/subnet.env, this node's
pods (tracer.sources.discovery: kubelet's /etc/hostname in each pod namespace), the sysctls faults
change, and for IPVS `ipvsadm -Sn`. The plan is then the same one the netns lab runs: commands on
the node, and in a pod's namespace through `nsenter -t PID -n`. What undoes it is rendered at
inject time (from the facts before the break) and kept in /run/podpath/faults/, so `clear --here`
runs exactly that, even when the break hides the facts (a deleted route, a changed MTU).

Faults that need the API, another node or a container runtime (LabSteps in the plan) are refused
with the reason and what to do instead. Faults never go through the agent.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import NodeError, UsageError
from .faults import Fault
from .plans import SYSCTLS, Cmd, NodeFacts, PeerFacts, PodFacts

STATE_DIR = Path("/run/podpath/faults")
SUBNET_ENV = Path("/run/flannel/subnet.env")
NUD_PERMANENT = 0x80


# ---------------------------------------------------------------- facts of this node


def _sysctl(key: str) -> str | None:
    try:
        return Path("/proc/sys/" + key.replace(".", "/")).read_text().strip()
    except OSError:
        return None


def _subnet_env() -> dict[str, str]:
    try:
        text = SUBNET_ENV.read_text()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _link(ipr, name: str):
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        return ipr.link("get", ifname=name)[0]
    except NetlinkError:
        return None


def _addr(ipr, index: int) -> tuple[str, int] | None:
    for a in ipr.get_addr(family=socket.AF_INET, index=index):
        return a.get("IFA_ADDRESS"), a["prefixlen"]
    return None


def _pod_facts(found) -> dict[str, PodFacts]:
    """This node's pods by name, each with the address and MAC of its eth0 and its holder's pid."""
    from pyroute2 import IPRoute

    from ..netns import run_in

    def eth0():
        with IPRoute() as ipr:
            link = _link(ipr, "eth0")
            if link is None:
                return None, None
            a = _addr(ipr, link["index"])
            return (a[0] if a else None), link.get("IFLA_ADDRESS")

    out: dict[str, PodFacts] = {}
    for ns in found:
        if not ns.hostname or not ns.pids:
            continue
        ip, mac = run_in(ns.path, eth0)
        if ip:
            out[ns.hostname] = PodFacts(ns.hostname, ip, mac, ns.host_veth, ns.pids[0])
    return out


def _cluster_cidr(pod_cidr: str, found) -> str:
    """flannel's network: subnet.env, else the gateway route a pod has besides its default."""
    net = _subnet_env().get("FLANNEL_NETWORK")
    if net:
        return net
    from pyroute2 import IPRoute

    from ..netns import run_in

    def routes():
        with IPRoute() as ipr:
            return [f"{r.get('RTA_DST')}/{r['dst_len']}" for r in ipr.get_routes(family=socket.AF_INET, table=254)
                    if r.get("RTA_GATEWAY") and r["dst_len"]]
    mine = ipaddress.ip_network(pod_cidr)
    for ns in found:
        for cidr in run_in(ns.path, routes) if ns.hostname else []:
            if mine.subnet_of(ipaddress.ip_network(cidr)):
                return cidr
    raise NodeError(f"cannot tell the cluster CIDR: no {SUBNET_ENV} and no pod with a route to it; "
                    "is flanneld running on this node?")


def _ipvs() -> dict[str, list[str]]:
    """`ipvsadm -Sn` as "TCP vip:port" -> real servers (empty when ipvsadm or ip_vs is absent)."""
    try:
        text = subprocess.run(["ipvsadm", "-Sn"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    out: dict[str, list[str]] = {}
    proto = {"-t": "TCP", "-u": "UDP", "--tcp-service": "TCP", "--udp-service": "UDP"}
    for line in text.splitlines():
        w = line.split()
        if len(w) >= 3 and w[1] in proto:
            key = f"{proto[w[1]]} {w[2]}"
            if w[0] == "-A":
                out.setdefault(key, [])
            elif w[0] == "-a" and "-r" in w:
                out.setdefault(key, []).append(w[w.index("-r") + 1])
    return out


def node_facts(params: dict[str, str] | None = None) -> NodeFacts:
    """The facts of the node podpath runs on (its network namespace); refuses a non-flannel node."""
    from pyroute2 import IPRoute

    from ..sources.discovery import discover

    params = params or {}
    with IPRoute() as ipr:
        fl, cni0 = _link(ipr, "flannel.1"), _link(ipr, "cni0")
        missing = [n for n, link in (("flannel.1", fl), ("cni0", cni0)) if link is None]
        if missing:
            raise NodeError(f"this node has no {' and no '.join(missing)}: it is not a flannel VXLAN node; "
                            "--here works on a Vagrant or kind lab node (or `ip netns exec` into a netns-lab node)")
        data = fl.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
        if fl.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") != "vxlan" or data is None:
            raise NodeError("flannel.1 on this node is not a VXLAN device: --here needs flannel's VXLAN backend")
        under = ipr.link("get", index=data.get("IFLA_VXLAN_LINK"))[0] if data.get("IFLA_VXLAN_LINK") else None
        if under is None:
            raise NodeError("flannel.1 names no underlay device (flanneld --iface): cannot tell the node's network")
        gw = _addr(ipr, cni0["index"])
        base = _addr(ipr, fl["index"])
        if gw is None or base is None:
            raise NodeError("cni0 or flannel.1 has no IPv4 address: is flanneld running and a pod scheduled here?")
        neigh = {n.get("NDA_DST"): n.get("NDA_LLADDR") for n in ipr.get_neighbours(family=socket.AF_INET, ifindex=fl["index"])
                 if n["state"] & NUD_PERMANENT}
        fdb = {f.get("NDA_LLADDR"): f.get("NDA_DST") for f in ipr.fdb("dump", ifindex=fl["index"])
               if f["ifindex"] == fl["index"] and f.get("NDA_DST")}
        peers = []
        for r in ipr.get_routes(family=socket.AF_INET, table=254):
            via = r.get("RTA_GATEWAY")
            if r.get("RTA_OIF") == fl["index"] and via and via in neigh and neigh[via] in fdb:
                peers.append(PeerFacts(f"{r.get('RTA_DST')}/{r['dst_len']}", via, neigh[via], fdb[neigh[via]]))
    pod_cidr = str(ipaddress.ip_network(f"{gw[0]}/{gw[1]}", strict=False))
    found = discover(None)
    pods = _pod_facts(found)
    services = {k: v for k, v in params.items() if "/" in k}  # --param default/web=CLUSTER_IP
    for role, value in params.items():  # --param ROLE=IP (a pod elsewhere) or ROLE=POD_NAME (one of ours)
        if role in services:
            continue
        try:
            ipaddress.ip_address(value)
            pods[role] = PodFacts(role, value)
        except ValueError:
            if value not in pods:
                raise UsageError(f"--param {role}={value}: no pod {value!r} on this node "
                                 f"(its pods: {', '.join(sorted(pods)) or 'none'})") from None
            pods[role] = pods[value]
    return NodeFacts(
        name=socket.gethostname(), pod_cidr=pod_cidr, gateway=gw[0], subnet_base=base[0],
        vtep_mac=fl.get("IFLA_ADDRESS"), underlay_dev=under.get("IFLA_IFNAME"),
        underlay_ip=data.get("IFLA_VXLAN_LOCAL"), underlay_mtu=under.get("IFLA_MTU"),
        cluster_cidr=_cluster_cidr(pod_cidr, found), vxlan_port=data.get("IFLA_VXLAN_PORT") or 8472,
        peers=sorted(peers, key=lambda p: p.pod_cidr), pods=pods,
        sysctls={k: _sysctl(k) or v for k, v in SYSCTLS.items()}, services=services, ipvs=_ipvs())


# ---------------------------------------------------------------- running a plan here


@dataclass
class HereRun:
    fault: str
    done: list[str]  # the commands run (or, dry, that would run), as text
    saved: Path | None = None  # where the undo of an inject is kept
    nothing: str | None = None  # why nothing was done (already injected, not injected)


def _state_file(name: str) -> Path:
    """One file per (node namespace, fault): lab nodes entered with `ip netns exec` share /run."""
    from ..netns import inode

    return STATE_DIR / f"{inode(None)}-{name}.json"


def _argv(c: Cmd, facts_pods: dict[str, int | None]) -> list[str]:
    if c.on == "node":
        return list(c.argv)
    pid = facts_pods.get(c.on)
    if not pid:
        raise NodeError(f"pod {c.on} is gone from this node; nothing to undo in it")
    return ["nsenter", "-t", str(pid), "-n", *c.argv]


def _run(argv: list[str], check: bool) -> None:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise NodeError(f"`{argv[0]}` is not installed on this node; install it and retry") from None
    if check and p.returncode != 0:
        msg = (p.stderr or p.stdout).strip().splitlines()
        raise NodeError(f"`{shlex.join(argv)}` failed: {msg[-1] if msg else f'exit {p.returncode}'}")


def plan_here(fault: Fault, params: dict[str, str] | None = None):
    """The fault's plan rendered from this node's facts (and the facts), its pods checked present."""
    facts = node_facts(params)
    plan = fault.plan(facts)
    for c in plan.commands():
        if c.on != "node":
            facts.pod(c.on)  # raises, naming this node's pods, when the pod is not here
    return facts, plan


def inject(fault: Fault, params: dict[str, str] | None = None, dry_run: bool = False) -> HereRun:
    from ..errors import require_root

    if fault.here:  # before anything else: no node, root or state can change the answer
        raise UsageError(f"{fault.name} cannot be injected with --here: {fault.here}")
    if not dry_run:
        require_root(f"`podpath lab fault inject {fault.name} --here`")
    state = _state_file(fault.name)
    if state.exists() and not dry_run:
        return HereRun(fault.name, [], nothing=f"fault {fault.name} is already injected on this node ({state}); "
                                                "nothing changed")
    facts, plan = plan_here(fault, params)
    resolve = lambda role: facts.pod(role).name  # noqa: E731 - a pod role to the real pod name
    pids = {c.on: facts.pod(c.on).pid for c in plan.commands() if c.on != "node"}
    clear = [{"on": c.on if c.on == "node" else resolve(c.on), "argv": list(c.argv), "check": c.check}
             for c in plan.clear]
    done = []
    if dry_run:
        return HereRun(fault.name, [_text(c, resolve) for c in plan.inject] + ["# clear:"] +
                       [_text(c, resolve) for c in plan.clear])
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    # the undo is written first: a half-applied inject can still be cleared
    state.write_text(json.dumps({"fault": fault.name, "node": facts.name, "clear": clear}, indent=1))
    try:
        for c in plan.inject:
            _run(_argv(c, pids), c.check)
            done.append(_text(c, resolve))
    except NodeError as e:  # leave the node as it was: every undo, best effort, and no state
        for c in plan.clear:
            try:
                _run(_argv(c, pids), check=False)
            except NodeError:
                pass
        state.unlink()
        raise NodeError(f"injecting {fault.name} failed: {e}; what it had changed is undone") from None
    return HereRun(fault.name, done, state)


def clear(fault: Fault) -> HereRun:
    from ..errors import require_root
    from ..sources.discovery import discover

    require_root(f"`podpath lab fault clear {fault.name} --here`")
    state = _state_file(fault.name)
    try:
        saved = json.loads(state.read_text())
    except OSError:
        return HereRun(fault.name, [], nothing=f"fault {fault.name} is not injected on this node (no {state}); "
                                                "nothing to clear")
    except ValueError:
        raise NodeError(f"{state} is not readable JSON; remove it and undo the fault by hand") from None
    pids = {ns.hostname: ns.pids[0] for ns in discover(None) if ns.hostname and ns.pids}
    done, failed = [], []
    for c in saved["clear"]:  # every step, even after one fails: undo as much as can be undone
        step = Cmd(c["on"], tuple(c["argv"]), c["check"])
        try:
            _run(_argv(step, pids), step.check)
            done.append(_text(step, lambda n: n))
        except NodeError as e:
            failed.append(str(e))
    if failed:
        raise NodeError(f"clearing {fault.name}: {failed[0]}" + (f" (and {len(failed) - 1} more)" if failed[1:] else "")
                        + f"; fix it by hand, then remove {state}")
    state.unlink()
    return HereRun(fault.name, done)


def _text(c: Cmd, resolve) -> str:
    return shlex.join(c.argv) if c.on == "node" else f"nsenter -t <{resolve(c.on)}> -n {shlex.join(c.argv)}"
