// The lab's page: each view asks the server (a JSON API on the same address) and draws.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = { data: "rgba(120,120,120,0.35)", points: "rgba(21,101,192,0.75)",
  learned: "#1565c0", exact: "#ef6c00", paths: ["#d32f2f", "#388e3c", "#7b1fa2", "#f57c00", "#0097a7", "#5d4037", "#c2185b", "#455a64"] };
const BOUNDS = { lo: 0.55, w1: 1.3 };  // the point bounds the samplers view checks
const S = { data: null, run: null, since: -1, polling: false, forwardBounds: null, reverseBounds: null };
window.labDrawn = {};  // view -> {count, at}: when each plot was last redrawn (for timing)

function drawn(view) {
  const d = window.labDrawn[view] || { count: 0 };
  window.labDrawn[view] = { count: d.count + 1, at: performance.now() };
}

function say(text) {
  const m = $("message");
  m.hidden = !text; m.textContent = text || "";
}

async function api(method, path, body, raw) {
  const opts = { method };
  if (raw) { opts.body = raw; opts.headers = { "Content-Type": "application/octet-stream" }; }
  else if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers = { "Content-Type": "application/json" }; }
  let r;
  try { r = await fetch(path, opts); } catch (e) { say("the lab's server does not answer; is `ddpmlab lab` still running?"); throw e; }
  const out = await r.json();
  if (!r.ok) { say(out.error || "error"); throw new Error(out.error); }
  return out;
}

// ---------------------------------------------------------------- one request at a time
// A slider sends its latest value when the previous answer is in: moves are never queued.
function latest(fetcher) {
  let busy = false, next = null;
  return async function go(v) {
    if (busy) { next = v; return; }
    busy = true;
    try { await fetcher(v); } catch (e) { /* said already */ }
    busy = false;
    if (next !== null) { const n = next; next = null; go(n); }
  };
}

// ---------------------------------------------------------------- data
function showSamples(canvas, obj, over, b) {
  if (obj.images) { Plot.images(canvas, obj.images, 4); return null; }
  const layers = over ? [{ xy: over, color: COLORS.data, r: 1.4 }] : [];
  layers.push({ xy: obj.points, color: COLORS.points, r: 1.8 });
  return Plot.scatter(canvas, { layers, b });
}

function setData(d) {
  S.data = d; S.forwardBounds = null;
  $("data-label").textContent = `${d.label} (${d.count})`;
  showSamples($("data-plot"), d);
  $("images-time").hidden = d.kind !== "images";
  drawn("data");
  say("");
  refreshForward();
}

async function upload(kind, file) {
  if (!file) return;
  const buf = await file.arrayBuffer();
  const q = new URLSearchParams({ kind, name: file.name });
  setData(await api("POST", "/api/upload?" + q, undefined, buf));
}

function setupDrawing() {
  const c = $("draw"), ctx = c.getContext("2d");
  const clear = () => { ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, c.width, c.height); };
  clear();
  let down = false, last = null;
  const pos = (e) => { const r = c.getBoundingClientRect(); return [(e.clientX - r.left) * c.width / r.width, (e.clientY - r.top) * c.height / r.height]; };
  c.addEventListener("pointerdown", (e) => { down = true; last = pos(e); c.setPointerCapture(e.pointerId); });
  c.addEventListener("pointermove", (e) => {
    if (!down) return;
    const p = pos(e);
    ctx.strokeStyle = ctx.fillStyle = "#000"; ctx.lineWidth = 14;
    ctx.beginPath(); ctx.moveTo(...last); ctx.lineTo(...p); ctx.stroke();
    ctx.beginPath(); ctx.arc(...p, 7, 0, 2 * Math.PI); ctx.fill();  // a pen's tip
    last = p;
  });
  c.addEventListener("pointerup", () => { down = false; });
  $("clear-draw").onclick = clear;
  // the strokes become points as a silhouette does: the picture's dark pixels
  $("use-draw").onclick = () => c.toBlob((blob) => upload("picture", new File([blob], "drawing.png")));
}

// ---------------------------------------------------------------- forward process
function schedule() { return { schedule: $("schedule").value, T: Math.max(2, +$("T").value || 2) }; }

const forwardAt = latest(async (t) => {
  const s = schedule();
  const f = await api("GET", `/api/forward?${new URLSearchParams({ ...s, t })}`);
  if (f.points && !S.forwardBounds) {
    const last = await api("GET", `/api/forward?${new URLSearchParams({ ...s, t: s.T - 1 })}`);
    S.forwardBounds = Plot.bounds([S.data.points, last.points]);
  }
  showSamples($("forward-plot"), f, null, S.forwardBounds);
  drawCurves(t);
  drawn("forward");
});

let curves = null;
async function refreshForward() {
  const s = schedule();
  $("t").max = s.T - 1;
  if (+$("t").value > s.T - 1) $("t").value = s.T - 1;
  S.forwardBounds = null;
  try { curves = await api("GET", `/api/schedule?${new URLSearchParams(s)}`); } catch (e) { return; }
  $("kept").textContent = I18n.t("kept", { k: curves.kept }) + (curves.kept > 0.1 ? " " + I18n.t("not_noise") : "");
  forwardAt(+$("t").value);
}

function drawCurves(t) {
  $("t-out").textContent = `${+t + 1} / ${curves.alpha_bar.length}`;
  Plot.lines($("schedule-plot"), [{ ys: curves.alpha_bar, color: "#1565c0", label: "ᾱ_t" }], { mark: +t, xlabel: "t" });
  Plot.lines($("snr-plot"), [{ ys: curves.log_snr, color: "#6a1b9a", label: "log10 SNR_t = log10(ᾱ_t / (1 − ᾱ_t))" }], { mark: +t, xlabel: "t" });
}

// ---------------------------------------------------------------- training
function metricsTable(metrics) {
  const rows = ["1nna", "w1"].filter((k) => metrics[k]).map((k) => {
    const m = metrics[k], ok = k === "1nna" ? m.value <= BOUNDS.lo : m.value <= BOUNDS.w1 * m.floor;
    return `<tr><th>${k === "1nna" ? "1-NNA" : "W1"}</th><td>${m.value.toFixed(3)}</td><td>${I18n.t("floor")} ${m.floor.toFixed(3)}</td><td class="${ok ? "pass" : "fail"}">${I18n.t(ok ? "pass" : "fail")}</td></tr>`;
  });
  return `<table>${rows.join("")}</table>`;
}

async function startTraining(body) {
  S.since = -1;
  $("preview-plot").getContext("2d").clearRect(0, 0, 9999, 9999);
  $("train-metrics").innerHTML = ""; S.metrics = null;
  showTraining(await api("POST", "/api/train", body));
  poll();
}

function showTraining(st) {
  if (st.state === "idle") { $("train-state").textContent = I18n.t("state_idle"); return; }
  const step = st.step || 0;
  $("progress").value = st.steps ? step / st.steps : 0;
  const word = I18n.t("state_" + st.state);
  $("train-state").textContent = `${st.run}: ${step} / ${st.steps} — ${word} (${st.elapsed} s)` + (st.message ? ` — ${st.message}` : "");
  if (st.loss && st.loss.length) Plot.lines($("loss-plot"), [{ xs: st.loss.map((r) => r[0]), ys: st.loss.map((r) => r[1]), color: "#2e7d32", label: I18n.t("loss") }], { logy: true, xlabel: "step" });
  if (st.preview) {
    S.since = st.preview.step;
    showSamples($("preview-plot"), st.preview, S.data && S.data.points);
    drawn("preview");
  }
  if (st.metrics) { S.metrics = st.metrics; $("train-metrics").innerHTML = metricsTable(st.metrics); }
}

async function poll() {
  if (S.polling) return;
  S.polling = true;
  for (;;) {
    let st;
    try { st = await api("GET", `/api/status?since=${S.since}`); } catch (e) { break; }
    showTraining(st);
    if (st.state !== "running") {
      if (st.state === "done" || st.state === "stopped") { await refreshRuns(st.run); if (st.state === "done") await openRun(st.run); }
      break;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  S.polling = false;
}

async function refreshRuns(select) {
  const st = await api("GET", "/api/state");
  $("runs").innerHTML = st.runs.map((r) => `<option>${r}</option>`).join("");
  if (select) $("runs").value = select;
}

// ---------------------------------------------------------------- reverse process
async function openRun(name) {
  setRun(await api("POST", "/api/open", { run: name }));
}

function setRun(run) {
  S.run = run; S.reverseBounds = null;
  if (!run) { $("run-label").textContent = I18n.t("no_run"); return; }
  $("run-label").textContent = `${run.name}: ${run.data}, ${run.step} / ${run.steps} steps, ${run.schedule} T = ${run.T}`;
  $("k").max = run.T; $("k").value = run.T;
  $("score-t").max = run.T - 1;
  $("score-t").value = Math.min(+$("score-t").value, run.T - 1);
  $("score-note").textContent = run.kind === "points" && !run.exact ? I18n.t("no_exact") : "";
  reverseAt(run.T);
  if (run.kind === "points") scoreAt(+$("score-t").value);
}

const reverseAt = latest(async (k) => {
  const r = await api("GET", `/api/reverse?k=${k}`);
  $("k-out").textContent = `${k} / ${r.T}`;
  if (r.images) { Plot.images($("reverse-plot"), r.images, 4); drawn("reverse"); return; }
  if (!S.reverseBounds) S.reverseBounds = Plot.bounds([S.run.real.points, ...r.paths]);
  const paths = r.paths.map((p, i) => ({ xy: p.slice(0, 2 * (k + 1)), color: COLORS.paths[i % 8] }));
  Plot.scatter($("reverse-plot"), { layers: [{ xy: S.run.real.points, color: COLORS.data, r: 1.4 }, { xy: r.points, color: COLORS.points, r: 1.8 }], paths, b: S.reverseBounds });
  drawn("reverse");
});

const scoreAt = latest(async (t) => {
  const s = await api("GET", `/api/score?t=${t}`);
  $("score-t-out").textContent = `${+t + 1}`;
  const fields = [{ vec: s.learned, color: COLORS.learned }];
  if (s.exact) fields.push({ vec: s.exact, color: COLORS.exact });
  Plot.scatter($("score-plot"), { layers: [{ xy: S.run.real.points, color: COLORS.data, r: 1.4 }], arrows: { grid: s.grid, fields }, b: Plot.bounds([s.grid], 0.04) });
  drawn("score");
});

// ---------------------------------------------------------------- samplers
async function compareSamplers() {
  const names = [...document.querySelectorAll("#sampler-choice input:checked")].map((e) => e.value);
  $("samplers-state").textContent = I18n.t("working");
  try { S.samplers = await api("POST", "/api/samplers", { samplers: names, steps: +$("sampler-steps").value }); } finally { $("samplers-state").textContent = ""; }
  showSamplers();
}

function showSamplers() {
  if (!S.samplers) return;
  const out = [...S.samplers];
  const box = $("sampler-results");
  box.innerHTML = "";
  if (S.run && S.run.kind === "images") out.unshift({ sampler: I18n.t("real"), seconds: 0, metrics: {}, n: S.run.real.images.n, images: S.run.real.images });
  for (const r of out) {
    const card = document.createElement("div");
    card.className = "sampler";
    const time = r.seconds ? ` — ${r.seconds.toFixed(2)} ${I18n.t("seconds")}` : "";
    card.innerHTML = `<h3>${r.sampler}${r.steps ? ", K = " + r.steps : ""}${time}</h3><canvas class="plot"></canvas>${metricsTable(r.metrics)}<p class="note">n = ${r.n}</p>`;
    box.appendChild(card);
    showSamples(card.querySelector("canvas"), r, S.run && S.run.real.points);
  }
  drawn("samplers");
}

// ---------------------------------------------------------------- start
function setupTabs() {
  for (const b of document.querySelectorAll("#tabs button")) {
    b.onclick = () => {
      for (const o of document.querySelectorAll("#tabs button")) o.classList.toggle("on", o === b);
      for (const v of document.querySelectorAll(".view")) v.classList.toggle("on", v.id === b.dataset.tab);
    };
  }
  const lang = (l) => {
    I18n.set(l);
    $("lang-en").classList.toggle("on", l === "en"); $("lang-fr").classList.toggle("on", l === "fr");
    if (curves) refreshForward();
    if (S.metrics) $("train-metrics").innerHTML = metricsTable(S.metrics);
    showSamplers();
  };
  $("lang-en").onclick = () => lang("en");
  $("lang-fr").onclick = () => lang("fr");
  lang(I18n.lang);
}

async function start() {
  setupTabs();
  setupDrawing();
  const st = await api("GET", "/api/state");
  $("shape").innerHTML = st.shapes.map((s) => `<option>${s}</option>`).join("");
  $("schedule").innerHTML = st.schedules.map((s) => `<option>${s}</option>`).join("");
  $("sampler-choice").innerHTML = st.samplers.map((s, i) => `<label><input type="checkbox" value="${s}" ${i < 2 ? "checked" : ""}> ${s}</label>`).join(" ");
  $("runs").innerHTML = st.runs.map((r) => `<option>${r}</option>`).join("");
  $("use-shape").onclick = async () => setData(await api("POST", "/api/data", { shape: $("shape").value }));
  $("use-word").onclick = async () => setData(await api("POST", "/api/data", { text: $("word").value }));
  $("points-file").onchange = (e) => upload("points", e.target.files[0]).catch(() => {});
  $("picture-file").onchange = (e) => upload("picture", e.target.files[0]).catch(() => {});
  $("t").oninput = (e) => forwardAt(+e.target.value);
  $("schedule").onchange = refreshForward;
  $("T").onchange = refreshForward;
  $("source-schedule").onclick = () => { $("schedule").value = st.source_schedule[0]; $("T").value = st.source_schedule[1]; $("t").value = st.source_schedule[1] - 1; refreshForward(); };
  $("train-start").onclick = () => startTraining({ steps: +$("steps").value, ...schedule() }).catch(() => {});
  $("train-stop").onclick = async () => showTraining(await api("POST", "/api/stop"));
  $("open-run").onclick = () => openRun($("runs").value).catch(() => {});
  $("resume-run").onclick = () => startTraining({ resume: $("runs").value }).catch(() => {});
  $("k").oninput = (e) => reverseAt(+e.target.value);
  $("score-t").oninput = (e) => scoreAt(+e.target.value);
  $("run-samplers").onclick = () => compareSamplers().catch(() => {});
  setData(st.data);
  setRun(st.run);
  if (st.run) $("runs").value = st.run.name;
  showTraining(st.training);
  if (st.training.state === "running") poll();
  document.body.dataset.ready = "1";
}

start();
