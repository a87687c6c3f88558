// The demo page: a drawing pad, the two digits models side by side, and
// sentences ranked by minilm's embeddings; for each request the hop, its
// Server-Timing and a link to its trace. It calls the gateway's OIP v2 REST
// API like any client; nothing is loaded from elsewhere (the
// Content-Security-Policy forbids it).
"use strict";

// The models' input: 8x8 cells, each 0-16. scikit-learn's digits are the
// count of inked pixels in 4x4 blocks of a 32x32 bitmap, that is 16 times
// the fraction inked: the page takes 16 times the mean ink of each cell.
const GRID = 8;
const MAX = 16;
// The same network on both backends: they should agree.
const MODELS = { digits: "ONNX Runtime", "digits-torch": "PyTorch" };
const TIMING_CLASSES = { edge: "edge", hop: "hop", python: "python", queue: "queue", model: "model-time" };
// The sentence embeddings model: BYTES text in, L2-normalised FP32 rows out.
const TEXT_MODEL = "minilm";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d", { willReadFrequently: true });
const preview = document.getElementById("preview");
let settings = { transport: "", trace_url: "" };

function clearPad() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  drawPreview(new Array(GRID * GRID).fill(0));
}

// pixels reads the pad as the models' input: 64 values 0-16, row by row.
function pixels() {
  const { width, height } = pad;
  const data = ctx.getImageData(0, 0, width, height).data;
  const cw = width / GRID;
  const ch = height / GRID;
  const ink = new Array(GRID * GRID).fill(0);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const cell = Math.floor(y / ch) * GRID + Math.floor(x / cw);
      ink[cell] += 1 - data[(y * width + x) * 4] / 255;
    }
  }
  return ink.map((v) => Math.round((MAX * v) / (cw * ch)));
}

// paintPixels draws 64 values 0-16 onto the pad as gray cells, so that
// pixels() reads them back exactly: a digit from scikit-learn's set, or one
// the user wants to start from.
function paintPixels(values) {
  if (values.length !== GRID * GRID) {
    throw new Error(`want ${GRID * GRID} values, got ${values.length}`);
  }
  const cw = pad.width / GRID;
  const ch = pad.height / GRID;
  values.forEach((v, i) => {
    const level = Math.round(255 * (1 - Math.min(Math.max(v, 0), MAX) / MAX));
    ctx.fillStyle = `rgb(${level},${level},${level})`;
    ctx.fillRect((i % GRID) * cw, Math.floor(i / GRID) * ch, cw, ch);
  });
  drawPreview(values);
}

function drawPreview(values) {
  const p = preview.getContext("2d");
  const s = preview.width / GRID;
  values.forEach((v, i) => {
    const level = Math.round(255 * (1 - v / MAX));
    p.fillStyle = `rgb(${level},${level},${level})`;
    p.fillRect((i % GRID) * s, Math.floor(i / GRID) * s, s, s);
  });
}

// Strokes: thick and round, about as wide as scikit-learn's pen.
function strokes() {
  let last = null;
  const at = (e) => {
    const r = pad.getBoundingClientRect();
    return [((e.clientX - r.left) * pad.width) / r.width, ((e.clientY - r.top) * pad.height) / r.height];
  };
  pad.addEventListener("pointerdown", (e) => {
    pad.setPointerCapture(e.pointerId);
    last = at(e);
  });
  pad.addEventListener("pointermove", (e) => {
    if (!last) return;
    const next = at(e);
    ctx.strokeStyle = "#000";
    ctx.lineWidth = (pad.width / GRID) * 1.1;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(...last);
    ctx.lineTo(...next);
    ctx.stroke();
    last = next;
  });
  const end = () => {
    if (!last) return;
    last = null;
    classify();
  };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);
}

// A W3C traceparent of the page's own, sampled, so that the gateway
// continues this trace and the page knows the id to link to.
function traceparent() {
  const hex = (n) =>
    Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, "0")).join("");
  const traceId = hex(16);
  return { traceId, header: `00-${traceId}-${hex(8)}-01` };
}

// parseServerTiming reads "edge;dur=0.210, hop;dur=0.180" into
// [{name, dur}], in milliseconds.
function parseServerTiming(value) {
  if (!value) return [];
  return value.split(",").flatMap((entry) => {
    const [name, ...params] = entry.trim().split(";");
    const dur = params.map((p) => p.trim().split("=")).find(([k]) => k === "dur");
    return name && dur ? [{ name: name.trim(), dur: Number(dur[1]) }] : [];
  });
}

// The API key typed into the page, if any: every call to the models
// carries it, as any client's would.
function apiKey() {
  return document.getElementById("key").value.trim();
}

function withKey(headers, auth) {
  if (auth) headers.Authorization = `Bearer ${auth}`;
  return headers;
}

// refusal is what the gateway said when it refused: "status: its message".
async function refusal(resp) {
  const body = await resp.json().catch(() => ({}));
  return `${resp.status}: ${body.error || resp.statusText}`;
}

// answer reads a JSON answer, and throws a refusal with the gateway's
// message.
async function answer(resp) {
  if (!resp.ok) throw new Error(await refusal(resp));
  return resp.json().catch(() => ({}));
}

// post sends one OIP v2 REST infer request under a trace of the page's
// own, and gives the answer's outputs by name, its Server-Timing and the
// trace's id.
async function post(model, inputs, auth) {
  const trace = traceparent();
  const resp = await fetch(`/v2/models/${encodeURIComponent(model)}/infer`, {
    method: "POST",
    headers: withKey({ "Content-Type": "application/json", traceparent: trace.header }, auth),
    body: JSON.stringify({ inputs }),
  });
  const body = await answer(resp);
  const outputs = new Map((body.outputs || []).map((o) => [o.name, o]));
  return { outputs, timing: parseServerTiming(resp.headers.get("Server-Timing")), traceId: trace.traceId };
}

function output(result, name) {
  const out = result.outputs.get(name);
  if (!out) throw new Error(`the answer has no ${name} output`);
  return out;
}

async function infer(model, values, auth) {
  const result = await post(model, [{ name: "pixels", datatype: "FP32", shape: [1, GRID * GRID], data: values }], auth);
  return { probabilities: output(result, "probabilities").data, timing: result.timing, traceId: result.traceId };
}

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function showResult(card, result) {
  const probs = result.probabilities;
  const top = probs.indexOf(Math.max(...probs));
  card.querySelector(".class").textContent = String(top);
  card.querySelector(".error").hidden = true;
  const list = card.querySelector(".probabilities");
  list.replaceChildren(
    ...probs.map((p, i) => {
      const li = el("li", i === top ? "top" : "");
      const bar = el("span", "p");
      bar.style.width = `${(p * 12).toFixed(2)}rem`;
      li.append(bar, el("span", "v", `${i}: ${(100 * p).toFixed(1)}%`));
      return li;
    }),
  );
  showTiming(card, result.timing);
  showTrace(card, result.traceId);
}

function showTrace(box, traceId) {
  const link = box.querySelector(".trace");
  if (settings.trace_url) {
    link.href = settings.trace_url.replaceAll("{trace_id}", traceId);
    link.textContent = `trace ${traceId} in Jaeger`;
    link.hidden = false;
  }
}

function showTiming(card, parts) {
  const box = card.querySelector(".timing");
  const total = parts.reduce((s, p) => s + p.dur, 0);
  box.hidden = parts.length === 0;
  if (!parts.length) return;
  box.querySelector(".total").textContent = `${total.toFixed(3)} ms in the gateway`;
  box.querySelector(".bar").replaceChildren(
    ...parts.map((p) => {
      const seg = el("span", TIMING_CLASSES[p.name] || "other");
      seg.style.width = `${total > 0 ? (100 * p.dur) / total : 0}%`;
      seg.title = `${p.name} ${p.dur.toFixed(3)} ms`;
      seg.dataset.name = p.name;
      return seg;
    }),
  );
  box.querySelector(".legend").replaceChildren(
    ...parts.map((p) => {
      const li = el("li");
      li.append(el("i", TIMING_CLASSES[p.name] || "other"), `${p.name} ${p.dur.toFixed(3)} ms`);
      return li;
    }),
  );
}

function showError(card, err) {
  card.querySelector(".class").textContent = "–";
  const e = card.querySelector(".error");
  e.textContent = err.message;
  e.hidden = false;
}

// classify sends the pad to both models at once and shows each answer; it
// resolves once both are shown.
async function classify() {
  const values = pixels();
  drawPreview(values);
  const auth = apiKey();
  document.body.dataset.state = "busy";
  await Promise.all(
    Object.keys(MODELS).map(async (model) => {
      const card = document.querySelector(`.model[data-model="${model}"]`);
      try {
        showResult(card, await infer(model, values, auth));
      } catch (err) {
        showError(card, err);
      }
    }),
  );
  document.body.dataset.state = "done";
}

async function loadSettings() {
  try {
    const resp = await fetch("/demo/settings.json");
    settings = await resp.json();
  } catch (err) {
    settings = { transport: "", trace_url: "" };
  }
  const hop = settings.transport
    ? `${settings.transport.toUpperCase()} (every request this gateway answers goes over it)`
    : "unknown";
  document.querySelectorAll("#transport, .search .transport").forEach((e) => {
    e.textContent = hop;
  });
}

// requestInfo is a fresh Server-Timing bar and trace link, hidden until a
// request has been shown in them.
function requestInfo() {
  return document.getElementById("request-info").content.cloneNode(true);
}

function cards() {
  const template = document.getElementById("model-card");
  document.querySelector(".models").replaceChildren(
    ...Object.entries(MODELS).map(([model, backend]) => {
      const card = template.content.firstElementChild.cloneNode(true);
      card.dataset.model = model;
      card.querySelector(".name").textContent = model;
      card.querySelector(".backend").textContent = backend;
      card.querySelector(".error").before(requestInfo());
      return card;
    }),
  );
}

const search = document.getElementById("search");
const rankButton = document.getElementById("rank");
// Whether the last readiness check found minilm ready; Rank waits for it.
let searchReady = false;
// Readiness checks may overlap (the key is retyped): only the latest counts.
let searchCheck = 0;

// checkSearch asks the gateway whether minilm is ready, and enables Rank
// only if so; otherwise the section says why. The check is an API call
// like any other, so with API keys it needs the key, and typing one checks
// again.
async function checkSearch() {
  const mine = ++searchCheck;
  let message = "";
  try {
    const resp = await fetch(`/v2/models/${TEXT_MODEL}/ready`, { headers: withKey({}, apiKey()) });
    if (!resp.ok) {
      const why = await refusal(resp);
      if (resp.status === 404) {
        message = `The model ${TEXT_MODEL} is not in this gateway's repository, so there is nothing to rank with (${why}).`;
      } else if (resp.status === 401 || resp.status === 403) {
        message = `The gateway wants an API key to say whether ${TEXT_MODEL} is ready (${why}): type it above.`;
      } else {
        message = `${TEXT_MODEL} is not ready (${why}).`;
      }
    }
  } catch (err) {
    message = `Could not ask whether ${TEXT_MODEL} is ready: ${err.message}`;
  }
  if (mine !== searchCheck) return;
  searchReady = message === "";
  const status = search.querySelector(".status");
  status.textContent = message;
  status.hidden = searchReady;
  rankButton.disabled = !searchReady || search.dataset.state === "busy";
}

function candidates() {
  return document
    .getElementById("sentences")
    .value.split("\n")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

function dot(a, b) {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

// rank embeds the sentences and the query in one request, the query last,
// and lists the sentences by their cosine similarity to it, most similar
// first; it resolves once the list (or the error) is shown.
async function rank() {
  const sentences = candidates();
  const query = document.getElementById("query").value.trim();
  search.dataset.state = "busy";
  rankButton.disabled = true;
  try {
    if (!sentences.length || !query) throw new Error("type at least one sentence and a query");
    const texts = [...sentences, query];
    const result = await post(
      TEXT_MODEL,
      [{ name: "text", datatype: "BYTES", shape: [texts.length], data: texts }],
      apiKey(),
    );
    const out = output(result, "embedding");
    const [rows, dim] = out.shape;
    if (rows !== texts.length || out.data.length !== rows * dim) {
      throw new Error(`the embedding is ${out.shape.join("×")} for ${texts.length} texts`);
    }
    const row = (i) => out.data.slice(i * dim, (i + 1) * dim);
    const q = row(sentences.length);
    const ranked = sentences.map((text, i) => ({ text, line: i, score: dot(row(i), q) }));
    ranked.sort((a, b) => b.score - a.score);
    showRanking(ranked, result);
  } catch (err) {
    showSearchError(err);
  }
  search.dataset.state = "done";
  rankButton.disabled = !searchReady;
}

function showRanking(ranked, result) {
  search.querySelector(".error").hidden = true;
  search.querySelector(".ranking").replaceChildren(
    ...ranked.map((r, i) => {
      const li = el("li", i === 0 ? "top" : "");
      li.dataset.score = String(r.score);
      li.dataset.line = String(r.line);
      // A cosine is in [-1, 1]; the bar, in a track of fixed width so that
      // the sentences line up, shows how far above 0 it is.
      const track = el("span", "track");
      const bar = el("span", "p");
      bar.style.width = `${(100 * Math.min(Math.max(r.score, 0), 1)).toFixed(1)}%`;
      track.append(bar);
      li.append(el("span", "v", r.score.toFixed(3)), track, el("span", "s", r.text));
      return li;
    }),
  );
  showTiming(search, result.timing);
  showTrace(search, result.traceId);
}

// showSearchError clears the last ranking and its timing, which were not
// for these sentences, and says what went wrong.
function showSearchError(err) {
  search.querySelector(".ranking").replaceChildren();
  showTiming(search, []);
  search.querySelector(".trace").hidden = true;
  const e = search.querySelector(".error");
  e.textContent = err.message;
  e.hidden = false;
}

cards();
search.querySelector(".error").before(requestInfo());
clearPad();
strokes();
document.getElementById("clear").addEventListener("click", clearPad);
document.getElementById("classify").addEventListener("click", classify);
rankButton.addEventListener("click", rank);
let keyTimer;
document.getElementById("key").addEventListener("input", () => {
  clearTimeout(keyTimer);
  keyTimer = setTimeout(checkSearch, 250);
});
document.body.dataset.state = "idle";
// For the browser test and the console: the same functions the page uses.
window.tandemDemo = {
  pixels,
  paintPixels,
  classify,
  rank,
  checkSearch,
  ready: Promise.all([loadSettings(), checkSearch()]),
};
