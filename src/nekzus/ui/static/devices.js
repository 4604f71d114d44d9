// Devices page: paired devices with their online state and requests today, a details dialog, rename,
// scopes, revoke, and the "pair a device" dialog with the live QR code. Updates live on device events.
import {
  ago, api, badge, confirmDialog, dataTable, datetime, dialog, every, field, formDialog, guard, h, input, list,
  notice, onEvent, region, section, serverPager, state, toast, LIST_PAGE, PAGES,
} from "{{app.js}}";

const DEVICE_EVENTS = /^device_(paired|revoked|status|updated)$/;
const nameOf = (d) => d.deviceName || d.deviceId;
const when = (t) => { if (!t) return "never"; const at = datetime(t), rel = ago(t); return rel === at ? at : `${at} (${rel})`; };
const online = (d) => d.online ?? d.status === "online";
const stateBadge = (d) => badge(online(d) ? "online" : "offline", online(d) ? "ok" : "idle");

// Every field the API reports for one device, re-read when it opens and on each device event.
function detailsDialog(first) {
  const id = first.deviceId;
  const body = h("div", { "aria-live": "polite" });
  const draw = (d) => body.replaceChildren(h("dl", { class: "kv", "data-device-details": id },
    ...[["Device id", d.deviceId], ["Name", d.deviceName], ["Platform", [d.platform, d.platformVersion].filter(Boolean).join(" ") || "unknown"],
      ["Model", d.model || "unknown"], ["Scopes", (d.scopes || []).join(", ") || "none"], ["Paired", when(d.createdAt || d.pairedAt)],
      ["Last seen", when(d.lastSeenAt || d.lastSeen)], ["Status", stateBadge(d)], ["Requests today", String(d.requestsToday ?? 0)],
      ["Pinned certificate", (d.spkiPins || []).length ? h("code", {}, d.spkiPins.join(" ")) : "unknown (paired without TLS pins)"]]
      .flatMap(([k, v]) => [h("dt", {}, k), h("dd", { "data-field": k }, v)])));
  const reload = async () => {
    try { draw(await api("GET", `/api/v1/devices/${encodeURIComponent(id)}`)); }
    catch (e) { body.replaceChildren(notice(e.status === 404 ? "This device is no longer paired." : e.message)); }
  };
  const listener = (m) => { if (DEVICE_EVENTS.test(m.type) && (!m.data || !m.data.deviceId || m.data.deviceId === id)) reload(); };
  state.listeners.add(listener);
  draw(first);
  dialog(`Device ${nameOf(first)}`, h("div", {}, body,
    h("div", { class: "row" }, h("button", { type: "button", class: "btn", onclick: reload }, "Refresh"))),
  { onClose: () => state.listeners.delete(listener) });
  reload();
}

PAGES.devices = async (main, title) => {
  let offset = 0;
  const table = region("Devices", async () => {
    let d = await api("GET", `/api/v1/devices?limit=${LIST_PAGE}&offset=${offset}`);
    if (!list(d, "devices").length && offset > 0) { offset = Math.max(0, (Math.ceil((d.total || 0) / LIST_PAGE) - 1) * LIST_PAGE); d = await api("GET", `/api/v1/devices?limit=${LIST_PAGE}&offset=${offset}`); }
    const rows = list(d, "devices");
    return h("div", {}, dataTable({ label: "Devices", rows: rows.map((d) => ({ ...d, __id: d.deviceId })), pageSize: LIST_PAGE, empty: "No paired devices yet.", columns: [
      { key: "deviceName", title: "Name", value: (d) => d.deviceName || d.deviceId }, { key: "platform", title: "Platform" },
      { key: "status", title: "Status", value: (d) => (online(d) ? "online" : "offline"), render: stateBadge },
      { key: "requestsToday", title: "Requests today", value: (d) => Number(d.requestsToday) || 0 },
      { key: "scopes", title: "Scopes", value: (d) => (d.scopes || []).join(", ") },
      { key: "lastSeenAt", title: "Last seen", render: (d) => ago(d.lastSeenAt) },
      { key: "actions", title: "Actions", sort: false, class: "actions", render: (d) => h("div", { class: "row" },
        h("button", { type: "button", class: "btn small", "aria-label": `Details of ${nameOf(d)}`, onclick: () => detailsDialog(d) }, "Details"),
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
  onEvent((m) => { if (DEVICE_EVENTS.test(m.type)) table.load(); });
  // Online state and request counts change without an event: refresh them while the page is open (at the
  // refresh interval of Settings).
  every(() => { if (!document.querySelector("dialog[open]") && !table.el.contains(document.activeElement)) table.load(); });
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
