// API keys page of the dashboard: create (the key is shown once), revoke. A page module: it registers with
// the shared module (imported by the exact URL the shell loads, so both share one instance).
import {
  PAGES, h, api, toast, field, input, guard, ago, badge, list, dataTable, dialog, confirmDialog, formDialog,
  region, section,
} from "{{app.js}}";

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
