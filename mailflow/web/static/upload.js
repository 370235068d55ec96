// The phone page: each chosen photo goes up in pieces (PUT /uploads/<id>, Upload-Offset),
// each answered with the bytes the server kept, so a dropped connection resumes from there;
// the upload's id is kept in sessionStorage, so choosing the same photo again after a reload
// resumes too. A finished photo's id goes into the form; "Send" posts the form.
(function () {
  "use strict";

  const RETRY_FIRST_MS = 400;
  const RETRY_MAX_MS = 15000;

  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  class Refused extends Error {}  // the server said no: trying again will not help

  // One request; resolves with the JSON answer. Network trouble and 5xx reject with Error
  // (try again), a refusal (4xx) with Refused and the server's words.
  function request(form, method, url, body, headers, onProgress) {
    return new Promise(function (resolve, reject) {
      const xhr = new XMLHttpRequest();
      xhr.open(method, url);
      xhr.setRequestHeader("X-CSRF-Token", form.dataset.csrf);
      Object.keys(headers || {}).forEach(function (k) { xhr.setRequestHeader(k, headers[k]); });
      if (onProgress) {
        xhr.upload.onprogress = function (e) { if (e.lengthComputable) onProgress(e.loaded); };
      }
      xhr.onload = function () {
        let answer = {};
        try { answer = JSON.parse(xhr.responseText || "{}"); } catch (e) { answer = {}; }
        if (xhr.status >= 200 && xhr.status < 300) resolve(answer);
        else if (xhr.status >= 400 && xhr.status < 500) {
          reject(new Refused(answer.detail || "The photo was not accepted."));
        } else reject(new Error("server " + xhr.status));
      };
      xhr.onerror = function () { reject(new Error("network")); };
      xhr.onabort = function () { reject(new Error("aborted")); };
      xhr.send(body);
    });
  }

  function Page(form) {
    this.form = form;
    this.chunk = parseInt(form.dataset.chunk, 10);
    this.maxFiles = parseInt(form.dataset.maxFiles, 10) || 10;
    this.caseNumber = form.dataset.case || null;
    this.send = form.querySelector("[data-send]");
    this.note = form.querySelector("[data-note]");
    this.tasks = [];
    const page = this;
    form.querySelectorAll("input[type=file][data-field]").forEach(function (input) {
      input.addEventListener("change", function () { page.chosen(input); });
    });
    form.addEventListener("submit", function (e) {
      if (page.busy() || (!page.ready() && !page.optional())) e.preventDefault();
      else page.send.disabled = true;  // once: a second tap would find the photos used up
    });
    this.update();
  }

  Page.prototype.optional = function () { return this.send.hasAttribute("data-optional"); };
  Page.prototype.live = function () { return this.tasks.filter(function (t) { return !t.gone; }); };
  Page.prototype.busy = function () {
    return this.live().some(function (t) { return t.state === "sending"; });
  };
  Page.prototype.ready = function () {
    return this.live().filter(function (t) { return t.state === "done"; }).length;
  };

  Page.prototype.update = function () {
    const sending = this.live().filter(function (t) { return t.state === "sending"; }).length;
    const ready = this.ready();
    this.send.disabled = sending > 0 || (!ready && !this.optional());
    if (sending) this.note.textContent = "Sending " + sending + (sending === 1 ? " photo…" : " photos…");
    else if (ready) this.note.textContent = ready + (ready === 1 ? " photo is" : " photos are") + " ready. Tap the button to send.";
  };

  Page.prototype.chosen = function (input) {
    const field = input.dataset.field;
    const list = input.closest(".shot").querySelector(".files");
    const page = this;
    if (field !== "additional") {  // a new photo for a view replaces the one chosen before
      this.live().filter(function (t) { return t.field === field; }).forEach(function (t) { t.drop(); });
    }
    Array.prototype.forEach.call(input.files, function (file) {
      if (page.live().length >= page.maxFiles) {
        page.note.textContent = "At most " + page.maxFiles + " photos at once.";
        return;
      }
      const task = new Task(page, field, file, list);
      page.tasks.push(task);
      task.run();
    });
    input.value = "";  // the same photo can be chosen again (to resume after a reload)
    this.update();
  };

  function Task(page, field, file, list) {
    this.page = page;
    this.field = field;
    this.file = file;
    this.state = "sending";
    this.gone = false;
    this.li = document.createElement("li");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = file.name || "photo";
    this.pct = document.createElement("span");
    this.pct.className = "pct";
    this.bar = document.createElement("progress");
    this.bar.max = file.size || 1;
    this.bar.value = 0;
    this.li.append(name, this.pct, this.bar);
    this.li.dataset.state = "sending";
    list.append(this.li);
    this.key = ["mailflow-upload", page.caseNumber || "new", field, file.name, file.size,
                file.lastModified].join("|");
  }

  Task.prototype.show = function (bytes, words) {
    this.bar.value = bytes;
    this.pct.textContent = words || Math.floor(100 * bytes / (this.file.size || 1)) + "%";
  };

  Task.prototype.drop = function () {
    this.gone = true;
    this.li.remove();
    if (this.hidden) this.hidden.remove();
  };

  Task.prototype.call = function (method, url, body, headers, onProgress) {
    return request(this.page.form, method, url, body, headers, onProgress);
  };

  Task.prototype.begin = async function () {
    const saved = sessionStorage.getItem(this.key);
    if (saved) {
      try {
        const known = await this.call("GET", "/uploads/" + encodeURIComponent(saved));
        return { id: saved, received: known.received };
      } catch (e) {
        if (!(e instanceof Refused)) throw e;
        sessionStorage.removeItem(this.key);  // expired or sent already: start again
      }
    }
    const started = await this.call("POST", "/uploads", JSON.stringify({
      field: this.field, name: this.file.name, type: this.file.type, size: this.file.size,
      case: this.page.caseNumber,
    }), { "Content-Type": "application/json" });
    sessionStorage.setItem(this.key, started.id);
    return { id: started.id, received: started.received };
  };

  Task.prototype.run = async function () {
    const task = this;
    let wait = RETRY_FIRST_MS;
    let at = null;
    while (!task.gone) {
      try {
        if (at === null) at = await task.begin();
        else if (at.stale) at = { id: at.id, received: (await task.call("GET", "/uploads/" + at.id)).received };
        if (at.received >= task.file.size) break;
        const start = at.received;
        const piece = task.file.slice(start, start + task.page.chunk);
        const kept = await task.call("PUT", "/uploads/" + at.id, piece,
          { "Upload-Offset": String(start), "Content-Type": "application/octet-stream" },
          function (loaded) { task.show(start + loaded); });
        at = { id: at.id, received: kept.received };
        task.show(kept.received);
        wait = RETRY_FIRST_MS;
      } catch (e) {
        if (e instanceof Refused) {
          task.fail(e.message);
          return;
        }
        // the connection dropped: ask what the server kept, then go on from there
        task.show(at ? at.received : 0, "waiting for the connection…");
        if (at) at.stale = true;
        await sleep(wait);
        wait = Math.min(wait * 2, RETRY_MAX_MS);
      }
    }
    if (task.gone) return;
    sessionStorage.removeItem(task.key);
    task.state = "done";
    task.li.dataset.state = "done";
    task.show(task.file.size, "ready");
    task.hidden = document.createElement("input");
    task.hidden.type = "hidden";
    task.hidden.name = "upload";
    task.hidden.value = at.id;
    task.page.form.append(task.hidden);
    task.page.update();
  };

  Task.prototype.fail = function (words) {
    this.state = "error";
    this.li.dataset.state = "error";
    this.pct.textContent = words;
    sessionStorage.removeItem(this.key);
    this.page.update();
  };

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form.uploader").forEach(function (form) { new Page(form); });
  });
})();
