// mlagent dashboard. The page follows /api/events (server-sent events: a
// snapshot of the project's runs, then new rows) and draws one uPlot chart
// per metric with points from /api/series, downsampled on the server and
// fetched again at full resolution when a chart is zoomed.
//
// Every string here (project, run and metric names, config keys and
// values) comes from a database the sandbox writes: it is only ever put
// into the page as text (textContent, never innerHTML), and keyed
// collections are Maps or prototype-less objects, so a metric called
// "__proto__" or "constructor" is just a name.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#4d7c0f", "#7c3aed",
    "#0d9488", "#b91c1c", "#1d4ed8", "#c2410c", "#65a30d", "#be185d", "#0369a1", "#a16207", "#6d28d9", "#15803d"];
  const CHART_H = 220;
  const MAX_COMPARE = 6;

  const state = {
    projects: [],
    project: null, // name, error, layout, max_id, max_sys, media
    runs: new Map(), // id → run (snapshot fields + color)
    order: [], // run ids, in the order the project lists them
    hidden: new Set(),
    compare: [],
    x: "step",
    smooth: 0,
    log: false,
    q: "",
    folded: new Set(),
    view: "charts",
    diffOnly: false,
    zoom: new Map(), // chart key → [min, max]
    charts: new Map(), // chart key → chart
    recent: [], // recent delta rows, replayed after a fetch
    clockSkew: 0, // server clock − ours, seconds
    staleAfter: 60,
    renders: 0, deltas: 0, lastMaxID: 0, renderedMaxID: 0, renderedAt: 0, allDrawnAt: 0, firstScreenAt: 0, snapshots: 0, snapshotAt: 0,
    perf: { fetchMs: 0, parseMs: 0, drawMs: 0, joinMs: 0, fetches: 0 },
  };
  window.__dash = state; // read by the browser tests and the benchmark

  // ---- URL state -------------------------------------------------------
  const params = new URLSearchParams(location.search);
  const wantProject = params.get("project") || "";
  state.x = params.get("x") || "step";
  state.smooth = clamp(parseFloat(params.get("smooth") || "0"), 0, 0.99) || 0;
  state.log = params.get("log") === "1";
  state.q = params.get("q") || "";
  state.view = params.get("view") === "compare" ? "compare" : "charts";
  state.diffOnly = params.get("diff") === "1";
  for (const h of params.getAll("hide")) state.hidden.add(h);
  for (const f of params.getAll("fold")) state.folded.add(f);
  state.compare = params.getAll("cmp").slice(0, MAX_COMPARE);
  try {
    const z = JSON.parse(params.get("zoom") || "{}");
    for (const [k, v] of Object.entries(z)) if (Array.isArray(v) && v.length === 2 && v.every(Number.isFinite)) state.zoom.set(k, v);
  } catch (e) { /* a hand-edited link: ignore the zoom */ }
  const theme = params.get("theme");
  if (theme === "dark" || theme === "light") document.documentElement.dataset.theme = theme;

  function saveURL() {
    const p = new URLSearchParams();
    if (state.project) p.set("project", state.project.name);
    if (state.view === "compare") p.set("view", "compare");
    if (state.x !== "step") p.set("x", state.x);
    if (state.smooth > 0) p.set("smooth", String(state.smooth));
    if (state.log) p.set("log", "1");
    if (state.q) p.set("q", state.q);
    if (state.diffOnly) p.set("diff", "1");
    for (const h of state.hidden) p.append("hide", h);
    for (const f of state.folded) p.append("fold", f);
    for (const c of state.compare) p.append("cmp", c);
    if (state.zoom.size) p.set("zoom", JSON.stringify(Object.fromEntries(state.zoom)));
    if (theme) p.set("theme", theme);
    const s = p.toString();
    history.replaceState(null, "", s ? "?" + s : location.pathname);
  }

  // ---- formatting -------------------------------------------------------
  function clamp(v, lo, hi) { return Math.min(hi, Math.max(lo, v)); }

  // A value for a table or tooltip: up to 6 significant digits, no
  // trailing zeros, exponent only for the very small or large.
  function fmtVal(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (typeof v !== "number") return String(v);
    if (!Number.isFinite(v)) return v > 0 ? "∞" : "−∞";
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e6 || a < 1e-4) return v.toExponential(3).replace(/\.?0+e/, "e").replace("e+", "e");
    if (Number.isInteger(v)) return String(v);
    return String(+v.toPrecision(6));
  }

  // Tick labels: as many decimals as the tick spacing needs, compact
  // suffixes for large numbers, an exponent for tiny spacings.
  function fmtTicks(splits, incr) {
    if (!incr || !Number.isFinite(incr)) incr = 1;
    const mag = Math.floor(Math.log10(incr));
    // Decimals that write the spacing exactly (0.25 needs two).
    let dec = 0;
    while (dec < 12 && Math.abs(Math.round(incr * 10 ** dec) - incr * 10 ** dec) > 1e-6) dec++;
    return splits.map((v) => {
      if (v === null || v === undefined) return "";
      if (Math.abs(v) < incr * 1e-9) return "0";
      const a = Math.abs(v);
      if (mag <= -4) {
        const m = v / 10 ** mag;
        return (+m.toFixed(2)) + "e" + mag;
      }
      if (a >= 1e9 && mag >= 7) return (+(v / 1e9).toFixed(Math.max(0, dec - 9))) + "G";
      if (a >= 1e6 && mag >= 4) return (+(v / 1e6).toFixed(Math.max(0, dec - 6))) + "M";
      if (a >= 1e4 && mag >= 2) return (+(v / 1e3).toFixed(Math.max(0, dec - 3))) + "k";
      return v.toFixed(dec);
    });
  }

  function fmtDuration(s) {
    if (!Number.isFinite(s)) return "–";
    const neg = s < 0 ? "−" : "";
    s = Math.abs(s);
    if (s < 59.5) return neg + (+s.toFixed(s < 10 ? 1 : 0)) + "s";
    s = Math.round(s);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (h > 0) return neg + h + "h" + (m ? " " + m + "m" : "");
    return neg + m + "m" + (sec ? " " + sec + "s" : "");
  }

  // Units guessed from a metric's name, for system metrics mostly.
  function unitOf(name) {
    const n = name.toLowerCase();
    if (/(util|percent|_pct|%)/.test(n)) return "%";
    if (/temp/.test(n)) return "°C";
    if (/power/.test(n)) return "W";
    if (/(mem|memory).*(mib|_mb)$|_mb$/.test(n)) return "MB";
    if (/(mem|memory|bytes)/.test(n)) return "bytes";
    if (/(^|[/_])(time|duration|seconds|secs)$|_s$/.test(n)) return "s";
    return "";
  }

  function fmtBytes(v) {
    const a = Math.abs(v);
    for (const [u, d] of [["TiB", 2 ** 40], ["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]]) if (a >= d) return (+(v / d).toFixed(2)) + " " + u;
    return v + " B";
  }

  // Tick spacings for bytes: powers of two of each unit, so ticks read
  // 6 GiB, 6.5 GiB rather than 6.1 GiB.
  const BYTE_INCRS = [];
  for (let e = 0; e <= 50; e++) BYTE_INCRS.push(2 ** e);

  function fmtWithUnit(v, unit) {
    if (v === null || v === undefined || !Number.isFinite(v)) return fmtVal(v);
    if (unit === "bytes") return fmtBytes(v);
    if (unit === "s") return fmtDuration(v);
    return fmtVal(v) + (unit ? (unit === "%" || unit === "°C" ? unit : " " + unit) : "");
  }

  function xLabel(system) {
    if (state.x === "wall") return "wall time";
    if (state.x === "rel" || system) return "relative time";
    if (state.x.startsWith("m:")) return state.x.slice(2);
    return "step";
  }

  function fmtX(v, system) {
    const kind = system && (state.x === "step" || state.x.startsWith("m:")) ? "rel" : state.x;
    if (kind === "wall") return new Date(v * 1000).toLocaleString();
    if (kind === "rel") return fmtDuration(v);
    if (kind === "step") return "step " + fmtVal(v);
    return xLabel(false) + " " + fmtVal(v);
  }

  // ---- runs and status -------------------------------------------------
  function now() { return Date.now() / 1000 + state.clockSkew; }

  function statusOf(r) {
    if (r.marker === "crashed") return "crashed";
    if (r.marker === "finished") return "finished";
    if (r.last === null) return "running";
    const limit = Math.max(state.staleAfter, 10 * (r.interval || 0));
    return now() - r.last < limit ? "running" : "finished";
  }

  function durationOf(r) {
    if (r.first === null) return 0;
    const end = statusOf(r) === "running" ? Math.max(now(), r.last || 0) : (r.last || r.first);
    return end - r.first;
  }

  function visibleRuns() { return state.order.filter((id) => !state.hidden.has(id)); }

  function setRuns(list) {
    state.runs = new Map();
    state.order = [];
    list.forEach((r, i) => addRun(r, i));
  }

  function addRun(r, i) {
    const run = {
      id: r.id, name: r.name, config: r.config || null, first: r.first, last: r.last, interval: r.interval || 0,
      marker: r.marker || "", rows: r.rows || 0, color: PALETTE[i % PALETTE.length],
      metrics: new Map(Object.entries(r.metrics || {})), system: new Map(Object.entries(r.system || {})),
    };
    state.runs.set(run.id, run);
    state.order.push(run.id);
    return run;
  }

  function runOf(id, name) {
    return state.runs.get(id) || addRun({ id: id, name: name, first: null, last: null }, state.order.length);
  }

  // ---- connection --------------------------------------------------------
  let es = null;
  let connected = "";

  function connect(project) {
    if (es) es.close();
    connected = project;
    const url = "api/events" + (project ? "?project=" + encodeURIComponent(project) : "");
    es = new EventSource(url);
    es.addEventListener("open", () => { $("status").textContent = "live"; $("status").className = "status live"; });
    es.addEventListener("error", () => { $("status").textContent = "reconnecting…"; $("status").className = "status"; });
    es.addEventListener("snapshot", (ev) => onSnapshot(JSON.parse(ev.data)));
    es.addEventListener("projects", (ev) => {
      state.projects = JSON.parse(ev.data) || [];
      renderProjects();
      // An empty directory got its first project: show it.
      if (!state.project && !connected && state.projects.length) connect(state.projects[0].name);
    });
    es.addEventListener("reset", () => connect(state.project ? state.project.name : project));
    es.addEventListener("delta", (ev) => onDelta(JSON.parse(ev.data)));
    // A large project is first shown from a sample; this says how far
    // the server has read the rest (a "reset" follows when it has all).
    es.addEventListener("progress", (ev) => {
      const pr = JSON.parse(ev.data);
      if (state.project && state.project.preview && pr.project === state.project.name) { state.project.preview = pr; renderNotice(); }
    });
  }

  function onSnapshot(snap) {
    state.snapshots++;
    state.snapshotAt = performance.now();
    state.projects = snap.projects || [];
    state.clockSkew = (snap.now || Date.now() / 1000) - Date.now() / 1000;
    state.staleAfter = snap.stale_after || 60;
    const p = snap.project;
    if (state.project && (!p || p.name !== state.project.name)) { state.zoom.clear(); state.hidden.clear(); state.compare = []; }
    state.project = p ? { name: p.name, error: p.error || "", layout: p.layout, max_id: p.max_id, max_sys: p.max_sys, media: p.media || [], preview: p.preview || null } : null;
    setRuns(p ? p.runs || [] : []);
    state.recent = [];
    destroyCharts();
    renderProjects();
    renderAll();
    fetchScreenFirst([...state.charts.values()].filter((c) => !c.folded));
    saveURL();
  }

  // fetchScreenFirst fetches the charts on screen (and just below) first,
  // the rest once those are in: the first screen of a big project draws
  // in a fraction of the time all its charts take.
  // The rest is asked for as soon as the first answer has arrived, so the
  // server computes it while the page draws the first screen.
  async function fetchScreenFirst(list) {
    const near = [], far = [];
    const limit = innerHeight * 1.5;
    for (const c of list) (c.el.getBoundingClientRect().top < limit ? near : far).push(c);
    let rest = null;
    const fetchRest = () => { rest = rest || fetchCharts(far); };
    await fetchCharts(near, fetchRest);
    state.firstScreenAt = state.firstScreenAt || performance.now();
    fetchRest();
    await rest;
  }

  function onDelta(d) {
    state.deltas++;
    if (d.max_id) state.lastMaxID = d.max_id;
    if (!state.project || state.project.name !== d.project) return;
    let newKeys = false, runsChanged = false;
    for (const row of d.rows || []) {
      const known = state.runs.has(row.run_id);
      const run = runOf(row.run_id, row.run_name);
      runsChanged = runsChanged || !known;
      if (row.t !== null) {
        if (run.first === null || row.t < run.first) run.first = row.t;
        if (run.last === null || row.t > run.last) run.last = row.t;
      }
      const target = row.kind === "system" ? run.system : run.metrics;
      if (row.kind !== "system") run.rows++;
      for (const [k, v] of Object.entries(row.values || {})) {
        let s = target.get(k);
        if (!s) { s = [null, null, null, 0]; target.set(k, s); newKeys = true; }
        if (v !== null) { s[0] = v; s[1] = s[1] === null ? v : Math.min(s[1], v); s[2] = s[2] === null ? v : Math.max(s[2], v); }
        s[3]++;
      }
      state.recent.push(row);
      addToCharts(row);
    }
    if (state.recent.length > 20000) state.recent.splice(0, state.recent.length - 10000);
    for (const c of d.configs || []) { runOf(c.run_id, c.run_name).config = c.config; }
    for (const m of d.markers || []) { const r = state.runs.get(m.run_id); if (r) r.marker = m.marker; }
    for (const m of d.media || []) state.project.media.push(m);
    if (newKeys || runsChanged) {
      renderAll();
      fetchCharts([...state.charts.values()].filter((c) => !c.u && !c.folded));
    } else {
      renderSide();
      if (d.configs && d.configs.length) renderConfig();
      if (d.media && d.media.length) renderMedia();
      if (state.view === "compare") renderCompare();
    }
  }

  // ---- charts ------------------------------------------------------------
  function chartKey(system, name) { return (system ? "s:" : "m:") + name; }

  function groupOf(system, name) {
    if (system) return "system";
    const i = name.indexOf("/");
    return i > 0 ? name.slice(0, i) : "charts";
  }

  // metricNames lists the metric (or system metric) names of the
  // project's runs, sorted.
  function metricNames(system) {
    const names = new Set();
    for (const r of state.runs.values()) for (const k of (system ? r.system : r.metrics).keys()) names.add(k);
    return [...names].sort();
  }

  function destroyCharts() {
    for (const c of state.charts.values()) {
      if (c.u) c.u.destroy();
      if (c.resize) c.resize.disconnect();
    }
    state.charts = new Map();
    $("groups").textContent = "";
  }

  function matches(name) {
    return !state.q || name.toLowerCase().includes(state.q.toLowerCase());
  }

  // renderGroups makes sure every metric has a card in its group, in
  // order, and shows only those matching the search.
  function renderGroups() {
    const host = $("groups");
    const wanted = [];
    for (const system of [false, true]) for (const n of metricNames(system)) wanted.push({ system, name: n, group: groupOf(system, n) });
    const groups = new Map();
    for (const w of wanted) {
      if (!groups.has(w.group)) groups.set(w.group, []);
      groups.get(w.group).push(w);
    }
    const names = [...groups.keys()].sort((a, b) => (a === "system") - (b === "system") || (a === "charts") - (b === "charts") || a.localeCompare(b));
    let shown = 0;
    for (const g of names) {
      let det = host.querySelector(`details[data-group="${CSS.escape(g)}"]`);
      if (!det) {
        det = document.createElement("details");
        det.className = "group";
        det.dataset.group = g;
        det.open = !state.folded.has(g);
        const sum = document.createElement("summary");
        const title = document.createElement("span");
        title.textContent = g;
        const count = document.createElement("span");
        count.className = "muted count";
        sum.append(title, " ", count);
        const grid = document.createElement("div");
        grid.className = "grid";
        det.append(sum, grid);
        det.addEventListener("toggle", () => {
          // Also fired for the open set above, which changes nothing.
          if (det.open === !state.folded.has(g)) return;
          det.open ? state.folded.delete(g) : state.folded.add(g);
          for (const c of state.charts.values()) if (c.group === g) c.folded = !det.open;
          saveURL();
          if (det.open) fetchCharts([...state.charts.values()].filter((c) => c.group === g && !c.u));
        });
        // Keep the groups in order.
        const after = [...host.children].find((el) => names.indexOf(el.dataset.group) > names.indexOf(g));
        host.insertBefore(det, after || null);
      }
      const grid = det.querySelector(".grid");
      let n = 0;
      for (const w of groups.get(g)) {
        const key = chartKey(w.system, w.name);
        let c = state.charts.get(key);
        if (!c) {
          c = newChart(key, w.name, w.system, g);
          c.folded = !det.open;
          const next = [...grid.children].find((el) => el.dataset.metric > w.name);
          grid.insertBefore(c.el, next || null);
        }
        c.el.hidden = !matches(w.name);
        if (!c.el.hidden) n++;
      }
      det.hidden = n === 0;
      det.querySelector(".count").textContent = "(" + n + ")";
      shown += n;
    }
    $("empty").hidden = shown > 0;
  }

  function newChart(key, name, system, group) {
    const el = document.createElement("div");
    el.className = "chart";
    el.dataset.metric = name;
    el.dataset.kind = system ? "system" : "metric";
    el.dataset.points = "0";
    const h = document.createElement("h3");
    h.textContent = name;
    h.title = name;
    const note = document.createElement("span");
    note.className = "note";
    const plot = document.createElement("div");
    plot.className = "plot";
    el.append(h, note, plot);
    const c = { key, name, system, group, el, plot, note, u: null, data: new Map(), inflight: 0, folded: false, unit: unitOf(name), width: 0 };
    state.charts.set(key, c);
    return c;
  }

  // ---- fetching series -----------------------------------------------------
  // Points per run: about one for every two pixels; with each bucket's
  // lowest and highest kept, a line still shows every spike.
  function pointsFor(c) { return Math.max(100, Math.round((c.plot.clientWidth || 500) / 2)); }

  // fetchCharts fetches and draws the charts in list; onResponse, if
  // given, runs once the first answer has arrived, before it is drawn.
  function fetchCharts(list, onResponse) {
    list = list.filter((c) => !c.el.hidden);
    if (!state.project || list.length === 0) return Promise.resolve();
    // Charts at the same zoom go in one request.
    const byRange = new Map();
    for (const c of list) {
      const z = state.zoom.get(c.key);
      const k = z ? z.join(",") : "";
      if (!byRange.has(k)) byRange.set(k, []);
      byRange.get(k).push(c);
    }
    const pending = [];
    for (const [k, cs] of byRange) {
      for (let i = 0; i < cs.length; i += 40) pending.push(fetchSeries(cs.slice(i, i + 40), k ? k.split(",").map(Number) : null, onResponse));
    }
    return Promise.all(pending);
  }

  async function fetchSeries(cs, range, onResponse) {
    const project = state.project.name;
    const q = new URLSearchParams();
    q.set("project", project);
    q.set("x", state.x);
    // A zoomed chart is fetched alone: give it four points per pixel, so
    // a window of a few thousand steps comes at full resolution.
    q.set("points", String(range ? 8 * pointsFor(cs[0]) : pointsFor(cs[0])));
    if (range) { q.set("xmin", String(range[0])); q.set("xmax", String(range[1])); }
    for (const c of cs) { q.append(c.system ? "s" : "m", c.name); c.inflight++; }
    let res;
    try {
      const t0 = performance.now();
      const resp = await fetch("api/series?" + q.toString());
      if (!resp.ok) throw new Error(resp.status + " " + (await resp.text()));
      const text = await resp.text();
      const t1 = performance.now();
      res = JSON.parse(text);
      state.perf.fetchMs += t1 - t0;
      state.perf.parseMs += performance.now() - t1;
      state.perf.fetches++;
    } catch (e) {
      for (const c of cs) c.inflight--;
      console.warn("series:", e);
      return;
    } finally {
      if (onResponse) onResponse();
    }
    if (!state.project || state.project.name !== project) return;
    const byKey = new Map();
    for (const ch of res.charts) byKey.set(chartKey(ch.system, ch.key), ch);
    for (const c of cs) {
      c.inflight--;
      if (state.charts.get(c.key) !== c) continue;
      const ch = byKey.get(c.key);
      c.data = new Map();
      c.thinned = 0;
      c.downsampled = false;
      for (const r of ch ? ch.runs : []) {
        c.data.set(r.id, { x: r.x, y: r.y });
        c.thinned = Math.max(c.thinned, r.thinned);
        c.downsampled = c.downsampled || r.total > r.x.length;
      }
      c.fetchedAt = Date.now();
      c.target = pointsFor(c);
      // Rows that arrived while this was on its way.
      for (const row of state.recent) {
        if (row.id > (c.system ? res.max_sys : res.max_id) && (row.kind === "system") === c.system) addRowToChart(c, row);
      }
      draw(c);
    }
  }

  function xOfRow(c, run, row) {
    const kind = c.system && (state.x === "step" || state.x.startsWith("m:")) ? "rel" : state.x;
    switch (kind) {
      case "step": return row.step;
      case "wall": return row.t;
      case "rel": return row.t === null || run.first === null ? null : row.t - run.first;
    }
    const v = row.values[state.x.slice(2)];
    return v === undefined ? null : v;
  }

  function addToCharts(row) {
    for (const k of Object.keys(row.values || {})) {
      const c = state.charts.get(chartKey(row.kind === "system", k));
      if (c && c.u && !c.inflight) { addRowToChart(c, row); schedule(c); }
    }
  }

  function addRowToChart(c, row) {
    if (!Object.hasOwn(row.values, c.name)) return;
    const run = state.runs.get(row.run_id);
    const x = xOfRow(c, run, row);
    if (x === null || !Number.isFinite(x)) return;
    const z = state.zoom.get(c.key);
    if (z && (x < z[0] || x > z[1])) return;
    let d = c.data.get(row.run_id);
    if (!d) { d = { x: [], y: [] }; c.data.set(row.run_id, d); }
    const y = row.values[c.name];
    // Keep x order (a row can come back with an earlier step).
    let i = d.x.length;
    while (i > 0 && d.x[i - 1] > x) i--;
    d.x.splice(i, 0, x);
    d.y.splice(i, 0, y);
    c.added = (c.added || 0) + 1;
  }

  // ---- drawing -------------------------------------------------------------
  const dirty = new Set();
  let frame = 0;

  function schedule(c) {
    dirty.add(c);
    if (!frame) frame = requestAnimationFrame(flush);
  }

  function flush() {
    frame = 0;
    const cs = [...dirty];
    dirty.clear();
    for (const c of cs) draw(c);
    // A chart that grew well past what was fetched is fetched again, so
    // a long-open page does not keep every new point.
    const grown = cs.filter((c) => !state.zoom.has(c.key) && c.added > 2 * (c.target || 300) && Date.now() - (c.fetchedAt || 0) > 5000);
    for (const c of grown) c.added = 0;
    if (grown.length) fetchCharts(grown);
  }

  function smoothed(y, w) {
    // Debiased exponential moving average (TensorBoard's); gaps kept.
    let last = 0, n = 0;
    return y.map((v) => {
      if (v === null || !Number.isFinite(v)) return null;
      last = last * w + (1 - w) * v;
      n++;
      return last / (1 - Math.pow(w, n));
    });
  }

  function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

  // joined builds uPlot's aligned data: one x array, then per visible run
  // its y (and its smoothed y when smoothing is on).
  function joined(c) {
    const tables = [];
    const series = [];
    for (const id of visibleRuns()) {
      const d = c.data.get(id);
      if (!d || d.x.length === 0) continue;
      let y = d.y;
      if (state.log) y = y.map((v) => (v !== null && v > 0 ? v : null));
      if (state.smooth > 0) {
        tables.push([d.x, y, smoothed(y, state.smooth)]);
        series.push({ id, raw: true }, { id, smooth: true });
      } else {
        tables.push([d.x, y]);
        series.push({ id });
      }
    }
    if (tables.length === 0) return { data: [[]], series };
    return { data: uPlot.join(tables), series };
  }

  function draw(c) {
    if (c.el.hidden) return;
    const t0 = performance.now();
    const { data, series } = joined(c);
    const t1 = performance.now();
    state.perf.joinMs += t1 - t0;
    let points = 0;
    for (let i = 1; i < data.length; i++) if (!series[i - 1].smooth) for (const v of data[i]) if (v !== null && v !== undefined) points++;
    c.el.dataset.points = String(points);
    c.note.textContent = c.thinned ? "thinned ×" + (2 ** c.thinned) : "";
    const sig = series.map((s) => s.id + (s.smooth ? "~" : "")).join("|") + "|" + state.log + "|" + state.x;
    if (!c.u || c.sig !== sig) {
      if (c.u) c.u.destroy();
      c.u = makePlot(c, data, series);
      c.sig = sig;
    } else {
      c.u.setData(data, !state.zoom.has(c.key));
    }
    if (state.zoom.has(c.key)) {
      const z = state.zoom.get(c.key);
      c.u.setScale("x", { min: z[0], max: z[1] });
    }
    c.series = series;
    state.perf.drawMs += performance.now() - t1;
    state.renders++;
    state.renderedMaxID = state.lastMaxID;
    state.renderedAt = Date.now();
    // For the scale benchmark: when every chart on the page first had
    // its points drawn, in ms since navigation.
    if (!c.drawnOnce && points > 0) {
      c.drawnOnce = true;
      if (!state.allDrawnAt && [...state.charts.values()].every((x) => x.drawnOnce || x.folded || x.el.hidden)) state.allDrawnAt = performance.now();
    }
  }

  function makePlot(c, data, series) {
    const axis = css("--axis"), grid = css("--grid");
    const timeX = state.x === "wall";
    const relX = state.x === "rel" || (c.system && state.x !== "wall");
    const width = Math.max(200, c.plot.clientWidth || 440);
    const pad = (u, min, max) => {
      if (min === null || max === null) return [0, 1];
      if (min === max) {
        // One x value (one sample, or all at once): put it in a range
        // that reads naturally rather than −1…1.
        if (relX) return [Math.min(0, min), Math.max(60, 2 * max)];
        const d = Math.max(1, Math.abs(min) * 0.1);
        return [min - d, max + d];
      }
      return [min, max];
    };
    const durIncrs = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];
    const opts = {
      width, height: CHART_H,
      legend: { show: false },
      scales: {
        x: { time: timeX, range: timeX ? undefined : pad },
        y: state.log ? { distr: 3, log: 10 } : { range: (u, min, max) => {
          if (min === null || max === null) return [0, 1];
          if (min === max) { const d = Math.abs(min) * 0.1 || 1; return [min - d, max + d]; }
          return uPlot.rangeNum(min, max, 0.05, true);
        } },
      },
      axes: [
        Object.assign({ stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, label: xLabel(c.system), labelSize: 18, labelFont: "12px system-ui", font: "11px system-ui" },
          timeX ? {} : relX ? { incrs: durIncrs, values: (u, splits) => splits.map(fmtDuration) } : { values: (u, splits, ai, space, incr) => fmtTicks(splits, incr) }),
        { stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, size: 62, font: "11px system-ui",
          incrs: c.unit === "bytes" ? BYTE_INCRS : undefined,
          values: (u, splits, ai, space, incr) => c.unit === "bytes" ? splits.map(fmtBytes) : fmtTicks(splits, incr).map((s) => s && c.unit ? s + (c.unit === "s" ? "s" : c.unit === "%" ? "%" : "") : s) },
      ],
      series: [{}].concat(series.map((s) => {
        const run = state.runs.get(s.id);
        const n = (c.data.get(s.id) || { x: [] }).x.length;
        return {
          label: run ? run.name : s.id,
          stroke: s.raw ? run.color + "55" : run.color,
          width: s.raw ? 1 : 1.6,
          spanGaps: false,
          points: { show: n <= 1 || (n < 40 && !s.raw), size: n <= 1 ? 7 : 4, fill: run.color },
        };
      })),
      cursor: {
        drag: { x: true, y: false, setScale: true },
        points: { show: false },
        bind: {
          dblclick: () => () => { setTimeout(() => resetZoom(c)); return null; },
        },
      },
      hooks: {
        setCursor: [(u) => tooltip(c, u)],
        setSelect: [() => {}],
        setScale: [(u, key) => { if (key === "x") onScale(c, u); }],
      },
    };
    const u = new uPlot(opts, data, c.plot);
    // The card's width changes with the window and with the scroll bar
    // appearing once charts fill the page.
    if (!c.resize) {
      c.resize = new ResizeObserver(() => {
        const w = Math.max(200, c.plot.clientWidth);
        if (c.u && Math.abs(c.u.width - w) > 1) c.u.setSize({ width: w, height: CHART_H });
      });
      c.resize.observe(c.plot);
    }
    u.over.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
    u.over.addEventListener("mousedown", () => {
      c.dragging = true;
      window.addEventListener("mouseup", () => setTimeout(() => { c.dragging = false; }), { once: true });
    });
    return u;
  }

  // onScale records a zoom the user made by dragging, and fetches that
  // range at full resolution.
  function onScale(c, u) {
    // uPlot runs this hook in a microtask after any scale change; only a
    // drag that just ended is the user's zoom.
    if (!c.dragging || !c.u) return;
    const min = u.scales.x.min, max = u.scales.x.max;
    if (min === null || max === null) return;
    state.zoom.set(c.key, [min, max]);
    saveURL();
    clearTimeout(c.zoomTimer);
    c.zoomTimer = setTimeout(() => fetchCharts([c]), 120);
  }

  function resetZoom(c) {
    state.zoom.delete(c.key);
    saveURL();
    if (c.u) { c.u.destroy(); c.u = null; c.sig = ""; }
    fetchCharts([c]);
  }

  // tooltip shows, at the cursor's x, each visible run's value: the point
  // of that run nearest the cursor, within 40 pixels.
  function tooltip(c, u) {
    const tt = $("tooltip");
    const left = u.cursor.left;
    if (left === undefined || left < 0) { tt.hidden = true; return; }
    const xv = u.posToVal(left, "x");
    const rows = [];
    for (const id of visibleRuns()) {
      const d = c.data.get(id);
      if (!d || d.x.length === 0) continue;
      const i = nearest(d.x, xv);
      if (i < 0) continue;
      if (Math.abs(u.valToPos(d.x[i], "x") - left) > 40) continue;
      let v = d.y[i];
      if (state.smooth > 0) { const sm = smoothed(d.y, state.smooth); v = sm[i]; }
      rows.push({ run: state.runs.get(id), v, x: d.x[i] });
    }
    if (rows.length === 0) { tt.hidden = true; return; }
    rows.sort((a, b) => (b.v ?? -Infinity) - (a.v ?? -Infinity));
    tt.textContent = "";
    const head = document.createElement("div");
    head.className = "tt-x";
    // Downsampled, each run's nearest point may be a few steps apart.
    head.textContent = (c.downsampled ? "≈ " : "") + fmtX(rows[0].x, c.system);
    tt.append(head);
    for (const r of rows) {
      const row = document.createElement("div");
      row.className = "tt-row";
      row.dataset.run = r.run.id;
      row.dataset.x = String(r.x);
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = r.run.color;
      const name = document.createElement("span");
      name.className = "tt-name";
      name.textContent = r.run.name;
      const val = document.createElement("span");
      val.className = "tt-val";
      val.textContent = fmtWithUnit(r.v, c.unit);
      row.append(sw, name, val);
      tt.append(row);
    }
    const box = u.over.getBoundingClientRect();
    tt.hidden = false;
    const tw = tt.offsetWidth;
    let x = box.left + left + 14;
    if (x + tw > window.innerWidth - 8) x = box.left + left - tw - 14;
    tt.style.left = Math.max(4, x) + "px";
    tt.style.top = (box.top + (u.cursor.top || 0) + 14) + "px";
  }

  function nearest(xs, v) {
    if (xs.length === 0) return -1;
    let lo = 0, hi = xs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (xs[mid] < v) lo = mid + 1; else hi = mid;
    }
    if (lo > 0 && Math.abs(xs[lo - 1] - v) <= Math.abs(xs[lo] - v)) lo--;
    return lo;
  }

  // ---- side bar, config, media, compare --------------------------------------
  function renderProjects() {
    const sel = $("project");
    const cur = state.project ? state.project.name : connected;
    sel.textContent = "";
    for (const p of state.projects) {
      const o = document.createElement("option");
      o.value = p.name;
      o.textContent = p.name + (p.error ? " (error)" : "");
      if (p.name === cur) o.selected = true;
      sel.appendChild(o);
    }
    const err = $("error");
    const e = state.project && state.project.error;
    const listed = state.project && state.projects.find((p) => p.name === state.project.name);
    const msg = (listed && listed.error) || e;
    err.hidden = !msg;
    err.textContent = msg ? "This project's database cannot be read: " + msg : "";
    renderNotice();
  }

  // renderNotice says when the charts show a sample of a large project
  // that the server is still reading whole.
  function renderNotice() {
    const n = $("notice");
    const pr = state.project && state.project.preview;
    n.hidden = !pr;
    if (!pr) { n.textContent = ""; return; }
    const pct = pr.total > 0 ? Math.min(99, Math.floor(100 * pr.loaded / pr.total)) : 0;
    n.textContent = "Loading this project: the charts show a sample of " + pr.sampled.toLocaleString("en-US") + " of its " +
      pr.total.toLocaleString("en-US") + " rows while the server reads them all (" + pct + " % read); they fill in when it has.";
  }

  function renderSide() {
    const ul = $("runs");
    ul.textContent = "";
    $("run-count").textContent = "(" + state.order.length + ")";
    for (const id of state.order) {
      const r = state.runs.get(id);
      const li = document.createElement("li");
      li.dataset.run = id;
      const label = document.createElement("label");
      const cb = document.createElement("input");
      cb.type = "checkbox";
      cb.checked = !state.hidden.has(id);
      cb.addEventListener("change", () => { cb.checked ? state.hidden.delete(id) : state.hidden.add(id); onSelection(); });
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = r.color;
      const name = document.createElement("span");
      name.className = "run-name";
      name.textContent = r.name;
      name.title = r.name === r.id ? r.name : r.name + " (" + r.id + ")";
      label.append(cb, sw, name);
      const meta = document.createElement("div");
      meta.className = "run-meta";
      const st = statusOf(r);
      const badge = document.createElement("span");
      badge.className = "badge " + st;
      badge.textContent = st;
      const dur = document.createElement("span");
      dur.className = "duration";
      dur.textContent = fmtDuration(durationOf(r));
      const rows = document.createElement("span");
      rows.textContent = r.rows + " rows";
      meta.append(badge, dur, rows);
      li.append(label, meta);
      ul.append(li);
    }
  }

  function onSelection() {
    saveURL();
    renderSide();
    renderConfig();
    for (const c of state.charts.values()) if (c.u || c.data.size) schedule(c);
  }

  // flatten turns a nested config into dotted keys (bounded).
  function flatten(obj, prefix, out, depth) {
    for (const [k, v] of Object.entries(obj || {})) {
      if (out.size > 500) return out;
      const key = prefix ? prefix + "." + k : k;
      if (v && typeof v === "object" && !Array.isArray(v) && depth < 4) flatten(v, key, out, depth + 1);
      else out.set(key, v);
    }
    return out;
  }

  function cellText(v) {
    if (v === undefined) return "";
    if (typeof v === "number") return fmtVal(v);
    if (v === null || typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  // configTable fills table with one row per config key and one column
  // per run; a row whose values differ is marked.
  function configTable(table, ids, diffOnly) {
    table.textContent = "";
    const runs = ids.map((id) => state.runs.get(id)).filter((r) => r);
    const flat = runs.map((r) => flatten(r.config, "", new Map(), 0));
    const keys = new Set();
    for (const f of flat) for (const k of f.keys()) keys.add(k);
    const thead = document.createElement("thead");
    const hr = document.createElement("tr");
    const corner = document.createElement("th");
    corner.textContent = "key";
    hr.append(corner);
    for (const r of runs) {
      const th = document.createElement("th");
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = r.color;
      th.append(sw, " ", r.name);
      hr.append(th);
    }
    thead.append(hr);
    const tbody = document.createElement("tbody");
    for (const k of [...keys].sort()) {
      const texts = flat.map((f) => cellText(f.get(k)));
      const differs = new Set(texts).size > 1;
      if (diffOnly && !differs) continue;
      const tr = document.createElement("tr");
      if (differs) tr.className = "diff";
      const th = document.createElement("th");
      th.textContent = k;
      tr.append(th);
      for (const t of texts) {
        const td = document.createElement("td");
        td.textContent = t;
        td.title = t;
        tr.append(td);
      }
      tbody.append(tr);
    }
    table.append(thead, tbody);
    return keys.size;
  }

  function renderConfig() {
    const ids = visibleRuns().filter((id) => state.runs.get(id).config);
    const n = ids.length ? configTable($("config"), ids, state.diffOnly) : 0;
    $("config-section").hidden = n === 0;
  }

  function renderMedia() {
    const host = $("media");
    host.textContent = "";
    const items = state.project ? state.project.media : [];
    $("media-section").hidden = items.length === 0;
    for (const m of items.slice(-100).reverse()) {
      const run = state.runs.get(m.run_id);
      const div = document.createElement("div");
      div.className = "media-item";
      div.dataset.type = m.type;
      const cap = document.createElement("div");
      cap.textContent = m.key + " · " + (run ? run.name : m.run_id) + " · step " + m.step;
      div.append(cap);
      if (m.type === "trackio.image" && m.path) {
        const img = document.createElement("img");
        img.loading = "lazy";
        img.alt = m.caption || m.key;
        img.src = "api/media?project=" + encodeURIComponent(state.project.name) + "&path=" + encodeURIComponent(m.path);
        div.append(img);
      } else if (m.type === "trackio.table") {
        const t = document.createElement("div");
        t.className = "muted";
        t.textContent = "table: " + m.rows + " rows × " + m.cols + " columns";
        div.append(t);
      } else {
        const t = document.createElement("div");
        t.className = "muted";
        t.textContent = m.type;
        div.append(t);
      }
      if (m.caption) {
        const c = document.createElement("div");
        c.className = "muted";
        c.textContent = m.caption;
        div.append(c);
      }
      host.append(div);
    }
  }

  function higherIsBetter(name) { return !/(loss|err|error|perplexity|ppl|wer|cer|mse|mae|rmse|time|latency)/i.test(name); }

  function renderCompare() {
    const pick = $("compare-pick");
    pick.textContent = "";
    state.compare = state.compare.filter((id) => state.runs.has(id));
    if (state.compare.length === 0) state.compare = state.order.slice(0, Math.min(3, state.order.length));
    for (const id of state.order) {
      const r = state.runs.get(id);
      const li = document.createElement("li");
      const label = document.createElement("label");
      const cb = document.createElement("input");
      cb.type = "checkbox";
      cb.value = id;
      cb.checked = state.compare.includes(id);
      cb.disabled = !cb.checked && state.compare.length >= MAX_COMPARE;
      cb.addEventListener("change", () => {
        if (cb.checked) state.compare.push(id); else state.compare = state.compare.filter((x) => x !== id);
        saveURL();
        renderCompare();
      });
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = r.color;
      label.append(cb, " ", sw, " ", r.name);
      li.append(label);
      pick.append(li);
    }
    const runs = state.compare.map((id) => state.runs.get(id));
    const table = $("compare-metrics");
    table.textContent = "";
    const thead = document.createElement("thead");
    const hr = document.createElement("tr");
    const corner = document.createElement("th");
    corner.textContent = "final value";
    hr.append(corner);
    for (const r of runs) { const th = document.createElement("th"); th.textContent = r.name; hr.append(th); }
    thead.append(hr);
    const tbody = document.createElement("tbody");
    const names = new Set();
    for (const r of runs) for (const k of r.metrics.keys()) names.add(k);
    for (const k of [...names].sort()) {
      const vals = runs.map((r) => { const s = r.metrics.get(k); return s ? s[0] : null; });
      const finite = vals.filter((v) => v !== null && Number.isFinite(v));
      const best = finite.length > 1 ? (higherIsBetter(k) ? Math.max(...finite) : Math.min(...finite)) : null;
      const tr = document.createElement("tr");
      tr.dataset.metric = k;
      const th = document.createElement("th");
      th.textContent = k;
      tr.append(th);
      for (const v of vals) {
        const td = document.createElement("td");
        td.textContent = fmtVal(v);
        if (best !== null && v === best) td.className = "best";
        tr.append(td);
      }
      tbody.append(tr);
    }
    table.append(thead, tbody);
    configTable($("compare-config"), state.compare, false);
  }

  function renderView() {
    $("view-charts").hidden = state.view !== "charts";
    $("view-compare").hidden = state.view !== "compare";
    $("tab-charts").setAttribute("aria-current", state.view === "charts" ? "page" : "false");
    $("tab-compare").setAttribute("aria-current", state.view === "compare" ? "page" : "false");
  }

  function renderXAxis() {
    const sel = $("xaxis");
    sel.textContent = "";
    const opts = [["step", "Step"], ["wall", "Wall time"], ["rel", "Relative time"]];
    for (const n of metricNames(false)) opts.push(["m:" + n, n]);
    if (!opts.some(([v]) => v === state.x)) opts.push([state.x, state.x.startsWith("m:") ? state.x.slice(2) : state.x]);
    for (const [v, label] of opts) {
      const o = document.createElement("option");
      o.value = v;
      o.textContent = label;
      if (v === state.x) o.selected = true;
      sel.append(o);
    }
  }

  function renderSmoothing() {
    const out = $("smoothing-value");
    $("smoothing").value = String(state.smooth);
    out.textContent = state.smooth > 0 ? state.smooth.toFixed(2) : "off";
    out.className = state.smooth > 0 ? "" : "smooth-off";
  }

  function renderAll() {
    renderView();
    renderSide();
    renderXAxis();
    renderSmoothing();
    $("search").value = state.q;
    $("logscale").checked = state.log;
    $("config-diff").checked = state.diffOnly;
    renderGroups();
    renderConfig();
    renderMedia();
    if (state.view === "compare") renderCompare();
  }

  // ---- controls ------------------------------------------------------------------
  $("project").addEventListener("change", (e) => { state.hidden.clear(); state.zoom.clear(); state.compare = []; connect(e.target.value); });
  $("search").addEventListener("input", (e) => {
    state.q = e.target.value;
    saveURL();
    renderGroups();
    fetchCharts([...state.charts.values()].filter((c) => !c.el.hidden && !c.u && !c.folded));
  });
  $("xaxis").addEventListener("change", (e) => {
    state.x = e.target.value;
    state.zoom.clear();
    saveURL();
    for (const c of state.charts.values()) { if (c.u) c.u.destroy(); c.u = null; c.sig = ""; c.data = new Map(); }
    fetchCharts([...state.charts.values()].filter((c) => !c.folded));
  });
  $("smoothing").addEventListener("input", (e) => {
    state.smooth = parseFloat(e.target.value) || 0;
    renderSmoothing();
    saveURL();
    for (const c of state.charts.values()) if (c.u) schedule(c);
  });
  $("logscale").addEventListener("change", (e) => { state.log = e.target.checked; saveURL(); for (const c of state.charts.values()) if (c.u) schedule(c); });
  $("config-diff").addEventListener("change", (e) => { state.diffOnly = e.target.checked; saveURL(); renderConfig(); });
  $("runs-all").addEventListener("click", () => { state.hidden.clear(); onSelection(); });
  $("runs-none").addEventListener("click", () => { for (const id of state.order) state.hidden.add(id); onSelection(); });
  $("tab-charts").addEventListener("click", () => { state.view = "charts"; saveURL(); renderView(); for (const c of state.charts.values()) if (c.u) schedule(c); });
  $("tab-compare").addEventListener("click", () => { state.view = "compare"; saveURL(); renderView(); renderCompare(); });

  // Follow the system's colour scheme: charts are redrawn in its colours.
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
    for (const c of state.charts.values()) if (c.u) { c.u.destroy(); c.u = null; c.sig = ""; schedule(c); }
  });
  // Statuses and durations move with the clock.
  setInterval(() => { if (state.project) renderSide(); }, 5000);

  // Test hooks: which chart, and how many points each run has in it.
  state.chart = (key) => state.charts.get(key);
  state.status = (id) => { const r = state.runs.get(id); return r ? statusOf(r) : ""; };

  renderView();
  connect(wantProject);
})();
