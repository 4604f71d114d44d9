// Applied before the first paint (a classic script in <head>, no inline code: the CSP forbids it) so a
// remembered theme, font size or density never flashes the defaults. The full preference store is in app.js.
(function () {
  var root = document.documentElement, p = {};
  try { p = JSON.parse(localStorage.getItem("nekzus.prefs") || "{}") || {}; } catch (e) { p = {}; }
  var themes = ["light", "dark", "terminal"], sizes = ["small", "medium", "large", "x-large"];
  var legacy = null;
  try { legacy = localStorage.getItem("nekzus.theme"); } catch (e) { legacy = null; }
  var t = themes.indexOf(p.theme) >= 0 ? p.theme : !p.theme && themes.indexOf(legacy) >= 0 ? legacy
    : (window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  root.setAttribute("data-theme", t);
  root.setAttribute("data-font-size", sizes.indexOf(p.fontSize) >= 0 ? p.fontSize : "medium");
  if (p.compact === true) root.setAttribute("data-compact", "");
})();
