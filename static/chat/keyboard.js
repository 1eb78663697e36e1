// Keyboard shortcuts. Alt+Shift with a letter works anywhere, also while typing; it is not taken by
// Chrome, Firefox, Safari or the common screen readers (those use Insert, Caps Lock or Ctrl+Option).
// "/" works when not typing in a field. Keys are read by their position (event.code), so layouts
// and macOS's Option characters do not matter.
//   Alt+Shift+N  new chat                 Alt+Shift+M  the message box
//   Alt+Shift+C  the conversation list    / or Alt+Shift+S  search
//   Esc          stop the reply being written (or close the conversation list on a phone)
(function () {
  "use strict";

  function byId(id) { return document.getElementById(id); }
  function drawer() { return window.chatDrawer; }

  function isTyping(target) {
    if (!target || !target.closest) return false;
    if (target.isContentEditable) return true;
    var field = target.closest("input, textarea, select");
    return !!field && !/^(button|submit|reset|checkbox|radio|file|range|color|hidden)$/.test(field.type || "");
  }

  function focusMessageBox() {
    if (drawer()) drawer().close(false);
    var area = byId("message-text");
    if (area) area.focus();
  }

  function focusSearch() {
    if (drawer()) drawer().open();
    var input = byId("search-input");
    if (input) {
      input.focus();
      input.select();
    }
  }

  function showConversations() {
    var opener = byId("drawer-open");
    if (drawer() && opener && opener.offsetParent !== null) {
      drawer().open();
      return;
    }
    var list = byId("conversation-list");
    var link = list && (list.querySelector('[aria-current="page"]') || list.querySelector("a"));
    if (link) link.focus();
  }

  function newChat() {
    var link = document.querySelector(".new-chat");
    if (link) link.click();
  }

  var WITH_ALT_SHIFT = { KeyN: newChat, KeyM: focusMessageBox, KeyC: showConversations, KeySlash: focusSearch, KeyS: focusSearch };

  // Esc stops a streaming reply from the message box (chat.js) or from anywhere that is not a field,
  // a dialog or a form of its own (rename, edit), where Esc means "cancel this".
  function stopReply(event) {
    var form = byId("stop-form");
    var target = event.target;
    if (!form || event.defaultPrevented) return false;
    if (target && target.closest && target.closest("dialog, .edit-form, #rename-form")) return false;
    if (isTyping(target) && target.id !== "message-text") return false;
    form.requestSubmit();
    return true;
  }

  document.addEventListener("keydown", function (event) {
    if (event.isComposing || event.ctrlKey || event.metaKey) return;
    if (event.altKey && event.shiftKey) {
      var action = WITH_ALT_SHIFT[event.code];
      if (!action) return;
      event.preventDefault();
      action();
      return;
    }
    if (event.altKey) return;
    if (event.key === "/" && !isTyping(event.target) && byId("search-input")) {
      event.preventDefault();
      focusSearch();
    } else if (event.key === "Escape" && !event.shiftKey && stopReply(event)) {
      event.preventDefault();
    }
  });

  // Screen readers can tell what each shortcut reaches.
  document.addEventListener("DOMContentLoaded", function () {
    [[".new-chat", "Alt+Shift+N"], ["#message-text", "Alt+Shift+M"], ["#drawer-open", "Alt+Shift+C"],
      ["#search-input", "/ Alt+Shift+S"]].forEach(function (pair) {
      var element = document.querySelector(pair[0]);
      if (element) element.setAttribute("aria-keyshortcuts", pair[1]);
    });
  });
})();
