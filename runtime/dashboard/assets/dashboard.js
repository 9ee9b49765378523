// dlua dashboard: polls the scheduler's JSON every 500 ms and redraws the
// page in place.  Plain DOM and SVG; no libraries, no network beyond the
// scheduler itself.
(function () {
  "use strict";
  var PERIOD = 500;
  var WINDOW = 10; // seconds of task stream shown
  var page = document.body.getAttribute("data-page");

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  var SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  function bytes(n) {
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    n = Number(n) || 0;
    while (Math.abs(n) >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(n < 10 ? 2 : 1) : String(n)) + " " + u[i];
  }

  function seconds(s) {
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }

  function pct(part, whole) {
    return whole > 0 ? Math.max(0, Math.min(100, 100 * part / whole)) : 0;
  }

  // A stable colour per task group name.
  var colours = {};
  function colour(name) {
    if (!colours[name]) {
      var h = 0;
      for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
      colours[name] = "hsl(" + (h % 360) + ",62%,52%)";
    }
    return colours[name];
  }

  function getJSON(url) {
    return fetch(url, { cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error(url + ": " + r.status);
      return r.json();
    });
  }

  // Run step every PERIOD ms; the dot in the header shows whether the
  // scheduler still answers.
  function every(step) {
    function go() {
      step().then(function () {
        $("live").className = "live";
      }, function () {
        $("live").className = "live stale";
      }).then(function () { setTimeout(go, PERIOD); });
    }
    go();
  }

  $("where").textContent = location.host;

  // ------------------------------------------------------------ status

  function bar(parts, total) {
    var b = el("div", { "class": "bar" });
    parts.forEach(function (p) {
      var w = pct(p[1], total);
      if (w > 0) {
        var s = el("div", { "class": "seg-" + p[0], title: p[0] + ": " + p[1] });
        s.style.width = w + "%";
        b.appendChild(s);
      }
    });
    return b;
  }

  function drawCounts(c) {
    var box = $("counts");
    box.textContent = "";
    [["waiting", c.waiting + c.ready], ["processing", c.processing],
     ["in memory", c.memory], ["erred", c.erred], ["released", c.released]]
      .forEach(function (kv) {
        var d = el("div", { "class": "c", "data-state": kv[0] });
        d.appendChild(el("b", {}, String(kv[1])));
        d.appendChild(el("span", {}, kv[0]));
        box.appendChild(d);
      });
  }

  function drawGroups(groups) {
    var box = $("groups");
    box.textContent = "";
    if (!groups.length) { box.appendChild(el("p", { "class": "empty" }, "No tasks yet.")); return; }
    groups.forEach(function (g) {
      var d = el("div", { "class": "group", "data-group": g.name,
                          "data-done": g.done, "data-total": g.total });
      var label = el("div", { "class": "label" });
      label.appendChild(el("span", { "class": "name" }, g.name));
      label.appendChild(el("span", { "class": "nums" },
        g.done + " / " + g.total + " done" +
        (g.processing ? " \u00b7 " + g.processing + " processing" : "") +
        (g.waiting + g.ready ? " \u00b7 " + (g.waiting + g.ready) + " waiting" : "") +
        (g.erred ? " \u00b7 " + g.erred + " erred" : "")));
      d.appendChild(label);
      var done = Math.max(0, g.done - g.failed);
      d.appendChild(bar([["memory", done], ["erred", g.erred],
                         ["processing", g.processing],
                         ["waiting", g.waiting + g.ready]], g.total));
      box.appendChild(d);
    });
  }

  function drawMemory(workers) {
    var box = $("memory");
    box.textContent = "";
    if (!workers.length) { box.appendChild(el("p", { "class": "empty" }, "No workers.")); return; }
    workers.forEach(function (w) {
      var d = el("div", { "class": "group worker-mem", "data-worker": w.id,
                          "data-rss": w.rss, "data-managed": w.managed });
      var label = el("div", { "class": "label" });
      label.appendChild(el("span", { "class": "name" }, "worker " + w.id));
      label.appendChild(el("span", { "class": "nums" },
        "managed " + bytes(w.managed) + " \u00b7 process " + bytes(w.rss) +
        " \u00b7 spilled " + bytes(w.spilled) + " \u00b7 limit " + bytes(w.limit)));
      d.appendChild(label);
      var unmanaged = Math.max(0, w.rss - w.managed);
      d.appendChild(bar([["memory", w.managed], ["process", unmanaged],
                         ["spilled", w.spilled]], w.limit));
      box.appendChild(d);
    });
  }

  var stream = { next: 0, events: [], workers: [], skew: 0 };

  function drawStream() {
    var s = $("stream");
    var rows = stream.workers.length || 1;
    var rowH = 22, top = 4, left = 70, width = 1000;
    var height = top + rows * rowH + 18;
    s.setAttribute("viewBox", "0 0 " + width + " " + height);
    s.style.aspectRatio = width + " / " + height;
    s.textContent = "";
    var now = performance.now() / 1000 + stream.skew;
    var t0 = now - WINDOW;
    var scale = (width - left - 4) / WINDOW;
    var rowOf = {};
    stream.workers.forEach(function (id, i) {
      rowOf[id] = i;
      s.appendChild(svg("rect", { "class": "row", x: left, y: top + i * rowH,
                                  width: width - left - 4, height: rowH - 4 }));
      var t = svg("text", { x: 4, y: top + i * rowH + 13 });
      t.textContent = "worker " + id;
      s.appendChild(t);
    });
    var shown = {}, n = 0;
    for (var i = stream.events.length - 1; i >= 0 && n < 4000; i--) {
      var e = stream.events[i];
      if (e.stop < t0) break;
      var r = rowOf[e.worker];
      if (r === undefined) continue;
      var x = left + Math.max(0, e.start - t0) * scale;
      var w = Math.max(1, (e.stop - Math.max(e.start, t0)) * scale);
      s.appendChild(svg("rect", {
        "class": "task", x: x.toFixed(1), y: top + r * rowH + 2,
        width: w.toFixed(1), height: rowH - 8,
        fill: e.ok ? colour(e.group) : "#000"
      }));
      shown[e.group] = true;
      n++;
    }
    for (var k = 0; k <= WINDOW; k += 2) {
      var lab = svg("text", { x: left + k * scale - (k === WINDOW ? 28 : 0),
                              y: height - 4 });
      lab.textContent = k === WINDOW ? "now" : "-" + (WINDOW - k) + " s";
      s.appendChild(lab);
    }
    s.setAttribute("data-tasks", n);
    var leg = $("stream-legend");
    leg.textContent = "";
    Object.keys(shown).sort().forEach(function (g) {
      var sp = el("span");
      var dot = el("i");
      dot.style.background = colour(g);
      sp.appendChild(dot);
      sp.appendChild(document.createTextNode(g));
      leg.appendChild(sp);
    });
  }

  function statusStep() {
    return Promise.all([
      getJSON("/json/status"),
      getJSON("/json/stream?since=" + stream.next)
    ]).then(function (r) {
      var st = r[0], ev = r[1];
      drawCounts(st.counts);
      drawGroups(st.groups);
      drawMemory(st.workers);
      stream.workers = st.workers.map(function (w) { return w.id; });
      stream.skew = ev.now - performance.now() / 1000;
      stream.next = ev.next;
      Array.prototype.push.apply(stream.events, ev.events);
      var cut = ev.now - WINDOW - 1, drop = 0;
      while (drop < stream.events.length && stream.events[drop].stop < cut) drop++;
      if (drop) stream.events.splice(0, drop);
      if (stream.events.length > 20000) stream.events.splice(0, stream.events.length - 20000);
      drawStream();
    });
  }

  // ------------------------------------------------------------ workers

  function workersStep() {
    return getJSON("/json/workers").then(function (r) {
      var tb = document.querySelector("#workers tbody");
      tb.textContent = "";
      $("nworkers").textContent = r.workers.length + " running";
      r.workers.forEach(function (w) {
        var tr = el("tr", { "data-worker": w.id });
        [[w.id], [w.address, "addr"], [w.pid, "num"], [w.cores, "num"],
         [bytes(w.memory.rss), "num"], [bytes(w.memory.managed), "num"],
         [bytes(w.memory.spilled), "num"], [bytes(w.memory.limit), "num"],
         [w.tasks.running, "num"], [w.tasks.processing, "num"],
         [w.tasks.stored, "num"], [seconds(w.uptime), "num"]]
          .forEach(function (c) {
            tr.appendChild(el("td", c[1] ? { "class": c[1] } : {}, String(c[0])));
          });
        tb.appendChild(tr);
      });
    });
  }

  // ------------------------------------------------------------ info

  function fill(dl, pairs) {
    dl.textContent = "";
    pairs.forEach(function (p) {
      dl.appendChild(el("dt", {}, p[0]));
      dl.appendChild(el("dd", {}, String(p[1])));
    });
  }

  function infoStep() {
    return getJSON("/json/info").then(function (r) {
      fill($("cluster"), [
        ["Scheduler", r.scheduler], ["Dashboard", "http://" + r.dashboard + "/status"],
        ["Processes", r.processes ? "yes" : "no"], ["Workers", r.workers],
        ["Total threads", r.threads], ["Total memory", bytes(r.memory_total)]
      ]);
      fill($("versions"), [["dlua", r.versions.dlua], ["Lua", r.versions.lua],
                           ["libuv", r.versions.libuv]]);
      var tb = document.querySelector("#permem tbody");
      tb.textContent = "";
      r.memory_per_worker.forEach(function (w) {
        var tr = el("tr");
        tr.appendChild(el("td", {}, "worker " + w.id));
        tr.appendChild(el("td", { "class": "num" }, bytes(w.limit)));
        tb.appendChild(tr);
      });
    });
  }

  every({ status: statusStep, workers: workersStep, info: infoStep }[page]);
})();
