// Jobs page: the server's background work (script runs, workflows, deployments, backups, container
// actions...) from /api/v1/jobs, paged and filtered by the API, updated in place from the job.* events of
// the page's WebSocket; a running or queued job can be cancelled, and any job opened for its details.
import {
  ago, api, badge, confirmDialog, datetime, dialog, errorBox, field, guard, h, input, onEvent, region, section,
  serverPager, state, toast, PAGES, NBSP,
} from "{{app.js}}";

const LIMIT = 25;
const STATES = ["pending", "running", "succeeded", "failed", "cancelled"];
const KIND = { pending: "warn", running: "warn", succeeded: "ok", failed: "bad", cancelled: "idle" };
const live = (s) => s === "pending" || s === "running";
const clamp = (p) => Math.max(0, Math.min(100, Number(p) || 0));

function duration(a, b) {
  if (!a) return "";
  const s = Math.max(0, ((b ? Date.parse(b) : Date.now()) - Date.parse(a)) / 1000);
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

// Progress of one job: phase and percent over a bar (the bar is empty for work that reports none).
function progressCell(j) {
  const pct = clamp(j.percent);
  const text = [j.phase, j.percent === null || j.percent === undefined ? "" : `${Math.round(pct)}%`].filter(Boolean).join(" ");
  return h("div", { "data-progress": "" }, h("div", { class: "muted", "data-phase": "" }, text || NBSP),
    h("div", { class: "bar", role: "progressbar", "aria-valuenow": Math.round(pct), "aria-valuemin": 0, "aria-valuemax": 100,
      "aria-label": `Progress of job ${j.id}` }, h("span", { width: pct + "%" })));
}

function details(j) {
  const body = h("div", { "data-job-details": j.id }, h("p", { class: "muted" }, "Loading…"));
  dialog(`Job ${j.id}`, body);
  api("GET", `/api/v1/jobs/${encodeURIComponent(j.id)}`).then((d) => {
    const row = (k, v) => [h("dt", {}, k), h("dd", {}, v === null || v === undefined || v === "" ? "–" : v)];
    body.replaceChildren(
      h("dl", { class: "kv" }, row("Kind", d.kind), row("Status", badge(d.state, KIND[d.state])),
        row("Progress", d.percent === null ? "" : `${Math.round(clamp(d.percent))}%`), row("Phase", d.phase),
        row("Message", d.message), row("Started by", d.triggeredBy), row("Created", d.createdAt && datetime(d.createdAt)),
        row("Started", d.startedAt && datetime(d.startedAt)), row("Finished", d.finishedAt && datetime(d.finishedAt)), row("Ran for", duration(d.startedAt, d.finishedAt))),
      d.error ? h("div", { class: "notice error", role: "alert", "data-job-error": "" }, h("strong", {}, "Error: "), d.error) : null,
      h("h3", {}, "Result"),
      d.state === "succeeded" ? h("div", { "data-job-result": "" }, h("p", {}, d.message || "Finished successfully."),
        d.result !== null && d.result !== undefined
          ? h("pre", { tabindex: "0", "aria-label": `Result of job ${d.id}` }, typeof d.result === "string" ? d.result : JSON.stringify(d.result, null, 2)) : null)
        : h("p", { class: "muted", "data-job-result": "" }, live(d.state) ? "Not finished yet." : `Ended ${d.state}.`),
      h("h3", {}, "Output (last lines)"),
      h("pre", { tabindex: "0", "aria-label": `Output of job ${d.id}`, "data-job-output": "" }, d.outputTail || "(no output)"));
  }).catch((e) => body.replaceChildren(errorBox(e, "This job")));
}

PAGES.jobs = async (main, title) => {
  let offset = 0;
  const status = h("select", { name: "state" }, h("option", { value: "" }, "Any status"), STATES.map((s) => h("option", { value: s }, s)));
  const kind = input("kind", { placeholder: "e.g. script, workflow, toolbox.deploy", maxlength: 64 });
  const rowsById = new Map();  // job id → its table row, for in-place updates
  const out = region("Jobs", async () => {
    const q = new URLSearchParams({ limit: LIMIT, offset });
    if (status.value) q.set("state", status.value);
    if (kind.value.trim()) q.set("kind", kind.value.trim());
    const d = await api("GET", "/api/v1/jobs?" + q);
    const jobs = d.jobs || [];
    rowsById.clear();
    const body = h("tbody", {}, jobs.length ? jobs.map(jobRow) : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No jobs match.")));
    return h("div", {}, h("div", { class: "table-wrap" }, h("table", {}, h("caption", { class: "hidden" }, "Jobs"),
      h("thead", {}, h("tr", {}, ["Job", "Kind", "Status", "Progress", "Created", "Ran for", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
      body)),
    serverPager("Jobs", offset, LIMIT, d.total ?? offset + jobs.length, (o) => { offset = o; out.load(); }));
  });
  function jobRow(j) {
    const tr = h("tr", { "data-id": j.id, "data-state": j.state });
    tr.job = j;
    drawRow(tr);
    rowsById.set(j.id, tr);
    return tr;
  }
  function drawRow(tr) {
    const j = tr.job;
    tr.setAttribute("data-state", j.state);
    tr.replaceChildren(
      h("td", {}, h("code", { title: j.id }, j.id.length > 20 ? j.id.slice(0, 20) + "…" : j.id),
        j.triggeredBy ? h("div", { class: "muted" }, j.triggeredBy) : null),
      h("td", {}, j.kind),
      h("td", {}, badge(j.state, KIND[j.state]), j.error ? h("div", { class: "muted" }, j.error.length > 80 ? j.error.slice(0, 80) + "…" : j.error) : null),
      h("td", {}, progressCell(j)),
      h("td", {}, h("span", { title: j.createdAt ? datetime(j.createdAt) : "" }, ago(j.createdAt))),
      h("td", {}, duration(j.startedAt, j.finishedAt) || "–"),
      h("td", { class: "actions" }, h("div", { class: "row" },
        h("button", { type: "button", class: "btn small", "aria-label": `Details of job ${j.id}`, onclick: () => details(j) }, "Details"),
        live(j.state) ? h("button", { type: "button", class: "btn small danger", "aria-label": `Cancel job ${j.id}`, onclick: async (e) => {
          if (!(await confirmDialog(`Cancel ${j.kind} job ${j.id}?`, "Cancel job"))) return;
          await guard(async () => {
            const r = await api("POST", `/api/v1/jobs/${encodeURIComponent(j.id)}/cancel`);
            toast(r.cancelled ? `Cancelling job ${j.id}` : `Job ${j.id} had already ended`, r.cancelled ? "info" : "error");
            if (!r.cancelled) out.load();
          }, e.target);
        } }, "Cancel") : null)));
  }
  const form = h("form", { class: "row", "aria-label": "Filter jobs" }, field("Status", status), field("Kind", kind),
    h("button", { type: "submit", class: "btn" }, "Filter"));
  form.addEventListener("submit", (e) => { e.preventDefault(); offset = 0; out.load(); });
  status.addEventListener("change", () => { offset = 0; out.load(); });
  section(main, title, h("p", { class: "muted" }, "Background work of this Nekzus, newest first. Updates live."), form, out.el);
  await out.load();

  // job.* events: a shown job changes in place; a new job (or one entering the filter) reloads the first
  // page, at most once per 300 ms.
  let timer = 0;
  const reload = () => { if (!timer) timer = setTimeout(() => { timer = 0; out.load(); }, 300); };
  state.cleanup.push(() => clearTimeout(timer));
  onEvent((m) => {
    if (!/^job\./.test(m.type || "")) return;
    const d = m.data || {};
    const tr = d.jobId ? rowsById.get(d.jobId) : null;
    if (tr) {
      const j = tr.job;
      const now = new Date().toISOString();
      if (d.state === "running" && !j.startedAt) j.startedAt = now;
      if (!live(d.state) && !j.finishedAt) j.finishedAt = now;
      Object.assign(j, { state: d.state, percent: d.percent, phase: d.phase, message: d.message, error: d.error });
      if (status.value && status.value !== d.state) { reload(); return; }
      drawRow(tr);
    } else if (offset === 0 && (!status.value || status.value === d.state) && (!kind.value.trim() || kind.value.trim() === d.kind)) reload();
  });
};
