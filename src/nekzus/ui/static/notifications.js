// Notifications page: queue counters, a "needs attention" panel (failed notifications and devices with
// stale ones, retried or dismissed in bulk) and the whole queue, filtered and paged by the API.
import {
  ago, api, badge, confirmDialog, dataTable, field, guard, h, input, onEvent, region, section,
  serverPager, stateKind, toast, PAGES, list, state,
} from "{{app.js}}";

const PAGE = 50;
const STAT_LABELS = [["totalPending", "Pending"], ["totalDelivered", "Delivered"], ["totalFailed", "Failed"],
  ["totalExpired", "Expired"], ["totalDismissed", "Dismissed"], ["staleCount", "Stale"]];

// Check boxes over a list of notifications; `ids()` is what is ticked.
function picker(what) {
  const ticked = new Set();
  const box = (n) => {
    const el = h("input", { type: "checkbox", name: "select", "aria-label": `Select ${what} ${n.id}`, checked: ticked.has(n.id) });
    el.addEventListener("change", () => { if (el.checked) ticked.add(n.id); else ticked.delete(n.id); });
    return el;
  };
  return { box, ids: () => [...ticked], clear: () => ticked.clear(), keep: (rows) => {
    const live = new Set(rows.map((n) => n.id)); for (const id of [...ticked]) if (!live.has(id)) ticked.delete(id);
  } };
}

PAGES.notifications = async (main, title) => {
  const reloadAll = () => Promise.all([stats.load(), attention.load(), queue.load()]);
  const retry = async (ids, whose = "") => {
    if (!ids.length) { toast("Nothing selected", "error"); return; }
    const r = await api("POST", "/api/v1/notifications/retry", { ids });
    toast(`${r.count ?? ids.length} notification(s)${whose ? " for " + whose : ""} queued for retry`);
    await reloadAll();
  };
  // The API dismisses one at a time (or a whole device); failures are reported, the rest still go.
  const dismiss = async (ids) => {
    if (!ids.length) { toast("Nothing selected", "error"); return; }
    const errors = [];
    for (const id of ids) {
      try { await api("DELETE", `/api/v1/notifications/${encodeURIComponent(id)}`); } catch (e) { errors.push(`${id}: ${e.message}`); }
    }
    toast(errors.length ? `Dismissed ${ids.length - errors.length}; failed: ${errors.join("; ")}` : `Dismissed ${ids.length} notification(s)`, errors.length ? "error" : "info");
    await reloadAll();
  };

  const stats = region("Notification counters", async () => {
    const s = await api("GET", "/api/v1/notifications/stats");
    return h("div", {}, s.enabled === false ? h("p", { class: "muted" }, "Offline delivery is switched off (notifications.enabled): nothing is queued.") : null,
      h("div", { class: "grid" }, STAT_LABELS.map(([k, l]) => h("div", { class: "card stat", "data-stat": k },
        h("div", { class: "label" }, l), h("div", { class: "value" }, String(s[k] ?? 0))))));
  });

  const failedPick = picker("failed notification");
  const attention = region("Needs attention", async () => {
    const [stale, failed] = await Promise.all([api("GET", "/api/v1/notifications/stale"),
      api("GET", "/api/v1/notifications?status=failed&limit=200")]);
    const failedRows = list(failed, "notifications");
    failedPick.keep(failedRows);
    const devices = stale.devices || [];
    const retryDevice = async (d) => {
      const rows = list(await api("GET", `/api/v1/notifications?status=pending&limit=200&deviceId=${encodeURIComponent(d.deviceId)}`), "notifications");
      await retry(rows.map((n) => n.id), d.deviceName || d.deviceId);
    };
    const staleTable = devices.length ? dataTable({ label: "Devices with stale notifications", searchable: false,
      rows: devices.map((d) => ({ ...d, __id: d.deviceId })), columns: [
        { key: "deviceName", title: "Device", value: (d) => d.deviceName || d.deviceId },
        { key: "count", title: "Stale" }, { key: "types", title: "Types", value: (d) => (d.types || []).join(", ") },
        { key: "oldestAt", title: "Oldest", render: (d) => ago(d.oldestAt) }, { key: "totalRetries", title: "Retries" },
        { key: "actions", title: "Actions", sort: false, class: "actions", render: (d) => h("div", { class: "row" },
          h("button", { type: "button", class: "btn small", "aria-label": `Retry all for ${d.deviceName || d.deviceId}`, onclick: (e) => guard(() => retryDevice(d), e.target) }, "Retry all"),
          h("button", { type: "button", class: "btn small danger", "aria-label": `Dismiss all for ${d.deviceName || d.deviceId}`, onclick: async (e) => {
            if (!(await confirmDialog(`Dismiss every queued notification for ${d.deviceName || d.deviceId}?`, "Dismiss"))) return;
            await guard(async () => { const r = await api("DELETE", `/api/v1/notifications/device/${encodeURIComponent(d.deviceId)}`); toast(`Dismissed ${r.count} for ${d.deviceName || d.deviceId}`); await reloadAll(); }, e.target);
          } }, "Dismiss all")) }] })
      : h("p", { class: "muted", "data-empty": "stale" }, `No device has notifications pending for over ${stale.staleThresholdHours || 24} hours.`);
    const failedTable = failedRows.length ? h("div", {},
      h("div", { class: "row", role: "group", "aria-label": "Failed notifications" },
        h("button", { type: "button", class: "btn small", onclick: (e) => guard(() => retry(failedPick.ids()), e.target) }, "Retry selected"),
        h("button", { type: "button", class: "btn small", onclick: (e) => guard(() => retry(failedRows.map((n) => n.id)), e.target) }, `Retry all failed (${failedRows.length})`),
        h("button", { type: "button", class: "btn small danger", onclick: (e) => guard(() => dismiss(failedPick.ids()), e.target) }, "Dismiss selected")),
      dataTable({ label: "Failed notifications", searchable: false, rows: failedRows.map((n) => ({ ...n, __id: String(n.id) })), columns: [
        { key: "select", title: "Select", sort: false, render: (n) => failedPick.box(n) },
        { key: "deviceName", title: "Device", value: (n) => n.deviceName || n.deviceId }, { key: "type", title: "Type" },
        { key: "retryCount", title: "Retries", value: (n) => `${n.retryCount}/${n.maxRetries}` },
        { key: "errorMessage", title: "Error", value: (n) => n.errorMessage || "" },
        { key: "lastAttemptAt", title: "Last attempt", render: (n) => ago(n.lastAttemptAt) }] }))
      : h("p", { class: "muted", "data-empty": "failed" }, "No failed notifications.");
    return h("div", { class: "grid attention" },
      h("section", { class: "card", "aria-labelledby": "failed-title", "data-panel": "failed" }, h("h3", { id: "failed-title" }, "Failed"), failedTable),
      h("section", { class: "card", "aria-labelledby": "stale-title", "data-panel": "stale" }, h("h3", { id: "stale-title" }, "Stale devices"), staleTable));
  });

  // The whole queue, filtered and paged by the API.
  const status = h("select", { name: "status" }, ["", "pending", "delivered", "failed", "expired", "dismissed"].map((s) => h("option", { value: s }, s || "Any status")));
  const device = input("deviceId", { placeholder: "Device id" });
  const type = input("type", { placeholder: "e.g. webhook.notify" });
  const queuePick = picker("notification");
  let offset = 0;
  const queue = region("Notification queue", async () => {
    const fetchPage = () => {
      const q = new URLSearchParams({ limit: PAGE, offset });
      if (status.value) q.set("status", status.value);
      if (device.value.trim()) q.set("deviceId", device.value.trim());
      if (type.value.trim()) q.set("type", type.value.trim());
      return api("GET", "/api/v1/notifications?" + q);
    };
    let d = await fetchPage();
    if (!list(d, "notifications").length && offset > 0) {  // the page emptied (dismissed): show the last one
      offset = Math.max(0, (Math.ceil((d.total || 0) / PAGE) - 1) * PAGE);
      d = await fetchPage();
    }
    const rows = list(d, "notifications");
    queuePick.keep(rows);
    return h("div", {},
      h("div", { class: "row", role: "group", "aria-label": "Selected notifications" },
        h("button", { type: "button", class: "btn small", onclick: (e) => guard(() => retry(queuePick.ids()), e.target) }, "Retry selected"),
        h("button", { type: "button", class: "btn small danger", onclick: (e) => guard(() => dismiss(queuePick.ids()), e.target) }, "Dismiss selected")),
      dataTable({ label: "Notifications", rows: rows.map((n) => ({ ...n, __id: String(n.id) })), searchable: false, pageSize: PAGE, empty: "The queue is empty.", columns: [
        { key: "select", title: "Select", sort: false, render: (n) => queuePick.box(n) },
        { key: "deviceName", title: "Device", value: (n) => n.deviceName || n.deviceId }, { key: "type", title: "Type" },
        { key: "status", title: "Status", render: (n) => badge(n.isStale ? `${n.status} (stale)` : n.status, stateKind(n.status)) },
        { key: "retryCount", title: "Retries", value: (n) => n.retryCount ?? 0 },
        { key: "createdAt", title: "Created", render: (n) => ago(n.createdAt) },
        { key: "actions", title: "Actions", sort: false, class: "actions", render: (n) => h("div", { class: "row" },
          h("button", { type: "button", class: "btn small", "aria-label": `Retry notification ${n.id}`, onclick: (e) => guard(async () => {
            const r = await api("POST", `/api/v1/notifications/${encodeURIComponent(n.id)}/retry`); toast(r.message || "Retried"); await reloadAll(); }, e.target) }, "Retry"),
          h("button", { type: "button", class: "btn small danger", "aria-label": `Dismiss notification ${n.id}`, onclick: (e) => guard(() => dismiss([n.id]), e.target) }, "Dismiss")) }] }),
      serverPager("Notifications", offset, PAGE, d.total || 0, (o) => { offset = o; queue.load(); }));
  });
  const filter = h("form", { class: "row", "aria-label": "Filter notifications" }, field("Status", status), field("Device", device), field("Type", type),
    h("button", { type: "submit", class: "btn" }, "Filter"));
  filter.addEventListener("submit", (e) => { e.preventDefault(); offset = 0; queue.load(); });

  section(main, title, stats.el,
    h("h2", {}, "Needs attention"), attention.el,
    h("h2", {}, "Queue"), filter,
    h("div", { class: "row" }, h("button", { type: "button", class: "btn", onclick: (e) => guard(async () => {
      const r = await api("DELETE", "/api/v1/notifications/delivered"); toast(`Cleared ${r.count ?? 0} delivered notification(s)`); await reloadAll(); }, e.target) }, "Clear delivered")),
    queue.el);
  await reloadAll();
  let timer = 0;  // a burst of deliveries reloads once
  state.cleanup.push(() => clearTimeout(timer));
  onEvent((m) => {
    if (!/notification|webhook/.test(m.type || "")) return;
    if (!timer) timer = setTimeout(() => { timer = 0; reloadAll(); }, 500);
  });
};
