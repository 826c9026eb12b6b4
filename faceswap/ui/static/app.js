// faceswap ui: one page, no framework. The server pushes its state (jobs, face sets, runs) as
// server-sent events; pages fetch details (faces, curves, frames) when they change.
"use strict";
const $ = (s) => document.querySelector(s);
const $$ = (s) => Array.from(document.querySelectorAll(s));
const S = { state: null, page: "project", picked: new Set(), browsePath: "" };
window.faceswapUI = S; // tests and the curious can read the client state

function toast(msg) {
  const t = $("#toast"); t.textContent = msg; t.hidden = false;
  clearTimeout(toast.timer); toast.timer = setTimeout(() => (t.hidden = true), 6000);
}
async function api(method, url, body) {
  const r = await fetch(url, { method, headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined, credentials: "same-origin" });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) { toast(data.error || `${r.status}`); throw new Error(data.error || r.status); }
  return data;
}
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
const fmtT = (s) => (s == null || !isFinite(s) ? "–" : s >= 3600 ? `${(s / 3600).toFixed(1)} h` : s >= 60 ? `${Math.round(s / 60)} min` : `${Math.round(s)} s`);

// ---- tabs --------------------------------------------------------------------------------
function show(page) {
  S.page = page;
  $$("#tabs button").forEach((b) => b.classList.toggle("on", b.dataset.page === page));
  $$(".page").forEach((p) => p.classList.toggle("on", p.id === `page-${page}`));
  if (page === "faces") Faces.load();
  if (page === "train") Train.refresh();
  if (page === "convert") Convert.open();
}
$$("#tabs button").forEach((b) => (b.onclick = () => show(b.dataset.page)));

// ---- live state ----------------------------------------------------------------------------
function connect() {
  const es = new EventSource("/api/events");
  es.addEventListener("state", (e) => { $("#conn").textContent = "live"; onState(JSON.parse(e.data)); });
  es.onerror = () => { $("#conn").textContent = "reconnecting…"; };
}
function onState(st) {
  const prev = S.state; S.state = st;
  renderProject(st); renderJobs(st); renderExtract(st); Train.onState(st, prev); Convert.onState(st);
  Report.onState(st);
  const side = $("#fs-side").value, fs = st.facesets[side], pfs = prev && prev.facesets[side];
  if (S.page === "faces" && fs && (!pfs || fs.version !== pfs.version)) Faces.load();
}
const running = (kind, key) => (S.state ? S.state.jobs.find((j) => j.status === "running" && j.kind === kind && (!key || j.key === key)) : null);
const latest = (kind, key) => (S.state ? S.state.jobs.find((j) => j.kind === kind && (!key || j.key === key)) : null);

// ---- project ---------------------------------------------------------------------------------
function renderProject(st) {
  $("#project-path").textContent = st.project;
  $("#sides").innerHTML = ["a", "b", "target"].map((s) => `<div class="side" id="side-${s}"><b>${s === "target" ? "target clip" : s.toUpperCase()}</b>
    <ul>${(st.inputs[s] || []).map((p) => `<li>${esc(p)}</li>`).join("") || "<li>nothing chosen yet</li>"}</ul></div>`).join("");
  $("#commands").textContent = Object.values(st.commands).join("\n");
}
async function browse(path) {
  const d = await api("GET", `/api/browse?path=${encodeURIComponent(path || "")}`);
  S.browsePath = d.path; S.picked.clear();
  $("#browse-path").textContent = d.path || "roots";
  const up = d.parent !== null && d.path ? `<li class="folder" data-up="1" data-path="${esc(d.parent)}">..</li>` : "";
  $("#browser").innerHTML = up + d.entries.map((e) => `<li class="${e.kind}" data-path="${esc(e.path)}" data-kind="${e.kind}">
    <input type="checkbox" data-pick="${esc(e.path)}"> ${esc(e.name)}</li>`).join("");
}
$("#browser").addEventListener("click", (e) => {
  const cb = e.target.closest("input[data-pick]");
  if (cb) { cb.checked ? S.picked.add(cb.dataset.pick) : S.picked.delete(cb.dataset.pick); return; }
  const li = e.target.closest("li");
  if (li && (li.dataset.kind === "folder" || li.dataset.up)) browse(li.dataset.path);
});
$$("[data-use]").forEach((b) => (b.onclick = async () => {
  if (!S.picked.size) return toast("tick clips, photos or folders first");
  await api("POST", "/api/inputs", { side: b.dataset.use, paths: [...S.picked] });
  S.picked.clear(); $$("#browser input[data-pick]").forEach((cb) => (cb.checked = false));
}));

// ---- jobs ------------------------------------------------------------------------------------
function progressText(p) {
  if (!p) return "";
  const rate = p.rate ? `${p.rate.toFixed(1)} ${p.unit}/s` : "";
  const tot = p.total ? `${p.n}/${p.total}` : `${p.n}`;
  const extra = Object.entries(p.postfix || {}).map(([k, v]) => `${k} ${v}`).join(", ");
  return `${tot} ${p.unit}s ${rate}${p.eta != null ? `, ETA ${fmtT(p.eta)}` : ""}${extra ? ` · ${extra}` : ""}`;
}
function renderJobs(st) {
  $("#jobs tbody").innerHTML = st.jobs.map((j) => `<tr data-job="${j.id}"><td>${esc(j.kind)}<br><small>${esc(j.id)}</small></td>
    <td class="${j.status === "failed" ? "err" : j.status === "finished" ? "ok" : ""}">${j.status}${j.error ? `<br>${esc(j.error)}` : ""}</td>
    <td>${esc(progressText(j.progress))}</td><td><code>${esc(j.command)}</code></td>
    <td>${j.status === "running" ? `<button data-stop="${j.id}">Stop</button>` : ""}</td></tr>`).join("");
}
$("#jobs").addEventListener("click", (e) => { const b = e.target.closest("[data-stop]"); if (b) api("POST", `/api/jobs/${b.dataset.stop}/stop`); });
const startJob = (body) => api("POST", "/api/jobs", body);

// ---- extract ----------------------------------------------------------------------------------
function summaryText(kind, s) {
  if (!s) return "";
  if (kind === "extract") return `done: ${s.faces_in_set} faces in the set (${s.faces_kept} new), ${s.frames_read} frames read, ${s.frames_without_face} without a face, ${s.seconds.toFixed(1)} s (${(s.frames_read / Math.max(s.seconds, 1e-9)).toFixed(1)} frames/s); ${s.detector} + ${s.aligner} on ${s.device}`;
  return Object.entries(s).filter(([k, v]) => typeof v === "number" || typeof v === "string").slice(0, 8).map(([k, v]) => `${k}: ${typeof v === "number" ? Math.round(v * 1000) / 1000 : v}`).join(", ");
}
function renderExtract(st) {
  $("#extract-cards").innerHTML = ["a", "b", "target"].map((s) => {
    const key = st.facesets[s].path, j = latest("extract", key), run = j && j.status === "running";
    const p = j && j.progress, pct = p && p.total ? (100 * p.n) / p.total : 0;
    const fs = st.facesets[s];
    return `<div class="card" id="ex-${s}"><b>${s === "target" ? "target" : s.toUpperCase()}</b> <small>${esc(key)}</small>
      <div>${fs.exists ? `${fs.faces} faces, ${fs.rejected} rejected` : "not extracted"}</div>
      <div class="bar"><div style="width:${run ? pct : j && j.status === "finished" ? 100 : 0}%"></div></div>
      <div class="prog">${run ? esc(progressText(p)) : j ? `<span class="${j.status === "failed" ? "err" : ""}">${j.status}${j.error ? ": " + esc(j.error) : ""}</span>` : ""}</div>
      <div class="sum">${j && j.status === "finished" ? esc(summaryText("extract", j.summary)) : ""}</div>
      <button data-extract="${s}" ${run || !(st.inputs[s] || []).length ? "disabled" : ""}>Extract ${s === "target" ? "target" : s.toUpperCase()}</button>
      ${run ? `<button data-stop="${j.id}">Stop</button>` : ""}</div>`;
  }).join("");
}
$("#extract-cards").addEventListener("click", (e) => {
  const b = e.target.closest("[data-extract]");
  if (b) startJob({ kind: "extract", side: b.dataset.extract, options: { size: $("#ex-size").value, every_nth: $("#ex-nth").value } });
  const s = e.target.closest("[data-stop]"); if (s) api("POST", `/api/jobs/${s.dataset.stop}/stop`);
});

// ---- faces: a virtual-scrolling grid ----------------------------------------------------------
const Faces = {
  CELL_W: 104, CELL_H: 122, list: [], sel: new Set(), flagged: new Map(), pool: [], anchor: -1, loadedAt: 0,
  async load() {
    const side = $("#fs-side").value;
    const url = `/api/facesets/${side}?sort=${$("#fs-sort").value || "frame"}&reverse=${$("#fs-reverse").checked}&view=${$("#fs-view").value}&labelled=${$("#fs-labelled").checked}`;
    let d;
    try { d = await api("GET", url); } catch (e) { this.list = []; this.layout(); $("#fs-count").textContent = "no face set yet"; return; }
    if (!$("#fs-sort").options.length) { $("#fs-sort").innerHTML = d.sort_keys.map((k) => `<option>${k}</option>`).join(""); $("#fs-sort").value = "frame"; }
    this.list = d.faces; this.side = side; this.version = d.version;
    const names = new Set(this.list.map((f) => f.name));
    this.sel.forEach((n) => names.has(n) || this.sel.delete(n));
    $("#fs-count").textContent = `${d.count} kept, ${d.rejected} rejected${d.labelled ? `, ${d.labelled} labelled` : ""}`;
    if (d.labels_error) toast(d.labels_error);
    this.loadedAt = performance.now(); this.layout();
  },
  layout() {
    const g = $("#grid");
    this.cols = Math.max(1, Math.floor(g.clientWidth / this.CELL_W));
    $("#grid-space").style.height = `${Math.ceil(this.list.length / this.cols) * this.CELL_H}px`;
    this.paint(true);
  },
  paint(force) {
    const g = $("#grid"), rows = Math.ceil(g.clientHeight / this.CELL_H) + 2;
    const first = Math.max(0, Math.floor(g.scrollTop / this.CELL_H) - 1);
    const start = first * this.cols, end = Math.min(this.list.length, (first + rows + 1) * this.cols);
    const need = end - start;
    while (this.pool.length < need) {
      const t = document.createElement("div"); t.className = "tile";
      t.innerHTML = "<img loading=\"eager\" decoding=\"async\"><span></span>"; g.appendChild(t); this.pool.push(t);
    }
    // face i always lives in tile i % n: a scroll of a few rows re-fills only the tiles of the
    // rows that came into view, and a tile whose face did not change is left alone (unless
    // forced: selection, flags and labels changed)
    const n = this.pool.length;
    for (let k = 0; k < n; k++) {
      const t = this.pool[k], i = start + ((k - (start % n) + n) % n);
      if (i >= end) { t.style.display = "none"; t.dataset.i = ""; continue; }
      if (!force && t.dataset.i === String(i)) continue;
      const f = this.list[i], src = `/api/facesets/${this.side}/thumb/${encodeURIComponent(f.name)}`;
      t.style.display = ""; t.dataset.i = i; t.dataset.name = f.name;
      t.style.transform = `translate(${(i % this.cols) * this.CELL_W}px, ${Math.floor(i / this.cols) * this.CELL_H}px)`;
      const img = t.firstChild; if (img.dataset.src !== src) { img.dataset.src = src; img.src = src; }
      const flag = this.flagged.get(f.name);
      t.classList.toggle("sel", this.sel.has(f.name)); t.classList.toggle("flag", !!flag); t.classList.toggle("lab", !!f.labelled);
      const label = f.reason || flag || (f.value != null ? `${$("#fs-sort").value} ${f.value}` : f.name);
      t.lastChild.textContent = label; t.title = `${f.name}\n${label}`;
    }
  },
  click(e) {
    const t = e.target.closest(".tile"); if (!t || t.dataset.i === "") return;
    const i = +t.dataset.i;
    if (e.shiftKey && this.anchor >= 0) {
      const [a, b] = [Math.min(this.anchor, i), Math.max(this.anchor, i)];
      for (let k = a; k <= b; k++) this.sel.add(this.list[k].name);
    } else { const n = this.list[i].name; this.sel.has(n) ? this.sel.delete(n) : this.sel.add(n); this.anchor = i; }
    $("#fs-sel").textContent = `${this.sel.size} selected`; this.paint(true);
  },
  async act(what) {
    if (!this.sel.size) return toast("select faces first (click; shift-click for a range)");
    const r = await api("POST", `/api/facesets/${this.side}/${what}`, { names: [...this.sel] });
    this.sel.clear(); $("#fs-sel").textContent = `${what === "reject" ? `rejected ${r.moved}` : `restored ${r.restored}`}`;
    await this.load();
  },
  async propose() {
    const d = await api("GET", `/api/facesets/${$("#fs-side").value}/proposals?strictness=${$("#fs-strict").value}`);
    this.flagged = new Map(d.flagged.map((f) => [f.name, f.reason])); this.proposals = d.flagged;
    $("#fs-proposals").textContent = d.flagged.length ? `${d.flagged.length} face(s) proposed for rejection (red): ${d.flagged.slice(0, 8).map((f) => `${f.name}: ${f.reason}`).join("; ")}${d.flagged.length > 8 ? " …" : ""}` : "the auto-filter proposes nothing";
    $("#fs-apply").disabled = !d.flagged.length; this.paint(true);
  },
  async apply() {
    const r = await api("POST", `/api/facesets/${this.side}/reject`, { flagged: this.proposals });
    this.flagged.clear(); this.proposals = []; $("#fs-apply").disabled = true;
    $("#fs-proposals").textContent = `moved ${r.moved} face(s) to rejected/`; await this.load();
  },
};
$("#grid").addEventListener("scroll", () => { if (!Faces.raf) Faces.raf = requestAnimationFrame(() => { Faces.raf = 0; Faces.paint(); }); }, { passive: true });
$("#grid").addEventListener("click", (e) => Faces.click(e));
$("#grid").addEventListener("dblclick", (e) => { const t = e.target.closest(".tile"); if (t && t.dataset.i !== "") Labels.show(Faces.list[+t.dataset.i].name); });
window.addEventListener("resize", () => Faces.layout());
["#fs-side", "#fs-sort", "#fs-reverse", "#fs-view", "#fs-labelled"].forEach((s) => ($(s).onchange = () => { Faces.sel.clear(); Faces.flagged.clear(); $("#fs-apply").disabled = true; $("#grid").scrollTop = 0; Faces.load(); }));
$("#fs-reject").onclick = () => Faces.act("reject");
$("#fs-restore").onclick = () => Faces.act("restore");
$("#fs-clear").onclick = () => { Faces.sel.clear(); $("#fs-sel").textContent = ""; Faces.paint(true); };
$("#fs-propose").onclick = () => Faces.propose();
$("#fs-apply").onclick = () => Faces.apply();
$("#fs-label").onclick = () => {
  const f = Faces.list.find((f) => Faces.sel.has(f.name)) || Faces.list[0];
  f ? Labels.show(f.name) : toast("no faces to label in this view");
};

// ---- label editor: XSeg-style polygons over one aligned face, saved to FACESET/labels.json ------
// Points are crop pixels with pixel centres at integers (labels.json's convention): screen
// position / scale - 0.5. The shade is what the mask leaves out: the label's own (include
// polygons less exclude ones) once drawn, else the fallback mask training would use.
const SHADE = "rgba(0, 16, 40, 0.63)"; // faceswap/ui/labels.py draws the fallback in this colour
const loadImage = (src) => new Promise((ok, bad) => { const im = new Image(); im.onload = () => ok(im); im.onerror = () => bad(new Error(`cannot load ${src}`)); im.src = src; });
const toPolys = (lab) => [...lab.include.map((pts) => ({ kind: "include", pts })), ...lab.exclude.map((pts) => ({ kind: "exclude", pts }))];
const inside = ([x, y], pts) => pts.reduce((c, [x1, y1], i) => { const [x0, y0] = pts[(i || pts.length) - 1];
  return (y1 > y) !== (y0 > y) && x < ((x0 - x1) * (y - y1)) / (y0 - y1) + x1 ? !c : c; }, false);
const Labels = {
  polys: [], open: null, past: [], future: [], dirty: false, name: null, mouse: null, drag: null,
  mode: () => $('input[name="lb-mode"]:checked').value,
  url() { return `/api/facesets/${this.side}/labels/${encodeURIComponent(this.name)}`; },
  async show(name) {
    if (!(await this.flush())) return;
    const side = Faces.side, q = encodeURIComponent(name);
    const d = await api("GET", `/api/facesets/${side}/labels/${q}`);
    const [img, shade] = await Promise.all([`/api/facesets/${side}/face/${q}`, `/api/facesets/${side}/labels/${q}/fallback.png?v=${Date.now()}`].map(loadImage));
    Object.assign(this, { side, name, img, shade, size: d.size, traced: d.traced, fallback: d.fallback, labelled: !!d.label,
      polys: d.label ? toPolys(d.label) : [], open: null, past: [], future: [], dirty: false });
    $("#grid").hidden = true; $("#editor").hidden = false; $("#lb-name").textContent = name;
    const i = this.pos(); $("#lb-pos").textContent = `${i + 1} of ${Faces.list.length} in this view`;
    this.status(this.labelled ? "labelled" : `no label yet: training uses the ${d.fallback}`);
    this.draw();
  },
  pos() { return Faces.list.findIndex((f) => f.name === this.name); },
  async step(k) {
    const f = Faces.list[this.pos() + k];
    f ? await this.show(f.name) : toast(k < 0 ? "this is the first face of the view" : "this is the last face of the view");
  },
  async leave() {
    if (!(await this.flush())) return;
    $("#editor").hidden = true; $("#grid").hidden = false; Faces.layout();
  },
  async flush() { return !this.dirty || this.save().then(() => true, () => false); },
  async save() {
    if (this.open) this.finish();
    const pts = (kind) => this.polys.filter((p) => p.kind === kind).map((p) => p.pts);
    const body = { include: pts("include"), exclude: pts("exclude") };
    const empty = !body.include.length && !body.exclude.length;
    const r = empty ? (this.labelled ? await api("DELETE", this.url()) : null) : await api("PUT", this.url(), body);
    this.dirty = false; this.labelled = !empty;
    const f = Faces.list.find((f) => f.name === this.name); if (f) f.labelled = this.labelled;
    if (r && r.masks_removed) this.shade = await loadImage(`${this.url()}/fallback.png?v=${Date.now()}`);
    this.status(!r ? "nothing to save" : `${empty ? "label removed" : "saved"}: ${r.labelled} face(s) labelled in this set${r.masks_removed ? "; its stored mask was removed (mask apply redoes it)" : ""}`);
    Faces.paint(true);
  },
  status(msg) { $("#lb-status").textContent = msg; },
  snap() { return JSON.stringify([this.polys, this.open]); },
  change(before = this.snap()) { this.past.push(before); this.future = []; this.dirty = true; this.status("unsaved changes"); },
  swap(from, to) {
    if (!from.length) return;
    to.push(this.snap()); [this.polys, this.open] = JSON.parse(from.pop());
    this.dirty = true; this.status("unsaved changes"); this.draw();
  },
  setMode(m) { $(`input[name="lb-mode"][value="${m}"]`).checked = true; if (this.open) this.open.kind = m; this.draw(); },
  finish() { // close the open polygon (fewer than 3 points: drop it)
    this.change(); if (this.open.pts.length >= 3) this.polys.push(this.open); this.open = null; this.draw();
  },
  drop() { if (this.open) { this.change(); this.open = null; this.draw(); } },
  at(e) { // the pointer in crop pixels
    const r = $("#lb-canvas").getBoundingClientRect(), k = this.size / r.width;
    const c = (v) => Math.round(Math.min(this.size, Math.max(0, v * k - 0.5)) * 100) / 100;
    return [c(e.clientX - r.left), c(e.clientY - r.top)];
  },
  hit(p) { // [polygon, point index] of the point within 6 screen pixels of p, the open polygon first
    const r = (6 * this.size) / $("#lb-canvas").getBoundingClientRect().width;
    for (const poly of [this.open, ...this.polys].filter(Boolean)) {
      const j = poly.pts.findIndex((q) => Math.hypot(q[0] - p[0], q[1] - p[1]) <= r);
      if (j >= 0) return [poly, j];
    }
    return null;
  },
  down(e) {
    if (e.button !== 0 || !this.name) return;
    const p = this.at(e), h = this.hit(p);
    if (h && h[0] === this.open && h[1] === 0 && this.open.pts.length >= 3) return this.finish();
    if (h) { this.drag = { h, before: this.snap(), moved: false }; $("#lb-canvas").setPointerCapture(e.pointerId); return; }
    this.change();
    if (!this.open) this.open = { kind: this.mode(), pts: [] };
    this.open.pts.push(p); this.draw();
  },
  move(e) {
    if (!this.name) return;
    this.mouse = this.at(e);
    const d = this.drag;
    if (d) { if (!d.moved) { this.change(d.before); d.moved = true; } d.h[0].pts[d.h[1]] = this.mouse; }
    this.draw();
  },
  removePoint(e) {
    e.preventDefault();
    const h = this.name && this.hit(this.at(e)); if (!h) return;
    this.change(); h[0].pts.splice(h[1], 1);
    if (h[0] === this.open) { if (!this.open.pts.length) this.open = null; } else if (h[0].pts.length < 3) this.polys.splice(this.polys.indexOf(h[0]), 1);
    this.draw();
  },
  removePolygon() {
    const i = this.mouse ? this.polys.findLastIndex((p) => inside(this.mouse, p.pts)) : -1;
    if (i >= 0) { this.change(); this.polys.splice(i, 1); this.draw(); }
  },
  path(pts, k, closed) {
    const p = new Path2D(); pts.forEach(([x, y], j) => p[j ? "lineTo" : "moveTo"]((x + 0.5) * k, (y + 0.5) * k));
    if (closed) p.closePath();
    return p;
  },
  draw() {
    const c = $("#lb-canvas"), x = c.getContext("2d"), W = c.width, k = W / this.size;
    x.clearRect(0, 0, W, W); x.drawImage(this.img, 0, 0, W, W);
    $("#lb-fallback").textContent = this.polys.length ? "label" : this.fallback;
    if ($("#lb-show").checked && !this.polys.length) x.drawImage(this.shade, 0, 0, W, W);
    else if ($("#lb-show").checked) {
      const o = this.off || (this.off = document.createElement("canvas")), y = o.getContext("2d");
      o.width = o.height = W; y.fillStyle = SHADE; y.fillRect(0, 0, W, W);
      for (const kind of ["include", "exclude"]) for (const p of this.polys.filter((p) => p.kind === kind)) {
        y.globalCompositeOperation = "destination-out"; y.fillStyle = "#000"; y.fill(this.path(p.pts, k, true));
        y.globalCompositeOperation = "source-over"; if (kind === "exclude") { y.fillStyle = SHADE; y.fill(this.path(p.pts, k, true)); }
      }
      x.drawImage(o, 0, 0);
    }
    for (const p of [...this.polys, this.open].filter(Boolean)) {
      const open = p === this.open, path = this.path(p.pts, k, !open);
      if (open && this.mouse) path.lineTo((this.mouse[0] + 0.5) * k, (this.mouse[1] + 0.5) * k);
      x.strokeStyle = x.fillStyle = p.kind === "include" ? "#5fd38d" : "#ff6b6b";
      x.lineWidth = 2; x.setLineDash(p.kind === "include" ? [] : [6, 4]); x.stroke(path); x.setLineDash([]);
      p.pts.forEach(([px, py]) => x.fillRect((px + 0.5) * k - 3, (py + 0.5) * k - 3, 6, 6));
      if (open && p.pts.length >= 3) { x.beginPath(); x.arc((p.pts[0][0] + 0.5) * k, (p.pts[0][1] + 0.5) * k, 7, 0, 7); x.stroke(); }
    }
  },
  key(e) {
    if ($("#editor").hidden || S.page !== "faces" || e.target.matches("input:not([type=radio]):not([type=checkbox]), select, textarea")) return;
    const k = e.key.toLowerCase(), ctrl = e.ctrlKey || e.metaKey;
    const acts = ctrl ? { z: () => (e.shiftKey ? this.redo() : this.undo()), y: () => this.redo(), s: () => this.save() }
      : { q: () => this.setMode("include"), w: () => this.setMode("exclude"), a: () => this.step(-1), d: () => this.step(1), s: () => this.save(),
        enter: () => this.open && this.finish(), escape: () => this.drop(),
        delete: () => this.removePolygon(), backspace: () => this.removePolygon() };
    if (acts[k]) { e.preventDefault(); acts[k](); }
  },
  undo() { this.swap(this.past, this.future); },
  redo() { this.swap(this.future, this.past); },
};
S.labels = Labels;
const lbc = $("#lb-canvas");
lbc.addEventListener("pointerdown", (e) => Labels.down(e));
lbc.addEventListener("pointermove", (e) => Labels.move(e));
lbc.addEventListener("pointerup", () => (Labels.drag = null));
lbc.addEventListener("pointerleave", () => { Labels.mouse = null; if (Labels.name) Labels.draw(); });
lbc.addEventListener("contextmenu", (e) => Labels.removePoint(e));
document.addEventListener("keydown", (e) => Labels.key(e));
$$('input[name="lb-mode"]').forEach((r) => (r.onchange = () => Labels.setMode(r.value)));
$("#lb-show").onchange = () => Labels.draw();
$("#lb-undo").onclick = () => Labels.undo();
$("#lb-redo").onclick = () => Labels.redo();
$("#lb-clear").onclick = () => { Labels.change(); Labels.polys = []; Labels.open = null; Labels.draw(); };
$("#lb-trace").onclick = () => { Labels.change(); Labels.polys = toPolys(Labels.traced); Labels.open = null; Labels.draw(); };
$("#lb-save").onclick = () => Labels.save();
$("#lb-prev").onclick = () => Labels.step(-1);
$("#lb-next").onclick = () => Labels.step(1);
$("#lb-close").onclick = () => Labels.leave();
window.addEventListener("beforeunload", (e) => { if (Labels.dirty) e.preventDefault(); });

// ---- train -------------------------------------------------------------------------------------
const Train = {
  which: () => $("#tr-which").value,
  onState(st, prev) {
    const tr = running("train"), fit = running("fit");
    $("#tr-start").disabled = $("#tr-resume").disabled = !!tr; $("#tr-stop").disabled = !tr;
    $("#fit-start").disabled = !!fit; $("#fit-stop").disabled = !fit;
    const run = st.runs[this.which()], j = latest(this.which());
    $("#tr-status").innerHTML = j ? `${j.kind} ${j.status}${j.progress ? ` · ${esc(progressText(j.progress))}` : ""}${j.error ? ` <span class="err">${esc(j.error)}</span>` : ""}` : "";
    if (run.preview && run.preview !== this.previewAt) {
      this.previewAt = run.preview; $("#tr-preview").src = `/files/${run.path}/preview.png?v=${run.preview}`;
    }
    const p = j && j.progress, key = `${run.preview}|${p ? p.n : ""}|${j ? j.status : ""}`;
    if (S.page === "train" && key !== this.key && performance.now() - (this.at || 0) > 1000) { this.key = key; this.refresh(); }
  },
  async refresh() {
    this.at = performance.now();
    const d = await api("GET", `/api/runs/${this.which()}`).catch(() => null); if (!d) return;
    this.data = d; this.draw(d);
    $("#tr-events").innerHTML = d.events.map((e) => `<div>step ${e.step}: ${esc(e.text)}</div>`).join("");
  },
  draw(d) {
    const c = $("#tr-chart"), x = c.getContext("2d"), W = c.width, H = c.height, P = 34;
    x.clearRect(0, 0, W, H);
    const tr = d.train, va = d.validation.map((r) => ({ step: r.step, v: (r.val_a + r.val_b) / 2 }));
    const steps = [...tr.map((p) => p.step), ...va.map((p) => p.step)];
    if (!steps.length) { x.fillStyle = "#9aa0ab"; x.fillText("no curves yet", 10, 20); return; }
    const s0 = Math.min(...steps), s1 = Math.max(s0 + 1, ...steps);
    const ys = [...tr.map((p) => p.loss), ...va.map((p) => p.v)], y0 = Math.min(...ys), y1 = Math.max(y0 + 1e-9, ...ys);
    const X = (s) => P + ((s - s0) / (s1 - s0)) * (W - 2 * P), Y = (v) => H - P - ((v - y0) / (y1 - y0)) * (H - 2 * P);
    x.strokeStyle = "#3a4254"; x.strokeRect(P, P / 2, W - 2 * P, H - 1.5 * P);
    x.fillStyle = "#9aa0ab"; x.font = "11px sans-serif";
    x.fillText(y1.toPrecision(3), 2, P / 2 + 8); x.fillText(y0.toPrecision(3), 2, H - P); x.fillText(`step ${s0}`, P, H - 8); x.fillText(`${s1}`, W - P - 20, H - 8);
    const line = (pts, fx, fy, col) => { x.strokeStyle = col; x.beginPath(); pts.forEach((p, i) => (i ? x.lineTo(fx(p), fy(p)) : x.moveTo(fx(p), fy(p)))); x.stroke(); };
    line(tr, (p) => X(p.step), (p) => Y(p.loss), "#4c9aff");
    line(va, (p) => X(p.step), (p) => Y(p.v), "#ffb347");
    va.forEach((p) => { x.fillStyle = "#ffb347"; x.fillRect(X(p.step) - 2, Y(p.v) - 2, 4, 4); });
    const lrs = tr.filter((p) => p.lr != null);
    if (lrs.length) { const l1 = Math.max(...lrs.map((p) => p.lr)) || 1; line(lrs, (p) => X(p.step), (p) => H - P - (p.lr / l1) * (H - 2 * P), "#9aa0ab"); }
    d.events.forEach((e) => { x.strokeStyle = "#ff6b6b"; x.beginPath(); x.moveTo(X(e.step), P / 2); x.lineTo(X(e.step), H - P); x.stroke(); x.fillStyle = "#ff6b6b"; x.fillText(e.kind, X(e.step) + 3, P); });
  },
  opts() { return { model: $("#tr-model").value, steps: $("#tr-steps").value, batch_size: $("#tr-batch").value, config: $("#tr-config").value }; },
};
$("#tr-start").onclick = () => startJob({ kind: "train", options: Train.opts() });
$("#tr-resume").onclick = () => startJob({ kind: "train", options: { ...Train.opts(), resume: true } });
$("#tr-stop").onclick = () => { const j = running("train"); if (j) api("POST", `/api/jobs/${j.id}/stop`); };
$("#fit-start").onclick = () => startJob({ kind: "fit", options: { steps: $("#fit-steps").value } });
$("#fit-stop").onclick = () => { const j = running("fit"); if (j) api("POST", `/api/jobs/${j.id}/stop`); };
$("#tr-which").onchange = () => { Train.previewAt = null; Train.onState(S.state); Train.refresh(); };

// ---- convert ------------------------------------------------------------------------------------
const Convert = {
  async open() {
    if (!this.clip) this.clip = await api("GET", "/api/convert/clip").catch(() => null);
    if (!this.clip) return;
    $("#cv-frame").max = Math.max(0, (this.clip.frames || 1) - 1);
    this.frame();
  },
  frame() {
    const i = +$("#cv-frame").value; $("#cv-frame-n").textContent = i;
    $("#cv-before").src = `/api/convert/frame/${i}`; $("#cv-after").src = `/api/convert/frame/${i}`;
    clearTimeout(this.t); this.t = setTimeout(() => this.preview(), 250);
  },
  opts() { return { mask: $("#cv-mask").value, color: $("#cv-color").value, blend: $("#cv-blend").value }; },
  async preview() {
    const run = S.state && S.state.runs[$("#cv-model").value];
    if (!run || !run.checkpoint) { $("#cv-time").textContent = "(train a model to see the swap)"; return; }
    const seq = (this.seq = (this.seq || 0) + 1), t0 = performance.now();
    $("#cv-time").textContent = "converting…";
    const d = await api("POST", "/api/convert/preview", { frame: +$("#cv-frame").value, model: $("#cv-model").value, options: this.opts() }).catch(() => null);
    if (!d || seq !== this.seq) return;
    await Promise.all([["#cv-before", d.before], ["#cv-after", d.after]].map(([s, u]) => new Promise((ok) => { const im = $(s); im.onload = im.onerror = ok; im.src = u; })));
    this.lastSeconds = (performance.now() - t0) / 1000;
    $("#cv-time").textContent = `converted in ${d.seconds.toFixed(2)} s (server), ${this.lastSeconds.toFixed(2)} s on screen`;
    $("#cv-command").textContent = d.command; $("#ba").dataset.frame = $("#cv-frame").value; $("#ba").dataset.done = seq;
  },
  onState(st) {
    const j = latest("convert"), run = j && j.status === "running";
    $("#cv-render").disabled = !!run; $("#cv-stop").disabled = !run;
    const out = st.output;
    $("#cv-output").innerHTML = (j ? `<div>${j.status}${j.progress ? ` · ${esc(progressText(j.progress))}` : ""}${j.error ? ` <span class="err">${esc(j.error)}</span>` : ""}</div>` : "") +
      (out.mtime && (!j || j.status === "finished") ? `<a href="/files/${out.path}?v=${out.mtime}" target="_blank">${esc(out.path)}</a> (labelled synthetic: ${esc(out.path)}.provenance.json)` : "");
  },
};
$("#cv-frame").oninput = () => Convert.frame();
["#cv-mask", "#cv-color", "#cv-blend", "#cv-model"].forEach((s) => ($(s).onchange = () => Convert.preview()));
$("#ba-slider").oninput = () => { const v = $("#ba-slider").value; $("#cv-after-wrap").style.clipPath = `inset(0 0 0 ${v}%)`; $("#ba-line").style.left = `${v}%`; };
$("#cv-render").onclick = () => startJob({ kind: "convert", options: { ...Convert.opts(), model: $("#cv-model").value } });
$("#cv-stop").onclick = () => { const j = running("convert"); if (j) api("POST", `/api/jobs/${j.id}/stop`); };

// ---- report ---------------------------------------------------------------------------------------
const Report = {
  onState(st) {
    const j = latest("report");
    $("#rp-build").disabled = !!(j && j.status === "running");
    $("#rp-link").innerHTML = (j && j.status !== "finished" ? `${j.status}${j.error ? ` <span class="err">${esc(j.error)}</span>` : ""} ` : "") +
      (st.report.mtime ? `<a id="rp-open" href="/files/${st.report.path}/report.html?v=${st.report.mtime}" target="_blank">open the report page in its own tab</a>` : "");
    const src = st.report.mtime ? `/files/${st.report.path}/report.html?v=${st.report.mtime}` : "";
    if ($("#rp-frame").dataset.src !== src) { $("#rp-frame").dataset.src = src; $("#rp-frame").src = src || "about:blank"; $("#rp-frame").hidden = !src; }
  },
};
$("#rp-build").onclick = () => startJob({ kind: "report" });

browse("");
connect();
