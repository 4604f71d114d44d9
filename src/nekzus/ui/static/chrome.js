// The page chrome around every dashboard page: the notification centre behind the header's bell (a history
// of the toasts that flashed by: webhook activity, failures, finished jobs) and the footer with the server's
// version and a link to the API docs. The history lives in sessionStorage: it belongs to this browser tab,
// survives a reload, ends at sign-out, and is bounded so a chatty webhook cannot grow it without end.
import { api, h, ago, badge, nextId } from "{{app.js}}";

const KEY = "nekzus.notices";
const MAX = 50;  // notices kept; the oldest go first

function load() {
  try {
    const items = JSON.parse(sessionStorage.getItem(KEY) || "[]");
    return Array.isArray(items) ? items.filter((n) => n && typeof n.message === "string").slice(0, MAX) : [];
  } catch { return []; }
}
let notices = load();  // newest first
function save() {
  try { sessionStorage.setItem(KEY, JSON.stringify(notices)); } catch { /* storage full or disabled: memory only */ }
}

const KIND = { error: ["failure", "bad"], webhook: ["webhook", "warn"], info: ["info", "idle"] };
const kindOf = (n) => (n.kind === "error" ? "error" : n.source === "webhook" ? "webhook" : "info");

// ---------- the bell ----------
const count = h("span", { class: "bell-count", "aria-live": "polite", "data-unread": "" });
const bell = h("button", { type: "button", id: "bell", class: "icon-btn bell", hidden: true, "aria-expanded": "false",
  "aria-controls": "bell-panel" }, bellIcon(), h("span", { class: "vh" }, "Notifications"), count);
const items = h("ol", { class: "notices" });
const titleId = nextId("bell");
const panel = h("section", { id: "bell-panel", class: "bell-panel", hidden: true, "aria-labelledby": titleId },
  h("div", { class: "row" }, h("h2", { id: titleId }, "Notification centre"), h("span", { class: "spacer" }),
    h("button", { type: "button", class: "btn small", onclick: () => { notices.forEach((n) => { n.read = true; }); save(); draw(); } }, "Mark all read"),
    h("button", { type: "button", class: "btn small danger", onclick: () => { notices = []; save(); draw(); } }, "Clear")),
  h("p", { class: "muted" }, `The last ${MAX} notices of this browser tab.`),
  items);

function bellIcon() {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24"); svg.setAttribute("aria-hidden", "true"); svg.setAttribute("class", "bell-icon");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", "M12 3a6 6 0 0 0-6 6v4l-2 3h16l-2-3V9a6 6 0 0 0-6-6zm-2 15a2 2 0 0 0 4 0");
  svg.append(path);
  return svg;
}

function when(at) {
  const d = new Date(at);
  return h("time", { datetime: d.toISOString(), title: d.toLocaleString() }, ago(at));
}
function draw() {
  const unread = notices.filter((n) => !n.read).length;
  count.textContent = unread ? String(unread > 99 ? "99+" : unread) : "";
  count.toggleAttribute("hidden", !unread);
  bell.title = unread ? `${unread} unread notification${unread === 1 ? "" : "s"}` : "No unread notifications";
  if (panel.hidden) return;
  items.replaceChildren(...(notices.length ? notices.map((n) => {
    const [label, kind] = KIND[kindOf(n)];
    return h("li", { class: n.read ? "notice-item" : "notice-item unread", "data-notice": n.id },
      h("div", { class: "row" }, n.read ? null : h("span", { class: "vh" }, "Unread: "), badge(label, kind),
        h("span", { class: "notice-msg" }, n.message), h("span", { class: "spacer" }), h("span", { class: "muted" }, when(n.at))),
      n.details ? h("div", { class: "muted" }, n.details) : null);
  }) : [h("li", { class: "muted" }, "No notifications yet.")]));
}
function open(show) {
  panel.hidden = !show;
  bell.setAttribute("aria-expanded", String(show));
  if (show) { draw(); panel.querySelector("button").focus(); }
}

window.addEventListener("nekzus:toast", (ev) => {
  const d = ev.detail || {};
  notices.unshift({ id: `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`, message: String(d.message || "").slice(0, 500),
    kind: d.kind || "info", source: d.source || "", details: String(d.details || "").slice(0, 500), at: Date.now(), read: false });
  notices.length = Math.min(notices.length, MAX);
  save(); draw();
});
bell.addEventListener("click", () => open(panel.hidden));
panel.addEventListener("keydown", (e) => { if (e.key === "Escape") { open(false); bell.focus(); } });
document.addEventListener("pointerdown", (e) => {
  if (!panel.hidden && !panel.contains(e.target) && !bell.contains(e.target)) open(false);
});
// Relative times stay true while the panel is open.
setInterval(() => { if (!panel.hidden) draw(); }, 30000);

// ---------- the footer ----------
const version = h("span", { "data-version": "" });
const footer = h("footer", { class: "foot", hidden: true },
  h("span", {}, "Nekzus ", version), h("span", { "aria-hidden": "true" }, " · "),
  h("a", { href: "/api/docs", target: "_blank", rel: "noopener" }, "API documentation"));

async function showVersion() {
  try {
    const info = await api("GET", "/api/v1/admin/info", undefined, { background: true });
    version.textContent = info && info.version ? `version ${info.version}` : "";
  } catch { version.textContent = ""; }
}

const top = document.querySelector("header.top");
const who = document.querySelector("#who");
top.insertBefore(bell, who);
top.append(panel);
document.querySelector(".layout").after(footer);
window.addEventListener("nekzus:chrome", (ev) => {
  const signedIn = !!(ev.detail && ev.detail.signedIn);
  bell.hidden = !signedIn;
  footer.hidden = !signedIn;
  if (!signedIn) {
    // Whoever signs in next on this tab does not inherit the notices (they may name hosts, keys, users).
    open(false); notices = []; save(); draw();
  } else if (!version.textContent) showVersion();
});
draw();
