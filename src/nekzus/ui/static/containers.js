// Containers page: Docker containers and Kubernetes pods in one table, with filters, batch selection
// (start/stop/restart several, each row completing live from its WebSocket event) and Compose export
// (one container or several, as a compose file or a zip) through the export endpoints.
import {
  api, badge, bytes, checkbox, dataTable, dialog, download, downloadFrom, field, formDialog, guard,
  h, input, logsDialog, notice, onEvent, pick, region, section, stateKind, toast, PAGES,
  confirmDialog, list, state,
} from "{{app.js}}";

const K8S = "kubernetes";
const isPod = (c) => c.runtime === K8S;
// A pod is addressed as namespace/pod; its events name it the same way.
const keyOf = (c) => (isPod(c) ? `${c.namespace}/${c.id}` : c.id);
const pathOf = (c) => "/api/v1/containers/" + (isPod(c)
  ? `${encodeURIComponent(c.namespace)}/${encodeURIComponent(c.id)}` : encodeURIComponent(c.id));
const label = (c) => (isPod(c) ? `${c.namespace}/${c.name}` : c.name);
const cap = (s) => s[0].toUpperCase() + s.slice(1);
const sameTarget = (key, id) => !!id && (key === id || key.startsWith(id) || id.startsWith(key));

PAGES.containers = async (main, title) => {
  const selected = new Map();   // key → container, kept across reloads
  const pending = new Map();    // key → action in flight
  const outcome = new Map();    // key → last result message of a batch
  let batch = null;             // { action, keys: Set, done, failed }
  const filters = {
    runtime: h("select", { name: "runtime" }, [["", "All runtimes"], ["docker", "Docker"], [K8S, "Kubernetes"]]
      .map(([v, l]) => h("option", { value: v }, l))),
    state: h("select", { name: "state" }, [["", "Any state"], ["running", "Running"], ["stopped", "Not running"]]
      .map(([v, l]) => h("option", { value: v }, l))),
    routed: checkbox("routed", false),
  };
  const summary = h("div", { class: "muted", role: "status", "data-batch-status": "" });
  const count = h("span", { "data-selected-count": "" }, "0 selected");
  let rows = [], shownRows = [];
  let podMetrics = "";  // why pod usage is not available ("" when it is, or no pod runs)
  const metricsNote = h("div", { role: "status" });
  const table = region("Containers", async () => {
    const q = filters.runtime.value ? "?runtime=" + filters.runtime.value : "";
    rows = list(await api("GET", "/api/v1/containers" + q), "containers");
    let stats = {};
    const podStats = new Map();  // namespace/pod → usage from the metrics API
    podMetrics = "";
    const usage = (q) => api("GET", "/api/v1/containers/stats?all=true&" + q, undefined, { background: true });
    await Promise.all([
      rows.some((c) => !isPod(c)) ? usage("runtime=docker").then((d) => { for (const s of list(d, "containers")) stats[s.containerId] = s; }, () => { stats = {}; }) : null,
      // Pods: one read of the metrics API; without it one quiet note (its reason), not an error per pod.
      rows.some((c) => isPod(c) && c.state === "running") ? usage("runtime=kubernetes").then(
        (d) => { for (const s of list(d, "containers")) podStats.set(`${s.namespace}/${s.containerId}`, s); },
        (e) => { podMetrics = e.unavailable ? (e.message || "metrics not available") : `could not be read: ${e.message}`; }) : null,
    ]);
    const stat = (c) => isPod(c) ? podStats.get(keyOf(c)) : stats[c.id] || Object.values(stats).find((x) => c.id.startsWith(x.containerId) || x.containerId.startsWith(c.id));
    metricsNote.replaceChildren(podMetrics
      ? h("div", { class: "notice", "data-pod-metrics": "unavailable" }, h("strong", {}, "Pod CPU/RAM: metrics not available. "), podMetrics) : "");
    const shown = rows.filter((c) => {
      if (filters.state.value === "running" && c.state !== "running") return false;
      if (filters.state.value === "stopped" && c.state === "running") return false;
      if (filters.routed.checked && !(c.labels && c.labels["nekzus.app.id"])) return false;
      return true;
    });
    shownRows = shown;
    const anyPods = shown.some(isPod);
    const columns = [
      { key: "select", title: "Select", sort: false, render: (c) => {
        const box = h("input", { type: "checkbox", name: "select", "aria-label": `Select ${label(c)}`, checked: selected.has(keyOf(c)) });
        box.addEventListener("change", () => { if (box.checked) selected.set(keyOf(c), c); else selected.delete(keyOf(c)); showCount(); });
        return box;
      } },
      { key: "name", title: "Name" },
      anyPods ? { key: "namespace", title: "Namespace" } : null,
      { key: "image", title: "Image" },
      { key: "state", title: "State", render: (c) => {
        const key = keyOf(c);
        const working = pending.get(key);
        return h("span", { "data-state": c.state, "data-pending": working || null },
          badge(working ? `${working}ing…` : c.state, working ? "warn" : stateKind(c.state)),
          outcome.has(key) ? h("span", { class: "muted", "data-outcome": "" }, " ", outcome.get(key)) : null);
      } },
      { key: "runtime", title: "Runtime" },
      { key: "ports", title: "Ports", value: (c) => (c.ports || []).map((p) => p.publicPort ? `${p.publicPort}→${p.privatePort}` : `${p.privatePort}/${p.type}`).join(", ") },
      { key: "cpu", title: "CPU / RAM", value: (c) => { const s = stat(c); return s ? s.cpu.coresUsed : -1; }, render: (c) => {
        const s = stat(c);
        if (!s) return isPod(c) && c.state === "running" && podMetrics ? h("span", { class: "muted" }, "metrics not available") : "";
        // Pods: cores in millicores (what Kubernetes limits are written in), % only against a limit.
        if (isPod(c)) {
          const pct = s.cpu.totalCores ? ` (${s.cpu.usage.toFixed(0)}% of limit)` : "";
          return h("span", { "data-usage": "" }, `${Math.round(s.cpu.coresUsed * 1000)}m CPU${pct} / ${bytes(s.memory.used)}`);
        }
        return h("span", { "data-usage": "" }, `${s.cpu.usage.toFixed(1)}% / ${bytes(s.memory.used)}`);
      } },
      { key: "actions", title: "Actions", sort: false, class: "actions", render: (c) => h("div", { class: "row" },
        c.state === "running" ? [op(c, "stop"), op(c, "restart")] : op(c, "start"),
        h("button", { type: "button", class: "btn small", "aria-label": `Logs of ${label(c)}`, onclick: () => logsDialog(c) }, "Logs"),
        h("button", { type: "button", class: "btn small", "aria-label": `Inspect ${label(c)}`, onclick: (e) => guard(async () => {
          const q2 = isPod(c) ? `?namespace=${encodeURIComponent(c.namespace)}` : "";
          dialog(`Inspect ${label(c)}`, h("pre", { tabindex: "0" }, JSON.stringify(await api("GET", `/api/v1/containers/${encodeURIComponent(c.id)}${q2}`), null, 2)));
        }, e.target) }, "Inspect"),
        isPod(c) ? null : h("button", { type: "button", class: "btn small", "aria-label": `Export ${c.name}`, onclick: () => exportOne(c) }, "Export")) },
    ].filter(Boolean);
    return dataTable({ label: "Containers", rows: shown.map((c) => ({ ...c, __id: keyOf(c) })), columns,
      empty: rows.length ? "No container matches the filters." : "No containers." });
  });
  const showCount = () => {
    count.textContent = `${selected.size} selected`;
    bar.querySelectorAll("button[data-needs-selection]").forEach((b) => { b.disabled = selected.size === 0; });
  };

  // One action on one container: 202 now, the outcome arrives as container.<action>.completed/failed.
  const request = async (c, action) => {
    const key = keyOf(c);
    await api("POST", `${pathOf(c)}/${action}`);
    pending.set(key, action);
    outcome.delete(key);
  };
  const op = (c, action) => h("button", { type: "button", class: "btn small", "aria-label": `${action} ${label(c)}`, onclick: (e) => guard(async () => {
    await request(c, action); toast(`${cap(action)} requested for ${label(c)}`); table.load();
  }, e.target) }, cap(action));

  const drawBatch = () => {
    if (!batch) return;
    const left = batch.keys.size;
    summary.textContent = left
      ? `${cap(batch.action)}: ${batch.done + batch.failed} of ${batch.total} finished…`
      : `${cap(batch.action)} finished: ${batch.done} succeeded, ${batch.failed} failed.`;
  };
  const settle = (key, ok, message) => {
    pending.delete(key);
    if (batch && batch.keys.delete(key)) {
      if (ok) batch.done++; else batch.failed++;
      outcome.set(key, ok ? "done" : `failed: ${message}`);
      drawBatch();
    }
  };
  const runBatch = (action) => guard(async () => {
    const targets = [...selected.values()];
    if (!targets.length) return;
    batch = { action, keys: new Set(targets.map(keyOf)), total: targets.length, done: 0, failed: 0 };
    for (const k of batch.keys) outcome.delete(k);
    drawBatch();
    await Promise.all(targets.map(async (c) => {
      try { await request(c, action); } catch (e) { settle(keyOf(c), false, e.message || String(e)); }
    }));
    drawBatch();
    table.load();
  });

  // ----- export -----
  const exportOptions = () => {
    const o = { sanitize: checkbox("sanitizeSecrets", true), volumes: checkbox("includeVolumes", true), networks: checkbox("includeNetworks", true) };
    o.nodes = [field("Hide secrets (replace values with placeholders)", o.sanitize), field("Include volumes", o.volumes), field("Include networks", o.networks)];
    o.body = () => ({ sanitize_secrets: o.sanitize.checked, include_volumes: o.volumes.checked, include_networks: o.networks.checked });
    return o;
  };
  const previewBox = () => h("div", { "aria-live": "polite" });
  const showPreview = (box, p) => box.replaceChildren(
    ...(p.warnings || []).map((w) => notice(w, "")),
    h("pre", { tabindex: "0", "aria-label": "Compose file preview", "data-export-preview": "" }, p.content));
  const saveResult = (p) => {
    download(p.filename || "docker-compose.yml", p.content, "text/yaml");
    const env = pick(p, "envContent", "env_content");
    if (env) download(pick(p, "envFilename", "env_filename") || ".env.example", env);
  };
  function exportOne(c) {
    const o = exportOptions();
    const box = previewBox();
    const err = h("div", {});
    const run = (fn) => async (e) => { err.replaceChildren(); e.target.disabled = true;
      try { await fn(); } catch (x) { err.replaceChildren(notice(x.message || String(x))); } finally { e.target.disabled = false; } };
    const base = `/api/v1/containers/${encodeURIComponent(c.id)}/export`;
    dialog(`Export ${c.name}`, h("div", {}, o.nodes, err, h("div", { class: "row" },
      h("button", { type: "button", class: "btn", onclick: run(async () => showPreview(box, await api("POST", base + "/preview", o.body()))) }, "Preview"),
      h("button", { type: "button", class: "btn primary", onclick: run(async () => { const p = await api("POST", base, o.body()); showPreview(box, p); saveResult(p); toast(`Exported ${c.name}`); }) }, "Download")),
    box));
  }
  const exportSelected = () => {
    const all = [...selected.values()];
    const ids = all.filter((c) => !isPod(c)).map((c) => c.id);
    if (!ids.length) { toast("Select one or more Docker containers to export (pods cannot be exported).", "error"); return; }
    const o = exportOptions();
    const stack = input("stackName", { value: "exported-stack", required: true });
    const format = h("select", { name: "format" }, h("option", { value: "json" }, "One compose file"), h("option", { value: "zip" }, "Zip (compose file and .env.example)"));
    const box = previewBox();
    const err = h("div", {});
    const body = () => ({ ...o.body(), container_ids: ids, stack_name: stack.value.trim() || "exported-stack" });
    const run = (fn) => async (e) => { err.replaceChildren(); e.target.disabled = true;
      try { await fn(); } catch (x) { err.replaceChildren(notice(x.message || String(x))); } finally { e.target.disabled = false; } };
    dialog(`Export ${ids.length} container${ids.length === 1 ? "" : "s"}`, h("div", {},
      all.length > ids.length ? notice(`${all.length - ids.length} Kubernetes pod(s) left out: export is for Docker containers.`, "") : null,
      field("Stack name", stack), field("Format", format), o.nodes, err,
      h("div", { class: "row" },
        h("button", { type: "button", class: "btn", onclick: run(async () => showPreview(box, await api("POST", "/api/v1/containers/batch/export/preview", body()))) }, "Preview"),
        h("button", { type: "button", class: "btn primary", onclick: run(async () => {
          if (format.value === "zip") await downloadFrom("/api/v1/containers/batch/export?format=zip", `${stack.value || "exported-stack"}.zip`, "POST", body());
          else { const p = await api("POST", "/api/v1/containers/batch/export", body()); showPreview(box, p); saveResult(p); }
          toast("Export downloaded");
        }) }, "Download")),
      box));
  };

  const bar = h("div", { class: "row", role: "group", "aria-label": "Selected containers" },
    count,
    h("button", { type: "button", class: "btn small", onclick: () => { for (const c of shownRows) selected.set(keyOf(c), c); showCount(); table.load(); } }, "Select all shown"),
    h("button", { type: "button", class: "btn small", "data-needs-selection": "", onclick: () => { selected.clear(); showCount(); table.load(); } }, "Clear selection"),
    ["start", "stop", "restart"].map((a) => h("button", { type: "button", class: "btn small", "data-needs-selection": "", onclick: () => runBatch(a) }, `${cap(a)} selected`)),
    h("button", { type: "button", class: "btn small", "data-needs-selection": "", onclick: exportSelected }, "Export selected"));
  // Every container of the primary runtime at once (Nekzus itself and `nekzus.skip` ones are left alone).
  const ALL = [["start", "Start all stopped"], ["stop", "Stop all running"], ["restart", "Restart all"]];
  const everything = h("div", { class: "row", role: "group", "aria-label": "All containers" }, ALL.map(([a, text]) =>
    h("button", { type: "button", class: "btn small" + (a === "stop" ? " danger" : ""), onclick: async (e) => {
      if (!(await confirmDialog(`${text}? Nekzus itself is never touched.`, text))) return;
      await guard(async () => {
        summary.textContent = `${text}…`;
        const r = await api("POST", `/api/v1/containers/${a}-all`);
        const failures = (r.results || []).filter((x) => !x.success).map((x) => `${x.name}: ${x.error}`);
        summary.textContent = `${text}: ${r.success} succeeded, ${r.failed} failed.${failures.length ? " " + failures.join("; ") : ""}`;
        table.load();
      }, e.target);
    } }, text)));
  const filterForm = h("div", { class: "row" }, field("Runtime", filters.runtime), field("State", filters.state),
    field("Only containers with a route", filters.routed));
  for (const el of Object.values(filters)) if (el instanceof HTMLElement) el.addEventListener("change", () => table.load());
  section(main, title, filterForm, bar, everything, summary, metricsNote, table.el);
  showCount();
  await table.load();
  let reloadTimer = 0;  // many events in a burst reload the table once
  const reload = () => { if (!reloadTimer) reloadTimer = setTimeout(() => { reloadTimer = 0; table.load(); }, 250); };
  state.cleanup.push(() => clearTimeout(reloadTimer));
  onEvent((m) => {
    const t = m.type || "";
    const found = /^container\.(start|stop|restart)\.(completed|failed)$/.exec(t);
    if (found) {
      const d = m.data || {};
      const ok = found[2] === "completed";
      for (const key of [...pending.keys()]) {
        if (!sameTarget(key, d.containerId)) continue;
        const inBatch = !!(batch && batch.keys.has(key));
        settle(key, ok, d.message || d.error || "");
        if (!inBatch) toast(d.message || (ok ? "Done" : "Container operation failed"), ok ? "info" : "error");
      }
      reload();
    } else if (/^container\.(state|event|die|start)/.test(t) || t === "discovery") reload();
  });
};
