// Cairn web UI: one page, hash routes, no framework. Every call goes to the API with the
// signed-in key, so the server decides what this page can see and do.
import {
  $, KEY, POLL_MS, ROOT, ApiError, alertError, api, authHeaders, chips, enc, errorOf, h, label, pct, secs, session,
  sleep, status, when,
} from "./lib.js";
import { loadReviews } from "./desk.js";
import { loadEvals } from "./evals.js";
import { gauge } from "./charts.js";

const PARALLEL_UPLOADS = 3;
const VIEWS = ["knowledge", "search", "ask", "support", "reviews", "runs", "evals", "dashboard"];

let me = null;
let shown = "";
const csv = (s) => s.split(",").map((x) => x.trim()).filter(Boolean);

// ---- sign in and routing -------------------------------------------------------------------

async function signIn(key) {
  sessionStorage.setItem(KEY, key);
  me = session.me = await api("v1/me");
  $("#principal").textContent = `${me.user} · ${me.role}`;
  $("#principal").title = `tenant ${me.tenant}; sees: ${me.principals.join(", ")}`;
  for (const el of document.querySelectorAll("[data-write]")) el.hidden = !me.can_write;
  loadWorkflows();
}

async function loadWorkflows() {
  try {
    const { data } = await api("v1/workflows");
    const sel = $("#workflow"), keep = sel.value;
    sel.replaceChildren(...data.map((w) => h("option", { value: w.name, title: w.description },
      w.steps.some((s) => s.type === "human_review") ? `${w.name} (may ask for review)` : w.name)));
    sel.value = data.some((w) => w.name === keep) ? keep : "grounded_qa";
  } catch { /* the default option stays */ }
}

function signOut(reason = "") {
  sessionStorage.removeItem(KEY);
  me = session.me = null;
  status(reason || "Signed out.");
  if (location.hash !== "#/signin") location.hash = "#/signin";
  else route();
}

function route() {
  const name = (location.hash.replace(/^#\/?/, "") || "knowledge").split("?")[0];
  const view = !me ? "signin" : VIEWS.includes(name) ? name : "knowledge";
  for (const sec of document.querySelectorAll("[data-view]")) sec.hidden = sec.id !== `view-${view}`;
  $("#nav").hidden = $("#who").hidden = !me;
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.getAttribute("href") === `#/${view}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `Cairn · ${$(`#h-${view}`).textContent}`;
  if (view !== shown && shown !== "signin" && view !== "signin") status("");
  shown = view;
  alertError(null);
  if (view === "knowledge") loadDocuments();
  if (view === "runs") loadRuns();
  if (view === "reviews") loadReviews();
  if (view === "evals") loadEvals();
  if (view === "dashboard") loadDashboard();
  $(`#h-${view}`).focus();
}

$("#signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await signIn($("#key").value.trim());
    $("#key").value = "";
    status(`Signed in as ${me.user}.`);
    if (!location.hash || location.hash === "#/signin") location.hash = "#/knowledge";
    else route();
  } catch (err) {
    sessionStorage.removeItem(KEY);
    me = session.me = null;
    alertError(err);
  }
});
$("#signout").addEventListener("click", () => signOut());
session.onUnauthorized = () => signOut("Your key was not accepted; sign in again.");
window.addEventListener("hashchange", route);

// ---- knowledge: upload with per-file progress ----------------------------------------------

const TERMINAL = new Set(["indexed", "failed", "unchanged"]);

function uploadRow(file) {
  const bar = h("progress", { max: "1", value: "0", "aria-label": `${file.name} progress` });
  const state = h("span", { class: "state state-uploading" }, "uploading");
  const reason = h("span", { class: "reason", hidden: true });
  const li = h("li", { "data-file": file.name }, h("span", {}, file.name), bar, state, reason);
  $("#uploads").prepend(li);
  return {
    set(name, progress, why) {
      state.textContent = name;
      state.className = `state state-${name}`;
      li.dataset.state = name;
      if (progress !== undefined) bar.value = progress;
      if (why) { reason.textContent = why; reason.hidden = false; }
      if (TERMINAL.has(name)) status(`${file.name}: ${name}${why ? ` (${why})` : ""}`);
    },
  };
}

function send(file, meta, onProgress) {
  // XHR, because fetch cannot report upload progress.
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const form = new FormData();
    form.append("file", file);
    form.append("metadata", JSON.stringify(meta));
    xhr.open("POST", new URL("v1/documents", ROOT));
    xhr.setRequestHeader("Authorization", authHeaders().Authorization);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new Error("network error"));
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch { /* empty */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body.error?.code, body.error?.message || `HTTP ${xhr.status}`));
    };
    xhr.send(form);
  });
}

async function uploadOne(file, meta) {
  const row = uploadRow(file);
  try {
    const sent = await send(file, meta, (f) => row.set("uploading", f * 0.1));
    if (sent.unchanged) { row.set("unchanged", 1); return; }
    row.set("queued", 0.1);
    for (;;) {
      const job = await api(`v1/jobs/${encodeURIComponent(sent.job_id)}`);
      row.set(job.state, Math.max(0.1, job.progress), job.error);
      if (TERMINAL.has(job.state)) break;
      await sleep(POLL_MS);
    }
  } catch (err) {
    row.set("failed", 0, err.message);
  }
}

function metadataFor(file, single) {
  const meta = { title: single && $("#m-title").value.trim() ? $("#m-title").value.trim() : file.name };
  const tags = csv($("#m-tags").value), acl = csv($("#m-acl").value), docId = $("#m-docid").value.trim();
  if (tags.length) meta.tags = tags;
  if (acl.length) meta.acl = acl;
  if (single && docId) meta.doc_id = docId;
  return meta;
}

async function uploadAll(files) {
  files = [...files];
  if (!files.length) return;
  const queue = files.map((f) => [f, metadataFor(f, files.length === 1)]);
  status(`Uploading ${files.length} file${files.length > 1 ? "s" : ""}…`);
  const worker = async () => { for (let item; (item = queue.shift());) await uploadOne(...item); };
  await Promise.all(Array.from({ length: Math.min(PARALLEL_UPLOADS, files.length) }, worker));
  $("#m-docid").value = "";
  loadDocuments();
}

$("#files").addEventListener("change", (ev) => { uploadAll(ev.target.files); ev.target.value = ""; });
const drop = $("#drop");
for (const t of ["dragenter", "dragover"]) drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); });
for (const t of ["dragleave", "drop"]) drop.addEventListener(t, () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); uploadAll(e.dataTransfer.files); });

// ---- knowledge: documents ------------------------------------------------------------------

async function loadDocuments() {
  if (!me) return;
  try {
    const { data, count } = await api("v1/documents?limit=200");
    const body = $("#docs tbody");
    body.replaceChildren(...data.map(docRow));
    $("#docs").hidden = !count;
    $("#docs-empty").hidden = !!count;
  } catch (err) { alertError(err); }
}

function docRow(d) {
  const title = h("td", {}, d.title || "(untitled)", h("span", { class: "id" }, d.document_id));
  const [cur, last] = [d.current_version, d.latest_version];
  const version = !cur || cur === last ? `v${last}` : `v${cur}, newest v${last}`;
  const actions = h("td", {},
    h("button", { type: "button", class: "quiet small", "aria-expanded": "false", onclick: (e) => toggleVersions(e.currentTarget, d) }, "Versions"),
    " ",
    me.can_write && h("button", { type: "button", class: "quiet small", onclick: () => newVersion(d) }, "New version"),
    " ",
    me.can_write && h("button", { type: "button", class: "danger small", onclick: () => removeDoc(d) }, "Delete"));
  return h("tr", { "data-doc": d.document_id }, title, h("td", {}, version),
    h("td", {}, h("span", { class: `state state-${d.status}` }, d.status)),
    h("td", {}, chips(d.tags)), h("td", {}, chips(d.acl)), actions);
}

async function toggleVersions(btn, d) {
  const row = btn.closest("tr");
  if (row.nextElementSibling?.classList.contains("versions")) {
    row.nextElementSibling.remove();
    btn.setAttribute("aria-expanded", "false");
    return;
  }
  try {
    const doc = await api(`v1/documents/${encodeURIComponent(d.document_id)}`);
    const items = doc.versions.map((v) => h("li", {},
      `v${v.version} · ${v.filename} · ${v.size_bytes} bytes · ${v.chunk_count} chunk${v.chunk_count === 1 ? "" : "s"} · `,
      h("span", { class: `state state-${v.status}` }, v.status),
      v.error ? ` — ${v.error}` : "", ` · ${new Date(v.created_at).toLocaleString()}`));
    row.after(h("tr", { class: "versions" }, h("td", { colspan: "6" }, h("ol", { "aria-label": `Versions of ${doc.title}` }, items))));
    btn.setAttribute("aria-expanded", "true");
  } catch (err) { alertError(err); }
}

function newVersion(d) {
  $("#m-docid").value = d.document_id;
  $("#m-title").value = d.title;
  $("#m-tags").value = d.tags.join(", ");
  $("#m-acl").value = d.acl.join(", ");
  status(`Choose the file for a new version of ${d.title}.`);
  $("#files").focus();
}

function confirmDialog(text) {
  const dlg = $("#confirm");
  $("#confirm-text").textContent = text;
  dlg.returnValue = "";
  dlg.showModal();
  $("#confirm-ok").focus();
  return new Promise((r) => dlg.addEventListener("close", () => r(dlg.returnValue === "ok"), { once: true }));
}

async function removeDoc(d) {
  if (!(await confirmDialog(`Delete “${d.title || d.document_id}” and all its versions? This cannot be undone.`))) return;
  try {
    await api(`v1/documents/${encodeURIComponent(d.document_id)}`, { method: "DELETE" });
    status(`Deleted ${d.title || d.document_id}.`);
    loadDocuments();
  } catch (err) { alertError(err); }
}

$("#refresh").addEventListener("click", loadDocuments);

// ---- search --------------------------------------------------------------------------------

function highlight(text, spans) {
  // spans: [start, end) pairs into text; returns text nodes and <mark>s
  const out = [];
  let at = 0;
  for (const [s, e] of spans.sort((a, b) => a[0] - b[0])) {
    if (s < at || e <= s) continue;
    out.push(text.slice(at, s), h("mark", {}, text.slice(s, e)));
    at = e;
  }
  out.push(text.slice(at));
  return out;
}

function termSpans(text, query) {
  const terms = [...new Set(query.toLowerCase().match(/[\p{L}\p{N}]{3,}/gu) || [])];
  if (!terms.length) return [];
  const re = new RegExp(terms.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"), "giu");
  return [...text.matchAll(re)].map((m) => [m.index, m.index + m[0].length]);
}

function snippet(text, query, max = 320) {
  if (text.length <= max) return text;
  const first = termSpans(text, query)[0]?.[0] ?? 0;
  const start = Math.max(0, first - 80);
  return `${start ? "…" : ""}${text.slice(start, start + max)}…`;
}

$("#search-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const query = $("#q").value.trim();
  if (!query) return;
  alertError(null);
  $("#search-summary").textContent = "Searching…";
  try {
    const t0 = performance.now();
    const { results } = await api("v1/search", { method: "POST", json: { query, top_k: 10, mode: $("#mode").value } });
    const ms = Math.round(performance.now() - t0);
    $("#search-summary").textContent = `${results.length} result${results.length === 1 ? "" : "s"} in ${ms} ms`;
    $("#results").replaceChildren(...results.map((r) => {
      const text = snippet(r.text, query);
      return h("li", { "data-doc": r.doc_id },
        h("span", { class: "score", title: "fused score" }, r.score.toFixed(3)),
        h("strong", {}, r.title || r.doc_id),
        h("span", { class: "muted small" }, ` · v${r.version}${r.page ? ` · page ${r.page}` : ""}${r.section_path?.length ? ` · ${r.section_path.join(" › ")}` : ""}`),
        h("p", { class: "snippet" }, highlight(text, termSpans(text, query))));
    }));
  } catch (err) {
    $("#search-summary").textContent = "";
    alertError(err);
  }
});

// ---- ask: streamed answer, [n] markers, cited source --------------------------------------

let citations = [];

async function* sseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buf += value;
    buf = buf.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        const i = line.indexOf(":");
        if (i === 0) continue; // comment / keep-alive
        const field = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
        if (field === "event") event = val;
        else if (field === "data") data.push(val);
      }
      if (data.length) yield { event, data: data.join("\n") };
    }
    if (done) return;
  }
}

function renderAnswer(text, cites) {
  const byN = new Map(cites.map((c) => [c.n, c]));
  const parts = [];
  let at = 0;
  for (const m of text.matchAll(/\[(\d{1,4})\]/g)) {
    const c = byN.get(Number(m[1]));
    if (!c) continue;
    parts.push(text.slice(at, m.index), h("button", {
      type: "button", class: "cite", "data-n": c.n, "aria-pressed": "false",
      "aria-label": `Source ${c.n}: ${c.title || c.doc_id}`, onclick: () => openSource(c),
    }, `[${c.n}]`));
    at = m.index + m[0].length;
  }
  parts.push(text.slice(at));
  $("#answer").replaceChildren(...parts);
}

function showResult(r) {
  citations = r.citations || [];
  renderAnswer(r.answer || "", r.abstained ? [] : citations);
  $("#abstained").hidden = !r.abstained;
  $("#citations").replaceChildren(...(r.abstained ? [] : citations).map((c) => h("li", { value: c.n },
    h("button", { type: "button", class: "quiet small", onclick: () => openSource(c) }, c.title || c.doc_id),
    c.page ? ` · page ${c.page}` : "", c.supported === false ? " · weak support" : "")));
  $("#review").hidden = r.status !== "awaiting_review";
  $("#review").dataset.run = r.run_id || "";
  const meta = [r.status && r.status !== "succeeded" ? r.status : "", r.model && `model ${r.model}`,
    typeof r.groundedness === "number" && `groundedness ${r.groundedness.toFixed(2)}`,
    r.latency_ms && `${Math.round(r.latency_ms)} ms`, r.run_id && `run ${r.run_id}`].filter(Boolean);
  $("#answer-meta").textContent = meta.join(" · ");
  resetFeedback(r.run_id);
  status(r.abstained ? "Not found in the knowledge base." : `Answer ready with ${citations.length} source${citations.length === 1 ? "" : "s"}.`);
}

$("#ask-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const question = $("#question").value.trim();
  if (!question) return;
  alertError(null);
  const answer = $("#answer");
  $("#answer-box").hidden = false;
  $("#source").hidden = true;
  $("#abstained").hidden = $("#review").hidden = $("#feedback").hidden = true;
  $("#citations").replaceChildren();
  $("#answer-meta").textContent = "";
  answer.textContent = "";
  answer.setAttribute("aria-busy", "true");
  $("#ask-btn").disabled = true;
  status("Thinking…");
  const body = { question, stream: true };
  if ($("#workflow").value !== "grounded_qa") body.workflow = $("#workflow").value;
  try {
    const res = await fetch(new URL("v1/answers", ROOT), {
      method: "POST", body: JSON.stringify(body),
      headers: authHeaders({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    });
    if (!res.ok) throw await errorOf(res);
    if (!(res.headers.get("content-type") || "").includes("text/event-stream")) {
      showResult(await res.json());
      return;
    }
    let streamed = "", final = null;
    for await (const { event, data } of sseEvents(res.body)) {
      const msg = JSON.parse(data);
      const type = msg.type || event;
      if (type === "token") {
        streamed += msg.text ?? "";
        answer.textContent = streamed;
      } else if (type === "final") {
        final = msg.result || msg;
      } else if (type === "error") {
        throw new ApiError(0, msg.code, msg.message || "the answer failed");
      }
    }
    if (!final) throw new Error("the answer stream ended early; try again");
    showResult(final);
  } catch (err) {
    alertError(err);
    status("");
  } finally {
    answer.setAttribute("aria-busy", "false");
    $("#ask-btn").disabled = false;
  }
});

async function findChunk(c) {
  // The chunk is fetched with the signed-in key, so a source is shown only if it is still visible.
  const { results } = await api("v1/search", {
    method: "POST", json: { query: c.quote || c.title || "source", top_k: 50, filters: { doc_ids: [c.doc_id] } },
  });
  return results.find((r) => r.chunk_id === c.chunk_id) || null;
}

async function openSource(c) {
  for (const b of document.querySelectorAll(".cite")) b.setAttribute("aria-pressed", String(Number(b.dataset.n) === c.n));
  const box = $("#source"), text = $("#source-text");
  box.hidden = false;
  $("#source-title").textContent = `[${c.n}] ${c.title || c.doc_id}${c.page ? ` · page ${c.page}` : ""}`;
  text.textContent = "Loading…";
  $("#h-source").focus();
  let chunk = null;
  try { chunk = await findChunk(c); } catch (err) { alertError(err); }
  const quotes = (c.quotes && c.quotes.length ? c.quotes : [{ text: c.quote, char_start: c.char_start }]).filter((q) => q.text);
  if (!chunk) {
    text.replaceChildren(h("mark", {}, c.quote), h("p", { class: "muted small" }, "The cited passage is no longer in the current version of this document."));
    return;
  }
  const spans = quotes.map((q) => {
    let s = q.char_start - chunk.char_start;
    if (chunk.text.slice(s, s + q.text.length) !== q.text) s = chunk.text.indexOf(q.text);
    return [s, s + q.text.length];
  }).filter(([s]) => s >= 0);
  text.replaceChildren(...highlight(chunk.text, spans));
  text.querySelector("mark")?.scrollIntoView({ block: "nearest" });
}

$("#source-close").addEventListener("click", () => {
  $("#source").hidden = true;
  document.querySelector('.cite[aria-pressed="true"]')?.focus();
});

for (const btn of document.querySelectorAll("[data-review]")) {
  btn.addEventListener("click", async () => {
    const run = $("#review").dataset.run;
    try {
      const r = await api(`v1/runs/${encodeURIComponent(run)}/review`, {
        method: "POST", json: { action: btn.dataset.review, comment: $("#review-comment").value },
      });
      if (r.result) showResult(r.result);
      $("#review").hidden = true;
      status(`Review recorded: ${btn.dataset.review}; the run is ${r.status.replace("_", " ")}.`);
    } catch (err) { alertError(err); }
  });
}

// ---- ask: feedback on an answer ------------------------------------------------------------

function resetFeedback(runId) {
  const box = $("#feedback");
  box.hidden = !runId;
  box.dataset.run = runId || "";
  $("#fb-reason").value = "";
  $("#fb-done").textContent = "";
  for (const b of box.querySelectorAll("[data-rating]")) { b.disabled = false; b.setAttribute("aria-pressed", "false"); }
}

for (const btn of document.querySelectorAll("#feedback [data-rating]")) {
  btn.addEventListener("click", async () => {
    const box = $("#feedback"), reason = $("#fb-reason").value.trim();
    try {
      await api(`v1/answers/${enc(box.dataset.run)}/feedback`, { method: "POST", json: { rating: btn.dataset.rating, reason: reason || null } });
      for (const b of box.querySelectorAll("[data-rating]")) { b.disabled = true; b.setAttribute("aria-pressed", String(b === btn)); }
      $("#fb-done").textContent = "Thanks for your feedback.";
    } catch (err) { alertError(err); }
  });
}

// ---- runs: list and timeline -------------------------------------------------------------

async function loadRuns() {
  if (!me) return;
  try {
    const { data, count } = await api("v1/runs?limit=100");
    $("#runs tbody").replaceChildren(...data.map((r) => h("tr", { "data-run": r.id },
      h("td", {}, h("button", { type: "button", class: "link", onclick: () => openRun(r.id) }, r.question || r.id)),
      h("td", {}, `${r.workflow} v${r.version}`), h("td", {}, r.started_by), h("td", {}, when(r.created_at)),
      h("td", {}, h("span", { class: `state state-${r.status}` }, r.status.replace("_", " "))))));
    $("#runs").hidden = !count;
    $("#runs-empty").hidden = !!count;
    $("#runs-summary").textContent = `${count} run${count === 1 ? "" : "s"}${me.role === "admin" ? " in this tenant" : " you started"}, newest first.`;
  } catch (err) { alertError(err); }
}

async function openRun(id) {
  try {
    const r = await api(`v1/runs/${encodeURIComponent(id)}`);
    for (const tr of document.querySelectorAll("#runs tbody tr")) tr.setAttribute("aria-selected", String(tr.dataset.run === id));
    $("#h-run").textContent = `Run · ${r.workflow} · ${r.status.replace("_", " ")}`;
    $("#run-meta").textContent = [r.question && `“${r.question}”`, `by ${r.started_by}`, when(r.created_at),
      `total ${secs(r.duration_ms)}`, `${r.usage.input_tokens} / ${r.usage.output_tokens} tokens`,
      `$${r.usage.cost_usd.toFixed(4)}`, r.reason && `reason: ${r.reason}`].filter(Boolean).join(" · ");
    $("#steps tbody").replaceChildren(...r.steps.map((st) => h("tr", { "data-step": st.id },
      h("td", {}, st.id, st.error ? h("span", { class: "id" }, st.error) : null),
      h("td", {}, st.type),
      h("td", {}, h("span", { class: `state state-${st.status}` }, st.status), st.attempts > 1 ? ` (${st.attempts} attempts)` : ""),
      h("td", {}, st.model ? `${st.model}${st.provider ? ` · ${st.provider}` : ""}` : ""),
      h("td", {}, st.usage ? `${st.usage.input_tokens} / ${st.usage.output_tokens}` : ""),
      h("td", {}, st.usage ? `$${st.usage.cost_usd.toFixed(4)}` : ""),
      h("td", {}, secs(st.duration_ms)))));
    $("#run-answer").textContent = r.result?.answer || "";
    $("#run-box").hidden = false;
    $("#h-run").focus();
  } catch (err) { alertError(err); }
}

$("#runs-refresh").addEventListener("click", loadRuns);

// ---- dashboard -----------------------------------------------------------------------------

function level(value, t) {
  if (value === null || value === undefined) return "none";
  const bad = (limit) => (t.direction === "below" ? value < limit : value > limit);
  return bad(t.critical) ? "critical" : bad(t.warning) ? "warning" : "ok";
}

// gauges span the range where the alert lines sit, so "ok" and "critical" are apart by eye
const RANGES = { rate: [0.9, 1], quality: [0.6, 1], seconds: [0, 750] };
const kind = (name) => (name.endsWith("seconds") ? "seconds" : name === "quality" ? "quality" : "rate");
const fmt = (name, x) => (kind(name) === "rate" ? `${Math.round(x * 1000) / 10} %` : kind(name) === "seconds" ? `${x} s` : String(x));

function tile(name, title, value, shown, t, note, { rule = t, watched = true } = {}) {
  const lv = t && watched ? level(value, t) : "none";
  const text = rule ? `alert ${rule.direction} ${fmt(name, rule.warning)} (warning), ${fmt(name, rule.critical)} (critical)` : "";
  const [lo, hi] = RANGES[kind(name)];
  return h("div", { class: "tile", "data-metric": name, "data-level": lv },
    h("span", { class: "muted small" }, title), h("span", { class: "value" }, shown),
    lv !== "none" ? h("span", { class: `level state-${lv === "ok" ? "succeeded" : "failed"}` }, lv) : null,
    rule ? gauge(value, rule, lo, hi, { label: `${title}: ${shown}; ${text}`, unit: kind(name) === "seconds" ? " s" : "" }) : null,
    h("p", { class: "help" }, [note, text].filter(Boolean).join(" · ")));
}

const counts = (obj) => Object.entries(obj).sort().map(([k, n]) => h("li", {}, h("span", { class: `state state-${k}` }, label(k)), ` ${n}`));
const sec = (x) => (x === null || x === undefined ? "—" : `${x.toFixed(2)} s`);
const usd = (x) => `$${x.toFixed(4)}`;

async function loadDashboard() {
  if (!me) return;
  try {
    const s = await api("v1/stats");
    const t = s.thresholds, none = "—", q = s.quality, ing = s.ingestion;
    const finished = Object.entries(s.runs).filter(([k]) => ["succeeded", "failed", "compensated", "rejected"].includes(k)).reduce((n, [, v]) => n + v, 0);
    $("#dash-scope").textContent = s.scope === "tenant" ? "Everything in this tenant (you are an admin)." : "Documents you may see; jobs and runs you started.";
    $("#tiles").replaceChildren(
      tile("documents", "Documents", s.documents, String(s.documents), null, "visible to you"),
      tile("success_rate", "Run success rate", s.success_rate, s.success_rate === null ? none : pct(s.success_rate), t.success_rate, `of ${s.runs_considered} recent runs`),
      tile("p95_seconds", "Run time p95", s.p95_seconds, sec(s.p95_seconds), t.p95_seconds, s.p50_seconds === null ? "" : `p50 ${sec(s.p50_seconds)}`),
      tile("p99_seconds", "Run time p99", s.p99_seconds, sec(s.p99_seconds), t.p95_seconds, "the alert rules watch p95; its lines shown for scale", { watched: false }),
      tile("quality", "Retrieval quality", q?.hit_rate ?? null, q ? q.hit_rate.toFixed(3) : none, t.quality,
        q ? [`hit rate@${q.k}, ${q.config}`, q.ndcg != null && `nDCG@${q.k} ${q.ndcg.toFixed(3)}`, q.mrr != null && `MRR@${q.k} ${q.mrr.toFixed(3)}`].filter(Boolean).join(", ") : "no evaluation run yet"),
      tile("cost_usd", "Model cost", s.cost_usd, usd(s.cost_usd ?? 0), null,
        `${s.runs_considered} recent runs${finished ? `, ${usd((s.cost_usd ?? 0) / finished)} per finished run` : ""}`),
      tile("ingest_success_rate", "Ingestion success", ing?.success_rate ?? null, ing?.success_rate == null ? none : pct(ing.success_rate), t.ingest_success_rate,
        ing ? `${ing.indexed} indexed, ${ing.failed} failed, ${ing.queued} in progress` : "nothing ingested yet"),
      tile("ingest_p95_seconds", "Ingestion time p95", ing?.p95_seconds ?? null, sec(ing?.p95_seconds), t.ingest_p95_seconds, "upload to indexed"));
    $("#dash-jobs").replaceChildren(...counts(s.jobs));
    $("#dash-runs").replaceChildren(...counts(s.runs));
  } catch (err) { alertError(err); }
}

// ---- start ---------------------------------------------------------------------------------

(async () => {
  if (sessionStorage.getItem(KEY)) {
    try { await signIn(sessionStorage.getItem(KEY)); } catch { sessionStorage.removeItem(KEY); me = session.me = null; }
  }
  route();
})();
