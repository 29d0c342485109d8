"""A self-contained HTML report for an evaluation: inline SVG charts, no scripts, no CDN, so it
opens from a file share or a CI artifact on an offline machine exactly as it was written."""

from __future__ import annotations

from html import escape
from typing import Any

_COLORS = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D")
_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:right}th:first-child,td:first-child{text-align:left}
.best{font-weight:700}.muted{color:#777}.neg{color:#b00}.pos{color:#070}svg text{font:11px system-ui,sans-serif}
"""


def _fmt(v: float) -> str:
    return f"{v:.4f}"


def _bar_chart(summary: dict[str, dict[str, float]], metrics: list[str]) -> str:
    """Grouped bars: one group per metric, one bar per configuration, values in [0, 1]."""
    configs = list(summary)
    bar_w, gap, height, top, left = 18, 26, 200, 20, 36
    group_w = bar_w * len(configs) + gap
    width = left + group_w * len(metrics) + 10
    parts = [f'<svg role="img" width="{width}" height="{height + top + 40}" xmlns="http://www.w3.org/2000/svg">']
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        y = top + height * (1 - tick)
        parts.append(f'<line x1="{left}" x2="{width}" y1="{y}" y2="{y}" stroke="#eee"/>'
                     f'<text x="{left - 4}" y="{y + 4}" text-anchor="end">{tick:g}</text>')
    for gi, metric in enumerate(metrics):
        x0 = left + gi * group_w + gap / 2
        for ci, config in enumerate(configs):
            v = float(summary[config].get(metric, 0.0))
            h = max(v, 0.0) * height
            x = x0 + ci * bar_w
            parts.append(
                f'<rect x="{x}" y="{top + height - h}" width="{bar_w - 2}" height="{h}" '
                f'fill="{_COLORS[ci % len(_COLORS)]}"><title>{escape(config)} {escape(metric)} = {_fmt(v)}</title>'
                "</rect>"
            )
        parts.append(f'<text x="{x0 + bar_w * len(configs) / 2}" y="{top + height + 16}" '
                     f'text-anchor="middle">{escape(metric)}</text>')
    legend_y = top + height + 34
    for ci, config in enumerate(configs):
        parts.append(f'<rect x="{left + ci * 130}" y="{legend_y - 9}" width="10" height="10" '
                     f'fill="{_COLORS[ci % len(_COLORS)]}"/><text x="{left + ci * 130 + 14}" y="{legend_y}">'
                     f"{escape(config)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _delta_chart(deltas: list[tuple[str, float]]) -> str:
    """Every query's change against the reference configuration, sorted: bars up are gains."""
    if not deltas:
        return '<p class="muted">No queries in common.</p>'
    bar_w = max(2, min(14, 900 // len(deltas)))
    half, width = 80, bar_w * len(deltas) + 40
    parts = [f'<svg role="img" width="{width}" height="{2 * half + 20}" xmlns="http://www.w3.org/2000/svg">',
             f'<line x1="30" x2="{width}" y1="{half + 10}" y2="{half + 10}" stroke="#999"/>',
             f'<text x="26" y="18" text-anchor="end">+1</text><text x="26" y="{2 * half + 14}" '
             'text-anchor="end">-1</text>']
    for i, (qid, d) in enumerate(deltas):
        h = abs(d) * half
        y = half + 10 - h if d > 0 else half + 10
        color = "#54A24B" if d > 0 else "#E45756" if d < 0 else "#bbb"
        parts.append(f'<rect x="{30 + i * bar_w}" y="{y}" width="{bar_w - 1}" height="{max(h, 0.5)}" '
                     f'fill="{color}"><title>{escape(qid)}: {d:+.4f}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def _summary_table(summary: dict[str, dict[str, float]], keys: list[str]) -> str:
    best = {k: max(summary[c].get(k, 0.0) for c in summary) for k in keys}
    head = "".join(f"<th>{escape(k)}</th>" for k in keys)
    rows = []
    for config, values in summary.items():
        cells = "".join(
            f'<td class="{"best" if values.get(k, 0.0) == best[k] and len(summary) > 1 else ""}">'
            f"{_fmt(values.get(k, 0.0))}</td>"
            for k in keys
        )
        latency = values.get("latency_p50_ms")
        lat = f"{latency:.1f} / {values.get('latency_p95_ms', 0.0):.1f}" if latency is not None else "—"
        rows.append(f"<tr><td>{escape(config)}</td>{cells}<td>{lat}</td></tr>")
    return f"<table><tr><th>configuration</th>{head}<th>latency p50 / p95 ms</th></tr>{''.join(rows)}</table>"


def render_html(report: dict[str, Any]) -> str:
    """`report` is the JSON the CLI writes (dataset, ks, metric, summary, per_query, timings)."""
    summary: dict[str, dict[str, float]] = report["summary"]
    ks: list[int] = report["ks"]
    metric: str = report["metric"]
    keys = [f"{m}@{k}" for m in ("ndcg", "mrr", "recall", "precision", "hit_rate") for k in ks]
    chart_keys = [f"{m}@{10 if 10 in ks else max(ks)}" for m in ("ndcg", "mrr", "recall", "precision", "hit_rate")]
    configs = list(summary)
    ds = report["dataset"]
    sections = [
        f"<h1>Cairn retrieval evaluation — {escape(str(ds['name']))}</h1>",
        f'<p class="muted">{ds["documents"]} documents, {ds["queries"]} judged queries (split '
        f"{escape(str(ds['split']))}); ingest {report['timings']['ingest_s']:.1f} s, evaluation "
        f"{report['timings']['eval_s']:.1f} s; generated {escape(str(report['generated_at']))}.</p>",
        "<h2>Summary</h2>", _summary_table(summary, keys),
        f"<h2>Per configuration (@{chart_keys[0].split('@')[1]})</h2>", _bar_chart(summary, chart_keys),
    ]
    reference = configs[0]
    per_query: dict[str, dict[str, dict[str, Any]]] = report["per_query"]
    for config in configs[1:]:
        deltas = sorted(
            (
                (qid, per_query[config][qid]["metrics"][metric] - per_query[reference][qid]["metrics"][metric])
                for qid in per_query[reference]
                if qid in per_query[config]
            ),
            key=lambda x: -x[1],
        )
        changed = [d for d in deltas if abs(d[1]) > 1e-12]
        better = sum(1 for _, d in changed if d > 0)
        sections.append(
            f"<h2>Per-query {escape(metric)}: {escape(config)} vs {escape(reference)}</h2>"
            f'<p><span class="pos">{better} better</span>, <span class="neg">{len(changed) - better} worse</span>, '
            f"{len(deltas) - len(changed)} unchanged.</p>{_delta_chart(deltas)}"
        )
        worst = sorted(changed, key=lambda x: x[1])[:10]
        if worst:
            rows = "".join(
                f'<tr><td>{escape(q)}</td><td>{escape(str(per_query[reference][q].get("query", ""))[:120])}</td>'
                f'<td class="neg">{d:+.4f}</td></tr>'
                for q, d in worst
                if d < 0
            )
            if rows:
                sections.append(f"<table><tr><th>query</th><th>text</th><th>Δ</th></tr>{rows}</table>")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Cairn evaluation — '
            f"{escape(str(ds['name']))}</title><style>{_CSS}</style></head><body>{''.join(sections)}</body></html>\n")
