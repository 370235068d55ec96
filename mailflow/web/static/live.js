// Live pages: the server says "something changed" on /events (server-sent events fed by the
// event bus); the page fetches itself again and swaps in its live regions, the elements marked
// data-live with an id. No data arrives by the event itself, so every view passes the same
// role checks as a page load. Without events (bus off, connection lost) a timer refreshes.
(function () {
  "use strict";
  var regions = document.querySelectorAll("[data-live][id]");
  var status = document.getElementById("live-status");
  if (!regions.length) {
    return;
  }
  var body = document.body;
  var caseId = body.getAttribute("data-case-id"); // a case page listens to its own case only
  var timerSeconds = parseInt(body.getAttribute("data-live-timer") || "0", 10);
  var pending = null;
  var busy = false;
  var again = false;

  function show(text, state) {
    if (status) {
      status.textContent = text;
      status.setAttribute("data-state", state);
    }
  }

  function clock() {
    var d = new Date();
    return d.toTimeString().slice(0, 8);
  }

  // A region where someone is typing is left alone until they are done.
  function dirty(region) {
    var fields = region.querySelectorAll("input, textarea, select");
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      if (f === document.activeElement && f.type !== "submit") {
        return true;
      }
      if ((f.tagName === "TEXTAREA" || f.type === "text") && f.value !== f.defaultValue) {
        return true;
      }
    }
    return false;
  }

  function keys(region) {
    var seen = {};
    var rows = region.querySelectorAll("[data-key]");
    for (var i = 0; i < rows.length; i++) {
      seen[rows[i].getAttribute("data-key")] = true;
    }
    return seen;
  }

  function swap(doc) {
    var skipped = false;
    for (var i = 0; i < regions.length; i++) {
      var here = regions[i];
      var there = doc.getElementById(here.id);
      if (!there) {
        continue;
      }
      if (dirty(here)) {
        skipped = true;
        continue;
      }
      var before = keys(here);
      var open = {};
      var details = here.querySelectorAll("details[id]");
      for (var j = 0; j < details.length; j++) {
        open[details[j].id] = details[j].open;
      }
      here.innerHTML = there.innerHTML;
      for (var id in open) {
        var d = document.getElementById(id);
        if (d) {
          d.open = open[id];
        }
      }
      var rows = here.querySelectorAll("[data-key]");
      for (var k = 0; k < rows.length; k++) {
        if (!before[rows[k].getAttribute("data-key")]) {
          rows[k].classList.add("fresh"); // new since the last look: highlighted briefly
        }
      }
    }
    var title = doc.querySelector("title");
    if (title) {
      document.title = title.textContent;
    }
    return skipped;
  }

  function refresh() {
    pending = null;
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Live": "1" } })
      .then(function (response) {
        if (response.redirected || response.status === 401) {
          window.location.reload(); // signed out: let the server send us to sign in
          return null;
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        if (html === null) {
          return;
        }
        var doc = new DOMParser().parseFromString(html, "text/html");
        if (swap(doc)) {
          schedule(5000);
        }
        show("live · updated " + clock(), "live");
      })
      .catch(function () {
        show("offline · retrying", "offline");
      })
      .then(function () {
        busy = false;
        if (again) {
          again = false;
          schedule(250);
        }
      });
  }

  function schedule(delay) {
    if (pending === null) {
      pending = window.setTimeout(refresh, delay);
    }
  }

  if (timerSeconds > 0) {
    window.setInterval(function () { schedule(0); }, timerSeconds * 1000);
  }

  if (!window.EventSource) {
    show("refreshing every minute", "timer");
    return;
  }
  var source = new EventSource("/events");
  var hellos = 0;
  source.addEventListener("hello", function (e) {
    hellos += 1;
    if (hellos > 1) {
      schedule(0); // back after a reconnect: what changed meanwhile was not announced to us
    }
    var hello = {};
    try {
      hello = JSON.parse(e.data);
    } catch (_err) {
      hello = {};
    }
    if (hello.live) {
      show("live", "live");
    } else {
      show("refreshing every minute", "timer"); // no broker yet: the timer keeps it fresh
    }
  });
  source.addEventListener("change", function (e) {
    var data = {};
    try {
      data = JSON.parse(e.data);
    } catch (_err) {
      return;
    }
    if (caseId && String(data.case_id) !== caseId) {
      return; // each refetch of a case page is an audited read: only for this case's changes
    }
    schedule(250); // a burst of changes becomes one fetch
  });
  source.addEventListener("signed-out", function () {
    source.close();
    window.location.reload();
  });
  source.onerror = function () {
    if (source.readyState === EventSource.CLOSED) {
      show("refreshing every minute", "timer"); // live updates are off on this server
    } else {
      show("reconnecting…", "offline");
    }
  };
})();
