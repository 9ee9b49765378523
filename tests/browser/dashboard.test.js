// The dashboard in a real browser: Debian's headless Chromium, driven by
// playwright-core.  Starts tests/fixtures/dashboard/run.lua (a cluster
// busy for a while), loads /status, checks that the progress bars, the
// workers' memory and the task stream appear and change between polls,
// visits /workers and /info, and saves a screenshot to
// $DLUA_BUILD/dashboard.png.  Exits non-zero on any failure.
//   node tests/browser/dashboard.test.js      (DLUA, DLUA_BUILD optional)
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

function startCluster() {
  const child = spawn(dlua, [path.join(root, "tests/fixtures/dashboard/run.lua"), "20"],
                      { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error("no dashboard link within 20 s")), 20000);
    child.on("exit", (code) => reject(new Error("cluster exited early: " + code)));
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/dashboard (http:\/\/\S+)/);
      if (m) { clearTimeout(timer); resolve({ child, link: m[1] }); }
    });
  });
}

// Poll pred (an async function) until it returns a truthy value.
async function until(pred, what, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) fail("timed out waiting for " + what);
    await sleep(100);
  }
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
    page.on("pageerror", (e) => errors.push("page error: " + e.message));
    page.on("console", (m) => { if (m.type() === "error") errors.push("console: " + m.text()); });

    // The root redirects to the status page.
    await page.goto(base + "/");
    check(page.url() === base + "/status", "/ redirects to /status");

    await until(() => page.locator(".group[data-group]").count(), "task groups");
    check(await page.locator(".bar > div").count() > 0, "progress bars are drawn");
    const groups = await page.$$eval(".group[data-group]", (els) => els.map((e) => e.dataset.group));
    check(groups.includes("load") && groups.includes("measure"),
          "task groups load and measure appear (" + groups.join(", ") + ")");
    await until(() => page.locator(".worker-mem").count().then((n) => n === 2), "2 memory bars");
    check(true, "a memory bar per worker");
    await until(() => page.$$eval(".worker-mem", (els) => els.some((e) => Number(e.dataset.managed) > 0)),
                "managed memory above zero");
    check(true, "managed memory is shown");
    await until(() => page.$eval("#stream", (s) => Number(s.dataset.tasks) > 0), "task stream rectangles");
    check(await page.locator("#stream text").count() >= 2, "task stream has a row per worker");

    // Values change between two polls: the page updates itself.
    const snap = () => page.$$eval(".group[data-group]", (els) =>
      els.map((e) => e.dataset.group + ":" + e.dataset.done + "/" + e.dataset.total).join(" "));
    const streamSnap = () => page.$$eval("#stream rect.task", (rs) => rs.map((r) => r.getAttribute("x")).join(","));
    const a = await snap(), sa = await streamSnap();
    await page.waitForTimeout(1500);
    const b = await snap(), sb = await streamSnap();
    check(a !== b, "progress updates without reloading (" + a + " -> " + b + ")");
    check(sa !== sb, "task stream updates without reloading");
    await page.screenshot({ path: path.join(build, "dashboard.png"), fullPage: true });
    check(true, "screenshot saved to " + path.join(build, "dashboard.png"));

    await page.goto(base + "/workers");
    await until(() => page.locator("#workers tbody tr").count().then((n) => n === 2), "2 worker rows");
    const row = await page.$$eval("#workers tbody tr:first-child td", (tds) => tds.map((t) => t.textContent));
    check(/\.sock$/.test(row[1]) && /^\d+$/.test(row[2]), "workers table shows address and pid (" + row.slice(0, 3).join(" ") + ")");
    const up1 = await page.$eval("#workers tbody tr:first-child td:last-child", (t) => t.textContent);
    await page.waitForTimeout(1200);
    const up2 = await page.$eval("#workers tbody tr:first-child td:last-child", (t) => t.textContent);
    check(up1 !== up2, "workers table updates (uptime " + up1 + " -> " + up2 + ")");
    await page.screenshot({ path: path.join(build, "dashboard-workers.png") });

    await page.goto(base + "/info");
    await until(() => page.locator("#versions dd").count(), "versions");
    const info = await page.textContent("main");
    check(/Processes\s*yes/.test(info), "info page says processes yes");
    check(/Lua 5\.4/.test(info) && /libuv/.test(info) && /dlua/.test(info), "info page lists versions");
    check(/Total memory\s*1\.00 GiB/.test(info), "info page shows total memory");
    check(await page.locator("#permem tbody tr").count() === 2, "info page lists memory per worker");
    await page.screenshot({ path: path.join(build, "dashboard-info.png") });

    check(errors.length === 0, "no errors in the page" + (errors.length ? ": " + errors.join("; ") : ""));
  } finally {
    if (browser) await browser.close();
    child.kill("SIGTERM");
  }
}

main().then(() => { console.log("dashboard browser test passed"); process.exit(0); },
            (e) => { console.log("not ok - " + e.message); process.exit(1); });
