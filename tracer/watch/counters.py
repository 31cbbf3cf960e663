"""The node counters read each second, as long rows (group, name, object, value): cumulative
values, the report takes differences. Read inside each node's namespace (a thread that entered
it: /proc/thread-self/net and child processes follow the thread's namespace)."""

from __future__ import annotations

import hashlib
import re
import subprocess

from ..netns import run_in

Row = tuple[str, str, str, int]  # group, name, object, value

_CT_WANT = ("insert_failed", "drop", "early_drop", "insert", "clashres", "invalid")
_NEIGH_WANT = ("table_fulls", "forced_gc_runs", "unresolved_discards", "res_failed", "entries")
_CHAIN = re.compile(r"^(KUBE-|FLANNEL-)")
_RULE = re.compile(r"^\[(\d+):(\d+)\] -A (\S+) (.*)$")


def _per_cpu_sums(path: str, want) -> dict[str, int]:
    """A /proc/net/stat file: a header, then one hex row per CPU; `entries` is global (first row)."""
    try:
        with open(path) as f:
            lines = f.read().split("\n")
    except OSError:
        return {}
    head = lines[0].split()
    sums = dict.fromkeys(want, 0)
    for n, line in enumerate(l for l in lines[1:] if l.strip()):
        vals = [int(x, 16) for x in line.split()]
        for name in want:
            if name in head:
                v = vals[head.index(name)]
                if name == "entries":
                    if n == 0:
                        sums[name] = v
                else:
                    sums[name] += v
    return {k: v for k, v in sums.items() if k in head}


def softnet() -> list[Row]:
    """/proc/net/softnet_stat: per-CPU backlog drops and time squeezes (the kernel's, not a namespace's)."""
    dropped = squeeze = 0
    with open("/proc/net/softnet_stat") as f:
        for line in f:
            cols = line.split()
            dropped += int(cols[1], 16)
            squeeze += int(cols[2], 16)
    return [("softnet", "dropped", "", dropped), ("softnet", "time_squeeze", "", squeeze)]


def _sysctl(name: str) -> int | None:
    try:
        with open(f"/proc/sys/net/netfilter/{name}") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


_CTA = {"CTA_STATS_INSERT_FAILED": "insert_failed", "CTA_STATS_DROP": "drop", "CTA_STATS_EARLY_DROP": "early_drop",
        "CTA_STATS_INSERT": "insert", "CTA_STATS_CLASH_RESOLVE": "clashres", "CTA_STATS_INVALID": "invalid"}


def conntrack() -> list[Row]:
    """This namespace's conntrack statistics over ctnetlink (IPCTNL_MSG_CT_GET_STATS_CPU, summed over
    CPUs) and its entry count against the maximum (IPCTNL_MSG_CT_GET_STATS); the same numbers as
    /proc/net/stat/nf_conntrack, which is read instead when ctnetlink is not there."""
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTSocket
    try:
        with NFCTSocket() as s:
            sums = dict.fromkeys(_CTA.values(), 0)
            for cpu in s.stat():
                for k, v in cpu["attrs"]:
                    if k in _CTA:
                        sums[_CTA[k]] += v
            glob = dict(s.count()[0]["attrs"])
    except (OSError, NetlinkError):
        rows = [("conntrack", k, "", v) for k, v in _per_cpu_sums("/proc/thread-self/net/stat/nf_conntrack",
                                                                   _CT_WANT).items()]
        for name in ("nf_conntrack_count", "nf_conntrack_max"):
            v = _sysctl(name)
            if v is not None:
                rows.append(("conntrack", name.removeprefix("nf_conntrack_"), "", v))
        return rows
    return [("conntrack", k, "", v) for k, v in sums.items()] + [
        ("conntrack", "count", "", glob.get("CTA_STATS_GLOBAL_ENTRIES", 0)),
        ("conntrack", "max", "", glob.get("CTA_STATS_GLOBAL_MAX_ENTRIES", 0))]


def devices() -> list[Row]:
    rows = []
    with open("/proc/thread-self/net/dev") as f:
        for line in f.readlines()[2:]:
            name, rest = line.split(":", 1)
            c = rest.split()
            rows += [("dev", "rx_dropped", name.strip(), int(c[3])), ("dev", "tx_dropped", name.strip(), int(c[11]))]
    return rows


def iptables_save() -> str:
    try:
        return subprocess.run(["iptables-save", "-c"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def rules(save: str) -> tuple[list[Row], str, list[str]]:
    """Packet counters of KUBE-*/FLANNEL-* chains (summed over their rules) and of every rule that
    drops (DROP/REJECT, any chain); the ruleset's hash without counters, and its rules' text."""
    rows: list[Row] = []
    chains: dict[str, int] = {}
    table = ""
    text = []
    for line in save.splitlines():
        if line.startswith("*"):
            table = line[1:]
            continue
        m = _RULE.match(line)
        if not m:
            continue
        pk, chain, spec = int(m.group(1)), m.group(3), m.group(4)
        rule = f"{table}/{chain} {spec}"
        text.append(rule)
        if _CHAIN.match(chain):
            chains[f"{table}/{chain}"] = chains.get(f"{table}/{chain}", 0) + pk
        if re.search(r"-j (DROP|REJECT)\b", spec):
            rows.append(("rule", "packets", rule, pk))
    rows += [("chain", "packets", c, v) for c, v in chains.items()]
    return rows, hashlib.sha256("\n".join(text).encode()).hexdigest()[:16], text


def node_counters(netns: str | None) -> tuple[list[Row], str, list[str]]:
    """Everything one node's namespace counts, now; plus its ruleset hash and rule texts."""
    def body():
        rows: list[Row] = []
        rows += conntrack()
        neigh = _per_cpu_sums("/proc/thread-self/net/stat/arp_cache", _NEIGH_WANT)
        rows += [("neigh", k, "arp_cache", v) for k, v in neigh.items()]
        rows += devices()
        r, h, text = rules(iptables_save())
        return rows + r, h, text
    return run_in(netns, body)
