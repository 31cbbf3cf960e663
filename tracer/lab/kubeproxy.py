"""A node's netfilter rules as kube-proxy (iptables mode) and flanneld write them.

Pure text, no kernel access (unit-tested without root). Rules are rendered in the canonical form
`iptables-save` prints them back in (match order, `/32` suffixes, `--set-xmark`, 11-digit
probabilities), so the lab can compare `iptables-save` output with `render_node()` line for line.

Chain names follow kube-proxy's pkg/proxy/iptables/proxier.go:
  KUBE-SVC-<h>: h = base32(sha256(servicePortName + protocol))[:16]
  KUBE-SEP-<h>: h = base32(sha256(servicePortName + protocol + "ip:port"))[:16]
where servicePortName is "<ns>/<svc>:<port name>" ("<ns>/<svc>" for an unnamed port) and protocol is
lower case ("udp"). kube-system/kube-dns:dns over udp gives KUBE-SVC-TCOU7JCQXEZGVUNU.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

from .topology import CLUSTER_CIDR, Endpoint, NodeSpec, ServiceRules

MASQ_MARK = "0x4000"
# kube-proxy (iptables mode) leaves comments off endpoint rules past this many endpoints
# (largeClusterEndpointsThreshold in pkg/proxy/iptables/proxier.go)
LARGE_CLUSTER_ENDPOINTS = 1000

# Built-in chains the lab owns completely in its node namespaces (flushed and rewritten by a restore).
BUILTIN = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
}


def port_proto_hash(service_port_name: str, protocol: str) -> str:
    digest = hashlib.sha256((service_port_name + protocol.lower()).encode()).digest()
    return base64.b32encode(digest).decode()[:16]


def service_port_name(namespace: str, name: str, port_name: str) -> str:
    return f"{namespace}/{name}:{port_name}" if port_name else f"{namespace}/{name}"


def svc_chain(service_port_name: str, protocol: str) -> str:
    return "KUBE-SVC-" + port_proto_hash(service_port_name, protocol)


def sep_chain(service_port_name: str, protocol: str, endpoint: str) -> str:
    """KUBE-SEP-<hash> for one endpoint ("ip:port"), as servicePortEndpointChainName computes it."""
    digest = hashlib.sha256((service_port_name + protocol.lower() + endpoint).encode()).digest()
    return "KUBE-SEP-" + base64.b32encode(digest).decode()[:16]


def probability(n: int) -> str:
    """`--probability` for the first of n remaining endpoints, as iptables-save prints it.

    kube-proxy writes 1/n with 10 decimals; xt_statistic stores round(p * 2^31) and prints it back
    with 11 decimals (1/2 -> 0.50000000000, 1/3 -> 0.33333333349).
    """
    stored = int(1.0 / n * 0x80000000 + 0.5)
    return f"{stored / 0x80000000:.11f}"


@dataclass
class Table:
    """One table: user chains in declaration order, rules per chain in order (built-ins included)."""

    name: str
    chains: list[str] = field(default_factory=list)
    rules: dict[str, list[str]] = field(default_factory=dict)
    _declared: set[str] = field(default_factory=set, repr=False, compare=False)

    def chain(self, name: str) -> None:
        if name not in self._declared:  # a set: a list scan made 10,000 Services take half a minute
            self._declared.add(name)
            self.chains.append(name)
        self.rules.setdefault(name, [])

    def add(self, chain: str, rule: str) -> None:
        self.rules.setdefault(chain, []).append(f"-A {chain} {rule}")

    def lines(self) -> list[str]:
        out = []
        for chain in list(BUILTIN.get(self.name, ())) + self.chains:
            out += self.rules.get(chain, [])
        return out


def _c(text: str) -> str:
    return f'-m comment --comment "{text}"'


def kube_proxy_rules(services: list[ServiceRules], cluster_cidr: str = CLUSTER_CIDR) -> dict[str, Table]:
    """filter and nat tables kube-proxy writes for these services (plus its fixed chains and jumps)."""
    f, n = Table("filter"), Table("nat")
    for ch in ("KUBE-EXTERNAL-SERVICES", "KUBE-FIREWALL", "KUBE-FORWARD", "KUBE-NODEPORTS",
               "KUBE-PROXY-FIREWALL", "KUBE-SERVICES"):
        f.chain(ch)
    for ch in ("KUBE-MARK-MASQ", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-SERVICES"):
        n.chain(ch)

    new = "-m conntrack --ctstate NEW"
    f.add("INPUT", f'{new} {_c("kubernetes load balancer firewall")} -j KUBE-PROXY-FIREWALL')
    f.add("INPUT", f'{_c("kubernetes health check service ports")} -j KUBE-NODEPORTS')
    f.add("INPUT", f'{new} {_c("kubernetes externally-visible service portals")} -j KUBE-EXTERNAL-SERVICES')
    f.add("INPUT", "-j KUBE-FIREWALL")
    f.add("FORWARD", f'{new} {_c("kubernetes load balancer firewall")} -j KUBE-PROXY-FIREWALL')
    f.add("FORWARD", f'{_c("kubernetes forwarding rules")} -j KUBE-FORWARD')
    f.add("FORWARD", f'{new} {_c("kubernetes service portals")} -j KUBE-SERVICES')
    f.add("FORWARD", f'{new} {_c("kubernetes externally-visible service portals")} -j KUBE-EXTERNAL-SERVICES')
    f.add("OUTPUT", f'{new} {_c("kubernetes load balancer firewall")} -j KUBE-PROXY-FIREWALL')
    f.add("OUTPUT", f'{new} {_c("kubernetes service portals")} -j KUBE-SERVICES')
    f.add("OUTPUT", "-j KUBE-FIREWALL")
    f.add("KUBE-FIREWALL", f'! -s 127.0.0.0/8 -d 127.0.0.0/8 {_c("block incoming localnet connections")} '
          "-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP")
    f.add("KUBE-FORWARD", "-m conntrack --ctstate INVALID -j DROP")
    f.add("KUBE-FORWARD", f'{_c("kubernetes forwarding rules")} -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT')
    f.add("KUBE-FORWARD", f'{_c("kubernetes forwarding conntrack rule")} '
          "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")

    n.add("PREROUTING", f'{_c("kubernetes service portals")} -j KUBE-SERVICES')
    n.add("OUTPUT", f'{_c("kubernetes service portals")} -j KUBE-SERVICES')
    n.add("POSTROUTING", f'{_c("kubernetes postrouting rules")} -j KUBE-POSTROUTING')
    n.add("KUBE-MARK-MASQ", f"-j MARK --set-xmark {MASQ_MARK}/{MASQ_MARK}")
    n.add("KUBE-POSTROUTING", f"-m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN")
    n.add("KUBE-POSTROUTING", f"-j MARK --set-xmark {MASQ_MARK}/0x0")  # written as --xor-mark 0x4000
    n.add("KUBE-POSTROUTING", f'{_c("kubernetes service traffic requiring SNAT")} -j MASQUERADE --random-fully')

    svc_chains: list[str] = []
    sep_chains: list[str] = []
    ports = []
    for sr in services:
        for sp in sr.spec.ports:
            spn = service_port_name(sr.spec.namespace, sr.spec.name, sp.name)
            ports.append((spn, sr, sp))
    # kube-proxy's large-cluster mode: past 1,000 endpoints it leaves the comments off the rules
    # that jump to and fill the endpoint chains (about 40 % of the rule text, its source says)
    large = sum(len(sr.endpoints.get(sp.name, [])) for _, sr, sp in ports) > LARGE_CLUSTER_ENDPOINTS

    def ep_comment(text: str) -> str:
        return "" if large else f" {_c(text)}"

    for spn, sr, sp in sorted(ports, key=lambda x: (x[0], x[2].protocol)):
        proto = sp.protocol.lower()
        cip = sr.spec.cluster_ip
        match = f"-d {cip}/32 -p {proto}"
        dport = f"-m {proto} --dport {sp.port}"
        eps: list[Endpoint] = sorted(sr.endpoints.get(sp.name, []), key=lambda e: (e.ip, e.port))
        if not eps:
            f.add("KUBE-SERVICES", f'{match} {_c(spn + " has no endpoints")} {dport} '
                  "-j REJECT --reject-with icmp-port-unreachable")
            continue
        svc = svc_chain(spn, proto)
        svc_chains.append(svc)
        n.add("KUBE-SERVICES", f'{match} {_c(spn + " cluster IP")} {dport} -j {svc}')
        n.add(svc, f'! -s {cluster_cidr} {match} {_c(spn + " cluster IP")} {dport} -j KUBE-MARK-MASQ')
        for i, ep in enumerate(eps):
            ep_str = f"{ep.ip}:{ep.port}"
            sep = sep_chain(spn, proto, ep_str)
            sep_chains.append(sep)
            left = len(eps) - i
            stat = f" -m statistic --mode random --probability {probability(left)}" if left > 1 else ""
            n.add(svc, f'{ep_comment(f"{spn} -> {ep_str}")}{stat} -j {sep}'.lstrip())
            n.add(sep, f"-s {ep.ip}/32{ep_comment(spn)} -j KUBE-MARK-MASQ")
            n.add(sep, f"-p {proto}{ep_comment(spn)} -m {proto} -j DNAT --to-destination {ep_str}")
    n.add("KUBE-SERVICES", f'{_c("kubernetes service nodeports; NOTE: this must be the last rule in this chain")} '
          "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")
    for ch in sorted(set(svc_chains)) + sorted(set(sep_chains)):
        n.chain(ch)
    return {"filter": f, "nat": n}


def flannel_rules(tables: dict[str, Table], node: NodeSpec, cluster_cidr: str = CLUSTER_CIDR) -> None:
    """FLANNEL-FWD and FLANNEL-POSTRTG as flanneld (v0.2x, iptables) writes them, appended."""
    f, n = tables["filter"], tables["nat"]
    fwd, masq = _c("flanneld forward"), _c("flanneld masq")
    f.chain("FLANNEL-FWD")
    f.add("FORWARD", f"{fwd} -j FLANNEL-FWD")
    f.add("FLANNEL-FWD", f"-s {cluster_cidr} {fwd} -j ACCEPT")
    f.add("FLANNEL-FWD", f"-d {cluster_cidr} {fwd} -j ACCEPT")
    n.chain("FLANNEL-POSTRTG")
    n.add("POSTROUTING", f"{masq} -j FLANNEL-POSTRTG")
    sub = node.pod_cidr
    n.add("FLANNEL-POSTRTG", f"-m mark --mark {MASQ_MARK}/{MASQ_MARK} {masq} -j RETURN")
    n.add("FLANNEL-POSTRTG", f"-s {sub} -d {cluster_cidr} {masq} -j RETURN")
    n.add("FLANNEL-POSTRTG", f"-s {cluster_cidr} -d {sub} {masq} -j RETURN")
    n.add("FLANNEL-POSTRTG", f"! -s {cluster_cidr} -d {sub} {masq} -j RETURN")
    n.add("FLANNEL-POSTRTG", f"-s {cluster_cidr} ! -d 224.0.0.0/4 {masq} -j MASQUERADE --random-fully")
    n.add("FLANNEL-POSTRTG", f"! -s {cluster_cidr} -d {cluster_cidr} {masq} -j MASQUERADE --random-fully")


def render_node(node: NodeSpec, services: list[ServiceRules], cluster_cidr: str = CLUSTER_CIDR) -> dict[str, Table]:
    """Everything a lab node's filter and nat tables hold when healthy."""
    tables = kube_proxy_rules(services, cluster_cidr)
    flannel_rules(tables, node, cluster_cidr)
    for t in tables.values():
        t.chains.sort()
    return tables


def restore_text(tables: dict[str, Table], existing_chains: dict[str, set[str]] | None = None,
                 services_only: bool = False) -> str:
    """Input for `iptables-restore --noflush` that makes the tables exactly `tables`.

    Built-in chains are flushed with `-F` and refilled; every user chain is declared (which flushes
    it); chains that exist but are no longer wanted (a service that lost its endpoints) are declared
    and deleted with `-X`, as kube-proxy does with stale chains.

    services_only: write only kube-proxy's own chains, like one kube-proxy sync does (built-in
    chains, flannel's chains and KUBE-FIREWALL are left alone).
    """
    existing_chains = existing_chains or {}
    out: list[str] = []
    for name, t in tables.items():
        chains = [ch for ch in t.chains if not services_only or _kube_proxy_chain(ch)]
        out.append(f"*{name}")
        stale = sorted(ch for ch in existing_chains.get(name, set()) - set(t.chains) - set(BUILTIN.get(name, ()))
                       if not services_only or _kube_proxy_chain(ch))
        for ch in sorted(chains, key=_declaration_order) + stale:
            out.append(f":{ch} - [0:0]")
        if not services_only:
            for ch in BUILTIN.get(name, ()):
                out.append(f"-F {ch}")
            out += t.lines()
        else:
            for ch in chains:
                out += t.rules.get(ch, [])
        for ch in stale:
            out.append(f"-X {ch}")
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def _declaration_order(chain: str) -> bytes:
    """The order chains are declared (so created) in: kube-proxy writes them while ranging over a
    Go map of Services, in no order of their names, and the kernel keeps creation order. Declared
    sorted by name, they would meet the worst case of iptables-nft-save 1.8.9's chain sort (a
    quicksort on the first element: 3 CPU-s at 30,000 chains instead of 0.2), which only a node
    whose rules were restored from a sorted iptables-save dump sees. A hash keeps it repeatable."""
    return hashlib.blake2b(chain.encode(), digest_size=8).digest()


def _kube_proxy_chain(chain: str) -> bool:
    return chain.startswith("KUBE-") and chain != "KUBE-FIREWALL"


def parse_save(text: str) -> dict[str, Table]:
    """`iptables-save` output -> tables (counters and comments dropped), for comparison."""
    tables: dict[str, Table] = {}
    cur: Table | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            cur = tables.setdefault(line[1:], Table(line[1:]))
        elif line == "COMMIT":
            cur = None
        elif cur is None:
            continue
        elif line.startswith(":"):
            ch = line[1:].split()[0]
            if ch not in BUILTIN.get(cur.name, ()):
                cur.chain(ch)
        elif line.startswith("["):  # -c counters prefix
            line = line.split("]", 1)[1].strip()
            cur.rules.setdefault(line.split()[1], []).append(line)
        elif line.startswith("-A "):
            cur.rules.setdefault(line.split()[1], []).append(line)
    return tables


def diff(expected: dict[str, Table], actual: dict[str, Table]) -> list[str]:
    """Human-readable differences (empty when the live tables are exactly the expected ones)."""
    problems = []
    for name, exp in expected.items():
        act = actual.get(name, Table(name))
        if set(exp.chains) != set(act.chains):
            missing = sorted(set(exp.chains) - set(act.chains))
            extra = sorted(set(act.chains) - set(exp.chains))
            problems.append(f"{name}: chains missing {missing}, extra {extra}")
        for ch in set(exp.rules) | set(act.rules):
            e, a = exp.rules.get(ch, []), act.rules.get(ch, [])
            if e != a:
                problems.append(f"{name} {ch}: {len(a)} rules differ from the {len(e)} expected")
    for name, act in actual.items():
        if name not in expected and any(act.rules.values()):
            problems.append(f"table {name} has rules the lab does not write")
    return problems
