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

  // A colour per task group, from 12 colours that stay apart for every
  // eye (Paul Tol's bright and muted schemes, reds left out for failures).
  // The scheduler picks a group's slot when the group appears, unlike any
  // other live group's (/json/status "colour"), so a group keeps its colour
  // on every page; a name it no longer knows falls back to its hash.
  var PALETTE = ["#4477aa", "#ee7733", "#228833", "#aa3377", "#66ccee",
                 "#ccbb44", "#332288", "#cc6677", "#44aa99", "#882255",
                 "#999933", "#bbbbbb"];
  var slots = {};
  function colour(name) {
    if (slots[name] === undefined) {
      var h = 2166136261;
      var b = unescape(encodeURIComponent(name));
      for (var i = 0; i < b.length; i++) h = Math.imul(h ^ b.charCodeAt(i), 16777619) >>> 0;
      return PALETTE[h % PALETTE.length];
    }
    return PALETTE[slots[name] % PALETTE.length];
  }
  function learnColours(groups) {
    slots = {};
    groups.forEach(function (g) { slots[g.name] = g.colour; });
  }

  // One tooltip for the page: any element with a data-tip attribute (or a
  // tip function registered in tips by its data-tipid) shows it on hover.
  var tips = {}, tipSeq = 0;
  function tipFor(e, f) {
    var id = "t" + (++tipSeq);
    tips[id] = f;
    e.setAttribute("data-tipid", id);
    return e;
  }
  var tipBox = el("div", { id: "tip", "class": "tip" });
  document.body.appendChild(tipBox);
  document.addEventListener("mouseover", function (ev) {
    var t = ev.target.closest ? ev.target.closest("[data-tipid]") : null;
    if (ev.target.closest && ev.target.closest("svg.stream")) return;
    if (!t || !tips[t.getAttribute("data-tipid")]) { tipBox.style.display = "none"; return; }
    showTip(tips[t.getAttribute("data-tipid")]());
  });
  function showTip(rows) {
    tipBox.textContent = "";
    rows.forEach(function (r) {
      var d = el("div");
      d.appendChild(el("b", {}, r[0] + " "));
      d.appendChild(document.createTextNode(String(r[1])));
      if (r[2]) d.className = r[2];
      tipBox.appendChild(d);
    });
    tipBox.style.display = "block";
  }
  function hideTip() { tipBox.style.display = "none"; }
  document.addEventListener("mousemove", function (ev) {
    if (tipBox.style.display !== "block") return;
    var x = ev.clientX + 14, y = ev.clientY + 14;
    if (x + tipBox.offsetWidth > window.innerWidth - 4) x = ev.clientX - tipBox.offsetWidth - 10;
    if (y + tipBox.offsetHeight > window.innerHeight - 4) y = ev.clientY - tipBox.offsetHeight - 10;
    tipBox.style.left = x + "px";
    tipBox.style.top = y + "px";
  });

  function ms(s) {
    return s < 1 ? (s * 1000).toFixed(s < 0.01 ? 2 : 1) + " ms" : s.toFixed(2) + " s";
  }

  // The rows of a task's details (an event of /json/stream).
  function taskRows(e, now) {
    var rows = [["key", e.key], ["group", e.group], ["worker", e.worker],
                ["start", page === "report" ? "+" + ms(e.start - stream.start) + " into the report"
                                            : (now - e.start).toFixed(2) + " s ago"]];
    if (e.ok || e.stop > e.start) rows.push(["duration", ms(e.stop - e.start)]);
    if (e.ok) rows.push(["bytes", bytes(e.bytes)]);
    else rows.push(["error", e.error || "(no message)", "err"]);
    return rows;
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

  if (page !== "report") $("where").textContent = location.host;

  // ------------------------------------------------------------ status

  // A bar of segments [[class, value, tip function or undefined], ...]
  // scaled to total.
  function bar(parts, total) {
    var b = el("div", { "class": "bar" });
    parts.forEach(function (p) {
      var w = pct(p[1], total);
      if (w > 0) {
        var s = el("div", { "class": "seg-" + p[0], "data-seg": p[0], "data-value": p[1] });
        s.style.width = w + "%";
        if (p[2]) tipFor(s, p[2]);
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

  // The last event of each group, and its last failure, from the stream.
  function lastOf(group, ok) {
    for (var i = stream.events.length - 1; i >= 0; i--) {
      var e = stream.events[i];
      if (e.group === group && e.ok === ok) return e;
    }
    return lastSeen[group + (ok ? "+" : "-")];
  }
  var lastSeen = {};

  // The progress of each group; its segments partition its tasks:
  // done (in memory + released) + erred + processing + waiting = total.
  function drawGroups(groups) {
    var box = $("groups");
    box.textContent = "";
    if (!groups.length) { box.appendChild(el("p", { "class": "empty" }, "No tasks yet.")); return; }
    groups.forEach(function (g) {
      var waiting = g.waiting + g.ready;
      var d = el("div", { "class": "group", "data-group": g.name,
                          "data-done": g.done, "data-total": g.total,
                          "data-erred": g.erred, "data-processing": g.processing,
                          "data-waiting": waiting });
      var label = el("div", { "class": "label" });
      var name = el("span", { "class": "name" });
      var dot = el("i", { "class": "dot" });
      dot.style.background = colour(g.name);
      name.appendChild(dot);
      name.appendChild(document.createTextNode(g.name));
      label.appendChild(name);
      label.appendChild(el("span", { "class": "nums" },
        g.done + " / " + g.total + " done" +
        (g.erred ? " \u00b7 " + g.erred + " erred" : "") +
        (g.processing ? " \u00b7 " + g.processing + " processing" : "") +
        (waiting ? " \u00b7 " + waiting + " waiting" : "")));
      d.appendChild(label);
      function tip(state, n, ok) {
        return function () {
          var rows = [["group", g.name], [state, n + " of " + g.total]];
          var e = ok === undefined ? null : lastOf(g.name, ok);
          if (e) {
            rows.push(["latest " + (ok ? "done" : "failure") + ":", ""]);
            return rows.concat(taskRows(e, stream.now()));
          }
          return rows;
        };
      }
      d.appendChild(bar([["memory", g.memory, tip("in memory", g.memory, true)],
                         ["released", g.released, tip("done, released", g.released, true)],
                         ["erred", g.erred, tip("erred", g.erred, false)],
                         ["processing", g.processing, tip("processing", g.processing)],
                         ["waiting", waiting, tip("waiting", waiting)]], g.total));
      box.appendChild(d);
    });
  }

  // Worker memory the way Dask draws it: process memory split into
  // managed (stored results) and unmanaged (the rest of the process), then
  // spilled bytes (on disk, not counted against the limit) in grey; the
  // scale is the larger of the limit and memory + spilled, with a mark at
  // the limit.  The bar turns orange past the spill fraction and red when
  // the worker is paused or past the pause fraction.
  function drawMemory(workers, fr) {
    var box = $("memory");
    box.textContent = "";
    fr = fr || { spill: 0.7, pause: 0.8 };
    if (!workers.length) { box.appendChild(el("p", { "class": "empty" }, "No workers.")); return; }
    workers.forEach(function (w) {
      var unmanaged = Math.max(0, w.rss - w.managed);
      var process = w.managed + unmanaged;
      var level = w.status === "paused" || process >= fr.pause * w.limit ? "high"
                : process >= fr.spill * w.limit ? "warn" : "ok";
      var d = el("div", { "class": "group worker-mem mem-" + level, "data-worker": w.id,
                          "data-rss": w.rss, "data-managed": w.managed,
                          "data-spilled": w.spilled, "data-level": level });
      var label = el("div", { "class": "label" });
      label.appendChild(el("span", { "class": "name" }, "worker " + w.id));
      label.appendChild(el("span", { "class": "nums" },
        "managed " + bytes(w.managed) + " \u00b7 unmanaged " + bytes(unmanaged) +
        " \u00b7 spilled " + bytes(w.spilled) + " \u00b7 limit " + bytes(w.limit)));
      d.appendChild(label);
      var scale = Math.max(w.limit, process + w.spilled);
      function tip() {
        return [["worker", w.id], ["managed", bytes(w.managed) + " (" + w.stored + " results)"],
                ["unmanaged", bytes(unmanaged)], ["process", bytes(process) + " = " +
                 pct(process, w.limit).toFixed(0) + "% of the limit"],
                ["spilled", bytes(w.spilled) + " on disk"], ["limit", bytes(w.limit)]];
      }
      var b = bar([["managed", w.managed, tip], ["unmanaged", unmanaged, tip],
                   ["spilled", w.spilled, tip]], scale);
      var mark = el("span", { "class": "limit" });
      mark.style.left = "calc(" + pct(w.limit, scale) + "% - 1px)";
      b.appendChild(mark);
      d.appendChild(b);
      box.appendChild(d);
    });
  }

  var stream = { next: 0, events: [], workers: [], skew: 0,
                 now: function () { return performance.now() / 1000 + stream.skew; } };

  function drawStream() {
    var s = $("stream");
    var rows = stream.workers.length || 1;
    var rowH = 22, top = 4, left = 70, width = 1000;
    var height = top + rows * rowH + 18;
    s.setAttribute("viewBox", "0 0 " + width + " " + height);
    s.style.aspectRatio = width + " / " + height;
    s.textContent = "";
    var now = stream.now();
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
    var shown = {}, n = 0, byRow = {};
    stream.layout = { t0: t0, scale: scale, left: left, top: top, rowH: rowH,
                      byRow: byRow, now: now };
    var cap = page === "report" ? 20000 : 4000;
    for (var i = stream.events.length - 1; i >= 0 && n < cap; i--) {
      var e = stream.events[i];
      if (e.stop < t0) break;
      var r = rowOf[e.worker];
      if (r === undefined) continue;
      var x = left + Math.max(0, e.start - t0) * scale;
      var w = Math.max(1, (e.stop - Math.max(e.start, t0)) * scale);
      var rect = svg("rect", {
        "class": e.ok ? "task" : "task failed", x: x.toFixed(1), y: top + r * rowH + 2,
        width: w.toFixed(1), height: rowH - 8, "data-key": e.key,
        fill: e.ok ? colour(e.group) : "#111"
      });
      s.appendChild(rect);
      (byRow[r] = byRow[r] || []).push(e);
      shown[e.group] = true;
      n++;
    }
    for (var k = 0; k <= 5; k++) {
      var at = WINDOW * k / 5;
      var lab = svg("text", { x: left + at * scale - (k === 5 ? 28 : 0), y: height - 4 });
      lab.textContent = page === "report" ? (k === 5 ? "end" : k ? "+" + ms(at) : "start")
                      : k === 5 ? "now" : "-" + Math.round(WINDOW - at) + " s";
      s.appendChild(lab);
    }
    s.setAttribute("data-tasks", n);
    var leg = $("stream-legend");
    leg.textContent = "";
    Object.keys(shown).sort().forEach(function (g) {
      var sp = el("span", { "data-group": g, "data-colour": colour(g) });
      var dot = el("i");
      dot.style.background = colour(g);
      sp.appendChild(dot);
      sp.appendChild(document.createTextNode(g));
      leg.appendChild(sp);
    });
  }

  // Hovering the stream shows the task under the pointer, or the nearest
  // one within 4 px in that row: most bars are a pixel or two wide.
  function streamHover(ev) {
    var s = $("stream"), L = stream.layout;
    if (!L || !s.getScreenCTM()) return;
    var pt = s.createSVGPoint();
    pt.x = ev.clientX;
    pt.y = ev.clientY;
    var p = pt.matrixTransform(s.getScreenCTM().inverse());
    var row = Math.floor((p.y - L.top) / L.rowH);
    var best = null, bestd = 4 / L.scale;
    (L.byRow[row] || []).forEach(function (e) {
      var t = L.t0 + (p.x - L.left) / L.scale;
      var d = t < e.start ? e.start - t : t > e.stop ? t - e.stop : 0;
      if (d <= bestd) { best = e; bestd = d; }
    });
    if (best) showTip(taskRows(best, stream.now()));
    else hideTip();
  }
  if (page === "status") {
    $("stream").addEventListener("mousemove", streamHover);
    $("stream").addEventListener("mouseleave", hideTip);
  }

  // Keep the events of the last WINDOW seconds (at most 20000); the last
  // success and failure of each group outlive them for the tooltips.
  function addEvents(ev) {
    stream.skew = ev.now - performance.now() / 1000;
    stream.next = ev.next;
    Array.prototype.push.apply(stream.events, ev.events);
    var cut = ev.now - WINDOW - 1, drop = 0;
    while (drop < stream.events.length &&
           (stream.events[drop].stop < cut || stream.events.length - drop > 20000)) {
      var e = stream.events[drop++];
      lastSeen[e.group + (e.ok ? "+" : "-")] = e;
    }
    if (drop) stream.events.splice(0, drop);
  }

  function statusStep() {
    return Promise.all([
      getJSON("/json/status"),
      getJSON("/json/stream?since=" + stream.next)
    ]).then(function (r) {
      var st = r[0];
      tips = {};
      learnColours(st.groups);
      addEvents(r[1]);
      drawCounts(st.counts);
      drawGroups(st.groups);
      var live = {};
      st.groups.forEach(function (g) { live[g.name + "+"] = live[g.name + "-"] = true; });
      Object.keys(lastSeen).forEach(function (k) { if (!live[k]) delete lastSeen[k]; });
      drawMemory(st.workers, st.fractions);
      stream.workers = st.workers.map(function (w) { return w.id; });
      drawStream();
    });
  }

  // ------------------------------------------------------------ workers

  function workersStep() {
    return getJSON("/json/workers").then(drawWorkers);
  }

  function drawWorkers(r) {
    {
      var tb = document.querySelector("#workers tbody");
      tb.textContent = "";
      if ($("nworkers")) $("nworkers").textContent = r.workers.length + " running";
      r.workers.forEach(function (w) {
        var tr = el("tr", { "data-worker": w.id });
        [[w.id], [w.name || ""], [w.address, "addr"], [w.pid, "num"], [w.cores, "num"],
         [bytes(w.memory.rss), "num"], [bytes(w.memory.managed), "num"],
         [bytes(w.memory.spilled), "num"], [bytes(w.memory.limit), "num"],
         [w.tasks.running, "num"], [w.tasks.processing, "num"],
         [w.tasks.stored, "num"], [seconds(w.uptime), "num"]]
          .forEach(function (c, i) {
            var td = el("td", c[1] ? { "class": c[1] } : {}, i ? String(c[0]) : "");
            if (!i) {
              if (page === "report") td.textContent = String(w.id);
              else td.appendChild(el("a", { href: "/worker?id=" + w.id }, String(w.id)));
            }
            tr.appendChild(td);
          });
        tb.appendChild(tr);
      });
    }
  }

  // ------------------------------------------------------------ graph

  var STATES = ["waiting", "ready", "processing", "memory", "erred", "released"];

  // Lay the graph out in columns by depth (longest path from a task
  // without inputs), tasks of a group together in a column, and draw it:
  // a square per task (or per group, past /json/graph's max), coloured by
  // state, and a line per dependency.
  function drawGraph(g) {
    var s = $("graph"), n = g.nodes.length;
    var depth = new Array(n).fill(0), indeg = new Array(n).fill(0), out = [];
    for (var i = 0; i < n; i++) out.push([]);
    g.edges.forEach(function (e) { out[e[0]].push(e[1]); indeg[e[1]]++; });
    var queue = [], head = 0;
    for (i = 0; i < n; i++) if (!indeg[i]) queue.push(i);
    while (head < queue.length) {
      var a = queue[head++];
      out[a].forEach(function (b) {
        if (depth[a] + 1 > depth[b]) depth[b] = depth[a] + 1;
        if (--indeg[b] === 0) queue.push(b);
      });
    }
    var cols = [];
    for (i = 0; i < n; i++) (cols[depth[i]] = cols[depth[i]] || []).push(i);
    cols = cols.filter(Boolean);
    var most = 1;
    cols.forEach(function (c) {
      c.sort(function (x, y) {
        var gx = g.nodes[x].g, gy = g.nodes[y].g;
        return gx < gy ? -1 : gx > gy ? 1 : g.nodes[x].k < g.nodes[y].k ? -1 : 1;
      });
      most = Math.max(most, c.length);
    });
    // A column wraps into several after R tasks, R the least that keeps
    // the picture no wider than 2.5 times its height.
    var R = 1, S = 0;
    function subcols(r) {
      return cols.reduce(function (a, c) { return a + Math.ceil(c.length / r); }, 0) +
             1.5 * (cols.length - 1);
    }
    while (R < most && subcols(R) > 2.5 * R) R = Math.max(R + 1, Math.floor(R * 1.2));
    if (R > most) R = most;
    S = subcols(R);
    var groups = g.mode === "groups";
    var cell = groups ? 90 : Math.max(3, Math.min(28, 1000 / S, 700 / R));
    var cellH = groups ? 48 : cell;
    var W = 20 + S * cell, H = 10 + R * cellH + (groups ? 14 : 0);
    var pos = new Array(n), x0 = 10;
    cols.forEach(function (c) {
      var k = Math.ceil(c.length / R), per = Math.ceil(c.length / k);
      c.forEach(function (v, ri) {
        var sub = Math.floor(ri / per), row = ri % per;
        var off = (R - Math.min(per, c.length)) * cellH / 2;
        pos[v] = [x0 + sub * cell + cell / 2, 5 + off + row * cellH + cellH / 2];
      });
      x0 += (k + 1.5) * cell;
    });
    s.textContent = "";
    s.setAttribute("viewBox", "0 0 " + W + " " + H);
    s.style.height = Math.min(700, Math.max(120, H * (s.clientWidth || 1000) / W)) + "px";
    s.setAttribute("preserveAspectRatio", "xMidYMid meet");
    var drawEdges = g.edges.length <= 6000;
    if (drawEdges) {
      var path = "";
      g.edges.forEach(function (e) {
        var p = pos[e[0]], q = pos[e[1]];
        path += "M" + p[0].toFixed(1) + " " + p[1].toFixed(1) + "L" + q[0].toFixed(1) + " " + q[1].toFixed(1);
      });
      s.appendChild(svg("path", { "class": "edge", d: path }));
    }
    var size = groups ? 18 : Math.max(2, cell * 0.62);
    g.nodes.forEach(function (v, i) {
      var r = svg("rect", { "class": "node s-" + STATES[v.s], x: (pos[i][0] - size / 2).toFixed(1),
                            y: (pos[i][1] - size / 2).toFixed(1), width: size, height: size,
                            rx: g.mode === "groups" ? 3 : 1, "data-key": v.k, "data-state": STATES[v.s] });
      tipFor(r, function () {
        if (g.mode === "groups")
          return [["group", v.g], ["tasks", v.n]].concat(STATES.map(function (st, k) {
            return [st, v.counts[k]];
          }).filter(function (x) { return x[1] > 0; }));
        var rows = [["key", v.k], ["group", v.g], ["state", STATES[v.s]]];
        if (v.w > 0) rows.push([v.s === 2 ? "running on" : "held by", "worker " + v.w]);
        return rows;
      });
      s.appendChild(r);
      if (g.mode === "groups") {
        var t = svg("text", { x: pos[i][0], y: pos[i][1] + size / 2 + 11, "text-anchor": "middle" });
        t.textContent = v.g + " (" + v.n + ")";
        s.appendChild(t);
      }
    });
    s.setAttribute("data-nodes", n);
    s.setAttribute("data-mode", g.mode);
    $("graph-note").textContent = g.mode === "groups"
      ? g.tasks + " tasks, more than " + g.max + ": one node per task group"
      : n + " task" + (n === 1 ? "" : "s") + (drawEdges ? "" : " (too many dependencies to draw)");
  }

  function graphStep() {
    return getJSON("/json/graph").then(function (g) { tips = {}; drawGraph(g); });
  }

  // ------------------------------------------------------------ profile

  // An icicle of /json/profile: the root on top, each node under its
  // caller, as wide as its samples (its own and its callees').  Clicking a
  // node zooms to it; the zoom is kept as a path of names, so it survives
  // the redraws.
  var profPath = [], profLast = 0, profData = null;
  var ROW = 18, PW = 1000;

  function profColour(depth, name) {
    if (depth === 1) return colour(name);
    var m = name.match(/\(([^:]*):/) || [null, name];
    var h = 2166136261;
    for (var i = 0; i < m[1].length; i++) h = Math.imul(h ^ m[1].charCodeAt(i), 16777619) >>> 0;
    return "hsl(" + (h % 360) + ", 55%, " + (/ \[C\]$/.test(name) ? 82 : 72) + "%)";
  }

  function drawProfile(r) {
    var s = $("profile"), n = r.nodes.length, i;
    profData = r;
    var kids = [], total = new Array(n), depth = new Array(n);
    for (i = 0; i < n; i++) { kids.push([]); total[i] = r.nodes[i][2]; }
    for (i = n - 1; i > 0; i--) total[r.nodes[i][0]] += total[i];
    for (i = 0; i < n; i++) {
      depth[i] = i ? depth[r.nodes[i][0]] + 1 : 0;
      if (i) kids[r.nodes[i][0]].push(i);
    }
    // The zoomed node: follow profPath's names from the root.
    var at = 0, path = [];
    for (var k = 0; k < profPath.length; k++) {
      var next = kids[at].filter(function (c) { return r.nodes[c][1] === profPath[k]; })[0];
      if (next === undefined) break;
      at = next;
      path.push(profPath[k]);
    }
    profPath = path;
    s.textContent = "";
    tips = {};
    var drawn = 0, rows = 1;
    function box(i, x, w, row) {
      if (w < 0.5) return;
      var name = i === at && at !== 0 ? "\u2191 " + r.nodes[i][1] : i === 0 ? "all" : r.nodes[i][1];
      var g = svg("g", {});
      var rect = svg("rect", { "class": "pnode", x: x.toFixed(2), y: row * ROW, width: Math.max(0.5, w - 0.5).toFixed(2),
                               height: ROW - 1, fill: i === at ? "#dde1e8" : profColour(depth[i], r.nodes[i][1]),
                               "data-name": r.nodes[i][1], "data-total": total[i], "data-depth": depth[i] });
      g.appendChild(rect);
      if (w > 30) {
        var t = svg("text", { x: (x + 3).toFixed(1), y: row * ROW + 13 });
        var fit = Math.floor((w - 6) / 6.2);
        t.textContent = name.length > fit ? name.slice(0, Math.max(1, fit - 1)) + "\u2026" : name;
        g.appendChild(t);
      }
      var share = r.samples ? (100 * total[i] / r.samples).toFixed(1) : "0";
      tipFor(g, function () {
        return [[depth[i] === 1 ? "group" : i ? "function" : "all tasks", i ? r.nodes[i][1] : r.samples + " samples"],
                ["samples", total[i] + " (" + share + "% of all)"],
                ["own", r.nodes[i][2] + " stopped in it"]];
      });
      g.addEventListener("click", function () {
        if (i === at) profPath = profPath.slice(0, -1);
        else {
          var p = [], j = i;
          while (j) { p.unshift(r.nodes[j][1]); j = r.nodes[j][0]; }
          profPath = p;
        }
        hideTip();
        drawProfile(profData);
      });
      s.appendChild(g);
      drawn++;
      if (row + 1 > rows) rows = row + 1;
      var cx = x;
      kids[i].slice().sort(function (a, b) { return total[b] - total[a]; }).forEach(function (c) {
        var cw = total[at] ? w * total[c] / total[i] : 0;
        box(c, cx, cw, row + 1);
        cx += cw;
      });
    }
    if (total[at] > 0) box(at, 0, PW, 0);
    s.setAttribute("viewBox", "0 0 " + PW + " " + Math.max(2, rows) * ROW);
    s.setAttribute("data-samples", r.samples);
    s.setAttribute("data-boxes", drawn);
    var when = r.seconds ? " in the last " + (r.seconds % 60 ? r.seconds + " s" : r.seconds / 60 + " min") +
      (r.complete ? "" : " (only the newest part: the scheduler's log reaches no further)") : "";
    $("prof-note").textContent = r.samples
      ? r.samples + " samples" + (r.worker ? " on worker " + r.worker : " on every worker") + when +
        (profPath.length ? " \u00b7 zoomed to " + profPath[profPath.length - 1] : "")
      : r.seconds ? "no samples" + when : "no samples yet: the profile fills as tasks run Lua code";
    var tb = document.querySelector("#prof-top tbody");
    tb.textContent = "";
    r.top.forEach(function (f) {
      var tr = el("tr");
      tr.appendChild(el("td", { "class": "addr" }, f.name));
      tr.appendChild(el("td", { "class": "num" }, String(f.self)));
      tr.appendChild(el("td", { "class": "num" }, (r.samples ? 100 * f.self / r.samples : 0).toFixed(1) + "%"));
      tb.appendChild(tr);
    });
  }

  // Every 2 s (the scheduler rebuilds the profile once a second at most).
  function profileStep() {
    if (Date.now() - profLast < 2000) return Promise.resolve();
    profLast = Date.now();
    var sel = $("prof-worker");
    var win = +$("prof-window").value;
    return Promise.all([getJSON("/json/workers"),
                        getJSON("/json/profile?worker=" + (sel.value || 0) + (win ? "&seconds=" + win : ""))])
      .then(function (res) {
        var ids = res[0].workers.map(function (w) { return String(w.id); });
        var have = Array.prototype.map.call(sel.options, function (o) { return o.value; }).slice(1);
        if (ids.join() !== have.join()) {
          var keep = sel.value;
          while (sel.options.length > 1) sel.remove(1);
          ids.forEach(function (id) { sel.appendChild(el("option", { value: id }, "worker " + id)); });
          sel.value = ids.indexOf(keep) >= 0 ? keep : "0";
        }
        drawProfile(res[1]);
      });
  }
  if (page === "profile")
    ["prof-worker", "prof-window"].forEach(function (id) {
      $(id).addEventListener("change", function () { profLast = 0; profPath = []; profileStep(); });
    });

  // ------------------------------------------------------------ charts

  // Draw series [{name, colour, pts: [[t, v], ...]}] as lines over the
  // last `span` seconds before now; fmt formats the axis values.
  function chart(s, series, now, span, fmt, floor) {
    var W = s.viewBox.baseVal.width || 600, H = s.viewBox.baseVal.height || 180, L = 64, B = 18;
    s.textContent = "";
    var top = floor || 0, tmin = now;
    series.forEach(function (x) {
      x.pts.forEach(function (p) { if (p[1] > top) top = p[1]; if (p[0] < tmin) tmin = p[0]; });
    });
    span = Math.min(span, Math.max(30, now - tmin)); // zoom to what there is
    top = top > 0 ? top * 1.1 : 1;
    var X = function (t) { return L + (W - L - 6) * (1 - (now - t) / span); };
    var Y = function (v) { return 6 + (H - B - 6) * (1 - v / top); };
    [0, 0.5, 1].forEach(function (f) {
      s.appendChild(svg("line", { "class": "grid", x1: L, x2: W - 6, y1: Y(top * f), y2: Y(top * f) }));
      var t = svg("text", { x: L - 6, y: Y(top * f) + 4, "text-anchor": "end" });
      t.textContent = fmt(top * f);
      s.appendChild(t);
    });
    [span, span / 2, 0].forEach(function (a) {
      var t = svg("text", { x: X(now - a), y: H - 4, "text-anchor": a === span ? "start" : a ? "middle" : "end" });
      t.textContent = a ? "-" + seconds(a) : "now";
      s.appendChild(t);
    });
    series.forEach(function (x) {
      var d = x.pts.filter(function (p) { return now - p[0] <= span; }).map(function (p, i) {
        return (i ? "L" : "M") + X(p[0]).toFixed(1) + " " + Y(p[1]).toFixed(1);
      }).join("");
      if (d) s.appendChild(svg("path", { "class": "series", d: d, stroke: x.colour,
                                         "data-name": x.name, "data-points": x.pts.length }));
    });
  }

  function legend(box, series) {
    box.textContent = "";
    series.forEach(function (x) {
      var sp = el("span");
      var dot = el("i");
      dot.style.background = x.colour;
      sp.appendChild(dot);
      sp.appendChild(document.createTextNode(x.name));
      box.appendChild(sp);
    });
  }

  // ------------------------------------------------------------ worker

  var wid = Number(new URLSearchParams(location.search).get("id"));

  function workerStep() {
    return getJSON("/json/worker?id=" + wid).then(function (w) {
      var label = w.name ? w.id + " (" + w.name + ")" : String(w.id);
      $("wtitle").textContent = "Worker " + label;
      document.title = "dlua: worker " + label;
      fill($("winfo"), [["pid", w.pid], ["status", w.status], ["cores", w.cores],
        ["running", w.executing], ["memory", bytes(w.memory.rss)],
        ["managed", bytes(w.memory.managed)], ["spilled", bytes(w.memory.spilled)],
        ["limit", bytes(w.memory.limit)], ["uptime", seconds(w.uptime)]]
        .concat(w.spill_error ? [["spill error", w.spill_error]] : []));
      var h = w.history;
      var series = [
        { name: "process", colour: "#9db8ea", pts: h.map(function (x) { return [x[0], x[3]]; }) },
        { name: "managed", colour: "#2e6bd6", pts: h.map(function (x) { return [x[0], x[1]]; }) },
        { name: "spilled", colour: "#7d828c", pts: h.map(function (x) { return [x[0], x[2]]; }) },
        { name: "limit", colour: "#1d2330", pts: h.length ? [[h[0][0], w.memory.limit],
                                                          [w.now, w.memory.limit]] : [] }];
      chart($("wmem"), series, w.now, 300, bytes);
      legend($("wmem-legend"), series);
      // Spilling and transfers: the totals, and their rates between
      // heartbeat samples (history columns 6..9).
      fill($("wio"), [["spilled to disk", bytes(w.io.spill_out)], ["read back from disk", bytes(w.io.spill_in)],
                      ["received from peers", bytes(w.io.xfer_in)], ["sent to peers", bytes(w.io.xfer_out)]]);
      var rate = function (col) {
        var pts = [];
        for (var i = 1; i < h.length; i++)
          if (h[i][0] > h[i - 1][0]) pts.push([h[i][0], Math.max(0, h[i][col] - h[i - 1][col]) / (h[i][0] - h[i - 1][0])]);
        return pts;
      };
      var rates = [
        { name: "spill writes", colour: "#7d828c", pts: rate(6) },
        { name: "spill reads", colour: "#ccbb44", pts: rate(7) },
        { name: "received", colour: "#2e6bd6", pts: rate(8) },
        { name: "sent", colour: "#ee7733", pts: rate(9) }];
      chart($("wrate"), rates, w.now, 300, function (v) { return bytes(v) + "/s"; }, 1024);
      legend($("wrate-legend"), rates);
      var log = $("wlog");
      var atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.textContent = "";
      if (!w.logs.length) log.appendChild(el("span", { "class": "empty" }, "Nothing written yet."));
      w.logs.forEach(function (l) {
        var line = el("div", { "class": l[1] === 2 ? "stderr" : "stdout" },
                      "-" + seconds(w.now - l[0]) + "  " + l[2]);
        log.appendChild(line);
      });
      log.setAttribute("data-lines", w.logs.length);
      if (atEnd) log.scrollTop = log.scrollHeight;
      $("nassigned").textContent = w.assigned.count + (w.assigned.count > w.assigned.keys.length
        ? " (first " + w.assigned.keys.length + ")" : "");
      var ul = $("assigned");
      ul.textContent = "";
      if (!w.assigned.keys.length) ul.appendChild(el("li", { "class": "empty" }, "None."));
      w.assigned.keys.forEach(function (k) { ul.appendChild(el("li", {}, k)); });
      $("nstored").textContent = w.stored.count + " results, " + bytes(w.stored.bytes);
      var tb = document.querySelector("#stored tbody");
      tb.textContent = "";
      w.stored.largest.forEach(function (x) {
        var tr = el("tr");
        tr.appendChild(el("td", { "class": "addr" }, x.key));
        tr.appendChild(el("td", { "class": "num" }, bytes(x.bytes)));
        tb.appendChild(tr);
      });
    });
  }

  // ------------------------------------------------------------ system

  function systemStep() {
    return getJSON("/json/system").then(function (r) {
      var byProc = {};
      var prev = {};
      r.samples.forEach(function (x) {
        x.procs.forEach(function (p) {
          var name = p[0] ? "worker " + p[0] : "scheduler";
          var k = name + "/" + p[1];
          var b = byProc[k] = byProc[k] || { name: name, cpu: [], rss: [], fds: [], io: [] };
          var q = prev[k];
          if (q && x.t > q.t) {
            b.cpu.push([x.t, 100 * (p[2] - q.p[2]) / (x.t - q.t)]);
            if (p[5] >= 0 && q.p[5] >= 0)
              b.io.push([x.t, (p[5] - q.p[5] + p[6] - q.p[6]) / (x.t - q.t)]);
          }
          if (p[3] >= 0) b.rss.push([x.t, p[3]]);
          if (p[4] >= 0) b.fds.push([x.t, p[4]]);
          prev[k] = { t: x.t, p: p };
        });
      });
      var keys = Object.keys(byProc).sort();
      var cols = ["#1d2330"].concat(PALETTE);
      function series(f) {
        return keys.map(function (k, i) {
          return { name: byProc[k].name, colour: cols[i % cols.length], pts: byProc[k][f] };
        });
      }
      chart($("cpu"), series("cpu"), r.now, 300, function (v) { return v.toFixed(0) + "%"; }, 100);
      chart($("rss"), series("rss"), r.now, 300, bytes);
      chart($("io"), series("io"), r.now, 300, function (v) { return bytes(v) + "/s"; });
      chart($("fds"), series("fds"), r.now, 300, function (v) { return v.toFixed(0); }, 10);
      legend($("sys-legend"), series("cpu"));
      $("sys-legend").setAttribute("data-procs", keys.length);
    });
  }

  // ------------------------------------------------------------ report

  // A performance report draws once, from the data written into it.
  function drawReport(r) {
    var span = Math.max(0.001, r.stop - r.start);
    $("rtitle").textContent = r.title ? "\u00b7 " + r.title : "";
    var ok = 0, failed = 0, busy = 0;
    r.events.forEach(function (e) { if (e.ok) ok++; else failed++; busy += e.stop - e.start; });
    var threads = r.workers.workers.reduce(function (a, w) { return a + w.cores; }, 0);
    fill($("summary"), [["Duration", ms(span)], ["Tasks run", ok + (failed ? " (and " + failed + " failed)" : "")],
                        ["Workers", r.workers.workers.length + " (" + threads + " threads)"],
                        ["Busy", (threads ? (100 * busy / (span * threads)).toFixed(0) : 0) + "% of the threads' time"],
                        ["Written", new Date().toISOString().replace("T", " ").slice(0, 19) + " UTC"]]
                       .concat(r.truncated ? [["Note", "the scheduler keeps the last 10000 task runs: earlier ones are missing"]] : []));
    learnColours(r.status.groups);
    WINDOW = span;
    stream.now = function () { return r.stop; };
    stream.start = r.start;
    stream.events = r.events;
    stream.workers = r.workers.workers.map(function (w) { return w.id; });
    r.events.forEach(function (e) {
      if (stream.workers.indexOf(e.worker) < 0) stream.workers.push(e.worker);
    });
    drawStream();
    drawGroups(r.status.groups);
    drawMemory(r.status.workers, r.status.fractions);
    var series = Object.keys(r.history).map(function (id, i) {
      return { name: "worker " + id, colour: PALETTE[i % PALETTE.length],
               pts: r.history[id].filter(function (x) { return x[0] >= r.start - 1; })
                                 .map(function (x) { return [x[0], x[1]]; }) };
    });
    chart($("rmem"), series, r.stop, Math.max(span, 1), bytes);
    legend($("rmem-legend"), series);
    drawWorkers(r.workers);
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

  // For the browser test: draw given figures synchronously.
  window.dluaDash = { drawMemory: drawMemory, colour: colour, PALETTE: PALETTE };

  window.dluaDash.drawGraph = drawGraph;
  window.dluaDash.drawProfile = drawProfile;

  if (page === "report") { drawReport(window.DLUA_REPORT); return; }
  every({ status: statusStep, workers: workersStep, info: infoStep,
          graph: graphStep, worker: workerStep, system: systemStep,
          profile: profileStep }[page]);
})();
