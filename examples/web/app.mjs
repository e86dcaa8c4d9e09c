// circlefit's exported model in the browser: onnxruntime-web's wasm backend, no CDN, no server logic.
// 1. fetch model.json (the sidecar), model.onnx and probes.json from this origin;
// 2. sha256 of the model (WebCrypto) must equal the sidecar's, or the page refuses and runs nothing;
// 3. run every probe against the recorded reference outputs with the probes' own tolerance;
// 4. predict a typed (x, y) beside the exact x² + y²;
// 5. draw |model − (x² + y²)| over the training disk and the out-of-domain ring (log colour scale).
// The page reports what it did in window.circlefit and <html data-state> (loading → ready | refused | error),
// which is what examples/web/check_page.mjs and tests/test_web_example.py read.
import * as ort from "onnxruntime-web/wasm";

// wasmPaths must be an absolute URL; without COOP/COEP there is no SharedArrayBuffer, so one thread.
ort.env.wasm.wasmPaths = new URL("/ort/", location.href).href;
ort.env.wasm.numThreads = 1;

const CHUNK = 4096; // rows per session.run: keeps the [rows, hidden] activations small
const GRID = 360; // heatmap pixels per side, one model evaluation each
// matplotlib's viridis at 9 stops: perceptually uniform, readable in grey and by most colour-blind readers
const VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"].map(
  (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)),
);

const report = { state: "loading", sessions: 0, runs: 0, ort: ort.env.versions?.web ?? null };
window.circlefit = report;
const $ = (id) => document.getElementById(id);

class Refusal extends Error {}

function setState(state, message, cls) {
  report.state = state;
  document.documentElement.dataset.state = state;
  const status = $("status");
  status.textContent = message;
  status.className = `status ${cls}`;
}

async function fetchOk(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status} ${response.statusText}`);
  return response;
}

async function sha256Hex(bytes) {
  if (!crypto.subtle) {
    // WebCrypto exists only in secure contexts: https, or http on 127.0.0.1 / localhost.
    throw new Refusal("crypto.subtle is unavailable (not a secure context): open the page on 127.0.0.1 or https");
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

function fmt(v, digits = 6) {
  if (!Number.isFinite(v)) return String(v);
  if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e6)) return v.toExponential(2);
  return Number(v.toPrecision(digits)).toString();
}

function info(rows) {
  $("model-info").replaceChildren(
    ...rows.flatMap(([k, v]) => {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = k;
      dd.textContent = v;
      return [dt, dd];
    }),
  );
}

/** Model outputs for xy (Float32Array of 2n numbers), in CHUNK-row runs. */
async function predict(session, io, xy) {
  const n = xy.length / 2;
  const out = new Float32Array(n);
  for (let start = 0; start < n; start += CHUNK) {
    const end = Math.min(n, start + CHUNK);
    const feeds = { [io.input]: new ort.Tensor("float32", xy.slice(2 * start, 2 * end), [end - start, 2]) };
    const got = (await session.run(feeds))[io.output];
    report.runs += 1;
    if (got.type !== "float32" || got.dims.join(",") !== `${end - start},1`) {
      throw new Error(`output is ${got.type} [${got.dims}], expected float32 [${end - start},1]`);
    }
    out.set(got.data, start);
  }
  return out;
}

function runProbes(probes, got) {
  // The export stage's parity rule: |got − expected| <= rtol · (|expected| + offset).
  const { rtol, offset } = probes.tolerance;
  const failures = [];
  let maxAbs = 0;
  let maxRatio = 0;
  probes.expected.forEach((want, i) => {
    const diff = Math.abs(got[i] - want);
    const ratio = Number.isNaN(diff) ? Infinity : diff / (rtol * (Math.abs(want) + offset));
    maxAbs = Math.max(maxAbs, Number.isNaN(diff) ? Infinity : diff);
    maxRatio = Math.max(maxRatio, ratio);
    if (!(ratio <= 1)) failures.push({ i, x: probes.inputs[i][0], y: probes.inputs[i][1], want, got: got[i], ratio });
  });
  const n = probes.expected.length;
  const result = { n, passed: n - failures.length, failed: failures.length, maxAbsDiff: maxAbs, maxRatio, rtol, offset };
  result.failures = failures.slice(0, 20);
  report.probes = result;

  const verdict = $("probes-verdict");
  verdict.textContent = failures.length
    ? `${failures.length} of ${n} probes FAILED, ${result.passed} passed`
    : `${n} of ${n} probes passed`;
  verdict.className = `verdict ${failures.length ? "bad" : "ok"}`;
  $("probes-detail").textContent =
    `Each output vs the recorded reference (the stored weights in float64): |got − expected| ≤ rtol · (|expected| + offset), ` +
    `rtol = ${rtol}, offset = ${fmt(offset)}. Largest |got − expected| ${fmt(maxAbs)}, ` +
    `largest |diff| / tolerance ${fmt(maxRatio, 3)}.`;
  const table = $("probes-failures");
  table.hidden = failures.length === 0;
  table.tBodies[0].replaceChildren(
    ...result.failures.map((f) => {
      const tr = document.createElement("tr");
      for (const v of [f.i, fmt(f.x), fmt(f.y), fmt(f.want), fmt(f.got), fmt(f.ratio, 3)]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.append(td);
      }
      return tr;
    }),
  );
  return result;
}

function region(r, domain) {
  if (domain.rMin > 0 && r < domain.rMin) return "inside the inner radius (out of domain)";
  if (r <= domain.r) return `inside the training disk (r = ${fmt(r, 4)} ≤ ${domain.r})`;
  if (r <= domain.rOod) return `out-of-domain ring (${domain.r} < r = ${fmt(r, 4)} ≤ ${fmt(domain.rOod)})`;
  return `beyond the ring (r = ${fmt(r, 4)}): extrapolation`;
}

async function tryPoint(session, io, domain, x, y) {
  const [pred] = await predict(session, io, Float32Array.of(x, y));
  const [fx, fy] = [Math.fround(x), Math.fround(y)]; // the model sees float32 inputs
  const exact = fx * fx + fy * fy;
  report.try = { x, y, pred, exact };
  $("try-pred").textContent = fmt(pred, 8);
  $("try-exact").textContent = fmt(exact, 8);
  $("try-diff").textContent = fmt(Math.abs(pred - exact), 4);
  $("try-where").textContent = region(Math.hypot(fx, fy), domain);
}

function colour(t) {
  const s = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(s));
  const f = s - i;
  return VIRIDIS[i].map((c, k) => Math.round(c + f * (VIRIDIS[i + 1][k] - c)));
}

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function heatmap(session, io, domain) {
  const extent = domain.rOod; // the square just holds the ring
  const step = (2 * extent) / GRID;
  const cells = [];
  for (let j = 0; j < GRID; j++) {
    for (let i = 0; i < GRID; i++) {
      const x = -extent + (i + 0.5) * step;
      const y = extent - (j + 0.5) * step; // y up
      if (Math.hypot(x, y) <= extent) cells.push(i, j, x, y);
    }
  }
  const n = cells.length / 4;
  const xy = new Float32Array(2 * n);
  for (let k = 0; k < n; k++) [xy[2 * k], xy[2 * k + 1]] = [cells[4 * k + 2], cells[4 * k + 3]];
  const t0 = performance.now();
  const pred = await predict(session, io, xy);
  const ms = performance.now() - t0;
  const err = new Float64Array(n);
  let diskMax = 0;
  let ringMax = 0;
  for (let k = 0; k < n; k++) {
    const [x, y] = [xy[2 * k], xy[2 * k + 1]];
    err[k] = Math.abs(pred[k] - (x * x + y * y));
    if (Math.hypot(x, y) <= domain.r) diskMax = Math.max(diskMax, err[k]);
    else ringMax = Math.max(ringMax, err[k]);
  }
  // Log scale from a whole decade at or below the 1st percentile (a few near-exact zero crossings would
  // otherwise stretch it) up to the largest error rounded up to one significant digit.
  const sorted = Float64Array.from(err).sort();
  const hi = niceCeil(Math.max(sorted[n - 1], 1e-6));
  const lo = Math.min(hi / 10, 10 ** Math.floor(Math.log10(Math.max(quantile(sorted, 0.01), hi * 1e-4))));
  const t = (e) => Math.log10(Math.max(e, lo) / lo) / Math.log10(hi / lo);

  const canvas = $("heatmap");
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(GRID, GRID);
  for (let k = 0; k < n; k++) {
    const [i, j] = [cells[4 * k], cells[4 * k + 1]];
    const p = 4 * (j * GRID + i);
    image.data.set([...colour(t(err[k])), 255], p);
  }
  ctx.putImageData(image, 0, 0);
  const px = (r) => (r / extent) * (GRID / 2);
  const circle = (r, dash) => {
    ctx.beginPath();
    ctx.setLineDash(dash);
    ctx.arc(GRID / 2, GRID / 2, px(r), 0, 2 * Math.PI);
    ctx.stroke();
  };
  ctx.strokeStyle = "rgba(255,255,255,0.9)";
  ctx.lineWidth = 1.5;
  circle(domain.r, [5, 4]);
  if (domain.rMin > 0) circle(domain.rMin, [5, 4]);

  const ticks = legendTicks(lo, hi);
  legend(lo, hi, ticks);
  report.heatmap = { grid: GRID, points: n, extent, lo, hi, ticks, diskMax, ringMax, ms };
  $("heatmap-caption").textContent =
    `${n} points on a ${GRID}×${GRID} grid, x and y from −${fmt(extent)} to ${fmt(extent)}, y up, ` +
    `one wasm inference pass in ${Math.round(ms)} ms. Dashed circle: the training radius ${domain.r}` +
    (domain.rMin > 0 ? ` (and the inner radius ${domain.rMin})` : "") +
    `; the band outside it up to r = ${fmt(extent)} is the out-of-domain ring. ` +
    `Largest |error| in the disk ${fmt(diskMax, 3)}, in the ring ${fmt(ringMax, 3)}. ` +
    `Colours: log scale, errors below ${fmt(lo)} drawn as ${fmt(lo)}.`;
  canvas.addEventListener("click", (ev) => {
    const box = canvas.getBoundingClientRect();
    const x = -extent + ((ev.clientX - box.left) / box.width) * 2 * extent;
    const y = extent - ((ev.clientY - box.top) / box.height) * 2 * extent;
    $("x").value = x.toFixed(3);
    $("y").value = y.toFixed(3);
    tryPoint(session, io, domain, Number($("x").value), Number($("y").value));
  });
}

/** v rounded up to one significant digit. */
function niceCeil(v) {
  const decade = 10 ** Math.floor(Math.log10(v));
  return Number((Math.ceil(v / decade - 1e-9) * decade).toPrecision(1));
}

/** Decades between lo and hi, and hi; with 1-2-5 steps when that gives fewer than three labels. */
function legendTicks(lo, hi) {
  const steps = (ms) => {
    const out = [];
    for (let e = Math.floor(Math.log10(lo)); 10 ** e <= hi; e++) {
      for (const m of ms) {
        const v = Number((m * 10 ** e).toPrecision(1));
        if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push(v);
      }
    }
    return out;
  };
  let ticks = steps([1]);
  if (ticks.length < 3) ticks = steps([1, 2, 5]);
  if (!ticks.includes(hi)) ticks.push(hi);
  return ticks;
}

function legend(lo, hi, ticks) {
  const canvas = $("legend");
  const ctx = canvas.getContext("2d");
  const [top, bottom, left, width] = [10, canvas.height - 10, 6, 16];
  for (let yy = top; yy < bottom; yy++) {
    const [r, g, b] = colour(1 - (yy - top) / (bottom - top - 1));
    ctx.fillStyle = `rgb(${r},${g},${b})`;
    ctx.fillRect(left, yy, width, 1);
  }
  ctx.fillStyle = "#1d1d1f";
  ctx.font = "12px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  const scale = Math.log10(hi / lo);
  for (const v of ticks) {
    const yy = Math.round(bottom - (Math.log10(v / lo) / scale) * (bottom - top));
    ctx.fillRect(left + width, yy, 4, 1);
    ctx.fillText(v >= 0.001 && v < 1e5 ? String(v) : v.toExponential(0), left + width + 7, yy);
  }
}

async function main() {
  const params = new URLSearchParams(location.search);
  const modelUrl = new URL(params.get("model") ?? "/model/model.onnx", location.href);
  const sidecarUrl = new URL(modelUrl.pathname.replace(/\.onnx$/, "") + ".json", modelUrl);
  const sidecar = await (await fetchOk(sidecarUrl)).json();
  if (sidecar.format !== "circlefit-onnx-sidecar/1") throw new Error(`${sidecarUrl}: format ${sidecar.format}?`);
  const modelBytes = new Uint8Array(await (await fetchOk(modelUrl)).arrayBuffer());
  const sha256 = await sha256Hex(modelBytes);
  report.sha256 = sha256;
  report.expectedSha256 = sidecar.model.sha256;
  info([
    ["model", `${modelUrl.pathname} (${modelBytes.length} bytes)`],
    ["sha256", sha256],
    ["producer", `${sidecar.model.producer}, opset ${sidecar.model.opset}, IR ${sidecar.model.ir_version}`],
    ["runtime", `onnxruntime-web ${report.ort ?? "?"}, wasm, ${ort.env.wasm.numThreads} thread`],
  ]);
  if (sha256 !== sidecar.model.sha256) {
    throw new Refusal(
      `${modelUrl.pathname}: sha256 ${sha256} does not match the sidecar ${sidecarUrl.pathname} ` +
        `(${sidecar.model.sha256}). The model was changed or replaced; nothing was run.`,
    );
  }
  const probesUrl = new URL(sidecar.probes.file, modelUrl);
  const probesBytes = new Uint8Array(await (await fetchOk(probesUrl)).arrayBuffer());
  if ((await sha256Hex(probesBytes)) !== sidecar.probes.sha256) {
    throw new Refusal(`${probesUrl.pathname}: sha256 does not match the sidecar's; nothing was run.`);
  }
  const probes = JSON.parse(new TextDecoder().decode(probesBytes));
  if (probes.model_sha256 !== sha256) throw new Refusal(`${probesUrl.pathname} was made for another model`);
  const integrity = $("integrity");
  integrity.textContent = `sha256 matches ${sidecarUrl.pathname}; probes file matches too.`;
  integrity.className = "verdict ok";

  const io = { input: sidecar.inputs[0].name, output: sidecar.outputs[0].name };
  const session = await ort.InferenceSession.create(modelBytes, { executionProviders: ["wasm"] });
  report.sessions += 1;
  if (session.inputNames[0] !== io.input || session.outputNames[0] !== io.output) {
    throw new Error(`model I/O ${session.inputNames} → ${session.outputNames} differs from the sidecar's`);
  }

  const got = await predict(session, io, Float32Array.from(probes.inputs.flat()));
  const result = runProbes(probes, got);

  const data = sidecar.params.data;
  const domain = {
    r: sidecar.train_radius,
    rMin: data.source === "annulus" ? data.r_min : 0,
    rOod: sidecar.train_radius * (1 + data.ood.width),
  };
  const form = $("try-form");
  for (const el of form.elements) el.disabled = false;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    tryPoint(session, io, domain, Number($("x").value), Number($("y").value)).catch(fail);
  });
  await tryPoint(session, io, domain, Number($("x").value), Number($("y").value));
  await heatmap(session, io, domain);

  if (result.failed) setState("ready", `Model loaded, but ${result.failed} of ${result.n} probes failed.`, "bad");
  else setState("ready", `Model verified and all ${result.n} probes passed.`, "ok");
}

function fail(e) {
  console.error(e);
  if (e instanceof Refusal) setState("refused", `Refused: ${e.message}`, "error");
  else setState("error", `Error: ${e?.message ?? e}`, "error");
  report.error = String(e?.message ?? e);
  if (e instanceof Refusal) {
    const integrity = $("integrity");
    integrity.textContent = "Integrity check failed: no inference session was created.";
    integrity.className = "verdict bad";
  }
}

main().catch(fail);
