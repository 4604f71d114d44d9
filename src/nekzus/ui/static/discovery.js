// Discovery page: proposal cards (source, confidence, port choice), approve/dismiss, bulk, rediscover.
import {
  api, badge, checkbox, field, guard, h, list, onEvent, region, section, serverPager, toast, PAGES,
} from "{{app.js}}";

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
