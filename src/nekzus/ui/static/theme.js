// Applied before the first paint so a remembered dark theme never flashes light.
(function () {
  try {
    var t = localStorage.getItem("nekzus.theme");
    if (!t) t = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
    document.documentElement.setAttribute("data-theme", t);
  } catch (e) { document.documentElement.setAttribute("data-theme", "light"); }
})();
