"""A burst's likely cause: the changes and counter jumps of its node in its window, weighed
against its drop reason. Evidence is kept as sentences a person can check in the files."""

from __future__ import annotations

import pandas as pd

BEFORE = pd.Timedelta(seconds=2)  # a change up to 2 s before the first drop can be its cause
AFTER = pd.Timedelta(seconds=1)

# counter jumps that explain a drop reason by themselves: (group, name) -> cause
_COUNTER_CAUSES = [
    (("conntrack", "insert_failed"), "conntrack insert race (insert_failed rising)"),
    (("conntrack", "drop"), "conntrack table full (drop rising)"),
    (("conntrack", "early_drop"), "conntrack table full (early_drop rising)"),
    (("neigh", "table_fulls"), "neighbour table overflow (gc_thresh3 reached)"),
    (("neigh", "forced_gc_runs"), "neighbour table pressure (forced gc)"),
    (("softnet", "dropped"), "softnet backlog full (netdev_max_backlog)"),
]


def _is_drop_rule(text: str) -> bool:
    t = f" {text} "
    return " drop" in t or "-j DROP" in t or " reject" in t or "-j REJECT" in t


def _rule_place(text: str) -> str:
    """filter/FORWARD from `insert rule ip filter FORWARD ...` (nft) or `filter/FORWARD -d ...` (iptables-save)."""
    w = text.split()
    if len(w) > 4 and w[0] in ("add", "insert", "delete") and w[1] == "rule":
        return f"{w[3]}/{w[4]}"
    return w[0] if w else "?"


def _mtu_lowered(detail: str) -> tuple[int, int] | None:
    """(before, after) from a link change's `mtu 1450->1400`, when it went down."""
    for w in detail.split():
        if w.count("->") == 1:
            a, b = w.split("->")
            if a.isdigit() and b.isdigit() and int(b) < int(a):
                return int(a), int(b)
    return None


def _device_change(ch: pd.DataFrame, burst: dict, start, slack) -> tuple[str, object] | None:
    """A change on the burst's own device that explains its reason: an MTU lowered (PKT_TOO_BIG,
    FRAG_*), a neighbour or FDB entry replaced (NO_TX_TARGET: VXLAN found no remote, VXLAN_*, NEIGH_*);
    the last one before the first drop."""
    dev, reason = burst.get("device"), burst["reason"]
    cands = ch[ch.time <= start + slack].sort_values("time")
    if reason == "PKT_TOO_BIG" or reason.startswith("FRAG"):
        for _, r in cands[cands.kind == "link"].iloc[::-1].iterrows():
            m = _mtu_lowered(r.detail)
            if m:
                return f"MTU lowered on {r.object} ({m[0]} -> {m[1]})", r
    if reason.startswith(("VXLAN", "NEIGH", "NO_TX_TARGET")) and dev:
        mine = cands[cands.kind.isin(["neigh", "fdb"]) & cands.object.str.endswith(f" dev {dev}")
                     & (cands.action == "new")]
        if not mine.empty:
            r = mine.iloc[-1]
            what = "VTEP neighbour" if r.kind == "neigh" else "FDB entry"
            return f"{what} changed on {dev}", r
    return None


def jumps(counters: pd.DataFrame, node: str, lo, hi) -> list[tuple[str, str, str, int]]:
    """(group, name, object, increase) of cumulative counters that rose within [lo, hi]."""
    if counters.empty:
        return []
    c = counters[(counters.node_name == node) & (counters.time >= lo - pd.Timedelta(seconds=1.5)) &
                 (counters.time <= hi + pd.Timedelta(seconds=1.5))]
    c = c[c.group.isin(["conntrack", "neigh", "softnet", "dev", "rule", "chain"])
          & ~((c.group == "conntrack") & c.name.isin(["count", "max"])) & ~((c.group == "neigh") & (c.name == "entries"))]
    out = []
    for (g, n, o), v in c.groupby(["group", "name", "object"]).value:
        d = int(v.max()) - int(v.min())
        if d > 0:
            out.append((g, n, o, d))
    return sorted(out, key=lambda x: -x[3])


def _table_full(counters: pd.DataFrame, node: str, lo, hi) -> str | None:
    """Evidence that the table was full in the window: its entry count reached the max."""
    if counters.empty:
        return None
    c = counters[(counters.node_name == node) & (counters.group == "conntrack") & counters.name.isin(["count", "max"])
                 & (counters.time >= lo - pd.Timedelta(seconds=1)) & (counters.time <= hi + pd.Timedelta(seconds=1))]
    if c.empty:
        return None
    w = c.pivot_table(index="time", columns="name", values="value", aggfunc="max")
    if {"count", "max"} <= set(w.columns) and (w["count"] >= w["max"]).any():
        return f"conntrack count reached its max {int(w['max'].max())}"
    return None


def explain(burst: dict, start, end, node: str, changes: pd.DataFrame, counters: pd.DataFrame) -> dict:
    ev: list[str] = []
    cause, rule, lag_ms = None, None, None
    # how late a cause may be stamped: a sampled first drop is the kernel's instant; without samples
    # the burst starts where its first interval did, up to a tick (1 s) before the drop itself
    slack = pd.Timedelta(milliseconds=100 if burst.get("sampled") else 1000)
    if not changes.empty:
        ch = changes[(changes.node_name == node) & (changes.time >= start - BEFORE) & (changes.time <= end + AFTER)]
        # the kernel's own notification (nft monitor) is stamped to the ms; the ruleset diff to the second
        rules = ch[(ch.kind.isin(["rule", "ruleset"])) & (ch.action == "add") & ch.object.map(_is_drop_rule).astype(bool)]
        if not rules.empty:
            exact = rules[rules.kind == "rule"]
            cands = (exact if not exact.empty else rules).sort_values("time")
            before = cands[cands.time <= start + slack]
            if not before.empty:  # only a rule in place by the first drop can be its cause
                r = before.iloc[-1]
                lag_ms = round((start - r.time).total_seconds() * 1000, 1)
                rule = r.object
                ev.append(f"rule inserted in {_rule_place(r.object)} at {r.time.isoformat()[11:23]} "
                          f"({lag_ms:+.0f} ms to the first drop): {r.object}")
            for _, r in cands[cands.time > start + slack].head(2).iterrows():
                ev.append(f"rule inserted in {_rule_place(r.object)} at {r.time.isoformat()[11:23]}, after the "
                          f"first drop: {r.object}")
        for _, r in ch[(ch.kind == "rule") & (ch.action == "del") & (ch.time >= start)].head(2).iterrows():
            ev.append(f"rule removed at {r.time.isoformat()[11:23]}: {r.object}")
        dev = burst.get("device")
        on_dev = ch.object.str.endswith(f" dev {dev}") if dev else False
        for _, r in ch[ch.kind.isin(["route", "link", "fdb", "endpoints"]) |
                       ((ch.kind == "neigh") & (ch.detail.isin(["FAILED", "INCOMPLETE"]) | on_dev))].head(5).iterrows():
            ev.append(f"{r.kind} {r.action} at {r.time.isoformat()[11:23]}: {r.object} {r.detail}")
        changed = _device_change(ch, burst, start, slack)
    else:
        changed = None
    jumped = jumps(counters, node, start, end)
    for g, n, o, d in jumped[:6]:
        ev.append(f"counter {g}.{n}{' ' + o if o else ''} rose by {d}")
    full = _table_full(counters, node, start, end)
    if full:
        ev.append(full)
    reason = burst["reason"]
    if rule is not None and reason == "NETFILTER_DROP":
        cause = f"DROP rule in {_rule_place(rule)}"
    elif changed is not None:
        cause, r = changed
        rule = None  # a rule inserted meanwhile is evidence, not this burst's cause
        lag_ms = round((start - r.time).total_seconds() * 1000, 1)
        ev.insert(0, f"{cause} at {r.time.isoformat()[11:23]} ({lag_ms:+.0f} ms to the first drop): "
                     f"{r.kind} {r.object} {r.detail}")
    else:
        have = {(g, n) for g, n, _o, _d in jumped}
        cause = next((c for k, c in _COUNTER_CAUSES if k in have), None)
        standing = [o for g, n, o, _d in jumped if g == "rule"]
        if cause is None and standing and reason == "NETFILTER_DROP":
            cause = f"standing DROP rule in {_rule_place(standing[0])}"  # its counter rose, nobody inserted it
        if cause is None and rule is not None:
            cause = f"rule change in {_rule_place(rule)}"
        elif rule is not None:  # a counter explains it: the inserted rule is evidence, not the cause
            rule, lag_ms = None, None
        if cause is None:
            neigh = [e for e in ev if e.startswith("neigh ")]
            cause = "neighbour resolution failing" if neigh and reason.startswith("NEIGH") else f"{reason} (no change seen)"
    return {"cause": cause, "rule": rule, "lag_ms": lag_ms, "evidence": ev}


def summarize(bursts: list[dict]) -> list[dict]:
    """One line per (node, cause, reason): the bursts it explains and how tightly they follow the change."""
    groups: dict[tuple, list[dict]] = {}
    for b in bursts:
        groups.setdefault((b["node"], b["cause"], b["reason"], b.get("rule")), []).append(b)
    out = []
    for (node, cause, reason, rule), bs in groups.items():
        flow = bs[0]["flows"][0] if bs[0]["flows"] else None
        what = (f"{flow['proto']} to {flow['dst']}" + (f":{flow['dport']}" if flow.get("dport") else "")) if flow else "packets"
        text = f"{what} dropped at {node}, {reason}"
        if rule:
            text += f" in {_rule_place(rule)}"
        text += f", {len(bs)} burst{'s' if len(bs) != 1 else ''}"
        lags = [b["lag_ms"] for b in bs if b.get("lag_ms") is not None]
        if rule and len(lags) == len(bs):
            text += f", each starting within {max(abs(x) for x in lags):.0f} ms of that rule's insertion"
        else:
            text += f": {cause}"
        out.append({"node": node, "cause": cause, "reason": reason, "rule": rule, "bursts": len(bs),
                    "count": sum(b["count"] for b in bs), "summary": text})
    return sorted(out, key=lambda c: -c["count"])
