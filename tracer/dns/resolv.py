"""A pod's resolver configuration and the names glibc's resolver tries for a lookup.

resolv.conf as kubelet writes it for ClusterFirst pods: `nameserver <kube-dns ClusterIP>`,
`search <ns>.svc.cluster.local svc.cluster.local cluster.local`, `options ndots:5`. With ndots:5,
a name with fewer than five dots is tried with every search suffix first and as written last:
`web` costs one query, `example.com` four (three NXDOMAINs first), the classic source of slow
lookups and of NXDOMAIN floods on CoreDNS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UsageError


@dataclass
class ResolvConf:
    nameservers: list[str] = field(default_factory=list)
    search: list[str] = field(default_factory=list)
    ndots: int = 1  # glibc's default
    attempts: int = 2
    timeout: float = 5.0
    source: str = ""

    def to_dict(self) -> dict:
        return {"nameservers": self.nameservers, "search": self.search, "ndots": self.ndots,
                "attempts": self.attempts, "timeout": self.timeout, "source": self.source}


def parse_resolv_conf(text: str, source: str = "") -> ResolvConf:
    """resolv.conf(5): the last `search`/`domain` line wins; options ndots/timeout/attempts."""
    rc = ResolvConf(source=source)
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        key, *vals = line.split()
        if key == "nameserver" and vals:
            rc.nameservers.append(vals[0])
        elif key in ("search", "domain"):
            rc.search = [v.rstrip(".") for v in vals if v]
        elif key == "options":
            for opt in vals:
                name, _, val = opt.partition(":")
                try:
                    if name == "ndots":
                        rc.ndots = max(0, min(15, int(val)))
                    elif name == "timeout":
                        rc.timeout = float(val)
                    elif name == "attempts":
                        rc.attempts = int(val)
                except ValueError:
                    continue
    return rc


def candidates(name: str, rc: ResolvConf) -> list[str]:
    """The fully qualified names the resolver tries, in order (glibc res_search)."""
    name = name.strip()
    if not name or " " in name:
        raise UsageError(f"'{name}' is not a DNS name; give a name like web, web.default or example.com")
    if name.endswith("."):
        return [name]
    with_search = [f"{name}.{d}." for d in rc.search]
    absolute = f"{name}."
    if name.count(".") >= rc.ndots:
        return [absolute] + with_search
    return with_search + [absolute]
