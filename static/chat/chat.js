// The few things the browser must do on its own: Enter to send, keep the view
// at the newest text, show the connection state, and keep an unsent message.
(function () {
  "use strict";

  function chat() { return document.getElementById("chat"); }
  function messages() { return document.getElementById("messages"); }
  function composer() { return document.getElementById("composer"); }
  function textarea() { return document.getElementById("message-text"); }

  var pending = null; // {clientId, text} of a message sent but not yet stored
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
    if (code >= 4000 && code < 5000) {
      el.dataset.connection = "refused";
      setNotice("This conversation is not available. Reload the page.");
      return;
    }
    el.dataset.connection = "closed";
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

  document.addEventListener("DOMContentLoaded", function () {
    scrollToEnd();
    var area = textarea();
    if (area) area.focus();
  });
})();
