// Loads the matrix page in headless Chromium over the DevTools protocol (--remote-debugging-pipe)
// and prints real (not virtual) timings the page writes into its DOM:
//   first render  body[data-first-render-ms]: navigation start to the first render done
//                 (fetch of /api/v1/state, JSON parse, DOM build)
//   render        body[data-render-ms]: one render of the latest document
//   heatmap       section.layer[data-layer=OVERLAY][data-heatmap-ms] with /#heatmap=OVERLAY
//   cell          /#cell=OVERLAY/<src>/<dst> of a healthy cell: the details panel's state,
//                 read from /api/v1/cell
// Usage: node bench/page_load.js URL SRC DST [RUNS]   (bench/page_load.sh drives it)
"use strict";
const { spawn } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");

const [url, src, dst, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 3);
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "mp-page-load-"));
const chrome = spawn("/usr/bin/chromium", [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
  "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
  "--user-data-dir=" + profile, "--remote-debugging-pipe", "about:blank",
], { stdio: ["ignore", "ignore", "ignore", "pipe", "pipe"], env: { ...process.env, HOME: profile } });

let nextId = 1;
const pending = new Map();
let buf = Buffer.alloc(0);
chrome.stdio[4].on("data", (chunk) => {
  buf = Buffer.concat([buf, chunk]);
  let at;
  while ((at = buf.indexOf(0)) >= 0) {
    const msg = JSON.parse(buf.subarray(0, at).toString());
    buf = buf.subarray(at + 1);
    if (msg.id && pending.has(msg.id)) {
      const { resolve, reject } = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) reject(new Error(JSON.stringify(msg.error))); else resolve(msg.result);
    }
  }
});
function send(method, params, sessionId) {
  const id = nextId++;
  const msg = { id, method, params: params || {} };
  if (sessionId) msg.sessionId = sessionId;
  chrome.stdio[3].write(JSON.stringify(msg) + "\0");
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}
const pause = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls `expr` (a JS expression returning a value or null) every 20 ms for up to 30 s.
async function waitFor(session, expr) {
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline) {
    const r = await send("Runtime.evaluate", { expression: expr, returnByValue: true }, session);
    if (r.result && r.result.value !== null && r.result.value !== undefined) return r.result.value;
    await pause(20);
  }
  throw new Error("timed out waiting for " + expr);
}

async function open(u) {
  const { targetId } = await send("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
  const t0 = Date.now();
  await send("Page.navigate", { url: u }, sessionId);
  return { targetId, sessionId, t0 };
}

function median(xs) {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

(async () => {
  const first = [], render = [], wall = [], heat = [], heatWall = [];
  let nodeRows = 0, pairRows = 0;
  for (let i = 0; i < runs; i++) {
    const p = await open(url);
    const ds = await waitFor(p.sessionId,
      "document.body && document.body.dataset.loaded === 'true' ? Object.assign({}, document.body.dataset) : null");
    wall.push(Date.now() - p.t0);
    first.push(Number(ds.firstRenderMs));
    render.push(Number(ds.renderMs));
    nodeRows = await waitFor(p.sessionId, "document.querySelectorAll('tr.node').length");
    pairRows = await waitFor(p.sessionId, "document.querySelectorAll('tr.pair').length");
    await send("Target.closeTarget", { targetId: p.targetId });

    const h = await open(url + "#heatmap=OVERLAY");
    const ms = await waitFor(h.sessionId,
      "(document.querySelector('section.layer[data-layer=OVERLAY]') || {dataset: {}}).dataset.heatmapMs || null");
    heatWall.push(Date.now() - h.t0);
    heat.push(Number(ms));
    await send("Target.closeTarget", { targetId: h.targetId });
  }
  const c = await open(url + "#cell=OVERLAY/" + encodeURIComponent(src) + "/" + encodeURIComponent(dst));
  const cell = await waitFor(c.sessionId,
    "(() => { const d = document.getElementById('details'); return d && !d.hidden && d.dataset.state ? " +
    "d.dataset.state + ' rtt=' + (d.querySelector('dd[data-field=rtt]') || {}).textContent : null; })()");
  console.log("first render (navigation -> rendered, page clock): median " + median(first).toFixed(0) + " ms of " +
              runs + " [" + first.map((x) => x.toFixed(0)).join(", ") + "]");
  console.log("one render (DOM build, page clock):              median " + median(render).toFixed(1) + " ms");
  console.log("navigate -> body[data-loaded] (polled, wall):    median " + median(wall) + " ms");
  console.log("rows: " + nodeRows + " nodes, " + pairRows + " broken pairs");
  console.log("heatmap OVERLAY (fetch + decode + draw):         median " + median(heat).toFixed(0) + " ms; " +
              "navigate -> heatmap drawn (wall) median " + median(heatWall) + " ms");
  console.log("details of OVERLAY " + src + " -> " + dst + " (from /api/v1/cell): " + cell);
  const exited = new Promise((r) => chrome.on("exit", r));
  await send("Browser.close").catch(() => {});
  await Promise.race([exited, pause(5000)]);
  fs.rmSync(profile, { recursive: true, force: true });
  process.exit(0);
})().catch((e) => {
  console.error("page_load: " + e.message);
  chrome.kill();
  fs.rmSync(profile, { recursive: true, force: true });
  process.exit(1);
});
