// The import page: the upload's progress (htmx reports it), then the server's, heard on a socket
// named by the form's progress token while the server checks the file and stores it. Without
// this script the form is a plain POST and the result page says how it went.
(function () {
  "use strict";

  var socket = null;
  var uploadDone = false;

  function byId(id) { return document.getElementById(id); }
  function count(n) { return Number(n).toLocaleString("en-US"); }

  function show(value, max, text) {
    var box = byId("import-progress");
    var bar = byId("import-progress-bar");
    if (!box || !bar) return;
    box.hidden = false;
    if (max > 0) { bar.max = max; bar.value = Math.min(value, max); }
    else bar.removeAttribute("value"); // indeterminate
    byId("import-progress-text").textContent = text;
  }

  function listen(token) {
    if (!token || !window.WebSocket) return;
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws/import/" + encodeURIComponent(token) + "/");
    socket.onmessage = function (event) {
      var report;
      try { report = JSON.parse(event.data); } catch (error) { return; }
      if (report.phase === "checking") {
        var percent = report.size ? Math.floor(100 * report.bytes_read / report.size) : 0;
        show(report.bytes_read, report.size, "Checking the file… " + percent + "% (" +
          count(report.conversations) + " conversation" + (report.conversations === 1 ? "" : "s") + " so far)");
      } else if (report.phase === "writing") {
        show(report.conversations, report.total,
          "Imported " + count(report.conversations) + " of " + count(report.total) + " conversations…");
      }
    };
  }

  function stop() {
    if (socket) { socket.close(); socket = null; }
  }

  // The element that made the request: swap events name their target in detail.elt, and events
  // after the swap fire on the body once the form itself is gone.
  function isImportForm(event) {
    var detail = event.detail || {};
    var form = (detail.requestConfig && detail.requestConfig.elt) || detail.elt;
    return Boolean(form) && form.id === "import-form";
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    if (!isImportForm(event)) return;
    uploadDone = false;
    stop();
    var token = document.querySelector('#import-form input[name="progress"]');
    listen(token && token.value);
    show(0, 0, "Uploading…");
  });

  document.addEventListener("htmx:xhr:progress", function (event) {
    if (!isImportForm(event) || uploadDone || !event.detail.lengthComputable) return;
    var loaded = event.detail.loaded, total = event.detail.total;
    if (loaded >= total) {
      uploadDone = true; // the server's reports take over
      show(0, 0, "Uploaded; checking the file…");
      return;
    }
    show(loaded, total, "Uploading… " + Math.floor(100 * loaded / total) + "%");
  });

  // A refused file comes back as 400 with the page saying why: show it like any answer.
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (!isImportForm(event)) return;
    if (event.detail.xhr.status === 400) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    if (!isImportForm(event)) return;
    stop();
    if (!event.detail.successful && event.detail.xhr.status !== 400) {
      show(0, 1, "The import could not be completed (the connection failed or the server did not answer). Try again.");
    }
  });
})();
