// Toolbox page of the dashboard: the catalog of service templates, the deploy form built from a template's
// variables, and the deployments with their live progress. A page module: it registers with the shared module
// (imported by the exact URL the shell loads, so both share one instance).
import {
  PAGES, h, api, toast, onEvent, field, input, checkbox, badge, stateKind, pick, list, dataTable, formDialog,
  region, section,
} from "{{app.js}}";

PAGES.toolbox = async (main, title) => {
  const catalog = region("The toolbox", async () => {
    const items = list(await api("GET", "/api/v1/toolbox/services"), "services");
    if (!items.length) return h("p", { class: "muted" }, "The catalog is empty.");
    return h("div", { class: "grid" }, items.map((s) => h("article", { class: "card" }, h("h3", {}, s.name),
      h("div", { class: "row" }, badge(s.category || "other"), s.difficulty ? badge(s.difficulty) : null),
      h("p", { class: "muted" }, s.description || ""),
      h("button", { type: "button", class: "btn primary small", "aria-label": `Deploy ${s.name}`, onclick: () => deployDialog(s) }, "Deploy"))));
  });
  const deployments = region("Deployments", async () => {
    const rows = list(await api("GET", "/api/v1/toolbox/deployments"), "deployments");
    return dataTable({ label: "Deployments", rows, searchable: false, empty: "No deployments yet.", columns: [
      { key: "serviceName", title: "Name", value: (d) => pick(d, "serviceName", "service_name", "id") },
      { key: "serviceId", title: "Template", value: (d) => pick(d, "serviceId", "service_template_id", "service_id") },
      { key: "status", title: "Status", render: (d) => h("span", { "data-status": d.status }, badge(d.status, stateKind(d.status))) },
      { key: "progress", title: "Progress", value: (d) => Number(pick(d, "progress")) || 0, render: (d) => {
        const pct = Math.max(0, Math.min(100, Number(pick(d, "progress")) || 0));
        return h("div", { "data-deployment": d.id }, h("div", { class: "muted" }, `${pick(d, "phase") || ""} ${pct}%`),
          h("div", { class: "bar", role: "progressbar", "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100, "aria-label": `Progress of ${pick(d, "serviceName", "service_name", "id")}` }, h("span", { width: pct + "%" })));
      } },
      { key: "actions", title: "Actions", sort: false, render: (d) => h("button", { type: "button", class: "btn small danger", "aria-label": `Remove ${pick(d, "serviceName", "service_name", "id")}`, onclick: () => {
        const vols = checkbox("removeVolumes", false);
        formDialog(`Remove ${pick(d, "serviceName", "service_name", "id")}?`, [h("p", {}, "Its containers are stopped and removed."), field("Also remove its volumes (its data)", vols)], "Remove", async () => {
          await api("DELETE", `/api/v1/toolbox/deployments/${encodeURIComponent(d.id)}?removeVolumes=${vols.checked}`); toast("Deployment removed"); deployments.load();
        });
      } }, "Remove") }] });
  });
  const deployDialog = async (s) => {
    let detail = s;
    try { detail = await api("GET", `/api/v1/toolbox/services/${encodeURIComponent(s.id)}`); detail = detail.service || detail; } catch { /* the list entry will do */ }
    const vars = detail.variables || detail.envVars || detail.env_vars || [];
    const labels = {};
    const name = input("serviceName", { value: s.id, required: true });
    const port = input("customPort", { type: "number", min: 1, max: 65535 });
    const auto = checkbox("autoStart", true);
    const varInputs = (Array.isArray(vars) ? vars : Object.entries(vars).map(([k, v]) => ({ name: k, ...(typeof v === "object" ? v : { default: v }) })))
      .map((v) => { labels[v.name] = (v.label || v.name) + (v.required ? " (required)" : "");
        return [v.name, input(v.name, { type: v.type === "password" || v.secret ? "password" : v.type === "number" ? "number" : "text", value: v.default ?? "", required: !!v.required })]; });
    formDialog(`Deploy ${s.name}`, [field("Service name", name), varInputs.map(([k, el]) => field(labels[k], el)), field("Custom port", port), field("Start after deploying", auto)],
      "Deploy", async () => {
        const envVars = Object.fromEntries(varInputs.map(([k, el]) => [k, el.value]));
        const body = { serviceId: s.id, serviceName: name.value, envVars, autoStart: auto.checked };
        if (port.value) body.customPort = Number(port.value);
        const r = await api("POST", "/api/v1/toolbox/deploy", body);
        toast(r.message || "Deployment started"); deployments.load();
      });
  };
  section(main, title, catalog.el, h("h2", {}, "Deployments"), deployments.el);
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
