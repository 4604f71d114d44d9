// Toolbox page of the dashboard: the catalog of service templates (grouped by category, filtered by category
// and text, paged), the deploy form built from a template's variables, and the deployments with their live
// progress. A page module: it registers with the shared module (imported by the exact URL the shell loads, so
// both share one instance).
import {
  PAGES, h, api, toast, onEvent, field, input, checkbox, badge, pick, list, dataTable, formDialog, region, section,
  serverPager, nextId, ago,
} from "{{app.js}}";

const PER_PAGE = 24;  // catalog cards per page
const STATUSES = ["pending", "deploying", "deployed", "failed", "stopped"];
const STATUS_KIND = { deployed: "ok", failed: "bad", pending: "warn", deploying: "warn", stopped: "idle" };
// Links a template may name (its labels), in the order shown; only http(s) addresses become links.
const LINKS = [["documentation", "Documentation"], ["repository_url", "Source"], ["website", "Website"]];
const enc = encodeURIComponent;

const categoryOf = (s) => String(s.category || "other");
const tagsOf = (s) => (Array.isArray(s.tags) ? s.tags : String(s.tags || "").split(",")).map((t) => String(t).trim()).filter(Boolean);
const haystack = (s) => [s.id, s.name, s.description, categoryOf(s), ...tagsOf(s)].join(" ").toLowerCase();
// Two letters stand for the template's icon: icon names refer to an icon set this page does not ship.
const monogram = (name) => String(name || "?").split(/[\s_-]+/).filter(Boolean).slice(0, 2).map((w) => w[0]).join("").toUpperCase();
const webUrl = (u) => typeof u === "string" && /^https?:\/\//i.test(u.trim());

// A form field whose hint screen readers read with it.
function hinted(label, el, hint) {
  const box = field(label, el, hint);
  if (hint && box.lastChild && box.lastChild !== el) {
    const id = nextId("hint");
    box.lastChild.id = id;
    el.setAttribute("aria-describedby", id);
  }
  return box;
}

// The template's variables as a list whichever shape the API used (a list, or an object by name).
function variablesOf(t) {
  const vars = t.variables || t.envVars || t.env_vars || [];
  return Array.isArray(vars) ? vars.filter((v) => v && v.name)
    : Object.entries(vars).map(([k, v]) => ({ name: k, ...(v && typeof v === "object" ? v : { default: v }) }));
}
// One control per variable, typed from the template: secrets hidden, numbers numeric, choices a list.
function variableControl(v) {
  const label = (v.label || v.name) + (v.required ? " (required)" : "");
  const hint = [v.description, v.label && v.label !== v.name ? `Variable ${v.name}` : ""].filter(Boolean).join(" · ");
  const type = String(v.type || "text").toLowerCase();
  let el;
  if (Array.isArray(v.options) && v.options.length) {
    el = h("select", { name: v.name, required: !!v.required }, v.required ? null : h("option", { value: "" }, "(not set)"),
      v.options.map((o) => h("option", { value: String(o), selected: String(o) === String(v.default ?? "") }, String(o))));
  } else if (type === "boolean" || type === "bool") {
    el = checkbox(v.name, ["true", "1", "yes"].includes(String(v.default ?? "").toLowerCase()));
    return { name: v.name, el, node: field(label, el), value: () => (el.checked ? "true" : "false") };
  } else {
    const secret = type === "password" || v.secret;
    el = input(v.name, { type: secret ? "password" : type === "number" ? "number" : "text", value: v.default ?? "",
      required: !!v.required, autocomplete: secret ? "new-password" : "off",
      min: type === "number" ? 0 : null, max: type === "number" && /port/i.test(v.name) ? 65535 : null });
  }
  return { name: v.name, el, node: hinted(label, el, hint), value: () => el.value };
}

PAGES.toolbox = async (main, title) => {
  let all = [], enabled = true, offset = 0;
  const category = h("select", { name: "category" }, h("option", { value: "" }, "All categories"));
  const search = input("q", { type: "search", placeholder: "Name, description or tag", autocomplete: "off" });
  const summary = h("p", { class: "muted", role: "status", "data-catalog-summary": "" });
  const box = h("div", { "data-catalog": "" });

  const card = (s) => {
    const hid = nextId("tb");
    const tags = tagsOf(s);
    const links = LINKS.filter(([k]) => webUrl(s[k])).map(([k, label]) =>
      h("a", { href: s[k].trim(), target: "_blank", rel: "noopener noreferrer" }, label, h("span", { class: "vh" }, ` of ${s.name}`)));
    return h("article", { class: "card tb-card", "data-service": s.id, "aria-labelledby": hid },
      h("div", { class: "tb-head" }, h("span", { class: "tb-icon", "aria-hidden": "true", "data-icon": s.icon || "" }, monogram(s.name)),
        h("h4", { id: hid }, s.name)),
      h("div", { class: "row" }, badge(categoryOf(s)), s.difficulty ? badge(s.difficulty) : null,
        s.default_port ? h("span", { class: "muted" }, `port ${s.default_port}`) : null),
      h("p", { class: "muted" }, s.description || "No description."),
      tags.length ? h("ul", { class: "tags", "aria-label": `Tags of ${s.name}` }, tags.map((t) => h("li", {}, t))) : null,
      links.length ? h("div", { class: "row tb-links" }, links) : null,
      h("button", { type: "button", class: "btn primary small", "aria-label": `Deploy ${s.name}`, onclick: () => deployDialog(s) }, "Deploy"));
  };
  // Filter, page, then group the page's cards by category (the catalog is sorted by category, so groups
  // continue across pages in order).
  const draw = () => {
    const q = search.value.trim().toLowerCase(), cat = category.value;
    const hits = all.filter((s) => (!cat || categoryOf(s) === cat) && (!q || haystack(s).includes(q)));
    if (offset >= hits.length) offset = 0;
    const perCategory = new Map();
    for (const s of hits) perCategory.set(categoryOf(s), (perCategory.get(categoryOf(s)) || 0) + 1);
    const groups = new Map();
    for (const s of hits.slice(offset, offset + PER_PAGE)) {
      if (!groups.has(categoryOf(s))) groups.set(categoryOf(s), []);
      groups.get(categoryOf(s)).push(s);
    }
    summary.textContent = all.length ? `${hits.length} of ${all.length} services` : "";
    const empty = !enabled ? "The toolbox is switched off on this Nekzus (toolbox.enabled in the configuration)."
      : !all.length ? "The catalog is empty." : !hits.length ? "No service matches the filter." : "";
    box.replaceChildren(empty ? h("p", { class: "muted" }, empty) : "",
      ...[...groups].map(([c, items]) => {
        const gid = nextId("cat");
        return h("section", { class: "tb-group", "data-category": c, "aria-labelledby": gid },
          h("h3", { id: gid }, c, " ", h("span", { class: "muted" }, `(${perCategory.get(c)})`)),
          h("div", { class: "grid" }, items.map(card)));
      }),
      hits.length > PER_PAGE ? serverPager("Catalog", offset, PER_PAGE, hits.length, (o) => { offset = o; draw(); box.scrollIntoView({ block: "start" }); }) : "");
  };
  const catalog = region("The toolbox", async () => {
    const d = await api("GET", "/api/v1/toolbox/services");
    enabled = !(d && d.enabled === false);
    all = list(d, "services").slice().sort((a, b) => categoryOf(a).localeCompare(categoryOf(b)) || String(a.name).localeCompare(String(b.name)));
    const chosen = category.value;
    const names = [...new Set(all.map(categoryOf))].sort();
    category.replaceChildren(h("option", { value: "" }, `All categories (${all.length})`),
      ...names.map((c) => h("option", { value: c, selected: c === chosen }, `${c} (${all.filter((s) => categoryOf(s) === c).length})`)));
    draw();
    return box;
  });
  category.addEventListener("change", () => { offset = 0; draw(); });
  search.addEventListener("input", () => { offset = 0; draw(); });

  const statusFilter = h("select", { name: "status" }, h("option", { value: "" }, "Any status"), STATUSES.map((s) => h("option", { value: s }, s)));
  const nameOf = (d) => pick(d, "serviceName", "service_name", "id");
  const deployments = region("Deployments", async () => {
    const q = statusFilter.value ? `?status=${enc(statusFilter.value)}` : "";
    const rows = list(await api("GET", "/api/v1/toolbox/deployments" + q), "deployments");
    return dataTable({ label: "Deployments", rows: rows.map((d) => ({ ...d, __id: d.id })), pageSize: 10, empty: "No deployments yet.", columns: [
      { key: "serviceName", title: "Name", value: nameOf },
      { key: "serviceId", title: "Template", value: (d) => pick(d, "serviceId", "service_template_id", "service_id") },
      { key: "status", title: "Status", render: (d) => h("div", { "data-status": d.status }, badge(d.status, STATUS_KIND[d.status] || "idle"),
        pick(d, "error_message", "errorMessage") ? h("div", { class: "muted" }, pick(d, "error_message", "errorMessage")) : null) },
      { key: "progress", title: "Progress", value: (d) => Number(pick(d, "progress")) || 0, render: (d) => {
        const pct = Math.max(0, Math.min(100, Number(pick(d, "progress")) || 0));
        return h("div", { "data-deployment": d.id }, h("div", { class: "muted" }, `${pick(d, "phase") || ""} ${pct}%`),
          h("div", { class: "bar", role: "progressbar", "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100, "aria-label": `Progress of ${nameOf(d)}` }, h("span", { width: pct + "%" })));
      } },
      { key: "port", title: "Port", value: (d) => pick(d, "custom_port", "customPort") },
      { key: "created", title: "Created", value: (d) => pick(d, "deployed_at", "created_at", "createdAt"), render: (d) => ago(pick(d, "deployed_at", "created_at", "createdAt")) },
      { key: "actions", title: "Actions", sort: false, render: (d) => h("button", { type: "button", class: "btn small danger", "aria-label": `Remove ${nameOf(d)}`, onclick: () => {
        const vols = checkbox("removeVolumes", false);
        formDialog(`Remove ${nameOf(d)}?`, [h("p", {}, "Its containers are stopped and removed."), field("Also remove its volumes (its data)", vols)], "Remove", async () => {
          await api("DELETE", `/api/v1/toolbox/deployments/${enc(d.id)}?removeVolumes=${vols.checked}`); toast(`Deployment ${nameOf(d)} removed`); deployments.load();
        });
      } }, "Remove") }] });
  });
  statusFilter.addEventListener("change", () => deployments.load());

  const deployDialog = async (s) => {
    let t = s;
    try { t = await api("GET", `/api/v1/toolbox/services/${enc(s.id)}`); t = { ...s, ...(t.service || t) }; } catch { /* the list entry will do */ }
    const vars = variablesOf(t).map(variableControl);
    const name = input("serviceName", { value: s.id, required: true, maxlength: 255, autocomplete: "off" });
    const port = input("customPort", { type: "number", min: 1, max: 65535, placeholder: t.default_port ? String(t.default_port) : "" });
    const image = input("customImage", { placeholder: t.image || "", autocomplete: "off" });
    const auto = checkbox("autoStart", true);
    const required = vars.some((v) => v.el.required);
    formDialog(`Deploy ${s.name}`, [
      t.description ? h("p", { class: "muted" }, t.description) : null,
      hinted("Service name", name, "Names the deployment (its Compose project and route)."),
      vars.length ? h("fieldset", { class: "vars", "data-variables": "" }, h("legend", {}, `Settings of ${s.name}`),
        required ? h("p", { class: "muted" }, "Fields marked (required) must be filled in.") : null, vars.map((v) => v.node))
        : h("p", { class: "muted" }, "This template has no settings."),
      hinted("Custom port", port, t.default_port ? `Host port; ${t.default_port} when left empty.` : "Host port; the template's own when left empty."),
      hinted("Custom image", image, t.image ? `Replaces ${t.image} when set.` : "Replaces the template's image when set."),
      field("Start after deploying", auto)],
    "Deploy", async () => {
      const body = { serviceId: s.id, serviceName: name.value.trim(), envVars: Object.fromEntries(vars.map((v) => [v.name, v.value()])), autoStart: auto.checked };
      if (port.value) body.customPort = Number(port.value);
      if (image.value.trim()) body.customImage = image.value.trim();
      const r = await api("POST", "/api/v1/toolbox/deploy", body);
      toast(r.message || "Deployment started"); deployments.load();
    });
  };

  section(main, title,
    h("h2", {}, "Catalog"), h("div", { class: "filters" }, field("Category", category), field("Search the catalog", search)), summary, catalog.el,
    h("h2", {}, "Deployments"), h("div", { class: "filters" }, field("Deployment status", statusFilter)), deployments.el);
  await Promise.all([catalog.load(), deployments.load()]);
  let pendingReload = 0;  // at most one reload per 300 ms
  const reload = () => { if (!pendingReload) pendingReload = setTimeout(() => { pendingReload = 0; deployments.load(); }, 300); };
  onEvent((m) => {
    if (!/toolbox|deploy/.test(m.type)) return;
    const d = m.data || {};
    const cell = m.type === "toolbox.deploy.progress" && d.deploymentId
      ? main.querySelector(`[data-deployment="${CSS.escape(d.deploymentId)}"]`) : null;
    if (!cell) { reload(); return; }
    // Progress moves the bar in place; the row is reloaded when the deployment ends.
    const pct = Math.max(0, Math.min(100, Number(d.percent) || 0));
    cell.querySelector(".muted").textContent = `${d.phase || ""} ${pct}%`;
    const bar = cell.querySelector("[role=progressbar]");
    bar.setAttribute("aria-valuenow", String(pct));
    bar.firstChild.style.width = pct + "%";
  });
};
