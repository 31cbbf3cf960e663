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


def explain(burst: dict, start, end, node: str, changes: pd.DataFrame, counters: pd.DataFrame) -> dict:
    ev: list[str] = []
    cause, rule, lag_ms = None, None, None
    if not changes.empty:
        ch = changes[(changes.node_name == node) & (changes.time >= start - BEFORE) & (changes.time <= end + AFTER)]
        # the kernel's own notification (nft monitor) is stamped to the ms; the ruleset diff to the second
        rules = ch[(ch.kind.isin(["rule", "ruleset"])) & (ch.action == "add") & ch.object.map(_is_drop_rule).astype(bool)]
        if not rules.empty:
            exact = rules[rules.kind == "rule"]
            cands = (exact if not exact.empty else rules).sort_values("time")
            before = cands[cands.time <= start + pd.Timedelta(milliseconds=100)]
            r = before.iloc[-1] if not before.empty else cands.iloc[0]
            lag_ms = round((start - r.time).total_seconds() * 1000, 1)
            rule = r.object
            ev.append(f"rule inserted in {_rule_place(r.object)} at {r.time.isoformat()[11:23]} "
                      f"({lag_ms:+.0f} ms to the first drop): {r.object}")
        for _, r in ch[(ch.kind == "rule") & (ch.action == "del") & (ch.time >= start)].head(2).iterrows():
            ev.append(f"rule removed at {r.time.isoformat()[11:23]}: {r.object}")
        for _, r in ch[ch.kind.isin(["route", "link", "fdb"]) |
                       ((ch.kind == "neigh") & ch.detail.isin(["FAILED", "INCOMPLETE"]))].head(5).iterrows():
            ev.append(f"{r.kind} {r.action} at {r.time.isoformat()[11:23]}: {r.object} {r.detail}")
    jumped = jumps(counters, node, start, end)
    for g, n, o, d in jumped[:6]:
        ev.append(f"counter {g}.{n}{' ' + o if o else ''} rose by {d}")
    reason = burst["reason"]
    if rule is not None and reason == "NETFILTER_DROP":
        cause = f"DROP rule in {_rule_place(rule)}"
    else:
        have = {(g, n) for g, n, _o, _d in jumped}
        cause = next((c for k, c in _COUNTER_CAUSES if k in have), None)
        if cause is None and rule is not None:
            cause = f"rule change in {_rule_place(rule)}"
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
