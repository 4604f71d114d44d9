// API keys page of the dashboard: create (the key is shown once, with a copy button), revoke, and delete
// permanently. Revoked keys stay listed (greyed, struck through) until deleted. A page module: it registers
// with the shared module (imported by the exact URL the shell loads, so both share one instance).
import {
  PAGES, h, api, toast, field, input, checkbox, guard, ago, badge, list, dataTable, dialog, confirmDialog, formDialog,
  region, section,
} from "{{app.js}}";

const enc = encodeURIComponent;
const expired = (k) => !k.revokedAt && k.expiresAt && Date.parse(k.expiresAt) <= Date.now();
const statusOf = (k) => (k.revokedAt ? "revoked" : expired(k) ? "expired" : "active");
const STATUS_KIND = { active: "ok", revoked: "bad", expired: "warn" };

// Copy to the clipboard; where the Clipboard API is missing (plain http off localhost is not a secure
// context) the text is selected and copied the old way, and left selected if even that fails.
async function copyText(text, node) {
  try {
    if (navigator.clipboard && window.isSecureContext) { await navigator.clipboard.writeText(text); return true; }
  } catch { /* fall through */ }
  const range = document.createRange();
  range.selectNodeContents(node);
  const sel = window.getSelection();
  sel.removeAllRanges(); sel.addRange(range);
  try { return document.execCommand("copy"); } catch { return false; }
}

function showOnce(k) {
  const pre = h("pre", { "data-api-key": "", tabindex: "0", "aria-label": `API key ${k.name}` }, k.key);
  const status = h("p", { class: "muted", role: "status" });
  dialog("Your new API key", h("div", {},
    h("div", { class: "notice" }, h("strong", {}, "Copy it now: "), "it is shown only this once. Nekzus keeps only a hash of it."),
    pre,
    h("div", { class: "row" }, h("button", { type: "button", class: "btn primary", onclick: async () => {
      status.textContent = (await copyText(k.key, pre)) ? "Copied to the clipboard." : "Select the key above and copy it by hand.";
    } }, "Copy key")), status,
    h("p", { class: "muted" }, "Send it as the X-API-Key header (or Authorization: Bearer).")));
}

PAGES.apikeys = async (main, title) => {
  const showRevoked = checkbox("showRevoked", true);
  const table = region("API keys", async () => {
    const all = list(await api("GET", "/api/v1/apikeys"), "keys");
    // Usable keys first, newest first within each group.
    const rows = all.filter((k) => showRevoked.checked || !k.revokedAt).sort((a, b) =>
      (!!a.revokedAt - !!b.revokedAt) || String(b.createdAt || "").localeCompare(String(a.createdAt || "")));
    return dataTable({ label: "API keys", rows: rows.map((k) => ({ ...k, __id: k.id })), empty: all.length ? "Only revoked keys: tick “Show revoked keys”." : "No API keys.", columns: [
      { key: "name", title: "Name", render: (k) => h("span", { class: "key-name", "data-revoked": k.revokedAt ? "" : null }, k.name) },
      { key: "prefix", title: "Prefix", render: (k) => h("code", {}, k.prefix || "") },
      { key: "scopes", title: "Scopes", value: (k) => (k.scopes || []).join(", ") },
      { key: "createdAt", title: "Created", render: (k) => ago(k.createdAt) },
      { key: "expiresAt", title: "Expires", render: (k) => (k.expiresAt ? new Date(k.expiresAt).toLocaleDateString() : "never") },
      { key: "lastUsedAt", title: "Last used", render: (k) => ago(k.lastUsedAt) },
      { key: "status", title: "Status", value: statusOf, render: (k) => h("span", { "data-key-status": statusOf(k) },
        badge(statusOf(k), STATUS_KIND[statusOf(k)]), k.revokedAt ? h("div", { class: "muted" }, `revoked ${ago(k.revokedAt)}`) : null) },
      { key: "actions", title: "Actions", sort: false, class: "actions", render: (k) => h("div", { class: "row" },
        k.revokedAt ? null : h("button", { type: "button", class: "btn small danger", "aria-label": `Revoke key ${k.name}`, onclick: async (e) => {
          if (await confirmDialog(`Revoke API key ${k.name}? Clients using it are refused from now on; it stays listed as revoked.`, "Revoke")) {
            await guard(async () => { await api("DELETE", `/api/v1/apikeys/${enc(k.id)}`); toast(`API key ${k.name} revoked`); table.load(); }, e.target);
          }
        } }, "Revoke"),
        h("button", { type: "button", class: "btn small danger", "aria-label": `Delete key ${k.name} permanently`, onclick: async (e) => {
          if (await confirmDialog(`Delete API key ${k.name} permanently? It disappears from this list and cannot be restored${k.revokedAt ? "" : "; clients using it are refused"}.`, "Delete permanently")) {
            await guard(async () => { await api("DELETE", `/api/v1/apikeys/${enc(k.id)}?permanent=true`); toast(`API key ${k.name} deleted`); table.load(); }, e.target);
          }
        } }, "Delete")) }] });
  });
  showRevoked.addEventListener("change", () => table.load());
  const create = () => {
    const name = input("name", { required: true, maxlength: 255, autocomplete: "off" });
    const scopes = input("scopes", { value: "read:catalog, read:events" });
    const expires = input("expiresAt", { type: "date" });
    formDialog("New API key", [field("Name", name), field("Scopes (comma separated)", scopes), field("Expires (optional)", expires)], "Create", async () => {
      const body = { name: name.value, scopes: scopes.value.split(",").map((s) => s.trim()).filter(Boolean) };
      if (expires.value) body.expiresAt = new Date(expires.value).toISOString();
      const k = await api("POST", "/api/v1/apikeys", body);
      table.load();
      showOnce(k);
    });
  };
  section(main, title, h("div", { class: "row" }, h("button", { type: "button", class: "btn primary", onclick: create }, "New API key"),
    field("Show revoked keys", showRevoked)), table.el);
  await table.load();
};
