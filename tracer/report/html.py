"""`podpath report --html FILE`: one self-contained page, plots embedded as PNG data URIs."""

from __future__ import annotations

import base64
import html
import io


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def plots(rep) -> dict[str, str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    ps = rep.per_second
    fig, ax = plt.subplots(figsize=(10, 3))
    for node in ps.columns:
        ax.plot(ps.index, ps[node], label=node, lw=1)
    for b in rep.bursts:
        ax.axvspan(b["start"], b["end"], color="red", alpha=0.15)
    ax.set_ylabel("drops / s")
    ax.set_title("Drops over time (bursts shaded)")
    if len(ps.columns):
        ax.legend(loc="upper right")
    out["timeline"] = _png(fig)

    d = rep.drops
    fig, ax = plt.subplots(figsize=(10, 3))
    if not d.empty:
        by = d.pivot_table(index="second", columns="drop_reason_desc", values="packets", aggfunc="sum", fill_value=0)
        by = by.reindex(ps.index, fill_value=0)
        ax.stackplot(by.index, by.T.values, labels=list(by.columns))
        ax.legend(loc="upper right", fontsize=7)
    ax.set_ylabel("drops / s")
    ax.set_title("Drops by reason (stacked)")
    out["reasons"] = _png(fig)

    fig, ax = plt.subplots(figsize=(10, 2 + 0.4 * max(1, d.node_name.nunique() if not d.empty else 1)))
    if not d.empty:
        hm = d.pivot_table(index="node_name", columns="drop_reason_desc", values="packets", aggfunc="sum", fill_value=0)
        im = ax.imshow(hm.values, aspect="auto", cmap="Reds")
        ax.set_yticks(range(len(hm.index)), hm.index)
        ax.set_xticks(range(len(hm.columns)), hm.columns, rotation=30, ha="right", fontsize=8)
        for i in range(hm.shape[0]):
            for j in range(hm.shape[1]):
                v = hm.values[i, j]
                ax.text(j, i, str(int(v)), ha="center", va="center", fontsize=8,
                        color="white" if v > hm.values.max() / 2 else "black")
        fig.colorbar(im, ax=ax)
    ax.set_title("Drops: node x reason")
    out["heatmap"] = _png(fig)
    return out


def render_html(rep, path: str) -> None:
    from . import render_text

    imgs = plots(rep)
    rows = "".join(
        f"<tr><td>{html.escape(b['start'][11:23])}</td><td>{html.escape(b['end'][11:23])}</td><td>{html.escape(b['node'])}</td>"
        f"<td>{b['count']}</td><td>{html.escape(str(b['reason']))}</td><td>{html.escape(str(b['device']))}</td>"
        f"<td>{html.escape(b['cause'])}</td></tr>" for b in rep.bursts)
    causes = "".join(f"<li>{html.escape(c['summary'])}</li>" for c in rep.causes)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>podpath report</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}} img{{max-width:100%}}</style></head><body>
<h1>podpath report</h1><h2>Likely causes</h2><ul id="causes">{causes or '<li>no bursts</li>'}</ul>
<img id="timeline" alt="timeline" src="{imgs['timeline']}"><img id="reasons" alt="reasons" src="{imgs['reasons']}">
<img id="heatmap" alt="heatmap" src="{imgs['heatmap']}">
<h2>Bursts</h2><table><tr><th>start</th><th>end</th><th>node</th><th>drops</th><th>reason</th><th>device</th><th>cause</th></tr>{rows}</table>
<h2>Summary</h2><pre>{html.escape(render_text(rep))}</pre></body></html>"""
    with open(path, "w") as f:
        f.write(page)
