// rekolab player: an HTML5 <video> with the job's boxes drawn on a canvas in sync
// (requestVideoFrameCallback's mediaTime where the browser has it, so the boxes of
// a result sit on the exact frame it came from), a clickable lanes timeline with
// hover tooltips, and a per-track gallery. Everything drawn comes from the
// detections table the kernel sends as typed arrays (data-driven: any operation
// whose results have a Timestamp, a lane and optionally a box plugs in).

const f64 = (dv) => (dv && dv.byteLength ? new Float64Array(dv.buffer.slice(dv.byteOffset, dv.byteOffset + dv.byteLength)) : new Float64Array(0));
const f32 = (dv) => (dv && dv.byteLength ? new Float32Array(dv.buffer.slice(dv.byteOffset, dv.byteOffset + dv.byteLength)) : new Float32Array(0));
const i32 = (dv) => (dv && dv.byteLength ? new Int32Array(dv.buffer.slice(dv.byteOffset, dv.byteOffset + dv.byteLength)) : new Int32Array(0));

function el(tag, cls, parent, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}

function fmtTime(s) {
  if (!isFinite(s)) s = 0;
  const m = Math.floor(s / 60), sec = s - 60 * m;
  return m >= 60 ? `${Math.floor(m / 60)}:${String(m % 60).padStart(2, "0")}:${sec.toFixed(3).padStart(6, "0")}`
    : `${m}:${sec.toFixed(3).padStart(6, "0")}`;
}

// upper bound: first index with a[i] > x
function upper(a, x) { let lo = 0, hi = a.length; while (lo < hi) { const m = (lo + hi) >> 1; if (a[m] <= x) lo = m + 1; else hi = m; } return lo; }

function render({ model, el: root }) {
  const meta = () => model.get("meta");
  const wrap = el("div", "rk-player", root);
  wrap.tabIndex = 0;
  const head = el("div", "rk-head", wrap);
  const title = el("span", "rk-title", head);
  const note = el("span", "rk-note", head);
  const stage = el("div", "rk-stage", wrap);
  const video = el("video", "rk-video", stage);
  video.muted = true; video.playsInline = true; video.preload = "auto";
  const overlay = el("canvas", "rk-overlay", stage);
  const controls = el("div", "rk-controls", wrap);
  const btn = (label, tip, fn) => { const b = el("button", "rk-btn", controls, label); b.title = tip; b.onclick = (e) => { e.preventDefault(); fn(); wrap.focus(); }; return b; };
  const prevHit = btn("◀◀", "previous frame with a box (J)", () => jump(-1));
  const prevFrame = btn("◀|", "previous frame (←)", () => stepFrame(-1));
  const play = btn("▶", "play / pause (space or K)", () => toggle());
  const nextFrame = btn("|▶", "next frame (→)", () => stepFrame(+1));
  const nextHit = btn("▶▶", "next frame with a box (L)", () => jump(+1));
  const seek = el("input", "rk-seek", controls); seek.type = "range"; seek.min = 0; seek.step = "any"; seek.value = 0;
  const clock = el("span", "rk-clock", controls);
  const confLabel = el("label", "rk-conf", controls, "min conf ");
  const conf = el("input", "", confLabel); conf.type = "range"; conf.min = 0; conf.max = 100; conf.step = 1;
  const confOut = el("span", "", confLabel);
  const caption = el("div", "rk-caption", wrap);
  const lanesBox = el("div", "rk-lanes", wrap);
  const lanesCanvas = el("canvas", "rk-lanes-canvas", lanesBox);
  const tip = el("div", "rk-tip", wrap); tip.style.display = "none";
  const gallery = el("div", "rk-gallery", wrap);
  const help = el("div", "rk-help", wrap, "space/K play · ←/→ frame · shift+←/→ 1 s · J/L previous/next box · click a lane to seek · click a name to show only it");

  // ---- data -----------------------------------------------------------------------
  let D = null;
  function load() {
    const ts = f64(model.get("det_ts")), lane = i32(model.get("det_lane"));
    const cf = f32(model.get("det_conf")), box = f32(model.get("det_box"));
    const uts = [], starts = [];
    for (let i = 0; i < ts.length; i++) if (i === 0 || ts[i] !== ts[i - 1]) { uts.push(ts[i]); starts.push(i); }
    starts.push(ts.length);
    const lanes = model.get("lanes");
    const perLane = lanes.map(() => []);
    for (let i = 0; i < ts.length; i++) { const l = perLane[lane[i]]; if (!l.length || l[l.length - 1] !== ts[i]) l.push(ts[i]); }
    D = { ts, lane, cf, box, uts: Float64Array.from(uts), starts: Int32Array.from(starts), lanes, perLane,
          bl: i32(model.get("bins_lane")), bb: i32(model.get("bins_bin")), bc: f32(model.get("bins_conf")) };
  }
  load();

  const selected = () => new Set(model.get("selected"));
  const minConf = () => model.get("min_confidence");
  function laneVisible(li) { const s = selected(); return s.size === 0 || s.has(D.lanes[li].name); }
  function rowVisible(i) {
    const c = D.cf[i];
    return laneVisible(D.lane[i]) && !(c < minConf());  // NaN confidence: always shown
  }

  // ---- video source ------------------------------------------------------------------
  let blobUrl = null;
  function setSource() {
    const url = model.get("video_url");
    const bytes = model.get("video");
    if (blobUrl) { URL.revokeObjectURL(blobUrl); blobUrl = null; }
    if (url) video.src = url;
    else if (bytes && bytes.byteLength) {
      blobUrl = URL.createObjectURL(new Blob([bytes], { type: model.get("video_mime") }));
      video.src = blobUrl;
    } else video.removeAttribute("src");
    note.textContent = model.get("video_note") || "";
  }
  setSource();

  // ---- geometry --------------------------------------------------------------------------
  function layout() {
    const m = meta();
    const avail = Math.max(200, wrap.clientWidth || root.clientWidth || 640);
    const aspect = (m.height || 9) / (m.width || 16);
    const maxH = Math.max(160, Math.min(window.innerHeight * 0.5, m.max_height_px || 480));
    let w = Math.min(avail, m.width || avail);
    if (w * aspect > maxH) w = maxH / aspect;
    const h = Math.round(w * aspect);
    w = Math.round(w);
    stage.style.width = w + "px"; stage.style.height = h + "px";
    video.style.width = w + "px"; video.style.height = h + "px";
    const dpr = window.devicePixelRatio || 1;
    overlay.width = w * dpr; overlay.height = h * dpr; overlay.style.width = w + "px"; overlay.style.height = h + "px";
    lanesW = avail;
    drawAll();
  }
  let lanesW = 640;
  const ro = new ResizeObserver(() => layout());
  ro.observe(wrap);

  // ---- time ----------------------------------------------------------------------------------
  // Times here are result times (s): a frame's PTS minus the video stream's start
  // (meta.offset_s), the axis of the results' Timestamp; the <video> element's own
  // media time is offset_s later (the Hamilton clip's video starts at 0.852 s).
  let mediaTime = 0;         // seconds: the presented frame, in result time
  const off = () => meta().offset_s || 0;
  const frameS = () => 1 / (meta().fps || 25);
  function duration() { return meta().duration_ms / 1000; }

  // The result shown at time t (s): the nearest result timestamp within half a
  // sampling interval (the frame viewer's rule), so a held box never crosses into the
  // next sample's frames. A result's Timestamp is its frame's PTS in ms rounded down:
  // exact means this very frame was analysed.
  function resultAt(t) {
    const ms = t * 1000;
    const k = upper(D.uts, ms + 0.5);
    let best = -1;
    for (const j of [k - 1, k]) if (j >= 0 && j < D.uts.length && (best < 0 || Math.abs(D.uts[j] - ms) < Math.abs(D.uts[best] - ms))) best = j;
    if (best < 0 || Math.abs(D.uts[best] - ms) > (meta().sample_interval_ms || 200) / 2) return null;
    const r = D.uts[best];
    return { k: best, r, exact: ms - r > -0.5 && ms - r < 1.5 };
  }

  function boxesAt(t) {
    const hit = resultAt(t);
    const out = { boxes: [], tags: [], hit };
    if (!hit) return out;
    const boxed = new Set();
    for (let i = D.starts[hit.k]; i < D.starts[hit.k + 1]; i++) {
      if (!rowVisible(i)) continue;
      const L = D.lanes[D.lane[i]], c = D.cf[i];
      const text = isNaN(c) ? L.name : `${L.name} ${c.toFixed(0)}`;
      const b = [D.box[4 * i], D.box[4 * i + 1], D.box[4 * i + 2], D.box[4 * i + 3]];
      if (isNaN(b[0])) out.tags.push({ lane: D.lane[i], text, color: L.color });
      else { out.boxes.push({ lane: D.lane[i], text, color: L.color, b, conf: c }); boxed.add(D.lane[i]); }
    }
    out.tags = out.tags.filter((g) => !boxed.has(g.lane));
    return out;
  }

  function drawOverlay() {
    const ctx = overlay.getContext("2d");
    const dpr = window.devicePixelRatio || 1;
    const W = overlay.width / dpr, H = overlay.height / dpr;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    const { boxes, tags, hit } = boxesAt(mediaTime);
    const font = Math.max(11, Math.round(H / 26));
    ctx.font = `${font}px sans-serif`; ctx.textBaseline = "top";
    ctx.lineWidth = Math.max(2, W / 320);
    ctx.setLineDash(hit && !hit.exact ? [6, 4] : []);
    for (const bx of boxes) {
      const [l, t, w, h] = bx.b;
      ctx.strokeStyle = bx.color; ctx.strokeRect(l * W, t * H, w * W, h * H);
      const tw = ctx.measureText(bx.text).width + 6, th = font + 4;
      const ty = t * H - th >= 0 ? t * H - th : Math.min((t + h) * H, H - th);
      ctx.fillStyle = bx.color; ctx.fillRect(l * W, ty, tw, th);
      ctx.fillStyle = "#fff"; ctx.fillText(bx.text, l * W + 3, ty + 2);
    }
    ctx.setLineDash([]);
    let y = 4;
    for (const g of tags.slice(0, 12)) {
      const tw = ctx.measureText(g.text).width + 6;
      ctx.fillStyle = g.color; ctx.fillRect(4, y, tw, font + 4);
      ctx.fillStyle = "#fff"; ctx.fillText(g.text, 7, y + 2); y += font + 6;
    }
    const frame = Math.round(mediaTime * (meta().fps || 25));
    clock.textContent = `${fmtTime(mediaTime)} · frame ${frame}`;
    caption.textContent = !hit ? "no results at this time"
      : `${hit.exact ? "analysed frame" : "nearest analysed frame"} ${(hit.r / 1000).toFixed(3)} s · `
        + `${boxes.length} box${boxes.length === 1 ? "" : "es"}` + (tags.length ? ` · on the frame: ${tags.map((g) => g.text).join(", ")}` : "");
    wrap.dataset.boxes = String(boxes.length);
    wrap.dataset.mediaTime = mediaTime.toFixed(6);
    wrap.dataset.videoTime = video.currentTime.toFixed(6);
  }

  // ---- lanes ----------------------------------------------------------------------------------
  const ROW = 16, AXIS = 18, NAMES = 112;
  let shownLanes = [];
  function visibleLanes() {
    const m = minConf(), s = selected(), present = new Set();
    for (let p = 0; p < D.bl.length; p++) if (!(D.bc[p] < m)) present.add(D.bl[p]);
    const out = [];
    for (let li = 0; li < D.lanes.length; li++) if (present.has(li) && (s.size === 0 || s.has(D.lanes[li].name))) out.push(li);
    return out;
  }
  function xOf(ms) { return NAMES + (lanesW - NAMES - 8) * ms / Math.max(meta().duration_ms, 1); }
  function msOf(x) { return Math.max(0, Math.min(meta().duration_ms, (x - NAMES) / Math.max(lanesW - NAMES - 8, 1) * meta().duration_ms)); }
  function drawLanes() {
    shownLanes = visibleLanes();
    const rows = Math.max(shownLanes.length, 1);
    const H = AXIS + rows * ROW + 4, dpr = window.devicePixelRatio || 1;
    lanesCanvas.width = lanesW * dpr; lanesCanvas.height = H * dpr;
    lanesCanvas.style.width = lanesW + "px"; lanesCanvas.style.height = H + "px";
    const ctx = lanesCanvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, lanesW, H);
    ctx.font = "11px sans-serif"; ctx.textBaseline = "middle";
    const rowOf = new Map(shownLanes.map((li, r) => [li, r]));
    const m = minConf(), binMs = meta().bin_ms;
    const s = selected();
    shownLanes.forEach((li, r) => {
      const y = AXIS + r * ROW;
      if (r % 2) { ctx.fillStyle = "rgba(0,0,0,0.03)"; ctx.fillRect(0, y, lanesW, ROW); }
      ctx.fillStyle = s.has(D.lanes[li].name) ? "#000" : "#333";
      ctx.fillText(D.lanes[li].name.length > 17 ? D.lanes[li].name.slice(0, 16) + "…" : D.lanes[li].name, 4, y + ROW / 2);
    });
    for (let p = 0; p < D.bl.length; p++) {
      const r = rowOf.get(D.bl[p]);
      if (r === undefined || D.bc[p] < m) continue;
      const x0 = xOf(D.bb[p] * binMs), x1 = xOf((D.bb[p] + 1) * binMs);
      ctx.fillStyle = D.lanes[D.bl[p]].color;
      ctx.fillRect(x0, AXIS + r * ROW + 2, Math.max(1, x1 - x0), ROW - 4);
    }
    // time axis
    const dur = meta().duration_ms / 1000;
    const steps = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
    const step = steps.find((st) => dur / st <= 10) || 3600;
    ctx.fillStyle = "#555"; ctx.textBaseline = "top";
    for (let t = 0; t <= dur + 1e-9; t += step) {
      const x = xOf(t * 1000);
      ctx.fillRect(x, AXIS - 4, 1, 4);
      ctx.fillText(dur >= 120 ? fmtTime(t).replace(/\.\d+$/, "") : `${+t.toFixed(1)} s`, x + 2, 2);
    }
    if (!shownLanes.length) { ctx.fillStyle = "#888"; ctx.fillText("nothing at this confidence", NAMES, AXIS + 2); }
    // cursor
    const cx = xOf(mediaTime * 1000);
    ctx.fillStyle = "#d00"; ctx.fillRect(cx - 1, AXIS - 2, 2, H - AXIS + 2);
    lanesCanvas.dataset.lanes = String(shownLanes.length);
  }

  function laneHit(ev) {
    const r = lanesCanvas.getBoundingClientRect();
    const x = ev.clientX - r.left, y = ev.clientY - r.top;
    const row = Math.floor((y - AXIS) / ROW);
    if (row < 0 || row >= shownLanes.length) return null;
    const li = shownLanes[row];
    const ms = msOf(x);
    const bin = Math.floor(ms / meta().bin_ms);
    let c = null;
    for (let p = 0; p < D.bl.length; p++) if (D.bl[p] === li && D.bb[p] === bin) { c = D.bc[p]; break; }
    return { li, x, y, ms, bin, conf: c, inNames: x < NAMES };
  }
  lanesCanvas.addEventListener("mousemove", (ev) => {
    const h = laneHit(ev);
    if (!h) { tip.style.display = "none"; return; }
    const L = D.lanes[h.li];
    tip.textContent = h.inNames ? `${L.name} · click to show only this lane`
      : `${L.name} · ${h.conf === null || isNaN(h.conf) ? "not present" : `confidence ${h.conf.toFixed(1)}`} · ${(h.ms / 1000).toFixed(2)} s`;
    const wr = wrap.getBoundingClientRect();
    tip.style.left = (ev.clientX - wr.left + 12) + "px";
    tip.style.top = (ev.clientY - wr.top + 12) + "px";
    tip.style.display = "block";
  });
  lanesCanvas.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  lanesCanvas.addEventListener("click", (ev) => {
    const h = laneHit(ev);
    if (!h) return;
    const name = D.lanes[h.li].name;
    if (h.inNames) {
      const s = selected();
      model.set("selected", s.has(name) && s.size === 1 ? [] : [name]);
      model.save_changes();
      return;
    }
    // Seek to this lane's nearest result around the click (so the box is on screen).
    const tsl = D.perLane[h.li];
    let best = null;
    const k = upper(tsl, h.ms);
    for (const j of [k - 1, k]) if (j >= 0 && j < tsl.length && (best === null || Math.abs(tsl[j] - h.ms) < Math.abs(best - h.ms))) best = tsl[j];
    const tol = Math.max(2 * meta().bin_ms, 3 * (meta().sample_interval_ms || 200));
    seekTo(best !== null && Math.abs(best - h.ms) <= tol ? best / 1000 : h.ms / 1000, best !== null && Math.abs(best - h.ms) <= tol);
    wrap.focus();
  });

  // ---- gallery ---------------------------------------------------------------------------------
  function drawGallery() {
    gallery.textContent = "";
    const g = model.get("gallery") || {};
    const s = selected();
    for (const L of D.lanes) {
      const items = g[L.name];
      if (!items || !items.length || (s.size && !s.has(L.name))) continue;
      const card = el("div", "rk-card", gallery);
      card.style.borderColor = L.color;
      el("div", "rk-card-name", card, L.name);
      for (const it of items) {
        const img = el("img", "rk-thumb", card);
        img.src = it.src; img.title = `${L.name} · ${it.conf.toFixed(1)} · ${(it.t / 1000).toFixed(2)} s`;
        img.onclick = () => { seekTo(it.t / 1000, true); wrap.focus(); };
      }
    }
    gallery.style.display = gallery.childElementCount ? "" : "none";
  }

  // ---- control -------------------------------------------------------------------------------
  let pushTimer = null;
  function pushTime(force) {
    if (pushTimer && !force) return;
    const go = () => { pushTimer = null; model.set("current_time", mediaTime); model.set("paused", video.paused); model.save_changes(); };
    if (force) { clearTimeout(pushTimer); go(); } else pushTimer = setTimeout(go, 250);
  }
  function seekTo(t, exactResult) {
    // A result's Timestamp is its frame's PTS rounded down to the ms: seek 1 ms in.
    const target = Math.max(0, Math.min(duration(), t + (exactResult ? 0.001 : 0)));
    mediaTime = target;
    if (video.src) video.currentTime = target + off();
    drawAll();
    pushTime(true);
  }
  function stepFrame(dir) {
    video.pause();
    // From the presented frame's own time: a quarter frame into the next (or previous) one.
    const f = frameS();
    seekTo(Math.max(0, mediaTime + dir * f + f / 4), false);
  }
  function jump(dir) {
    const here = mediaTime * 1000 + 0.5;
    const u = D.uts;
    let k = dir > 0 ? upper(u, here + 1) : upper(u, here - 1.5) - 1;
    for (let n = 0; k >= 0 && k < u.length && n < 20000; k += dir, n++) {
      for (let i = D.starts[k]; i < D.starts[k + 1]; i++) if (rowVisible(i)) { seekTo(u[k] / 1000, true); note.textContent = model.get("video_note") || ""; return; }
    }
    note.textContent = `no ${dir > 0 ? "later" : "earlier"} frame with a visible box`;
  }
  function toggle() { if (video.paused) video.play().catch(() => {}); else video.pause(); }

  video.addEventListener("play", () => { play.textContent = "⏸"; pushTime(true); });
  video.addEventListener("pause", () => { play.textContent = "▶"; pushTime(true); });
  video.addEventListener("seeked", () => { if (!hasRVFC) { mediaTime = video.currentTime - off(); drawAll(); } pushTime(true); });
  video.addEventListener("loadedmetadata", () => { seek.max = duration(); layout(); });
  video.addEventListener("error", () => { note.textContent = "the browser cannot play this video: " + ((video.error && video.error.message) || "unsupported format"); });

  const hasRVFC = "requestVideoFrameCallback" in HTMLVideoElement.prototype;
  if (hasRVFC) {
    const onFrame = (now, md) => { mediaTime = md.mediaTime - off(); drawAll(); if (!video.paused) pushTime(false); video.requestVideoFrameCallback(onFrame); };
    video.requestVideoFrameCallback(onFrame);
  } else {
    const tick = () => { if (!video.paused) { mediaTime = video.currentTime - off(); drawAll(); pushTime(false); } requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
  }
  wrap.dataset.rvfc = String(hasRVFC);

  seek.addEventListener("input", () => seekTo(parseFloat(seek.value), false));
  conf.addEventListener("input", () => { model.set("min_confidence", parseFloat(conf.value)); model.save_changes(); });
  wrap.addEventListener("keydown", (ev) => {
    const k = ev.key;
    if (k === " " || k === "k") toggle();
    else if (k === "ArrowRight" || k === ".") { if (ev.shiftKey) seekTo(mediaTime + 1, false); else stepFrame(+1); }
    else if (k === "ArrowLeft" || k === ",") { if (ev.shiftKey) seekTo(mediaTime - 1, false); else stepFrame(-1); }
    else if (k === "l") jump(+1);
    else if (k === "j") jump(-1);
    else if (k === "Home") seekTo(0, false);
    else if (k === "End") seekTo(duration(), false);
    else return;
    ev.preventDefault(); ev.stopPropagation();
  });

  function drawAll() {
    seek.max = duration();
    if (document.activeElement !== seek) seek.value = mediaTime;
    conf.value = minConf(); confOut.textContent = String(minConf());
    drawOverlay(); drawLanes();
  }

  // ---- kernel -> browser --------------------------------------------------------------------
  model.on("change:current_time", () => {
    const t = model.get("current_time");
    if (Math.abs(t - mediaTime) > frameS() / 2) { mediaTime = t; if (video.src) video.currentTime = t + off(); drawAll(); }
  });
  model.on("change:min_confidence", () => drawAll());
  model.on("change:selected", () => { drawAll(); drawGallery(); });
  model.on("change:gallery", () => drawGallery());
  model.on("change:video change:video_url", () => setSource());
  for (const name of ["det_ts", "det_lane", "det_conf", "det_box", "bins_lane", "bins_bin", "bins_conf", "lanes"])
    model.on(`change:${name}`, () => { load(); drawAll(); drawGallery(); });
  model.on("change:meta", () => layout());

  title.textContent = meta().title || "";
  mediaTime = model.get("current_time") || 0;
  drawGallery();
  layout();
  if (video.src) video.currentTime = mediaTime + off();
  return () => { ro.disconnect(); if (blobUrl) URL.revokeObjectURL(blobUrl); };
}

export default { render };
