// The settings page of the dashboard. A page module: it registers with the shared module (imported by the
// exact URL the shell loads, so both share one instance).
//
// Almost everything here is a preference of this browser (the store lives in app.js: one JSON object in
// localStorage with typed defaults); the webhook tester and the system information talk to the API.
import {
  PAGES, PREF_SPEC, h, api, toast, state, field, input, checkbox, notice, guard, list, bytes, datetime, download,
  confirmDialog, region, section, prefs,
} from "{{app.js}}";

const LOG_LIMIT = 200;  // WebSocket events kept in the debug panel
const WEBHOOK_SCOPE = "write:webhooks";

// ---------- developer option: live WebSocket events in an on-page panel ----------
let logPanel = null;
const logListener = (m) => {
  if (!logPanel) return;
  const ol = logPanel.querySelector("ol");
  let text = JSON.stringify(m.data === undefined ? {} : m.data);
  if (text.length > 300) text = text.slice(0, 300) + "…";
  ol.append(h("li", { "data-type": m.type || "" }, `${datetime(Date.now(), { date: false })} ${m.type || "?"} ${text}`));
  while (ol.children.length > LOG_LIMIT) ol.firstElementChild.remove();
  ol.scrollTop = ol.scrollHeight;
};
function syncEventLog() {
  if (prefs.get("logWsEvents") && !logPanel) {
    logPanel = h("section", { class: "ws-log", "aria-labelledby": "ws-log-title" },
      h("div", { class: "row" }, h("strong", { id: "ws-log-title" }, "WebSocket events"), h("span", { class: "spacer" }),
        h("button", { type: "button", class: "btn small", onclick: () => logPanel.querySelector("ol").replaceChildren() }, "Clear log"),
        h("button", { type: "button", class: "btn small", onclick: () => prefs.set("logWsEvents", false) }, "Stop logging")),
      h("ol", { tabindex: "0", "aria-label": `Last ${LOG_LIMIT} WebSocket events` }));
    document.body.append(logPanel);
    state.listeners.add(logListener);
  } else if (!prefs.get("logWsEvents") && logPanel) {
    state.listeners.delete(logListener);
    logPanel.remove();
    logPanel = null;
  }
}
prefs.onChange((keys) => { if (keys.includes("logWsEvents")) syncEventLog(); });
syncEventLog();

// ---------- helpers ----------
const card = (title, ...nodes) => h("section", { class: "card", "aria-label": title }, h("h2", {}, title), ...nodes);
const select = (name, options) => h("select", { name }, options.map(([v, l]) => h("option", { value: v }, l)));
const localBytes = () => {
  let n = 0;
  try { for (let i = 0; i < localStorage.length; i++) { const k = localStorage.key(i); n += (k.length + (localStorage.getItem(k) || "").length) * 2; } }
  catch { return 0; }
  return n;
};
function zones() {
  let all = [];
  try { all = Intl.supportedValuesOf("timeZone"); } catch { all = []; }
  if (!all.includes("UTC")) all = ["UTC", ...all];
  return all;
}

PAGES.settings = async (main, title) => {
  const syncs = [];  // each control re-reads its preference after any change (import, reset, another tab)
  const off = prefs.onChange(() => syncs.forEach((fn) => fn()));
  state.cleanup.push(off);

  // Binds one control to one preference; a refused value is explained next to it and not kept.
  const bind = (key, el, { read, show, afterSave } = {}) => {
    const err = h("div", { class: "field-error" });  // the notice inside is the alert
    const isBox = el.type === "checkbox";
    const get = read || (() => (isBox ? el.checked : PREF_SPEC[key].type === "number" ? Number(el.value) : el.value));
    const put = show || ((v) => { if (isBox) el.checked = v; else el.value = String(v); });
    put(prefs.get(key));
    syncs.push(() => put(prefs.get(key)));
    el.addEventListener("change", () => {
      err.replaceChildren();
      try { prefs.set(key, get()); if (afterSave) afterSave(); }
      catch (e) { err.append(notice(e.message)); put(prefs.get(key)); }
    });
    return err;
  };

  // GENERAL
  const refresh = input("refreshInterval", { type: "number", min: PREF_SPEC.refreshInterval.min, max: PREF_SPEC.refreshInterval.max, step: 1 });
  const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  // Any IANA name the browser knows may be typed (the list only suggests: it holds each zone's ICU spelling).
  const tz = input("timezone", { list: "tz-names", autocomplete: "off", spellcheck: "false", placeholder: browserZone });
  const tzNames = h("datalist", { id: "tz-names" }, zones().map((z) => h("option", { value: z })));
  const style = select("timestampStyle", [["relative", "Relative (5m ago)"], ["absolute", "Absolute date and time"]]);
  const clock = h("p", { class: "muted", "data-now": "" });
  const showClock = () => { clock.textContent = `Now: ${datetime(Date.now())}`; };
  showClock(); syncs.push(showClock);
  const general = card("General",
    field("Refresh interval (seconds)", refresh, "How often polled views (overview resources, health, metrics) reload."), bind("refreshInterval", refresh),
    field("Time zone", tz, `Empty: this browser's zone (${browserZone}).`), tzNames, bind("timezone", tz, { read: () => tz.value.trim() }),
    field("Timestamps", style), bind("timestampStyle", style), clock);

  // SECURITY
  const serverMinutes = Math.max(1, Math.round(state.idleTimeout / 60));
  const idle = input("idleMinutes", { type: "number", min: 0, max: Math.max(0, serverMinutes - 1), step: 1 });
  const effective = h("p", { class: "muted", "data-idle-effective": "" });
  const showEffective = () => {
    const mine = prefs.get("idleMinutes");
    effective.textContent = mine > 0 && mine * 60 < state.idleTimeout
      ? `This page signs out after ${mine} minutes without a key press or click.`
      : `Signed out after ${serverMinutes} minutes of inactivity (the server's limit).`;
  };
  showEffective(); syncs.push(showEffective);
  const confirmBox = checkbox("confirmDestructive");
  const security = card("Security",
    field("Sign out after inactivity (minutes, 0 = the server's limit)", idle,
      `The server signs idle sessions out after ${serverMinutes} minutes whatever this says; this page can only do it sooner.`),
    bind("idleMinutes", idle, { read: () => {
      const v = Number(idle.value);
      if (v > 0 && v * 60 >= state.idleTimeout) throw new Error(`Must be shorter than the server's limit of ${serverMinutes} minutes (or 0)`);
      return v;
    } }), effective,
    field("Ask for confirmation before deleting, revoking or restoring", confirmBox), bind("confirmDestructive", confirmBox));

  // APPEARANCE
  const theme = select("theme", [["", "System default"], ["light", "Light"], ["dark", "Dark"], ["terminal", "Terminal (green on black)"]]);
  const font = select("fontSize", [["small", "Small"], ["medium", "Medium"], ["large", "Large"], ["x-large", "Extra large"]]);
  const compact = checkbox("compact");
  const appearance = card("Appearance",
    field("Theme", theme), bind("theme", theme, { afterSave: () => toast("Theme saved") }),
    field("Font size", font), bind("fontSize", font),
    field("Compact density", compact), bind("compact", compact));

  // WEBHOOKS
  const keyInput = input("webhookKey", { type: "password", autocomplete: "off", spellcheck: "false" });
  const message = input("webhookMessage", { value: "Test from the Nekzus dashboard" });
  const out = h("pre", { tabindex: "0", "aria-label": "Webhook response", "data-webhook-response": "" }, "No test sent yet.");
  const created = h("div", {});
  const keys = region("Webhook keys", async () => {
    const rows = list(await api("GET", "/api/v1/apikeys"), "keys")
      .filter((k) => !k.revokedAt && (k.scopes || []).some((s) => s === WEBHOOK_SCOPE || s === "write:*"));
    if (!rows.length) return h("p", { class: "muted" }, "No API key with the webhook scope yet.");
    return h("div", {}, h("p", { class: "muted" }, "Keys that may send webhooks (a key is shown only when created: paste it below):"),
      h("ul", {}, rows.map((k) => h("li", {}, `${k.name} (${k.prefix}…)`))));
  });
  const createKey = (e) => guard(async () => {
    const k = await api("POST", "/api/v1/apikeys", { name: `Webhook tester ${datetime(Date.now(), { time: false })}`, scopes: [WEBHOOK_SCOPE] });
    keyInput.value = k.key;
    created.replaceChildren(h("div", { class: "notice ok" }, h("p", {}, `Key “${k.name}” created. Copy it now: it is shown only this once.`),
      h("pre", { "data-api-key": "" }, k.key),
      h("button", { type: "button", class: "btn small", onclick: () => navigator.clipboard && navigator.clipboard.writeText(k.key).then(() => toast("Copied")) }, "Copy key")));
    keys.load();
  }, e.target);
  // Sent with the key alone (no session cookie), exactly as an outside service would call it.
  const send = (path, body) => async (e) => {
    if (!keyInput.value.trim()) { out.textContent = "Enter or create an API key first."; return; }
    const btn = e.target; btn.disabled = true;
    try {
      const res = await fetch(path, { method: "POST", credentials: "omit", body: JSON.stringify(body()),
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-API-Key": keyInput.value.trim() } });
      const text = await res.text();
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch { /* not JSON: shown as is */ }
      out.textContent = `${path} → HTTP ${res.status}\n${shown}`;
    } catch (err) { out.textContent = `${path} failed: ${err.message}`; }
    finally { btn.disabled = false; }
  };
  const webhooks = card("Webhooks",
    h("p", {}, "Outside services announce events with ", h("code", {}, "POST /api/v1/webhooks/activity"), " and ",
      h("code", {}, "POST /api/v1/webhooks/notify"), `, authenticated by an API key with the ${WEBHOOK_SCOPE} scope in the X-API-Key header. `,
      "Every open dashboard shows them as a toast."),
    keys.el,
    h("div", { class: "row" }, h("button", { type: "button", class: "btn", onclick: createKey }, "Create a webhook key")), created,
    field("API key for the test", keyInput), field("Test message", message),
    h("div", { class: "row" },
      h("button", { type: "button", class: "btn primary", onclick: send("/api/v1/webhooks/activity", () => ({ message: message.value || "Test activity", icon: "Bell", details: "Sent by the settings page" })) }, "Send test activity"),
      h("button", { type: "button", class: "btn", onclick: send("/api/v1/webhooks/notify", () => ({ type: "dashboard_test", data: { title: message.value || "Test notification" } })) }, "Send test notify")),
    out);

  // DATA MANAGEMENT
  const file = h("input", { type: "file", name: "importPrefs", accept: "application/json,.json" });
  const dataStatus = h("div", { role: "status" });
  file.addEventListener("change", async () => {
    const f = file.files && file.files[0];
    if (!f) return;
    dataStatus.replaceChildren();
    try {
      let obj;
      try { obj = JSON.parse(await f.text()); } catch { throw new Error(`${f.name} is not a JSON file`); }
      prefs.replace(obj);
      dataStatus.append(h("div", { class: "notice ok" }, `Preferences imported from ${f.name}.`));
    } catch (e) { dataStatus.append(notice(e.message)); }
    finally { file.value = ""; }
  });
  const data = card("Data management",
    h("p", { class: "muted" }, "Preferences are kept in this browser only. Move them to another browser with a file."),
    h("div", { class: "row" },
      h("button", { type: "button", class: "btn", onclick: () => download("nekzus-preferences.json", JSON.stringify(prefs.all(), null, 2) + "\n", "application/json") }, "Export preferences")),
    field("Import preferences from a file", file), dataStatus,
    h("div", { class: "row" },
      h("button", { type: "button", class: "btn danger", onclick: async () => {
        if (await confirmDialog("Reset every preference of this browser to its default?", "Reset")) { prefs.reset(); toast("Preferences reset"); }
      } }, "Reset preferences"),
      h("button", { type: "button", class: "btn danger", onclick: async () => {
        if (!(await confirmDialog("Remove everything the dashboard stored in this browser (preferences, cached layout)? You stay signed in.", "Clear"))) return;
        try {
          for (const k of Object.keys(localStorage)) if (k.startsWith("nekzus.")) localStorage.removeItem(k);
          for (const k of Object.keys(sessionStorage)) if (k.startsWith("nekzus.")) sessionStorage.removeItem(k);
        } catch { /* storage disabled: nothing stored */ }
        prefs.reset(); toast("Local data cleared");
      } }, "Clear local data")));

  // SYSTEM INFORMATION
  const wsStatus = h("dd", { "data-ws-status": "" });
  const storage = h("dd", { "data-storage": "" });
  const showLive = () => { wsStatus.textContent = state.wsOnline ? "connected" : "disconnected"; storage.textContent = bytes(localBytes()); };
  const conn = document.getElementById("conn");
  const watch = new MutationObserver(showLive);
  watch.observe(conn, { attributes: true, childList: true, characterData: true, subtree: true });
  state.cleanup.push(() => watch.disconnect());
  syncs.push(showLive);
  const uiVersion = (document.querySelector('meta[name="nekzus-ui-version"]') || {}).content || "unknown";
  const info = region("System information", async () => {
    const i = await api("GET", "/api/v1/admin/info");
    showLive();
    return h("dl", { class: "kv" },
      h("dt", {}, "Dashboard assets"), h("dd", { "data-ui-version": "" }, uiVersion),
      h("dt", {}, "Server version"), h("dd", { "data-server-version": "" }, i.version),
      h("dt", {}, "Server build"), h("dd", {}, i.buildDate || "–"),
      h("dt", {}, "Nexus id"), h("dd", {}, i.nexusId),
      h("dt", {}, "Capabilities"), h("dd", {}, (i.capabilities || []).join(", ")),
      h("dt", {}, "Live updates (WebSocket)"), wsStatus,
      h("dt", {}, "Local storage used"), storage,
      h("dt", {}, "Signed in as"), h("dd", {}, state.user.username),
      h("dt", {}, "Server idle sign-out"), h("dd", {}, `${serverMinutes} minutes`));
  });

  // NOTIFICATIONS
  const hookToasts = checkbox("webhookToasts");
  const actionToasts = checkbox("actionToasts");
  const notices = card("Notifications",
    h("p", { class: "muted" }, "Errors always pop up; every notice is also kept in the bell's list in the header."),
    field("Pop up webhook activity", hookToasts), bind("webhookToasts", hookToasts),
    field("Pop up confirmations of actions taken on this page", actionToasts), bind("actionToasts", actionToasts));

  // DEVELOPER OPTIONS
  const details = checkbox("showErrorDetails");
  const logWs = checkbox("logWsEvents");
  const developer = card("Developer options",
    field("Show error details (error code and request id) in error messages", details), bind("showErrorDetails", details),
    field("Log live WebSocket events to an on-page panel", logWs), bind("logWsEvents", logWs));

  section(main, title, h("div", { class: "settings" }, general, security, appearance, notices, webhooks, data,
    card("System information", info.el), developer));
  await Promise.all([info.load(), keys.load()]);
};
