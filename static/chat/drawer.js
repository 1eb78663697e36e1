// Phones: the sidebar is a drawer over the page. The Conversations button opens it and moves focus
// into it; the Close button, Esc or a tap beside it close it and give focus back to the button.
// While it is open the rest of the page is inert, so focus and screen readers stay inside it.
(function () {
  "use strict";

  var narrow = window.matchMedia("(max-width: 700px)");

  function byId(id) { return document.getElementById(id); }
  function sidebar() { return byId("sidebar"); }
  function isOpen() { var aside = sidebar(); return !!aside && aside.classList.contains("open"); }

  // Everything beside the drawer: made inert while it is open.
  function pageParts() {
    var aside = sidebar();
    if (!aside || !aside.parentElement) return [];
    return Array.prototype.filter.call(aside.parentElement.children, function (element) {
      return element !== aside && element.id !== "drawer-backdrop";
    });
  }

  function setOpen(open, returnFocus) {
    var aside = sidebar();
    var button = byId("drawer-open");
    if (!aside || !button) return;
    aside.classList.toggle("open", open);
    button.setAttribute("aria-expanded", open ? "true" : "false");
    var backdrop = byId("drawer-backdrop");
    if (backdrop) backdrop.hidden = !open;
    pageParts().forEach(function (element) { element.inert = open; });
    if (open) {
      var current = aside.querySelector('[aria-current="page"]');
      (current || byId("drawer-close")).focus();
    } else if (returnFocus) {
      button.focus();
    }
  }

  // For the keyboard shortcuts: show the conversation list (the drawer on a phone).
  window.chatDrawer = {
    open: function () { if (narrow.matches && !isOpen()) setOpen(true); },
    close: function (returnFocus) { if (isOpen()) setOpen(false, returnFocus); },
    isOpen: isOpen,
  };

  document.addEventListener("click", function (event) {
    if (event.target.closest("#drawer-open")) setOpen(true);
    else if (event.target.closest("#drawer-close") || event.target.id === "drawer-backdrop") setOpen(false, true);
  });

  // Captured on the window, before any other Esc handler: with the drawer open, Esc only closes it.
  window.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || !isOpen()) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    setOpen(false, true);
  }, true);

  // Wider again (a rotated tablet): the sidebar is a column, nothing is inert.
  narrow.addEventListener("change", function () { if (!narrow.matches && isOpen()) setOpen(false); });
})();
