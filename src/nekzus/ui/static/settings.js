// The settings page of the dashboard. A page module: it registers with the shared module (imported by the
// exact URL the shell loads, so both share one instance).
import { PAGES, h, api, toast, state, field, region, section } from "{{app.js}}";

PAGES.settings = async (main, title) => {
  const theme = h("select", { name: "theme" }, [["light", "Light"], ["dark", "Dark"], ["terminal", "Terminal (green on black)"]].map(([v, l]) =>
    h("option", { value: v, selected: document.documentElement.getAttribute("data-theme") === v }, l)));
  theme.addEventListener("change", () => { document.documentElement.setAttribute("data-theme", theme.value); try { localStorage.setItem("nekzus.theme", theme.value); } catch { /* private mode */ } toast("Theme saved"); });
  const info = region("System information", async () => {
    const i = await api("GET", "/api/v1/admin/info");
    return h("dl", { class: "kv" }, h("dt", {}, "Version"), h("dd", {}, i.version), h("dt", {}, "Nexus id"), h("dd", {}, i.nexusId),
      h("dt", {}, "Capabilities"), h("dd", {}, (i.capabilities || []).join(", ")), h("dt", {}, "Live updates"), h("dd", {}, state.wsOnline ? "connected" : "disconnected"),
      h("dt", {}, "Signed in as"), h("dd", {}, state.user.username), h("dt", {}, "Idle sign-out after"), h("dd", {}, `${Math.round(state.idleTimeout / 60)} minutes`));
  });
  section(main, title, h("section", { class: "card" }, h("h2", {}, "Appearance"), field("Theme", theme)),
    h("section", { class: "card" }, h("h2", {}, "System information"), info.el));
  await info.load();
};
