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

// ---------- API ----------
class ApiErr extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
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
    const err = data && data.error ? new ApiErr(res.status, data.error.code, data.error.message)
      : new ApiErr(res.status, "HTTP_" + res.status, `Request failed (${res.status})`);
    if (res.status === 401 && state.user && !opts.noRedirect) { sessionEnded(err.message); }
    throw err;
  }
  return data;
}
async function errorOf(res) {
  try { const d = await res.json(); return new ApiErr(res.status, d.error.code, d.error.message); }
  catch { return new ApiErr(res.status, "HTTP_" + res.status, `Request failed (${res.status})`); }
}

// ---------- toasts, notices ----------
export function toast(message, kind = "info") {
  const t = h("div", { class: "toast " + kind }, message);
  $("#toasts").append(t);
  setTimeout(() => t.remove(), kind === "error" ? 8000 : 5000);
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
function ago(t) {
  if (!t) return "never";
  const ms = typeof t === "number" ? (t > 1e12 ? t : t * 1000) : Date.parse(t);
  if (!ms) return String(t);
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
      toast(d.message || d.title || inner.title || inner.message || d.type || "Webhook notification");
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
function resetIdle() {
  clearTimeout(state.idleTimer);
  if (!state.user) return;
  state.idleTimer = setTimeout(async () => { await logout(); toast("Signed out after inactivity", "error"); },
    state.idleTimeout * 1000);
}
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
function every(ms, fn) { const t = setInterval(fn, ms); state.cleanup.push(() => clearInterval(t)); }
function section(main, title, ...nodes) { main.replaceChildren(h("h1", {}, title), ...nodes); }
// A region reloaded by `load()`; errors (incl. "not available") render inside it. Until its first load it
// shows a placeholder (`skeleton()`, shaped like the content where that is known) and keeps at least the
// placeholder's height, so content arriving never pushes the rest of the page around.
function region(what, build, skeleton) {
  const el = h("div", { "aria-live": "polite", "aria-busy": "true", class: "region" },
    skeleton ? skeleton() : h("div", { class: "skeleton", "aria-hidden": "true" }));
  let first = true;
  const load = async () => {
    let content;
    try { content = await build(); } catch (e) { content = errorBox(e, what); }
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

PAGES.discovery = async (main, title) => {
  const selected = new Set();
  let offset = 0; const PER = 24;  // cards per page
  const cards = region("Discovery", async () => {
    const all = list(await api("GET", "/api/v1/discovery/proposals"), "proposals");
    if (!all.length) return h("p", { class: "muted" }, "No pending proposals. Label a container with nekzus.enable=true or press Rediscover.");
    if (offset >= all.length) offset = Math.max(0, (Math.ceil(all.length / PER) - 1) * PER);
    const items = all.slice(offset, offset + PER);
    return h("div", {}, h("div", { class: "grid" }, items.map((p) => {
      const ports = (p.availablePorts || []);
      const portSel = h("select", { name: "port" }, ports.length ? ports.map((pt) => h("option", { value: pt.port, selected: pt.port === p.detectedPort }, `${pt.port} (${pt.scheme}${pt.label ? ", " + pt.label : ""})`))
        : h("option", { value: p.detectedPort }, String(p.detectedPort)));
      const sel = checkbox("select", selected.has(p.id));
      sel.addEventListener("change", () => { if (sel.checked) selected.add(p.id); else selected.delete(p.id); });
      const pct = Math.round((Number(p.confidence) || 0) * 100);
      return h("article", { class: "card", "data-proposal": p.id, "aria-label": `Proposal ${p.suggestedApp.name}` },
        h("h3", {}, p.suggestedApp.name), h("div", { class: "row" }, badge(p.source, "idle"), h("span", { class: "muted" }, `${p.detectedHost}:${p.detectedPort}`)),
        h("div", { class: "muted" }, `Confidence ${pct}%`), h("div", { class: "bar", role: "presentation" }, h("span", { width: pct + "%" })),
        (p.securityNotes || []).map((n) => h("div", { class: "muted" }, "⚠ " + n)),
        field(`Port for ${p.suggestedApp.name}`, portSel), field(`Select ${p.suggestedApp.name}`, sel),
        h("div", { class: "row" },
          h("button", { type: "button", class: "btn primary small", onclick: (e) => approve(p.id, Number(portSel.value), e.target) }, "Approve"),
          h("button", { type: "button", class: "btn small", onclick: (e) => dismiss(p.id, e.target) }, "Dismiss")));
    })), all.length > PER ? serverPager("Proposals", offset, PER, all.length, (o) => { offset = o; cards.load(); }) : null);
  });
  const approve = (id, port, btn) => guard(async () => {
    const r = await api("POST", `/api/v1/discovery/proposals/${encodeURIComponent(id)}/approve`, port ? { port } : {});
    toast(`Approved: ${r.route ? r.route.pathBase : id}`); selected.delete(id); cards.load();
  }, btn);
  const dismiss = (id, btn) => guard(async () => { await api("POST", `/api/v1/discovery/proposals/${encodeURIComponent(id)}/dismiss`); toast("Dismissed"); selected.delete(id); cards.load(); }, btn);
  const bulk = async (kind) => { for (const id of [...selected]) { kind === "approve" ? await approve(id, 0) : await dismiss(id); } };
  section(main, title, h("div", { class: "row" },
    h("button", { type: "button", class: "btn", onclick: (e) => guard(async () => { const r = await api("POST", "/api/v1/discovery/rediscover"); toast(r.message || "Rediscovery triggered"); cards.load(); }, e.target) }, "Rediscover"),
    h("button", { type: "button", class: "btn", onclick: () => bulk("approve") }, "Approve selected"),
    h("button", { type: "button", class: "btn", onclick: () => bulk("dismiss") }, "Dismiss selected")), cards.el);
  await cards.load();
  onEvent((m) => { if (/discovery|proposal|app_registered/.test(m.type)) cards.load(); });
};

PAGES.devices = async (main, title) => {
  let offset = 0;
  const table = region("Devices", async () => {
    let d = await api("GET", `/api/v1/devices?limit=${LIST_PAGE}&offset=${offset}`);
    if (!list(d, "devices").length && offset > 0) { offset = Math.max(0, (Math.ceil((d.total || 0) / LIST_PAGE) - 1) * LIST_PAGE); d = await api("GET", `/api/v1/devices?limit=${LIST_PAGE}&offset=${offset}`); }
    const rows = list(d, "devices");
    return h("div", {}, dataTable({ label: "Devices", rows: rows.map((d) => ({ ...d, __id: d.deviceId })), pageSize: LIST_PAGE, empty: "No paired devices yet.", columns: [
      { key: "deviceName", title: "Name", value: (d) => d.deviceName || d.deviceId }, { key: "platform", title: "Platform" },
      { key: "scopes", title: "Scopes", value: (d) => (d.scopes || []).join(", ") },
      { key: "lastSeenAt", title: "Last seen", render: (d) => ago(d.lastSeenAt) },
      { key: "actions", title: "Actions", sort: false, class: "actions", render: (d) => h("div", { class: "row" },
        h("button", { type: "button", class: "btn small", "aria-label": `Edit ${d.deviceName || d.deviceId}`, onclick: () => editDevice(d) }, "Edit"),
        h("button", { type: "button", class: "btn small danger", "aria-label": `Revoke ${d.deviceName || d.deviceId}`, onclick: async (e) => {
          if (!(await confirmDialog(`Revoke ${d.deviceName || d.deviceId}? Its tokens stop working at once.`, "Revoke"))) return;
          await guard(async () => { await api("DELETE", `/api/v1/devices/${encodeURIComponent(d.deviceId)}`); toast("Device revoked"); table.load(); }, e.target);
        } }, "Revoke")) }] }),
    serverPager("Devices", offset, LIST_PAGE, d.total ?? rows.length, (o) => { offset = o; table.load(); }));
  });
  const editDevice = (d) => {
    const name = input("deviceName", { value: d.deviceName || "" });
    const scopes = input("scopes", { value: (d.scopes || []).join(", ") });
    formDialog(`Edit ${d.deviceName || d.deviceId}`, [field("Name", name), field("Scopes (comma separated)", scopes)], "Save", async () => {
      await api("PATCH", `/api/v1/devices/${encodeURIComponent(d.deviceId)}`, { deviceName: name.value, scopes: scopes.value.split(",").map((s) => s.trim()).filter(Boolean) });
      toast("Device updated"); table.load();
    });
  };
  section(main, title, h("div", { class: "row" }, h("button", { type: "button", class: "btn primary", onclick: pairDialog }, "Pair a device")), table.el);
  await table.load();
  onEvent((m) => { if (/device_(paired|revoked|status|updated)/.test(m.type)) table.load(); });
};
function pairDialog() {
  const img = h("img", { class: "qr", alt: "Pairing QR code: scan it with the Nekzus app" });
  const code = h("div", { class: "code", "data-pair-code": "" }, "…");
  const countdown = h("div", { class: "muted", role: "timer", "aria-live": "off" });
  const status = h("div", { role: "status" });
  let timer = 0, url = "", expires = 0, current = "";
  const refresh = async () => {
    status.replaceChildren();
    try {
      const res = await api("GET", "/api/v1/auth/qr?format=png", undefined, { raw: true });
      current = res.headers.get("X-Pairing-Code") || "";
      if (url) URL.revokeObjectURL(url);
      url = URL.createObjectURL(await res.blob());
      img.src = url; code.textContent = current; expires = Date.now() + 300000; tick();
    } catch (e) { status.replaceChildren(notice(e.message)); }
  };
  const tick = () => {
    const left = Math.max(0, Math.round((expires - Date.now()) / 1000));
    countdown.textContent = left ? `Code valid for ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}` : "Code expired: get a new one.";
  };
  const listener = (m) => {
    if (m.type === "device_paired") {
      const dname = (m.data && (m.data.deviceName || m.data.deviceId)) || "A device";
      status.replaceChildren(h("div", { class: "notice" }, `${dname} paired.`));
      toast(`${dname} paired`);
    }
  };
  state.listeners.add(listener);
  const d = dialog("Pair a device", h("div", {},
    h("p", {}, "Scan the code with the Nekzus app, or type the code by hand. It works once and expires after 5 minutes."),
    img, code, countdown, status,
    h("div", { class: "row" }, h("button", { type: "button", class: "btn", onclick: refresh }, "New code"))),
  { onClose: () => { clearInterval(timer); state.listeners.delete(listener); if (url) URL.revokeObjectURL(url); } });
  timer = setInterval(tick, 1000);
  refresh();
  return d;
}

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
PAGES.toolbox = async (main, title) => {
  const catalog = region("The toolbox", async () => {
    const items = list(await api("GET", "/api/v1/toolbox/services"), "services");
    if (!items.length) return h("p", { class: "muted" }, "The catalog is empty.");
    return h("div", { class: "grid" }, items.map((s) => h("article", { class: "card" }, h("h3", {}, s.name),
      h("div", { class: "row" }, badge(s.category || "other"), s.difficulty ? badge(s.difficulty) : null),
      h("p", { class: "muted" }, s.description || ""),
      h("button", { type: "button", class: "btn primary small", "aria-label": `Deploy ${s.name}`, onclick: () => deployDialog(s) }, "Deploy"))));
  });
  const deployments = region("Deployments", async () => {
    const rows = list(await api("GET", "/api/v1/toolbox/deployments"), "deployments");
    return dataTable({ label: "Deployments", rows, searchable: false, empty: "No deployments yet.", columns: [
      { key: "serviceName", title: "Name", value: (d) => pick(d, "serviceName", "service_name", "id") },
      { key: "serviceId", title: "Template", value: (d) => pick(d, "serviceId", "service_template_id", "service_id") },
      { key: "status", title: "Status", render: (d) => h("span", { "data-status": d.status }, badge(d.status, stateKind(d.status))) },
      { key: "progress", title: "Progress", value: (d) => Number(pick(d, "progress")) || 0, render: (d) => {
        const pct = Math.max(0, Math.min(100, Number(pick(d, "progress")) || 0));
        return h("div", { "data-deployment": d.id }, h("div", { class: "muted" }, `${pick(d, "phase") || ""} ${pct}%`),
          h("div", { class: "bar", role: "progressbar", "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100, "aria-label": `Progress of ${pick(d, "serviceName", "service_name", "id")}` }, h("span", { width: pct + "%" })));
      } },
      { key: "actions", title: "Actions", sort: false, render: (d) => h("button", { type: "button", class: "btn small danger", "aria-label": `Remove ${pick(d, "serviceName", "service_name", "id")}`, onclick: () => {
        const vols = checkbox("removeVolumes", false);
        formDialog(`Remove ${pick(d, "serviceName", "service_name", "id")}?`, [h("p", {}, "Its containers are stopped and removed."), field("Also remove its volumes (its data)", vols)], "Remove", async () => {
          await api("DELETE", `/api/v1/toolbox/deployments/${encodeURIComponent(d.id)}?removeVolumes=${vols.checked}`); toast("Deployment removed"); deployments.load();
        });
      } }, "Remove") }] });
  });
  const deployDialog = async (s) => {
    let detail = s;
    try { detail = await api("GET", `/api/v1/toolbox/services/${encodeURIComponent(s.id)}`); detail = detail.service || detail; } catch { /* the list entry will do */ }
    const vars = detail.variables || detail.envVars || detail.env_vars || [];
    const labels = {};
    const name = input("serviceName", { value: s.id, required: true });
    const port = input("customPort", { type: "number", min: 1, max: 65535 });
    const auto = checkbox("autoStart", true);
    const varInputs = (Array.isArray(vars) ? vars : Object.entries(vars).map(([k, v]) => ({ name: k, ...(typeof v === "object" ? v : { default: v }) })))
      .map((v) => { labels[v.name] = (v.label || v.name) + (v.required ? " (required)" : "");
        return [v.name, input(v.name, { type: v.type === "password" || v.secret ? "password" : v.type === "number" ? "number" : "text", value: v.default ?? "", required: !!v.required })]; });
    formDialog(`Deploy ${s.name}`, [field("Service name", name), varInputs.map(([k, el]) => field(labels[k], el)), field("Custom port", port), field("Start after deploying", auto)],
      "Deploy", async () => {
        const envVars = Object.fromEntries(varInputs.map(([k, el]) => [k, el.value]));
        const body = { serviceId: s.id, serviceName: name.value, envVars, autoStart: auto.checked };
        if (port.value) body.customPort = Number(port.value);
        const r = await api("POST", "/api/v1/toolbox/deploy", body);
        toast(r.message || "Deployment started"); deployments.load();
      });
  };
  section(main, title, catalog.el, h("h2", {}, "Deployments"), deployments.el);
  await Promise.all([catalog.load(), deployments.load()]);
  let pendingReload = 0;  // at most one reload per 300 ms
  const reload = () => { if (!pendingReload) pendingReload = setTimeout(() => { pendingReload = 0; deployments.load(); }, 300); };
  onEvent((m) => {
    if (!/toolbox|deploy/.test(m.type)) return;
    const d = m.data || {};
    const cell = m.type === "toolbox.deploy.progress" && d.deploymentId
      ? main.querySelector(`[data-deployment="${CSS.escape(d.deploymentId)}"]`) : null;
    if (!cell) { reload(); return; }
    // Progress moves the bar in place; the row is reloaded when the deployment ends.
    const pct = Math.max(0, Math.min(100, Number(d.percent) || 0));
    cell.querySelector(".muted").textContent = `${d.phase || ""} ${pct}%`;
    const bar = cell.querySelector("[role=progressbar]");
    bar.setAttribute("aria-valuenow", String(pct));
    bar.firstChild.style.width = pct + "%";
  });
};

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

PAGES.apikeys = async (main, title) => {
  const table = region("API keys", async () => {
    const rows = list(await api("GET", "/api/v1/apikeys"), "keys");
    return dataTable({ label: "API keys", rows, empty: "No API keys.", columns: [
      { key: "name", title: "Name" }, { key: "prefix", title: "Prefix" }, { key: "scopes", title: "Scopes", value: (k) => (k.scopes || []).join(", ") },
      { key: "lastUsedAt", title: "Last used", render: (k) => ago(k.lastUsedAt) },
      { key: "status", title: "Status", value: (k) => (k.revokedAt ? "revoked" : "active"), render: (k) => badge(k.revokedAt ? "revoked" : "active", k.revokedAt ? "bad" : "ok") },
      { key: "actions", title: "Actions", sort: false, render: (k) => k.revokedAt ? "" : h("button", { type: "button", class: "btn small danger", "aria-label": `Revoke key ${k.name}`, onclick: async (e) => {
        if (await confirmDialog(`Revoke API key ${k.name}?`, "Revoke")) await guard(async () => { await api("DELETE", `/api/v1/apikeys/${encodeURIComponent(k.id)}`); toast("Key revoked"); table.load(); }, e.target);
      } }, "Revoke") }] });
  });
  const create = () => {
    const name = input("name", { required: true }); const scopes = input("scopes", { value: "read:catalog, read:events" });
    const expires = input("expiresAt", { type: "date" });
    formDialog("New API key", [field("Name", name), field("Scopes (comma separated)", scopes), field("Expires (optional)", expires)], "Create", async () => {
      const body = { name: name.value, scopes: scopes.value.split(",").map((s) => s.trim()).filter(Boolean) };
      if (expires.value) body.expiresAt = new Date(expires.value).toISOString();
      const k = await api("POST", "/api/v1/apikeys", body);
      table.load();
      dialog("Your new API key", h("div", {}, h("p", {}, "Copy it now: it is shown only this once."), h("pre", { "data-api-key": "" }, k.key),
        h("button", { type: "button", class: "btn", onclick: () => navigator.clipboard && navigator.clipboard.writeText(k.key).then(() => toast("Copied")) }, "Copy")));
    });
  };
  section(main, title, h("div", { class: "row" }, h("button", { type: "button", class: "btn primary", onclick: create }, "New API key")), table.el);
  await table.load();
};

PAGES.audit = async (main, title) => {
  const action = input("action"); const actor = input("actor");
  let offset = 0; const limit = 50;
  const out = region("The audit log", async () => {
    const q = new URLSearchParams({ limit, offset });
    if (action.value) q.set("action", action.value); if (actor.value) q.set("actor", actor.value);
    const d = await api("GET", "/api/v1/audit-logs?" + q);
    const rows = list(d, "logs");
    return h("div", {}, dataTable({ label: "Audit log", rows, searchable: false, pageSize: limit, empty: "No entries.", columns: [
      { key: "timestamp", title: "When" }, { key: "action", title: "Action" }, { key: "actor", title: "Actor" },
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

PAGES.settings = async (main, title) => {
  const theme = h("select", { name: "theme" }, [["light", "Light"], ["dark", "Dark"], ["terminal", "Terminal (green on black)"]].map(([v, l]) =>
    h("option", { value: v, selected: document.documentElement.getAttribute("data-theme") === v }, l)));
  theme.addEventListener("change", () => { document.documentElement.setAttribute("data-theme", theme.value); try { localStorage.setItem("nekzus.theme", theme.value); } catch { /* private mode */ } toast("Theme saved"); });
  const info = region("System information", async () => {
    const i = await api("GET", "/api/v1/admin/info");
    return h("dl", { class: "kv" }, h("dt", {}, "Version"), h("dd", {}, i.version), h("dt", {}, "Nexus id"), h("dd", {}, i.nexusId),
      h("dt", {}, "Capabilities"), h("dd", {}, (i.capabilities || []).join(", ")), h("dt", {}, "Live updates"), h("dd", {}, state.wsOnline ? "connected" : "disconnected"),
      h("dt", {}, "Signed in as"), h("dd", {}, state.user.username), h("dt", {}, "Idle sign-out after"), h("dd", {}, `${Math.round(state.idleTimeout / 60)} minutes`));
  });
  section(main, title, h("section", { class: "card" }, h("h2", {}, "Appearance"), field("Theme", theme)),
    h("section", { class: "card" }, h("h2", {}, "System information"), info.el));
  await info.load();
};

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
export { NAV, route, tabs, logsDialog, nextId, serverPager };
