// Abacus dashboard: reads this node's API and draws it. Plain browser
// JavaScript, no dependencies, nothing loaded from elsewhere.
'use strict';

(function () {
  const SPANS = { '1h': 3600, '6h': 6 * 3600, '24h': 86400, '7d': 7 * 86400, '30d': 30 * 86400 };
  const STEPS = { '1m': 60, '5m': 300, '15m': 900, '1h': 3600, '1d': 86400 };
  // Every 5 s; #refresh=N in the address sets N seconds (1 to 300).
  const REFRESH_MS = (() => {
    const r = Number(new URLSearchParams(location.hash.replace(/^#/, '')).get('refresh'));
    return Number.isInteger(r) && r >= 1 && r <= 300 ? r * 1000 : 5000;
  })();
  const TIMEOUT_MS = 10000;
  const PAGE_SIZE = 50;
  const MAX_POINTS = 11000; // the API's limit per range query
  const TOKEN_KEY = 'abacus.token';
  const UTC_KEY = 'abacus.utc';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  // The API lives next to /ui/: resolving against the page keeps the
  // dashboard working behind a proxy that mounts the node under a path.
  const API_BASE = new URL('../v1/', location.href);

  const $ = (id) => document.getElementById(id);

  const state = {
    token: storageGet(TOKEN_KEY) || '',
    utc: storageGet(UTC_KEY) === '1',
    auto: true,
    // Counter list paging: after is the current page's cursor, back the
    // cursors of the pages before it, next the cursor the server gave.
    prefix: '',
    after: '',
    back: [],
    next: null,
    counter: '',
    compare: '', // a second counter drawn over the first
    picked: false, // a counter was chosen (by hand, the address, or once at start)
    sort: 'name', // counter list order on the page: name, total or rate
    seen: new Map(), // counter name → {total, t}: the last total seen, for rates
    rates: new Map(), // counter name → increase per minute between the last two sightings
    prevMetrics: null, // the last /metrics figures, for rates over the refresh
    span: '1h',
    step: '1m',
    chart: null, // last good range answer: {data, span, step}
    self: null,
    errors: { counters: null, chart: null, cluster: null, node: null },
    updated: null,
  };
  // A sequence number per panel: an answer that arrives after a newer
  // request was sent is dropped, so a slow answer never overwrites a newer
  // selection.
  const seq = { counters: 0, chart: 0, cluster: 0, node: 0 };

  function storageGet(k) {
    try { return localStorage.getItem(k); } catch (e) { return null; }
  }
  function storageSet(k, v) {
    try {
      if (v === null || v === '') localStorage.removeItem(k); else localStorage.setItem(k, v);
    } catch (e) { /* storage disabled: the setting lasts for this page only */ }
  }

  // ---- API ----------------------------------------------------------------

  class APIError extends Error {
    constructor(status, title, detail, type) {
      super(detail || title);
      this.status = status;
      this.title = title;
      this.detail = detail;
      this.type = type || '';
    }
  }

  // parseJSON keeps integers above 2^53 exact (totals are uint64) by turning
  // them into BigInt, where the browser tells the reviver the source text.
  function parseJSON(text) {
    return JSON.parse(text, function (key, value, ctx) {
      if (typeof value === 'number' && Number.isInteger(value) && !Number.isSafeInteger(value) &&
          ctx && typeof ctx.source === 'string' && /^\d+$/.test(ctx.source)) {
        return BigInt(ctx.source);
      }
      return value;
    });
  }

  async function api(path, params) {
    const url = new URL(path, API_BASE);
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== '' && v !== null && v !== undefined) url.searchParams.set(k, String(v));
    }
    const headers = { Accept: 'application/json' };
    if (state.token) headers.Authorization = 'Bearer ' + state.token;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    let resp, text;
    try {
      resp = await fetch(url, { headers, signal: ctl.signal, cache: 'no-store', credentials: 'omit' });
      text = await resp.text();
    } catch (e) {
      const why = e && e.name === 'AbortError' ? 'no answer within ' + TIMEOUT_MS / 1000 + ' s' : 'the node cannot be reached';
      throw new APIError(0, 'Network error', why);
    } finally {
      clearTimeout(timer);
    }
    let body = null;
    if (text) {
      try { body = parseJSON(text); } catch (e) { body = null; }
    }
    if (!resp.ok) {
      const p = body && typeof body === 'object' ? body : {};
      throw new APIError(resp.status, p.title || resp.statusText || 'HTTP ' + resp.status, p.detail || '', p.type);
    }
    if (body === null) throw new APIError(resp.status, 'Bad answer', 'the node did not answer JSON');
    return body;
  }

  // fetchText gets a route outside /v1 (/readyz, /metrics) as text, with the
  // token; it resolves whatever the status.
  async function fetchText(path) {
    const headers = {};
    if (state.token) headers.Authorization = 'Bearer ' + state.token;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    try {
      const resp = await fetch(new URL(path, API_BASE), { headers, signal: ctl.signal, cache: 'no-store', credentials: 'omit' });
      return { status: resp.status, text: await resp.text() };
    } catch (e) {
      throw new APIError(0, 'Network error', 'the node cannot be reached');
    } finally {
      clearTimeout(timer);
    }
  }

  // parseMetrics reads Prometheus text: name → [{labels, value}].
  function parseMetrics(text) {
    const out = new Map();
    for (const line of text.split('\n')) {
      if (!line || line[0] === '#') continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const labels = {};
      for (const lm of (m[2] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[lm[1]] = lm[2];
      if (!out.has(m[1])) out.set(m[1], []);
      out.get(m[1]).push({ labels, value: Number(m[3]) });
    }
    return out;
  }
  function metricSum(ms, name) {
    return (ms.get(name) || []).reduce((a, x) => a + x.value, 0);
  }

  // Counter names are [A-Za-z0-9_.:-]; those go into the path as they are
  // (an escaped ':' would reach the router escaped). Anything else is escaped
  // and the server answers with a problem.
  function pathName(name) {
    return name.replace(/[^A-Za-z0-9_.:-]/g, (c) => encodeURIComponent(c));
  }

  // ---- formatting -----------------------------------------------------------

  const numberFmt = new Intl.NumberFormat('en-US');
  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

  function fmtCount(v) { return numberFmt.format(v); }

  function fmtCompact(n) {
    const a = Math.abs(n);
    const units = [[1e15, 'P'], [1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
    for (const [u, s] of units) {
      if (a >= u) return trimNum(n / u) + s;
    }
    return trimNum(n);
  }
  function trimNum(x) { return String(Math.round(x * 10) / 10); }

  function timeParts(sec) {
    const d = new Date(sec * 1000);
    return state.utc
      ? { y: d.getUTCFullYear(), mo: d.getUTCMonth(), d: d.getUTCDate(), h: d.getUTCHours(), mi: d.getUTCMinutes() }
      : { y: d.getFullYear(), mo: d.getMonth(), d: d.getDate(), h: d.getHours(), mi: d.getMinutes() };
  }
  const pad = (n) => String(n).padStart(2, '0');
  function fmtHM(sec) { const p = timeParts(sec); return pad(p.h) + ':' + pad(p.mi); }
  function fmtDay(sec) { const p = timeParts(sec); return MONTHS[p.mo] + ' ' + p.d; }
  function fmtDayHM(sec) { return fmtDay(sec) + ' ' + fmtHM(sec); }
  function fmtSpan(a, b) {
    // b is exclusive; a whole-day span reads as days.
    if ((b - a) % 86400 === 0 && fmtHM(a) === '00:00') {
      return b - a === 86400 ? fmtDay(a) : fmtDay(a) + ' – ' + fmtDay(b - 86400);
    }
    return fmtDay(a) === fmtDay(b) ? fmtDayHM(a) + ' – ' + fmtHM(b) : fmtDayHM(a) + ' – ' + fmtDayHM(b);
  }
  function tzName() {
    if (state.utc) return 'UTC';
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || 'local time'; } catch (e) { return 'local time'; }
  }
  function fmtAge(s) {
    if (s < 1) return Math.round(s * 1000) + ' ms';
    if (s < 90) return (Math.round(s * 10) / 10) + ' s';
    if (s < 5400) return Math.round(s / 60) + ' min';
    return (Math.round(s / 360) / 10) + ' h';
  }
  function fmtBytes(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : Math.round(n * 10) / 10) + ' ' + units[i];
  }
  function fmtRate(perSec) {
    if (perSec === 0) return '0/s';
    if (perSec < 0.1) return trimNum(perSec * 60) + '/min';
    return fmtCompact(perSec) + '/s';
  }
  function fmtAgo(sec) {
    if (sec < 90) return Math.max(0, Math.round(sec)) + ' s ago';
    if (sec < 5400) return Math.round(sec / 60) + ' min ago';
    if (sec < 2 * 86400) return (Math.round(sec / 360) / 10) + ' h ago';
    return Math.round(sec / 86400) + ' d ago';
  }
  function fmtClock(d) {
    return state.utc
      ? pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()) + ':' + pad(d.getUTCSeconds())
      : pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }

  // ---- DOM helpers ------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'data') Object.assign(e.dataset, v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function problemNode(e) {
    const frag = document.createDocumentFragment();
    const head = e.status ? e.title + ' (' + e.status + ')' : e.title;
    frag.append(el('strong', null, head), e.detail ? ': ' + e.detail : '');
    return frag;
  }

  function showNotice(node, e) {
    if (!e) { node.hidden = true; node.replaceChildren(); return; }
    node.replaceChildren(problemNode(e));
    node.hidden = false;
  }

  // ---- status and auth ----------------------------------------------------------

  // An auth failure is told once, in the banner; the panels it emptied only
  // say what they wait for.
  const isAuth = (e) => !!e && (e.status === 401 || e.status === 403);

  function setError(panel, e) {
    state.errors[panel] = e || null;
    updateStatus();
  }

  function updateStatus() {
    const errs = Object.values(state.errors).filter(Boolean);
    const auth = errs.find((e) => e.status === 401 || e.status === 403);
    const down = errs.find((e) => e.status === 0 || e.status >= 500);
    const banner = $('auth-banner');
    if (auth) {
      banner.replaceChildren(auth.status === 401
        ? el('span', null, el('strong', null, 'Authentication required (401). '),
          state.token ? 'The node refused the saved token; enter a valid one in the Token field above.'
            : 'This node needs a bearer token: enter one in the Token field above.',
          auth.detail ? ' (' + auth.detail + ')' : '')
        : el('span', null, el('strong', null, 'Permission denied (403). '),
          'The token is valid but lacks the role this page needs (read).',
          auth.detail ? ' (' + auth.detail + ')' : ''));
      banner.hidden = false;
    } else {
      banner.hidden = true;
    }
    const box = $('status');
    let cls, text;
    if (down) {
      cls = 'status-err';
      text = down.status ? 'Error ' + down.status : 'Unreachable';
    } else if (auth) {
      cls = 'status-warn';
      text = auth.status === 401 ? 'Token needed' : 'Forbidden';
    } else if (state.updated) {
      cls = state.auto ? 'status-ok' : 'status-wait';
      text = (state.auto ? 'Live · ' : 'Paused · ') + fmtClock(state.updated);
    } else {
      cls = 'status-wait';
      text = 'Connecting…';
    }
    box.className = 'status ' + cls;
    $('status-text').textContent = text;
    box.title = down ? down.title + (down.detail ? ': ' + down.detail : '') : '';
  }

  // ---- counters -------------------------------------------------------------------

  async function loadCounters() {
    const my = ++seq.counters;
    try {
      const data = await api('counters', { prefix: state.prefix, after: state.after, limit: PAGE_SIZE });
      if (my !== seq.counters) return;
      noteRates(data.counters || []);
      renderCounters(data);
      pickFirst(data.counters || []);
      showNotice($('counters-error'), null);
      setError('counters', null);
    } catch (e) {
      if (my !== seq.counters) return;
      if (isAuth(e)) {
        renderCounters({ counters: [], next: null });
        $('counters-empty').textContent = 'Waiting for a valid token.';
      }
      showNotice($('counters-error'), isAuth(e) ? null : e);
      setError('counters', e);
    }
  }

  // noteRates turns two sightings of a counter's total into its rate.
  function noteRates(list) {
    const now = Date.now() / 1000;
    for (const c of list) {
      const total = Number(c.total);
      const prev = state.seen.get(c.name);
      if (prev && now - prev.t >= 0.5) {
        state.rates.set(c.name, Math.max(0, total - prev.total) / (now - prev.t) * 60);
      }
      if (!prev || now - prev.t >= 0.5) state.seen.set(c.name, { total, t: now });
    }
  }

  // pickFirst shows the counter with the largest total on the first page
  // when nothing was chosen, so that the Range panel starts with a chart.
  function pickFirst(list) {
    if (state.picked || state.counter || list.length === 0) return;
    let best = list[0];
    for (const c of list) if (Number(c.total) > Number(best.total)) best = c;
    selectCounter(best.name);
  }

  function sortedCounters(list) {
    const out = list.slice();
    const rate = (c) => (state.rates.has(c.name) ? state.rates.get(c.name) : -1);
    if (state.sort === 'total') out.sort((a, b) => Number(b.total) - Number(a.total) || (a.name < b.name ? -1 : 1));
    if (state.sort === 'rate') out.sort((a, b) => rate(b) - rate(a) || Number(b.total) - Number(a.total));
    return out;
  }

  function fmtPerMin(name) {
    if (!state.rates.has(name)) return '—';
    const r = state.rates.get(name);
    return r === 0 ? '0' : r < 10 ? trimNum(r) : fmtCount(Math.round(r));
  }

  function renderCounters(data) {
    const list = sortedCounters(Array.isArray(data.counters) ? data.counters : []);
    const tbody = $('counters').tBodies[0];
    const old = tbody.rows;
    const rateAttr = (c) => (state.rates.has(c.name) ? String(state.rates.get(c.name)) : null);
    if (old.length === list.length && list.every((c, i) => old[i].dataset.name === c.name)) {
      // Same names: update the totals in place, so that a refresh keeps the
      // row under the pointer and the keyboard focus where they are.
      list.forEach((c, i) => {
        old[i].dataset.total = String(c.total);
        old[i].cells[1].textContent = fmtCount(c.total);
        if (rateAttr(c) !== null) old[i].dataset.rate = rateAttr(c);
        old[i].cells[2].textContent = fmtPerMin(c.name);
      });
    } else {
      tbody.replaceChildren(...list.map((c) => el('tr', { tabindex: 0, data: rateAttr(c) === null ? { name: c.name, total: String(c.total) } : { name: c.name, total: String(c.total), rate: rateAttr(c) } },
        el('td', { class: 'name' }, c.name),
        el('td', { class: 'num total' }, fmtCount(c.total)),
        el('td', { class: 'num rate muted' }, fmtPerMin(c.name)))));
    }
    $('counters').dataset.sort = state.sort;
    const names = $('counter-names');
    names.replaceChildren(...list.map((c) => el('option', { value: c.name })));
    markSelectedRow();
    state.next = typeof data.next === 'string' && data.next !== '' ? data.next : null;
    $('next').disabled = state.next === null;
    $('prev').disabled = state.back.length === 0;
    $('page-label').textContent = 'Page ' + (state.back.length + 1);
    const empty = $('counters-empty');
    empty.hidden = list.length > 0;
    empty.textContent = state.prefix ? 'No counters start with “' + state.prefix + '”.' : 'No counters yet.';
    $('counters-meta').textContent = list.length
      ? list.length + (list.length === 1 ? ' counter' : ' counters') + (state.next ? ' on this page' : '') : '';
  }

  function markSelectedRow() {
    for (const tr of $('counters').tBodies[0].rows) {
      tr.classList.toggle('selected', tr.dataset.name === state.counter);
    }
  }

  // ---- chart --------------------------------------------------------------------

  async function loadChart() {
    const my = ++seq.chart;
    const name = state.counter;
    if (!name) {
      state.chart = null;
      renderChart();
      return;
    }
    const span = state.span;
    const step = state.step;
    const compare = state.compare && state.compare !== name ? state.compare : '';
    const to = Math.ceil(Date.now() / 1000);
    const q = { from: to - SPANS[span], to, step };
    try {
      const [data, cmp, detail] = await Promise.all([
        api('counters/' + pathName(name) + '/range', q),
        // A comparison that fails is told, but the main chart still shows.
        compare ? api('counters/' + pathName(compare) + '/range', q).catch((e) => ({ error: e })) : null,
        // The per-DC split is a nicety: without it the chart still shows.
        api('counters/' + pathName(name), { detail: 'true' }).catch(() => null),
      ]);
      if (my !== seq.chart) return;
      const cmpErr = cmp && cmp.error ? cmp.error : null;
      state.chart = { data, span, step, cmp: cmpErr ? null : cmp, detail };
      showNotice($('chart-error'), cmpErr ? new APIError(cmpErr.status, 'Compare with ' + compare + ': ' + cmpErr.title, cmpErr.detail) : null);
      setError('chart', null);
    } catch (e) {
      if (my !== seq.chart) return;
      // A refused query (bad name, too many points) has no chart to show; a
      // node that is briefly away leaves the last chart up.
      if (e.status >= 400 && e.status < 500) state.chart = null;
      showNotice($('chart-error'), isAuth(e) ? null : e);
      // A refused query is the selection's fault, not the node's: it does
      // not turn the status red.
      setError('chart', e.status === 0 || e.status >= 500 || isAuth(e) ? e : null);
    }
    renderChart();
  }

  function niceStep(raw) {
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
  }

  const TICK_INTERVALS = [60, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400];

  function renderChart() {
    const root = $('chart');
    const cd = state.chart;
    $('tooltip').hidden = true;
    if (!cd) {
      root.replaceChildren();
      for (const a of ['data-counter', 'data-span', 'data-step', 'data-resolution', 'data-partial', 'data-sum', 'data-points', 'data-compare']) root.removeAttribute(a);
      $('chart-stats').hidden = true;
      $('legend').hidden = true;
      $('bydc-wrap').hidden = true;
      $('partial').hidden = true;
      const ph = $('chart-placeholder');
      ph.hidden = false;
      ph.textContent = !state.counter ? 'Pick a counter from the list, or type its name above.'
        : isAuth(state.errors.chart) ? 'Waiting for a valid token.'
          : $('chart-error').hidden ? 'Loading ' + state.counter + '…' : 'No chart for this selection.';
      return;
    }
    $('chart-placeholder').hidden = true;
    const data = cd.data;
    const points = Array.isArray(data.points) ? data.points : [];
    const n = points.length;
    const from = Date.parse(data.from) / 1000;
    const to = Date.parse(data.to) / 1000;
    const stepSec = n > 0 ? (to - from) / n : STEPS[cd.step];
    const counts = points.map((p) => Number(p.count));
    let peak = 0;
    for (const c of counts) if (c > peak) peak = c;
    const cmpPoints = cd.cmp && Array.isArray(cd.cmp.points) && cd.cmp.points.length === n ? cd.cmp.points : null;
    const cmpCounts = cmpPoints ? cmpPoints.map((p) => Number(p.count)) : [];
    let drawPeak = peak;
    for (const c of cmpCounts) if (c > drawPeak) drawPeak = c;
    // The last step may not be over yet: its bar is still filling, and a
    // short bar there is not a drop.
    const nowSec = Date.now() / 1000;
    const filling = n > 0 && from + n * stepSec > nowSec;

    const W = Math.max(320, Math.floor($('chart-wrap').clientWidth));
    const H = 300;
    const m = { l: 52, r: 12, t: 12, b: 30 };
    const pw = W - m.l - m.r;
    const ph = H - m.t - m.b;
    root.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    root.setAttribute('width', W);
    root.setAttribute('height', H);

    const frag = document.createDocumentFragment();
    // Y axis: about five gridlines at round numbers.
    const ystep = drawPeak > 0 ? Math.max(1, niceStep(drawPeak / 4)) : 1;
    const ytop = drawPeak > 0 ? Math.ceil(drawPeak / ystep) * ystep : 4;
    const y = (v) => m.t + ph - (v / ytop) * ph;
    for (let v = 0; v <= ytop + ystep / 2; v += ystep) {
      const yy = Math.round(y(v)) + 0.5;
      frag.append(svg('line', { class: v === 0 ? 'baseline' : 'grid', x1: m.l, x2: W - m.r, y1: yy, y2: yy }));
      frag.append(svg('text', { class: 'ylabel', x: m.l - 8, y: yy }, fmtCompact(v)));
    }

    // X axis: ticks at round times in the shown time zone.
    const total = to - from;
    const maxTicks = Math.max(2, Math.floor(pw / 78));
    let iv = TICK_INTERVALS.find((t) => total / t <= maxTicks);
    if (!iv) iv = 7 * 86400 * Math.ceil(total / (7 * 86400) / maxTicks);
    const offset = state.utc ? 0 : -new Date(from * 1000).getTimezoneOffset() * 60;
    const xAt = (t) => m.l + ((t - from) / total) * pw;
    for (let t = Math.ceil((from + offset) / iv) * iv - offset; t <= to; t += iv) {
      const xx = Math.round(xAt(t)) + 0.5;
      const midnight = fmtHM(t) === '00:00';
      const label = iv >= 86400 || midnight ? fmtDay(t) : fmtHM(t);
      frag.append(svg('line', { class: 'tick', x1: xx, x2: xx, y1: m.t + ph, y2: m.t + ph + 5 }));
      frag.append(svg('text', { class: 'xlabel' + (midnight && iv < 86400 ? ' day' : ''), x: xx, y: H - 8 }, label));
    }

    // One bar per point, each carrying its start and exact count.
    const bw = n > 0 ? pw / n : pw;
    const gap = bw >= 6 ? Math.max(1, bw * 0.18) : bw >= 3 ? 1 : 0;
    const hl = svg('rect', { class: 'hl', x: 0, y: m.t, width: 0, height: ph, visibility: 'hidden' });
    frag.append(hl);
    const bars = svg('g', { class: 'points' });
    for (let i = 0; i < n; i++) {
      let h = (counts[i] / ytop) * ph;
      if (counts[i] > 0 && h < 1) h = 1;
      const last = filling && i === n - 1;
      const attrs = {
        class: last ? 'pt filling' : 'pt',
        x: (m.l + i * bw + gap / 2).toFixed(2),
        y: (m.t + ph - h).toFixed(2),
        width: Math.max(bw - gap, 0.6).toFixed(2),
        height: h.toFixed(2),
        'data-start': points[i].start,
        'data-count': String(points[i].count),
      };
      if (last) attrs['data-filling'] = 'true';
      bars.append(svg('rect', attrs));
    }
    frag.append(bars);
    if (filling) {
      // A dashed outline of the whole step and a label: "this one is not over".
      const x = m.l + (n - 1) * bw + gap / 2;
      frag.append(svg('rect', { class: 'filling-frame', x: x.toFixed(2), y: m.t, width: Math.max(bw - gap, 0.6).toFixed(2), height: ph }));
      const lx = Math.min(Math.max(x + (bw - gap) / 2, m.l + 24), W - m.r - 24);
      frag.append(svg('text', { class: 'filling-label', x: lx.toFixed(2), y: m.t + 10 }, 'filling'));
    }
    if (cmpPoints) {
      const cx = (i) => (m.l + (i + 0.5) * bw).toFixed(2);
      const g = svg('g', { class: 'cmp' });
      g.append(svg('polyline', { class: 'cmp-line', points: cmpCounts.map((c, i) => cx(i) + ',' + y(c).toFixed(2)).join(' ') }));
      if (n <= 120) {
        cmpCounts.forEach((c, i) => g.append(svg('circle', { class: 'cmp-dot', cx: cx(i), cy: y(c).toFixed(2), r: 2.5, 'data-cmp-start': cmpPoints[i].start, 'data-cmp-count': String(cmpPoints[i].count) })));
      }
      frag.append(g);
    }
    if (drawPeak === 0) {
      frag.append(svg('text', { class: 'nodata', x: m.l + pw / 2, y: m.t + ph / 2 }, 'No events in this range'));
    }
    const hover = svg('rect', { class: 'hover', x: m.l, y: m.t, width: pw, height: ph });
    frag.append(hover);
    root.replaceChildren(frag);

    let on = null;
    const tip = $('tooltip');
    hover.addEventListener('mousemove', (ev) => {
      const r = root.getBoundingClientRect();
      const scale = W / r.width;
      const i = Math.floor(((ev.clientX - r.left) * scale - m.l) / bw);
      if (i < 0 || i >= n) return;
      if (on) on.classList.remove('on');
      on = bars.children[i];
      on.classList.add('on');
      hl.setAttribute('x', (m.l + i * bw).toFixed(2));
      hl.setAttribute('width', bw.toFixed(2));
      hl.setAttribute('visibility', 'visible');
      const start = from + i * stepSec;
      tip.replaceChildren(el('b', null, fmtCount(points[i].count)),
        cmpPoints ? el('span', { class: 'tip-cmp' }, ' vs ' + fmtCount(cmpPoints[i].count) + ' ' + cd.cmp.name) : null,
        el('br'), fmtSpan(start, start + stepSec),
        filling && i === n - 1 ? el('span', null, el('br'), 'still filling: the step is not over') : null);
      tip.style.left = Math.min(Math.max((m.l + (i + 0.5) * bw) / scale, 70), r.width - 70) + 'px';
      tip.hidden = false;
    });
    hover.addEventListener('mouseleave', () => {
      if (on) on.classList.remove('on');
      on = null;
      hl.setAttribute('visibility', 'hidden');
      tip.hidden = true;
    });

    // What the chart shows, for people and for tests.
    root.setAttribute('data-counter', data.name);
    root.setAttribute('data-span', cd.span);
    root.setAttribute('data-step', data.step);
    root.setAttribute('data-resolution', data.resolution);
    root.setAttribute('data-partial', String(!!data.partial));
    root.setAttribute('data-sum', String(data.sum));
    root.setAttribute('data-points', String(n));
    if (cmpPoints) root.setAttribute('data-compare', cd.cmp.name); else root.removeAttribute('data-compare');
    root.setAttribute('aria-label', 'Counts of ' + data.name + ' per ' + data.step + ', ' + fmtSpan(from, to));

    $('stat-sum').textContent = fmtCount(data.sum);
    $('stat-peak').textContent = fmtCount(peak);
    $('stat-points').textContent = fmtCount(n) + ' × ' + data.step;
    $('stat-res').textContent = data.resolution + ' windows';
    $('stat-range').textContent = fmtSpan(from, to) + ' (' + tzName() + ')';
    $('chart-stats').hidden = false;
    renderLegend(data, cmpPoints ? cd.cmp : null, filling);
    renderByDC(cd.detail);
    const partial = $('partial');
    if (data.partial) {
      partial.replaceChildren(el('strong', null, 'Partial: '),
        'part of this range is older than the retention of ' + data.resolution +
        ' windows, so its points read 0 for lack of data, not of events. A larger step reads coarser windows that are kept longer.');
      partial.hidden = false;
    } else {
      partial.hidden = true;
    }
  }

  function renderLegend(data, cmp, filling) {
    const lg = $('legend');
    const items = [el('span', { class: 'lg' }, el('i', { class: 'sw sw-bar' }), data.name + ' · ' + fmtCount(data.sum))];
    if (cmp) items.push(el('span', { class: 'lg' }, el('i', { class: 'sw sw-cmp' }), cmp.name + ' · ' + fmtCount(cmp.sum)));
    if (filling) items.push(el('span', { class: 'lg muted' }, el('i', { class: 'sw sw-filling' }), 'last step still filling'));
    lg.replaceChildren(...items);
    lg.hidden = false;
  }

  // renderByDC shows the counter's total per datacenter (?detail=true).
  function renderByDC(detail) {
    const wrap = $('bydc-wrap');
    if (!detail || !detail.by_dc || typeof detail.by_dc !== 'object') { wrap.hidden = true; return; }
    const rows = Object.entries(detail.by_dc).map(([dc, c]) => [dc, Number(c)]).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    const total = rows.reduce((a, r) => a + r[1], 0);
    $('bydc').replaceChildren(...rows.map(([dc, c]) => {
      const pct = total > 0 ? (c / total) * 100 : 0;
      // The width through the CSSOM: the page's CSP refuses style attributes.
      const fill = el('span', { class: 'dc-fill' });
      fill.style.width = pct.toFixed(1) + '%';
      return el('div', { class: 'dc-row', data: { dc, count: String(detail.by_dc[dc]) } },
        el('span', { class: 'dc-name mono' }, dc),
        el('span', { class: 'dc-bar' }, fill),
        el('span', { class: 'dc-count num' }, fmtCount(detail.by_dc[dc])),
        el('span', { class: 'dc-pct num muted' }, (Math.round(pct * 10) / 10) + '%'));
    }));
    const replicas = Array.isArray(detail.replicas) ? detail.replicas.length : 0;
    $('bydc-meta').textContent = '· all time · ' + replicas + (replicas === 1 ? ' replica' : ' replicas');
    wrap.hidden = rows.length === 0;
  }

  // ---- this node's health ------------------------------------------------------------

  function setTile(id, value, note, cls) {
    const t = $(id);
    t.querySelector('.stat-value').textContent = value;
    t.querySelector('.stat-note').textContent = note || '';
    t.dataset.value = value;
    t.className = 'stat' + (cls ? ' ' + cls : '');
  }

  async function loadNode() {
    const my = ++seq.node;
    try {
      const [ready, metrics] = await Promise.all([fetchText('../readyz'), fetchText('../metrics')]);
      if (my !== seq.node) return;
      // /readyz: JSON either way; a 503's detail says why.
      let why = '';
      if (ready.status !== 200) {
        try { why = JSON.parse(ready.text).detail || ''; } catch (e) { why = ready.text; }
      }
      setTile('node-ready', ready.status === 200 ? 'Ready' : 'Not ready', ready.status === 200 ? 'takes traffic' : 'see below', ready.status === 200 ? 'good' : 'bad');
      const reason = $('node-reason');
      if (why) {
        reason.replaceChildren(el('strong', null, 'Not ready: '), why);
        reason.hidden = false;
      } else {
        reason.hidden = true;
      }
      if (metrics.status !== 200) {
        for (const id of ['node-writes', 'node-reqs', 'node-incs', 'node-commit', 'node-disk', 'node-version']) setTile(id, '—', metrics.status === 401 || metrics.status === 403 ? 'needs the read role' : 'no metrics');
        setError('node', metrics.status === 401 || metrics.status === 403 ? new APIError(metrics.status, 'Token needed for /metrics', '') : null);
        return;
      }
      renderNode(parseMetrics(metrics.text));
      setError('node', null);
    } catch (e) {
      if (my !== seq.node) return;
      setTile('node-ready', 'Unreachable', e.detail, 'bad');
      setError('node', e);
    }
  }

  function renderNode(ms) {
    const now = Date.now() / 1000;
    const cur = {
      t: now,
      req: metricSum(ms, 'abacus_http_requests_total'),
      inc: metricSum(ms, 'abacus_increments_total'),
      csum: metricSum(ms, 'abacus_store_commit_duration_seconds_sum'),
      ccount: metricSum(ms, 'abacus_store_commit_duration_seconds_count'),
    };
    const started = metricSum(ms, 'process_start_time_seconds');
    const prev = state.prevMetrics && state.prevMetrics.t < now - 0.5 ? state.prevMetrics : null;
    // Over the last refresh when there was one; since the start before.
    const base = prev || { t: started > 0 ? started : now, req: 0, inc: 0, csum: 0, ccount: 0 };
    const dt = Math.max(now - base.t, 0.001);
    const over = prev ? 'last ' + Math.round(dt) + ' s' : 'since start';
    const writes = metricSum(ms, 'abacus_node_accepting_writes');
    setTile('node-writes', writes === 1 ? 'Taking writes' : 'Refusing writes', writes === 1 ? '' : 'the readiness note says why', writes === 1 ? 'good' : 'bad');
    setTile('node-reqs', fmtRate(Math.max(0, cur.req - base.req) / dt), over);
    setTile('node-incs', fmtRate(Math.max(0, cur.inc - base.inc) / dt), over);
    const commits = cur.ccount - base.ccount;
    if (commits > 0) {
      setTile('node-commit', fmtAge((cur.csum - base.csum) / commits), 'mean, ' + fmtCount(commits) + (commits === 1 ? ' commit, ' : ' commits, ') + over);
    } else if (cur.ccount > 0) {
      setTile('node-commit', fmtAge(cur.csum / cur.ccount), 'mean since start (idle now)');
    } else {
      setTile('node-commit', '—', 'no commit yet');
    }
    const files = ms.get('abacus_store_file_size_bytes') || [];
    setTile('node-disk', fmtBytes(metricSum(ms, 'abacus_store_file_size_bytes')), files.map((f) => f.labels.file).join(' + '));
    const bi = (ms.get('abacus_build_info') || [])[0];
    if (bi) {
      const rev = bi.labels.revision || '';
      setTile('node-version', bi.labels.version || '?', (rev.length > 12 ? rev.slice(0, 12) : rev) + ' · ' + (bi.labels.goversion || ''));
    }
    $('node-meta').textContent = started > 0 ? 'up ' + fmtAgo(now - started).replace(' ago', '') : '';
    if (!state.prevMetrics || state.prevMetrics.t < now - 0.5) state.prevMetrics = cur;
  }

  // ---- cluster ----------------------------------------------------------------------

  async function loadCluster() {
    const my = ++seq.cluster;
    try {
      const data = await api('cluster');
      if (my !== seq.cluster) return;
      renderCluster(data);
      showNotice($('cluster-error'), null);
      setError('cluster', null);
    } catch (e) {
      if (my !== seq.cluster) return;
      if (isAuth(e)) {
        $('self').replaceChildren();
        $('members').tBodies[0].replaceChildren();
        $('node-badge').hidden = true;
        $('cluster-meta').textContent = '';
      }
      showNotice($('cluster-error'), isAuth(e) ? null : e);
      setError('cluster', e);
    }
  }

  function renderCluster(data) {
    const self = data.self || {};
    state.self = self;
    const badge = $('node-badge');
    badge.textContent = (self.name || '?') + ' · ' + (self.dc || '?');
    badge.title = 'This node: ' + (self.name || '') + ', replica ' + (self.replica || '');
    badge.hidden = false;
    document.title = 'Abacus · ' + (self.name || '');

    const items = [['Node', self.name], ['Datacenter', self.dc], ['Replica', self.replica], ['Gossip', self.addr]];
    if (self.http) items.push(['HTTP', self.http]);
    $('self').replaceChildren(...items.map(([k, v]) => el('div', null, el('dt', null, k), el('dd', null, v || '—'))));

    const members = Array.isArray(data.members) ? data.members : [];
    const proto = location.protocol === 'https:' ? 'https://' : 'http://';
    const rows = members.map((mb) => {
      const isSelf = mb.name === self.name && (!mb.replica || !self.replica || mb.replica === self.replica);
      const st = mb.state || 'unknown';
      let http = '—';
      if (mb.http) {
        http = isSelf ? mb.http : el('a', { href: proto + mb.http + '/ui/', title: 'Open this node\'s dashboard' }, mb.http);
      }
      const lag = mb.lag;
      const lagCls = !lag ? '' : lag.seconds >= 60 || st === 'dead' ? 'lag-bad' : lag.seconds >= 5 ? 'lag-warn' : '';
      const since = mb.since ? Date.parse(mb.since) / 1000 : 0;
      return el('tr', { data: { name: mb.name, state: st }, title: mb.replica ? 'replica ' + mb.replica : null },
        el('td', { class: 'mono' }, mb.name, isSelf ? el('span', { class: 'tag' }, 'this node') : null),
        el('td', null, mb.dc || '—'),
        el('td', since ? { class: 'state', 'data-since': mb.since, title: 'since ' + mb.since } : { class: 'state' },
          el('span', { class: 'pill pill-' + st }, st),
          since ? el('span', { class: 'since muted' }, ' since ' + fmtDayHM(since) + ' (' + fmtAgo(Date.now() / 1000 - since) + ')') : null),
        el('td', { class: 'mono' }, mb.addr || '—'),
        el('td', { class: 'mono' }, http),
        el('td', { class: 'num ' + lagCls }, lag ? fmtCount(lag.seqs) : '—'),
        el('td', { class: 'num ' + lagCls, title: st === 'dead' ? 'as of its last digest: what it lacks of this node\'s commits' : null },
          lag ? (lag.seqs > 0 ? fmtAge(lag.seconds) : 'in sync') + (st === 'dead' ? ' (last seen)' : '') : '—'));
    });
    $('members').tBodies[0].replaceChildren(...rows);
    const alive = members.filter((mb) => mb.state === 'alive').length;
    $('cluster-meta').textContent = members.length + (members.length === 1 ? ' member' : ' members') + ' · ' + alive + ' alive';
  }

  // ---- refresh loop -----------------------------------------------------------------

  let timer = null;

  // Overlapping refreshes are harmless: each panel keeps only the answer to
  // its newest request.
  async function refreshAll() {
    await Promise.all([loadCounters(), loadChart(), loadCluster(), loadNode()]);
    state.updated = new Date();
    updateStatus();
  }

  function schedule() {
    clearTimeout(timer);
    timer = null;
    if (state.auto && !document.hidden) timer = setTimeout(tick, REFRESH_MS);
  }

  async function tick() {
    await refreshAll();
    schedule();
  }

  // ---- state in the address bar, so a view can be bookmarked or shared ------------------

  function readHash() {
    const h = new URLSearchParams(location.hash.replace(/^#/, ''));
    const c = h.get('counter');
    if (c) { state.counter = c; state.picked = true; }
    if (h.get('compare')) state.compare = h.get('compare');
    if (['name', 'total', 'rate'].includes(h.get('sort'))) state.sort = h.get('sort');
    if (SPANS[h.get('span')]) state.span = h.get('span');
    if (STEPS[h.get('step')]) state.step = h.get('step');
  }

  function writeHash() {
    const h = new URLSearchParams();
    if (state.counter) h.set('counter', state.counter);
    if (state.compare) h.set('compare', state.compare);
    h.set('span', state.span);
    h.set('step', state.step);
    if (state.sort !== 'name') h.set('sort', state.sort);
    if (REFRESH_MS !== 5000) h.set('refresh', String(REFRESH_MS / 1000));
    history.replaceState(null, '', '#' + h.toString());
  }

  // ---- controls ---------------------------------------------------------------------

  function syncControls() {
    for (const b of $('spans').querySelectorAll('button')) b.setAttribute('aria-pressed', String(b.dataset.span === state.span));
    for (const b of $('steps').querySelectorAll('button')) {
      b.setAttribute('aria-pressed', String(b.dataset.step === state.step));
      // A hint, not a rule: the node decides, and says why if it refuses.
      const points = Math.ceil(SPANS[state.span] / STEPS[b.dataset.step]);
      b.classList.toggle('too-fine', points > MAX_POINTS);
      b.title = points > MAX_POINTS
        ? state.span + ' in ' + b.dataset.step + ' steps is ' + fmtCount(points) + ' points; a query may have ' + fmtCount(MAX_POINTS)
        : '';
    }
    for (const b of $('sorts').querySelectorAll('button')) b.setAttribute('aria-pressed', String(b.dataset.sort === state.sort));
    $('counter').value = state.counter;
    $('compare').value = state.compare;
    $('refresh-s').textContent = String(REFRESH_MS / 1000);
    $('token').value = state.token;
    $('utc').checked = state.utc;
    $('auto').checked = state.auto;
    $('tz').textContent = tzName();
    markSelectedRow();
  }

  function selectCounter(name) {
    state.picked = true;
    state.counter = name.trim();
    writeHash();
    syncControls();
    state.chart = null;
    showNotice($('chart-error'), null);
    renderChart();
    loadChart();
  }

  function wire() {
    $('spans').addEventListener('click', (ev) => {
      const b = ev.target.closest('button[data-span]');
      if (!b) return;
      state.span = b.dataset.span;
      writeHash();
      syncControls();
      loadChart();
    });
    $('steps').addEventListener('click', (ev) => {
      const b = ev.target.closest('button[data-step]');
      if (!b) return;
      state.step = b.dataset.step;
      writeHash();
      syncControls();
      loadChart();
    });
    $('sorts').addEventListener('click', (ev) => {
      const b = ev.target.closest('button[data-sort]');
      if (!b) return;
      state.sort = b.dataset.sort;
      writeHash();
      syncControls();
      loadCounters();
    });
    $('compare-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      state.compare = $('compare').value.trim();
      writeHash();
      syncControls();
      loadChart();
    });
    $('compare-clear').addEventListener('click', () => {
      state.compare = '';
      writeHash();
      syncControls();
      loadChart();
    });
    $('counter-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      selectCounter($('counter').value);
    });
    const tbody = $('counters').tBodies[0];
    tbody.addEventListener('click', (ev) => {
      const tr = ev.target.closest('tr[data-name]');
      if (tr) selectCounter(tr.dataset.name);
    });
    tbody.addEventListener('keydown', (ev) => {
      const tr = ev.target.closest('tr[data-name]');
      if (tr && (ev.key === 'Enter' || ev.key === ' ')) {
        ev.preventDefault();
        selectCounter(tr.dataset.name);
      }
    });
    let debounce = null;
    $('prefix').addEventListener('input', () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => {
        state.prefix = $('prefix').value.trim();
        state.after = '';
        state.back = [];
        loadCounters();
      }, 250);
    });
    $('next').addEventListener('click', () => {
      if (state.next === null) return;
      state.back.push(state.after);
      state.after = state.next;
      loadCounters();
    });
    $('prev').addEventListener('click', () => {
      if (state.back.length === 0) return;
      state.after = state.back.pop();
      loadCounters();
    });
    $('token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      state.token = $('token').value.trim();
      storageSet(TOKEN_KEY, state.token);
      refreshAll();
    });
    $('token-clear').addEventListener('click', () => {
      state.token = '';
      storageSet(TOKEN_KEY, null);
      syncControls();
      refreshAll();
    });
    $('utc').addEventListener('change', () => {
      state.utc = $('utc').checked;
      storageSet(UTC_KEY, state.utc ? '1' : null);
      syncControls();
      renderChart();
      updateStatus();
    });
    $('auto').addEventListener('change', () => {
      state.auto = $('auto').checked;
      updateStatus();
      if (state.auto) tick(); else schedule();
    });
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && state.auto) tick(); else schedule();
    });
    let resizeFrame = 0;
    new ResizeObserver(() => {
      cancelAnimationFrame(resizeFrame);
      resizeFrame = requestAnimationFrame(() => { if (state.chart) renderChart(); });
    }).observe($('chart-wrap'));
  }

  readHash();
  syncControls();
  wire();
  renderChart();
  tick();
})();
