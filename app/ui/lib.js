// Helpers every screen shares: DOM building, the signed-in session, and API calls that carry
// the key and turn error bodies into ApiError (code + message from the server).
export const KEY = "cairn.key";
export const ROOT = new URL("../", document.baseURI); // the API root, also behind a path prefix
export const POLL_MS = 400;
export const $ = (sel) => document.querySelector(sel);
export const session = { me: null, onUnauthorized: () => {} };

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

export function status(text) { $("#status").textContent = text; }

export function alertError(err) {
  const box = $("#alert");
  box.textContent = err ? String(err.message || err) : "";
  box.hidden = !err;
}

export class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

export function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}`, ...extra };
}

export async function errorOf(res) {
  let code = "http_error", message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body.error) ({ code, message } = body.error);
  } catch { /* not JSON */ }
  if (res.status === 401) session.onUnauthorized();
  return new ApiError(res.status, code, message);
}

export async function api(path, { method = "GET", json, headers } = {}) {
  const init = { method, headers: authHeaders(headers) };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  }
  const res = await fetch(new URL(path, ROOT), init);
  if (!res.ok) throw await errorOf(res);
  return res.status === 204 ? null : res.json();
}

export const enc = encodeURIComponent;
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const chips = (items) => items.map((t) => h("span", { class: "chip" }, t));
export const when = (t) => new Date(t).toLocaleString();
export const secs = (ms) => (typeof ms === "number" ? (ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`) : "");
export const pct = (x) => `${(x * 100).toFixed(1)} %`;
export const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
export const label = (s) => s.replaceAll("_", " ");
