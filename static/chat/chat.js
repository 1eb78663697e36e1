// The few things the browser must do on its own: Enter to send, keep the view
// at the newest text, show the connection state, and keep an unsent message.
(function () {
  "use strict";

  function chat() { return document.getElementById("chat"); }
  function messages() { return document.getElementById("messages"); }
  function composer() { return document.getElementById("composer"); }
  function textarea() { return document.getElementById("message-text"); }

  var pending = null; // {clientId, text} of a message sent but not yet stored

  // Every (re)connection says which version of the conversation the page shows, so the server
  // sends only what the page is missing: just the live replies, or the whole branch.
  var createWebSocket = htmx.createWebSocket;
  htmx.createWebSocket = function (url) {
    var state = document.getElementById("chat-state");
    var version = state ? state.dataset.version : "";
    return createWebSocket(version ? url + (url.indexOf("?") < 0 ? "?" : "&") + "since=" + version : url);
  };

  // A reply's ending arrives as its new footer; the footer carries the status for the message.
  function applyEndings() {
    document.querySelectorAll("[data-ending]").forEach(function (footer) {
      var article = footer.closest("article[data-role]");
      if (article) article.dataset.status = footer.dataset.ending;
      footer.removeAttribute("data-ending");
    });
  }

  function stopForm() { return document.getElementById("stop-form"); }
  var stickToBottom = true;

  function nearBottom(el) { return el.scrollHeight - el.scrollTop - el.clientHeight < 80; }

  function scrollToEnd() {
    var list = messages();
    if (list && stickToBottom) list.scrollTop = list.scrollHeight;
  }

  function setNotice(text, info) {
    var notice = document.getElementById("composer-notice");
    if (!notice) return;
    notice.textContent = text;
    notice.classList.toggle("info", !!info);
  }

  function setSending(on) {
    var button = document.getElementById("send-button");
    if (button) button.disabled = on;
  }

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && event.target === textarea() && stopForm()) {
      event.preventDefault();
      stopForm().requestSubmit();
      return;
    }
    var area = textarea();
    if (event.target !== area || event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    event.preventDefault();
    var form = composer();
    var button = document.getElementById("send-button");
    if (form && !(button && button.disabled)) form.requestSubmit(button || undefined);
  });

  document.addEventListener("scroll", function (event) {
    if (event.target === messages()) stickToBottom = nearBottom(event.target);
  }, true);

  document.addEventListener("htmx:wsConnecting", function () {
    var el = chat();
    if (el && el.dataset.connection !== "connecting") el.dataset.connection = "closed";
  });

  document.addEventListener("htmx:wsOpen", function () {
    var el = chat();
    if (el) el.dataset.connection = "open";
    if (pending) {
      // Anything still queued goes out now; a message whose answer was lost can be sent again
      // (the server stores it once).
      setNotice("Sending…", true);
      setSending(false);
    }
  });

  document.addEventListener("htmx:wsClose", function (event) {
    var el = chat();
    if (!el) return;
    var code = event.detail && event.detail.event ? event.detail.event.code : 0;
    if (code === 4012 && event.detail.socketWrapper) {
      // The server wants this page to take a fresh snapshot: reconnect now.
      el.dataset.connection = "closed";
      var wrapper = event.detail.socketWrapper;
      setTimeout(function () { wrapper.reconnect(); }, 100 + Math.random() * 400);
      return;
    }
    if (code >= 4000 && code < 5000) {
      el.dataset.connection = "refused";
      setNotice("This conversation is not available. Reload the page.");
      return;
    }
    el.dataset.connection = "closed";
    // The extension retries only abnormal closes; a server going away (1001) or closing
    // normally must not leave the page frozen either.
    if ((code === 1000 || code === 1001) && event.detail.socketWrapper) {
      setTimeout(function () { event.detail.socketWrapper.reconnect(); }, 250 + Math.random() * 750);
    }
  });

  document.addEventListener("htmx:wsConfigSend", function (event) {
    if (event.target !== composer()) return;
    var area = textarea();
    var clientId = document.getElementById("client-id");
    pending = { clientId: clientId ? clientId.value : "", text: area ? area.value : "" };
    setSending(true);
    var el = chat();
    if (el && el.dataset.connection !== "open") {
      setNotice("Not connected: your message is queued and will be sent when the connection is back.", true);
    }
  });

  document.addEventListener("htmx:wsAfterMessage", function () {
    applyEndings();
    if (pending) {
      var clientId = document.getElementById("client-id");
      if (clientId && clientId.value !== pending.clientId) {
        // Stored: the server handed out a fresh key for the next message.
        var area = textarea();
        if (area && area.value === pending.text) area.value = "";
        pending = null;
        setSending(false);
      } else if (document.getElementById("composer-notice").textContent && !document.getElementById("composer-notice").classList.contains("info")) {
        // Refused with a reason: keep the text so it can be fixed.
        pending = null;
        setSending(false);
      }
    }
    scrollToEnd();
  });

  // Editing a message: its form comes from a <template> (so the page's text stays the
  // conversation's text) and is handed to htmx to send over the socket.
  document.addEventListener("click", function (event) {
    var edit = event.target.closest(".edit-button");
    if (edit) {
      var article = edit.closest("article");
      var template = document.getElementById(edit.dataset.edit);
      if (!template || article.querySelector(".edit-form")) return;
      var form = template.content.firstElementChild.cloneNode(true);
      article.appendChild(form);
      article.classList.add("editing");
      htmx.process(form);
      form.querySelector("textarea").focus();
      return;
    }
    var cancel = event.target.closest(".edit-cancel");
    if (cancel) {
      var editing = cancel.closest("article");
      cancel.closest("form").remove();
      editing.classList.remove("editing");
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    scrollToEnd();
    var area = textarea();
    if (area) area.focus();
  });
})();
