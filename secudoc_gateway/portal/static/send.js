/*
 * "Send files" (SPEC 9): drag and drop, a progress bar per file and in
 * all, cancel.  Served from our own origin (the page's CSP allows no
 * other script and no inline one).  Without it the form posts as a plain
 * multipart form; with it the same fields go in the same order, by XHR,
 * so the upload's progress can be shown and the upload cancelled.
 */
(function () {
  "use strict";
  var form = document.getElementById("send-form");
  if (!form || !window.XMLHttpRequest || !window.FormData) {
    return;
  }
  var input = document.getElementById("files");
  var drop = document.getElementById("drop");
  var chosen = document.getElementById("chosen");
  var totalBox = document.getElementById("total");
  var totalBar = document.getElementById("total-progress");
  var status = document.getElementById("send-status");
  var errorBox = document.getElementById("send-error");
  var sendButton = document.getElementById("send-button");
  var cancelButton = document.getElementById("cancel-button");
  var max = parseInt(form.getAttribute("data-max"), 10);
  var files = [];
  var bars = [];
  var xhr = null;
  var lastAnnounced = -1;

  function text(name) {
    return form.getAttribute("data-msg-" + name) || "";
  }

  function showError(message) {
    errorBox.textContent = "";
    var p = document.createElement("p");
    p.textContent = message;
    errorBox.appendChild(p);
    errorBox.hidden = !message;
    if (message) {
      errorBox.scrollIntoView({block: "nearest"});
    }
  }

  function size(bytes) {
    var units = ["B", "KB", "MB", "GB"];
    var i = 0;
    while (bytes >= 1024 && i < units.length - 1) {
      bytes /= 1024;
      i += 1;
    }
    return (i ? bytes.toFixed(1) : String(bytes)) + " " + units[i];
  }

  function render() {
    chosen.textContent = "";
    bars = [];
    files.forEach(function (file, index) {
      var li = document.createElement("li");
      var row = document.createElement("div");
      row.className = "row";
      var name = document.createElement("span");
      name.className = "name";
      name.id = "file-" + index;
      name.textContent = file.name + " (" + size(file.size) + ")";
      row.appendChild(name);
      var remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = text("remove") + ": " + file.name;
      remove.addEventListener("click", function () {
        files.splice(index, 1);
        render();
      });
      row.appendChild(remove);
      li.appendChild(row);
      var bar = document.createElement("progress");
      bar.max = 100;
      bar.value = 0;
      bar.setAttribute("aria-labelledby", name.id);
      li.appendChild(bar);
      bars.push(bar);
      chosen.appendChild(li);
    });
  }

  function add(list) {
    for (var i = 0; i < list.length; i += 1) {
      files.push(list[i]);
    }
    render();
  }

  input.addEventListener("change", function () {
    add(input.files);
    input.value = "";
  });
  ["dragenter", "dragover"].forEach(function (name) {
    drop.addEventListener(name, function (event) {
      event.preventDefault();
      drop.classList.add("over");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    drop.addEventListener(name, function (event) {
      event.preventDefault();
      drop.classList.remove("over");
    });
  });
  drop.addEventListener("drop", function (event) {
    if (event.dataTransfer && event.dataTransfer.files) {
      add(event.dataTransfer.files);
    }
  });

  function busy(on) {
    sendButton.disabled = on;
    cancelButton.hidden = !on;
    totalBox.hidden = !on && totalBar.value === 0;
  }

  function progress(loaded, total) {
    // The body is the fields, then the files in order: map the bytes sent onto them.
    var overhead = Math.max(0, total - files.reduce(function (sum, f) { return sum + f.size; }, 0));
    var left = Math.max(0, loaded - overhead);
    files.forEach(function (file, index) {
      var done = Math.min(file.size, left);
      left -= done;
      bars[index].value = file.size ? Math.round(100 * done / file.size) : (loaded >= total ? 100 : 0);
    });
    var percent = total ? Math.floor(100 * loaded / total) : 0;
    totalBar.value = percent;
    if (percent >= lastAnnounced + 10 || percent === 100) {
      lastAnnounced = percent;
      status.textContent = text("uploading").replace("{percent}", String(percent));
    }
  }

  function failedWith(request) {
    if (request.status === 403) {
      return text("session");
    }
    if (request.status === 413) {
      return text("too-large");
    }
    var page = new DOMParser().parseFromString(request.responseText || "", "text/html");
    var alert = page.querySelector("[role=alert]");
    var said = alert ? alert.textContent.trim() : "";
    return said || text("error") + " " + request.status;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (xhr) {
      return;
    }
    showError("");
    var recipients = form.elements.recipients.value.trim();
    if (!recipients) {
      showError(text("no-recipients"));
      form.elements.recipients.focus();
      return;
    }
    if (!files.length) {
      showError(text("no-files"));
      input.focus();
      return;
    }
    var total = files.reduce(function (sum, f) { return sum + f.size; }, 0);
    if (total > max) {
      showError(text("too-large"));
      return;
    }
    var data = new FormData();
    ["csrf", "recipients", "subject", "message", "expiry_days"].forEach(function (name) {
      data.append(name, form.elements[name].value);
    });
    files.forEach(function (file) {
      data.append("file", file, file.name);
    });
    xhr = new XMLHttpRequest();
    lastAnnounced = -1;
    xhr.open("POST", form.action);
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        progress(e.loaded, e.total);
      }
    });
    xhr.upload.addEventListener("load", function () {
      status.textContent = text("processing");
    });
    xhr.addEventListener("load", function () {
      var request = xhr;
      xhr = null;
      if (request.status === 200 && /\/portal\/transfers\/[a-z2-7]+$/.test(request.responseURL)) {
        window.location.assign(request.responseURL);
        return;
      }
      busy(false);
      status.textContent = "";
      showError(failedWith(request));
    });
    xhr.addEventListener("error", function () {
      xhr = null;
      busy(false);
      status.textContent = "";
      showError(text("network"));
    });
    xhr.addEventListener("abort", function () {
      xhr = null;
      busy(false);
      totalBar.value = 0;
      bars.forEach(function (bar) { bar.value = 0; });
      status.textContent = text("cancelled");
    });
    busy(true);
    totalBox.hidden = false;
    xhr.send(data);
  });

  cancelButton.addEventListener("click", function () {
    if (xhr) {
      xhr.abort();
    }
  });
}());
