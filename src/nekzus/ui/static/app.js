// Nekzus dashboard: a thin client of the REST API and the WebSocket hub. No build step, no framework.
// Every DOM node is built with h() (text via textContent), so API data can never inject markup.

const state = { csrf: "", user: null, idleTimeout: 1800, ws: null, wsOnline: false, listeners: new Set(),
  cleanup: [], idleTimer: 0 };

// ---------- DOM helpers ----------
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "width" && tag === "span") el.style.width = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const $ = (sel, root = document) => root.querySelector(sel);
let uid = 0;
const nextId = (p) => `${p}-${++uid}`;

function field(labelText, input, hint) {
  const id = input.id || nextId("f");
  input.id = id;
  if (input.type === "checkbox") return h("label", { class: "check", for: id }, input, labelText);
  return h("div", {}, h("label", { for: id }, labelText), input, hint ? h("div", { class: "muted" }, hint) : null);
}
const input = (name, attrs = {}) => h("input", { name, ...attrs });
const checkbox = (name, checked) => h("input", { type: "checkbox", name, checked: !!checked });

// ---------- preferences (this browser only) ----------
// One JSON object in localStorage. Every key has a type and a default; anything else is refused, so an
// imported file or a hand-edited value can never put the page in a state it does not understand.
const PREFS_KEY = "nekzus.prefs";
const zoneOk = (z) => { if (z === "") return true; try { new Intl.DateTimeFormat("en", { timeZone: z }); return true; } catch { return false; } };
export const PREF_SPEC = {
  refreshInterval: { type: "number", def: 10, min: 2, max: 3600, help: "seconds between refreshes of polled views (2-3600)" },
  timezone: { type: "string", def: "", check: zoneOk, help: "an IANA time zone such as Europe/Berlin, or empty for the browser's" },
  timestampStyle: { type: "string", def: "relative", oneOf: ["relative", "absolute"] },
  idleMinutes: { type: "number", def: 0, min: 0, max: 1440, help: "minutes of inactivity before signing out (0 = the server's limit)" },
  confirmDestructive: { type: "boolean", def: true },
  confirmRejections: { type: "boolean", def: true },  // dismissing discovery proposals asks first
  theme: { type: "string", def: "", oneOf: ["", "light", "dark", "terminal"] },
  fontSize: { type: "string", def: "medium", oneOf: ["small", "medium", "large", "x-large"] },
  compact: { type: "boolean", def: false },
  showErrorDetails: { type: "boolean", def: false },
  logWsEvents: { type: "boolean", def: false },
  webhookToasts: { type: "boolean", def: true },  // pop-ups for webhook activity (the bell keeps them anyway)
  actionToasts: { type: "boolean", def: true },  // pop-ups confirming what this page just did
};
const prefDefaults = () => Object.fromEntries(Object.entries(PREF_SPEC).map(([k, s]) => [k, s.def]));
// Why a value is refused (a sentence for the user), or "" when it is fine.
function prefProblem(key, v) {
  const spec = PREF_SPEC[key];
  if (!spec) return `Unknown setting “${key}”`;
  if (typeof v !== spec.type || (spec.type === "number" && !Number.isFinite(v))) return `“${key}” must be a ${spec.type}`;
  if (spec.oneOf && !spec.oneOf.includes(v)) return `“${key}” must be one of: ${spec.oneOf.map((x) => x || "(default)").join(", ")}`;
  if (spec.type === "number" && (v < spec.min || v > spec.max)) return `“${key}” must be between ${spec.min} and ${spec.max}`;
  if (spec.check && !spec.check(v)) return `“${key}”: ${spec.help}`;
  return "";
}
// Checks a whole imported object; throws an Error naming every problem.
export function validatePrefs(obj) {
  if (!obj || typeof obj !== "object" || Array.isArray(obj)) throw new Error("The file does not hold a settings object");
  const problems = Object.entries(obj).map(([k, v]) => prefProblem(k, v)).filter(Boolean);
  if (problems.length) throw new Error("Settings refused: " + problems.join("; "));
  return { ...prefDefaults(), ...obj };
}
function readPrefs() {
  const out = prefDefaults();
  let stored = {};
  try { stored = JSON.parse(localStorage.getItem(PREFS_KEY) || "{}") || {}; } catch { stored = {}; }
  for (const [k, v] of Object.entries(stored)) if (!prefProblem(k, v)) out[k] = v;  // a bad value falls back
  if (!stored.theme) { try { const old = localStorage.getItem("nekzus.theme"); if (old && !prefProblem("theme", old)) out.theme = old; } catch { /* none */ } }
  return out;
}
const prefListeners = new Set();
let prefValues = readPrefs();
function savePrefs(next) {
  const changed = Object.keys(PREF_SPEC).filter((k) => next[k] !== prefValues[k]);
  prefValues = next;
  try { localStorage.setItem(PREFS_KEY, JSON.stringify(next)); localStorage.removeItem("nekzus.theme"); }  // (older single key)
  catch { /* private mode: this tab only */ }
  if (changed.length) for (const fn of [...prefListeners]) { try { fn(changed, { ...next }); } catch (e) { console.error(e); } }
}
export const prefs = {
  get: (key) => prefValues[key],
  all: () => ({ ...prefValues }),
  defaults: prefDefaults,
  set(key, value) { const p = prefProblem(key, value); if (p) throw new Error(p); savePrefs({ ...prefValues, [key]: value }); },
  replace(obj) { savePrefs(validatePrefs(obj)); },
  reset() { savePrefs(prefDefaults()); },
  // fn(changedKeys, allValues) after every change (also changes made in another tab); returns an unsubscribe.
  onChange(fn) { prefListeners.add(fn); return () => prefListeners.delete(fn); },
};
window.addEventListener("storage", (e) => { if (e.key === PREFS_KEY || e.key === null) savePrefs(readPrefs()); });
// Theme, font size and density: theme.js sets them before the first paint; this keeps them current.
function applyAppearance() {
  const root = document.documentElement, theme = prefValues.theme;
  root.setAttribute("data-theme", theme || (window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"));
  root.setAttribute("data-font-size", prefValues.fontSize);
  root.toggleAttribute("data-compact", prefValues.compact);
}
prefs.onChange((keys) => { if (keys.some((k) => ["theme", "fontSize", "compact"].includes(k))) applyAppearance(); });

// ---------- API ----------
class ApiErr extends Error {
  constructor(status, code, message, requestId) {
    // Developer option: the message itself carries the code and request id (to match the server log).
    super(prefValues.showErrorDetails && code ? `${message} [${code}${requestId ? ", request " + requestId : ""}]` : message);
    this.status = status; this.code = code; this.requestId = requestId || "";
  }
  get unavailable() { return this.status === 404 || this.status === 503 || this.status === 501; }
}

export async function api(method, path, body, opts = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (!["GET", "HEAD"].includes(method)) headers["X-CSRF-Token"] = state.csrf;
  if (opts.background) headers["X-Nekzus-Background"] = "1";
  let res;
  try {
    res = await fetch(path, { method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiErr(0, "NETWORK", "Nekzus cannot be reached: check your connection");
  }
  if (opts.raw) { if (!res.ok) throw await errorOf(res); return res; }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!res.ok) {
    const rid = res.headers.get("x-request-id");
    const err = data && data.error ? new ApiErr(res.status, data.error.code, data.error.message, rid)
      : new ApiErr(res.status, "HTTP_" + res.status, `Request failed (${res.status})`, rid);
    if (res.status === 401 && state.user && !opts.noRedirect) { sessionEnded(err.message); }
    throw err;
  }
  return data;
}
async function errorOf(res) {
  const rid = res.headers.get("x-request-id");
  try { const d = await res.json(); return new ApiErr(res.status, d.error.code, d.error.message, rid); }
  catch { return new ApiErr(res.status, "HTTP_" + res.status, `Request failed (${res.status})`, rid); }
}

// ---------- toasts, notices ----------
// `meta` (e.g. { source: "webhook", details }) travels with the copy the notification centre keeps.
export function toast(message, kind = "info", meta = {}) {
  // Errors always pop up; the other kinds follow the Notifications settings.
  const quiet = kind !== "error" && !prefs.get(meta.source === "webhook" ? "webhookToasts" : "actionToasts");
  if (!quiet) {
    const t = h("div", { class: "toast " + kind }, message);
    $("#toasts").append(t);
    setTimeout(() => t.remove(), kind === "error" ? 8000 : 5000);
  }
  // The header's notification centre (chrome.js) keeps a history of what flashed by.
  window.dispatchEvent(new CustomEvent("nekzus:toast", { detail: { ...meta, message: String(message), kind } }));
}
function notice(message, kind = "error") { return h("div", { class: "notice " + kind, role: kind === "error" ? "alert" : null }, message); }
function unavailable(what, err) {
  return h("div", { class: "notice unavailable", "data-unavailable": "1" },
    h("strong", {}, `${what} is not available on this Nekzus.`), " ",
    err && err.message ? `(${err.message})` : "The feature is switched off or not installed yet.");
}
function errorBox(err, what) { return err && err.unavailable ? unavailable(what, err) : notice(err.message || String(err)); }
async function guard(fn, btn) {
  if (btn) btn.disabled = true;
  try { return await fn(); } catch (e) { toast(e.message || String(e), "error"); return undefined; }
  finally { if (btn) btn.disabled = false; }
}

// ---------- formatting ----------
const toMs = (t) => (typeof t === "number" ? (t > 1e12 ? t : t * 1000) : Date.parse(t));
// A date and time in the chosen time zone (or the browser's): "2026-12-02 14:05:09 GMT+1".
function datetime(t, { date = true, time = true } = {}) {
  if (!t) return "–";
  const ms = toMs(t);
  if (!ms) return String(t);
  const tz = prefValues.timezone || undefined;
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-GB", { timeZone: tz, year: "numeric", month: "2-digit",
    day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZoneName: "short" })
    .formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
  const d = `${parts.year}-${parts.month}-${parts.day}`, hm = `${parts.hour}:${parts.minute}:${parts.second} ${parts.timeZoneName}`;
  return date && time ? `${d} ${hm}` : date ? d : hm;
}
// "5m ago", or the absolute time when the user prefers that (Settings → timestamps).
function ago(t) {
  if (!t) return "never";
  const ms = toMs(t);
  if (!ms) return String(t);
  if (prefValues.timestampStyle === "absolute") return datetime(ms);
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}
function bytes(n) {
  if (n === null || n === undefined) return "–";
  const u = ["B", "KB", "MB", "GB", "TB"]; let i = 0; n = Number(n);
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}
function badge(text, kind) { return h("span", { class: "badge " + (kind || "idle") }, text); }
function stateKind(s) {
  s = String(s || "").toLowerCase();
  if (["running", "healthy", "active", "connected", "completed", "delivered", "online", "success", "succeeded"].includes(s)) return "ok";
  if (["exited", "dead", "unhealthy", "failed", "error", "revoked", "disconnected"].includes(s)) return "bad";
  if (["pending", "paused", "restarting", "created", "deploying", "running-job", "unknown"].includes(s)) return "warn";
  return "idle";
}
// The endpoints of newer features answer in camelCase or snake_case: read either.
const pick = (o, ...keys) => { for (const k of keys) if (o && o[k] !== undefined && o[k] !== null) return o[k]; return ""; };
const list = (d, key) => Array.isArray(d) ? d : (d && Array.isArray(d[key]) ? d[key] : []);

function download(filename, content, type = "text/plain") {
  const url = URL.createObjectURL(content instanceof Blob ? content : new Blob([content], { type }));
  const a = h("a", { href: url, download: filename });
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
async function downloadFrom(path, fallbackName, method = "GET", body) {
  const res = await api(method, path, body, { raw: true });
  const cd = res.headers.get("content-disposition") || "";
  const m = /filename="?([^";]+)"?/.exec(cd);
  download(m ? m[1] : fallbackName, await res.blob());
}

// ---------- table with search, sort and pagination ----------
// Search, sort and page survive a live reload of the same table (kept per page view, by label).
const tableState = new Map();
function dataTable({ columns, rows, searchable = true, pageSize = 20, empty = "Nothing here yet.", label }) {
  const saved = tableState.get(label) || {};
  let query = saved.query || "", sortKey = saved.sortKey || null, dir = saved.dir || 1, page = saved.page || 0;
  const wrap = h("div", {});
  const search = searchable ? input("search", { type: "search", placeholder: "Search…" }) : null;
  const body = h("tbody", {});
  const pager = h("div", { class: "pager" });
  const headRow = h("tr", {}, columns.map((c) => h("th", { scope: "col" },
    c.sort === false ? c.title : h("button", { type: "button", onclick: () => { dir = sortKey === c.key ? -dir : 1; sortKey = c.key; draw(); } }, c.title))));
  const table = h("table", {}, label ? h("caption", { class: "hidden" }, label) : null, h("thead", {}, headRow), body);
  function value(r, c) { const v = c.value ? c.value(r) : r[c.key]; return v === undefined || v === null ? "" : v; }
  function draw() {
    tableState.set(label, { query, sortKey, dir, page });
    let data = rows.filter((r) => !query || columns.some((c) => String(value(r, c)).toLowerCase().includes(query)));
    if (sortKey) {
      const c = columns.find((x) => x.key === sortKey);
      data = data.slice().sort((a, b) => { const x = value(a, c), y = value(b, c);
        return (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y))) * dir; });
    }
    headRow.querySelectorAll("th").forEach((th, i) => th.setAttribute("aria-sort",
      columns[i].key === sortKey ? (dir > 0 ? "ascending" : "descending") : "none"));
    const pages = Math.max(1, Math.ceil(data.length / pageSize));
    page = Math.min(page, pages - 1);
    body.replaceChildren(...(data.length ? data.slice(page * pageSize, (page + 1) * pageSize).map((r) =>
      h("tr", { "data-id": r.__id || "" }, columns.map((c) => h("td", { class: c.class || null }, c.render ? c.render(r) : String(value(r, c))))))
      : [h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, empty))]));
    pager.replaceChildren();
    if (pages > 1) {
      pager.append(h("button", { type: "button", class: "btn small", disabled: page === 0, onclick: () => { page--; draw(); } }, "Previous"),
        h("span", {}, `Page ${page + 1} of ${pages}`),
        h("button", { type: "button", class: "btn small", disabled: page >= pages - 1, onclick: () => { page++; draw(); } }, "Next"));
    }
  }
  if (search) {
    search.value = query;
    search.addEventListener("input", () => { query = search.value.toLowerCase(); page = 0; draw(); });
    wrap.append(field("Search", search));
  }
  wrap.append(h("div", { class: "table-wrap" }, table), pager);
  draw();
  return wrap;
}

const LIST_PAGE = 50;  // rows per page of the lists the API pages
// Page controls for a list the API pages (limit/offset, with the total it reports): `go(offset)` loads one.
function serverPager(what, offset, limit, total, go) {
  const last = Math.max(0, Math.ceil(total / limit) - 1), page = Math.floor(offset / limit);
  return h("nav", { class: "pager", "aria-label": `${what} pages` },
    h("button", { type: "button", class: "btn small", disabled: offset <= 0, onclick: () => go(Math.max(0, offset - limit)) }, "Previous"),
    h("span", { "data-page-info": "" }, total ? `${offset + 1}–${Math.min(offset + limit, total)} of ${total} (page ${page + 1} of ${last + 1})` : "None"),
    h("button", { type: "button", class: "btn small", disabled: page >= last, onclick: () => go(offset + limit) }, "Next"));
}

// ---------- dialogs ----------
function dialog(title, content, { onClose } = {}) {
  const titleId = nextId("dlg");
  const d = h("dialog", { "aria-labelledby": titleId },
    h("div", { class: "row" }, h("h2", { id: titleId }, title), h("span", { class: "spacer" }),
      h("button", { type: "button", class: "btn small", onclick: () => d.close() }, "Close")),
    content);
  d.addEventListener("close", () => { d.remove(); if (onClose) onClose(); });
  document.body.append(d);
  d.showModal();
  return d;
}
function confirmDialog(message, action = "Confirm") {
  if (!prefValues.confirmDestructive) return Promise.resolve(true);  // the user switched confirmations off
  return new Promise((resolve) => {
    let ok = false;
    const d = dialog("Please confirm", h("div", {}, h("p", {}, message),
      h("div", { class: "row" }, h("button", { type: "button", class: "btn danger", onclick: () => { ok = true; d.close(); } }, action),
        h("button", { type: "button", class: "btn", onclick: () => d.close() }, "Cancel"))),
    { onClose: () => resolve(ok) });
  });
}
function formDialog(title, fields, submitText, onSubmit) {
  const err = h("div", {});
  const form = h("form", {}, fields, err, h("div", { class: "row" }, h("button", { type: "submit", class: "btn primary" }, submitText)));
  const d = dialog(title, form);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const btn = form.querySelector("button[type=submit]");
    btn.disabled = true; err.replaceChildren();
    try { const keep = await onSubmit(form); if (keep !== false) d.close(); } catch (e) { err.replaceChildren(notice(e.message || String(e))); }
    finally { btn.disabled = false; }
  });
  return d;
}

// ---------- live updates over one WebSocket ----------
export function onEvent(fn) { state.listeners.add(fn); state.cleanup.push(() => state.listeners.delete(fn)); }
let backoff = 1000, reconnectTimer = 0;
function setConn(online) {
  state.wsOnline = online;
  const el = $("#conn");
  el.textContent = online ? "live" : "offline";
  el.className = "conn " + (online ? "online" : "offline");
  el.title = online ? "Live updates connected" : "Live updates disconnected, reconnecting";
}
function connectWs() {
  if (!state.user) return;
  clearTimeout(reconnectTimer);
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/api/v1/ws");
  state.ws = ws;
  ws.onopen = () => ws.send(JSON.stringify({ type: "auth", data: { token: "" } }));
  ws.onmessage = (ev) => {
    let msg; try { msg = JSON.parse(ev.data); } catch { return; }
    if (msg.type === "auth_success") { setConn(true); backoff = 1000; return; }
    if (msg.type === "ping") { ws.send(JSON.stringify({ type: "pong" })); return; }
    if (msg.type === "webhook" || msg.type === "webhook.activity") {
      const d = msg.data || {}; const inner = d.data && typeof d.data === "object" ? d.data : {};
      toast(d.message || d.title || inner.title || inner.message || d.type || "Webhook notification", "info",
        { source: "webhook", details: d.details || inner.details || "" });
    }
    for (const fn of [...state.listeners]) { try { fn(msg); } catch (e) { console.error(e); } }
  };
  ws.onclose = () => {
    if (state.ws !== ws) return;
    setConn(false);
    state.ws = null;
    if (!state.user) return;
    reconnectTimer = setTimeout(connectWs, backoff);
    backoff = Math.min(backoff * 2, 30000);
  };
}
export function wsSend(type, data) { if (state.ws && state.ws.readyState === 1) state.ws.send(JSON.stringify({ type, data })); }

// ---------- sign-in ----------
async function loadSession() {
  const res = await fetch("/api/v1/ui/session", { credentials: "same-origin", headers: { Accept: "application/json" } });
  return res.json();
}
function sessionEnded(message) {
  state.user = null; state.csrf = "";
  if (state.ws) { const w = state.ws; state.ws = null; w.close(); }
  toast(message || "Your session has ended", "error");
  showLogin();
}
function chrome(signedIn) {
  $("#nav").hidden = !signedIn;
  $("#nav").removeAttribute("data-booting");
  $("#logout").hidden = !signedIn;
  $("#menu-toggle").hidden = !signedIn;
  $("#who").textContent = signedIn && state.user ? state.user.username : "";
  if (!signedIn) { $("#conn").textContent = ""; $("#conn").className = "conn hidden"; }
  // The header's bell and the footer (chrome.js) follow the sign-in state.
  window.dispatchEvent(new CustomEvent("nekzus:chrome", { detail: { signedIn } }));
}
function showSetup(status) {
  chrome(false);
  const username = input("username", { autocomplete: "username", required: true });
  const pw = input("password", { type: "password", autocomplete: "new-password", required: true, minlength: 8 });
  const pw2 = input("confirm", { type: "password", autocomplete: "new-password", required: true });
  const token = input("setupToken", { autocomplete: "off" });
  const err = h("div", {});
  const form = h("form", { class: "card form-narrow", "aria-labelledby": "setup-title" },
    h("h1", { id: "setup-title" }, "Welcome to Nekzus"),
    h("p", {}, "Create the administrator account. This page works only until the first account exists."),
    status.trustedNetwork ? h("p", { class: "muted" }, "This browser is on a trusted network, so no setup token is needed.")
      : h("div", { class: "notice" }, h("strong", {}, "Setup token needed. "),
        "You are not on a trusted network. Nekzus printed a one-time setup token in its log when it first started " +
        "(look for “setup token” in the output of the nekzus process, e.g. journalctl or docker logs). Paste it below."),
    field("Username", username), field("Password (at least 8 characters)", pw), field("Confirm password", pw2),
    status.trustedNetwork ? null : field("Setup token", token),
    err, h("div", { class: "row" }, h("button", { type: "submit", class: "btn primary" }, "Create account")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault(); err.replaceChildren();
    if (pw.value !== pw2.value) { err.append(notice("The passwords do not match")); return; }
    try {
      const res = await fetch("/api/v1/auth/setup", { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-Setup-Token": token.value.trim() },
        body: JSON.stringify({ username: username.value, password: pw.value }) });
      if (!res.ok) throw await errorOf(res);
      toast("Account created. Please sign in.");
      showLogin(username.value);
    } catch (e) { err.append(notice(e.message)); }
  });
  $("#main").replaceChildren(form);
  username.focus();
}
function showLogin(prefill) {
  chrome(false);
  const username = input("username", { autocomplete: "username", required: true, value: prefill || "" });
  const pw = input("password", { type: "password", autocomplete: "current-password", required: true });
  const err = h("div", {});
  const form = h("form", { class: "card form-narrow", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Sign in to Nekzus"),
    field("Username", username), field("Password", pw), err,
    h("div", { class: "row" }, h("button", { type: "submit", class: "btn primary" }, "Sign in")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault(); err.replaceChildren();
    const btn = form.querySelector("button"); btn.disabled = true;
    try {
      const res = await fetch("/api/v1/ui/login", { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify({ username: username.value, password: pw.value }) });
      if (!res.ok) throw await errorOf(res);
      signedIn(await res.json());
    } catch (e) { err.append(notice(e.message)); pw.value = ""; pw.focus(); }
    finally { btn.disabled = false; }
  });
  $("#main").replaceChildren(form);
  (prefill ? pw : username).focus();
}
function signedIn(s) {
  state.user = s.user; state.csrf = s.csrfToken; state.idleTimeout = s.idleTimeout || 1800;
  chrome(true); buildNav(); setConn(false); $("#conn").textContent = "connecting";
  connectWs(); resetIdle();
  if (!location.hash || location.hash === "#/" || location.hash === "#") location.hash = "#/overview";
  else route();
}
async function logout() {
  await guard(() => api("POST", "/api/v1/ui/logout"));
  state.user = null; state.csrf = "";
  if (state.ws) { const w = state.ws; state.ws = null; w.close(); }
  showLogin();
}
// The server ends an idle session by itself; the user may ask this page to sign out sooner (never later).
function idleSeconds() {
  const mine = prefValues.idleMinutes * 60;
  return mine > 0 ? Math.min(mine, state.idleTimeout) : state.idleTimeout;
}
function resetIdle() {
  clearTimeout(state.idleTimer);
  if (!state.user) return;
  state.idleTimer = setTimeout(async () => { await logout(); toast("Signed out after inactivity", "error"); },
    idleSeconds() * 1000);
}
prefs.onChange((keys) => { if (keys.includes("idleMinutes")) resetIdle(); });
["keydown", "pointerdown"].forEach((ev) => window.addEventListener(ev, () => { if (state.user) resetIdle(); }, { passive: true }));

// ---------- navigation ----------
const PAGES = {};
const NAV = [["overview", "Overview"], ["routes", "Routes"], ["discovery", "Discovery"], ["devices", "Devices"],
  ["containers", "Containers"], ["toolbox", "Toolbox"], ["scripts", "Scripts"], ["jobs", "Jobs"], ["apikeys", "API keys"],
  ["audit", "Audit log"], ["notifications", "Notifications"], ["metrics", "Metrics"], ["certificates", "Certificates"],
  ["backups", "Backups"], ["federation", "Federation"], ["settings", "Settings"]];
function buildNav() {
  $("#nav").replaceChildren(...NAV.map(([id, label]) => h("a", { href: "#/" + id, "data-page": id }, label)));
}
async function route() {
  if (!state.user) return;
  for (const fn of state.cleanup.splice(0)) { try { fn(); } catch { /* ignore */ } }
  tableState.clear();
  const name = (location.hash.replace(/^#\//, "").split("?")[0]) || "overview";
  const page = PAGES[name] || PAGES.overview;
  document.querySelectorAll("#nav a").forEach((a) => a.toggleAttribute("aria-current", false));
  const link = $(`#nav a[data-page="${name}"]`);
  if (link) link.setAttribute("aria-current", "page");
  const title = (NAV.find(([id]) => id === name) || NAV[0])[1];
  document.title = `${title} · Nekzus`;
  const main = $("#main");
  main.removeAttribute("data-ready");
  main.replaceChildren(h("h1", {}, title), h("p", { class: "muted" }, "Loading…"));
  if (window.matchMedia("(max-width: 760px)").matches) { $("#nav").classList.add("collapsed"); $("#menu-toggle").setAttribute("aria-expanded", "false"); }
  try { await page(main, title); } catch (e) { main.append(errorBox(e, title)); }
  main.setAttribute("data-ready", name);
  main.focus({ preventScroll: true });
}
// Polls `fn` while the page is shown, every `refreshInterval` seconds (Settings); a change re-arms the timer.
// (The first argument of older callers, a period in ms, is ignored: the user's choice applies everywhere.)
function every(msOrFn, maybeFn) {
  const fn = typeof msOrFn === "function" ? msOrFn : maybeFn;
  let t = setInterval(fn, prefValues.refreshInterval * 1000);
  const off = prefs.onChange((keys) => { if (keys.includes("refreshInterval")) { clearInterval(t); t = setInterval(fn, prefValues.refreshInterval * 1000); } });
  state.cleanup.push(() => { clearInterval(t); off(); });
}
function section(main, title, ...nodes) { main.replaceChildren(h("h1", {}, title), ...nodes); }
// A region reloaded by `load()`; errors (incl. "not available") render inside it. Until its first load it
// shows a placeholder (`skeleton()`, shaped like the content where that is known) and keeps at least the
// placeholder's height, so content arriving never pushes the rest of the page around.
// Loads can overlap (a click reloads, then an event reloads again); only the latest one started is drawn,
// so a slow earlier answer never paints an older state over a newer one.
function region(what, build, skeleton) {
  const el = h("div", { "aria-live": "polite", "aria-busy": "true", class: "region" },
    skeleton ? skeleton() : h("div", { class: "skeleton", "aria-hidden": "true" }));
  let first = true;
  let latest = 0;
  const load = async () => {
    const mine = ++latest;
    let content;
    try { content = await build(); } catch (e) { content = errorBox(e, what); }
    if (mine !== latest) return;
    if (first && el.isConnected) el.style.minHeight = el.offsetHeight + "px";
    first = false;
    el.replaceChildren(content);
    el.removeAttribute("aria-busy");
  };
  return { el, load };
}
const NBSP = "\u00a0";

// ---------- pages ----------
const STAT_CARDS = [["routes", "Active routes"], ["devices", "Paired devices"], ["discoveries", "Pending discoveries"],
  ["requests", "Total requests"]];
const statGrid = (s) => h("div", { class: "grid" }, STAT_CARDS.map(([k, label]) => h("div", { class: "card stat" },
  h("div", { class: "label" }, label), h("div", { class: "value" }, s ? (s[k] ? s[k].value : 0) : "–"),
  h("div", { class: "muted" }, (s && s[k] && s[k].trend) || NBSP))));
const healthCard = (name, v) => h("div", { class: "card" }, h("h3", {}, name.toUpperCase()),
  badge(v.status || "unknown", stateKind(v.status)), h("div", { class: "muted" }, v.message || NBSP));
const resourceCard = (k, values, detail) => h("div", { class: "card", "data-resource": k },
  h("h3", {}, values.length ? `${k.toUpperCase()} ${(values.at(-1) || 0).toFixed(1)}%` : `${k.toUpperCase()} –`),
  sparkline(values, `${k} usage over time`), h("div", { class: "muted" }, detail || NBSP));
// The figures behind each percentage (what psutil reports on the server).
const resourceDetail = (r) => ({
  cpu: `${r.cpu_cores || "?"} cores · load ${(r.load || []).join(" / ") || "–"} · up ${Math.floor((r.uptime || 0) / 86400)}d ${Math.floor(((r.uptime || 0) % 86400) / 3600)}h`,
  ram: `${bytes(r.ram_used)} of ${bytes(r.ram_total)}`,
  disk: `${bytes(r.disk_used)} of ${bytes(r.disk_total)} · Nekzus data ${bytes(r.storage_size)}`,
});
PAGES.overview = async (main, title) => {
  const cards = region("Statistics", async () => statGrid(await api("GET", "/api/v1/stats")), () => statGrid(null));
  // As many placeholder cards as components were shown last time (the layout of the next visit).
  const healthCount = Number(sessionStorage.getItem("nekzus.healthCards")) || 6;
  const health = region("Health", async () => {
    const d = await api("GET", "/healthz", undefined, { background: true });
    const comps = d && typeof d === "object" ? (d.components || d.checks || d) : {};
    const items = Object.entries(comps).filter(([, v]) => v && typeof v === "object");
    items.push(["websocket", { status: state.wsOnline ? "connected" : "disconnected" }]);
    sessionStorage.setItem("nekzus.healthCards", String(items.length));
    return h("div", { class: "grid" }, items.map(([name, v]) => healthCard(name, v)));
  }, () => h("div", { class: "grid", "aria-hidden": "true" },
    Array.from({ length: healthCount }, () => healthCard(NBSP, { status: "…" }))));
  let activityOffset = 0;
  const activity = region("Activity", async () => {
    const d = await api("GET", `/api/v1/activity/recent?limit=10&offset=${activityOffset}`);
    const items = list(d, "activities");
    if (!items.length && !activityOffset) return h("p", { class: "muted" }, "No recent activity.");
    return h("div", {}, h("ul", {}, items.map((a) => h("li", {}, a.message, " ", h("span", { class: "muted" }, ago(a.timestamp))))),
      (d.total || 0) > 10 ? serverPager("Activity", activityOffset, 10, d.total, (o) => { activityOffset = o; activity.load(); }) : null);
  });
  const series = { cpu: [], ram: [], disk: [] };
  const charts = h("div", { class: "grid" });
  const resources = region("Server resources", async () => {
    const r = await api("GET", "/api/v1/system/resources", undefined, { background: true });
    for (const k of Object.keys(series)) { series[k].push(Number(r[k]) || 0); if (series[k].length > 60) series[k].shift(); }
    const detail = resourceDetail(r);
    charts.replaceChildren(...Object.keys(series).map((k) => resourceCard(k, series[k], detail[k])));
    return charts;
  }, () => h("div", { class: "grid", "aria-hidden": "true" }, Object.keys(series).map((k) => resourceCard(k, []))));
  section(main, title, cards.el, h("h2", {}, "Health"), health.el, h("h2", {}, "Server resources"), resources.el,
    h("h2", {}, "Recent activity"), activity.el);
  await Promise.all([cards.load(), health.load(), activity.load(), resources.load()]);
  every(5000, resources.load);
  every(15000, health.load);
  onEvent((m) => { if (/device|discovery|app_|health|route|config/.test(m.type)) { cards.load(); activity.load(); } });
};
function sparkline(values, label) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 120 40"); svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "chart"); svg.setAttribute("role", "img"); svg.setAttribute("aria-label", label);
  const base = document.createElementNS(ns, "line");
  base.setAttribute("x1", "0"); base.setAttribute("x2", "120"); base.setAttribute("y1", "39"); base.setAttribute("y2", "39");
  const line = document.createElementNS(ns, "polyline");
  const n = Math.max(values.length - 1, 1);
  line.setAttribute("points", values.map((v, i) => `${(i / n) * 120},${39 - Math.min(100, v) * 0.38}`).join(" "));
  svg.append(base, line);
  return svg;
}

const ROUTE_BOOLS = [["stripPrefix", "Strip prefix"], ["websocket", "WebSocket"], ["rewriteHTML", "Rewrite HTML"],
  ["publicAccess", "Public access"], ["skipHealthCheck", "Skip health check"], ["tlsSkipVerify", "Skip TLS verification"],
  ["persistCookies", "Persist cookies"], ["stripResponseCookies", "Strip response cookies"],
  ["rewriteCookiePaths", "Rewrite cookie paths"], ["cache", "Cache responses"]];
function routeForm(r) {
  r = r || {};
  const f = {
    routeId: input("routeId", { value: r.routeId || "", required: true, readonly: !!r.routeId }),
    appId: input("appId", { value: r.appId || "" }),
    pathBase: input("pathBase", { value: r.pathBase || "/apps/", required: true }),
    to: input("to", { value: r.to || "", required: true, placeholder: "http://127.0.0.1:3000" }),
    icon: input("icon", { value: r.icon || "" }),
    scopes: input("scopes", { value: (r.scopes || []).join(", ") }),
    routingMode: h("select", { name: "routingMode" }, ["", "path", "subdomain", "both"].map((m) =>
      h("option", { value: m, selected: (r.routingMode || "") === m }, m || "default"))),
    subdomain: input("subdomain", { value: r.subdomain || "" }),
    excludePaths: input("excludePaths", { value: (r.excludePaths || []).join(", ") }),
    healthCheckPath: input("healthCheckPath", { value: r.healthCheckPath || "" }),
    healthCheckTimeout: input("healthCheckTimeout", { type: "number", min: 0, step: "any", value: r.healthCheckTimeout ?? "" }),
    healthCheckInterval: input("healthCheckInterval", { type: "number", min: 0, step: "any", value: r.healthCheckInterval ?? "" }),
    expectedStatusCodes: input("expectedStatusCodes", { value: (r.expectedStatusCodes || []).join(", ") }),
  };
  const bools = ROUTE_BOOLS.map(([k]) => [k, checkbox(k, r[k])]);
  const nodes = [field("Route id", f.routeId), field("App id", f.appId), field("Path", f.pathBase), field("Target URL", f.to),
    field("Icon", f.icon), field("Scopes (comma separated)", f.scopes), field("Routing mode", f.routingMode),
    field("Subdomain", f.subdomain), field("Exclude paths (comma separated)", f.excludePaths),
    field("Health check path", f.healthCheckPath), field("Health check timeout (s)", f.healthCheckTimeout),
    field("Health check interval (s)", f.healthCheckInterval), field("Expected status codes", f.expectedStatusCodes),
    bools.map(([k, el]) => field(ROUTE_BOOLS.find((b) => b[0] === k)[1], el))];
  const csv = (s) => s.split(",").map((x) => x.trim()).filter(Boolean);
  const collect = () => {
    const out = { routeId: f.routeId.value.trim(), appId: f.appId.value.trim(), pathBase: f.pathBase.value.trim(),
      to: f.to.value.trim(), icon: f.icon.value.trim(), scopes: csv(f.scopes.value), routingMode: f.routingMode.value,
      subdomain: f.subdomain.value.trim(), excludePaths: csv(f.excludePaths.value), healthCheckPath: f.healthCheckPath.value.trim(),
      expectedStatusCodes: csv(f.expectedStatusCodes.value).map(Number) };
    if (f.healthCheckTimeout.value) out.healthCheckTimeout = Number(f.healthCheckTimeout.value);
    if (f.healthCheckInterval.value) out.healthCheckInterval = Number(f.healthCheckInterval.value);
    for (const [k, el] of bools) out[k] = el.checked;
    return out;
  };
  return { nodes, collect };
}
PAGES.routes = async (main, title) => {
  const table = region("Routes", async () => {
    const rows = list(await api("GET", "/api/v1/routes"), "routes");
    return dataTable({ label: "Routes", rows: rows.map((r) => ({ ...r, __id: r.routeId })), columns: [
      { key: "appId", title: "App" }, { key: "pathBase", title: "Path", render: (r) => h("a", { href: r.pathBase, target: "_blank", rel: "noopener" }, r.pathBase) },
      { key: "to", title: "Target" }, { key: "scopes", title: "Scopes", value: (r) => (r.scopes || []).join(", ") },
      { key: "health", title: "Health", value: (r) => (r.healthInfo && r.healthInfo.status) || r.status || "", render: (r) => badge((r.healthInfo && r.healthInfo.status) || r.status || "unknown", stateKind((r.healthInfo && r.healthInfo.status) || r.status)) },
      { key: "actions", title: "Actions", sort: false, class: "actions", render: (r) => h("div", { class: "row" },
        h("button", { type: "button", class: "btn small", "aria-label": `Edit route ${r.routeId}`, onclick: () => editRoute(r) }, "Edit"),
        h("button", { type: "button", class: "btn small danger", "aria-label": `Delete route ${r.routeId}`, onclick: async (e) => {
          if (!(await confirmDialog(`Delete route ${r.routeId}?`, "Delete"))) return;
          await guard(async () => { await api("DELETE", `/api/v1/routes/${encodeURIComponent(r.routeId)}`); toast("Route deleted"); table.load(); }, e.target);
        } }, "Delete")) }] });
  });
  const editRoute = (r) => {
    const form = routeForm(r);
    formDialog(r ? `Edit route ${r.routeId}` : "New route", form.nodes, "Save", async () => {
      const body = form.collect();
      if (r) await api("PUT", `/api/v1/routes/${encodeURIComponent(r.routeId)}`, body);
      else await api("POST", "/api/v1/routes", body);
      toast("Route saved"); table.load();
    });
  };
  section(main, title, h("div", { class: "row" }, h("button", { type: "button", class: "btn primary", onclick: () => editRoute(null) }, "New route")), table.el);
  await table.load();
  onEvent((m) => { if (/route|app_|health|config_reload|discovery/.test(m.type)) table.load(); });
};

// The discovery page lives in discovery.js, the devices page in devices.js.

// The containers page lives in containers.js.
function logsDialog(c) {
  const pre = h("pre", { class: "logs", tabindex: "0", "aria-label": `Log output of ${c.name}` });
  const tail = input("tail", { type: "number", min: 0, max: 10000, value: 100 });
  const follow = checkbox("follow", true);
  const ts = checkbox("timestamps", false);
  const status = h("div", { class: "muted", role: "status" });
  const listener = (m) => {
    const d = m.data || {};
    if (!m.type || !m.type.startsWith("container.logs.")) return;
    if (m.type === "container.logs.data") { pre.append(document.createTextNode((d.line ?? d.message ?? "") + "\n")); if (pre.childNodes.length > 5000) pre.firstChild.remove(); pre.scrollTop = pre.scrollHeight; }
    else if (m.type === "container.logs.started") status.textContent = follow.checked ? "Following…" : "Loading…";
    else if (m.type === "container.logs.ended") status.textContent = `Ended (${d.reason || "done"})`;
    else if (m.type === "container.logs.error") status.textContent = d.message || d.error || "Log stream failed";
  };
  const start = () => {
    wsSend("container.logs.unsubscribe", { containerId: c.namespace ? `${c.namespace}/${c.id}` : c.id });
    pre.replaceChildren();
    if (!state.wsOnline) { status.textContent = "Live connection is offline; logs need it."; return; }
    wsSend("container.logs.subscribe", { containerId: c.id, namespace: c.namespace || undefined, tail: Number(tail.value) || 0, follow: follow.checked, timestamps: ts.checked });
  };
  state.listeners.add(listener);
  dialog(`Logs: ${c.name}`, h("div", {}, h("div", { class: "row" }, field("Tail lines", tail), field("Follow", follow), field("Timestamps", ts),
    h("button", { type: "button", class: "btn", onclick: start }, "Apply")), status, pre),
  { onClose: () => { wsSend("container.logs.unsubscribe", { containerId: c.namespace ? `${c.namespace}/${c.id}` : c.id }); state.listeners.delete(listener); } });
  start();
}
// The toolbox page lives in toolbox.js.

function tabs(main, defs) {
  const bar = h("div", { class: "tabs", role: "tablist" });
  const panel = h("div", { role: "tabpanel" });
  const show = async (i) => {
    bar.querySelectorAll("button").forEach((b, j) => { b.setAttribute("aria-selected", String(i === j)); b.tabIndex = i === j ? 0 : -1; });
    panel.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    try { await defs[i][1](panel); } catch (e) { panel.replaceChildren(errorBox(e, defs[i][0])); }
  };
  defs.forEach(([label], i) => bar.append(h("button", { type: "button", role: "tab", onclick: () => show(i),
    onkeydown: (e) => { if (e.key === "ArrowRight" || e.key === "ArrowLeft") { const n = (i + (e.key === "ArrowRight" ? 1 : defs.length - 1)) % defs.length; bar.children[n].focus(); show(n); } } }, label)));
  main.append(bar, panel);
  return show(0);
}
// The scripts page lives in scripts.js.

// The API keys page lives in apikeys.js.

PAGES.audit = async (main, title) => {
  const action = input("action"); const actor = input("actor");
  let offset = 0; const limit = 50;
  const out = region("The audit log", async () => {
    const q = new URLSearchParams({ limit, offset });
    if (action.value) q.set("action", action.value); if (actor.value) q.set("actor", actor.value);
    const d = await api("GET", "/api/v1/audit-logs?" + q);
    const rows = list(d, "logs");
    return h("div", {}, dataTable({ label: "Audit log", rows, searchable: false, pageSize: limit, empty: "No entries.", columns: [
      { key: "timestamp", title: "When", render: (e) => datetime(e.timestamp) }, { key: "action", title: "Action" }, { key: "actor", title: "Actor" },
      { key: "target", title: "Target" }, { key: "ip", title: "IP" }, { key: "details", title: "Details" }] }),
    serverPager("Audit log", offset, limit, d.total ?? offset + rows.length, (o) => { offset = o; out.load(); }));
  });
  const form = h("form", { class: "row" }, field("Action", action), field("Actor", actor), h("button", { type: "submit", class: "btn" }, "Filter"));
  form.addEventListener("submit", (e) => { e.preventDefault(); offset = 0; out.load(); });
  section(main, title, form, out.el);
  await out.load();
};

// The notifications page lives in notifications.js.

// The metrics page lives in metrics.js.

// The settings page lives in settings.js.

// ---------- start ----------
async function start() {
  $("#logout").addEventListener("click", logout);
  $("#menu-toggle").addEventListener("click", () => {
    const nav = $("#nav"); const open = nav.classList.toggle("collapsed") === false;
    $("#menu-toggle").setAttribute("aria-expanded", String(open));
  });
  window.addEventListener("hashchange", route);
  let s;
  try { s = await loadSession(); } catch { $("#main").replaceChildren(notice("Nekzus cannot be reached.")); return; }
  if (s.authenticated) signedIn(s);
  else if (s.setupRequired) showSetup(s);
  else showLogin();
}
// Page modules (e.g. ops.js) register their pages before DOMContentLoaded (module scripts run first).
// While this module runs the document is already "interactive" but DOMContentLoaded has not fired yet.
if (document.readyState !== "complete") document.addEventListener("DOMContentLoaded", start);
else start();

// For the page modules: they import these from this very module (the shell names its hashed URL).
export { PAGES, state, field, input, checkbox, notice, errorBox, guard, ago, bytes, badge, stateKind, pick, list,
  download, downloadFrom, dataTable, dialog, confirmDialog, formDialog, region, section, every, NBSP };
export { NAV, route, tabs, logsDialog, nextId, serverPager, LIST_PAGE };
export { datetime, idleSeconds };
