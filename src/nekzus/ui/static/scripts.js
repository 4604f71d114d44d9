// Scripts page: register, edit (metadata and parameters), run and dry-run scripts; executions paged by the
// API; workflows built from ordered steps with an on-failure rule; cron schedules for a script or a
// workflow, created and edited. Everything goes through /api/v1/scripts, /executions, /workflows, /schedules.
import {
  ago, api, badge, checkbox, confirmDialog, dataTable, dialog, field, formDialog, guard, h, input,
  notice, pick, section, serverPager, stateKind, tabs, toast, PAGES, errorBox, list, nextId, state,
} from "{{app.js}}";

const PAGE = 50;  // executions per page (the API allows up to 100)
const csv = (s) => s.split(",").map((x) => x.trim()).filter(Boolean);
// Parameters as "NAME=value" lines (what a schedule or a workflow step passes to the script).
const toLines = (o) => Object.entries(o || {}).map(([k, v]) => `${k}=${v}`).join("\n");
function fromLines(text) {
  const out = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    const at = line.indexOf("=");
    if (at < 1) throw new Error(`"${line}" is not NAME=value`);
    out[line.slice(0, at).trim()] = line.slice(at + 1);
  }
  return out;
}

// The run form: one field per declared parameter; output arrives live (execution_* events), and one read
// of the execution catches a run that finished before its id was known.
function runDialog(s, dry) {
  const params = (Array.isArray(s.parameters) ? s.parameters : []).map((p) => {
    const opts = Array.isArray(p.options) ? p.options : [];
    const el = opts.length
      ? h("select", { name: p.name, required: !!p.required }, opts.map((o) => h("option", { value: o, selected: String(p.default ?? "") === String(o) }, o)))
      : p.type === "boolean" ? checkbox(p.name, String(p.default) === "true")
        : input(p.name, { type: p.type === "number" ? "number" : "text", value: p.default ?? "", required: !!p.required });
    return [p.name, el, (p.label || p.name) + (p.required ? " (required)" : "")];
  });
  const out = h("pre", { "aria-label": "Script output", "aria-live": "polite", tabindex: "0" });
  let id = "";
  const showRun = (e) => {
    const exit = pick(e, "exitCode", "exit_code");
    out.textContent = `${e.status || ""}${exit !== "" ? " (exit " + exit + ")" : ""}\n${pick(e, "output") || pick(e, "errorMessage", "error")}`;
  };
  const listener = (m) => { const e = m.data || {}; if (id && /^execution_/.test(m.type || "") && e.executionId === id) showRun(e); };
  state.listeners.add(listener);
  const d = formDialog(`${dry ? "Dry run" : "Run"} ${s.name}`, [params.map(([, el, label]) => field(label, el)), out], dry ? "Dry run" : "Run", async () => {
    const parameters = Object.fromEntries(params.map(([k, el]) => [k, el.type === "checkbox" ? String(el.checked) : el.value]));
    id = ""; out.textContent = "pending";
    const r = await api("POST", `/api/v1/scripts/${encodeURIComponent(s.id)}/execute?async=true`, { parameters, dryRun: dry });
    id = pick(r, "executionId", "id");
    const now = await api("GET", `/api/v1/executions/${encodeURIComponent(id)}`);
    if (!["pending", "running"].includes(now.status) || out.textContent === "pending") showRun(now);
    return false;
  });
  d.addEventListener("close", () => state.listeners.delete(listener));
}

// Rows of declared parameters (name, label, type, required, default, choices), added and removed in place.
function paramEditor(initial) {
  const list = h("div", { class: "stack", "data-param-rows": "" });
  let n = 0;
  const add = (p = {}) => {
    const i = ++n;
    const f = {
      name: input("name", { value: p.name || "", required: true, pattern: "[A-Za-z_][A-Za-z0-9_]*" }),
      label: input("label", { value: p.label || "" }),
      type: h("select", { name: "type" }, ["string", "number", "boolean"].map((t) => h("option", { value: t, selected: (p.type || "string") === t }, t))),
      required: checkbox("required", p.required),
      def: input("default", { value: p.default ?? "" }),
      options: input("options", { value: (p.options || []).join(", ") }),
    };
    const row = h("fieldset", { class: "card param" }, h("legend", {}, `Parameter ${i}`),
      h("div", { class: "row" }, field(`Parameter ${i} name`, f.name), field(`Parameter ${i} label`, f.label), field(`Parameter ${i} type`, f.type)),
      h("div", { class: "row" }, field(`Parameter ${i} default`, f.def), field(`Parameter ${i} choices (comma separated)`, f.options), field(`Parameter ${i} required`, f.required)),
      h("button", { type: "button", class: "btn small danger", onclick: () => { row.remove(); } }, `Remove parameter ${i}`));
    row.collect = () => {
      const out = { name: f.name.value.trim(), type: f.type.value, required: f.required.checked };
      if (f.label.value.trim()) out.label = f.label.value.trim();
      if (f.def.value !== "") out.default = f.type.value === "number" ? Number(f.def.value) : f.def.value;
      if (f.options.value.trim()) out.options = csv(f.options.value);
      return out;
    };
    list.append(row);
  };
  (initial || []).forEach(add);
  return {
    node: h("div", {}, h("h3", {}, "Parameters"), list,
      h("button", { type: "button", class: "btn small", onclick: () => add() }, "Add parameter")),
    collect: () => [...list.children].map((r) => r.collect()),
  };
}

function editScript(s, reload) {
  const f = {
    name: input("name", { value: s.name || "", required: true }),
    description: h("textarea", { name: "description" }, s.description || ""),
    category: input("category", { value: s.category || "" }),
    timeout: input("timeoutSeconds", { type: "number", min: 1, value: pick(s, "timeoutSeconds", "timeout_seconds") || 300 }),
    scopes: input("allowedScopes", { value: (pick(s, "allowedScopes", "allowed_scopes") || []).join(", ") }),
    dryRun: input("dryRunCommand", { value: pick(s, "dryRunCommand", "dry_run_command") || "" }),
  };
  const params = paramEditor(s.parameters);
  formDialog(`Edit ${s.name}`, [h("p", { class: "muted" }, `File: ${pick(s, "scriptPath", "script_path")}`),
    field("Name", f.name), field("Description", f.description), field("Category", f.category), field("Timeout (s)", f.timeout),
    field("Scopes a caller needs to run it (comma separated)", f.scopes), field("Dry-run command (optional)", f.dryRun), params.node], "Save", async () => {
    await api("PUT", `/api/v1/scripts/${encodeURIComponent(s.id)}`, {
      name: f.name.value.trim(), description: f.description.value, category: f.category.value.trim(),
      timeoutSeconds: Number(f.timeout.value), allowedScopes: csv(f.scopes.value), dryRunCommand: f.dryRun.value.trim(),
      parameters: params.collect() });
    toast(`Saved ${f.name.value.trim()}`); reload();
  });
}

function registerForm(avail, reload) {
  const name = input("name", { required: true }); const path = input("scriptPath", { required: true, list: "available-scripts" });
  const cat = input("category"); const timeout = input("timeoutSeconds", { type: "number", min: 1, value: 300 });
  const params = h("textarea", { name: "parameters", placeholder: '[{"name": "WHO", "default": "world", "required": true}]' });
  const dl = h("datalist", { id: "available-scripts" }, avail.map((a) => h("option", { value: a.path || a.scriptPath || a.name || a })));
  const err = h("div", {});
  const form = h("form", { "aria-label": "Register a script" }, field("Name", name), field("Script file", path), dl, field("Category", cat), field("Timeout (s)", timeout),
    field("Parameters (JSON list, optional)", params, "Each: name, label, type (string, number, boolean), required, default, options. They can be edited later."),
    err, h("button", { type: "submit", class: "btn primary" }, "Register"));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); err.replaceChildren(); guard(async () => {
    let parameters = [];
    if (params.value.trim()) {
      try { parameters = JSON.parse(params.value); } catch { err.replaceChildren(notice("Parameters must be a JSON list")); return; }
    }
    try {
      await api("POST", "/api/v1/scripts", { name: name.value, scriptPath: path.value, category: cat.value, timeoutSeconds: Number(timeout.value), parameters });
    } catch (e) { err.replaceChildren(notice(e.message)); return; }
    toast("Script registered"); reload(); }, form.querySelector("button[type=submit]")); });
  return form;
}

// Ordered steps: a script each, its own parameters and what happens when it fails.
function stepEditor(scripts, initial) {
  const list = h("ol", { class: "steps", "data-steps": "" });
  const renumber = () => [...list.children].forEach((li, i) => li.renumber(i + 1));
  const add = (st = {}) => {
    const script = h("select", { name: "scriptId", required: true }, h("option", { value: "" }, "Choose a script"),
      scripts.map((s) => h("option", { value: s.id, selected: pick(st, "scriptId", "script_id") === s.id }, s.name)));
    const onFailure = h("select", { name: "onFailure" }, [["stop", "Stop the workflow"], ["continue", "Continue with the next step"]]
      .map(([v, l]) => h("option", { value: v, selected: (pick(st, "onFailure", "on_failure") || "stop") === v }, l)));
    const params = h("textarea", { name: "parameters", rows: 2, placeholder: "NAME=value, one a line" }, toLines(st.parameters));
    const labels = [h("label", {}), h("label", {}), h("label", {})];
    const wire = (lab, el) => { el.id = nextId("step"); lab.setAttribute("for", el.id); return h("div", {}, lab, el); };
    const up = h("button", { type: "button", class: "btn small", onclick: () => { if (li.previousElementSibling) { list.insertBefore(li, li.previousElementSibling); renumber(); up.focus(); } } }, "Up");
    const down = h("button", { type: "button", class: "btn small", onclick: () => { if (li.nextElementSibling) { list.insertBefore(li.nextElementSibling, li); renumber(); down.focus(); } } }, "Down");
    const remove = h("button", { type: "button", class: "btn small danger", onclick: () => { li.remove(); renumber(); } }, "Remove");
    const li = h("li", { class: "card step" }, h("div", { class: "row" }, wire(labels[0], script), wire(labels[1], onFailure)),
      wire(labels[2], params), h("div", { class: "row" }, up, down, remove));
    li.renumber = (i) => {
      labels[0].textContent = `Step ${i} script`; labels[1].textContent = `Step ${i} on failure`; labels[2].textContent = `Step ${i} parameters`;
      up.setAttribute("aria-label", `Move step ${i} up`); down.setAttribute("aria-label", `Move step ${i} down`); remove.setAttribute("aria-label", `Remove step ${i}`);
    };
    li.collect = () => ({ scriptId: script.value, onFailure: onFailure.value, parameters: fromLines(params.value) });
    list.append(li); renumber();
  };
  (initial && initial.length ? initial : [{}]).forEach(add);
  return {
    node: h("div", {}, h("h3", {}, "Steps (run in this order)"), list, h("button", { type: "button", class: "btn small", onclick: () => add() }, "Add step")),
    collect: () => [...list.children].map((li) => li.collect()),
  };
}

function workflowDialog(w, scripts, reload) {
  const name = input("name", { value: w ? w.name : "", required: true });
  const desc = h("textarea", { name: "description" }, w ? w.description || "" : "");
  const steps = stepEditor(scripts, w ? w.steps : []);
  formDialog(w ? `Edit workflow ${w.name}` : "New workflow", [field("Workflow name", name), field("Description", desc), steps.node], w ? "Save" : "Create workflow", async () => {
    const body = { name: name.value.trim(), description: desc.value, steps: steps.collect() };
    if (w) await api("PUT", `/api/v1/workflows/${encodeURIComponent(w.id)}`, body);
    else await api("POST", "/api/v1/workflows", body);
    toast(w ? "Workflow saved" : "Workflow created"); reload();
  });
}

// A workflow run followed live: every step's state (pending → running → succeeded | failed, or skipped)
// and its output, from the run's workflow.* events. Events that arrive before the run's id is known are
// kept and replayed; one read of the run record catches up with a run the events were missed for.
const STEP_KIND = { pending: "idle", running: "warn", succeeded: "ok", failed: "bad", skipped: "idle" };
function workflowRunDialog(w, names) {
  const steps = (w.steps || []).map((st, i) => ({ index: i, scriptId: pick(st, "scriptId", "script_id"),
    name: names.get(pick(st, "scriptId", "script_id")) || pick(st, "scriptId", "script_id"),
    onFailure: pick(st, "onFailure", "on_failure") || "stop", status: "pending", output: "", exitCode: null, error: "" }));
  const overall = h("p", { role: "status", "data-run-status": "starting" }, "Starting…");
  const list = h("ol", { class: "steps", "data-run-steps": "", "aria-label": `Steps of ${w.name}` });
  const draw = () => list.replaceChildren(...steps.map((st) => h("li", { class: "card step", "data-step": st.index, "data-status": st.status },
    h("div", { class: "row" }, h("strong", {}, `Step ${st.index + 1}: ${st.name}`), badge(st.status, STEP_KIND[st.status] || "idle"),
      st.exitCode !== null && st.exitCode !== undefined ? h("span", { class: "muted" }, `exit ${st.exitCode}`) : null,
      h("span", { class: "muted" }, st.onFailure === "continue" ? "continues on failure" : "stops on failure")),
    st.error ? h("div", { class: "muted" }, st.error) : null,
    st.output ? h("pre", { tabindex: "0", "aria-label": `Output of step ${st.index + 1}` }, st.output) : null)));
  const finish = (status) => {
    overall.textContent = `Workflow ${status}.`;
    overall.setAttribute("data-run-status", status);
  };
  let runId = "", ended = false;
  const pendingEvents = [];
  const apply = (m) => {
    const d = m.data || {};
    if (m.type === "workflow.started") { overall.textContent = "Running…"; overall.setAttribute("data-run-status", "running"); return; }
    if (m.type === "workflow.finished") { ended = true; finish(d.status); return; }
    const st = steps[d.index];
    if (!st) return;
    st.status = d.status;
    if (d.output !== undefined) st.output = d.output;
    if (d.exitCode !== undefined) st.exitCode = d.exitCode;
    if (d.error !== undefined) st.error = d.error || "";
    draw();
  };
  const listener = (m) => {
    if (!/^workflow\./.test(m.type || "")) return;
    const d = m.data || {};
    if (!runId) { if (d.workflowId === w.id) pendingEvents.push(m); return; }
    if (d.workflowExecutionId === runId) apply(m);
  };
  state.listeners.add(listener);
  const again = h("button", { type: "button", class: "btn primary", onclick: (e) => guard(start, e.target) }, "Run again");
  const d = dialog(`Run of ${w.name}`, h("div", { "data-workflow-run": w.id }, overall, list, h("div", { class: "row" }, again)));
  d.addEventListener("close", () => state.listeners.delete(listener));
  // Catch up from the run record (no live connection, or events missed): outputs from the executions.
  const catchUp = async (pollUrl) => {
    const rec = await api("GET", pollUrl);
    if (ended || ["pending", "running"].includes(rec.status)) return;
    for (const [i, r] of (rec.steps || []).entries()) {
      const st = steps[i]; if (!st) continue;
      st.status = r.status === "completed" ? "succeeded" : "failed";
      st.exitCode = r.exitCode; st.error = r.error || "";
      if (r.executionId) { try { st.output = (await api("GET", `/api/v1/executions/${encodeURIComponent(r.executionId)}`)).output || ""; } catch { /* kept without */ } }
    }
    for (const st of steps.slice((rec.steps || []).length)) st.status = "skipped";
    draw(); ended = true; finish(rec.status);
  };
  async function start() {
    for (const st of steps) Object.assign(st, { status: "pending", output: "", exitCode: null, error: "" });
    runId = ""; ended = false; pendingEvents.length = 0; draw();
    overall.textContent = "Starting…"; overall.setAttribute("data-run-status", "starting");
    const r = await api("POST", `/api/v1/workflows/${encodeURIComponent(w.id)}/execute?async=true`, {});
    runId = r.executionId;
    for (const m of pendingEvents.splice(0)) if ((m.data || {}).workflowExecutionId === runId) apply(m);
    if (!state.wsOnline) overall.textContent = "Running (live updates are offline: showing the result when it ends)…";
    const poll = r.pollUrl || `/api/v1/workflows/${encodeURIComponent(w.id)}/executions/${encodeURIComponent(runId)}`;
    await catchUp(poll);
    // Without a live connection, look again now and then until the run ends (bounded: 10 minutes).
    for (let i = 0; i < 300 && !ended && !state.wsOnline && d.open; i++) { await new Promise((ok) => setTimeout(ok, 2000)); await catchUp(poll); }
  }
  draw();
  guard(start, again);
}

function scheduleDialog(s, scripts, workflows, reload) {
  const isWf = !!(s && pick(s, "workflowId", "workflow_id"));
  const kind = h("select", { name: "kind" }, h("option", { value: "script", selected: !isWf }, "Script"), h("option", { value: "workflow", selected: isWf }, "Workflow"));
  const target = h("select", { name: "target", required: true });
  const fill = () => {
    const items = kind.value === "workflow" ? workflows : scripts;
    const current = s ? pick(s, kind.value === "workflow" ? "workflowId" : "scriptId", kind.value === "workflow" ? "workflow_id" : "script_id") : "";
    target.replaceChildren(h("option", { value: "" }, `Choose a ${kind.value}`), ...items.map((x) => h("option", { value: x.id, selected: x.id === current }, x.name)));
  };
  kind.addEventListener("change", fill); fill();
  const cron = input("cronExpression", { value: s ? pick(s, "cronExpression", "cron_expression") : "", required: true, placeholder: "0 2 * * *" });
  const params = h("textarea", { name: "parameters", placeholder: "NAME=value, one a line" }, s ? toLines(s.parameters) : "");
  const enabled = checkbox("enabled", s ? s.enabled : true);
  if (s) { kind.disabled = true; target.disabled = true; }  // what runs is fixed once scheduled
  formDialog(s ? "Edit schedule" : "New schedule", [field("Runs a", kind), field("Script or workflow", target),
    field("Cron expression (minute hour day month weekday)", cron, "e.g. 0 2 * * * for 02:00 every day"),
    field("Parameters", params), field("Enabled", enabled)], s ? "Save" : "Create schedule", async () => {
    const body = { cronExpression: cron.value.trim(), parameters: fromLines(params.value), enabled: enabled.checked };
    if (s) await api("PUT", `/api/v1/schedules/${encodeURIComponent(s.id)}`, body);
    else {
      if (!target.value) throw new Error(`Choose a ${kind.value}`);
      body[kind.value === "workflow" ? "workflowId" : "scriptId"] = target.value;
      await api("POST", "/api/v1/schedules", body);
    }
    toast(s ? "Schedule saved" : "Schedule created"); reload();
  });
}

PAGES.scripts = async (main, title) => {
  section(main, title);
  const names = new Map();
  const loadScripts = async () => {
    const rows = list(await api("GET", "/api/v1/scripts"), "scripts");
    for (const s of rows) names.set(s.id, s.name);
    return rows;
  };
  const loadWorkflows = async () => list(await api("GET", "/api/v1/workflows"), "workflows");
  let strip = null;
  const again = () => strip.show(strip.current);
  const defs = [
    ["Scripts", async (p) => {
      const rows = await loadScripts();
      let avail = [];
      try { avail = list(await api("GET", "/api/v1/scripts/available"), "scripts"); } catch { avail = []; }
      p.replaceChildren(dataTable({ label: "Scripts", rows: rows.map((s) => ({ ...s, __id: s.id })), empty: "No scripts registered.", columns: [
        { key: "name", title: "Name" }, { key: "category", title: "Category" }, { key: "scriptPath", title: "File", value: (s) => pick(s, "scriptPath", "script_path") },
        { key: "parameters", title: "Parameters", value: (s) => (s.parameters || []).map((x) => x.name).join(", ") },
        { key: "actions", title: "Actions", sort: false, class: "actions", render: (s) => h("div", { class: "row" },
          h("button", { type: "button", class: "btn small primary", "aria-label": `Run ${s.name}`, onclick: () => runDialog(s, false) }, "Run"),
          h("button", { type: "button", class: "btn small", "aria-label": `Dry run ${s.name}`, onclick: () => runDialog(s, true) }, "Dry run"),
          h("button", { type: "button", class: "btn small", "aria-label": `Edit ${s.name}`, onclick: () => editScript(s, again) }, "Edit"),
          h("button", { type: "button", class: "btn small danger", "aria-label": `Delete ${s.name}`, onclick: async (e) => {
            if (await confirmDialog(`Delete script ${s.name} and its executions?`, "Delete")) await guard(async () => { await api("DELETE", `/api/v1/scripts/${encodeURIComponent(s.id)}`); toast("Deleted"); again(); }, e.target);
          } }, "Delete")) }] }),
      h("h2", {}, "Register a script"), registerForm(avail, again));
    }],
    ["Executions", async (p) => {
      await loadScripts();
      let offset = 0;
      const status = h("select", { name: "status" }, ["", "pending", "running", "completed", "failed", "timeout", "cancelled"].map((s) => h("option", { value: s }, s || "Any status")));
      const script = h("select", { name: "scriptId" }, h("option", { value: "" }, "Any script"), [...names].map(([id, n]) => h("option", { value: id }, n)));
      const out = h("div", { "aria-live": "polite" });
      const load = async () => {
        const q = new URLSearchParams({ limit: PAGE, offset });
        if (status.value) q.set("status", status.value);
        if (script.value) q.set("scriptId", script.value);
        try {
          const d = await api("GET", "/api/v1/executions?" + q);
          const rows = list(d, "executions");
          out.replaceChildren(dataTable({ label: "Executions", rows: rows.map((e) => ({ ...e, __id: e.id })), searchable: false, pageSize: PAGE, empty: "No executions.", columns: [
            { key: "scriptId", title: "Script", value: (e) => names.get(e.scriptId) || e.scriptId || "" }, { key: "status", title: "Status", render: (e) => badge(e.status, stateKind(e.status)) },
            { key: "isDryRun", title: "Dry run", value: (e) => (e.isDryRun ? "yes" : "") },
            { key: "exitCode", title: "Exit", value: (e) => pick(e, "exitCode", "exit_code") }, { key: "triggeredBy", title: "By" },
            { key: "createdAt", title: "When", render: (e) => ago(pick(e, "createdAt", "created_at")) },
            { key: "output", title: "Output", sort: false, render: (e) => h("button", { type: "button", class: "btn small", "aria-label": `Output of ${e.id}`, onclick: () => dialog(`Output of ${e.id}`, h("pre", { tabindex: "0" }, e.output || e.errorMessage || "(no output)")) }, "Show") }] }),
          serverPager("Executions", offset, PAGE, d.total ?? rows.length, (o) => { offset = o; load(); }));
        } catch (e) { out.replaceChildren(errorBox(e, "Executions")); }
      };
      const form = h("form", { class: "row", "aria-label": "Filter executions" }, field("Script", script), field("Status", status), h("button", { type: "submit", class: "btn" }, "Filter"));
      form.addEventListener("submit", (e) => { e.preventDefault(); offset = 0; load(); });
      p.replaceChildren(form, out);
      await load();
    }],
    ["Workflows", async (p) => {
      const [scripts, rows] = await Promise.all([loadScripts(), loadWorkflows()]);
      const runs = (w) => guard(async () => {
        const d = await api("GET", `/api/v1/workflows/${encodeURIComponent(w.id)}/executions`);
        dialog(`Runs of ${w.name}`, dataTable({ label: `Runs of ${w.name}`, searchable: false, rows: list(d, "executions"), empty: "Not run yet.", columns: [
          { key: "status", title: "Status", render: (r) => badge(r.status, stateKind(r.status)) },
          { key: "steps", title: "Steps", value: (r) => (r.steps || []).map((s, i) => `${i + 1}: ${names.get(s.scriptId) || s.scriptId || ""} ${s.status || ""}`).join("; ") },
          { key: "error", title: "Error", value: (r) => r.error || "" }, { key: "createdAt", title: "When", render: (r) => ago(r.createdAt) }] }));
      });
      p.replaceChildren(h("div", { class: "row" }, h("button", { type: "button", class: "btn primary", disabled: !scripts.length, onclick: () => workflowDialog(null, scripts, again) }, "New workflow"),
        scripts.length ? null : h("span", { class: "muted" }, "Register a script first.")),
      dataTable({ label: "Workflows", rows: rows.map((w) => ({ ...w, __id: w.id })), empty: "No workflows.", columns: [
        { key: "name", title: "Name" },
        { key: "steps", title: "Steps", value: (w) => (w.steps || []).map((s, i) => `${i + 1}. ${names.get(s.scriptId) || s.scriptId}${s.onFailure === "continue" ? " (continue on failure)" : ""}`).join(" → ") },
        { key: "actions", title: "Actions", sort: false, class: "actions", render: (w) => h("div", { class: "row" },
          h("button", { type: "button", class: "btn small primary", "aria-label": `Run workflow ${w.name}`, onclick: () => workflowRunDialog(w, names) }, "Run"),
          h("button", { type: "button", class: "btn small", "aria-label": `Runs of workflow ${w.name}`, onclick: () => runs(w) }, "Runs"),
          h("button", { type: "button", class: "btn small", "aria-label": `Edit workflow ${w.name}`, onclick: () => workflowDialog(w, scripts, again) }, "Edit"),
          h("button", { type: "button", class: "btn small danger", "aria-label": `Delete workflow ${w.name}`, onclick: async (e) => {
            if (await confirmDialog(`Delete workflow ${w.name}?`, "Delete")) await guard(async () => { await api("DELETE", `/api/v1/workflows/${encodeURIComponent(w.id)}`); toast("Deleted"); again(); }, e.target);
          } }, "Delete")) }] }));
    }],
    ["Schedules", async (p) => {
      const [scripts, workflows, d] = await Promise.all([loadScripts(), loadWorkflows(), api("GET", "/api/v1/schedules")]);
      const wfNames = new Map(workflows.map((w) => [w.id, w.name]));
      const rows = list(d, "schedules");
      const what = (s) => s.workflowId ? `Workflow ${wfNames.get(s.workflowId) || s.workflowId}` : `Script ${names.get(s.scriptId) || s.scriptId}`;
      p.replaceChildren(h("div", { class: "row" }, h("button", { type: "button", class: "btn primary", disabled: !scripts.length && !workflows.length, onclick: () => scheduleDialog(null, scripts, workflows, again) }, "New schedule")),
        dataTable({ label: "Schedules", rows: rows.map((s) => ({ ...s, __id: s.id })), empty: "No schedules.", columns: [
          { key: "target", title: "Runs", value: what }, { key: "cronExpression", title: "Cron", value: (s) => pick(s, "cronExpression", "cron_expression") },
          { key: "enabled", title: "Enabled", value: (s) => (s.enabled ? "yes" : "no"), render: (s) => badge(s.enabled ? "enabled" : "disabled", s.enabled ? "ok" : "idle") },
          { key: "nextRunAt", title: "Next run", value: (s) => pick(s, "nextRunAt", "next_run_at") || "–" },
          { key: "lastRunAt", title: "Last run", render: (s) => ago(pick(s, "lastRunAt", "last_run_at")) },
          { key: "actions", title: "Actions", sort: false, class: "actions", render: (s) => h("div", { class: "row" },
            h("button", { type: "button", class: "btn small", "aria-label": `Edit schedule of ${what(s)}`, onclick: () => scheduleDialog(s, scripts, workflows, again) }, "Edit"),
            h("button", { type: "button", class: "btn small", "aria-label": `${s.enabled ? "Disable" : "Enable"} schedule of ${what(s)}`, onclick: (e) => guard(async () => {
              await api("POST", `/api/v1/schedules/${encodeURIComponent(s.id)}/${s.enabled ? "disable" : "enable"}`); again(); }, e.target) }, s.enabled ? "Disable" : "Enable"),
            h("button", { type: "button", class: "btn small danger", "aria-label": `Delete schedule of ${what(s)}`, onclick: async (e) => {
              if (await confirmDialog(`Delete the schedule of ${what(s)}?`, "Delete")) await guard(async () => { await api("DELETE", `/api/v1/schedules/${encodeURIComponent(s.id)}`); toast("Deleted"); again(); }, e.target);
            } }, "Delete")) }] }));
    }],
  ];
  strip = await tabsWithShow(main, defs);
};

// The shared tab strip, keeping a handle to switch tabs (and redraw the current one after a change).
async function tabsWithShow(main, defs) {
  const handle = { show: null, current: 0 };
  const wrapped = defs.map(([label, fn], i) => [label, async (panel) => { handle.current = i; await fn(panel); }]);
  await tabs(main, wrapped);
  const bar = main.querySelector(".tabs");
  handle.show = (i) => { bar.children[i].click(); };
  return handle;
}
