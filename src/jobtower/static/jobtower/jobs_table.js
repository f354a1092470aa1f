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
    if (!html) { row.remove(); return; }
    var holder = document.createElement("tbody");
    holder.innerHTML = html.trim();
    var fresh = holder.firstElementChild;
    if (fresh && row.outerHTML !== fresh.outerHTML) row.replaceWith(fresh);
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

  function start() {
    document.querySelectorAll("[data-jobtower-table]").forEach(setup);
    document.querySelectorAll("[data-jobtower-log]").forEach(follow);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
