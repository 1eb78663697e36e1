// The open conversation's title, renamed in place, and its deletion behind a confirmation.
// The header may arrive later (a new chat gets its header with its first message), so every
// handler is delegated from the document.
(function () {
  "use strict";

  function byId(id) { return document.getElementById(id); }

  function startRename() {
    var form = byId("rename-form");
    var title = byId("conversation-title");
    if (!form || !title) return;
    var input = byId("rename-input");
    input.value = title.textContent.trim();
    byId("rename-error").textContent = "";
    form.hidden = false;
    title.classList.add("visually-hidden"); // still the page's heading for screen readers
    byId("rename-button").setAttribute("aria-expanded", "true");
    input.focus();
    input.select();
  }

  function endRename(focusButton) {
    var form = byId("rename-form");
    if (!form || form.hidden) return;
    form.hidden = true;
    byId("conversation-title").classList.remove("visually-hidden");
    var button = byId("rename-button");
    button.setAttribute("aria-expanded", "false");
    if (focusButton) button.focus();
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest("button");
    if (!target) return;
    if (target.id === "rename-button") startRename();
    else if (target.id === "rename-cancel") endRename(true);
    else if (target.id === "delete-button") byId("delete-dialog").showModal();
    else if (target.id === "delete-cancel") byId("delete-dialog").close();
  });

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && event.target.id === "rename-input") {
      event.preventDefault();
      event.stopPropagation();
      endRename(true);
    }
  });

  // The rename's answer carries the new title (swapped out of band); a refusal says why.
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (!form || form.id !== "rename-form") return;
    var xhr = event.detail.xhr;
    if (event.detail.successful) endRename(true);
    else byId("rename-error").textContent = xhr && xhr.status === 400 ? xhr.responseText : "The title could not be saved; try again.";
  });

  // Earlier messages arrive above what the reader is looking at: keep that where it is on screen.
  // The swap runs right after this event, in the same task; the microtask runs before any paint.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (!target || target.id !== "older-messages") return;
    var list = document.getElementById("messages");
    var height = list.scrollHeight;
    var top = list.scrollTop;
    Promise.resolve().then(function () { list.scrollTop = top + list.scrollHeight - height; });
  });

  // A title changed (renamed here or elsewhere, or written by the model): the tab follows it.
  // Titles are swapped in as content, so the heading stays and hears the event.
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "conversation-title") {
      document.title = target.textContent.trim() + " · Chat";
    }
  });
})();
