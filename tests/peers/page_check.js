// Drives Debian's Chromium (through playwright-core) against the agent's
// live page, for sockpulse's tests. Prints one line per step for the test
// to check; exits non-zero with `FAIL <why>` when a step times out.
//
// usage: node page_check.js URL SERVER_PID SHOTS_DIR RESTARTED_FLAG
//   1. the page loads, the target "py" is up, its sparkline has points;
//   2. SIGSTOP to SERVER_PID: the row turns down without a reload
//      (`DOWN <ms>`), the timeline shows the disconnect (`TIMELINE ...`);
//   3. SIGCONT: the row is up again; screenshots at desktop and phone widths;
//   4. `RESTART`: the test restarts the agent and creates RESTARTED_FLAG; the
//      page shows it lost the agent, then reconnects by itself;
//   5. with JavaScript off, the server-rendered table is there (`NOJS ...`);
//   6. `ERRORS <n>` console errors, each on its own `ERROR` line.
"use strict";
const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

const [url, serverPid, shots, flag] = process.argv.slice(2);
// `node page_check.js --tls URL SPKI USER PASSWORD`: the page over HTTPS with
// basic auth, the certificate trusted by its key's hash (a throwaway CA's
// certificate is not in the browser's store): it must load and go live.
const tlsMode = process.argv[2] === "--tls";
const say = (line) => process.stdout.write(line + "\n");
const row = 'tr[data-target="py"]';

async function step(name, promise) {
  try {
    return await promise;
  } catch (e) {
    say(`FAIL ${name}: ${String(e).split("\n")[0]}`);
    process.exit(1);
  }
}

// Debian's Chromium, quiet and sandbox-free (the tests run as root).
function launch(extraArgs) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync", ...extraArgs],
  });
}

// A page of `context` whose console errors and uncaught exceptions go to `errors`.
async function watchedPage(context, errors) {
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  return page;
}

async function tlsCheck() {
  const [, , , pageUrl, spki, username, password] = process.argv;
  const browser = await launch([`--ignore-certificate-errors-spki-list=${spki}`]);
  const errors = [];
  const page = await watchedPage(await browser.newContext({ httpCredentials: { username, password } }), errors);
  await step("tls load", page.goto(pageUrl, { waitUntil: "load" }));
  await step("tls live", page.waitForSelector("#conn.live", { timeout: 15000 }));
  await step("tls row", page.waitForSelector(`${row}.up`, { timeout: 15000 }));
  say(`TLS-LIVE ${new URL(page.url()).protocol}`);
  const denied = await browser.newContext();
  const other = await denied.newPage();
  // Headless Chromium turns a 401 without credentials into a failed load.
  const answer = await other.goto(pageUrl).then((r) => String(r.status()), (e) => String(e).split("\n")[0]);
  say(`NO-CREDENTIALS ${answer}`);
  say(`ERRORS ${errors.length}`);
  for (const e of errors) say(`ERROR ${e}`);
  await browser.close();
}

if (tlsMode) {
  tlsCheck().catch((e) => { say(`FAIL ${e}`); process.exit(1); });
} else (async () => {
  const browser = await launch([]);
  const errors = [];
  const page = await watchedPage(await browser.newContext({ viewport: { width: 1280, height: 900 } }), errors);
  await step("load", page.goto(url, { waitUntil: "load" }));
  await step("live", page.waitForSelector("#conn.live", { timeout: 10000 }));
  await step("up", page.waitForSelector(`${row}.up`, { timeout: 10000 }));
  say("UP");
  await page.evaluate(() => { window.__sameDocument = true; });
  const points = await step("sparkline", page.waitForFunction((sel) => {
    const p = document.querySelector(`${sel} polyline`);
    const n = p ? p.getAttribute("points").trim().split(/\s+/).filter(Boolean).length : 0;
    return n >= 3 ? n : false;
  }, row, { timeout: 15000 }));
  say(`SPARK ${await points.jsonValue()}`);

  const stopped = Date.now();
  process.kill(Number(serverPid), "SIGSTOP");
  await step("down", page.waitForSelector(`${row}.down`, { timeout: 10000 }));
  say(`DOWN ${Date.now() - stopped}`);
  const item = await step("timeline", page.waitForSelector(
    '#timeline li[data-kind="disconnected"][data-target="py"]', { timeout: 10000 }));
  say(`TIMELINE ${(await item.innerText()).replace(/\s+/g, " ")}`);
  say(`SAME-DOCUMENT ${await page.evaluate(() => window.__sameDocument === true)}`);
  const failure = await page.innerText(`${row} td.failure`);
  say(`FAILURE ${failure.replace(/\s+/g, " ")}`);

  process.kill(Number(serverPid), "SIGCONT");
  await step("up again", page.waitForSelector(`${row}.up`, { timeout: 15000 }));
  say("UP-AGAIN");
  await page.screenshot({ path: path.join(shots, "desktop.png"), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: path.join(shots, "phone.png"), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
  // The system's dark setting turns the page dark.
  const background = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const light = await background();
  await page.emulateMedia({ colorScheme: "dark" });
  say(`THEMES ${light} ${await background()}`);
  await page.screenshot({ path: path.join(shots, "dark.png"), fullPage: true });
  await page.emulateMedia({ colorScheme: "light" });

  // Console errors count until here: losing the agent on purpose makes the
  // browser log its failed reconnects.
  const errorsBeforeRestart = errors.length;
  say("RESTART");
  await step("lost the agent", page.waitForSelector("#conn.down", { timeout: 30000 }));
  say(`LOST ${(await page.innerText("#conn")).trim()}`);
  await step("restarted", new Promise((resolve, reject) => {
    const t0 = Date.now();
    const poll = setInterval(() => {
      if (fs.existsSync(flag)) { clearInterval(poll); resolve(); }
      if (Date.now() - t0 > 60000) { clearInterval(poll); reject(new Error("no restart")); }
    }, 100);
  }));
  await step("reconnected", page.waitForSelector("#conn.live", { timeout: 40000 }));
  await step("up after restart", page.waitForSelector(`${row}.up`, { timeout: 15000 }));
  say(`RECONNECTED ${await page.evaluate(() => window.__sameDocument === true)}`);

  const plain = await browser.newContext({ javaScriptEnabled: false });
  const still = await plain.newPage();
  await step("no-js load", still.goto(url, { waitUntil: "load" }));
  const rows = await still.$$eval("#targets tbody tr[data-target]", (trs) => trs.map((t) => t.dataset.target));
  const conn = (await still.innerText("#conn")).trim();
  say(`NOJS ${rows.join(",")} | ${conn}`);

  const size = (await page.evaluate(async () => {
    const get = async (u) => (await (await fetch(u)).text()).length;
    return (await get(location.href)) + (await get("assets/app.js")) + (await get("assets/style.css"));
  }));
  say(`BYTES ${size}`);
  say(`ERRORS ${errorsBeforeRestart}`);
  for (const e of errors) say(`ERROR ${e}`);
  await browser.close();
})().catch((e) => { say(`FAIL ${e}`); process.exit(1); });
