// The coordination page: /json/coord as a table, once a second.
"use strict";
(function () {
  function who(p) {
    if (p.from < 0) return "client";
    return (p.task !== null ? "task " + p.task + " on " : "") +
      "worker " + p.from;
  }
  function cell(tr, text) {
    var td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
  }
  function now(p) {
    if (p.kind === "queue") return p.count + " items";
    if (p.kind === "lock" || p.kind === "semaphore") return p.count + " held";
    return p.count ? "set" : "not set";
  }
  function draw(data) {
    var body = document.querySelector("#coord tbody");
    body.textContent = "";
    data.primitives.sort(function (a, b) {
      return a.kind < b.kind ? -1 : a.kind > b.kind ? 1 :
        a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
    });
    data.primitives.forEach(function (p) {
      var tr = document.createElement("tr");
      cell(tr, p.kind);
      cell(tr, p.name);
      cell(tr, now(p));
      cell(tr, p.who.filter(function (x) { return x.op !== "holds"; })
        .map(function (x) { return who(x) + " (" + x.op + ")"; }).join(", "));
      cell(tr, p.who.filter(function (x) { return x.op === "holds"; })
        .map(function (x) { return who(x) + " #" + x.lease; }).join(", "));
      body.appendChild(tr);
    });
  }
  function tick() {
    fetch("/json/coord").then(function (r) { return r.json(); })
      .then(draw).catch(function () {});
  }
  tick();
  setInterval(tick, 1000);
})();
