"""What the cluster says (the API, or the lab's inventory) against what this node's kernel holds.

These checks cover what a snapshot cannot show by itself: nodes it does not hold (a node source
sees one node; the others are known only from their Node objects), pods' API identity, and the
Services' EndpointSlices. Nodes the snapshot does hold are compared by the walk itself.
"""

from __future__ import annotations

import ipaddress
import re

from .causes import Cause
from ..bundle import Host, NodeInfo
from ..netfilter.live import LiveSaves
from .base import ERROR, INFO, WARNING, Context, Finding, for_host, ip_cmd, vxlan_of

FLANNEL_ANNOTATION = "flannel.alpha.coreos.com/backend-data"


def _remote_nodes(ctx: Context, node: Host) -> list[NodeInfo]:
    """Inventory nodes other than `node` that the snapshot does not hold."""
    inv = ctx.bundle.inventory
    held = {h.node or h.name for h in ctx.nodes()}
    return [n for n in (inv.nodes if inv else []) if n.name != (node.node or node.name) and n.name not in held]


def _flannel_peers(ctx: Context):
    """(node, its VXLAN device, a remote node it should have flannel's triple for) for every pair."""
    for node in ctx.nodes():
        vx = vxlan_of(node)
        if vx is None:
            continue
        for remote in _remote_nodes(ctx, node):
            if remote.pod_cidr:
                yield node, vx, remote


def vtep_annotation(ctx: Context) -> list[Finding]:
    """flannel.1's neighbour and FDB entry for a remote node against that node's annotation: after a
    node reboots, its flannel.1 comes back with a new MAC and annotation; a node that kept the old
    MAC (neighbour and FDB agreeing with each other) sends VXLAN frames the remote drops."""
    out = []
    for node, vx, remote in _flannel_peers(ctx):
        if remote.vtep_mac:
            gw = remote.pod_cidr.split("/")[0]
            neigh = next((n for n in node.neigh if n.ifname == vx.name and n.dst == gw), None)
            if neigh is None or not neigh.lladdr or neigh.lladdr == remote.vtep_mac:
                continue
            fdb = next((f for f in node.fdb if f.ifname == vx.name and f.mac == neigh.lladdr and f.dst), None)
            agree = f"; its FDB entry agrees ({fdb.text()})" if fdb is not None else ""
            fix = " && ".join([
                ip_cmd(node, f"neigh replace {gw} lladdr {remote.vtep_mac} dev {vx.name} nud permanent"),
                ip_cmd(node, f"fdb replace {remote.vtep_mac} dev {vx.name} dst {remote.underlay_ip} self permanent",
                       tool="bridge")] + ([ip_cmd(node, f"fdb del {fdb.mac} dev {vx.name} dst {fdb.dst} self",
                                                  tool="bridge")] if fdb is not None else []))
            out.append(for_host(ctx, node, Cause.ARP, neigh.text(),
                                f"{vx.name} still sends {remote.name}'s pods ({remote.pod_cidr}) to VTEP MAC "
                                f"{neigh.lladdr}, but {remote.name}'s annotation {FLANNEL_ANNOTATION} says VtepMAC "
                                f"{remote.vtep_mac} (a stale VTEP: {remote.name}'s flannel.1 was re-created, e.g. by "
                                f"a reboot){agree}; {remote.name} drops the frames",
                                fix + f"  # or restart flannel on {node.name}, which rewrites its triples",
                                device=vx.name, evidence=[("neigh", neigh.text())] +
                                ([("fdb", fdb.text())] if fdb is not None else [])))
    return out


def podcidr_route(ctx: Context) -> list[Finding]:
    """Every other node's podCIDR needs a route on this node (flannel's `via <.0> dev flannel.1 onlink`)."""
    out = []
    for node, vx, remote in _flannel_peers(ctx):
        try:
            want = ipaddress.ip_network(remote.pod_cidr, strict=False)
        except ValueError:
            continue
        if not any(r.dst == str(want) and r.table == 254 for r in node.routes):
            gw = str(want.network_address)
            out.append(for_host(ctx, node, Cause.HOST_ROUTE, f"{want} via {gw} dev {vx.name} onlink",
                                f"no route for {remote.name}'s podCIDR {want}: pods here cannot reach its pods",
                                ip_cmd(node, f"route replace {want} via {gw} dev {vx.name} onlink")
                                + "  # or restart flannel on this node", device=vx.name))
    return out


def pod_identity(ctx: Context) -> list[Finding]:
    """A namespace nobody accounts for, and a pod whose namespace holds another IP than the API says."""
    from ..model.ipvs import SHARED_VIP_DEVICES

    inv = ctx.bundle.inventory
    api = {p.ip: p for p in (inv.pods if inv else []) if p.ip and not p.host_network}
    by_name = {(p.namespace, p.name): p for p in (inv.pods if inv else [])}
    known_ips = {a.address: h for h in ctx.bundle.hosts if h.identified_by != "unknown" for a in h.addrs
                 if not a.address.startswith("127.") and a.ifname not in SHARED_VIP_DEVICES}
    out = []
    for host in ctx.bundle.hosts:
        if host.kind != "pod":
            continue
        ips = [a.address for a in host.addrs if not a.address.startswith("127.")]
        if host.identified_by == "unknown":
            what = _describe_unknown(host)
            clash = next((ip for ip in ips if ip in api or ip in known_ips), None)
            if clash is not None:
                owner = api.get(clash)
                whose = f"{owner.namespace}/{owner.name}" if owner else known_ips[clash].name
                fix = (f"find it: `ps -o pid,args -p {','.join(map(str, host.pids[:3]))}`; " if host.pids else "") + \
                    (f"remove it: `ip netns del {host.netns}`" if host.netns and "/" not in host.netns else
                     f"remove its veth: {ip_cmd(_node_host(ctx, host), f'link del {host.host_veth}')}"
                     if host.host_veth else "stop its holder process")
                out.append(for_host(ctx, host, Cause.IP_CONFLICT, f"{clash} in {what}",
                                    f"a network namespace no pod accounts for ({what}) holds {whose}'s IP {clash}: "
                                    "ARP answers race, and packets for the pod can land there", fix,
                                    device=next((a.ifname for a in host.addrs if a.address == clash), None)))
            else:
                out.append(for_host(ctx, host, Cause.UNKNOWN, what,
                                    f"a network namespace attached to {host.node} that no pod accounts for ({what})",
                                    "check what created it (another CNI, a leftover of a deleted pod)", severity=INFO))
            continue
        if host.identified_by in ("hostname", "ip") and host.namespace is None:
            pod = next((p for (ns, n), p in by_name.items() if n == host.name and p.node == host.node), None)
            if pod is not None and pod.ip and pod.ip not in ips:
                out.append(for_host(ctx, host, Cause.IP_CONFLICT, f"{pod.namespace}/{pod.name} podIP {pod.ip}",
                                    f"the API says {pod.namespace}/{pod.name} has {pod.ip}, but its namespace holds "
                                    f"{', '.join(ips) or 'no address'}: Services and other pods send to the wrong place",
                                    f"kubectl -n {pod.namespace} delete pod {pod.name}  # let the CNI set it up again",
                                    severity=ERROR))
    return out


def _describe_unknown(host: Host) -> str:
    parts = [f"netns {host.netns}" if host.netns and "/" not in host.netns else f"netns inode {host.inode}"]
    if host.pids:
        parts.append(f"pid {host.pids[0]}")
    if host.host_veth:
        parts.append(f"host veth {host.host_veth} on {host.node}")
    return ", ".join(parts)


def _node_host(ctx: Context, host: Host) -> Host:
    return next((h for h in ctx.nodes() if (h.node or h.name) == host.node), host)


SEP = re.compile(r'^-A (?P<chain>KUBE-SEP-\S+) .*--comment "?(?P<svc>[^" ]+)"? .*-j DNAT .*--to-destination '
                 r'(?P<ip>\d+\.\d+\.\d+\.\d+)(?::(?P<port>\d+))?')


_KUBE_JUMP = re.compile(r" -j (KUBE-(?:SVC|SVL|EXT|FW|SEP)-\S+)")


def _service_rule_lines(node: Host, services: set[str]) -> list[tuple[str, list[str]]]:
    """(backend, rule lines) in which to look for these Services' KUBE-SEP rules: every line of a
    saved ruleset; of a big live one (netfilter/live.py), the KUBE-SERVICES and KUBE-NODEPORTS
    rules of these Services and the chains they lead to, read per chain, not 80,000 rules."""
    saves = node.iptables_save
    live = saves.live if isinstance(saves, LiveSaves) else {}
    out = [(b, dict.__getitem__(saves, b).splitlines()) for b in dict.keys(saves) if b not in live]
    if not live or not services:
        return out + [(b, []) for b in live]
    # one regex for all of them: KUBE-SERVICES has a line per Service port (10,000s)
    theirs = re.compile("|".join(rf'--comment "?{re.escape(s)}:' for s in sorted(services)))
    for backend, rules in live.items():
        lines, todo, seen = [], [], set()
        for entry in ("KUBE-SERVICES", "KUBE-NODEPORTS"):
            for line in rules.chain_lines("nat", entry):
                if theirs.search(line):
                    todo += _KUBE_JUMP.findall(line)
        while todo:  # breadth first: each level's chains are read side by side
            level = [c for c in dict.fromkeys(todo) if c not in seen]
            seen.update(level)
            rules.prefetch("nat", level)
            todo = []
            for chain in level:
                chain_lines = rules.chain_lines("nat", chain)
                lines += chain_lines
                for line in chain_lines:
                    todo += _KUBE_JUMP.findall(line)
        out.append((backend, lines))
    return out


def endpoint_rules(ctx: Context) -> list[Finding]:
    """kube-proxy's KUBE-SEP DNAT targets against the Services' EndpointSlices (iptables mode): a
    target that is no endpoint is stale; an endpoint with no rule is missing (kube-proxy out of sync)."""
    inv = ctx.bundle.inventory
    if inv is None or not inv.services or "endpointslices" in inv.gaps:
        return []
    eps = {f"{s.namespace}/{s.name}": set(s.endpoints) for s in inv.services}
    out = []
    for node in ctx.nodes():
        for backend, lines in _service_rule_lines(node, set(eps)):
            targets: dict[str, set[str]] = {}
            for line in lines:
                line = line.split("] ", 1)[-1] if line.startswith("[") else line
                m = SEP.match(line)
                if not m:
                    continue
                svc = m["svc"].rsplit(":", 1)[0]
                if svc not in eps:
                    continue
                targets.setdefault(svc, set()).add(m["ip"])
                if m["ip"] not in eps[svc]:
                    f = for_host(ctx, node, Cause.IPTABLES, line,
                                 f"kube-proxy on {node.name} still DNATs {svc} to {m['ip']}, which is not one of "
                                 f"its endpoints ({', '.join(sorted(eps[svc])) or 'none'}): a stale endpoint",
                                 f"restart kube-proxy on {node.name} so it resyncs with the EndpointSlices",
                                 severity=WARNING)
                    f.dnat_to = m["ip"]
                    out.append(f)
            for svc, want in eps.items():
                have = targets.get(svc, set())
                if have and want - have:
                    missing = ", ".join(sorted(want - have))
                    out.append(for_host(ctx, node, Cause.IPTABLES, f"{svc} endpoints {missing}",
                                        f"{svc}'s endpoints {missing} have no KUBE-SEP rule on {node.name} ({backend}): "
                                        "kube-proxy has not synced, so they get no traffic from here",
                                        f"restart kube-proxy on {node.name}", severity=WARNING))
    return out
