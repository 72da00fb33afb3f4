// Plots drawn on a <canvas>: scatter (with paths and arrows), line charts, image grids.
// Nothing is fetched: the page works offline.
"use strict";

const Plot = (() => {
  const PAD = 40;

  function setup(canvas) {
    const ratio = window.devicePixelRatio || 1;
    // a canvas in a hidden view has no client size: its style's size, so it is ready when shown
    const style = getComputedStyle(canvas);
    const w = canvas.clientWidth || parseFloat(style.width), h = canvas.clientHeight || parseFloat(style.height);
    if (canvas.width !== Math.round(w * ratio)) canvas.width = Math.round(w * ratio);
    if (canvas.height !== Math.round(h * ratio)) canvas.height = Math.round(h * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px sans-serif";
    return { ctx, w, h };
  }

  // Bounds [x0, x1, y0, y1] holding every point of flat [x, y, ...] arrays, squared up.
  function bounds(arrays, margin = 0.06) {
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const a of arrays) {
      for (let i = 0; i + 1 < a.length; i += 2) {
        if (!isFinite(a[i]) || !isFinite(a[i + 1])) continue;
        x0 = Math.min(x0, a[i]); x1 = Math.max(x1, a[i]);
        y0 = Math.min(y0, a[i + 1]); y1 = Math.max(y1, a[i + 1]);
      }
    }
    if (!isFinite(x0)) return [-1, 1, -1, 1];
    const span = Math.max(x1 - x0, y1 - y0, 1e-6) * (1 + 2 * margin);
    const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    return [cx - span / 2, cx + span / 2, cy - span / 2, cy + span / 2];
  }

  function ticks(lo, hi, n = 5) {
    const step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n)));
    const err = (hi - lo) / n / step;
    const s = step * (err >= 5 ? 10 : err >= 2 ? 5 : err >= 1.4 ? 2 : 1);
    const out = [];
    for (let v = Math.ceil(lo / s) * s; v <= hi + 1e-9; v += s) out.push(+v.toFixed(10));
    return out;
  }

  function frame(ctx, w, h, b, fmtY = (v) => String(v)) {
    const sx = (x) => PAD + (x - b[0]) / (b[1] - b[0]) * (w - PAD - 8);
    const sy = (y) => h - PAD + 4 - (y - b[2]) / (b[3] - b[2]) * (h - PAD - 4);
    ctx.strokeStyle = "#bbb"; ctx.fillStyle = "#555"; ctx.lineWidth = 1;
    ctx.strokeRect(PAD, 4, w - PAD - 8, h - PAD);
    ctx.textAlign = "center";
    for (const v of ticks(b[0], b[1])) ctx.fillText(String(v), sx(v), h - PAD + 18);
    ctx.textAlign = "right";
    for (const v of ticks(b[2], b[3])) ctx.fillText(fmtY(v), PAD - 4, sy(v) + 4);
    return { sx, sy };
  }

  // layers: [{xy, color, r}], paths: [{xy, color}], arrows: {grid, fields: [{vec, color}]}
  function scatter(canvas, { layers = [], paths = [], arrows = null, b = null }) {
    const { ctx, w, h } = setup(canvas);
    b = b || bounds(layers.map((l) => l.xy));
    const { sx, sy } = frame(ctx, w, h, b);
    ctx.save();
    ctx.beginPath(); ctx.rect(PAD, 4, w - PAD - 8, h - PAD); ctx.clip();
    for (const l of layers) {
      ctx.fillStyle = l.color; const r = l.r || 1.6;
      for (let i = 0; i + 1 < l.xy.length; i += 2) {
        ctx.fillRect(sx(l.xy[i]) - r / 2, sy(l.xy[i + 1]) - r / 2, r, r);
      }
    }
    for (const p of paths) {
      ctx.strokeStyle = p.color; ctx.lineWidth = 1.2; ctx.beginPath();
      for (let i = 0; i + 1 < p.xy.length; i += 2) {
        const f = i === 0 ? "moveTo" : "lineTo"; ctx[f](sx(p.xy[i]), sy(p.xy[i + 1]));
      }
      ctx.stroke();
      const n = p.xy.length;
      ctx.fillStyle = p.color; ctx.beginPath();
      ctx.arc(sx(p.xy[n - 2]), sy(p.xy[n - 1]), 3, 0, 2 * Math.PI); ctx.fill();
    }
    if (arrows) drawArrows(ctx, arrows, sx, sy, b, w);
    ctx.restore();
    return b;
  }

  function drawArrows(ctx, { grid, fields }, sx, sy, b, w) {
    // one scale for every field, so learned and exact lengths compare; longest = a cell
    let longest = 1e-12;
    for (const f of fields) {
      for (let i = 0; i < f.vec.length; i += 2) longest = Math.max(longest, Math.hypot(f.vec[i], f.vec[i + 1]));
    }
    const cells = Math.sqrt(grid.length / 2);
    const cellPx = (w - PAD - 8) / cells;
    const scale = 0.9 * cellPx / longest;
    for (const f of fields) {
      ctx.strokeStyle = f.color; ctx.lineWidth = 1.3;
      for (let i = 0; i < grid.length; i += 2) {
        const x = sx(grid[i]), y = sy(grid[i + 1]);
        const dx = f.vec[i] * scale, dy = -f.vec[i + 1] * scale;
        ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(x + dx, y + dy);
        const a = Math.atan2(dy, dx), hl = Math.min(5, Math.hypot(dx, dy) / 2);
        ctx.lineTo(x + dx - hl * Math.cos(a - 0.5), y + dy - hl * Math.sin(a - 0.5));
        ctx.moveTo(x + dx, y + dy);
        ctx.lineTo(x + dx - hl * Math.cos(a + 0.5), y + dy - hl * Math.sin(a + 0.5));
        ctx.stroke();
      }
    }
  }

  // series: [{ys, xs?, color, label}]; opts: {mark: x, logy, xlabel}
  function lines(canvas, series, opts = {}) {
    const { ctx, w, h } = setup(canvas);
    const tf = opts.logy ? (v) => Math.log10(Math.max(v, 1e-12)) : (v) => v;
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const s of series) {
      s.ys.forEach((y, i) => {
        const x = s.xs ? s.xs[i] : i, v = tf(y);
        if (!isFinite(v)) return;
        x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, v); y1 = Math.max(y1, v);
      });
    }
    if (!isFinite(x0)) { x0 = 0; x1 = 1; y0 = 0; y1 = 1; }
    if (x1 === x0) x1 = x0 + 1;
    const pad = (y1 - y0) * 0.05 || 0.5;
    const b = [x0, x1, y0 - pad, y1 + pad];
    const { sx, sy } = frame(ctx, w, h, b, (v) => opts.logy ? Math.pow(10, v).toPrecision(2) : String(v));
    series.forEach((s, k) => {
      ctx.strokeStyle = s.color; ctx.lineWidth = 1.8; ctx.beginPath();
      s.ys.forEach((y, i) => {
        const x = s.xs ? s.xs[i] : i;
        ctx[i === 0 ? "moveTo" : "lineTo"](sx(x), sy(tf(y)));
      });
      ctx.stroke();
      ctx.fillStyle = s.color; ctx.textAlign = "right";
      if (s.label) ctx.fillText(s.label, w - 14, 18 + 14 * k);
    });
    if (opts.mark !== undefined) {
      ctx.strokeStyle = "#d33"; ctx.setLineDash([4, 3]); ctx.beginPath();
      ctx.moveTo(sx(opts.mark), 4); ctx.lineTo(sx(opts.mark), h - PAD + 4); ctx.stroke();
      ctx.setLineDash([]);
    }
    if (opts.xlabel) { ctx.fillStyle = "#555"; ctx.textAlign = "right"; ctx.fillText(opts.xlabel, w - 10, h - 4); }
  }

  // img: {n, c, h, w, pixels (channel-last bytes)}: a grid of `cols` columns, scaled up
  function images(canvas, img, cols = 8) {
    const { ctx, w, h } = setup(canvas);
    const rows = Math.ceil(img.n / cols);
    const cell = Math.floor(Math.min(w / cols, h / rows));
    const tile = document.createElement("canvas");
    tile.width = img.w; tile.height = img.h;
    const tctx = tile.getContext("2d");
    const data = tctx.createImageData(img.w, img.h);
    ctx.imageSmoothingEnabled = false;
    const size = img.h * img.w * img.c;
    for (let k = 0; k < img.n; k++) {
      for (let p = 0; p < img.h * img.w; p++) {
        for (let ch = 0; ch < 3; ch++) data.data[4 * p + ch] = img.pixels[k * size + p * img.c + (img.c === 3 ? ch : 0)];
        data.data[4 * p + 3] = 255;
      }
      tctx.putImageData(data, 0, 0);
      ctx.drawImage(tile, (k % cols) * cell + 1, Math.floor(k / cols) * cell + 1, cell - 2, cell - 2);
    }
  }

  return { scatter, lines, images, bounds };
})();
