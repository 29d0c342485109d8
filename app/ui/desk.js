// The support desk: run the support assistant on a ticket, follow each step as it completes, and
// decide on drafts that wait for a human (inline, and from the review queue).
import { $, POLL_MS, alertError, api, enc, h, label, plural, session, sleep, status, when } from "./lib.js";

const NAMES = { knowledge: "Sources", analyze: "Analysis", draft: "Draft reply", review: "Review", gate: "Quality gate", human: "Human review" };
const BUSY = new Set(["running", "compensating"]);

function stepBody(o) {
  if (o.status === "pending") return [h("p", { class: "muted small" }, "waiting…")];
  if (o.status === "skipped") return [h("p", { class: "muted small" }, "not needed")];
  if (o.type === "gather") return [h("p", { class: "small" }, `${plural(o.retrieved ?? 0, "source")} found`)];
  if (o.type === "validate") {
    return [h("p", { class: `small ${o.passed ? "state-succeeded" : "state-failed"}` }, o.passed ? "passed" : "failed"),
      o.failures.length ? h("ul", { class: "small" }, o.failures.map((f) => h("li", {}, f))) : null];
  }
  if (o.type === "human_review") return [h("p", { class: "muted small" }, o.status === "paused" ? "waiting for a reviewer" : o.status)];
  const meta = [typeof o.confidence === "number" && `confidence ${o.confidence.toFixed(2)}`,
    typeof o.groundedness === "number" && `groundedness ${o.groundedness.toFixed(2)}`, o.abstained && "abstained"].filter(Boolean);
  return [h("p", { class: "step-text" }, o.text || ""), meta.length ? h("p", { class: "muted small" }, meta.join(" · ")) : null];
}

function stepItem(o) {
  return h("li", { "data-step": o.id, "data-status": o.status, "data-passed": o.passed === false ? "false" : null },
    h("div", { class: "row" }, h("h3", {}, NAMES[o.id] || label(o.id)),
      h("span", { class: `state state-${o.status}` }, label(o.status))),
    ...stepBody(o));
}

function draftView(result) {
  const byN = new Map(result.citations.map((c) => [c.n, c]));
  const list = h("ol", { class: "citations", "aria-label": "Sources of the draft" }, result.citations.map((c) =>
    h("li", { value: c.n, id: `cite-${result.run_id}-${c.n}` }, h("strong", {}, c.title || c.doc_id),
      c.supported === false ? " · weak support" : "", h("blockquote", { class: "quote" }, h("mark", {}, c.quote)))));
  const parts = [];
  let at = 0;
  for (const m of result.answer.matchAll(/\[(\d{1,4})\]/g)) {
    const c = byN.get(Number(m[1]));
    if (!c) continue;
    parts.push(result.answer.slice(at, m.index), h("button", {
      type: "button", class: "cite", "aria-label": `Source ${c.n}: ${c.title || c.doc_id}`,
      onclick: () => document.getElementById(`cite-${result.run_id}-${c.n}`)?.scrollIntoView({ block: "nearest" }),
    }, `[${c.n}]`));
    at = m.index + m[0].length;
  }
  parts.push(result.answer.slice(at));
  return h("section", { class: "draft", "aria-label": "Final draft" },
    h("h3", {}, result.status === "awaiting_review" ? "Draft waiting for review" : "Final draft"),
    result.abstained ? h("p", { class: "notice" }, "The assistant found no supported answer in the knowledge base.") : null,
    h("div", { class: "answer", "data-draft": "" }, parts), list);
}

function reviewControls(t, onDecided) {
  const id = t.run.id;
  if (!session.me?.can_write) return h("p", { class: "notice review" }, "This draft waits for a reviewer (editor or admin role).");
  const comment = h("input", { id: `rc-${id}`, maxlength: "4000" });
  const editor = h("textarea", { id: `re-${id}`, rows: "5" }, t.draft?.text || "");
  const editBox = h("div", { class: "edit-box", hidden: true },
    h("label", { for: `re-${id}` }, "Edited reply"),
    h("p", { class: "help" }, "Cite sources as [n]; the markers are checked again against these sources:"),
    h("ol", { class: "small" }, (t.draft?.sources || []).map((s) => h("li", { value: s.n }, s.title))),
    editor,
    h("div", { class: "row" }, h("button", { type: "button", onclick: () => decide("edit") }, "Save edit")));
  async function decide(action) {
    const body = { action, comment: comment.value };
    if (action === "edit") body.text = editor.value;
    box.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    try {
      const run = await api(`v1/runs/${enc(id)}/review`, { method: "POST", json: body });
      status(`Review recorded: ${action}; the run is ${label(run.status)}.`);
      await onDecided(run);
    } catch (err) {
      alertError(err);
      box.querySelectorAll("button").forEach((b) => { b.disabled = false; });
    }
  }
  const box = h("section", { class: "review", "aria-label": "Review" },
    h("h3", {}, "Review"), h("p", { class: "help" }, t.run.awaiting_review?.instructions || "This draft waits for a reviewer."),
    h("label", { for: `rc-${id}` }, "Comment"), comment,
    h("div", { class: "row" },
      h("button", { type: "button", onclick: () => decide("approve") }, "Approve"),
      h("button", { type: "button", class: "quiet", "aria-expanded": "false", onclick: (e) => {
        editBox.hidden = !editBox.hidden;
        e.currentTarget.setAttribute("aria-expanded", String(!editBox.hidden));
        if (!editBox.hidden) editor.focus();
      } }, "Edit"),
      h("button", { type: "button", class: "danger", onclick: () => decide("reject") }, "Reject")),
    editBox);
  return box;
}

// One run on screen; update() patches it in place so the live region announces only what changed.
export class Desk {
  constructor(root, onDecided = async () => {}) {
    this.root = root;
    this.onDecided = onDecided;
    this.runId = null;
  }

  update(t) {
    if (t.run.id !== this.runId) {
      this.runId = t.run.id;
      this.heading = h("h2", { tabindex: "-1" });
      this.meta = h("p", { class: "muted small" });
      this.steps = h("ol", { class: "steps", "aria-live": "polite", "aria-label": "Assistant steps" });
      this.tail = h("div");
      this.root.replaceChildren(h("article", { class: "card desk", "data-run": t.run.id }, this.heading, this.meta, this.steps, this.tail));
      this.shown = "";
    }
    this.heading.textContent = `${t.subject || t.run.question || "Run"} · ${label(t.run.status)}`;
    this.meta.replaceChildren([t.customer_id && `customer ${t.customer_id}`, `${t.run.workflow} v${t.run.version}`,
      `by ${t.run.started_by}`, when(t.run.created_at), t.run.reason && `reason: ${t.run.reason}`].filter(Boolean).join(" · "),
    " ", h("span", { class: `state state-${t.run.status}`, "data-run-status": t.run.status }, label(t.run.status)));
    for (const o of t.outputs) {
      const old = this.steps.querySelector(`li[data-step="${o.id}"]`);
      if (old?.dataset.status === o.status) continue;
      const li = stepItem(o);
      if (old) old.replaceWith(li); else this.steps.append(li);
    }
    const key = `${t.run.status}:${t.run.events.length}`;
    if (key === this.shown) return;
    this.shown = key;
    this.tail.replaceChildren(...[
      t.run.result && ["succeeded", "awaiting_review"].includes(t.run.status) && draftView(t.run.result),
      t.run.status === "awaiting_review" && reviewControls(t, (run) => this.onDecided(run)),
    ].filter(Boolean));
  }
}

async function follow(desk, runId) {
  for (;;) {
    const t = await api(`v1/support/tickets/${enc(runId)}`);
    desk.update(t);
    if (!BUSY.has(t.run.status)) return t;
    await sleep(POLL_MS);
  }
}

// ---- support: a ticket through the assistant ------------------------------------------------

const ticketDesk = new Desk($("#ticket"), async (run) => { await follow(ticketDesk, run.id); });

$("#ticket-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  alertError(null);
  const btn = $("#ticket-btn");
  btn.disabled = true;
  status("The assistant is working on the ticket…");
  try {
    const body = { customer_id: $("#t-customer").value.trim(), subject: $("#t-subject").value.trim(), body: $("#t-body").value.trim() };
    if ($("#t-history").value.trim()) body.history = $("#t-history").value.trim();
    const started = await api("v1/support/tickets", { method: "POST", json: body });
    ticketDesk.update(started);
    const t = await follow(ticketDesk, started.run.id);
    status(t.run.status === "awaiting_review" ? "The draft waits for review." : `The assistant finished: ${label(t.run.status)}.`);
  } catch (err) {
    alertError(err);
    status("");
  } finally {
    btn.disabled = false;
  }
});

// ---- review queue ------------------------------------------------------------------------------

const queueDesk = new Desk($("#review-desk"), async (run) => {
  await follow(queueDesk, run.id);
  await loadReviews(false);
});

export async function loadReviews(clear = true) {
  if (!session.me) return;
  if (clear) $("#review-desk").replaceChildren();
  try {
    const { data, count } = await api("v1/runs?status=awaiting_review&limit=200");
    $("#reviews").replaceChildren(...data.map((r) => h("li", { "data-run": r.id },
      h("button", { type: "button", class: "link", onclick: () => openReview(r.id) }, r.question?.split("\n")[0] || r.id),
      h("span", { class: "muted small" }, ` · ${r.workflow} · by ${r.started_by} · ${when(r.created_at)}`))));
    $("#reviews-empty").hidden = !!count;
    $("#reviews-summary").textContent = `${plural(count, "draft")} waiting for review${session.me.role === "admin" ? " in this tenant" : " (runs you started)"}.`;
  } catch (err) { alertError(err); }
}

async function openReview(id) {
  try {
    for (const li of document.querySelectorAll("#reviews li")) li.setAttribute("aria-current", String(li.dataset.run === id));
    queueDesk.update(await api(`v1/support/tickets/${enc(id)}`));
    queueDesk.heading.focus();
  } catch (err) { alertError(err); }
}

$("#reviews-refresh").addEventListener("click", () => loadReviews());
