"""`podpath report`: pandas over the files `podpath watch` wrote, for any number of nodes.

Drops are binned per second, node and drop reason; a burst starts in a second whose count exceeds a
rolling baseline (the lower quartile of the `baseline_s` seconds around it) times `factor`, plus
`min_drops`, and lasts while the count stays above the baseline it started from. Its edges are
refined to the first and last sampled drop in it. Each burst is lined up with the changes and counter jumps of its node in its window, and given
the likeliest cause the evidence supports (causes.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import UsageError
from ..watch.store import read_table
from .causes import explain, summarize
from .html import render_html

__all__ = ["analyse", "Report", "render_text", "render_html"]


@dataclass
class Report:
    drops: pd.DataFrame
    samples: pd.DataFrame
    counters: pd.DataFrame
    changes: pd.DataFrame
    per_second: pd.DataFrame  # index time (1 s bins), columns node -> packets
    bursts: list[dict] = field(default_factory=list)
    causes: list[dict] = field(default_factory=list)
    totals: dict = field(default_factory=dict)
    top_flows: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"bursts": self.bursts, "causes": self.causes, "totals": self.totals, "top_flows": self.top_flows}


def _flows(df: pd.DataFrame, n: int = 5) -> list[dict]:
    if df.empty:
        return []
    keys = ["l4_protocol", "ip_source", "ip_destination", "destination_port"]
    g = df.fillna({"l4_protocol": "", "ip_source": "", "ip_destination": ""}).groupby(keys, dropna=False)["packets"].sum()
    g = g.sort_values(ascending=False).head(n)
    return [{"proto": k[0] or None, "src": k[1] or None, "dst": k[2] or None, "dport": int(k[3]) if k[3] else None,
             "packets": int(v)} for k, v in g.items()]


def _burst_windows(series: pd.Series, *, baseline_s: int, factor: float, min_drops: int) -> list[tuple]:
    # the lower quartile of the seconds around (centred): robust to the bursts themselves while they
    # fill less than 3/4 of the window (an intermittent fault's duty cycle), and at the recording's
    # end; or of the seconds before, where that is lower (a fault early in the recording fills most
    # of the centred window there)
    around = series.rolling(baseline_s, center=True, min_periods=1).quantile(0.25)
    before = series.rolling(baseline_s, min_periods=1).quantile(0.25)
    base = pd.concat([around, before], axis=1).min(axis=1).fillna(0).to_numpy()
    values = series.to_numpy()
    out, start, prev, level = [], None, None, 0.0
    for i, t in enumerate(series.index):
        v = values[i]
        if v != v:  # NaN: no tick ended in this second (ticks drift): it continues its neighbour
            continue
        if start is None:
            if v > base[i] * factor + min_drops:
                # a burst is measured against the baseline from before it, held while it lasts: a
                # fault longer than half the rolling window would otherwise become the baseline and
                # split its own window in two
                start, prev, level = t, t, base[i]
        elif v > level * factor + min_drops:
            prev = t
        else:
            out.append((start, prev))
            start = None
    if start is not None:
        out.append((start, prev))
    return out


def _conntrack_rises(counters: pd.DataFrame) -> dict:
    """Per node, how much conntrack's trouble counters rose over the recording (the insert race
    behind 5-second DNS delays is `insert_failed`, or `clashres` where the kernel resolved it)."""
    if counters.empty:
        return {}
    c = counters[(counters.group == "conntrack")
                 & counters.name.isin(["insert_failed", "clashres", "drop", "early_drop"])]
    out: dict = {}
    for (node, name), v in c.groupby(["node_name", "name"]).value:
        if int(v.max()) > int(v.min()):
            out.setdefault(node, {})[name] = int(v.max()) - int(v.min())
    return out


def analyse(dirs, *, baseline_s: int = 60, factor: float = 3.0, min_drops: int = 5) -> Report:
    for d in dirs:
        if not Path(d).is_dir():
            raise UsageError(f"{d} is not a directory; give the directory `podpath watch -o DIR` wrote")
    drops = read_table(dirs, "drops").to_pandas()
    samples = read_table(dirs, "samples").to_pandas()
    counters = read_table(dirs, "counters").to_pandas()
    changes = read_table(dirs, "changes").to_pandas()
    if drops.empty and counters.empty:
        raise UsageError(f"no podpath watch files under {', '.join(map(str, dirs))}; record some with "
                         "`podpath watch -o DIR`")
    # a tick's row covers (time - interval, time]: bin it by the second it ends in
    drops["second"] = drops["time"].dt.ceil("1s")
    per_second = drops.pivot_table(index="second", columns="node_name", values="packets", aggfunc="sum",
                                   fill_value=0).astype("int64")
    if not per_second.empty:
        full = pd.date_range(per_second.index.min(), per_second.index.max(), freq="1s")
        per_second = per_second.reindex(full, fill_value=0)
    rep = Report(drops, samples, counters, changes, per_second)
    # bursts are found per (node, reason): a steady trickle of one reason does not hide another's burst
    by_reason = drops.pivot_table(index="second", columns=["node_name", "drop_reason_desc"], values="packets",
                                  aggfunc="sum", fill_value=0).reindex(per_second.index, fill_value=0)
    ticked = {}  # node -> the seconds in which a tick ended (every tick writes counters)
    if not counters.empty:
        for node, t in counters.groupby("node_name").time:
            ticked[node] = pd.DatetimeIndex(t.dt.ceil("1s").unique())
    for node, reason in by_reason.columns:
        series = by_reason[(node, reason)].astype("float64")
        if node in ticked:
            series[~series.index.isin(ticked[node])] = float("nan")
        for b0, b1 in _burst_windows(series, baseline_s=baseline_s, factor=factor,
                                     min_drops=min_drops):
            mine = (drops.node_name == node) & (drops.drop_reason_desc == reason)
            in_win = drops[mine & (drops.second >= b0) & (drops.second <= b1)]
            lo = (in_win.time - pd.to_timedelta(in_win.interval_s.astype("float64"), unit="s")).min()
            hi = in_win.time.max()
            smp = samples[(samples.node_name == node) & (samples.drop_reason_desc == reason)
                          & (samples.time > lo) & (samples.time <= hi)]
            start = smp.time.min() if not smp.empty else lo
            end = smp.time.max() if not smp.empty else hi
            top = in_win.groupby(["interface", "location_symbol"], dropna=False)["packets"].sum()
            device, location = top.sort_values(ascending=False).index[0]
            burst = {"start": start.isoformat(timespec="milliseconds"), "end": end.isoformat(timespec="milliseconds"),
                     "node": node, "reason": reason, "device": None if pd.isna(device) else device,
                     "location": location, "count": int(in_win.packets.sum()), "flows": _flows(in_win),
                     "sampled": int(len(smp))}
            burst.update(explain(burst, start, end, node, changes, counters))
            rep.bursts.append(burst)
    rep.bursts.sort(key=lambda b: b["start"])
    rep.causes = summarize(rep.bursts)
    watch = counters[counters.group == "watch"] if not counters.empty else counters
    lost = {n: int(watch[watch.name == n].groupby("node_name").value.max().max() or 0) if not watch.empty else 0
            for n in ("ringbuf_lost", "flow_folded", "uncounted", "sampled")}
    rep.totals = {
        "drops": int(drops.packets.sum()),
        "by_node": {k: int(v) for k, v in drops.groupby("node_name").packets.sum().items()},
        "by_reason": {k: int(v) for k, v in drops.groupby("drop_reason_desc").packets.sum().sort_values(ascending=False).items()},
        "by_device": {f"{n}/{d}": int(v) for (n, d), v in drops.groupby(["node_name", "interface"]).packets.sum().items()},
        "samples": int(len(samples)),
        "samples_lost": lost["ringbuf_lost"], "flows_folded": lost["flow_folded"], "uncounted": lost["uncounted"],
        "changes": int(len(changes)),
        "seconds": int(len(per_second)),
        "conntrack": _conntrack_rises(counters),
    }
    rep.top_flows = _flows(drops, 10)
    return rep


def render_text(rep: Report) -> str:
    t = rep.totals
    lines = [f"{t['drops']} drops over {t['seconds']} s on {len(t['by_node'])} node(s); "
             f"{t['samples']} sampled, {t['samples_lost']} samples lost, {t['flows_folded']} flows folded"]
    lines.append("by reason: " + ", ".join(f"{k} {v}" for k, v in list(t["by_reason"].items())[:6]))
    lines.append("by node:   " + ", ".join(f"{k} {v}" for k, v in t["by_node"].items()))
    for node, rose in t.get("conntrack", {}).items():
        lines.append(f"conntrack at {node}: " + ", ".join(f"{k} +{v}" for k, v in sorted(rose.items())))
    if rep.causes:
        lines.append("")
        lines.append("likely causes:")
        lines += [f"  - {c['summary']}" for c in rep.causes]
    lines.append("")
    lines.append(f"{len(rep.bursts)} burst(s):")
    for b in rep.bursts:
        lines.append(f"  {b['start'][11:23]} .. {b['end'][11:23]}  {b['node']:<8} {b['count']:>7} "
                     f"{b['reason']} on {b['device']}: {b['cause']}")
        lines += [f"      {e}" for e in b["evidence"][:4]]
    if rep.top_flows:
        lines.append("")
        lines.append("top flows:")
        lines += [f"  {f['packets']:>7}  {f['proto']} {f['src']} -> {f['dst']}:{f['dport']}" for f in rep.top_flows[:5]]
    return "\n".join(lines)
