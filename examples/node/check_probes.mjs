// Load circlefit's exported model with onnxruntime-node, run the probe vectors and compare
// with the reference outputs recorded beside it (the stored weights evaluated in float64). Usage: node check_probes.mjs [path/to/model.onnx]
// The JS API cannot read ONNX metadata, so everything comes from the JSON sidecar (model.json).
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import * as ort from "onnxruntime-node";

function fail(message) {
  console.error(`check_probes: error: ${message}`);
  process.exit(1);
}

function readJson(path) {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    fail(`${path}: cannot read JSON (${e.message})`);
  }
}

const modelPath = process.argv[2] ?? "../../data/export/model.onnx";
const sidecarPath = modelPath.replace(/\.onnx$/, "") + ".json";
let modelBytes;
try {
  modelBytes = readFileSync(modelPath);
} catch (e) {
  fail(`${modelPath}: cannot read the model (${e.message})`);
}
const sidecar = readJson(sidecarPath);
const sha256 = createHash("sha256").update(modelBytes).digest("hex");
if (sha256 !== sidecar.model.sha256) {
  fail(`${modelPath}: sha256 ${sha256} does not match ${sidecarPath} (${sidecar.model.sha256})`);
}
const probes = readJson(join(dirname(sidecarPath), sidecar.probes.file));
if (probes.model_sha256 !== sha256) fail("the probes were made for another model");

const [input] = sidecar.inputs; // {name: "xy", dtype: "float32", shape: ["batch", 2]}
const [output] = sidecar.outputs;
const session = await ort.InferenceSession.create(modelBytes);
if (session.inputNames[0] !== input.name || session.outputNames[0] !== output.name) {
  fail(`model I/O ${session.inputNames} -> ${session.outputNames} differs from the sidecar's`);
}

const n = probes.inputs.length;
const xy = new ort.Tensor("float32", Float32Array.from(probes.inputs.flat()), [n, 2]);
const result = await session.run({ [input.name]: xy });
const got = result[output.name];
if (got.type !== "float32" || got.dims.join(",") !== `${n},1`) {
  fail(`output is ${got.type} [${got.dims}], expected float32 [${n},1]`);
}

// Same rule as the export stage's parity check: |got - expected| <= rtol * (|expected| + offset).
const { rtol, offset } = probes.tolerance;
let worst = { ratio: -1 };
let maxAbs = 0;
probes.expected.forEach((want, i) => {
  const diff = Math.abs(got.data[i] - want);
  const ratio = Number.isNaN(diff) ? Infinity : diff / (rtol * (Math.abs(want) + offset));
  maxAbs = Math.max(maxAbs, diff);
  if (ratio > worst.ratio) worst = { ratio, i, want, value: got.data[i], diff };
});
if (worst.ratio > 1) {
  const [x, y] = probes.inputs[worst.i];
  fail(
    `probe ${worst.i} xy=(${x}, ${y}): got ${worst.value}, expected ${worst.want} ` +
      `(|diff| ${worst.diff} is ${worst.ratio.toFixed(2)}x the tolerance)`,
  );
}
console.log(
  `ok: ${n} probes match (max |diff| ${maxAbs}, max diff/tolerance ${worst.ratio.toFixed(4)}); ` +
    `onnxruntime-node ${ort.env.versions?.node ?? ""}`.trim(),
);
