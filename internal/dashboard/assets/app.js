// mlagent dashboard: follows /api/events (server-sent events) and draws
// one SVG line chart per metric, one line per run. No dependencies.
"use strict";
(function () {
  const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d"];
  const W = 480, H = 260, ML = 56, MR = 12, MT = 10, MB = 26;
  const state = { projects: [], project: null, hidden: new Set(), renders: 0, deltas: 0 };
  window.__dash = state; // read by the browser test

  const $ = (id) => document.getElementById(id);
  let es = null;
  let pending = false;

  function connect(project) {
    if (es) es.close();
    const url = "api/events" + (project ? "?project=" + encodeURIComponent(project) : "");
    es = new EventSource(url);
    es.addEventListener("open", () => { $("status").textContent = "live"; $("status").className = "status live"; });
    es.addEventListener("error", () => { $("status").textContent = "reconnecting…"; $("status").className = "status"; });
    es.addEventListener("snapshot", (ev) => {
      const snap = JSON.parse(ev.data);
      state.projects = snap.projects || [];
      state.project = snap.project || null;
      if (state.project) {
        state.project.runs = state.project.runs || [];
        for (const r of state.project.runs) { r.metrics = dict(r.metrics); r.system = dict(r.system); }
      }
      renderProjects();
      schedule();
    });
    es.addEventListener("projects", (ev) => {
      state.projects = JSON.parse(ev.data) || [];
      renderProjects();
      const cur = state.project && state.projects.find((p) => p.name === state.project.name);
      if (cur) { state.project.error = cur.error || ""; schedule(); }
      if (!state.project && state.projects.length) connect(state.projects[0].name);
    });
    es.addEventListener("reset", () => {
      // The database was replaced: start over from a fresh snapshot.
      connect(state.project ? state.project.name : project);
    });
    es.addEventListener("delta", (ev) => {
      const d = JSON.parse(ev.data);
      state.deltas++;
      if (d.max_id) state.lastMaxID = d.max_id;
      if (!state.project || state.project.name !== d.project) return;
      const p = state.project;
      for (const row of d.rows || []) {
        const run = findRun(p, row.run_id, row.run_name);
        const target = row.kind === "system" ? run.system : run.metrics;
        for (const [k, v] of Object.entries(row.values || {})) {
          (target[k] = target[k] || []).push([row.x, v]);
        }
      }
      for (const c of d.configs || []) findRun(p, c.run_id, c.run_name).config = c.config;
      schedule();
    });
  }

  // Keys come from the sandbox: a metric named "constructor" or
  // "__proto__" must be an ordinary key, so keyed collections have no
  // prototype.
  function dict(o) { return Object.assign(Object.create(null), o || {}); }

  function findRun(p, id, name) {
    let r = p.runs.find((x) => x.id === id);
    if (!r) { r = { id: id, name: name, metrics: dict(), system: dict() }; p.runs.push(r); }
    return r;
  }

  function schedule() {
    if (pending) return;
    pending = true;
    setTimeout(() => { pending = false; render(); }, 16);
  }

  function renderProjects() {
    const sel = $("project");
    const cur = state.project ? state.project.name : "";
    sel.textContent = "";
    for (const p of state.projects) {
      const o = document.createElement("option");
      o.value = p.name;
      o.textContent = p.name + (p.error ? " (error)" : "");
      if (p.name === cur) o.selected = true;
      sel.appendChild(o);
    }
  }

  function color(i) { return PALETTE[i % PALETTE.length]; }

  function smooth(points, w) {
    // Debiased exponential moving average (TensorBoard's), gaps kept.
    let last = 0, n = 0;
    return points.map(([x, y]) => {
      if (y === null || !isFinite(y)) return [x, null];
      last = last * w + (1 - w) * y;
      n++;
      return [x, last / (1 - Math.pow(w, n))];
    });
  }

  function fmt(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e4 || a < 1e-3) return v.toExponential(2);
    return (+v.toPrecision(4)).toString();
  }

  function svgEl(tag, attrs, text) {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function chart(title, series, xlabel) {
    // series: [{runIndex, points: [[x, y|null], ...]}]
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity, count = 0;
    for (const s of series) for (const [x, y] of s.points) {
      if (y === null || !isFinite(y)) continue;
      count++;
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
    const div = document.createElement("div");
    div.className = "chart";
    div.dataset.metric = title;
    div.dataset.points = String(count);
    const h = document.createElement("h3");
    h.textContent = title;
    div.appendChild(h);
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
    div.appendChild(svg);
    if (count === 0) return div;
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    if (y0 === y1) { const d = Math.abs(y0) * 0.1 || 1; y0 -= d; y1 += d; }
    const sx = (x) => ML + (x - x0) / (x1 - x0) * (W - ML - MR);
    const sy = (y) => H - MB - (y - y0) / (y1 - y0) * (H - MT - MB);
    svg.appendChild(svgEl("line", { class: "axis", x1: ML, y1: H - MB, x2: W - MR, y2: H - MB }));
    svg.appendChild(svgEl("line", { class: "axis", x1: ML, y1: MT, x2: ML, y2: H - MB }));
    for (let i = 0; i <= 4; i++) {
      const yv = y0 + (y1 - y0) * i / 4;
      svg.appendChild(svgEl("text", { class: "tick", x: ML - 4, y: sy(yv) + 3, "text-anchor": "end" }, fmt(yv)));
      const xv = x0 + (x1 - x0) * i / 4;
      svg.appendChild(svgEl("text", { class: "tick", x: sx(xv), y: H - MB + 14, "text-anchor": "middle" }, fmt(xv)));
    }
    svg.appendChild(svgEl("text", { class: "tick", x: W - MR, y: H - 2, "text-anchor": "end" }, xlabel));
    for (const s of series) {
      let seg = [];
      const flush = () => {
        if (seg.length) {
          const pl = svgEl("polyline", { points: seg.join(" "), stroke: color(s.runIndex) });
          pl.dataset.run = s.runId;
          svg.appendChild(pl);
        }
        seg = [];
      };
      for (const [x, y] of s.points) {
        if (y === null || !isFinite(y)) { flush(); continue; }
        seg.push(sx(x).toFixed(1) + "," + sy(y).toFixed(1));
      }
      flush();
    }
    return div;
  }

  function renderCharts(container, key, xlabel) {
    const p = state.project;
    const names = new Set();
    for (const r of p.runs) for (const k of Object.keys(r[key])) names.add(k);
    const doSmooth = $("smooth").checked;
    const w = parseFloat($("smoothing").value);
    container.textContent = "";
    for (const name of [...names].sort()) {
      const series = [];
      p.runs.forEach((r, i) => {
        if (state.hidden.has(r.id) || !r[key][name]) return;
        const pts = r[key][name];
        series.push({ runIndex: i, runId: r.id, points: doSmooth && key === "metrics" ? smooth(pts, w) : pts });
      });
      container.appendChild(chart(name, series, xlabel));
    }
    return names.size;
  }

  function render() {
    state.renders++;
    // For the latency benchmark: which metrics row is on screen, and when.
    state.renderedMaxID = state.lastMaxID;
    state.renderedAt = Date.now();
    const p = state.project;
    const err = $("error");
    if (!p) {
      $("charts").textContent = "";
      $("empty").hidden = false;
      err.hidden = true;
      return;
    }
    err.hidden = !p.error;
    err.textContent = p.error ? "This project's database cannot be read: " + p.error : "";
    const runs = $("runs");
    runs.textContent = "";
    p.runs.forEach((r, i) => {
      const li = document.createElement("li");
      const cb = document.createElement("input");
      cb.type = "checkbox";
      cb.checked = !state.hidden.has(r.id);
      cb.addEventListener("change", () => { cb.checked ? state.hidden.delete(r.id) : state.hidden.add(r.id); schedule(); });
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = color(i);
      const label = document.createElement("label");
      label.append(cb, sw, document.createTextNode(r.name + (r.name !== r.id ? " (" + r.id + ")" : "")));
      li.appendChild(label);
      runs.appendChild(li);
    });
    const n = renderCharts($("charts"), "metrics", "step");
    $("empty").hidden = n > 0;
    $("system-section").hidden = renderCharts($("system"), "system", "seconds") === 0;
    const cfg = $("configs");
    cfg.textContent = "";
    for (const r of p.runs) {
      if (!r.config) continue;
      const t = document.createElement("table");
      const cap = document.createElement("caption");
      cap.textContent = r.name;
      t.appendChild(cap);
      for (const [k, v] of Object.entries(r.config)) {
        const tr = document.createElement("tr");
        const th = document.createElement("th");
        th.textContent = k;
        const td = document.createElement("td");
        td.textContent = typeof v === "object" ? JSON.stringify(v) : String(v);
        tr.append(th, td);
        t.appendChild(tr);
      }
      cfg.appendChild(t);
    }
  }

  $("project").addEventListener("change", (e) => { state.hidden.clear(); connect(e.target.value); });
  $("smooth").addEventListener("change", schedule);
  $("smoothing").addEventListener("input", schedule);
  connect(new URLSearchParams(location.search).get("project") || "");
})();
