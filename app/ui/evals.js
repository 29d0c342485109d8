// Evaluation reports: runs with per-configuration bar charts, baseline and regression marks, and
// per-query deltas between two runs (GET /v1/evals/{a}/compare/{b}).
import { $, alertError, api, enc, h, plural, session, status, when } from "./lib.js";
import { deltaBars, groupedBars } from "./charts.js";

let runs = [];
let current = null;

const kOf = (run) => (run.ks.includes(10) ? 10 : Math.max(...run.ks));
const metricsOf = (run) => ["ndcg", "mrr", "recall"].map((m) => `${m}@${kOf(run)}`);
const f3 = (x) => (typeof x === "number" ? x.toFixed(3) : "—");
const signed = (x) => `${x > 0 ? "+" : ""}${x.toFixed(3)}`;

function flags(run) {
  return [run.is_baseline && h("span", { class: "chip baseline" }, "baseline"),
    run.regressed && h("span", { class: "chip regressed" }, "regressed")].filter(Boolean);
}

function best(run) {
  const key = `ndcg@${kOf(run)}`;
  const values = Object.values(run.summary).map((m) => m[key]).filter((v) => typeof v === "number");
  return values.length ? `${f3(Math.max(...values))} ${key}` : "—";
}

export async function loadEvals() {
  if (!session.me) return;
  try {
    const { data, count } = await api("v1/evals?limit=200");
    runs = data;
    $("#evals tbody").replaceChildren(...data.map((r) => h("tr", { "data-eval": r.id, "aria-selected": String(r.id === current?.id) },
      h("td", {}, h("button", { type: "button", class: "link", onclick: () => openEval(r.id) }, r.dataset_id), h("span", { class: "id" }, r.id)),
      h("td", {}, when(r.created_at)),
      h("td", {}, h("span", { class: `state state-${r.status}` }, r.status), r.status === "running" ? ` ${Math.round(r.progress * 100)} %` : ""),
      h("td", {}, Object.keys(r.summary).join(", ") || r.configs.map((c) => c.name).join(", ")),
      h("td", {}, r.status === "succeeded" ? best(r) : ""),
      h("td", {}, flags(r)))));
    $("#evals").hidden = !count;
    $("#evals-empty").hidden = !!count;
    $("#evals-summary").textContent = `${plural(count, "evaluation run")}, newest first.`;
  } catch (err) { alertError(err); }
}

function summaryTable(run, metrics, regressed) {
  return h("table", { class: "docs", "aria-label": "Scores by configuration" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Configuration"), metrics.map((m) => h("th", { scope: "col" }, m)),
      h("th", { scope: "col" }, "Queries"), h("th", { scope: "col" }, "p95 latency"))),
    h("tbody", {}, Object.entries(run.summary).map(([config, m]) => h("tr", { "data-config": config },
      h("th", { scope: "row" }, config),
      metrics.map((k) => h("td", { class: regressed.has(`${config} ${k}`) ? "regressed" : "" }, f3(m[k]),
        regressed.has(`${config} ${k}`) ? " ▼" : "")),
      h("td", {}, String(m.queries ?? "")), h("td", {}, typeof m.latency_p95_ms === "number" ? `${m.latency_p95_ms.toFixed(1)} ms` : "")))));
}

async function openEval(id) {
  alertError(null);
  try {
    const run = await api(`v1/evals/${enc(id)}`);
    current = run;
    for (const tr of document.querySelectorAll("#evals tbody tr")) tr.setAttribute("aria-selected", String(tr.dataset.eval === id));
    const box = $("#eval-box");
    box.hidden = false;
    $("#h-eval").textContent = `Evaluation · ${run.dataset_id} · ${run.status}`;
    $("#eval-meta").replaceChildren(
      [`by ${run.created_by}`, when(run.created_at), run.duration_s != null && `${run.duration_s.toFixed(1)} s`,
        `k = ${run.ks.join(", ")}`, run.baseline_id && !run.is_baseline && `checked against baseline ${run.baseline_id}`,
        `regression threshold ${run.regression_threshold}`].filter(Boolean).join(" · "), " ", ...flags(run));
    const metrics = metricsOf(run);
    const regressed = new Set(run.regressions.map((r) => `${r.config} ${r.metric}`));
    const groups = Object.entries(run.summary).map(([name, values]) => ({
      name, values, flags: Object.fromEntries(metrics.filter((m) => regressed.has(`${name} ${m}`)).map((m) => [m, "regressed"])),
    }));
    $("#eval-chart").replaceChildren(...(groups.length ? [
      groupedBars(groups, metrics, { label: `${metrics.join(", ")} by configuration` }),
      h("figcaption", { class: "muted small" }, `${metrics.join(" · ")} per configuration; ▼ marks a regression against the baseline.`),
    ] : [h("p", { class: "muted" }, run.error ? `Failed: ${run.error}` : "No scores yet.")]));
    $("#eval-table").replaceChildren(groups.length ? summaryTable(run, metrics, regressed) : "");
    const shownDrops = run.regressions.filter((r) => metrics.includes(r.metric));
    const more = run.regressions.length - shownDrops.length;
    $("#eval-regressions").replaceChildren(...shownDrops.map((r) => h("li", {},
      `${r.metric} of ${r.config} fell ${Math.abs(r.delta).toFixed(3)} below the baseline (${f3(r.baseline)} → ${f3(r.value)})`)),
    ...(more > 0 ? [h("li", {}, `and ${more} more metric${more === 1 ? "" : "s"} (other k) below the baseline`)] : []));
    $("#baseline-btn").hidden = !session.me.can_write || run.is_baseline || run.status !== "succeeded";
    const others = runs.filter((r) => r.dataset_id === run.dataset_id && r.id !== run.id && r.status === "succeeded");
    $("#compare-with").replaceChildren(...others.map((r) => h("option", { value: r.id },
      `${when(r.created_at)}${r.is_baseline ? " (baseline)" : ""} · ${r.id.slice(0, 8)}`)));
    const preferred = others.find((r) => r.is_baseline) || others[0];
    if (preferred) $("#compare-with").value = preferred.id;
    $("#compare-row").hidden = !others.length || run.status !== "succeeded";
    $("#compare-out").replaceChildren();
    $("#h-eval").focus();
  } catch (err) { alertError(err); }
}

async function compare() {
  if (!current) return;
  const other = $("#compare-with").value;
  try {
    // delta = this run - the other one, so a drop is negative
    const c = await api(`v1/evals/${enc(other)}/compare/${enc(current.id)}`);
    const threshold = current.regression_threshold;
    const configs = Object.entries(c.configs);
    const keys = metricsOf(current).filter((k) => configs.some(([, m]) => k in m));
    const table = h("table", { class: "docs", "aria-label": "Change by configuration" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Configuration"), keys.map((k) => h("th", { scope: "col" }, `${k} (other → this)`)))),
      h("tbody", {}, configs.map(([config, m]) => h("tr", { "data-config": config }, h("th", { scope: "row" }, config),
        keys.map((k) => {
          const d = m[k];
          if (!d) return h("td", {}, "—");
          const cls = d.delta < -threshold ? "regressed" : d.delta > threshold ? "improved" : "";
          return h("td", { class: cls }, `${f3(d.a)} → ${f3(d.b)} (${signed(d.delta)})`);
        })))));
    const perQuery = configs.map(([config]) => {
      const rows = (c.per_query[config] || []).map((q) => ({ id: q.query_id, delta: q.delta }));
      return h("figure", { class: "chart-box", "data-config": config },
        h("figcaption", {}, h("strong", {}, config), ` · ${c.metric} per query, this run minus the other: ${plural(rows.length, "query")} changed`),
        rows.length ? deltaBars(rows, { label: `${c.metric} change per query for ${config}` }) : h("p", { class: "muted small" }, "No query changed."));
    });
    $("#compare-out").replaceChildren(h("h3", {}, "Compared with ", other.slice(0, 8)), table, ...perQuery);
    status(`Compared with ${other.slice(0, 8)}.`);
  } catch (err) { alertError(err); }
}

$("#compare-btn").addEventListener("click", compare);
$("#evals-refresh").addEventListener("click", loadEvals);
$("#baseline-btn").addEventListener("click", async () => {
  try {
    await api(`v1/evals/${enc(current.id)}/baseline`, { method: "POST" });
    status(`Marked ${current.id.slice(0, 8)} as the baseline of ${current.dataset_id}.`);
    await loadEvals();
    await openEval(current.id);
  } catch (err) { alertError(err); }
});
