// jobtower Jobs Table: live rows (one request per refresh for all visible active rows, paused while
// the tab is hidden) and actions over POST with the CSRF token, without reloading the page.
(function () {
  "use strict";

  function csrfToken(form) {
    var input = form && form.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    var match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function replaceRow(table, id, html) {
    var row = table.querySelector('tr[data-job-id="' + id + '"]');
    if (!row) return;
    var oldNodes = table.querySelector('tr[data-parent-job="' + id + '"]');
    if (!html) { row.remove(); if (oldNodes) oldNodes.remove(); return; }
    var holder = document.createElement("tbody");
    holder.innerHTML = html.trim();
    var fresh = holder.firstElementChild;
    // A workflow's row is followed by the row of its nodes: it stays open if the user opened it.
    var nodes = fresh && fresh.nextElementSibling;
    if (nodes && oldNodes && !oldNodes.hidden) {
      nodes.hidden = false;
      var toggle = fresh.querySelector("[data-jt-expand]");
      if (toggle) { toggle.setAttribute("aria-expanded", "true"); toggle.textContent = toggle.textContent.replace("▸", "▾"); }
    }
    if (fresh && row.outerHTML !== fresh.outerHTML) {
      // Keyboard users keep their place: a focused button is found again in the new row.
      var focused = row.contains(document.activeElement) ? focusKey(document.activeElement) : null;
      row.replaceWith(fresh); row = fresh;
      if (focused) refocus(fresh, focused);
    }
    if (nodes) {
      if (!oldNodes) row.after(nodes);
      else if (oldNodes.outerHTML !== nodes.outerHTML) oldNodes.replaceWith(nodes);
    } else if (oldNodes) oldNodes.remove();
  }

  function focusKey(element) {
    var keys = ["data-jt-action", "data-action", "data-jt-expand"];
    for (var i = 0; i < keys.length; i++) {
      if (element.hasAttribute(keys[i])) return "[" + keys[i] + '="' + CSS.escape(element.getAttribute(keys[i])) + '"]';
    }
    return null;
  }

  function refocus(container, selector) {
    var again = container.querySelector(selector);
    if (again) again.focus({ preventScroll: true });
  }

  function patch(box, html) {
    // Swap a fragment only when it changed, and give the focus back to the same control.
    if (box.innerHTML === html) return;
    var holder = document.createElement("div");
    holder.innerHTML = html;
    if (box.innerHTML === holder.innerHTML) return;
    var focused = box.contains(document.activeElement) ? focusKey(document.activeElement) : null;
    box.innerHTML = html;   // built by the server, every value escaped
    if (focused) refocus(box, focused);
  }

  function setupJob(page) {
    // The job page: one request per refresh returns every changing part; it stops once the job ended.
    var interval = parseInt(page.dataset.interval, 10) || 2000;
    var busy = false;
    var timer = null;
    function say(text) { var box = page.querySelector(".jobtower-message"); if (box) box.textContent = text || ""; }
    function refresh() {
      timer = null;
      if (busy) return;
      if (document.hidden) { document.addEventListener("visibilitychange", refresh, { once: true }); return; }
      busy = true;
      fetch(page.dataset.refreshUrl, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          if (response.status === 404) { window.location = page.dataset.homeUrl; return null; }
          return response.ok ? response.json() : null;
        })
        .then(function (data) {
          if (!data) return;
          Object.keys(data.html).forEach(function (key) {
            var box = page.querySelector('[data-jt-fragment="' + key + '"]');
            if (box) patch(box, data.html[key]);
          });
          Object.keys(data.logs || {}).forEach(function (stream) {
            var pre = page.querySelector('[data-jt-log="' + CSS.escape(stream) + '"]');
            if (pre && pre.textContent !== data.logs[stream]) {
              var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
              pre.textContent = data.logs[stream];   // textContent: log text is never parsed as HTML
              if (atEnd) pre.scrollTop = pre.scrollHeight;
            }
          });
          page.dataset.active = data.active ? "1" : "0";
        })
        .catch(function () { /* the next refresh tries again */ })
        .finally(function () { busy = false; schedule(); });
    }
    function schedule() {
      if (page.dataset.active === "1" && timer === null) timer = window.setTimeout(refresh, interval);
    }
    page.addEventListener("submit", function (event) {
      var form = event.target;
      var button = event.submitter;
      if (!button || !button.dataset.jtAction) return;
      event.preventDefault();
      if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
      fetch(button.formAction, {
        method: "POST", body: new FormData(form),
        headers: { Accept: "application/json", "X-CSRFToken": csrfToken(form) }, credentials: "same-origin"
      })
        .then(function (response) { return response.json().then(function (data) { return [response, data]; }); })
        .then(function (pair) {
          if (!pair[0].ok) { say(pair[1].error); return; }
          say("");
          if (button.dataset.jtAction === "delete") { window.location = page.dataset.homeUrl; return; }
          page.dataset.active = "1";
          if (timer !== null) { window.clearTimeout(timer); timer = null; }
          refresh();
        })
        .catch(function (error) { say("The action failed: " + error); });
    });
    schedule();
  }

  function expand(table, button) {
    var nodes = table.querySelector('tr[data-parent-job="' + button.dataset.jtExpand + '"]');
    if (!nodes) return;
    nodes.hidden = !nodes.hidden;
    button.setAttribute("aria-expanded", nodes.hidden ? "false" : "true");
    button.textContent = button.textContent.replace(nodes.hidden ? "▾" : "▸", nodes.hidden ? "▸" : "▾");
  }

  function say(table, text) {
    var box = table.querySelector(".jobtower-message");
    if (box) box.textContent = text || "";
  }

  function setup(table) {
    var interval = parseInt(table.dataset.interval, 10) || 5000;
    var busy = false;

    function refresh() {
      if (busy || document.hidden) return;
      var ids = Array.prototype.map.call(
        table.querySelectorAll("tr[data-active]"), function (row) { return row.dataset.jobId; });
      if (!ids.length) return;
      busy = true;
      var url = table.dataset.refreshUrl + "?" + new URLSearchParams({
        config: table.dataset.config, ids: ids.join(","), next: location.pathname + location.search
      });
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (data) {
          if (!data) return;
          ids.forEach(function (id) { replaceRow(table, id, data.rows[id]); });
        })
        .catch(function () { /* the next refresh tries again */ })
        .finally(function () { busy = false; });
    }

    table.addEventListener("click", function (event) {
      var button = event.target.closest && event.target.closest("[data-jt-expand]");
      if (button) expand(table, button);
    });

    table.addEventListener("submit", function (event) {
      var form = event.target;
      var button = event.submitter;
      if (!form.matches(".jobtower-actions-form") || !button || !button.dataset.jtAction) return;
      event.preventDefault();
      if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
      var row = button.closest("tr");
      fetch(button.formAction, {
        method: "POST",
        body: new FormData(form),
        headers: { Accept: "application/json", "X-CSRFToken": csrfToken(form) },
        credentials: "same-origin"
      })
        .then(function (response) { return response.json().then(function (data) { return [response, data]; }); })
        .then(function (pair) {
          var data = pair[1];
          say(table, pair[0].ok ? "" : data.error);
          if (pair[0].ok && row) replaceRow(table, row.dataset.jobId, data.row);
        })
        .catch(function (error) { say(table, "The action failed: " + error); });
    });

    document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
    window.setInterval(refresh, interval);
  }

  function follow(viewer) {
    // Logs: the tail first, then what is appended, while the job is active.
    var offset = -1;
    var pre = viewer.querySelector("pre");
    function more() {
      var url = viewer.dataset.url + "?" + new URLSearchParams({ stream: viewer.dataset.stream, offset: offset });
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) { return response.json(); })
        .then(function (data) {
          if (offset < 0 && data.skipped) pre.textContent = "[... " + data.skipped + " earlier bytes not shown ...]\n";
          pre.textContent += data.text;   // textContent: log text is never parsed as HTML
          offset = data.offset;
          if (data.active && !document.hidden) window.setTimeout(more, 2000);
          else if (data.active) document.addEventListener("visibilitychange", more, { once: true });
        });
    }
    more();
  }

  function liveDag(box) {
    // A workflow's DAG picture: drawn by the server from stored statuses, fetched again while active.
    function again() {
      if (box.dataset.active !== "1") return;
      if (document.hidden) { document.addEventListener("visibilitychange", again, { once: true }); return; }
      fetch(box.dataset.url, { credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          if (!response.ok) return null;
          box.dataset.active = response.headers.get("X-Jobtower-Active") || "0";
          return response.text();
        })
        .then(function (svg) { if (svg) box.innerHTML = svg; })   // built by the server, every value escaped
        .catch(function () { /* the next round tries again */ })
        .finally(function () { window.setTimeout(again, parseInt(box.dataset.interval, 10) || 2000); });
    }
    window.setTimeout(again, parseInt(box.dataset.interval, 10) || 2000);
  }

  function start() {
    document.querySelectorAll("[data-jobtower-dag]").forEach(liveDag);
    document.querySelectorAll("[data-jobtower-table]").forEach(setup);
    document.querySelectorAll("[data-jobtower-log]").forEach(follow);
    document.querySelectorAll("[data-jobtower-job]").forEach(setupJob);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
