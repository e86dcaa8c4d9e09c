// Open the page in headless Chromium (playwright-core, the system browser; nothing is downloaded) and
// print, per URL, one JSON line: what the page reported (window.circlefit), the heatmap canvas's pixels,
// a typed (x, y) prediction and the page's console errors.
//
//   node check_page.mjs [--screenshot out.png] [--try X,Y] URL...
//
// Exit status 0 when every page is ready with all probes passed, 1 otherwise, 2 when the browser failed.
// CHROMIUM overrides the browser (default /usr/bin/chromium).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
]; // prettier-ignore

const { values, positionals: urls } = parseArgs({
  allowPositionals: true,
  options: { screenshot: { type: "string" }, try: { type: "string", default: "0.6,-0.8" } },
});
if (urls.length === 0) {
  console.error("usage: node check_page.mjs [--screenshot out.png] [--try X,Y] URL...");
  process.exit(2);
}
const [tryX, tryY] = values.try.split(",");

/** Pixel statistics of the heatmap canvas, computed in the page. */
function canvasStats() {
  const canvas = document.getElementById("heatmap");
  const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  const colours = new Set();
  let inked = 0;
  let lumaMin = 1;
  let lumaMax = 0;
  for (let p = 0; p < data.length; p += 4) {
    if (data[p + 3] === 0) continue;
    inked += 1;
    colours.add((data[p] << 16) | (data[p + 1] << 8) | data[p + 2]);
    const luma = (0.2126 * data[p] + 0.7152 * data[p + 1] + 0.0722 * data[p + 2]) / 255;
    lumaMin = Math.min(lumaMin, luma);
    lumaMax = Math.max(lumaMax, luma);
  }
  return { pixels: data.length / 4, inked, colours: colours.size, lumaMin, lumaMax };
}

const profile = mkdtempSync(join(tmpdir(), "circlefit-chromium-"));
let context;
let ok = true;
try {
  // A persistent context is how playwright takes a --user-data-dir: a fresh one per run.
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: FLAGS,
    viewport: { width: 1000, height: 640 },
  });
  // Every wait below ends on an event (the page's state, its run counter); this only stops a hang.
  context.setDefaultTimeout(600_000);
  for (const [index, url] of urls.entries()) {
    const page = await context.newPage();
    const consoleErrors = [];
    page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    await page.goto(url);
    await page.waitForFunction(() => document.documentElement.dataset.state !== "loading");
    const out = { url, ...(await page.evaluate(() => JSON.parse(JSON.stringify(window.circlefit ?? {})))) };
    if (out.state === "ready") {
      out.canvas = await page.evaluate(canvasStats);
      await page.fill("#x", tryX);
      await page.fill("#y", tryY);
      const before = out.runs;
      await page.click("#predict");
      await page.waitForFunction((n) => window.circlefit.runs > n, before);
      out.try = await page.evaluate(() => window.circlefit.try);
      out.tryText = await page.evaluate(() => document.getElementById("try-pred").textContent);
    }
    out.status = await page.evaluate(() => document.getElementById("status").textContent);
    out.consoleErrors = consoleErrors;
    if (index === 0 && values.screenshot) await page.screenshot({ path: values.screenshot, fullPage: true });
    ok &&= out.state === "ready" && out.probes?.failed === 0;
    console.log(JSON.stringify(out));
    await page.close();
  }
} catch (e) {
  console.error(`check_page: error: ${e?.stack ?? e}`);
  process.exitCode = 2;
} finally {
  await context?.close();
  rmSync(profile, { recursive: true, force: true });
}
if (process.exitCode !== 2) process.exitCode = ok ? 0 : 1;
