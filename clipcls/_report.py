"""The evaluation report: one self-contained HTML page, plots drawn with matplotlib.

Every image is embedded as a base64 PNG or JPEG, so the page opens offline
from anywhere, with no file beside it.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from clipcls._evaluate import EvalReport


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def reliability_plot(rep: EvalReport) -> str:
    plt = _plt()
    b = rep.reliability
    centres = (b.edges[:-1] + b.edges[1:]) / 2
    fig, ax = plt.subplots(figsize=(4.2, 4))
    width = b.edges[1] - b.edges[0]
    ax.bar(centres, b.accuracy, width=width * 0.95, color="#4c72b0", label="accuracy", alpha=0.85)
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.set_xlabel("confidence (top-down)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability, ECE {100 * rep.ece:.1f}%")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def coverage_plot(rep: EvalReport) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4))
    cov = [c.coverage for c in rep.coverage]
    acc = [c.leaf_accuracy for c in rep.coverage]
    ax.plot(cov, acc, "o-", color="#dd8452")
    for c in rep.coverage:
        if not np.isnan(c.leaf_accuracy):
            ax.annotate(f"{c.threshold:g}", (c.coverage, c.leaf_accuracy), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("coverage (share answered at a leaf)")
    ax.set_ylabel("leaf accuracy of those answers")
    ax.set_title("Coverage vs accuracy (labels: threshold)")
    ax.set_xlim(0, 1.02)
    ax.grid(alpha=0.3)
    return _png(fig)


def confusion_plot(rep: EvalReport) -> str:
    plt = _plt()
    m = rep.confusion.astype(float)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    k = len(rep.confusion_labels)
    size = min(10, 2.5 + 0.35 * k)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), rep.confusion_labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), rep.confusion_labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix ({rep.confusion_level}, row-normalised)")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if m[i, j]:
                    ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    return _png(fig)


def tree_plot(rep: EvalReport, tax: Any) -> str:
    """The taxonomy drawn top to bottom, each node coloured by its recall (share of its images routed through it)."""
    plt = _plt()
    import matplotlib
    import networkx as nx

    G = tax.graph
    order: dict[int, list[str]] = {}
    depth = {tax.root: 0}
    for u in [tax.root] + [v for _, v in nx.bfs_edges(G, tax.root)]:
        order.setdefault(depth[u], []).append(u)
        for c in G.successors(u):
            depth.setdefault(c, depth[u] + 1)
    shown = {d: ns[:40] for d, ns in order.items()}
    width = max(len(ns) for ns in shown.values())
    fig, ax = plt.subplots(figsize=(min(16, 2 + 0.9 * width), 1.4 + 1.1 * len(shown)))
    pos = {}
    for d, ns in shown.items():
        for i, n in enumerate(ns):
            pos[n] = ((i + 0.5) / len(ns), -d)
    for u, v in G.edges():
        if u in pos and v in pos:
            ax.plot([pos[u][0], pos[v][0]], [pos[u][1], pos[v][1]], color="#bbbbbb", lw=0.8, zorder=1)
    cmap = matplotlib.colormaps["RdYlGn"]
    for n, (x, y) in pos.items():
        r = rep.node_recall.get(n)
        color = "#eeeeee" if r is None else cmap(r)
        label = tax.node(n).label + ("" if r is None else f"\n{100 * r:.0f}% of {rep.node_support[n]}")
        ax.text(x, y, label, ha="center", va="center", fontsize=7, zorder=2,
                bbox={"boxstyle": "round,pad=0.3", "fc": color, "ec": "#666666", "lw": 0.5})
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-len(shown) + 0.5, 0.5)
    ax.axis("off")
    ax.set_title("Taxonomy, per-node recall (top-down)")
    return _png(fig)


def _thumb(path: str, size: int = 96) -> str | None:
    from clipcls._errors import ImageError
    from clipcls._images import load_image

    try:
        img = load_image(path)
    except ImageError:
        return None
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.warn{background:#fff4d6;padding:.6em 1em;border-left:4px solid #e0a800}
.plots img{max-width:100%;margin:.5em}.pair img{height:72px;margin:2px;border:1px solid #ccc}"""


def _md_table_to_html(md: str) -> str:
    lines = [ln for ln in md.splitlines() if ln.strip() and not set(ln.replace("|", "").strip()) <= {"-"}]
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(rep: EvalReport, tax: Any, folder: str | os.PathLike[str]) -> Path:
    """Write ``folder/index.html``; returns its path."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>clipcls report: {html.escape(rep.taxonomy)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>clipcls evaluation: {html.escape(rep.taxonomy)}</h1>",
             f"<p>{rep.n} labelled images, model <code>{html.escape(rep.model)}</code>. "
             f"Top-down ECE (15 bins): {100 * rep.ece:.2f}%"
             + (f", after temperature calibration: {100 * rep.ece_calibrated:.2f}%" if rep.ece_calibrated is not None else "")
             + ".</p>"]
    for w in rep.warnings:
        parts.append(f"<p class='warn'>&#9888; {html.escape(w)}</p>")
    parts.append("<h2>Strategies side by side</h2>" + _md_table_to_html(rep.table()))
    parts.append("<p>top-1, top-5 and balanced accuracy (mean per-class recall) as in CLIP_benchmark; level k: accuracy "
                 "at depth k; hierarchical F1 over ancestor sets; mistake severity: mean height of the lowest common "
                 "ancestor of wrong answers; ms / image: cost after the image embedding.</p>")
    if rep.multilabel is not None:
        parts.append(f"<h2>Multi-label</h2><p>mAP {100 * rep.multilabel['mAP']:.1f}%, macro F1 "
                     f"{100 * rep.multilabel['macro_f1']:.1f}% at the node thresholds.</p>")
    cov_rows = "".join(f"<tr><td>{c.threshold:g}</td><td>{100 * c.coverage:.1f}</td><td>{100 * c.leaf_accuracy:.1f}</td>"
                       f"<td>{'-' if np.isnan(c.stopped_correct) else f'{100 * c.stopped_correct:.1f}'}</td></tr>"
                       for c in rep.coverage)
    parts.append("<h2>Thresholded top-down</h2><table><tr><th>threshold</th><th>coverage %</th><th>leaf accuracy %</th>"
                 f"<th>stopped answers correct (coarser) %</th></tr>{cov_rows}</table>")
    parts.append("<div class='plots'>"
                 f"<img alt='reliability diagram' src='{reliability_plot(rep)}'>"
                 f"<img alt='coverage-accuracy curve' src='{coverage_plot(rep)}'>"
                 f"<img alt='confusion matrix' src='{confusion_plot(rep)}'>"
                 f"<img alt='taxonomy tree with per-node accuracy' src='{tree_plot(rep, tax)}'></div>")
    if rep.worst_pairs:
        parts.append("<h2>Most confused pairs</h2><table><tr><th>true</th><th>predicted</th><th>count</th><th>examples</th></tr>")
        for t, a, n, ex in rep.worst_pairs:
            thumbs = "".join(f"<img alt='{html.escape(os.path.basename(p))}' title='{html.escape(p)}' src='{src}'>"
                             for p in ex if (src := _thumb(p)))
            parts.append(f"<tr><td>{html.escape(t)}</td><td>{html.escape(a)}</td><td>{n}</td><td class='pair'>{thumbs}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    page = out / "index.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    return page
