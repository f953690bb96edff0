// inspector station: live view of the lines. Plain JavaScript, no build step, nothing loaded from elsewhere.
// One WebSocket (/ws): text messages are the state (JSON), binary ones a line's live picture
// ([2-byte header length][JSON header][JPEG]). Writes (reviews, commands) are fetch() calls with the operator's
// token, which the operator types and this tab keeps in sessionStorage; the page itself holds no secret.
"use strict";

const TOKEN_KEY = "inspector-station-token";
const COLORS = { PASS: "#2fbf4f", FAIL: "#e5383b", ERROR: "#ffa41b" };
const GALLERY_PERIOD_MS = 2000;
// ...and takes in at most one new picture a second on average. New cards cost the browser and the station CPU
// that a line PC's inspection needs; at a line's usual reject rate (a few a minute) this changes nothing, while
// at the benchmark line's 23 rejects a second the gallery shows a fresh set of 24 every 24 s, not every 8 s (3
// a second took 2-3 % of a core more; docs/benchmarks.md, operator station).
const MS_PER_NEW_PICTURE = 1000;
const lines = new Map();  // line name -> {el, cards: Map(rid -> card el), liveWant: newest live seq}
let lastState = null;
let pendingAction = null;  // what to do once signed in

const $ = (sel, root = document) => root.querySelector(sel);
const fmt = (v, digits = 0) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
const pct = (v, digits = 1) => (v === null || v === undefined ? "–" : (100 * v).toFixed(digits) + " %");
const time = (ts) => new Date(ts * 1000).toLocaleTimeString([], { hour12: false });

// -- operator token ------------------------------------------------------------------------------------------
function token() { return sessionStorage.getItem(TOKEN_KEY); }

function showOperator(name) {
  $("#who").textContent = name ? `operator: ${name}` : "view only";
  $("#signin").hidden = !!name;
  $("#signout").hidden = !name;
}

async function signIn(value) {
  const r = await fetch("/api/whoami", { headers: { Authorization: `Bearer ${value}` } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `refused (${r.status})`);
  sessionStorage.setItem(TOKEN_KEY, value);
  sessionStorage.setItem(TOKEN_KEY + "-who", body.operator);
  showOperator(body.operator);
}

function askToken(then) {
  pendingAction = then || null;
  $("#token-error").textContent = "";
  $("#token-input").value = "";
  $("#token-dialog").showModal();
}

function setupToken() {
  showOperator(token() ? sessionStorage.getItem(TOKEN_KEY + "-who") : null);
  $("#signin").addEventListener("click", () => askToken());
  $("#signout").addEventListener("click", () => { sessionStorage.clear(); showOperator(null); });
  $("#token-cancel").addEventListener("click", () => { pendingAction = null; $("#token-dialog").close(); });
  $("#token-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await signIn($("#token-input").value.trim());
      $("#token-dialog").close();
      const act = pendingAction; pendingAction = null;
      if (act) act();
    } catch (e) { $("#token-error").textContent = e.message; }
  });
}

// Send a write; without a token ask for one first. Returns {ok, status, body}.
async function write(url, payload) {
  const headers = { "Content-Type": "application/json" };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const r = await fetch(url, { method: "POST", headers, body: JSON.stringify(payload || {}) });
  const body = await r.json().catch(() => ({}));
  if (r.status === 401 || r.status === 403) { sessionStorage.clear(); showOperator(null); }
  return { ok: r.ok, status: r.status, body };
}

// -- one line's section --------------------------------------------------------------------------------------
function lineView(name) {
  let v = lines.get(name);
  if (v) return v;
  const el = $("#line-template").content.firstElementChild.cloneNode(true);
  el.dataset.line = name;
  $(".name", el).textContent = name;
  $("#empty").hidden = true;
  $("#lines").appendChild(el);
  v = { el, cards: new Map(), liveWant: null, held: false };
  // While the operator points at or types in the gallery it holds still: no card moves away under the mouse.
  const g = $(".gallery-wrap", el);
  const hold = (on) => {
    v.held = on || g.contains(document.activeElement);
    v.galleryAt = 0;  // catch up at once when the operator lets go
    if (!v.held && lastState) renderLine(lastState.lines.find((d) => d.line === name));
  };
  g.addEventListener("mouseenter", () => hold(true));
  g.addEventListener("mouseleave", () => hold(false));
  g.addEventListener("focusin", () => hold(true));
  g.addEventListener("focusout", () => setTimeout(() => hold(g.matches(":hover")), 0));
  for (const b of el.querySelectorAll("button.cmd")) b.addEventListener("click", () => command(v, name, b.dataset.cmd));
  lines.set(name, v);
  return v;
}

// DOM writes only where something changed: a line screen repaints little, and the browser stays light.
function setText(n, text) { text = String(text); if (n && n.textContent !== text) n.textContent = text; }

function setK(el, k, text, value) {
  const n = el.querySelector(`[data-k="${k}"]`);
  if (!n) return;
  setText(n, text);
  if (value !== undefined && n.dataset.v !== String(value)) n.dataset.v = value;
}

function renderLine(d) {
  const v = lineView(d.line);
  const el = v.el;
  const stale = d.heartbeat_age_s !== null && d.heartbeat_age_s > 5 && d.state !== "ended";
  const state = stale ? "stale" : d.state;
  setK(el, "state", stale ? "no heartbeat" : state, state);
  setK(el, "camera", `camera ${d.camera || "?"}`, d.camera || "");
  setK(el, "drift", d.drift === "raised" ? "DRIFT" : `drift ${d.drift}`, d.drift);
  setText($(".meta", el), [d.product && `product ${d.product}`, d.backend, d.calibration_id && `calibration ${d.calibration_id}`,
    d.model_sha && `model ${d.model_sha}`].filter(Boolean).join(" · "));
  setK(el, "pass", d.counts.PASS); setK(el, "fail", d.counts.FAIL); setK(el, "error", d.counts.ERROR);
  setK(el, "yield", pct(d.yield));
  setK(el, "fps", fmt(d.fps, 1));
  setK(el, "latency", d.latency_p50_ms === null ? "–" : `${fmt(d.latency_p50_ms)} / ${fmt(d.latency_p99_ms)}`);
  setK(el, "dropped", fmt(d.dropped));
  const f = d.expected_frr;
  setK(el, "frr", f ? pct(f.estimate) : "–");
  setK(el, "frrci", f ? `· 95 %: ${(100 * f.lower).toFixed(1)}–${pct(f.upper)}` : "");
  const s = d.drift_stats || {};
  const shift = s.score_shift === null || s.score_shift === undefined ? "–" : `${s.score_shift >= 0 ? "+" : "−"}${fmt(Math.abs(s.score_shift), 2)}`;
  setK(el, "driftinfo", d.drift === "off" ? "off (no calibration statistics)" :
    `${pct(s.reject_rate)} (limit ${pct(s.reject_limit)}) · ${shift} std (limit ±${fmt(s.shift_limit, 2)})`);
  $(".tile.wide", el).classList.toggle("drift-raised", d.drift === "raised");
  // The banner describes the picture shown: the live frame's own decision and score (else the last result's).
  const shown = d.live || d.last;
  if (shown) showDecision(v, shown);
  for (const b of el.querySelectorAll("button.cmd")) b.disabled = !d.controllable;
  $(".product-input", el).disabled = !d.controllable;
  const sig = d.scores.length ? `${d.scores.length}:${d.scores[d.scores.length - 1][0]}` : "";
  if (v.chartSig !== sig) { v.chartSig = sig; drawChart($(".chart", el), d.scores); }
  // The gallery changes at most every 2 s: at a high reject rate nobody reads faster, and the browser stays light;
  const gsig = `${v.held}|` + d.rejects.map((r) => `${r.rid}.${r.image_version}.${r.review ? 1 : 0}`).join(",");
  const now = Date.now();
  const newer = v.held ? 0 : d.rejects.filter((r) => !v.cards.has(r.rid)).length;
  const wait = Math.max(GALLERY_PERIOD_MS, newer * MS_PER_NEW_PICTURE);
  if (v.gallerySig !== gsig && (now - (v.galleryAt || 0) >= wait || !v.gallerySig)) {
    v.gallerySig = gsig; v.galleryAt = now; renderGallery(v, d);
  }
  renderEvents(el, d.events);
}

function drawChart(canvas, scores) {
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== w) canvas.width = w;
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, w, h);
  const vals = scores.map((s) => s[1]).filter((x) => x !== null);
  const top = Math.max(1.5, ...vals.map((x) => Math.min(x, 4))) * 1.05;
  const y = (x) => h - 6 - (Math.min(x, top) / top) * (h - 12);
  g.strokeStyle = "#e5383b"; g.setLineDash([8, 6]); g.lineWidth = 2;
  g.beginPath(); g.moveTo(0, y(1)); g.lineTo(w, y(1)); g.stroke(); g.setLineDash([]);
  g.fillStyle = "#8d99a6"; g.font = "13px sans-serif"; g.fillText("1.0", 4, y(1) - 4);
  const n = Math.max(scores.length, 1), dx = w / Math.max(n, 100);
  scores.forEach((s, i) => {
    const x = w - (n - i) * dx;
    g.fillStyle = COLORS[s[2]] || "#fff";
    if (s[1] === null) { g.fillRect(x, 4, Math.max(2, dx - 1), h - 8); return; }
    g.beginPath(); g.arc(x + dx / 2, y(s[1]), Math.max(2, Math.min(4, dx / 2)), 0, 2 * Math.PI); g.fill();
  });
}

function renderGallery(v, d) {
  const gallery = $(".gallery", v.el);
  const newer = d.rejects.filter((r) => !v.cards.has(r.rid)).length;
  $(".held", v.el).textContent = v.held && newer ? `held while you review · ${newer} newer` : "";
  if (v.held) {  // update what is shown (pictures, reviews), add or remove nothing
    for (const r of d.rejects) if (v.cards.has(r.rid)) updateCard(v.cards.get(r.rid), r);
    return;
  }
  const keep = new Set(d.rejects.map((r) => r.rid));
  for (const [rid, card] of v.cards) if (!keep.has(rid)) { card.remove(); v.cards.delete(rid); }
  let prev = null;
  for (const r of d.rejects) {  // newest first
    let card = v.cards.get(r.rid);
    if (!card) {
      card = $("#card-template").content.firstElementChild.cloneNode(true);
      card.dataset.rid = r.rid;
      card.dataset.decision = r.decision;
      $(".d", card).textContent = r.decision;
      $(".s", card).textContent = r.normalized_score === null ? (r.error || "") : `${fmt(r.normalized_score, 2)}×`;
      $(".when", card).textContent = `${time(r.capture_ts)} · frame ${r.frame_id ?? "–"}`;
      $(".part", card).textContent = r.part_id ? `part ${r.part_id}` : "";
      for (const b of card.querySelectorAll("button.review")) b.addEventListener("click", () => review(card, r.rid, b.dataset.verdict));
      v.cards.set(r.rid, card);
    }
    updateCard(card, r);
    const want = prev ? prev.nextSibling : gallery.firstChild;
    if (want !== card) gallery.insertBefore(card, want);
    prev = card;
  }
}

function updateCard(card, r) {
  const src = `/api/rejects/${r.rid}.jpg?v=${r.image_version}`;
  if (card.dataset.src !== src) { card.dataset.src = src; $(".thumb", card).src = src; }
  card.dataset.hasFrame = r.has_frame;
  card.dataset.reviewable = r.reviewable;
  if (!r.reviewable && r.has_frame && !r.review) {
    for (const b of card.querySelectorAll("button.review")) b.disabled = true;
    setText($(".review-state", card), "picture only: not reviewable");
  }
  if (r.review && !card.classList.contains("reviewed")) {
    card.classList.add("reviewed");
    const rs = $(".review-state", card);
    rs.className = "review-state done";
    rs.textContent = `${r.review.verdict === "false_reject" ? "false reject" : "confirmed defect"} · ${r.review.who}`;
  }
}

function renderEvents(el, events) {
  const list = $(".events", el);
  const html = events.map((e) => `${e.ts}|${e.kind}|${e.message}`).join("\n");
  if (list.dataset.sig === html) return;
  list.dataset.sig = html;
  list.replaceChildren(...events.map((e) => {
    const li = document.createElement("li");
    li.dataset.kind = e.kind;
    const t = document.createElement("span"); t.className = "t"; t.textContent = time(e.ts);
    const k = document.createElement("span"); k.className = "k"; k.textContent = e.kind.replace(/_/g, " ");
    li.append(t, k, document.createTextNode(e.message));
    return li;
  }));
}

// -- writes --------------------------------------------------------------------------------------------------
async function review(card, rid, verdict) {
  const rs = $(".review-state", card);
  if (!token()) { rs.className = "review-state bad"; rs.textContent = "sign in to review"; askToken(() => review(card, rid, verdict)); return; }
  rs.className = "review-state"; rs.textContent = "saving…";
  const r = await write(`/api/rejects/${rid}/review`, { verdict, note: $(".note", card).value });
  if (r.ok) {
    card.classList.add("reviewed");
    rs.className = "review-state done";
    rs.textContent = `${verdict === "false_reject" ? "false reject" : "confirmed defect"} · ${r.body.who} · saved #${r.body.id}`;
  } else {
    rs.className = "review-state bad";
    rs.textContent = `refused (${r.status}): ${r.body.error || ""}`;
  }
}

async function command(v, line, cmd) {
  const msg = $(".cmd-msg", v.el);
  if (!token()) { askToken(() => command(v, line, cmd)); return; }
  const payload = cmd === "product" ? { product: $(".product-input", v.el).value.trim() } : {};
  msg.className = "cmd-msg"; msg.textContent = `${cmd}…`;
  const r = await write(`/api/lines/${encodeURIComponent(line)}/${cmd}`, payload);
  msg.className = r.ok ? "cmd-msg" : "cmd-msg bad";
  msg.textContent = r.ok ? `${cmd}: done` : `${cmd} refused (${r.status}): ${r.body.error || ""}`;
}

function showDecision(v, d) {
  const wrap = $(".live-wrap", v.el);
  if (wrap.dataset.decision !== d.decision) wrap.dataset.decision = d.decision;
  setText($(".decision", v.el), d.decision);
  setText($(".score", v.el), d.normalized_score === null || d.normalized_score === undefined ? "" :
    `${fmt(d.normalized_score, 2)}×`);
  setText($(".live-id", v.el), `frame ${d.frame_id ?? "–"}`);
}

// -- live connection -----------------------------------------------------------------------------------------
// The live picture is drawn into a canvas from a decoded bitmap: an <img> whose src changed 5 times a second cost
// the renderer about 40% more (docs/benchmarks.md, operator station). Pictures decode off the page's thread, so a
// slow one can finish after a newer one: only the newest is drawn. The station forwards the daemon's JPEG as it
// is; the defect regions (head.boxes, [x, y, w, h] in its pixels) are outlined here, on a canvas at least
// LIVE_MIN_WIDTH wide so the outlines stay crisp when a small preview is shown large.
const LIVE_MIN_WIDTH = 256;
const OUTLINE = "#ffe600";

function drawLive(c, bmp, boxes) {
  const f = Math.max(1, LIVE_MIN_WIDTH / bmp.width);
  const w = Math.round(bmp.width * f), h = Math.round(bmp.height * f);
  if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
  const g = c.getContext("2d");
  g.drawImage(bmp, 0, 0, w, h);
  if (!boxes || !boxes.length) return;
  const t = Math.max(2, Math.floor(w / 240));
  g.strokeStyle = OUTLINE; g.lineWidth = t;
  for (const [x, y, bw, bh] of boxes) g.strokeRect(x * f - t / 2, y * f - t / 2, bw * f + t, bh * f + t);
}

async function onLive(buf) {
  const n = new DataView(buf).getUint16(0);
  const head = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 2, n)));
  const v = lineView(head.line);
  v.liveWant = head.seq;
  let bmp;
  try {
    bmp = await createImageBitmap(new Blob([new Uint8Array(buf, 2 + n)], { type: "image/jpeg" }));
  } catch (e) { return; }  // not decodable: keep the last picture (the station forwards only JPEGs)
  if (v.liveWant !== head.seq) { bmp.close(); return; }
  const c = $(".live", v.el);
  drawLive(c, bmp, head.boxes);
  bmp.close();
  c.dataset.seq = head.seq;
  c.dataset.frame = head.frame_id;
  showDecision(v, head);
  paint.liveAt = performance.now();
  flushPaint();  // whatever waits goes into this picture's frame
}

function connect(delay = 500) {
  const conn = $("#conn");
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { conn.dataset.state = "live"; conn.textContent = "live"; delay = 500; };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      lastState = JSON.parse(ev.data);
      paint.state = true;
      schedulePaint();
    } else onLive(ev.data);
  };
  ws.onclose = () => {
    conn.dataset.state = "lost"; conn.textContent = "station connection lost: reconnecting";
    setTimeout(() => connect(Math.min(delay * 2, 5000)), delay);
  };
}

// -- painting ------------------------------------------------------------------------------------------------
// Every change the page shows costs the browser a frame (style, layout, paint, composite), and on a line PC
// without a GPU a frame costs about the same however little changed. So while live pictures arrive, the state
// (2 a second) and the clock (1 a second) wait for the next picture and go into its frame: 5 frames a second,
// not 8. Without live pictures (preview off, line stopped) they are painted after PAINT_WAIT_MS at the latest.
const PAINT_WAIT_MS = 300;
const paint = { state: false, clock: false, timer: null, liveAt: 0 };

function schedulePaint() {
  if (paint.timer !== null) return;
  const liveFlowing = performance.now() - paint.liveAt < 1000;
  paint.timer = setTimeout(flushPaint, liveFlowing ? PAINT_WAIT_MS : 0);
}

function flushPaint() {
  clearTimeout(paint.timer); paint.timer = null;
  if (paint.clock) {
    paint.clock = false;
    setText($("#clock"), new Date().toLocaleTimeString([], { hour12: false }));
    document.body.classList.toggle("tock");  // the raised-drift badge's blink
  }
  if (paint.state && lastState) {
    paint.state = false;
    setText($("#title"), lastState.title);
    if (document.title !== `${lastState.title} station`) document.title = `${lastState.title} station`;
    lastState.lines.forEach(renderLine);
  }
}

setupToken();
setInterval(() => { paint.clock = true; schedulePaint(); }, 1000);  // one tick a second
connect();
