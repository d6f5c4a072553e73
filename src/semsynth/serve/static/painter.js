// semsynth painter: paint a layout with a model's classes, see the photo update while painting.
// No build step, no network beyond this server. The layout is held as class ids (S.ids); the canvas only shows
// it, so strokes never blend colours. State the tests read: #layout[data-version] (the layout's edit counter) and
// #photo[data-version] (the layout version the photo shows), #photo[data-state] (ready / error).
"use strict";

const S = {
  models: [], model: null, classes: null,
  W: 64, H: 64,              // canvas size in layout pixels (the model's resolution times `scale`)
  scale: 1,
  ids: null,                 // Uint16Array W*H: the class of each pixel
  marks: null,               // Uint8Array W*H: the region being marked (Region tool)
  region: null,              // {mask: Uint8Array, seed} applied: sent with every request
  tool: "brush", size: 8, current: 1,
  seed: 0,
  style: null,               // a File (style image) or null
  undo: [], redo: [],
  version: 0,                // edits to the layout/region/seed/style
  controller: null, timer: null, firstChange: 0, photoUrl: null, photoBlob: null,
  rawToId: new Map(), colourToId: new Map(),
  example: 0,                // the last example layout loaded (models of a built-in world have some)
  last: null,                // last painted point of the stroke
};
const DEBOUNCE_MS = 40;     // a request leaves once the layout has been still this long...
const MAX_WAIT_MS = 150;    // ...or at the latest this long after the first change (live while painting)
const SIZES = [1, 2, 4, 8, 16, 32];
const UNDO_LIMIT = 100;
const $ = (id) => document.getElementById(id);

function randomSeed() {
  const a = new Uint32Array(1);
  crypto.getRandomValues(a);
  return a[0] & 0x7fffffff;
}

function setStatus(text, error = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", error);
}

// -- models and classes --------------------------------------------------------------------------------------

async function getJSON(url) {
  const r = await fetch(url);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

async function init() {
  buildSizes();
  bindTools();
  try {
    const list = await getJSON("/models");
    S.models = list.models;
    const sel = $("model");
    for (const m of S.models) {
      const o = document.createElement("option");
      o.value = m.name;
      o.textContent = `${m.name} (${m.resolution[1]}x${m.resolution[0]})`;
      sel.appendChild(o);
    }
    sel.value = list.default;
    sel.addEventListener("change", () => selectModel(sel.value));
    await selectModel(list.default);
  } catch (e) {
    setStatus(`cannot reach the server: ${e.message}`, true);
  }
}

async function selectModel(name) {
  const model = S.models.find((m) => m.name === name);
  const classes = await getJSON(`/classes?model=${encodeURIComponent(name)}`);
  S.model = model;
  S.classes = classes;
  const [h, w] = model.resolution;
  S.scale = Math.max(1, Math.floor(256 / Math.max(h, w)));
  S.H = h * S.scale;
  S.W = w * S.scale;
  for (const id of ["layout", "overlay"]) {
    $(id).width = S.W;
    $(id).height = S.H;
  }
  // shown 384 px wide (or high), the other side following the model's aspect ratio
  const view = 384, vw = S.W >= S.H ? view : Math.round((view * S.W) / S.H);
  const vh = S.W >= S.H ? Math.round((view * S.H) / S.W) : view;
  for (const el of [$("layout").parentElement, document.querySelector(".photo-frame")]) {
    el.style.width = `${vw}px`;
    el.style.height = `${vh}px`;
  }
  S.ids = new Uint16Array(S.W * S.H).fill(classes.background);
  S.marks = new Uint8Array(S.W * S.H);
  S.region = null;
  S.undo = [];
  S.redo = [];
  S.style = null;
  S.seed = 0;
  S.colourToId = new Map();
  S.rawToId = new Map();
  for (const c of classes.classes) {
    const key = (c.colour[0] << 16) | (c.colour[1] << 8) | c.colour[2];
    if (!S.colourToId.has(key)) S.colourToId.set(key, c.id);
    for (const v of c.raw_values) if (!S.rawToId.has(v)) S.rawToId.set(v, c.id);
  }
  buildPalette();
  S.current = classes.classes.length > 1 && classes.background === 0 ? 1 : 0;
  selectClass(S.current);
  $("model-info").textContent =
    `${model.generator}, ${classes.num_classes} classes, ${model.precision}` +
    (model.multimodal ? "" : ", deterministic");
  $("canvas-hint").textContent =
    `The model sees ${w}x${h} pixels; this canvas is ${S.W}x${S.H} (resized nearest on the server).`;
  $("style-box").hidden = !model.style;
  $("style-clear").disabled = true;
  $("style-preview").hidden = true;
  $("new-style").disabled = !model.multimodal;
  const regionOk = model.resample !== "none";
  $("region-tool").disabled = !regionOk;
  $("resample").disabled = !regionOk;
  $("region-clear").disabled = !regionOk;
  $("region-note").textContent = model.resample === "local-noise"
    ? `Re-sampling: ${model.resample_explained}.`
    : model.resample === "composite"
      ? `Re-sampling with this model: ${model.resample_explained}.`
      : `No re-sampling: ${model.resample_explained}.`;
  if (!regionOk && S.tool === "region") setTool("brush");
  $("example").disabled = !model.examples;
  updateSeedLabel();
  setStatus("");
  // a model of a built-in world starts from one of its validation layouts (not an undo step), others blank
  S.example = 0;
  if (model.examples && (await loadExample(0, false))) return;
  redraw();
  changed();
}

async function loadExample(index, undoable = true) {
  const model = S.model;
  let blob;
  try {
    const r = await fetch(`/example?model=${encodeURIComponent(model.name)}&index=${index}`);
    if (!r.ok) throw new Error((await r.json()).error || r.statusText);
    blob = await r.blob();
  } catch (e) {
    setStatus(`cannot load example ${index}: ${e.message}`, true);
    return false;
  }
  if (S.model !== model) return true; // another model was chosen meanwhile: its own start stands
  S.example = index;
  return loadLabel(new File([blob], `example layout ${index}`, { type: "image/png" }), undoable);
}

function buildPalette() {
  const box = $("palette");
  box.innerHTML = "";
  for (const c of S.classes.classes) {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.class = c.id;
    b.setAttribute("role", "option");
    b.title = `${c.name} (id ${c.id}, ${c.hex})`;
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = c.hex;
    b.appendChild(sw);
    b.appendChild(document.createTextNode(c.name));
    b.addEventListener("click", () => {
      selectClass(c.id);
      if (S.tool !== "brush" && S.tool !== "fill") setTool("brush");
    });
    box.appendChild(b);
  }
}

function selectClass(id) {
  S.current = id;
  for (const b of $("palette").children) b.classList.toggle("active", Number(b.dataset.class) === id);
}

// -- tools ---------------------------------------------------------------------------------------------------

function buildSizes() {
  const box = $("sizes");
  for (const s of SIZES) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = String(s);
    b.dataset.size = s;
    b.title = `${s} px brush`;
    b.addEventListener("click", () => setSize(s));
    box.appendChild(b);
  }
  setSize(S.size);
}

function setSize(s) {
  S.size = s;
  for (const b of $("sizes").children) b.classList.toggle("active", Number(b.dataset.size) === s);
}

function setTool(t) {
  S.tool = t;
  for (const b of document.querySelectorAll("[data-tool]")) b.classList.toggle("active", b.dataset.tool === t);
}

function bindTools() {
  for (const b of document.querySelectorAll("[data-tool]")) b.addEventListener("click", () => setTool(b.dataset.tool));
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("clear").addEventListener("click", () => {
    pushUndo();
    S.ids.fill(S.classes.background);
    redraw();
    changed();
  });
  $("new-style").addEventListener("click", newStyle);
  $("example").addEventListener("click", nextExample);
  $("resample").addEventListener("click", resample);
  $("region-clear").addEventListener("click", () => {
    pushUndo();
    S.marks.fill(0);
    S.region = null;
    redraw();
    changed();
  });
  $("label-file").addEventListener("change", (e) => {
    if (e.target.files[0]) loadLabel(e.target.files[0]);
    e.target.value = "";
  });
  $("style-file").addEventListener("change", (e) => {
    const f = e.target.files[0];
    e.target.value = "";
    if (!f) return;
    S.style = f;
    const prev = $("style-preview");
    if (prev.src) URL.revokeObjectURL(prev.src);
    prev.src = URL.createObjectURL(f);
    prev.hidden = false;
    $("style-clear").disabled = false;
    changed();
  });
  $("style-clear").addEventListener("click", () => {
    S.style = null;
    $("style-preview").hidden = true;
    $("style-clear").disabled = true;
    changed();
  });
  $("download-label").addEventListener("click", () => {
    $("layout").toBlob((blob) => download(blob, `layout-${S.model.name}.png`), "image/png");
  });
  $("download-photo").addEventListener("click", () => {
    if (S.photoBlob) download(S.photoBlob, `photo-${S.model.name}-seed${S.seed}.png`);
  });

  const overlay = $("overlay");
  overlay.addEventListener("contextmenu", (e) => e.preventDefault());
  overlay.addEventListener("pointerdown", (e) => {
    overlay.setPointerCapture(e.pointerId);
    const p = toPixel(e);
    pushUndo();
    if (S.tool === "fill") {
      floodFill(p.x, p.y, S.current);
    } else {
      S.last = p;
      stamp(p.x, p.y, e);
    }
    redraw();
    changed();
  });
  overlay.addEventListener("pointermove", (e) => {
    if (!S.last || !(e.buttons & 3)) return;
    const p = toPixel(e);
    line(S.last, p, e);
    S.last = p;
    redraw();
    changed();
  });
  const end = () => { S.last = null; };
  overlay.addEventListener("pointerup", end);
  overlay.addEventListener("pointercancel", end);

  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    const k = e.key.toLowerCase();
    if ((e.ctrlKey || e.metaKey) && k === "z") { e.preventDefault(); e.shiftKey ? redo() : undo(); return; }
    if ((e.ctrlKey || e.metaKey) && k === "y") { e.preventDefault(); redo(); return; }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const tools = { b: "brush", f: "fill", e: "eraser", r: "region" };
    if (tools[k] && !(k === "r" && $("region-tool").disabled)) setTool(tools[k]);
    else if (k === "n" && !$("new-style").disabled) newStyle();
    else if (k === "x" && !$("example").disabled) nextExample();
    else if (k === "s" && !$("resample").disabled) resample();
    else if (k === "[" || k === "]") {
      const i = SIZES.indexOf(S.size) + (k === "]" ? 1 : -1);
      setSize(SIZES[Math.max(0, Math.min(SIZES.length - 1, i))]);
    }
  });
}

function toPixel(e) {
  const r = $("overlay").getBoundingClientRect();
  const x = Math.floor(((e.clientX - r.left) / r.width) * S.W);
  const y = Math.floor(((e.clientY - r.top) / r.height) * S.H);
  return { x: Math.max(0, Math.min(S.W - 1, x)), y: Math.max(0, Math.min(S.H - 1, y)) };
}

function stamp(cx, cy, e) {
  const unmark = S.tool === "region" && (e.shiftKey || e.button === 2 || e.buttons === 2);
  const target = S.tool === "region" ? S.marks : S.ids;
  const value = S.tool === "region" ? (unmark ? 0 : 1) : S.tool === "eraser" ? S.classes.background : S.current;
  const r = (S.size - 1) / 2;
  const x0 = Math.ceil(cx - r), x1 = Math.floor(cx + r), y0 = Math.ceil(cy - r), y1 = Math.floor(cy + r);
  for (let y = Math.max(0, y0); y <= Math.min(S.H - 1, y1); y++) {
    for (let x = Math.max(0, x0); x <= Math.min(S.W - 1, x1); x++) {
      const dx = x - cx, dy = y - cy;
      if (dx * dx + dy * dy <= r * r + 0.5) target[y * S.W + x] = value;
    }
  }
}

function line(a, b, e) {
  const n = Math.max(Math.abs(b.x - a.x), Math.abs(b.y - a.y));
  const step = Math.max(1, Math.floor(S.size / 4));
  for (let i = step; i <= n; i += step) {
    stamp(Math.round(a.x + ((b.x - a.x) * i) / n), Math.round(a.y + ((b.y - a.y) * i) / n), e);
  }
  stamp(b.x, b.y, e);
}

function floodFill(x, y, value) {
  const W = S.W, ids = S.ids;
  const from = ids[y * W + x];
  if (from === value) return;
  const stack = [y * W + x];
  while (stack.length) {
    const i = stack.pop();
    if (ids[i] !== from) continue;
    ids[i] = value;
    const px = i % W;
    if (px > 0) stack.push(i - 1);
    if (px < W - 1) stack.push(i + 1);
    if (i >= W) stack.push(i - W);
    if (i < ids.length - W) stack.push(i + W);
  }
}

// -- undo ------------------------------------------------------------------------------------------------------

function snapshot() {
  return { ids: S.ids.slice(), marks: S.marks.slice(), region: S.region, seed: S.seed };
}

function restore(s) {
  S.ids = s.ids;
  S.marks = s.marks;
  S.region = s.region;
  S.seed = s.seed;
  redraw();
  changed();
}

function pushUndo() {
  S.undo.push(snapshot());
  if (S.undo.length > UNDO_LIMIT) S.undo.shift();
  S.redo = [];
}

function undo() {
  if (!S.undo.length) return;
  S.redo.push(snapshot());
  restore(S.undo.pop());
}

function redo() {
  if (!S.redo.length) return;
  S.undo.push(snapshot());
  restore(S.redo.pop());
}

// -- drawing ---------------------------------------------------------------------------------------------------

function redraw() {
  const { W, H } = S;
  const lut = S.classes.classes.map((c) => c.colour);
  const img = new ImageData(W, H);
  const d = img.data;
  for (let i = 0; i < W * H; i++) {
    const c = lut[S.ids[i]];
    d[4 * i] = c[0];
    d[4 * i + 1] = c[1];
    d[4 * i + 2] = c[2];
    d[4 * i + 3] = 255;
  }
  $("layout").getContext("2d").putImageData(img, 0, 0);
  const ov = new ImageData(W, H);
  const o = ov.data;
  for (let i = 0; i < W * H; i++) {
    if (S.marks[i]) {
      o[4 * i] = 255; o[4 * i + 1] = 0; o[4 * i + 2] = 200; o[4 * i + 3] = 110;
    }
  }
  $("overlay").getContext("2d").putImageData(ov, 0, 0);
}

// -- loading and saving ----------------------------------------------------------------------------------------

function nextExample() {
  loadExample((S.example + 1) % S.model.examples);
}

async function loadLabel(file, undoable = true) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { premultiplyAlpha: "none", colorSpaceConversion: "none" });
  } catch (e) {
    setStatus(`${file.name}: cannot decode this image (${e.message})`, true);
    return false;
  }
  const c = document.createElement("canvas");
  c.width = bitmap.width;
  c.height = bitmap.height;
  const ctx = c.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  const n = c.width * c.height;
  let grey = true;
  for (let i = 0; i < n && grey; i++) grey = d[4 * i] === d[4 * i + 1] && d[4 * i] === d[4 * i + 2];
  // as the server reads a PNG: equal channels are class ids (the dataset's label values), else palette colours
  const src = new Uint16Array(n);
  const unknown = new Map();
  for (let i = 0; i < n; i++) {
    const key = grey ? d[4 * i] : (d[4 * i] << 16) | (d[4 * i + 1] << 8) | d[4 * i + 2];
    const id = grey ? S.rawToId.get(key) : S.colourToId.get(key);
    if (id === undefined) unknown.set(key, (unknown.get(key) || 0) + 1);
    else src[i] = id;
  }
  if (unknown.size) {
    const shown = [...unknown.keys()].slice(0, 5)
      .map((k) => (grey ? String(k) : "#" + k.toString(16).padStart(6, "0"))).join(", ");
    setStatus(`${file.name}: ${grey ? "label values" : "colours"} ${shown} are not classes of ${S.model.name}; ` +
              "nothing loaded", true);
    return false;
  }
  if (undoable) pushUndo();
  for (let y = 0; y < S.H; y++) {
    const sy = Math.min(c.height - 1, Math.floor(((y + 0.5) * c.height) / S.H));
    for (let x = 0; x < S.W; x++) {
      const sx = Math.min(c.width - 1, Math.floor(((x + 0.5) * c.width) / S.W));
      S.ids[y * S.W + x] = src[sy * c.width + sx];
    }
  }
  setStatus(`loaded ${file.name} (${c.width}x${c.height}${c.width !== S.W || c.height !== S.H ? ", resized" : ""})`);
  redraw();
  changed();
  return true;
}

function download(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function canvasBlob(canvas) {
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

function maskBlob(mask) {
  const c = document.createElement("canvas");
  c.width = S.W;
  c.height = S.H;
  const img = new ImageData(S.W, S.H);
  for (let i = 0; i < mask.length; i++) {
    const v = mask[i] ? 255 : 0;
    img.data[4 * i] = v; img.data[4 * i + 1] = v; img.data[4 * i + 2] = v; img.data[4 * i + 3] = 255;
  }
  c.getContext("2d").putImageData(img, 0, 0);
  return canvasBlob(c);
}

function rows(arr) {
  const out = [];
  for (let y = 0; y < S.H; y++) out.push(Array.from(arr.subarray(y * S.W, (y + 1) * S.W)));
  return out;
}

// -- seeds and re-sampling -------------------------------------------------------------------------------------

function updateSeedLabel() {
  const m = S.model;
  if (!m.multimodal) { $("seed").textContent = "deterministic model"; return; }
  $("seed").textContent = `seed ${S.seed}` + (S.region ? `, region seed ${S.region.seed}` : "") +
    (S.style ? " (style image)" : "");
}

function newStyle() {
  pushUndo();
  S.seed = randomSeed();
  S.region = null;
  changed();
}

function resample() {
  if (!S.marks.some((v) => v)) {
    setStatus("mark a region first: choose the Region tool and paint where the picture should change", true);
    return;
  }
  pushUndo();
  S.region = { mask: S.marks.slice(), seed: randomSeed() };
  changed();
}

// -- generation: debounced; the latest request wins, older ones are aborted -------------------------------------

function changed() {
  S.version += 1;
  $("layout").dataset.version = String(S.version);
  $("photo").classList.add("stale");
  updateSeedLabel();
  // debounced with a maximum wait: a stroke that never pauses still gets photos every MAX_WAIT_MS
  const now = performance.now();
  if (S.timer === null) S.firstChange = now;
  clearTimeout(S.timer);
  S.timer = setTimeout(() => { S.timer = null; generate(); },
                       Math.max(0, Math.min(DEBOUNCE_MS, S.firstChange + MAX_WAIT_MS - now)));
}

async function generate() {
  const version = S.version;
  if (S.controller) S.controller.abort();
  const controller = new AbortController();
  S.controller = controller;
  const model = S.model;
  const t0 = performance.now();
  let body, headers = {};
  const region = model.multimodal ? S.region : null;
  const seed = region ? region.seed : S.seed;
  if (S.classes.colours_unique) {
    body = new FormData();
    body.append("model", model.name);
    body.append("seed", String(seed));
    body.append("label", await canvasBlob($("layout")), "layout.png");
    if (region) {
      body.append("previous_seed", String(S.seed));
      body.append("mask", await maskBlob(region.mask), "mask.png");
    }
    if (S.style) body.append("style", S.style, "style");
  } else {  // a palette with repeated colours: send the class ids themselves
    const msg = { model: model.name, seed, label: rows(S.ids) };
    if (region) { msg.previous_seed = S.seed; msg.mask = rows(region.mask); }
    body = JSON.stringify(msg);
    headers = { "Content-Type": "application/json" };
  }
  if (controller.signal.aborted) return;
  let r;
  try {
    r = await fetch("/generate", { method: "POST", body, headers, signal: controller.signal });
  } catch (e) {
    if (e.name !== "AbortError") {
      setStatus(`request failed: ${e.message}`, true);
      $("photo").dataset.state = "error";
    }
    return;
  }
  if (controller !== S.controller) return;  // a newer request is on its way
  if (!r.ok) {
    let message = r.statusText;
    try { message = (await r.json()).error; } catch (e) { /* not JSON, or aborted */ }
    if (controller !== S.controller) return;
    setStatus(`${r.status}: ${message}`, true);
    $("photo").dataset.state = "error";
    return;
  }
  let blob;
  try {
    blob = await r.blob();  // an abort while the body arrives rejects here
  } catch (e) {
    if (e.name !== "AbortError") setStatus(`request failed: ${e.message}`, true);
    return;
  }
  if (controller !== S.controller) return;
  const rtt = performance.now() - t0;
  const photo = $("photo");
  const url = URL.createObjectURL(blob);
  photo.onload = () => {
    if (S.photoUrl && S.photoUrl !== url) URL.revokeObjectURL(S.photoUrl);
    S.photoUrl = url;
    S.photoBlob = blob;
    photo.dataset.version = String(version);
    photo.dataset.state = "ready";
    if (version === S.version) photo.classList.remove("stale");
  };
  photo.src = url;
  const gen = Number(r.headers.get("X-Generation-Time")) * 1000;
  const proc = Number(r.headers.get("X-Processing-Time")) * 1000;
  const mode = r.headers.get("X-Mode");
  $("timing").textContent = `generated in ${gen.toFixed(0)} ms (server ${proc.toFixed(0)} ms, round trip ` +
    `${rtt.toFixed(0)} ms), ${r.headers.get("X-Precision")}` + (mode && mode !== "sample" ? `, ${mode}` : "");
  // a success clears an error shown for the current layout; other messages ("loaded ...") stay
  if ($("status").classList.contains("error") && version === S.version) setStatus("");
}

init();
