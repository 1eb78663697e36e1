// The few things the browser must do on its own: Enter to send, keep the view at the newest
// text while the reader is there, show the connection state, keep an unsent message, fit the
// composer to its text, and copy code and replies.
(function () {
  "use strict";

  function chat() { return document.getElementById("chat"); }
  function messages() { return document.getElementById("messages"); }
  function composer() { return document.getElementById("composer"); }
  function textarea() { return document.getElementById("message-text"); }
  function sendButton() { return document.getElementById("send-button"); }
  function jumpButton() { return document.getElementById("jump-to-latest"); }

  var pending = null; // {clientId, text} of a message sent but not yet stored
  var sending = false; // a message is on its way: Send stays disabled until it is stored or refused

  // Every (re)connection says which version of the conversation the page shows, so the server
  // sends only what the page is missing: just the live replies, or the whole branch.
  // The new-chat page's socket becomes its conversation's: after the first message a reconnect
  // goes to the conversation's own address.
  var createWebSocket = htmx.createWebSocket;
  htmx.createWebSocket = function (url) {
    var started = document.getElementById("conversation-started");
    if (started && started.dataset.socket && /\/ws\/new\/$/.test(url)) url = started.dataset.socket;
    var state = document.getElementById("chat-state");
    var version = state ? state.dataset.version : "";
    var socket = createWebSocket(version ? url + (url.indexOf("?") < 0 ? "?" : "&") + "since=" + version : url);
    // Listening before the extension does: a reply's frames are taken here (see takeReplyFrame).
    socket.addEventListener("message", takeReplyFrame);
    return socket;
  };

  // The first message of a new chat went over the socket and created the conversation: the page
  // is now its page, without loading another (the address, the title, Back).
  function adoptConversation() {
    var started = document.getElementById("conversation-started");
    if (!started || !started.dataset.url || location.pathname === started.dataset.url) return;
    history.pushState({ conversation: started.dataset.url }, "", started.dataset.url);
    document.title = started.dataset.title + " · Chat";
  }
  window.addEventListener("popstate", function () { location.reload(); });

  // A reply's ending arrives as its new footer; the footer carries the status for the message.
  // The streamed text is announced by nothing (the log is not live and the reply is busy while it
  // streams); its ending is announced once, politely, through #reply-status.
  function applyEndings() {
    document.querySelectorAll("[data-ending]").forEach(function (footer) {
      var article = footer.closest("article[data-role]");
      if (article) {
        article.dataset.status = footer.dataset.ending;
        article.removeAttribute("aria-busy");
      }
      announceEnding(footer);
      footer.removeAttribute("data-ending");
    });
  }

  function announceEnding(footer) {
    var status = document.getElementById("reply-status");
    if (!status) return;
    var detail = footer.querySelector(".message-error, .finish-notice");
    var reason = detail ? detail.textContent.trim() : "";
    var text = {
      complete: "Reply finished." + (reason ? " " + reason : ""),
      stopped: "Reply stopped.",
      error: "Reply failed: " + (reason || "unknown error"),
      interrupted: "Reply interrupted.",
    }[footer.dataset.ending];
    if (!text) return;
    // Emptied first, so that the same words as last time are announced again.
    status.textContent = "";
    setTimeout(function () { status.textContent = text; }, 50);
  }

  function stopForm() { return document.getElementById("stop-form"); }

  // Following the newest text. A reply arrives as dozens of socket frames a second; reading the
  // list's layout for each would force a layout per frame. Frames (and scrolls, resizes) only ask
  // for a frame; one requestAnimationFrame callback reads the layout once and scrolls.
  var NEAR_BOTTOM = 80; // px: this close to the end counts as "at the bottom"
  var following = true;
  var lastTop = 0; // the list's scrollTop and scrollHeight as the previous frame left them
  var lastHeight = 0;
  var frameRequested = false;
  var ownScroll = false; // the next scroll event is the one followFrame caused: nothing to check

  function requestFollow() {
    if (frameRequested) return;
    frameRequested = true;
    requestAnimationFrame(followFrame);
  }

  function followFrame() {
    frameRequested = false;
    var list = messages();
    if (!list) return;
    var top = list.scrollTop;
    var height = list.scrollHeight;
    var distance = height - top - list.clientHeight;
    // The view moving up is the reader's doing (wheel, keys, scrollbar, a focused link), except
    // when the text got shorter (a reply re-rendered, a branch switched): then the browser may
    // have pulled the view up to the new end. Scroll anchoring is off for the list (chat.css),
    // so growing text never moves it.
    if (top < lastTop - 1 && height >= lastHeight) following = false;
    else if (distance <= 1 || (top > lastTop + 1 && distance <= NEAR_BOTTOM)) following = true;
    if (following && distance > 0) {
      ownScroll = true;
      list.scrollTop = height;
      top = list.scrollTop;
      distance = 0;
    }
    lastTop = top;
    lastHeight = height;
    var jump = jumpButton();
    var hide = following || distance <= NEAR_BOTTOM;
    if (jump && jump.hidden !== hide) jump.hidden = hide; // (setting it unchanged still restyles)
  }

  function jumpToLatest() {
    following = true;
    requestFollow();
    // The button hides itself; keyboard focus should not vanish with it.
    var area = textarea();
    if (area && document.activeElement === jumpButton()) area.focus({ preventScroll: true });
  }

  // Finished messages are laid out only near the view (content-visibility: auto in chat.css), so
  // a long conversation opens as fast as a short one. One off screen has a placeholder height
  // until it comes near, then takes its real one. Scroll anchoring is off for the list, so when
  // that happens above the view this does its job: the view moves by the difference, in the same
  // frame (ResizeObserver callbacks run before paint). While following, the end is kept in view.
  var heights = new WeakMap(); // article -> border-box height last seen
  var articleSizes = typeof ResizeObserver === "function" ? new ResizeObserver(keepPlace) : null;

  function watchArticles(nodes) {
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      if (node.nodeName !== "ARTICLE") continue;
      heights.set(node, node.offsetHeight);
      articleSizes.observe(node);
    }
  }

  function keepPlace(entries) {
    var list = messages();
    if (!list) return;
    var viewTop = list.getBoundingClientRect().top;
    var shift = 0;
    entries.forEach(function (entry) {
      var article = entry.target;
      var height = article.offsetHeight;
      var was = heights.get(article);
      heights.set(article, height);
      if (following || was === undefined || was === height || !article.isConnected) return;
      if (article.getBoundingClientRect().bottom <= viewTop + 1) shift += height - was;
    });
    if (following) requestFollow();
    else if (shift) {
      ownScroll = true;
      list.scrollTop += shift;
      lastTop = list.scrollTop;
      lastHeight = list.scrollHeight;
    }
  }

  function watchList(list) {
    if (!articleSizes) return;
    watchArticles(list.children);
    new MutationObserver(function (records) {
      records.forEach(function (record) {
        watchArticles(record.addedNodes);
        for (var i = 0; i < record.removedNodes.length; i++) {
          if (record.removedNodes[i].nodeName === "ARTICLE") articleSizes.unobserve(record.removedNodes[i]);
        }
      });
    }).observe(list, { childList: true });
  }

  // The composer grows with its text; CSS caps it (max-height) and it scrolls beyond that.
  function fitComposer() {
    var area = textarea();
    // Empty and never fitted: already its natural height, and measuring would lay out the whole
    // page before its first paint.
    if (!area || (area.value === "" && !area.style.height)) return;
    area.style.height = "auto"; // measure from its natural height, so it can shrink too
    area.style.height = area.scrollHeight + area.offsetHeight - area.clientHeight + "px";
  }

  function hasText() {
    var area = textarea();
    return !!area && area.value.trim() !== "";
  }

  function updateSendButton() {
    var button = sendButton();
    if (button) button.disabled = sending || !hasText();
  }

  function setSending(on) {
    sending = on;
    updateSendButton();
  }

  // After a send, the next message is typed where the last one was, unless the reader has
  // meanwhile moved to some other field.
  function refocusComposer() {
    var area = textarea();
    var form = composer();
    var active = document.activeElement;
    if (!area || active === area) return;
    if (!active || active === document.body || (form && form.contains(active))) area.focus({ preventScroll: true });
  }

  function setNotice(text, info) {
    var notice = document.getElementById("composer-notice");
    if (!notice) return;
    notice.textContent = text;
    notice.classList.toggle("info", !!info);
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
    var button = sendButton();
    // Checked here as well as through the button: a blank message never goes out.
    if (form && hasText() && !(button && button.disabled)) form.requestSubmit(button || undefined);
  });

  document.addEventListener("input", function (event) {
    if (event.target !== textarea()) return;
    fitComposer();
    updateSendButton();
    requestFollow(); // a taller composer shortens the list; keep its end in view
  });

  document.addEventListener("scroll", function (event) {
    if (event.target !== messages()) return;
    if (ownScroll) ownScroll = false;
    else requestFollow();
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
    // Whoever sends a message wants to read its answer.
    following = true;
    requestFollow();
    var el = chat();
    if (el && el.dataset.connection !== "open") {
      setNotice("Not connected: your message is queued and will be sent when the connection is back.", true);
    }
  });

  function afterMessage(message) {
    if (message.indexOf("data-ending") >= 0) applyEndings();
    if (message.indexOf("conversation-started") >= 0) adoptConversation();
    if (pending) {
      // Stored: the server handed out a fresh key for the next message. Refused with a reason:
      // the text stays so it can be fixed. Either way the message is no longer on its way.
      var clientId = document.getElementById("client-id");
      var notice = document.getElementById("composer-notice");
      var stored = !!clientId && clientId.value !== pending.clientId;
      var refused = !!notice && notice.textContent !== "" && !notice.classList.contains("info");
      if (stored || refused) {
        var area = textarea();
        if (stored && area && area.value === pending.text) area.value = "";
        pending = null;
        setSending(false);
        composerSettles();
      }
    }
    requestFollow();
  }

  // Fitting and focusing the composer read the layout: done in the next animation frame, they
  // never hold up the frames behind them (the reply's first text comes right after "stored").
  function composerSettles() {
    requestAnimationFrame(function () {
      fitComposer();
      refocusComposer();
    });
  }

  document.addEventListener("htmx:wsAfterMessage", function (event) {
    afterMessage(String((event.detail && event.detail.message) || ""));
  });

  // The hot path: a streaming reply's frames (text appended to its open tail, finished blocks put
  // before it, the tail reset) are taken off the socket before htmx sees them. Applied here they
  // cost the page no parser document, no swap events and no htmx processing of the new nodes,
  // which model output never needs (its markup was sanitized on the server: no hx-* attributes).
  // Appended text is written as text, never as markup. A fast model sends more frames a second
  // than the screen shows, and each DOM change costs a style, layout and paint pass, so changes
  // are written at most once per WRITE_EVERY_MS: at once after a pause, batched while a reply
  // streams. Any other frame (an ending, a snapshot, a new message) goes to htmx after the
  // changes before it, so the order is kept.
  var APPEND = /^<span id=(m-\d+-(?:r?tail|r?code)) hx-swap-oob=beforeend>([^<]*)<\/span>$/;
  var REPLY_FRAME = /^<(?:div|span) id=m-\d+-(?:body|reasoning|r?tail|r?code) hx-swap-oob=/;
  var REPLY_PART = /^m-\d+-(?:body|reasoning|r?tail|r?code)$/;
  var REPLY_SWAPS = { innerHTML: true, beforebegin: true, beforeend: true, delete: true };
  var WRITE_EVERY_MS = 80; // at most 12.5 writes a second: a steady flow of text, a fifth of the work of 60
  var ENTITIES = { "&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&#x27;": "'" };
  var changes = []; // [id, swap, text or nodes], in the order they came
  var lastWrite = -Infinity;
  var writeTimer = 0;

  function unescapeText(text) {
    if (text.indexOf("&") < 0) return text;
    return text.replace(/&(?:amp|lt|gt|quot|#x27);/g, function (entity) { return ENTITIES[entity]; });
  }

  // The frame's changes, or null when it is not (only) a reply's: then htmx applies it.
  function replyChanges(message) {
    var append = APPEND.exec(message);
    if (append) return [[append[1], "text", unescapeText(append[2])]];
    if (!REPLY_FRAME.test(message)) return null;
    var template = document.createElement("template");
    template.innerHTML = message;
    var found = [];
    var parts = template.content.children;
    for (var i = 0; i < parts.length; i++) {
      var swap = parts[i].getAttribute("hx-swap-oob");
      if (!REPLY_PART.test(parts[i].id) || !REPLY_SWAPS.hasOwnProperty(swap)) return null;
      found.push([parts[i].id, swap, parts[i].childNodes]);
    }
    return found;
  }

  // A batch written from the timer is followed at once: the layout read then is the one the next
  // frame would do anyway, and the scroll event lands in that frame instead of asking for one more.
  // Text written as it arrives (the first after a pause, or before another frame) is followed in
  // the next animation frame, so that nothing delays it reaching the page.
  function writeBatch() { writeChanges(true); }

  function writeChanges(followNow) {
    clearTimeout(writeTimer);
    writeTimer = 0;
    if (!changes.length) return;
    for (var i = 0; i < changes.length; i++) {
      var change = changes[i];
      var target = document.getElementById(change[0]);
      if (!target) continue;
      if (change[1] === "text") target.insertAdjacentText("beforeend", change[2]);
      else if (change[1] === "innerHTML") target.replaceChildren.apply(target, Array.from(change[2]));
      else if (change[1] === "beforebegin") target.before.apply(target, Array.from(change[2]));
      else if (change[1] === "beforeend") target.append.apply(target, Array.from(change[2]));
      else target.remove();
    }
    changes = [];
    lastWrite = performance.now();
    if (followNow === true) followFrame();
    else requestFollow();
  }

  function takeReplyFrame(event) {
    var found = typeof event.data === "string" ? replyChanges(event.data) : null;
    if (!found) {
      writeChanges(); // the text before it first
      return;
    }
    event.stopImmediatePropagation();
    for (var i = 0; i < found.length; i++) {
      var last = changes[changes.length - 1];
      if (found[i][1] === "text" && last && last[1] === "text" && last[0] === found[i][0]) last[2] += found[i][2];
      else changes.push(found[i]);
    }
    var wait = lastWrite + WRITE_EVERY_MS - performance.now();
    if (wait <= 0) writeChanges();
    else if (!writeTimer) writeTimer = setTimeout(writeBatch, wait);
  }

  // Copying. Buttons arrive with messages (htmx swaps), so one listener on the document serves
  // them all. The result shows on the button for a moment and is announced through #copy-status.
  var COPY_FEEDBACK_MS = 1500;
  var copyTimers = new WeakMap();

  function showCopyResult(button, copied) {
    var result = copied ? "Copied" : "Copy failed";
    if (!button.dataset.label) button.dataset.label = button.textContent;
    button.textContent = result;
    var status = document.getElementById("copy-status");
    if (status) {
      // Cleared first, so that a second "Copied" in a row is announced again.
      status.textContent = "";
      setTimeout(function () { status.textContent = result; }, 50);
    }
    clearTimeout(copyTimers.get(button));
    copyTimers.set(button, setTimeout(function () {
      button.textContent = button.dataset.label;
      if (status && status.textContent === result) status.textContent = "";
    }, COPY_FEEDBACK_MS));
  }

  function copyCode(button) {
    var block = button.closest(".code-block");
    var code = block ? block.querySelector("pre code") : null;
    if (!code || !navigator.clipboard) {
      showCopyResult(button, false); // the Clipboard API exists only on https:// and localhost
      return;
    }
    navigator.clipboard.writeText(code.textContent).then(
      function () { showCopyResult(button, true); },
      function () { showCopyResult(button, false); }
    );
  }

  // The reply's Markdown source. Anything but text/plain (a login page after the session ended,
  // an error page) is a failure, not something to paste.
  function fetchSource(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "text/plain" } }).then(function (response) {
      var type = response.headers.get("Content-Type") || "";
      if (!response.ok || response.redirected || type.indexOf("text/plain") !== 0) {
        throw new Error("Could not load the reply's text (" + response.status + ")");
      }
      return response.text();
    });
  }

  function copyReply(button) {
    var url = button.dataset.sourceUrl ? new URL(button.dataset.sourceUrl, location.href) : null;
    if (!url || url.origin !== location.origin || !navigator.clipboard) {
      showCopyResult(button, false);
      return;
    }
    var copied;
    if (typeof ClipboardItem === "function" && navigator.clipboard.write) {
      // Handing the clipboard a promise starts the write now, while the click still counts as
      // the user's gesture (Safari refuses a write that starts after an await).
      var blob = fetchSource(url.href).then(function (text) {
        return new Blob([text], { type: "text/plain" });
      });
      blob.catch(function () {}); // reported through the write below, not as an unhandled rejection
      try {
        copied = navigator.clipboard.write([new ClipboardItem({ "text/plain": blob })]);
      } catch (error) {
        copied = Promise.reject(error);
      }
    } else {
      copied = fetchSource(url.href).then(function (text) { return navigator.clipboard.writeText(text); });
    }
    copied.then(
      function () { showCopyResult(button, true); },
      function () { showCopyResult(button, false); }
    );
  }

  document.addEventListener("click", function (event) {
    var copyCodeButton = event.target.closest(".copy-code");
    if (copyCodeButton) {
      copyCode(copyCodeButton);
      return;
    }
    var copyReplyButton = event.target.closest(".copy-reply");
    if (copyReplyButton) {
      copyReply(copyReplyButton);
      return;
    }
    if (event.target.closest("#jump-to-latest")) {
      jumpToLatest();
      return;
    }
    // Regenerate and the versions' arrows: the one action form says which, for which message.
    var action = event.target.closest("button[data-action]");
    var actionForm = document.getElementById("message-action");
    if (action && actionForm) {
      actionForm.elements.namedItem("action").value = action.dataset.action;
      actionForm.elements.namedItem("message_id").value = action.dataset.message;
      actionForm.requestSubmit();
      return;
    }
    // Editing a message: the page's one edit form (a <template>, so the page's text stays the
    // conversation's text) is filled with the message's text and handed to htmx to send over
    // the socket. A question is shown as typed, so its text on the page is the stored text.
    var edit = event.target.closest(".edit-button");
    if (edit) {
      var article = edit.closest("article");
      var template = document.getElementById("edit-form-template");
      if (!template || article.querySelector(".edit-form")) return;
      var form = template.content.firstElementChild.cloneNode(true);
      var field = form.querySelector("textarea");
      form.elements.namedItem("message_id").value = article.id.slice(2);
      field.id = article.id + "-edit-text";
      form.querySelector("label").htmlFor = field.id;
      field.value = article.querySelector(".message-body").textContent;
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

  // Text can change without an input event: restored by the browser on Back, or a new width
  // that rewraps it.
  function refreshComposer() {
    fitComposer();
    updateSendButton();
    requestFollow();
  }
  window.addEventListener("pageshow", refreshComposer);
  window.addEventListener("resize", fitComposer);

  document.addEventListener("DOMContentLoaded", function () {
    refreshComposer();
    var list = messages();
    // The list changes size when the composer grows, the Stop button comes and goes, or the
    // window is resized; the end stays in view while following.
    if (list && typeof ResizeObserver === "function") new ResizeObserver(requestFollow).observe(list);
    if (list) watchList(list);
    var area = textarea();
    if (area) area.focus({ preventScroll: true });
    // Opened at a message (a search result): show it, and stop following the end.
    var target = /^#m-\d+$/.test(location.hash) && document.getElementById(location.hash.slice(1));
    if (list && target && list.contains(target)) {
      following = false;
      target.scrollIntoView({ block: "start" });
      lastTop = list.scrollTop;
      lastHeight = list.scrollHeight;
    }
  });
})();
