// localhub console: the few live parts. Every page reads fine without this file.
"use strict";
(function () {
  // Live telemetry: the hub's event stream, relayed by the console for this device.
  var table = document.getElementById("telemetry");
  if (table && window.EventSource) {
    var hint = document.querySelector(".js-only");
    if (hint) hint.hidden = false;
    var body = table.querySelector("tbody");
    var es = new EventSource(table.dataset.src);
    es.onopen = function () { table.dataset.open = "true"; };
    es.onmessage = function (e) {
      var m = JSON.parse(e.data);
      var tr = document.createElement("tr");
      [String(m.seq), m.time, m.body].forEach(function (text) {
        var td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      });
      tr.className = "telemetry-row";
      body.insertBefore(tr, body.firstChild);
      while (body.rows.length > 50) body.deleteRow(body.rows.length - 1);
    };
  }

  // Live sections: while an element #live has data-live, refetch this page
  // every data-live milliseconds and swap the section in.
  function poll() {
    var live = document.getElementById("live");
    if (!live || !live.dataset.live) return;
    setTimeout(function () {
      fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          var next = new DOMParser().parseFromString(html, "text/html").getElementById("live");
          if (next) live.replaceWith(next);
        })
        .catch(function () {})
        .finally(poll);
    }, Number(live.dataset.live) || 1000);
  }
  poll();
})();
