"""Netfilter: rules that drop or reject the flow, Services without endpoints, DNS, IPVS."""

from __future__ import annotations

import re

from ..netfilter.evaluate import RuleRef
from .base import ERROR, INFO, WARNING, Context, Finding, for_host, from_hop, ns_cmd

NO_ENDPOINTS = re.compile(r'"?(?P<svc>[^"\s]+/[^"\s:]+):?(?P<port>\S*) has no endpoints"?')
DNS_SERVICE = "kube-system/kube-dns"


def _rule(hop) -> RuleRef | None:
    return RuleRef(**hop.data["rule"]) if hop.data.get("rule") else None


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
            f"{'rejects' if hop.reason == 'nf_reject' else 'drops'} the packet: {rule.text}")


def iptables(ctx: Context) -> list[Finding]:
    out = []
    for _, hop in ctx.hops("nf_drop", "nf_reject"):
        rule = _rule(hop)
        if ctx.is_dns:
            continue  # the dns check owns drops on the DNS path
        out.append(from_hop(hop, "iptables", rule.text if rule else hop.detail, _describe(hop, rule),
                            _rule_fix(rule, ctx.host(hop.host)) if rule else "inspect the hook's rules with nft list ruleset"))
    unsupported = {}
    for path in ctx.paths:
        for hop in path.hops:
            for r in hop.data.get("unsupported") or []:
                unsupported.setdefault((hop.host, r["text"]), hop)
    for (host, text), hop in unsupported.items():
        out.append(from_hop(hop, "iptables", text, f"could not evaluate this rule in {host} (match or target "
                            "unknown to podpath); treated as not matching", "check it by hand or run "
                            "`podpath trace` for the kernel's own answer", severity=INFO))
    return out


def dns(ctx: Context) -> list[Finding]:
    out = []
    if ctx.is_dns:
        for _, hop in ctx.hops("nf_drop", "nf_reject", "no_listener"):
            rule = _rule(hop)
            if hop.reason == "no_listener":
                msg, obj = f"no DNS server listens on {hop.data['proto']} port 53 in {hop.host}", hop.detail
                fix = "check the DNS pod (kubectl -n kube-system logs -l k8s-app=kube-dns)"
            else:
                msg, obj, fix = "DNS queries are " + ("rejected: " if hop.reason == "nf_reject" else "dropped: ") + \
                    _describe(hop, rule), rule.text if rule else hop.detail, _rule_fix(rule, ctx.host(hop.host)) if rule else ""
            out.append(from_hop(hop, "dns", obj, msg, fix))
    for node in ctx.nodes():
        for text in node.iptables_save.values():
            line = next((l for l in text.splitlines() if f"{DNS_SERVICE}:" in l and "has no endpoints" in l), None)
            if line:
                out.append(for_host(ctx, node, "dns", line.split("] ", 1)[-1],
                                    "cluster DNS has no endpoints: every lookup in the cluster fails",
                                    "kubectl -n kube-system get pods -l k8s-app=kube-dns -o wide  # bring CoreDNS back",
                                    severity=ERROR if ctx.is_dns or not ctx.paths else WARNING))
                break
    return out


def ipvs(ctx: Context) -> list[Finding]:
    """IPVS virtual services read from the node (or pasted `ipvsadm -Ln`)."""
    out = []
    live = {a.address for h in ctx.bundle.hosts if h.kind == "pod" for a in h.addrs}
    for host in ctx.bundle.hosts:
        for svc in host.ipvs:
            name = f"{svc.proto} {svc.address}:{svc.port} {svc.scheduler}"
            if not svc.dests:
                out.append(for_host(ctx, host, "ipvs", name, f"IPVS service {name} has no real servers",
                                    "check the Service's endpoints; kube-proxy adds real servers for ready pods"))
            for d in svc.dests:
                if d.weight == 0:
                    out.append(for_host(ctx, host, "ipvs", f"{name} -> {d.address}:{d.port} weight 0",
                                        f"real server {d.address}:{d.port} has weight 0 (left behind by a "
                                        "terminating endpoint?)", f"ipvsadm -e -t {svc.address}:{svc.port} -r "
                                        f"{d.address}:{d.port} -w 1  # or let kube-proxy resync", severity=WARNING))
                elif live and d.address not in live and ctx.nodes() and host.kind == "node":
                    out.append(for_host(ctx, host, "ipvs", f"{name} -> {d.address}:{d.port}",
                                        f"real server {d.address} is no live pod", "restart kube-proxy to resync "
                                        "IPVS with the endpoints", severity=WARNING))
    return out
