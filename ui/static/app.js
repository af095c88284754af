// Abacus dashboard: reads this node's API and draws it. Plain browser
// JavaScript, no dependencies, nothing loaded from elsewhere.
'use strict';

(function () {
  const SPANS = { '1h': 3600, '6h': 6 * 3600, '24h': 86400, '7d': 7 * 86400, '30d': 30 * 86400 };
  const STEPS = { '1m': 60, '5m': 300, '15m': 900, '1h': 3600, '1d': 86400 };
  const REFRESH_MS = 5000;
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
    span: '1h',
    step: '1m',
    chart: null, // last good range answer: {data, span, step}
    self: null,
    errors: { counters: null, chart: null, cluster: null },
    updated: null,
  };
  // A sequence number per panel: an answer that arrives after a newer
  // request was sent is dropped, so a slow answer never overwrites a newer
  // selection.
  const seq = { counters: 0, chart: 0, cluster: 0 };

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
      renderCounters(data);
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

  function renderCounters(data) {
    const list = Array.isArray(data.counters) ? data.counters : [];
    const tbody = $('counters').tBodies[0];
    const old = tbody.rows;
    if (old.length === list.length && list.every((c, i) => old[i].dataset.name === c.name)) {
      // Same names: update the totals in place, so that a refresh keeps the
      // row under the pointer and the keyboard focus where they are.
      list.forEach((c, i) => {
        old[i].dataset.total = String(c.total);
        old[i].cells[1].textContent = fmtCount(c.total);
      });
    } else {
      tbody.replaceChildren(...list.map((c) => el('tr', { tabindex: 0, data: { name: c.name, total: String(c.total) } },
        el('td', { class: 'name' }, c.name),
        el('td', { class: 'num total' }, fmtCount(c.total)))));
    }
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
    const to = Math.ceil(Date.now() / 1000);
    try {
      const data = await api('counters/' + pathName(name) + '/range', { from: to - SPANS[span], to, step });
      if (my !== seq.chart) return;
      state.chart = { data, span, step };
      showNotice($('chart-error'), null);
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
      for (const a of ['data-counter', 'data-span', 'data-step', 'data-resolution', 'data-partial', 'data-sum', 'data-points']) root.removeAttribute(a);
      $('chart-stats').hidden = true;
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
    const ystep = peak > 0 ? Math.max(1, niceStep(peak / 4)) : 1;
    const ytop = peak > 0 ? Math.ceil(peak / ystep) * ystep : 4;
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
      bars.append(svg('rect', {
        class: 'pt',
        x: (m.l + i * bw + gap / 2).toFixed(2),
        y: (m.t + ph - h).toFixed(2),
        width: Math.max(bw - gap, 0.6).toFixed(2),
        height: h.toFixed(2),
        'data-start': points[i].start,
        'data-count': String(points[i].count),
      }));
    }
    frag.append(bars);
    if (peak === 0) {
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
      tip.replaceChildren(el('b', null, fmtCount(points[i].count)), el('br'), fmtSpan(start, start + stepSec));
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
    root.setAttribute('aria-label', 'Counts of ' + data.name + ' per ' + data.step + ', ' + fmtSpan(from, to));

    $('stat-sum').textContent = fmtCount(data.sum);
    $('stat-peak').textContent = fmtCount(peak);
    $('stat-points').textContent = fmtCount(n) + ' × ' + data.step;
    $('stat-res').textContent = data.resolution + ' windows';
    $('stat-range').textContent = fmtSpan(from, to) + ' (' + tzName() + ')';
    $('chart-stats').hidden = false;
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
      const lagCls = !lag ? '' : lag.seconds >= 60 ? 'lag-bad' : lag.seconds >= 5 ? 'lag-warn' : '';
      return el('tr', { data: { name: mb.name, state: st }, title: mb.replica ? 'replica ' + mb.replica : null },
        el('td', { class: 'mono' }, mb.name, isSelf ? el('span', { class: 'tag' }, 'this node') : null),
        el('td', null, mb.dc || '—'),
        el('td', null, el('span', { class: 'pill pill-' + st }, st)),
        el('td', { class: 'mono' }, mb.addr || '—'),
        el('td', { class: 'mono' }, http),
        el('td', { class: 'num ' + lagCls }, lag ? fmtCount(lag.seqs) : '—'),
        el('td', { class: 'num ' + lagCls }, lag ? (lag.seqs > 0 ? fmtAge(lag.seconds) : 'in sync') : '—'));
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
    await Promise.all([loadCounters(), loadChart(), loadCluster()]);
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
    if (c) state.counter = c;
    if (SPANS[h.get('span')]) state.span = h.get('span');
    if (STEPS[h.get('step')]) state.step = h.get('step');
  }

  function writeHash() {
    const h = new URLSearchParams();
    if (state.counter) h.set('counter', state.counter);
    h.set('span', state.span);
    h.set('step', state.step);
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
    $('counter').value = state.counter;
    $('token').value = state.token;
    $('utc').checked = state.utc;
    $('auto').checked = state.auto;
    $('tz').textContent = tzName();
    markSelectedRow();
  }

  function selectCounter(name) {
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
