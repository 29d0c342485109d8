// Inline SVG charts (no library): grouped bars, diverging deltas and a threshold gauge. Each is
// role="img" with a text alternative; the screens also show the same numbers in a table.
const NS = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, v);
  el.append(...children.flat().filter((c) => c !== null && c !== undefined));
  return el;
}

const title = (text) => s("title", {}, text);
const f3 = (x) => x.toFixed(3);

// groups: [{name, values: {metric: number}, flags: {metric: "regressed"}}]; metrics: names in legend order
export function groupedBars(groups, metrics, { label = "" } = {}) {
  const W = Math.max(420, groups.length * (metrics.length * 26 + 34) + 60), H = 230;
  const top = 26, bottom = 40, left = 40, plotH = H - top - bottom;
  const y = (v) => top + plotH * (1 - Math.max(0, Math.min(1, v)));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", class: "chart", "aria-label": label });
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    svg.append(s("line", { x1: left, x2: W - 8, y1: y(t), y2: y(t), class: "grid" }),
      s("text", { x: left - 6, y: y(t) + 4, class: "axis", "text-anchor": "end" }, t.toFixed(2)));
  }
  const groupW = (W - left - 8) / Math.max(1, groups.length), barW = Math.min(24, (groupW - 18) / metrics.length);
  groups.forEach((g, gi) => {
    const x0 = left + gi * groupW + (groupW - barW * metrics.length) / 2;
    metrics.forEach((m, mi) => {
      const v = g.values[m];
      if (typeof v !== "number") return;
      const flag = g.flags?.[m] || "";
      const x = x0 + mi * barW;
      svg.append(s("rect", {
        x: x + 1, y: y(v), width: barW - 2, height: Math.max(0.5, top + plotH - y(v)),
        class: `bar s${mi} ${flag}`, "data-config": g.name, "data-metric": m,
      }, title(`${g.name} ${m}: ${f3(v)}${flag ? ` (${flag})` : ""}`)));
      if (flag) svg.append(s("text", { x: x + barW / 2, y: y(v) - 4, class: "flag", "text-anchor": "middle" }, "▼"));
    });
    svg.append(s("text", { x: left + gi * groupW + groupW / 2, y: H - bottom + 16, class: "axis", "text-anchor": "middle" }, g.name));
  });
  metrics.forEach((m, mi) => {
    const x = left + mi * 110;
    svg.append(s("rect", { x, y: 6, width: 10, height: 10, class: `bar s${mi}` }),
      s("text", { x: x + 14, y: 15, class: "axis" }, m));
  });
  return svg;
}

// rows: [{id, delta}] (largest change first); positive is better
export function deltaBars(rows, { label = "", max = 20 } = {}) {
  rows = rows.slice(0, max);
  const W = 560, rowH = 18, top = 8, left = 120, H = top * 2 + Math.max(1, rows.length) * rowH;
  const mid = left + (W - left - 50) / 2, half = (W - left - 50) / 2;
  const span = Math.max(0.01, ...rows.map((r) => Math.abs(r.delta)));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", class: "chart", "aria-label": label });
  rows.forEach((r, i) => {
    const w = (Math.abs(r.delta) / span) * half, yy = top + i * rowH;
    svg.append(
      s("text", { x: left - 6, y: yy + 13, class: "axis", "text-anchor": "end" }, r.id),
      s("rect", { x: r.delta < 0 ? mid - w : mid, y: yy + 3, width: Math.max(1, w), height: rowH - 6,
        class: `bar ${r.delta < 0 ? "down" : "up"}`, "data-query": r.id }, title(`${r.id}: ${r.delta > 0 ? "+" : ""}${f3(r.delta)}`)),
      s("text", { x: r.delta < 0 ? mid + 4 : mid - 4, y: yy + 13, class: "axis", "text-anchor": r.delta < 0 ? "start" : "end" },
        `${r.delta > 0 ? "+" : ""}${f3(r.delta)}`));
  });
  svg.append(s("line", { x1: mid, x2: mid, y1: 0, y2: H, class: "zero" }));
  return svg;
}

// a horizontal gauge over [lo, hi] with the warning and critical lines of an alert rule
export function gauge(value, t, lo, hi, { label = "", unit = "" } = {}) {
  const W = 220, H = 34, pad = 4;
  const x = (v) => pad + ((Math.max(lo, Math.min(hi, v)) - lo) / (hi - lo)) * (W - 2 * pad);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "gauge", "aria-label": label });
  svg.append(s("rect", { x: pad, y: 8, width: W - 2 * pad, height: 10, class: "track" }));
  if (typeof value === "number") svg.append(s("rect", { x: pad, y: 8, width: Math.max(1, x(value) - pad), height: 10, class: "fill" }));
  for (const [name, v] of [["warning", t.warning], ["critical", t.critical]]) {
    svg.append(s("line", { x1: x(v), x2: x(v), y1: 4, y2: 22, class: `limit ${name}`, "data-limit": name }, title(`${name}: ${v}${unit}`)),
      s("text", { x: x(v), y: 32, class: `axis limit-label ${name}`, "text-anchor": "middle" }, name === "warning" ? "warn" : "crit"));
  }
  return svg;
}
