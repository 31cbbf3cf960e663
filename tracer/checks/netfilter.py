"""Netfilter: rules that drop or reject the flow, Services without endpoints, DNS."""

from __future__ import annotations

import ipaddress
import re

from .causes import Cause
from ..model.reasons import ConntrackFacts, Reason, RuleTrail, RuleVerdict
from ..model.path import ct_text
from ..netfilter.evaluate import RuleRef
from ..netfilter.live import rule_texts
from .base import ERROR, INFO, WARNING, Context, Finding, for_host, from_hop, known_addresses, ns_cmd, pasted

NO_ENDPOINTS = re.compile(r'"?(?P<svc>[^"\s]+/[^"\s:]+):?(?P<port>\S*) has no endpoints"?')
DNS_SERVICE = "kube-system/kube-dns"
# kube-proxy's own ipsets (IPVS mode): their contents are not in the snapshot.
KUBE_PROXY_IPSET = re.compile(r"--match-set (KUBE-[\w-]+) ")


def _rule(hop) -> RuleRef | None:
    """The rule that decided a netfilter hop (none for the dns check's no_listener hops)."""
    return RuleRef(**hop.payload.rule) if isinstance(hop.payload, RuleVerdict) and hop.payload.rule else None


def _rule_fix(rule: RuleRef, host=None) -> str:
    m = NO_ENDPOINTS.search(rule.comment or rule.text)
    if m:
        ns, name = m["svc"].split("/", 1)
        return (f"kubectl -n {ns} get endpointslices -l kubernetes.io/service-name={name}  # kube-proxy rejects "
                "until the Service has ready endpoints: check its selector and the pods' readiness")
    cmd = ns_cmd(host, rule.command()) if host is not None else rule.command()
    return cmd + "  # delete the rule, or fix it to let the pod CIDR through"


def _describe(hop, rule: RuleRef | None) -> str:
    if rule is None:
        return hop.detail
    m = NO_ENDPOINTS.search(rule.comment or rule.text)
    if m:
        return f"Service {m['svc']} has no endpoints: kube-proxy's rule rejects the packet ({rule.table}/{rule.chain})"
    where = f"rule {rule.number}" if rule.number else "policy"
    return (f"{hop.hook} hook in {hop.host}: {rule.backend} {rule.table}/{rule.chain} {where} "
            f"{'rejects' if hop.reason == Reason.NF_REJECT else 'drops'} the packet: {rule.text}")


def iptables(ctx: Context) -> list[Finding]:
    out = []
    for _, hop in ctx.hops(Reason.NF_DROP, Reason.NF_REJECT):
        rule = _rule(hop)
        if ctx.is_dns:
            continue  # the dns check owns drops on the DNS path
        out.append(from_hop(hop, Cause.IPTABLES, rule.text if rule else hop.detail, _describe(hop, rule),
                            _rule_fix(rule, ctx.host(hop.host)) if rule else "inspect the hook's rules with nft list ruleset"))
    unsupported = {}
    for path in ctx.paths:
        for hop in path.hops:
            for r in hop.payload.unsupported if isinstance(hop.payload, RuleTrail) else []:
                unsupported.setdefault((hop.host, r["text"]), hop)
    ipset_rules: dict[str, tuple] = {}
    for (host, text), hop in unsupported.items():
        m = KUBE_PROXY_IPSET.search(text)
        if m:  # one note per node, not one per rule: kube-proxy's IPVS mode has a dozen of them
            ipset_rules.setdefault(host, (hop, set()))[1].add(m.group(1))
            continue
        f = from_hop(hop, Cause.IPTABLES, text, f"could not evaluate this rule in {host} (match or target "
                     "unknown to podpath); treated as not matching", "check it by hand or run "
                     "`podpath trace` for the kernel's own answer", severity=INFO)
        f.hand_check = True
        out.append(f)
    for host, (hop, sets) in ipset_rules.items():
        names = sorted(sets)
        f = from_hop(hop, Cause.IPTABLES, " ".join(names),
                     f"kube-proxy's ipset rules in {host} were not evaluated (ipset contents are not in the "
                     "snapshot); treated as not matching, and IPVS's own table decides the path",
                     ns_cmd(ctx.host(host), f"ipset list {names[0]}") + "  # and the others, to check them by hand",
                     severity=INFO)
        f.hand_check = True
        out.append(f)
    out += forward_drop(ctx)
    return out


def cluster_cidr(ctx: Context) -> ipaddress.IPv4Network | None:
    """The cluster's pod CIDR, where the snapshot says it: flannel's FLANNEL_NETWORK, or the
    `10.244.0.0/16 via <gw> dev eth0` route flannel's CNI gives every pod."""
    for h in ctx.bundle.hosts:
        value = h.flannel_env.get("FLANNEL_NETWORK")
        if value:
            try:
                return ipaddress.IPv4Network(value, strict=False)
            except ValueError:
                pass
    for h in ctx.bundle.hosts:
        if h.kind == "pod":
            r = next((r for r in h.routes if r.dev == "eth0" and r.gateway and r.dst != "default"
                      and r.dst.endswith(("/8", "/12", "/14", "/16"))), None)
            if r:
                return ipaddress.IPv4Network(r.dst, strict=False)
    return None


_SAVE_RULE = re.compile(r"^(?:\[\d+:\d+\] )?-A (\S+) (.*)$")


def forward_rules(text: str) -> tuple[str | None, dict[str, list[str]]]:
    """FORWARD's policy and the rules of every chain in the filter table of an iptables-save text."""
    policy, chains, table = None, {}, None
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif table == "filter" and line.startswith(":FORWARD "):
            policy = line.split()[1]
        elif table == "filter":
            m = _SAVE_RULE.match(line)
            if m:
                chains.setdefault(m.group(1), []).append(m.group(2))
    return policy, chains


def accepts(chains: dict[str, list[str]], chain: str, cidr: ipaddress.IPv4Network, opt: str, seen: set) -> bool:
    """Does some rule reachable from `chain` ACCEPT new packets whose `opt` (-s/-d) is in cidr?"""
    if chain in seen:
        return False
    seen.add(chain)
    for rule in chains.get(chain, []):
        words = rule.split()
        target = words[words.index("-j") + 1] if "-j" in words[:-1] else None
        if target is None or "RELATED,ESTABLISHED" in rule and "NEW" not in rule:
            continue
        if target in chains:
            if accepts(chains, target, cidr, opt, seen):
                return True
            continue
        if target != "ACCEPT":
            continue
        value = words[words.index(opt) + 1] if opt in words[:-1] else None
        conditions = {w for w in words if w.startswith("-") and w not in ("-m", "-j", "--comment", "-s", "-d")}
        if value is None and not conditions - {"comment"}:
            return True  # unconditional ACCEPT
        try:
            if value and "!" not in words and cidr.subnet_of(ipaddress.IPv4Network(value, strict=False)):
                return True
        except ValueError:
            continue
    return False


def forward_drop(ctx: Context) -> list[Finding]:
    """FORWARD policy DROP with no ACCEPT for the cluster CIDR: pod traffic crossing a node is dropped
    (docker sets the policy to DROP; flannel or kube-proxy must accept the pod CIDR)."""
    cidr = cluster_cidr(ctx)
    if cidr is None:
        return []
    out = []
    for host in ctx.nodes():
        if not pasted(host):
            continue  # live snapshots: the walk evaluates FORWARD itself, rule by rule
        for backend, text in host.iptables_save.items():
            policy, chains = forward_rules(text)
            if policy != "DROP":
                continue
            missing = [opt for opt in ("-s", "-d") if not accepts(chains, "FORWARD", cidr, opt, set())]
            if not missing:
                continue
            fix = " && ".join(ns_cmd(host, f"iptables -A FORWARD {opt} {cidr} -j ACCEPT") for opt in missing)
            f = for_host(ctx, host, Cause.IPTABLES, f":FORWARD DROP ({backend} filter)",
                         f"{host.name}'s FORWARD policy is DROP and no rule accepts packets "
                         f"{' or '.join('from' if o == '-s' else 'to' for o in missing)} the cluster CIDR {cidr}: "
                         "pod traffic through this node is dropped",
                         fix + "  # or flannel's --iptables-forward-rules / kube-proxy's --cluster-cidr",
                         evidence=[("rule", f":FORWARD DROP ({backend} filter)")])
            f.hook = "forward"
            out.append(f)
    return out


DNAT_TO = re.compile(r"-j DNAT --to-destination (?P<ip>\d+\.\d+\.\d+\.\d+)(?::(?P<port>\d+))?")


def stale_dnat(ctx: Context) -> list[Finding]:
    """kube-proxy DNATs to an address no pod or node has: the endpoint's pod is gone and kube-proxy
    has not synced (or the rule was written by hand). The packet goes nowhere: ARP fails where
    the address should be, far from the rule that sent it there."""
    owned = known_addresses(ctx.bundle)
    out, seen = [], set()
    for path in ctx.paths:
        for hop in path.hops:
            if hop.point != "netfilter" or "DNAT" not in (hop.detail or ""):
                continue
            for r in hop.payload.rules if isinstance(hop.payload, RuleTrail) else []:
                m = DNAT_TO.search(r.get("text", ""))
                if not m or m["ip"] in owned or (hop.host, r["text"]) in seen:
                    continue
                seen.add((hop.host, r["text"]))
                rule = RuleRef(**r)
                svc = (rule.comment or "").split(":")[0] or "the Service"
                live = _endpoints_of(ctx, svc)
                msg = (f"kube-proxy in {hop.host} DNATs {svc} to {m['ip']}" + (f":{m['port']}" if m["port"] else "")
                       + ", an address no pod has (a stale endpoint: its pod is gone)"
                       + (f"; the Service's endpoints are {', '.join(live)}" if live else ""))
                fix = (ns_cmd(ctx.host(hop.host), rule.command()) + "  # and restart kube-proxy on this node, "
                       "so it resyncs its rules with the Service's endpoints")
                f = from_hop(hop, Cause.IPTABLES, rule.text, msg, fix)
                f.dnat_to = m["ip"]
                out.append(f)
    return out


def stale_conntrack(ctx: Context) -> list[Finding]:
    """A conntrack entry that still DNATs a Service's ClusterIP to an address no pod has: packets of
    that connection (a UDP client reusing its source port) keep going to the dead endpoint, whatever
    kube-proxy's rules say now. kube-proxy flushes such UDP entries when an endpoint goes; this one
    survived."""
    svcs = {s.cluster_ip: s for s in (ctx.bundle.inventory.services if ctx.bundle.inventory else [])}
    owned = known_addresses(ctx.bundle)
    flow = ctx.flow
    out = []
    for node in ctx.nodes():
        for c in node.conntrack:
            svc = svcs.get(c.dst)
            if svc is None or not c.reply_src or c.reply_src == c.dst or c.reply_src in owned:
                continue
            name = f"{svc.namespace}/{svc.name}"
            ours = flow is not None and (c.src, c.dst, c.sport, c.dport) == (flow.src, flow.dst, flow.sport, flow.dport)
            cause = Cause.DNS if name == DNS_SERVICE else Cause.IPTABLES
            msg = (f"conntrack in {node.name} still sends {c.src}:{c.sport} → {name} ({c.dst}:{c.dport}) to "
                   f"{c.reply_src}:{c.reply_sport}, an address no pod has: a stale entry of a removed endpoint, "
                   "refreshed by every packet the client sends from the same port")
            fix = ns_cmd(node, f"conntrack -D -p {c.proto} --orig-src {c.src} --orig-dst {c.dst}"
                         + (f" --orig-port-src {c.sport} --orig-port-dst {c.dport}" if c.sport is not None else ""))
            hop = next((h for p in ctx.paths for h in p.hops if isinstance(h.payload, ConntrackFacts)
                        and h.payload.conntrack == ct_text(c)), None)
            if hop is not None:  # the model took this entry's NAT: the finding sits where it did
                f = from_hop(hop, cause, ct_text(c), msg, fix)
            else:
                f = for_host(ctx, node, cause, ct_text(c), msg, fix, severity=ERROR if ours else WARNING,
                             evidence=[("conntrack", ct_text(c))])
            f.conntrack = c
            out.append(f)
    return out


def _endpoints_of(ctx: Context, svc: str) -> list[str]:
    inv = ctx.bundle.inventory
    for s in (inv.services if inv else []):
        if f"{s.namespace}/{s.name}" == svc:
            return list(s.endpoints)
    return []


def dns(ctx: Context) -> list[Finding]:
    out = []
    if ctx.is_dns:
        for _, hop in ctx.hops(Reason.NF_DROP, Reason.NF_REJECT, Reason.NO_LISTENER):
            rule = _rule(hop)
            if hop.reason == Reason.NO_LISTENER:
                msg, obj = f"no DNS server listens on {hop.payload.proto} port 53 in {hop.host}", hop.detail
                fix = "check the DNS pod (kubectl -n kube-system logs -l k8s-app=kube-dns)"
            else:
                what = "DNS answers are " if hop.direction == "reply" else "DNS queries are "
                msg, obj, fix = what + ("rejected: " if hop.reason == Reason.NF_REJECT else "dropped: ") + \
                    _describe(hop, rule), rule.text if rule else hop.detail, _rule_fix(rule, ctx.host(hop.host)) if rule else ""
            out.append(from_hop(hop, Cause.DNS, obj, msg, fix))
    for node in ctx.nodes():
        # kube-proxy writes "has no endpoints" rules in the filter table only: a big live ruleset
        # is not read whole for it
        for _, text in rule_texts(node.iptables_save, ("filter",)):
            line = next((l for l in text.splitlines() if f"{DNS_SERVICE}:" in l and "has no endpoints" in l), None)
            if line:
                f = for_host(ctx, node, Cause.DNS, line.split("] ", 1)[-1],
                             "cluster DNS has no endpoints: every lookup in the cluster fails",
                             "kubectl -n kube-system get pods -l k8s-app=kube-dns -o wide  # bring CoreDNS back",
                             severity=ERROR if ctx.is_dns or not ctx.paths else WARNING)
                f.rejects = "REJECT" in line  # kube-proxy's rule for a Service without endpoints
                out.append(f)
                break
    return out

