// Metrics page: the figures of GET /api/v1/metrics/dashboard (HTTP, proxy, WebSocket, auth, discovery,
// health and system), as cards and tables; refreshed on demand or every 10 s while the page is open.
import {
  api, bytes, checkbox, dataTable, every, field, h, region, section, PAGES,
} from "{{app.js}}";

const SECTIONS = [["http", "HTTP"], ["proxy", "Proxy"], ["websocket", "WebSocket"], ["auth", "Authentication"],
  ["discovery", "Discovery"], ["health", "Health"], ["system", "System"]];
// camelCase key → "Camel case"; figures by their kind (rates as %, bytes, durations).
const words = (k) => { const s = k.replace(/([A-Z])/g, " $1").toLowerCase(); return s[0].toUpperCase() + s.slice(1); };
function figure(key, v) {
  if (typeof v !== "number") return String(v ?? "–");
  if (/Rate$/.test(key)) return `${(v * 100).toFixed(1)}%`;
  if (/^bytes|Bytes/.test(key)) return bytes(v);
  if (/Ms$/.test(key)) return `${v.toFixed(1)} ms`;
  if (/Sec(onds)?$/.test(key)) return `${v.toFixed(1)} s`;
  return Number.isInteger(v) ? v.toLocaleString() : v.toFixed(3);
}
const STATUS = { 1: "healthy", 0: "unhealthy" };

function sectionBody(name, data) {
  const cards = [], tables = [];
  for (const [k, v] of Object.entries(data || {})) {
    if (Array.isArray(v)) {
      if (!v.length) continue;
      const cols = Object.keys(v[0]).map((c) => ({ key: c, title: words(c),
        value: (r) => (c === "status" && name === "health" ? STATUS[r[c]] || String(r[c]) : figure(c, r[c])) }));
      tables.push(h("h3", {}, words(k)), dataTable({ label: `${name} ${words(k)}`, rows: v, columns: cols, searchable: false }));
    } else if (v && typeof v === "object") {
      const rows = Object.entries(v).map(([key, n]) => ({ key, n }));
      if (rows.length) tables.push(h("h3", {}, words(k)), dataTable({ label: `${name} ${words(k)}`, rows, searchable: false,
        columns: [{ key: "key", title: words(k).replace(/^By /, "") }, { key: "n", title: "Requests" }] }));
    } else {
      cards.push(h("div", { class: "card stat", "data-metric": `${name}.${k}` }, h("div", { class: "label" }, words(k)), h("div", { class: "value" }, figure(k, v))));
    }
  }
  return [h("div", { class: "grid" }, cards), tables];
}

PAGES.metrics = async (main, title) => {
  const out = region("Metrics", async () => {
    const d = await api("GET", "/api/v1/metrics/dashboard", undefined, { background: true });
    return h("div", {}, SECTIONS.filter(([k]) => d[k]).map(([k, label]) =>
      h("section", { "aria-labelledby": `metrics-${k}` }, h("h2", { id: `metrics-${k}` }, label), sectionBody(k, d[k]))));
  });
  const auto = checkbox("autoRefresh", true);
  section(main, title, h("div", { class: "row" },
    h("button", { type: "button", class: "btn", onclick: () => out.load() }, "Refresh"), field("Refresh every 10 s", auto)), out.el);
  await out.load();
  every(10000, () => { if (auto.checked) out.load(); });
};
