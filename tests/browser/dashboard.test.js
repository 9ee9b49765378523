// The dashboard in a real browser: Debian's headless Chromium, driven by
// playwright-core.  Starts tests/fixtures/dashboard/run.lua (a cluster
// busy for a while), loads /status, checks that the progress bars, the
// workers' memory and the task stream appear and change between polls,
// visits /workers and /info, and saves a screenshot to
// $DLUA_BUILD/dashboard.png.  Exits non-zero on any failure.
//   node tests/browser/dashboard.test.js      (DLUA, DLUA_BUILD optional)
//
// Every check waits for the state it checks, polling until a deadline
// (DEADLINE, generous: the suite runs on loaded 2-core machines), never for
// a fixed time: a busy machine makes the test slower, not wrong.
"use strict";
const { spawn } = require("child_process");
const path = require("path");
const { chromium } = require("playwright-core");

const root = path.resolve(__dirname, "..", "..");
const build = process.env.DLUA_BUILD || path.join(root, "build");
const dlua = process.env.DLUA || path.join(build, "dlua");
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";

function fail(msg) { throw new Error(msg); }
function check(cond, msg) { if (!cond) fail(msg); console.log("ok - " + msg); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// How long any one state may take to appear (ms); DLUA_BROWSER_DEADLINE
// overrides it.
const DEADLINE = Number(process.env.DLUA_BROWSER_DEADLINE) || 90000;

let clusterErr = "", clusterGone = null;
function startCluster() {
  // A relative path (cwd is the root): the profile's frames, in the
  // screenshots, name the fixture without this machine's directories.
  const child = spawn(dlua, ["tests/fixtures/dashboard/run.lua", "600"],
                      { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  // Its stderr is shown only when the test fails (it is stopped midway).
  child.stderr.on("data", (d) => { clusterErr += d; });
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error("no dashboard link within " +
                                                    DEADLINE / 1000 + " s")), DEADLINE);
    child.on("exit", (code, sig) => {
      clusterGone = "the cluster fixture exited (" + (sig || code) + ")";
      reject(new Error(clusterGone));
    });
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/dashboard (http:\/\/\S+)/);
      if (m) { clearTimeout(timer); resolve({ child, link: m[1] }); }
    });
  });
}

// Poll pred (an async function) until it returns a truthy value; fail
// after ms.  A pred that throws (an element not drawn yet) counts as false.
async function until(pred, what, ms = DEADLINE) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await Promise.resolve().then(pred).catch(() => false);
    if (v) return v;
    if (clusterGone) fail(clusterGone + " while waiting for " + what);
    if (Date.now() > end) fail("timed out after " + ms / 1000 + " s waiting for " + what);
    await sleep(100);
  }
}

// Hover the centre of the element that find (run in the page) returns,
// again and again, until the tooltip's text matches re; returns that text.
async function hoverUntil(page, find, re, what) {
  let shown = "";
  await until(async () => {
    const box = await page.evaluate(find);
    if (!box) return false;
    await page.mouse.move(box.x, box.y);
    shown = (await page.isVisible("#tip")) ? await page.textContent("#tip") : "";
    return re.test(shown);
  }, what + " (last shown: " + JSON.stringify(shown) + ")");
  return shown;
}

async function main() {
  const { child, link } = await startCluster();
  const base = link.replace(/\/status$/, "");
  let browser;
  const errors = [];
  try {
    browser = await chromium.launch({
      executablePath: browserPath,
      args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(DEADLINE);
    page.on("pageerror", (e) => errors.push("page error: " + e.message));
    page.on("console", (m) => { if (m.type() === "error") errors.push("console: " + m.text()); });

    // The root redirects to the status page.
    await page.goto(base + "/");
    check(page.url() === base + "/status", "/ redirects to /status");

    await until(() => page.locator(".group[data-group]").count(), "task groups");
    await until(() => page.locator(".bar > div").count(), "progress bars");
    check(true, "progress bars are drawn");
    const groups = await until(() => page.$$eval(".group[data-group]", (els) => {
      const gs = els.map((e) => e.dataset.group);
      return gs.includes("load") && gs.includes("measure") && gs;
    }), "the task groups load and measure");
    check(true, "task groups load and measure appear (" + groups.join(", ") + ")");
    await until(() => page.locator(".worker-mem").count().then((n) => n === 2), "2 memory bars");
    check(true, "a memory bar per worker");
    await until(() => page.$$eval(".worker-mem", (els) => els.some((e) => Number(e.dataset.managed) > 0)),
                "managed memory above zero");
    check(true, "managed memory is shown");
    await until(() => page.$eval("#stream", (s) => Number(s.dataset.tasks) > 0), "task stream rectangles");
    await until(() => page.locator("#stream text").count().then((n) => n >= 2), "a stream row per worker");
    check(true, "task stream has a row per worker");

    // Values change between two polls: the page updates itself.
    const snap = () => page.$$eval(".group[data-group]", (els) =>
      els.map((e) => e.dataset.group + ":" + e.dataset.done + "/" + e.dataset.total).join(" "));
    const streamSnap = () => page.$$eval("#stream rect.task", (rs) => rs.map((r) => r.getAttribute("x")).join(","));
    const a = await snap(), sa = await streamSnap();
    const b = await until(async () => { const v = await snap(); return v !== a && v; },
                          "the progress to change");
    check(a !== b, "progress updates without reloading (" + a + " -> " + b + ")");
    await until(async () => (await streamSnap()) !== sa, "the task stream to change");
    check(true, "task stream updates without reloading");

    // Every group of the fixture, each with its own colour (bad/load and
    // clean/total once shared one).
    await until(() => page.$$eval(".group[data-group]", (els) => {
      const names = els.map((e) => e.dataset.group);
      return ["load", "measure", "bad", "clean", "total"].every((g) => names.includes(g));
    }), "the groups load, measure, bad, clean and total");
    const dots = await page.$$eval(".group[data-group] .dot", (ds) =>
      ds.map((d) => d.style.backgroundColor));
    check(dots.every((c) => /^rgb\(\d+, \d+, \d+\)$/.test(c)), "every group has a colour (" + dots.join(" ") + ")");
    const rgb = dots.map((c) => c.match(/\d+/g).map(Number));
    let closest = Infinity;
    rgb.forEach((a, i) => rgb.slice(i + 1).forEach((b) => {
      closest = Math.min(closest, Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]));
    }));
    check(closest > 60, "group colours are far apart (" + dots.join(" ") + "; closest " + closest.toFixed(0) + ")");
    const reload = await browser.newPage();
    reload.setDefaultTimeout(DEADLINE);
    await reload.goto(base + "/status");
    await until(() => reload.locator(".group[data-group='bad'] .dot").count(), "a second page's groups");
    const colourOf = (p, g) => p.$eval(".group[data-group='" + g + "'] .dot",
                                       (d) => d.style.backgroundColor);
    const c1 = [await colourOf(page, "load"), await colourOf(page, "bad")];
    const c2 = [await colourOf(reload, "load"), await colourOf(reload, "bad")];
    check(c1.join() === c2.join(), "a group keeps its colour on another page (" +
          c1.join(" ") + " / " + c2.join(" ") + ")");
    await reload.close();

    // Progress figures add up: done + erred + processing + waiting = total,
    // and a failure is not counted as done.
    await until(() => page.$eval(".group[data-group='bad']", (e) => Number(e.dataset.erred) > 0),
                "failures in group bad");
    const sums = await page.$$eval(".group[data-group]", (els) => els.map((e) => {
      const d = e.dataset, nums = e.querySelector(".nums").textContent;
      const segs = Array.from(e.querySelectorAll(".bar > div"))
        .reduce((a, s) => a + parseFloat(s.style.width), 0);
      return { g: d.group, ok: Number(d.done) + Number(d.erred) + Number(d.processing) +
               Number(d.waiting) === Number(d.total), nums, segs };
    }));
    sums.forEach((x) => check(x.ok && Math.abs(x.segs - 100) < 0.5 || x.segs === 0,
                              "group " + x.g + " adds up (" + x.nums + ", bar " + x.segs.toFixed(1) + "%)"));
    const bad = sums.find((x) => x.g === "bad").nums;
    const m = bad.match(/^(\d+) \/ (\d+) done · (\d+) erred/);
    check(m && Number(m[1]) + Number(m[3]) <= Number(m[2]), "bad: failures are not done (" + bad + ")");

    // Hovering a task in the stream shows its details.
    let shown = await hoverUntil(page, () => {
      const rs = document.querySelectorAll("#stream rect.task:not(.failed)");
      if (!rs.length) return null;
      const r = rs[Math.floor(rs.length / 2)].getBoundingClientRect();
      return { x: r.x + r.width / 2, y: r.y + r.height / 2 };
    }, /bytes/, "a task's tooltip");
    check(/^key \S+-/.test(shown) && /group (load|measure|clean|total|bad)/.test(shown) &&
          /worker [12]/.test(shown) && /start [\d.]+ s ago/.test(shown) &&
          /duration [\d.]+ m?s/.test(shown) && /bytes \d/.test(shown),
          "a task's tooltip shows key, group, worker, start, duration, bytes (" + shown + ")");
    await page.screenshot({ path: path.join(build, "dashboard-tooltip.png"),
                            clip: { x: 0, y: Math.max(0, (await page.$eval("#stream", (s) => s.getBoundingClientRect().y)) - 120),
                                    width: 1280, height: 360 } });

    // Hovering the erred part of a progress bar shows a failure's first line.
    shown = await hoverUntil(page, () => {
      const s = document.querySelector(".group[data-group='bad'] .seg-erred");
      if (!s) return null;
      const r = s.getBoundingClientRect();
      return { x: r.x + r.width / 2, y: r.y + r.height / 2 };
    }, /error/, "a failure's tooltip");
    check(/group bad/.test(shown) && /erred \d+ of \d+/.test(shown) &&
          /error bad row \d+$/.test(shown) && !/more detail/.test(shown),
          "a failure's tooltip shows its error's first line (" + shown + ")");
    await page.mouse.move(1, 1);

    // Memory is drawn like Dask's: spilled bytes are not held against the
    // limit (308 MiB managed, 960 MiB spilled, 512 MiB limit: blue, with
    // the spilled part past the limit mark), and the colour follows the
    // process memory.
    const MiB = 1048576;
    const mem = await page.evaluate((MiB) => {
      const f = { target: 0.6, spill: 0.7, pause: 0.8, terminate: 0.95 };
      const out = [];
      for (const rss of [330, 380, 420]) {
        window.dluaDash.drawMemory([{ id: 1, managed: 308 * MiB, rss: rss * MiB, spilled: 960 * MiB,
                                      limit: 512 * MiB, status: "running", stored: 9 }], f);
        const d = document.querySelector(".worker-mem");
        const w = (c) => { const s = d.querySelector(".seg-" + c); return s ? parseFloat(s.style.width) : 0; };
        out.push({ level: d.dataset.level, managed: w("managed"), unmanaged: w("unmanaged"),
                   spilled: w("spilled"), limit: d.querySelector(".limit").style.left,
                   colour: getComputedStyle(d.querySelector(".seg-managed")).backgroundColor });
      }
      return out;
    }, MiB);
    const scale = 330 + 960;
    check(mem[0].level === "ok" && Math.abs(mem[0].managed - 100 * 308 / scale) < 0.1 &&
          Math.abs(mem[0].spilled - 100 * 960 / scale) < 0.1 && /39\.6/.test(mem[0].limit),
          "308 MiB managed, 960 MiB spilled, 512 MiB limit: not full, limit marked (" + JSON.stringify(mem[0]) + ")");
    check(mem[1].level === "warn" && mem[2].level === "high" &&
          new Set(mem.map((x) => x.colour)).size === 3,
          "memory bar turns orange past spill, red past pause");
    await until(() => page.$$eval(".worker-mem", (els) => els.length === 2), "the real memory bars back");

    await page.screenshot({ path: path.join(build, "dashboard.png"), fullPage: true });
    check(true, "screenshot saved to " + path.join(build, "dashboard.png"));

    await page.goto(base + "/workers");
    await until(() => page.locator("#workers tbody tr").count().then((n) => n === 2), "2 worker rows");
    const row = await page.$$eval("#workers tbody tr:first-child td", (tds) => tds.map((t) => t.textContent));
    check(row[1] === "" && /\.sock$/.test(row[2]) && /^\d+$/.test(row[3]), "workers table shows name (none here), address and pid (" + row.slice(0, 4).join(" ") + ")");
    const uptime = () => page.$eval("#workers tbody tr:first-child td:last-child", (t) => t.textContent);
    const up1 = await uptime();
    const up2 = await until(async () => { const v = await uptime(); return v !== up1 && v; },
                            "the workers' uptime to change");
    check(up1 !== up2, "workers table updates (uptime " + up1 + " -> " + up2 + ")");
    await page.screenshot({ path: path.join(build, "dashboard-workers.png") });

    // A worker's own page, from its link in the table.
    await page.click("#workers tbody tr:first-child td:first-child a");
    await page.waitForURL(/\/worker\?id=\d+$/);
    await until(() => page.$$eval("#stored tbody tr", (rs) => rs.length > 0), "a worker's stored results");
    await until(() => page.$eval("#wmem path[data-name='managed']",
                                 (p) => Number(p.dataset.points) >= 2),
                "a worker's memory over time");
    const wtext = await until(async () => {
      const t = await page.textContent("main");
      return /pid\s*\d+/.test(t) && /Largest stored results\s*\d+ results, [\d.]+ \w+/.test(t) &&
        /load-\S+\s*64\.0 KiB/.test(t) && t;
    }, "the worker page's pid and largest results");
    check(wtext, "a worker's page shows its results by size and its memory over time");
    await until(() => page.$eval("#wlog", (l) => Number(l.dataset.lines) > 0 &&
                                 l.querySelector(".stdout") && /cleaning \d/.test(l.textContent)),
                "the worker's log lines");
    const io = await page.textContent("#wio");
    check(/spilled to disk\s*[\d.]+ \w*B/.test(io) && /received from peers\s*[\d.]+ \w*B/.test(io) &&
          /sent to peers/.test(io) && /read back from disk/.test(io),
          "a worker's page shows its spilling, transfers and log (" + io + ")");
    await until(() => page.$$eval("#wrate path.series", (ps) => ps.length >= 1), "transfer rates over time");
    await page.screenshot({ path: path.join(build, "dashboard-worker.png") });

    // The system page: CPU, memory, I/O and descriptors of every process.
    await page.goto(base + "/system");
    await until(() => page.$eval("#sys-legend", (l) => l.dataset.procs === "3").catch(() => false),
                "scheduler and 2 workers on the system page");
    await until(() => page.$$eval("#cpu path.series", (ps) => ps.length === 3 &&
                                  ps.every((p) => Number(p.dataset.points) >= 1)), "CPU lines");
    for (const id of ["rss", "io", "fds"]) {
      await until(() => page.$$eval("#" + id + " path.series", (ps) => ps.length === 3), "3 lines in " + id);
      check(true, "system chart " + id + " has a line per process");
    }
    await page.screenshot({ path: path.join(build, "dashboard-system.png") });

    // The profile: an icicle of the tasks' stacks, task groups on the
    // second row, with the functions by their own samples beside it.
    await page.goto(base + "/profile");
    await until(() => page.$eval("#profile", (s) => Number(s.dataset.samples) > 0 &&
                                 s.querySelector("rect.pnode[data-depth='1'][data-name='load']")),
                "the load group in the profile");
    await until(() => page.locator("#prof-top tbody tr").count(), "functions by their own time");
    const profTop = await page.textContent("#prof-top tbody tr:first-child td:first-child");
    check(/^busy \(.*run\.lua:\d+\)$/.test(profTop), "the profile puts the fixture's busy loop on top (" + profTop + ")");
    await until(() => page.$eval("#profile", (s) => s.querySelector("rect.pnode[data-depth='3'][data-name^='busy ']")),
                "busy under the tasks in the icicle");
    await page.screenshot({ path: path.join(build, "dashboard-profile.png") });
    shown = await hoverUntil(page, () => {
      const r = document.querySelector("#profile rect.pnode[data-depth='1'][data-name='load']");
      if (!r) return null;
      const b = r.getBoundingClientRect();
      return { x: b.x + Math.min(b.width / 2, 20), y: b.y + b.height / 2 };
    }, /samples \d+/, "a profile box's tooltip");
    check(/group load/.test(shown) && /samples \d+ \([\d.]+% of all\)/.test(shown),
          "a profile box's tooltip shows its samples (" + shown + ")");
    await page.click("#profile rect.pnode[data-depth='1'][data-name='load']", { position: { x: 5, y: 5 } });
    await until(() => page.$eval("#prof-note", (n) => /zoomed to load/.test(n.textContent)), "the zoom to load");
    check(true, "clicking a group zooms to it");
    await page.mouse.move(1, 1);
    // The time window: the last minute of a cluster that is still busy has
    // samples, and the note says which window it is.
    await page.selectOption("#prof-window", "60");
    await until(() => page.$eval("#prof-note", (n) => /^\d+ samples on every worker in the last 1 min/.test(n.textContent)),
                "the profile of the last minute");
    check(await page.$eval("#profile", (s) => Number(s.dataset.samples) > 0),
          "the profile's time menu shows the last minute's samples");
    await page.selectOption("#prof-window", "0");

    // The graph: a square per task coloured by state, lines for the
    // dependencies (measure <- load), details on hover.
    await page.goto(base + "/graph");
    await until(() => page.$eval("#graph", (s) => Number(s.dataset.nodes) > 0), "graph nodes");
    check(await page.$eval("#graph", (s) => s.dataset.mode) === "tasks", "the graph shows each task");
    await until(() => page.$$eval("#graph rect.node", (rs) => rs.some((r) => r.dataset.state === "memory")),
                "tasks in memory on the graph");
    await until(() => page.$eval("#graph path.edge", (p) => p.getAttribute("d").length > 10).catch(() => false),
                "dependency lines");
    check(true, "the graph draws tasks in memory and their dependencies");
    shown = await hoverUntil(page, () => {
      const rs = document.querySelectorAll("#graph rect.node.s-memory");
      if (!rs.length) return null;
      const r = rs[rs.length - 1].getBoundingClientRect();
      return { x: r.x + r.width / 2, y: r.y + r.height / 2 };
    }, /state memory/, "a graph node's tooltip");
    check(/^key \S+/.test(shown) && /group \w+/.test(shown) && /state memory/.test(shown) &&
          /held by worker [12]/.test(shown), "a graph node's tooltip (" + shown + ")");
    await page.screenshot({ path: path.join(build, "dashboard-graph.png") });
    const grouped = await page.evaluate(() => {
      window.dluaDash.drawGraph({ mode: "groups", tasks: 9000, max: 2000, edges: [[0, 1, 4000]],
        nodes: [{ k: "load", g: "load", s: 3, n: 5000, counts: [0, 0, 0, 5000, 0, 0] },
                { k: "sum", g: "sum", s: 0, n: 4000, counts: [3000, 0, 1000, 0, 0, 0] }] });
      const s = document.getElementById("graph");
      return { mode: s.dataset.mode, nodes: s.querySelectorAll("rect.node").length,
               note: document.getElementById("graph-note").textContent };
    });
    check(grouped.mode === "groups" && grouped.nodes === 2 && /9000 tasks/.test(grouped.note),
          "past the maximum the graph shows groups (" + grouped.note + ")");
    await page.mouse.move(1, 1);

    await page.goto(base + "/info");
    await until(() => page.locator("#versions dd").count(), "versions");
    await until(() => page.locator("#permem tbody tr").count().then((n) => n === 2), "memory per worker");
    const info = await page.textContent("main");
    check(/Processes\s*yes/.test(info), "info page says processes yes");
    check(/Lua 5\.4/.test(info) && /libuv/.test(info) && /dlua/.test(info), "info page lists versions");
    check(/Total memory\s*1\.00 GiB/.test(info), "info page shows total memory");
    check(await page.locator("#permem tbody tr").count() === 2, "info page lists memory per worker");
    await page.screenshot({ path: path.join(build, "dashboard-info.png") });

    // A performance report opens from the file system, with no network:
    // every request but the file itself is refused.
    const report = path.join(build, "dashboard-report.html");
    const made = require("child_process").spawnSync(dlua,
      [path.join(root, "tests/fixtures/dashboard/report.lua"), report],
      { cwd: root, encoding: "utf8", timeout: DEADLINE });
    check(made.status === 0, "the report fixture ran (" + (made.stderr || "").trim() + ")");
    const rp = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    rp.setDefaultTimeout(DEADLINE);
    const fetched = [];
    rp.on("pageerror", (e) => errors.push("report page error: " + e.message));
    await rp.route("**/*", (r) => {
      if (r.request().url().startsWith("file:")) return r.continue();
      fetched.push(r.request().url());
      return r.abort();
    });
    await rp.goto("file://" + report);
    const rtext = await rp.textContent("main");
    check(/Tasks run\s*234 \(and 3 failed\)/.test(rtext), "the report counts the tasks run and failed");
    check(await rp.$eval("#stream", (s) => Number(s.dataset.tasks)) === 237, "the report's task stream has every task");
    check(await rp.locator(".group[data-group='work']").count() === 1 &&
          await rp.locator(".worker-mem").count() === 2 &&
          await rp.locator("#workers tbody tr").count() === 2, "the report shows progress, memory and workers");
    check(/fixture/.test(await rp.textContent("header")), "the report shows its title");
    const rshown = await hoverUntil(rp, () => {
      const s = document.querySelector(".group[data-group='work'] .seg-erred");
      if (!s) return null;
      const r = s.getBoundingClientRect();
      return { x: r.x + r.width / 2, y: r.y + r.height / 2 };
    }, /error/, "the report's failure tooltip");
    check(/error work \d+ went wrong$/.test(rshown), "the report's hover details work (" + rshown + ")");
    await rp.mouse.move(1, 1);
    check(fetched.length === 0, "the report fetched nothing (" + fetched.join(" ") + ")");
    await rp.screenshot({ path: path.join(build, "dashboard-report.png"), fullPage: true });
    await rp.close();

    check(errors.length === 0, "no errors in the page" + (errors.length ? ": " + errors.join("; ") : ""));
  } finally {
    if (browser) await browser.close();
    child.kill("SIGTERM");
  }
}

main().then(() => { console.log("dashboard browser test passed"); process.exit(0); },
            (e) => {
  console.log("not ok - " + e.message);
  if (clusterErr) console.log("# cluster's stderr:\n" + clusterErr.replace(/^/gm, "# "));
  process.exit(1);
});
