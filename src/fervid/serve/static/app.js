// fervid web page: live camera with the face detector (YuNet) and the emotion model running in
// this browser through onnxruntime-web (WebAssembly), and photo upload to POST /v1/predict.
// Everything is served by the fervid app itself: no CDN, no network beyond this origin.
import * as ort from "/static/vendor/onnxruntime-web/ort.wasm.min.mjs";

ort.env.wasm.wasmPaths = "/static/vendor/onnxruntime-web/";
// WebAssembly threads need cross-origin isolation, which the app's headers (COOP/COEP) give.
ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;

// ---------------------------------------------------------------- constants
const DET_LONG_SIDE = 320;   // the frame is shrunk to this long side for YuNet
const DET_SCORE = 0.6;       // YuNet score threshold
const DET_NMS = 0.3;         // IoU above which the weaker box is dropped
const DET_TOP_K = 50;
const STRIDES = [8, 16, 32];
const AMBIGUOUS = 0.65;      // fervid.inference.ambiguity.AMBIGUITY_THRESHOLD (normalised entropy)
const LABEL_THRESHOLD = 0.3; // labels_above threshold of the Python API
// fervid.detectors.LANDMARK_NAMES: YuNet's five points in its own order (the person's right eye first).
const LANDMARK_NAMES = ["right_eye", "left_eye", "nose", "mouth_right", "mouth_left"];
const TIMELINE_SECONDS = 60;      // the timeline keeps the last minute
const TIMELINE_MIN_SECONDS = 10;  // and shows at least 10 s
const COLORS = { angry: "#ff5a5a", disgust: "#8bc34a", fear: "#b07cff", happy: "#ffd23f", sad: "#4f8dff",
                 surprise: "#ff9f40", neutral: "#b8bec8", contempt: "#26c6da" };
const color = (label) => COLORS[label] || "#4fb3ff";

// State for people and tests (the browser test reads window.fervid).
const state = window.fervid = {
  modelLoaded: false, detectorLoaded: false, model: null, camera: "idle", error: null,
  framesProcessed: 0, facesDrawn: 0, fps: 0, msPerFrame: 0, lastFaces: [], lastAligned: [], threads: ort.env.wasm.numThreads,
  upload: { status: "idle", faces: null, error: null },
  timeline: { points: 0, first: null, mainId: null, switches: [] }, labelRects: [], canvasSize: null,
};

const $ = (id) => document.getElementById(id);
const video = $("video"), live = $("live-canvas"), liveCtx = live.getContext("2d");
const grab = document.createElement("canvas"), grabCtx = grab.getContext("2d", { willReadFrequently: true });
const small = document.createElement("canvas"), smallCtx = small.getContext("2d", { willReadFrequently: true });

function setStatus(el, text, isError = false) {
  el.textContent = text;
  el.classList.toggle("error", isError);
}

// One inference at a time on the WASM backend.
let queue = Promise.resolve();
function exclusive(fn) {
  const run = queue.then(fn, fn);
  queue = run.catch(() => {});
  return run;
}

// ---------------------------------------------------------------- models
const sessionOptions = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
let detector = null;
const emotionModels = {};   // name -> {session, meta}
let current = null;         // the selected {session, meta}

async function loadDetector() {
  detector = await ort.InferenceSession.create("/models/yunet.onnx", sessionOptions);
  state.detectorLoaded = true;
}

async function loadEmotionModel(name) {
  if (!emotionModels[name]) {
    const res = await fetch(`/models/${name}.json`);
    if (!res.ok) throw new Error(`model ${name}: ${await errorText(res)}`);
    const meta = await res.json();
    const session = await ort.InferenceSession.create(meta.url, sessionOptions);
    emotionModels[name] = { session, meta, name };
  }
  current = emotionModels[name];
  state.model = name;
  state.modelLoaded = true;
  buildBars(current.meta.labels);
  buildLegend(current.meta.labels);
  // The timeline keeps its history across a model switch; the switch is marked on it.
  if (history.length) {
    switches.push({ t: performance.now(), model: name });
    state.timeline.switches = switches.map((s) => s.model);
  }
  return current;
}

async function errorText(res) {
  try {
    const j = await res.json();
    return j.error ? `${j.error.message} (${res.status} ${j.error.code})` : `HTTP ${res.status}`;
  } catch { return `HTTP ${res.status}`; }
}

// ---------------------------------------------------------------- YuNet (face detection)
// Input: float32 NCHW, BGR 0..255, zero-padded bottom/right to a multiple of 32.
// Outputs per stride s: cls_s, obj_s (N x 1), bbox_s (N x 4), kps_s (N x 10), N = rows * cols.
// score = sqrt(clip(cls) * clip(obj)); centre = ((col + b0) s, (row + b1) s), size = (e^b2 s, e^b3 s).
async function detectFaces(source, W, H) {
  const scale = Math.min(1, DET_LONG_SIDE / Math.max(W, H));
  const w = Math.max(1, Math.round(W * scale)), h = Math.max(1, Math.round(H * scale));
  const pw = Math.ceil(w / 32) * 32, ph = Math.ceil(h / 32) * 32;
  if (small.width !== w || small.height !== h) { small.width = w; small.height = h; }
  smallCtx.drawImage(source, 0, 0, w, h);
  const px = smallCtx.getImageData(0, 0, w, h).data;
  const plane = pw * ph, input = new Float32Array(3 * plane);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 4, o = y * pw + x;
      input[o] = px[i + 2];             // B
      input[plane + o] = px[i + 1];     // G
      input[2 * plane + o] = px[i];     // R
    }
  }
  const out = await detector.run({ input: new ort.Tensor("float32", input, [1, 3, ph, pw]) });
  const dets = [];
  for (const s of STRIDES) {
    const cls = out[`cls_${s}`].data, obj = out[`obj_${s}`].data, bbox = out[`bbox_${s}`].data, kps = out[`kps_${s}`].data;
    const cols = pw / s, rows = ph / s;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const idx = r * cols + c;
        const score = Math.sqrt(Math.min(1, Math.max(0, cls[idx])) * Math.min(1, Math.max(0, obj[idx])));
        if (score < DET_SCORE) continue;
        const cx = (c + bbox[idx * 4]) * s, cy = (r + bbox[idx * 4 + 1]) * s;
        const bw = Math.exp(bbox[idx * 4 + 2]) * s, bh = Math.exp(bbox[idx * 4 + 3]) * s;
        const landmarks = [];
        for (let k = 0; k < 5; k++) landmarks.push([(c + kps[idx * 10 + 2 * k]) * s / scale, (r + kps[idx * 10 + 2 * k + 1]) * s / scale]);
        dets.push({ x: (cx - bw / 2) / scale, y: (cy - bh / 2) / scale, w: bw / scale, h: bh / scale, score, landmarks });
      }
    }
  }
  return nms(dets).map((d) => clipBox(d, W, H)).filter((d) => d && d.w > 1 && d.h > 1);
}

function iou(a, b) {
  const x0 = Math.max(a.x, b.x), y0 = Math.max(a.y, b.y);
  const x1 = Math.min(a.x + a.w, b.x + b.w), y1 = Math.min(a.y + a.h, b.y + b.h);
  const inter = Math.max(0, x1 - x0) * Math.max(0, y1 - y0);
  return inter / (a.w * a.h + b.w * b.h - inter + 1e-9);
}

function nms(dets) {
  dets.sort((a, b) => b.score - a.score);
  const keep = [];
  for (const d of dets) {
    if (keep.every((k) => iou(k, d) <= DET_NMS)) keep.push(d);
    if (keep.length >= DET_TOP_K) break;
  }
  return keep;
}

function clipBox(d, W, H) {
  const x0 = Math.max(0, Math.round(d.x)), y0 = Math.max(0, Math.round(d.y));
  const x1 = Math.min(W, Math.round(d.x + d.w)), y1 = Math.min(H, Math.round(d.y + d.h));
  if (x1 <= x0 || y1 <= y0) return null;
  return { ...d, x: x0, y: y0, w: x1 - x0, h: y1 - y0 };
}

// ---------------------------------------------------------------- face crop (fervid's crop_face)
// The same crop as fervid.inference.crop.crop_face, so the page and the service classify the
// same pixels: aligned on YuNet's five landmarks when they are sane, else the box crop.
// Coordinates follow OpenCV's pixel-centre convention (pixel i has its centre at x = i).

// Grey as fervid.data.io.rgb_to_gray (OpenCV COLOR_RGB2GRAY): ITU-R 601 luma in OpenCV's
// 14-bit fixed point, rounded to uint8 (bit-exact with cv2).
function greyRegion(ctx, rx, ry, rw, rh) {
  const data = ctx.getImageData(rx, ry, rw, rh).data, g = new Uint8Array(rw * rh);
  for (let i = 0, j = 0; i < g.length; i++, j += 4) g[i] = (data[j] * 4899 + data[j + 1] * 9617 + data[j + 2] * 1868 + 8192) >> 14;
  return { g, rx, ry, rw, rh };
}

// crop.CANONICAL_LANDMARKS_48: where YuNet finds the five landmarks (right eye, left eye,
// nose tip, right and left mouth corner) on FER2013's 48x48 training faces.
const CANONICAL_LANDMARKS_48 = [[14.39, 17.99], [32.61, 17.99], [23.50, 28.20], [16.31, 35.86], [30.69, 35.86]];
const MAX_SCALE_DISAGREEMENT = 3.0;  // crop._MAX_SCALE_DISAGREEMENT

// Landmarks as [[x, y] x 5] in LANDMARK_NAMES order, from the schema's {right_eye: [x, y], ...}
// (a face's `landmarks`, the page's or the API's) or from such a list; null stays null.
function landmarkPoints(landmarks) {
  if (!landmarks) return null;
  return Array.isArray(landmarks) ? landmarks : LANDMARK_NAMES.map((n) => landmarks[n]);
}

// crop.alignment_matrix: least-squares similarity (image -> size x size crop) of the landmarks
// onto the canonical ones, {a, b, tx, ty} for [[a, -b, tx], [b, a, ty]]; null when degenerate.
function alignmentMatrix(landmarks, size) {
  if (!Array.isArray(landmarks) || landmarks.length !== CANONICAL_LANDMARKS_48.length) return null;
  const src = landmarks.map((p) => [Number(p[0]), Number(p[1])]);
  const dst = CANONICAL_LANDMARKS_48.map(([x, y]) => [(x + 0.5) * (size / 48) - 0.5, (y + 0.5) * (size / 48) - 0.5]);
  const mean = (pts, c) => pts.reduce((acc, p) => acc + p[c], 0) / pts.length;
  const psx = mean(src, 0), psy = mean(src, 1), qsx = mean(dst, 0), qsy = mean(dst, 1);
  let norm = 0, dot = 0, cross = 0;
  for (let i = 0; i < src.length; i++) {
    const px = src[i][0] - psx, py = src[i][1] - psy, qx = dst[i][0] - qsx, qy = dst[i][1] - qsy;
    norm += px * px + py * py;
    dot += px * qx + py * qy;
    cross += px * qy - py * qx;
  }
  if (!Number.isFinite(norm) || norm < 1e-6) return null;
  const a = dot / norm, b = cross / norm;
  return { a, b, tx: qsx - (a * psx - b * psy), ty: qsy - (b * psx + a * psy) };
}

// crop.warp_face: each output pixel is the mean of k x k bilinear samples over its footprint
// (k = ceil(1 / scale), at most 8, when the crop shrinks the face), borders repeated. Like
// OpenCV (warpAffine to uint8 on the k-times grid, then INTER_AREA), samples are rounded to
// grey levels before the mean, and the mean is rounded again.
function alignedCrop(ctx, W, H, M, size) {
  const { a, b, tx, ty } = M, s2 = a * a + b * b, scale = Math.sqrt(s2);
  const k = scale >= 1 ? 1 : Math.min(8, Math.ceil(1 / scale - 1e-9));
  // inverse of the similarity: crop pixel (X, Y) -> image pixel (x, y)
  const ix = (X, Y) => (a * (X - tx) + b * (Y - ty)) / s2, iy = (X, Y) => (-b * (X - tx) + a * (Y - ty)) / s2;
  // Only the image pixels under the crop are read: its corners mapped back, one pixel of slack.
  const cx = [], cy = [];
  for (const X of [-0.5, size - 0.5]) for (const Y of [-0.5, size - 0.5]) { cx.push(ix(X, Y)); cy.push(iy(X, Y)); }
  const clampI = (v, hi) => Math.min(hi, Math.max(0, v));
  const rx = clampI(Math.floor(Math.min(...cx)) - 1, W - 1), rx1 = clampI(Math.ceil(Math.max(...cx)) + 1, W - 1);
  const ry = clampI(Math.floor(Math.min(...cy)) - 1, H - 1), ry1 = clampI(Math.ceil(Math.max(...cy)) + 1, H - 1);
  const { g, rw, rh } = greyRegion(ctx, rx, ry, rx1 - rx + 1, ry1 - ry + 1);
  const sample = (x, y) => {
    // BORDER_REPLICATE == coordinates clamped to the image
    x = clampI(x, W - 1) - rx; y = clampI(y, H - 1) - ry;
    const x0 = clampI(Math.floor(x), rw - 1), y0 = clampI(Math.floor(y), rh - 1);
    const x1 = Math.min(x0 + 1, rw - 1), y1 = Math.min(y0 + 1, rh - 1), fx = x - x0, fy = y - y0;
    const r0 = y0 * rw, r1 = y1 * rw;
    return (1 - fy) * ((1 - fx) * g[r0 + x0] + fx * g[r0 + x1]) + fy * ((1 - fx) * g[r1 + x0] + fx * g[r1 + x1]);
  };
  const out = new Uint8Array(size * size), n = k * k;
  for (let oy = 0; oy < size; oy++) {
    for (let ox = 0; ox < size; ox++) {
      let acc = 0;
      for (let j = 0; j < k; j++) {
        const Y = oy + (j + 0.5) / k - 0.5;
        for (let i = 0; i < k; i++) {
          const X = ox + (i + 0.5) / k - 0.5;
          acc += Math.round(sample(ix(X, Y), iy(X, Y)));
        }
      }
      out[oy * size + ox] = Math.round(acc / n);
    }
  }
  return out;
}

// crop.box_crop: square of side max(w, h) * (1 + 2 margin) centred on the box, border pixels
// repeated outside the image, resized to size x size with area averaging when shrinking
// (OpenCV INTER_AREA) and bilinear interpolation when enlarging (INTER_LINEAR).
function axisWeights(start, side, size) {
  // For each output index: [[sourceIndex, weight], ...] of the area it covers (relative to `start`).
  const out = [], scale = side / size;
  for (let i = 0; i < size; i++) {
    const a = i * scale, b = (i + 1) * scale, taps = [];
    if (scale > 1) {
      for (let k = Math.floor(a); k < Math.ceil(b); k++) {
        const wgt = Math.min(b, k + 1) - Math.max(a, k);
        if (wgt > 1e-9) taps.push([start + k, wgt / scale]);
      }
    } else {
      const src = (i + 0.5) * scale - 0.5, k = Math.floor(src), f = src - k;
      taps.push([start + k, 1 - f], [start + k + 1, f]);
    }
    out.push(taps);
  }
  return out;
}

function boxCrop(ctx, W, H, box, margin, size) {
  const side = Math.max(box.w, box.h) * (1 + 2 * margin);
  const cx = box.x + box.w / 2, cy = box.y + box.h / 2;
  const x0 = Math.round(cx - side / 2), y0 = Math.round(cy - side / 2), s = Math.max(1, Math.round(side));
  // only the part of the square inside the image is read; indices are clamped into it
  const rx = Math.max(0, x0), ry = Math.max(0, y0);
  const rw = Math.max(1, Math.min(W, x0 + s) - rx), rh = Math.max(1, Math.min(H, y0 + s) - ry);
  const { g } = greyRegion(ctx, rx, ry, rw, rh);
  const clampX = (v) => Math.min(rw - 1, Math.max(0, v - rx)), clampY = (v) => Math.min(rh - 1, Math.max(0, v - ry));
  const wx = axisWeights(x0, s, size).map((taps) => taps.filter(([, w]) => w !== 0).map(([i, w]) => [clampX(i), w]));
  const wy = axisWeights(y0, s, size).map((taps) => taps.filter(([, w]) => w !== 0).map(([i, w]) => [clampY(i), w]));
  // separable: rows first (size x rh), then columns
  const tmp = new Float32Array(size * rh);
  for (let y = 0; y < rh; y++) {
    const row = y * rw;
    for (let ox = 0; ox < size; ox++) {
      let acc = 0;
      for (const [xi, w] of wx[ox]) acc += w * g[row + xi];
      tmp[y * size + ox] = acc;
    }
  }
  const grey = new Uint8Array(size * size);
  for (let oy = 0; oy < size; oy++) {
    for (let ox = 0; ox < size; ox++) {
      let acc = 0;
      for (const [yi, w] of wy[oy]) acc += w * tmp[yi * size + ox];
      grey[oy * size + ox] = Math.round(Math.min(255, Math.max(0, acc)));
    }
  }
  return grey;
}

// crop.crop_face: {grey: size x size Uint8Array, aligned}. Aligned on the landmarks unless they
// are missing, degenerate, or describe a face over 3x larger or smaller than the box (broken
// landmarks, not a face); then the box crop (margin is used only there).
function cropFace(ctx, W, H, box, landmarks, margin, size) {
  const points = landmarkPoints(landmarks);
  const M = points ? alignmentMatrix(points, size) : null;
  if (M) {
    const implied = size / Math.max(Math.hypot(M.a, M.b), 1e-9), side = Math.max(box.w, box.h, 1);
    const ratio = implied / side;
    if (1 / MAX_SCALE_DISAGREEMENT <= ratio && ratio <= MAX_SCALE_DISAGREEMENT) {
      return { grey: alignedCrop(ctx, W, H, M, size), aligned: true };
    }
  }
  return { grey: boxCrop(ctx, W, H, box, margin, size), aligned: false };
}

// ---------------------------------------------------------------- emotions
// fervid.runtime.softmax then FacePipeline.probabilities: the float32 logits over the
// temperature in float64, each row divided by its sum once more (sums to 1 to the last digit).
function softmax(logits, t) {
  const z = Array.from(logits, (v) => v / t), m = Math.max(...z);
  const e = z.map((v) => Math.exp(v - m)), sum = e.reduce((a, b) => a + b, 0);
  const p = e.map((v) => v / sum), total = p.reduce((a, b) => a + b, 0);
  return p.map((v) => v / total);
}

// The emotion fields of a face, as fervid.inference.pipeline.FacePipeline.results and
// fervid.inference.ambiguity compute them from one face's probabilities (float64 in both).
function describe(probs, labels) {
  let k = 0;
  probs.forEach((p, i) => { if (p > probs[k]) k = i; });
  const clip01 = (v) => Math.min(1, Math.max(0, v));
  const ent = labels.length < 2 ? 0
    : clip01(-probs.reduce((a, p) => { p = clip01(p); return a + (p > 0 ? p * Math.log(p) : 0); }, 0) / Math.log(labels.length));
  const sorted = [...probs].sort((a, b) => b - a);
  // stable sort: equal probabilities keep the label order, as numpy's argsort(kind="stable")
  const above = labels.map((l, i) => [l, probs[i]]).sort((a, b) => b[1] - a[1])
    .filter(([, p]) => p >= LABEL_THRESHOLD).map(([l]) => l);
  return { label: labels[k], confidence: probs[k], probabilities: Object.fromEntries(labels.map((l, i) => [l, probs[i]])),
           ambiguity: ent, top2_margin: sorted.length < 2 ? 1 : sorted[0] - sorted[1], ambiguous: ent >= AMBIGUOUS,
           labels_above: above };
}

// The model's input as fervid.data.preprocess.to_array makes it, bit for bit: every step in
// float32 ((grey / 255 - mean) / std, each operation rounded to float32 as numpy does; a float64
// operation on float32 operands rounded once to float32 is the float32 operation).
function modelInput(preprocess, crops) {
  const size = preprocess.input_size, inChans = preprocess.in_chans || 1;
  const mean = Math.fround(preprocess.mean), std = Math.fround(preprocess.std);
  const n = crops.length, plane = size * size, x = new Float32Array(n * inChans * plane);
  for (let f = 0; f < n; f++) {
    for (let c = 0; c < inChans; c++) {
      const off = (f * inChans + c) * plane;
      for (let i = 0; i < plane; i++) x[off + i] = Math.fround(Math.fround(crops[f][i] / 255) - mean) / std;
    }
  }
  return x;
}

async function classify(model, crops) {
  const size = model.meta.preprocess.input_size, inChans = model.meta.preprocess.in_chans || 1, n = crops.length;
  const x = modelInput(model.meta.preprocess, crops);
  const out = await model.session.run({ input: new ort.Tensor("float32", x, [n, inChans, size, size]) });
  const logits = out[model.session.outputNames[0]].data, k = model.meta.labels.length;
  const res = [];
  for (let f = 0; f < n; f++) res.push(describe(softmax(logits.slice(f * k, (f + 1) * k), model.meta.temperature), model.meta.labels));
  return res;
}

// Where the time goes, ms per frame (moving averages), for people and the benchmark.
state.timing = { grab: 0, detect: 0, crop: 0, classify: 0 };
function time(t) {
  for (const k in t) state.timing[k] = state.timing[k] ? 0.9 * state.timing[k] + 0.1 * t[k] : t[k];
}

// A face as the result schema has it (fervid.inference.schema.FACE_FIELDS, docs/result-schema.md):
// the same fields, names and order as a face of POST /v1/predict. `box` is YuNet's box rounded
// and clipped to the image; `score` and `landmarks` keep full precision (the JSON of the Python
// API rounds them to 4 and 2 decimals), as the crop was made from these very landmarks.
function faceResult(det, emotion) {
  const { label, confidence, probabilities, ambiguity, top2_margin, ambiguous, labels_above } = emotion;
  return {
    box: { x: det.x, y: det.y, w: det.w, h: det.h }, score: det.score, label, confidence, probabilities,
    ambiguity, top2_margin, ambiguous, labels_above,
    landmarks: det.landmarks ? Object.fromEntries(LANDMARK_NAMES.map((n, i) => [n, det.landmarks[i]])) : null,
  };
}

// Faces and emotions of one image source (video, image, canvas) of size W x H: {faces, crops},
// `faces` in the schema's fields (faceResult), left to right; `crops[i]` the page's own
// size x size grey crop of faces[i] ({grey: Uint8Array, aligned: whether it was aligned on the
// landmarks}), kept beside the faces, not in them: the page's internals, for tests and the console.
async function analyse(source, W, H) {
  const t0 = performance.now();
  if (grab.width !== W || grab.height !== H) { grab.width = W; grab.height = H; }
  grabCtx.drawImage(source, 0, 0, W, H);
  const t1 = performance.now();
  const boxes = await detectFaces(grab, W, H);
  const t2 = performance.now();
  if (!boxes.length) { time({ grab: t1 - t0, detect: t2 - t1, crop: 0, classify: 0 }); return { faces: [], crops: [] }; }
  const { input_size: size, face_margin: margin } = current.meta.preprocess;
  const crops = boxes.map((b) => cropFace(grabCtx, W, H, b, b.landmarks, margin, size));
  const t3 = performance.now();
  const emotions = await classify(current, crops.map((c) => c.grey));
  time({ grab: t1 - t0, detect: t2 - t1, crop: t3 - t2, classify: performance.now() - t3 });
  const order = boxes.map((b, i) => i).sort((i, j) => boxes[i].x - boxes[j].x || boxes[i].y - boxes[j].y);
  return { faces: order.map((i) => faceResult(boxes[i], emotions[i])), crops: order.map((i) => crops[i]) };
}

// ---------------------------------------------------------------- drawing
// A label of tw x th pixels for a face box, kept inside the W x H canvas and off the labels
// already placed (`taken`): above the box when there is room, else below it, else inside its top
// edge, moved left at the right edge; when every place is taken, the free one nearest above.
function placeLabel(box, tw, th, W, H, taken = []) {
  const x = Math.min(Math.max(0, box.x), Math.max(0, W - tw));
  const fit = (y) => Math.min(Math.max(0, y), Math.max(0, H - th));
  const free = (y) => !taken.some((r) => x < r.x + r.w && r.x < x + tw && y < r.y + r.h && r.y < y + th);
  const above = box.y - th, below = box.y + box.h;
  const tries = (above >= 0 ? [above, below] : [below, above]).map(fit).concat([fit(box.y)]);
  for (let y = fit(above); y > 0 && tries.length < 64; y = fit(y - th)) tries.push(y);  // stacked upwards
  for (let y = fit(below); y < H - th && tries.length < 128; y = fit(y + th)) tries.push(y);  // then downwards
  const y = tries.find(free);
  return { x, y: y === undefined ? tries[0] : y, w: tw, h: th };
}
state.placeLabel = placeLabel;

// Boxes, landmarks, labels and probability bars; `scale` = canvas pixels per CSS pixel, so the
// text is ~14 CSS pixels high however large the image is shown. Returns the label rectangles.
function drawFaces(ctx, faces, labels, scale = 1) {
  const font = Math.max(12, Math.round(14 * scale));
  const W = ctx.canvas.width, H = ctx.canvas.height, rects = [];
  ctx.lineWidth = Math.max(2, 2 * scale);
  ctx.font = `600 ${font}px system-ui, sans-serif`;
  for (const f of faces) {
    const { x, y, w, h } = f.box, col = color(f.label);
    ctx.strokeStyle = col;
    ctx.strokeRect(x, y, w, h);
    // Eyes, nose tip and mouth corners: {name: [x, y]} (the schema's landmarks), or null.
    const points = landmarkPoints(f.landmarks) || [];
    ctx.fillStyle = col;
    for (const p of points) if (Array.isArray(p)) ctx.fillRect(p[0] - 2 * scale, p[1] - 2 * scale, 4 * scale, 4 * scale);
    const text = `${f.label} ${Math.round(100 * f.confidence)}%${f.ambiguous ? " ?" : ""}`;
    const r = placeLabel(f.box, ctx.measureText(text).width + 8, font + 6, W, H, rects);
    ctx.fillStyle = col;
    ctx.fillRect(r.x, r.y, r.w, r.h);
    ctx.fillStyle = "#000";
    ctx.fillText(text, r.x + 4, r.y + font);
    rects.push(r);
    // probability bars beside the box (kept inside the canvas too)
    const bw = Math.max(40, Math.round(w * 0.5)), bh = Math.max(4, Math.round(font * 0.5)), gap = 2;
    const bx = x + w + 6 + bw <= W ? x + w + 6 : Math.max(0, x - bw - 6);
    const top = Math.max(0, Math.min(y, H - labels.length * (bh + gap)));
    labels.forEach((l, i) => {
      const by = top + i * (bh + gap);
      ctx.fillStyle = "rgba(0,0,0,.55)";
      ctx.fillRect(bx, by, bw, bh);
      ctx.fillStyle = color(l);
      ctx.fillRect(bx, by, bw * (f.probabilities[l] || 0), bh);
    });
  }
  return { rects, font };
}

// Canvas pixels per CSS pixel of a canvas as laid out (1 when it is shown at least full size).
function pixelScale(cv) {
  const shown = cv.getBoundingClientRect().width;
  return shown > 0 ? Math.max(1, cv.width / shown) : 1;
}

function buildBars(labels) {
  const el = $("bars");
  el.innerHTML = "";
  for (const l of labels) {
    const name = document.createElement("span"); name.textContent = l;
    const track = document.createElement("div"); track.className = "track";
    const fill = document.createElement("div"); fill.className = "fill"; fill.style.width = "0%"; fill.style.background = color(l);
    fill.dataset.label = l; track.append(fill);
    const pct = document.createElement("span"); pct.className = "pct"; pct.dataset.label = l; pct.textContent = "-";
    el.append(name, track, pct);
  }
}

function updateBars(face) {
  for (const fill of $("bars").querySelectorAll(".fill")) fill.style.width = face ? `${100 * face.probabilities[fill.dataset.label]}%` : "0%";
  for (const pct of $("bars").querySelectorAll(".pct")) pct.textContent = face ? `${Math.round(100 * face.probabilities[pct.dataset.label])}%` : "-";
  $("ambiguity").textContent = face
    ? `ambiguity ${face.ambiguity.toFixed(2)}${face.ambiguous ? " (ambiguous: " + readings(face).join(" / ") + ")" : ""}`
    : "no face";
}

// The plausible readings of an ambiguous face: labels above the threshold, else the top two.
function readings(face) {
  if (face.labels_above.length > 1) return face.labels_above;
  return Object.entries(face.probabilities).sort((a, b) => b[1] - a[1]).slice(0, 2).map(([l]) => l);
}

function buildLegend(labels) {
  const el = $("legend");
  el.innerHTML = "";
  for (const l of labels) {
    const s = document.createElement("span"), i = document.createElement("i");
    i.style.background = color(l);
    s.append(i, document.createTextNode(l));
    el.append(s);
  }
}

// ---------------------------------------------------------------- the main person and the timeline
// Faces are followed from frame to frame by box overlap (as fervid's video tracker does). The
// main person is the one in view for the most frames (ties: the larger face); the timeline shows
// their probabilities smoothed over time (exponential moving average, as `fervid video` does), and
// keeps them across a model switch (labels the new model lacks stop, new ones start).
const TRACK_IOU = 0.3, TRACK_MAX_AGE_MS = 1500, SMOOTH = 0.25;
let tracks = [], nextTrackId = 1;

function updateTracks(faces, now) {
  const matched = new Set();
  for (const f of faces) {
    let best = null, bestIou = TRACK_IOU;
    for (const t of tracks) {
      const v = matched.has(t) ? 0 : iou(t.box, f.box);
      if (v > bestIou) { best = t; bestIou = v; }
    }
    if (!best) { best = { id: nextTrackId++, frames: 0, smoothed: {} }; tracks.push(best); }
    matched.add(best);
    const s = {};
    for (const [l, p] of Object.entries(f.probabilities)) s[l] = l in best.smoothed ? (1 - SMOOTH) * best.smoothed[l] + SMOOTH * p : p;
    Object.assign(best, { box: f.box, last: now, frames: best.frames + 1, smoothed: s, face: f });
  }
  tracks = tracks.filter((t) => now - t.last <= TRACK_MAX_AGE_MS);
  const inView = tracks.filter((t) => matched.has(t));
  return inView.reduce((a, t) => (!a || t.frames > a.frames || (t.frames === a.frames && t.box.w * t.box.h > a.box.w * a.box.h) ? t : a), null);
}

const history = [];   // {t (ms), id: main person's track id | null, p: {label: smoothed probability} | null}
const switches = [];  // {t, model}: model switches, marked on the timeline
let lastTimelineDraw = 0;

function drawTimeline(now) {
  const cv = $("timeline"), ctx = cv.getContext("2d"), W = cv.width, H = cv.height, pad = 22;
  ctx.clearRect(0, 0, W, H);
  ctx.strokeStyle = "#2c3038"; ctx.fillStyle = "#9aa0aa"; ctx.font = "11px system-ui, sans-serif"; ctx.lineWidth = 1;
  for (const v of [0, 0.5, 1]) {
    const y = H - pad - v * (H - 2 * pad);
    ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(W - 4, y); ctx.stroke();
    ctx.fillText(v.toFixed(1), 0, y + 4);
  }
  const oldest = now - TIMELINE_SECONDS * 1000;
  while (history.length && history[0].t < oldest) history.shift();
  while (switches.length && switches[0].t < oldest) switches.shift();
  // The time axis grows with the history up to TIMELINE_SECONDS (at least TIMELINE_MIN_SECONDS),
  // so the first seconds fill the width instead of a sliver at its right edge.
  const span = Math.min(TIMELINE_SECONDS, Math.max(TIMELINE_MIN_SECONDS, history.length ? (now - history[0].t) / 1000 : 0));
  state.timeline.spanSeconds = span;
  ctx.fillText(`-${Math.round(span)}s`, pad, H - 6);
  ctx.fillText("now", W - 26, H - 6);
  if (!current) return;
  const t0 = now - span * 1000;
  const xOf = (t) => pad + ((t - t0) / (span * 1000)) * (W - pad - 4);
  const yOf = (p) => H - pad - p * (H - 2 * pad);
  ctx.setLineDash([3, 3]);
  for (const s of switches) {
    const x = xOf(s.t);
    ctx.beginPath(); ctx.moveTo(x, pad - 8); ctx.lineTo(x, H - pad); ctx.stroke();
    ctx.fillText(s.model, Math.min(x + 3, W - 40), pad - 10);
  }
  ctx.setLineDash([]);
  ctx.lineWidth = 1.8;
  const labels = new Set(history.flatMap((h) => (h.p ? Object.keys(h.p) : [])));
  for (const l of labels) {
    ctx.strokeStyle = color(l);
    ctx.beginPath();
    let prev = null;
    for (const h of history) {
      const v = h.p ? h.p[l] : undefined;
      if (v === undefined) { prev = null; continue; }
      const x = xOf(h.t), y = yOf(v);
      // a new main person starts a new line
      if (prev && prev.id === h.id) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      prev = h;
    }
    ctx.stroke();
  }
}

function record(main, now) {
  history.push(main ? { t: now, id: main.id, p: { ...main.smoothed } } : { t: now, id: null, p: null });
  const drawn = history.filter((h) => h.p);
  state.timeline = { points: drawn.length, first: drawn.length ? drawn[0].t : null, mainId: main ? main.id : null,
                     switches: switches.map((s) => s.model), smoothed: main ? { ...main.smoothed } : null,
                     spanSeconds: state.timeline.spanSeconds };
}

// ---------------------------------------------------------------- live loop
let running = false, frameTimes = [];

async function startCamera() {
  if (running) return;
  try {
    state.camera = "starting";
    if (!window.isSecureContext || !navigator.mediaDevices) {
      throw new Error("browsers allow the camera only on HTTPS pages or on localhost (serve on 127.0.0.1, or behind HTTPS)");
    }
    setStatus($("live-status"), "asking for the camera: allow it in the browser's prompt...");
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
    video.srcObject = stream;
    await video.play();
    state.camera = "on";
    $("camera-btn").textContent = "Stop camera";
    running = true;
    loop();
  } catch (e) {
    state.camera = `error: ${e.message || e}`;
    setStatus($("live-status"), `camera unavailable: ${e.message || e} (the photo upload below still works)`, true);
  }
}

function stopCamera() {
  running = false;
  const s = video.srcObject;
  if (s) s.getTracks().forEach((t) => t.stop());
  video.srcObject = null;
  state.camera = "off";
  $("camera-btn").textContent = "Start camera";
}

function nextFrame() {
  return new Promise((resolve) => {
    if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(() => resolve());
    else requestAnimationFrame(() => resolve());
  });
}

async function loop() {
  while (running) {
    if (video.readyState >= 2 && video.videoWidth && current && detector) {
      const W = video.videoWidth, H = video.videoHeight;
      if (live.width !== W || live.height !== H) { live.width = W; live.height = H; }
      const t = performance.now();
      let faces = [], crops = [];
      try {
        ({ faces, crops } = await exclusive(() => analyse(video, W, H)));
      } catch (e) {
        state.error = String(e.message || e);
        setStatus($("live-status"), `inference error: ${state.error}`, true);
      }
      const now = performance.now();
      liveCtx.drawImage(grab, 0, 0);  // the very frame that was analysed
      state.labelRects = drawFaces(liveCtx, faces, current.meta.labels, pixelScale(live)).rects;
      state.canvasSize = { width: W, height: H };
      state.framesProcessed += 1;
      state.facesDrawn += faces.length;
      state.lastFaces = faces;  // the schema's fields
      state.lastAligned = crops.map((c) => c.aligned);  // whether each face's crop was aligned on its landmarks
      state.msPerFrame = 0.9 * (state.msPerFrame || now - t) + 0.1 * (now - t);
      frameTimes.push(now);
      while (frameTimes.length && frameTimes[0] < now - 2000) frameTimes.shift();
      state.fps = frameTimes.length > 1 ? (1000 * (frameTimes.length - 1)) / (frameTimes[frameTimes.length - 1] - frameTimes[0]) : 0;
      $("fps").textContent = `${state.fps.toFixed(1)} fps (${state.msPerFrame.toFixed(0)} ms/frame)`;
      const main = updateTracks(faces, now);
      updateBars(main ? main.face : null);
      record(main, now);
      if (now - lastTimelineDraw > 200) { drawTimeline(now); lastTimelineDraw = now; }
      setStatus($("live-status"), `${faces.length} face${faces.length === 1 ? "" : "s"} - model ${state.model}, ${state.threads} WASM thread(s)`);
    }
    await nextFrame();
  }
}

// ---------------------------------------------------------------- photo upload (server side)
function apiHeaders() {
  const key = $("api-key").value.trim();
  if (key) localStorage.setItem("fervid-api-key", key);
  return key ? { "X-API-Key": key } : {};
}

// The previous photo's result goes as soon as another file is sent: a result never sits
// under the error or the name of a different file.
function clearUpload() {
  const cv = $("upload-canvas");
  cv.hidden = true;
  cv.getContext("2d").clearRect(0, 0, cv.width, cv.height);
  $("upload-faces").innerHTML = "";
}

// "name: reason" once, whether or not the server's message already starts with the name.
function fileError(name, message) {
  return message.startsWith(`${name}:`) ? message : `${name}: ${message}`;
}

async function upload(file) {
  state.upload = { status: "sending", faces: null, error: null };
  clearUpload();
  setStatus($("upload-status"), `sending ${file.name}...`);
  const body = new FormData();
  body.append("file", file, file.name);
  try {
    const res = await fetch("/v1/predict", { method: "POST", body, headers: apiHeaders() });
    if (!res.ok) throw new Error(await errorText(res));
    const result = await res.json();
    const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    const cv = $("upload-canvas"), ctx = cv.getContext("2d");
    cv.width = result.width; cv.height = result.height; cv.hidden = false;
    ctx.drawImage(bitmap, 0, 0, result.width, result.height);
    const labels = result.faces.length ? Object.keys(result.faces[0].probabilities) : [];
    const scale = pixelScale(cv);  // as laid out: full width on a phone, text ~14 CSS px
    const drawn = drawFaces(ctx, result.faces, labels, scale);
    const list = $("upload-faces");
    list.innerHTML = "";
    for (const f of result.faces) {
      const li = document.createElement("li");
      const top = Object.entries(f.probabilities).sort((a, b) => b[1] - a[1]).slice(0, 3)
        .map(([l, p]) => `${l} ${(100 * p).toFixed(0)}%`).join(", ");
      li.textContent = `${f.label} (${top}); ambiguity ${f.ambiguity.toFixed(2)}${f.ambiguous ? ", ambiguous" : ""}`;
      list.append(li);
    }
    state.upload = { status: "done", faces: result.faces.length, error: null, result,
                     fontCssPx: drawn.font / scale, labelRects: drawn.rects };
    setStatus($("upload-status"), `${file.name}: ${result.faces.length} face${result.faces.length === 1 ? "" : "s"} (${result.width}x${result.height})`);
  } catch (e) {
    clearUpload();
    state.upload = { status: "error", faces: null, error: String(e.message || e) };
    setStatus($("upload-status"), fileError(file.name, String(e.message || e)), true);
  }
}

function setupUpload() {
  const drop = $("drop"), input = $("file-input");
  input.addEventListener("change", () => { if (input.files.length) upload(input.files[0]); input.value = ""; });
  for (const ev of ["dragenter", "dragover"]) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  for (const ev of ["dragleave", "drop"]) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  drop.addEventListener("drop", (e) => { const f = e.dataTransfer.files[0]; if (f) upload(f); });
  $("api-key").value = localStorage.getItem("fervid-api-key") || "";
  fetch("/healthz").then((r) => r.json()).then((h) => { $("key-label").hidden = !h.auth_required; }).catch(() => {});
}

// For tests and the console: the faces in the image at `url`, found and classified in this
// browser: {faces, crops} (see analyse; crops[i].grey as a plain array).
state.detectImage = async (url) => {
  const img = new Image();
  img.src = url;
  await img.decode();
  const { faces, crops } = await exclusive(() => analyse(img, img.naturalWidth, img.naturalHeight));
  return { faces, crops: crops.map((c) => ({ grey: Array.from(c.grey), aligned: c.aligned })) };
};

// For tests: the page's crops of given faces ({box: {x, y, w, h}, landmarks: the schema's
// {right_eye: [x, y], ...}, or [[x, y] x 5] in that order, or null})
// in the image at `url`, with the selected model's size and margin: [{grey: [...], aligned}].
state.cropImage = async (url, faces) => {
  const img = new Image();
  img.src = url;
  await img.decode();
  const W = img.naturalWidth, H = img.naturalHeight;
  return exclusive(() => {
    if (grab.width !== W || grab.height !== H) { grab.width = W; grab.height = H; }
    grabCtx.drawImage(img, 0, 0, W, H);
    const { input_size: size, face_margin: margin } = current.meta.preprocess;
    return faces.map((f) => {
      const c = cropFace(grabCtx, W, H, f.box, f.landmarks, margin, size);
      return { grey: Array.from(c.grey), aligned: c.aligned };
    });
  });
};

// For tests: the selected model's input tensor for grey crops ([[size * size grey levels], ...]),
// flat, as classify gives it to the model.
state.modelInput = (crops) => Array.from(modelInput(current.meta.preprocess, crops));

// ---------------------------------------------------------------- start
async function main() {
  setupUpload();
  $("camera-btn").addEventListener("click", () => (running ? stopCamera() : startCamera()));
  const params = new URLSearchParams(location.search);
  // The model switch: every bundled model the server offers (default, fast, ...). The live view
  // starts on the server's own model (index.service_model, `fervid serve --model`), so the camera
  // and the API answer alike; on fast when the server runs a model the page cannot (a checkpoint).
  let offered = [], serviceModel = null;
  try {
    const res = await fetch("/models/index.json");
    if (!res.ok) throw new Error(await errorText(res));
    const index = await res.json();
    offered = index.models;
    serviceModel = index.service_model;
  } catch (e) {
    state.error = String(e.message || e);
    setStatus($("live-status"), `could not list the models: ${state.error}`, true);
    return;
  }
  const names = offered.map((m) => m.name);
  const wanted = params.get("model")
    || (names.includes(serviceModel) ? serviceModel : names.includes("fast") ? "fast" : names[0]);
  for (const m of offered) {
    const label = document.createElement("label"), r = document.createElement("input");
    r.type = "radio"; r.name = "model"; r.value = m.name; r.checked = m.name === wanted;
    label.title = m.description || "";
    label.append(r, document.createTextNode(` ${m.name}`));
    $("model-switch").append(label);
    r.addEventListener("change", async () => {
      setStatus($("live-status"), `loading the ${r.value} model...`);
      try { await exclusive(() => loadEmotionModel(r.value)); setStatus($("live-status"), `model ${r.value} loaded`); }
      catch (e) { state.error = String(e.message || e); setStatus($("live-status"), state.error, true); }
    });
  }
  try {
    await Promise.all([loadDetector(), loadEmotionModel(wanted)]);
    setStatus($("live-status"), `models loaded (${wanted}); press Start camera`);
  } catch (e) {
    state.error = String(e.message || e);
    setStatus($("live-status"), `could not load the models: ${state.error}`, true);
    return;
  }
  drawTimeline(performance.now());
  // The camera starts on a click only (#camera-btn): browsers and people expect to be asked.
}

main();
