// Discovery page: proposal cards (source, confidence, port choice), approve/dismiss, bulk, rediscover, and
// the discovery settings: the auto-approval threshold (kept and applied by the server) and whether
// dismissing asks first (a preference of this browser).
import {
  api, badge, checkbox, confirmDialog, field, guard, h, input, list, notice, onEvent, prefs, region, section,
  serverPager, toast, PAGES,
} from "{{app.js}}";

// Dismissing asks for confirmation unless this browser was told not to (a preference, on by default; the
// general "ask for confirmation" switch in Settings turns every confirmation off, this one included).
const confirmRejections = () => prefs.get("confirmRejections");

// The auto-approval threshold: read and changed through GET/PUT /api/v1/discovery/settings (admins only).
function settingsPanel() {
  const threshold = input("autoApproveConfidence", { type: "number", min: 0, max: 100, step: 1, inputmode: "numeric" });
  const source = h("div", { class: "muted", "data-threshold-source": "" });
  const err = h("div", {});
  const show = (s) => {
    threshold.value = String(s.autoApproveConfidence);
    const cfg = `config file: ${s.configAutoApproveConfidence ? s.configAutoApproveConfidence + "%" : "off"}`;
    source.textContent = s.source === "runtime"
      ? `Set here (wins over the ${cfg}).` : `From the ${cfg}.`;
    reset.hidden = s.source !== "runtime";
  };
  const save = (value, btn) => guard(async () => {
    err.replaceChildren();
    try { show(await api("PUT", "/api/v1/discovery/settings", { autoApproveConfidence: value })); }
    catch (e) { err.replaceChildren(notice(e.message)); return; }
    toast(value === null ? "Auto-approval follows the config file again"
      : value ? `New proposals at ${value}% confidence or more are approved automatically` : "Auto-approval is off");
  }, btn);
  const form = h("form", { class: "row", "aria-label": "Auto-approval", novalidate: true },
    field("Auto-approve at confidence (%)", threshold, "0 turns it off. Applies to new proposals; they are approved like a manual approval."),
    h("button", { type: "submit", class: "btn primary" }, "Save"));
  const reset = h("button", { type: "button", class: "btn", hidden: true, onclick: (e) => save(null, e.target) }, "Use the config file value");
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const raw = threshold.value.trim();
    const n = Number(raw);
    if (raw === "" || !Number.isInteger(n) || n < 0 || n > 100) { err.replaceChildren(notice("Enter a whole number from 0 to 100")); threshold.focus(); return; }
    save(n, form.querySelector("button[type=submit]"));
  });
  const confirm = checkbox("confirmRejections", confirmRejections());
  confirm.addEventListener("change", () => { prefs.set("confirmRejections", confirm.checked); toast(confirm.checked ? "Dismissing will ask first" : "Dismissing will not ask"); });
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const load = async () => {
    try { const s = await api("GET", "/api/v1/discovery/settings"); body.replaceChildren(form, source, reset, err); show(s); }
    catch (e) { body.replaceChildren(notice(e.status === 403 ? "Only administrators can see or change auto-approval." : e.message)); }
  };
  const panel = h("section", { class: "card", "aria-labelledby": "discovery-settings-title", "data-discovery-settings": "" },
    h("h2", { id: "discovery-settings-title" }, "Settings"), body,
    field("Ask before dismissing (this browser)", confirm));
  return { panel, load };
}

PAGES.discovery = async (main, title) => {
  const selected = new Set();
  let offset = 0; const PER = 24;  // cards per page
  const cards = region("Discovery", async () => {
    const all = list(await api("GET", "/api/v1/discovery/proposals"), "proposals");
    for (const id of [...selected]) if (!all.some((p) => p.id === id)) selected.delete(id);
    if (!all.length) return h("p", { class: "muted" }, "No pending proposals. Label a container with nekzus.enable=true or press Rediscover.");
    if (offset >= all.length) offset = Math.max(0, (Math.ceil(all.length / PER) - 1) * PER);
    const items = all.slice(offset, offset + PER);
    return h("div", {}, h("div", { class: "grid" }, items.map((p) => {
      const ports = (p.availablePorts || []);
      // A proposal with several ports lets the user pick the one the route targets.
      const portSel = h("select", { name: "port", disabled: ports.length < 2 }, ports.length ? ports.map((pt) => h("option", { value: pt.port, selected: pt.port === p.detectedPort }, `${pt.port} (${pt.scheme}${pt.label ? ", " + pt.label : ""})`))
        : h("option", { value: p.detectedPort }, String(p.detectedPort)));
      const sel = checkbox("select", selected.has(p.id));
      sel.addEventListener("change", () => { if (sel.checked) selected.add(p.id); else selected.delete(p.id); });
      const pct = Math.round((Number(p.confidence) || 0) * 100);
      return h("article", { class: "card", "data-proposal": p.id, "aria-label": `Proposal ${p.suggestedApp.name}` },
        h("h3", {}, p.suggestedApp.name), h("div", { class: "row" }, badge(p.source, "idle"), h("span", { class: "muted" }, `${p.detectedHost}:${p.detectedPort}`)),
        h("div", { class: "muted", "data-confidence": pct }, `Confidence ${pct}%`), h("div", { class: "bar", role: "presentation" }, h("span", { width: pct + "%" })),
        (p.securityNotes || []).map((n) => h("div", { class: "muted" }, "⚠ " + n)),
        field(`Port for ${p.suggestedApp.name}`, portSel), field(`Select ${p.suggestedApp.name}`, sel),
        h("div", { class: "row" },
          h("button", { type: "button", class: "btn primary small", onclick: (e) => approve(p.id, Number(portSel.value), e.target) }, "Approve"),
          h("button", { type: "button", class: "btn small", onclick: (e) => dismissOne(p, e.target) }, "Dismiss")));
    })), all.length > PER ? serverPager("Proposals", offset, PER, all.length, (o) => { offset = o; cards.load(); }) : null);
  });
  const approve = (id, port, btn) => guard(async () => {
    const r = await api("POST", `/api/v1/discovery/proposals/${encodeURIComponent(id)}/approve`, port ? { port } : {});
    toast(`Approved: ${r.route ? r.route.pathBase : id}`); selected.delete(id); cards.load();
  }, btn);
  const dismiss = (id, btn) => guard(async () => { await api("POST", `/api/v1/discovery/proposals/${encodeURIComponent(id)}/dismiss`); toast("Dismissed"); selected.delete(id); cards.load(); }, btn);
  const dismissOne = async (p, btn) => {
    if (confirmRejections() && !(await confirmDialog(`Dismiss ${p.suggestedApp.name}? It stays hidden until you press Rediscover.`, "Dismiss"))) { btn.focus(); return; }
    await dismiss(p.id, btn);
  };
  const bulk = async (kind, btn) => {
    const ids = [...selected];
    if (!ids.length) { toast("Select proposals first"); return; }
    if (kind === "dismiss" && confirmRejections() && !(await confirmDialog(`Dismiss ${ids.length} selected proposal(s)? They stay hidden until you press Rediscover.`, "Dismiss all"))) { btn.focus(); return; }
    for (const id of ids) { kind === "approve" ? await approve(id, 0) : await dismiss(id); }
  };
  const settings = settingsPanel();
  section(main, title, settings.panel, h("div", { class: "row" },
    h("button", { type: "button", class: "btn", onclick: (e) => guard(async () => { const r = await api("POST", "/api/v1/discovery/rediscover"); toast(r.message || "Rediscovery triggered"); cards.load(); }, e.target) }, "Rediscover"),
    h("button", { type: "button", class: "btn", onclick: (e) => bulk("approve", e.target) }, "Approve selected"),
    h("button", { type: "button", class: "btn", onclick: (e) => bulk("dismiss", e.target) }, "Dismiss selected")), cards.el);
  await Promise.all([cards.load(), settings.load()]);
  onEvent((m) => {
    if (/discovery|proposal|app_registered/.test(m.type)) cards.load();
    if (m.type === "discovery_settings") settings.load();
  });
};
