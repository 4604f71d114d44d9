// Operations pages of the dashboard: certificates, backups and federation. A page module: it registers its
// pages with the shared module (imported by the exact URL the shell loads, so both share one instance).
import {
  PAGES, h, api, toast, onEvent, field, input, checkbox, notice, guard, ago, bytes, badge, stateKind, list,
  downloadFrom, dataTable, dialog, confirmDialog, formDialog, region, section, datetime, prefs,
} from "{{app.js}}";

const kv = (pairs) => h("dl", { class: "kv" }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== "")
  .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v instanceof Node ? v : String(v))]));
const when = (t) => (!t ? "–" : prefs.get("timestampStyle") === "absolute" ? datetime(t) : `${datetime(t)} (${ago(t)})`);
const enc = encodeURIComponent;

// A PEM text area that a chosen file fills in (the file never leaves the browser except in the request).
function pemInput(name, label, placeholder) {
  const area = h("textarea", { name, rows: 6, spellcheck: "false", placeholder });
  const file = h("input", { type: "file", name: name + "File", accept: ".pem,.crt,.cer,.key,text/plain" });
  file.addEventListener("change", async () => { if (file.files && file.files[0]) area.value = await file.files[0].text(); });
  return { area, nodes: [field(label, area), field(`${label}: read from a file`, file)] };
}

// ---------- certificates ----------
// The first certificate on a plain-HTTP Nekzus switches its port to TLS in place: plain requests stop
// working, so the page moves itself to https (the session cookie goes along).
function followTls(r, done) {
  if (!r || !r.tls_upgraded) { toast(done); return; }
  if (location.protocol !== "http:") { toast("Certificate installed; TLS is now on"); return; }
  const url = "https://" + location.host + location.pathname + location.hash;
  toast(`TLS is now on: continuing at ${url} (install the local CA so browsers trust it)`);
  setTimeout(() => location.replace(url), 1500);
}

PAGES.certificates = async (main, title) => {
  const table = region("Certificates", async () => {
    const rows = list(await api("GET", "/api/v1/certificates"), "certificates");
    return dataTable({ label: "Certificates", rows: rows.map((c) => ({ ...c, __id: c.domain })), empty: "No certificates yet: generate one from the local CA or upload your own.", columns: [
      { key: "domain", title: "Domain" }, { key: "issuer", title: "Issuer" },
      { key: "not_after", title: "Expires", render: (c) => c.not_after ? datetime(c.not_after, { time: false }) : "–" },
      { key: "expires_in_days", title: "Days left", render: (c) => badge(String(c.expires_in_days), c.expires_in_days < 0 ? "bad" : c.expires_in_days <= 30 ? "warn" : "ok") },
      { key: "sans", title: "Names", value: (c) => (c.sans || []).join(", ") },
      { key: "actions", title: "Actions", sort: false, class: "actions", render: (c) => h("div", { class: "row" },
        h("button", { type: "button", class: "btn small", "aria-label": `Details of ${c.domain}`, onclick: (e) => guard(() => details(c.domain), e.target) }, "Details"),
        h("button", { type: "button", class: "btn small", "aria-label": `Renew ${c.domain}`, onclick: (e) => renew(c.domain, e.target) }, "Renew"),
        h("button", { type: "button", class: "btn small", "aria-label": `Replace ${c.domain}`, onclick: () => upload(c.domain) }, "Replace"),
        h("button", { type: "button", class: "btn small danger", "aria-label": `Delete ${c.domain}`, onclick: async (e) => {
          if (await confirmDialog(`Delete the certificate for ${c.domain}? Devices pinned to it will have to pair again.`, "Delete")) {
            await guard(async () => { await api("DELETE", `/api/v1/certificates/${enc(c.domain)}`); toast(`Certificate for ${c.domain} deleted`); table.load(); }, e.target);
          }
        } }, "Delete")) }] });
  });
  const details = async (domain) => {
    const c = (await api("GET", `/api/v1/certificates/${enc(domain)}`)).certificate || {};
    dialog(`Certificate ${domain}`, kv([["Domain", c.domain], ["Issuer", c.issuer], ["Valid from", when(c.not_before)],
      ["Valid until", when(c.not_after)], ["Days left", c.expires_in_days], ["Names", (c.sans || []).join(", ")],
      ["Fingerprint", h("code", {}, c.fingerprint || "")], ["Public key pin (SPKI)", h("code", {}, c.spki || "")]]));
  };
  const renew = async (domain, btn) => {
    if (!(await confirmDialog(`Renew the certificate for ${domain}? It is re-issued with the same names and a new key; paired devices are told to pin the new one.`, "Renew"))) return;
    await guard(async () => {
      const r = await api("POST", "/api/v1/certificates/renew", { domain });
      const until = r.certificate && r.certificate.not_after ? datetime(r.certificate.not_after, { time: false }) : "";
      toast(`Certificate for ${domain} renewed${until ? ", valid until " + until : ""}`);
      table.load();
    }, btn);
  };
  const upload = (domain) => {
    const name = input("domain", { value: domain || "", required: true, readonly: !!domain, placeholder: "nas.example.org" });
    const cert = pemInput("certificate", "Certificate chain (PEM)", "-----BEGIN CERTIFICATE-----");
    const key = pemInput("privateKey", "Private key (PEM)", "-----BEGIN PRIVATE KEY-----");
    formDialog(domain ? `Replace the certificate for ${domain}` : "Upload a certificate",
      [h("p", {}, "Paste or choose the certificate chain and its private key. Nekzus checks that they belong together before using them."),
        field("Domain", name), cert.nodes, key.nodes], domain ? "Replace" : "Upload", async () => {
        const r = await api("POST", "/api/v1/certificates/replace", { domain: name.value.trim(), certificate: cert.area.value, privateKey: key.area.value });
        followTls(r, `Certificate for ${name.value.trim()} installed`);
        table.load();
      });
  };
  const generate = async () => {
    let suggestions = [];
    try { suggestions = (await api("GET", "/api/v1/certificates/suggest")).suggestions || []; } catch { suggestions = []; }
    const domains = h("textarea", { name: "domains", rows: 5 }, suggestions.join("\n"));
    formDialog("Generate a certificate", [h("p", {}, "Issued by the local CA of this Nekzus. The first name is the certificate's domain."),
      field("Domains (one per line)", domains)], "Generate", async () => {
      const r = await api("POST", "/api/v1/certificates/generate", { domains: domains.value.split(/\s+/).filter(Boolean), provider: "self-signed" });
      followTls(r, `Certificate for ${r.certificate ? r.certificate.domain : "the domains"} generated`);
      table.load();
    });
  };
  section(main, title,
    h("p", { class: "muted" }, "Install the local CA on phones and browsers once, and every certificate it issues is trusted."),
    h("div", { class: "row" },
      h("button", { type: "button", class: "btn primary", onclick: (e) => guard(generate, e.target) }, "Generate certificate"),
      h("button", { type: "button", class: "btn", onclick: () => upload("") }, "Upload certificate"),
      h("button", { type: "button", class: "btn", onclick: (e) => guard(() => downloadFrom("/api/v1/certificates/ca.pem", "nekzus-ca.crt"), e.target) }, "Download local CA")),
    table.el);
  await table.load();
};

// ---------- backups ----------
const RESTORE_GROUPS = [["restoreApps", "Apps"], ["restoreRoutes", "Routes"], ["restoreDevices", "Devices and their notifications"],
  ["restoreApiKeys", "API keys"], ["restoreUsers", "Users"], ["restoreCertificates", "Certificates"], ["restoreSettings", "Settings"],
  ["restoreOther", "Everything else (scripts, schedules, deployments…)"]];

PAGES.backups = async (main, title) => {
  const scheduler = region("Backup schedule", async () => {
    const s = await api("GET", "/api/v1/backups/scheduler/status");
    if (!s.enabled) {
      return h("div", { class: "card", "data-scheduler": "off" }, h("h3", {}, "Scheduled backups are off"),
        h("p", { class: "muted" }, "Set backup.enabled: true in the config to take a backup at start-up and then at every interval."));
    }
    const st = s.status || {};
    return h("div", { class: "card", "data-scheduler": "on" }, h("h3", {}, st.running ? "Scheduled backups are on" : "Scheduled backups are waiting to start"),
      kv([["Every", st.interval], ["Keep the newest", `${st.retention} scheduled backups`], ["Last backup", when(st.last_backup_time)],
        ["Next run", when(st.next_backup_time)], ["Backups stored", st.backup_count],
        ["Set in", st.source === "dashboard" ? "the dashboard (overrides the config)" : "the config file"]]),
      st.last_error ? notice(`The last scheduled backup failed: ${st.last_error}`) : null,
      h("div", { class: "row" },
        h("button", { type: "button", class: "btn", onclick: () => editSchedule(st) }, "Edit schedule"),
        h("button", { type: "button", class: "btn", onclick: (e) => guard(async () => {
          const b = await api("POST", "/api/v1/backups/scheduler/trigger", {});
          toast(`Backup ${b.id} taken`); reload();
        }, e.target) }, "Run scheduled backup now")));
  });
  const editSchedule = (st) => {
    const every = input("interval", { value: st.interval || "24h", required: true, placeholder: "24h", autocomplete: "off" });
    const keep = input("retention", { type: "number", min: 1, step: 1, value: st.retention || 7, required: true });
    formDialog("Backup schedule", [field("Interval (e.g. 30m, 6h, 24h)", every), field("Scheduled backups to keep", keep)], "Save", async () => {
      await api("PUT", "/api/v1/backups/scheduler", { interval: every.value.trim(), retention: Number(keep.value) });
      toast("Backup schedule saved"); scheduler.load();
    });
  };
  const table = region("Backups", async () => {
    const rows = list(await api("GET", "/api/v1/backups"), "backups");
    return dataTable({ label: "Backups", rows: rows.map((b) => ({ ...b, __id: b.id })), empty: "No backups yet.", columns: [
      { key: "id", title: "Id" }, { key: "description", title: "Description" },
      { key: "trigger", title: "Taken", render: (b) => badge(b.trigger || "manual", "idle") },
      { key: "timestamp", title: "Created", render: (b) => ago(b.timestamp) },
      { key: "size", title: "Size", value: (b) => b.size ?? "", render: (b) => bytes(b.size) },
      { key: "actions", title: "Actions", sort: false, class: "actions", render: (b) => h("div", { class: "row" },
        h("button", { type: "button", class: "btn small", "aria-label": `Details of backup ${b.id}`, onclick: (e) => guard(() => details(b.id), e.target) }, "Details"),
        h("button", { type: "button", class: "btn small", "aria-label": `Download backup ${b.id}`, onclick: (e) => guard(() => downloadFrom(`/api/v1/backups/${enc(b.id)}/download`, `${b.id}.tar.gz`), e.target) }, "Download"),
        h("button", { type: "button", class: "btn small", "aria-label": `Restore backup ${b.id}`, onclick: () => restore(b) }, "Restore"),
        h("button", { type: "button", class: "btn small danger", "aria-label": `Delete backup ${b.id}`, onclick: async (e) => {
          if (await confirmDialog(`Delete backup ${b.id}?`, "Delete")) await guard(async () => { await api("DELETE", `/api/v1/backups/${enc(b.id)}`); toast("Backup deleted"); reload(); }, e.target);
        } }, "Delete")) }] });
  });
  const details = async (id) => {
    const b = await api("GET", `/api/v1/backups/${enc(id)}`);
    const contents = Object.entries(b.contents || {});
    dialog(`Backup ${id}`, h("div", {}, kv([["Description", b.description], ["Created", when(b.timestamp)], ["Taken", b.trigger],
      ["Nekzus version", b.version], ["Size", bytes(b.size)], ["Secrets", b.secrets && b.secrets.included ? "included (sealed with the passphrase)" : "not included"]]),
      contents.length ? dataTable({ label: `Contents of ${id}`, searchable: false, rows: contents.map(([k, v]) => ({ table: k, rows: typeof v === "object" && v ? (v.rows ?? JSON.stringify(v)) : v })),
        columns: [{ key: "table", title: "Table" }, { key: "rows", title: "Rows" }] }) : null));
  };
  const restore = (b) => {
    const opts = RESTORE_GROUPS.map(([k, l]) => [k, l, checkbox(k, true)]);
    const secrets = checkbox("restoreSecrets", false);
    const sealed = b.secrets && b.secrets.included;
    const result = h("div", { "aria-live": "polite" });
    formDialog(`Restore ${b.id}`, [h("p", {}, "Choose what to restore. The current data of the chosen kinds is replaced by the backup's; the audit log is never rolled back."),
      h("fieldset", {}, h("legend", {}, "Restore"), opts.map(([, l, el]) => field(l, el)),
        sealed ? field("Secret files (keys and tokens kept outside the database)", secrets) : null), result], "Restore", async () => {
      const body = Object.fromEntries(opts.map(([k, , el]) => [k, el.checked]));
      if (sealed) body.restoreSecrets = secrets.checked;
      const r = await api("POST", `/api/v1/backups/${enc(b.id)}/restore`, body);
      const restored = Array.isArray(r.restored) ? r.restored : Object.keys(r.restored || {});
      result.replaceChildren(h("div", { class: "notice ok", "data-restored": b.id }, h("strong", {}, r.message || "Backup restored"),
        restored.length ? h("div", { class: "muted" }, `Tables restored: ${restored.join(", ")}`) : null));
      toast(r.message || "Backup restored");
      reload();
      return false; // keep the dialog open on its result
    });
  };
  const reload = () => { table.load(); scheduler.load(); };
  const desc = input("description", { placeholder: "Before upgrading", maxlength: 500 });
  const form = h("form", { class: "row" }, field("Description", desc), h("button", { type: "submit", class: "btn primary" }, "Create backup"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    guard(async () => { const b = await api("POST", "/api/v1/backups", { description: desc.value }); toast(`Backup ${b.id} created`); desc.value = ""; reload(); }, form.querySelector("button"));
  });
  section(main, title, h("h2", {}, "Schedule"), scheduler.el, h("h2", {}, "Backups"), form, table.el);
  await Promise.all([scheduler.load(), table.load()]);
  // A scheduled backup (or one taken elsewhere) finishes as a job: refresh the list when it does.
  onEvent((m) => { if (/^job\.(succeeded|failed)$/.test(m.type) && m.data && String(m.data.kind || "").startsWith("backup")) reload(); });
};

// ---------- federation ----------
PAGES.federation = async (main, title) => {
  let enabled = true;
  const status = region("Federation", async () => {
    const s = await api("GET", "/api/v1/federation/status");
    enabled = s.enabled !== false;
    if (!enabled) {
      return h("div", { class: "card" }, h("h3", {}, "Federation disabled"),
        h("p", { class: "muted" }, "Share apps with other Nekzus instances by setting federation.enabled, a cluster_secret and bootstrap_peers in the config."));
    }
    const by = s.peers_by_status || {};
    const svc = s.services || {};
    return h("div", { class: "card" }, h("h3", {}, s.running ? "Federation active" : "Federation stopped"),
      kv([["This instance", `${s.local_peer_name || ""} (${s.local_peer_id || "–"})`], ["Federation port", s.gossip_port],
        ["Peers", `${s.peer_count ?? 0} (${by.online || 0} online, ${by.offline || 0} offline, ${by.unreachable || 0} unreachable)`],
        ["Shared services", `${svc.local ?? 0} from here, ${svc.remote ?? 0} from peers`]]));
  });
  const peers = region("Federation peers", async () => {
    if (!enabled) return h("p", { class: "muted" }, "No peers while federation is off.");
    const rows = list(await api("GET", "/api/v1/federation/peers"), "peers");
    return dataTable({ label: "Peers", rows: rows.map((p) => ({ ...p, __id: p.id })), empty: "No peers yet: they appear when a bootstrap peer or mDNS finds one.", columns: [
      { key: "name", title: "Name", value: (p) => p.name || p.id }, { key: "address", title: "Address", value: (p) => p.address || p.gossip_addr || "" },
      { key: "status", title: "Status", render: (p) => badge(p.status, stateKind(p.status)) },
      { key: "last_seen", title: "Last seen", render: (p) => ago(p.last_seen) },
      { key: "actions", title: "Actions", sort: false, class: "actions", render: (p) => h("div", { class: "row" },
        h("button", { type: "button", class: "btn small", "aria-label": `Details of peer ${p.name || p.id}`, onclick: (e) => guard(() => peerDetails(p.id), e.target) }, "Details"),
        h("button", { type: "button", class: "btn small danger", "aria-label": `Remove peer ${p.name || p.id}`, onclick: async (e) => {
          if (await confirmDialog(`Remove peer ${p.name || p.id}? It can rejoin only by authenticating again.`, "Remove")) {
            await guard(async () => { await api("DELETE", `/api/v1/federation/peers/${enc(p.id)}`); toast("Peer removed"); reload(); }, e.target);
          }
        } }, "Remove")) }] });
  });
  const peerDetails = async (id) => {
    const p = await api("GET", `/api/v1/federation/peers/${enc(id)}`);
    dialog(`Peer ${p.name || p.id}`, kv([["Id", p.id], ["Name", p.name], ["API address", p.address], ["Federation address", p.gossip_addr],
      ["Status", p.status], ["Last seen", when(p.last_seen)], ["Known since", when(p.created_at)],
      ...Object.entries(p.metadata || {}).map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : v])]));
  };
  const shared = region("Services from peers", async () => {
    if (!enabled) return h("p", { class: "muted" }, "–");
    const apps = list(await api("GET", "/api/v1/apps"), "apps").filter((a) => a.origin);
    return dataTable({ label: "Services from peers", searchable: false, rows: apps.map((a) => ({ ...a, __id: a.id })), empty: "No services shared by peers.", columns: [
      { key: "name", title: "App", value: (a) => a.name || a.id }, { key: "peer", title: "From peer", value: (a) => a.origin.peerName || a.origin.peerId },
      { key: "health", title: "Health", render: (a) => badge(a.healthStatus || "unknown", stateKind(a.healthStatus)) }] });
  });
  const reload = () => status.load().then(() => Promise.all([peers.load(), shared.load()]));
  section(main, title, h("div", { class: "row" }, h("button", { type: "button", class: "btn", onclick: (e) => guard(async () => {
    const r = await api("POST", "/api/v1/federation/sync");
    toast(`Sync completed with ${r.succeeded ?? 0} of ${r.peers ?? 0} online peers`);
    reload();
  }, e.target) }, "Sync now")), status.el, h("h2", {}, "Peers"), peers.el, h("h2", {}, "Services from peers"), shared.el);
  await reload();
  onEvent((m) => { if (/^peer_|^federation/.test(m.type)) reload(); });
};
