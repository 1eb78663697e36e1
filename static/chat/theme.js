// The Theme button switches between light and dark at once and remembers the choice for the user
// (the form's POST). Until the user chooses, the page follows the system; the first press picks the
// opposite of what the page shows now. Without JavaScript the form still posts and the page reloads.
(function () {
  "use strict";

  var root = document.documentElement;
  var systemDark = window.matchMedia("(prefers-color-scheme: dark)");

  function shown() { return root.dataset.theme || (systemDark.matches ? "dark" : "light"); }
  function opposite(theme) { return theme === "dark" ? "light" : "dark"; }

  function describe() {
    var button = document.getElementById("theme-button");
    if (!button) return;
    var next = opposite(shown());
    button.value = next;
    button.title = "Switch to the " + next + " theme";
  }

  function isThemeForm(element) { return !!element && element.classList && element.classList.contains("theme-form"); }

  var before = null; // the theme before a press, put back if the choice could not be stored

  document.addEventListener("htmx:configRequest", function (event) {
    if (!isThemeForm(event.detail.elt)) return;
    before = root.dataset.theme || "";
    var next = opposite(shown());
    event.detail.parameters.theme = next;
    root.dataset.theme = next;
    describe();
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    if (!isThemeForm(event.detail.elt) || event.detail.successful || before === null) return;
    if (before) root.dataset.theme = before;
    else delete root.dataset.theme;
    describe();
  });

  systemDark.addEventListener("change", describe);
  document.addEventListener("DOMContentLoaded", describe);
})();
