/*
 * sovd web console: one ES module, no build step, no external resources.
 *
 * The page runs under `Content-Security-Policy: default-src 'self'`, so everything is built
 * with DOM APIs (never innerHTML with server data), listeners are attached from JS and
 * styling is done with classes only.
 *
 * Stable data-testid hooks for browser tests:
 *   Login       login-username, login-password, login-submit, login-error (error area),
 *               login-notice (e.g. "Your session ended; please sign in again")
 *   Navigation  nav-dashboard, nav-vehicles, nav-command, nav-history, nav-audit, nav-users,
 *               nav-user ("<username> (<role>)"), signout
 *   Any page    page-heading (the h1), error-box (every API/network error; contains the
 *               message and "Reference: <correlation id>"), notice (success messages),
 *               pager-prev, pager-next, pager-summary ("Showing a–b of N")
 *   Dashboard   dashboard-connected ("X / Y"), dashboard-commands-hour,
 *               dashboard-success-rate, dashboard-recent (table), dashboard-recent-row
 *   Vehicles    vehicles-search, vehicles-status, vehicles-table,
 *               vehicle-row (data-vehicle-id), vehicle-new-command
 *   Command     command-vehicle (select), command-vehicle-note, command-operation (select),
 *               command-operation-description, command-warning, command-param-<name> (input),
 *               command-param-error-<name>, command-submit, command-confirm,
 *               command-confirm-cancel, command-form-error, command-forbidden (viewers)
 *   Live viewer live-viewer, live-status (exactly the status word), live-connection,
 *               live-chunk (one per chunk, data-seq="<sequence_number>"), live-cancel,
 *               live-final, live-error-message, live-details-link
 *   History     history-filter-vehicle, history-filter-status, history-filter-from,
 *               history-filter-to, history-filter-user (admins), history-apply,
 *               history-export, history-table, history-row (data-command-id)
 *   Detail      detail-status, detail-error, detail-nrc, detail-params, detail-responses,
 *               response-chunk (finished commands, data-seq)
 *   Audit       audit-filter-from, audit-filter-to, audit-filter-actor, audit-filter-action,
 *               audit-filter-vehicle, audit-apply, audit-export, audit-table, audit-row
 *   Users       users-table, user-row (data-user-id), user-role-select, user-save-role,
 *               user-toggle-active, user-reset-password, user-reset-input, user-reset-submit,
 *               user-unlock, user-vehicle-changes (checkbox),
 *               user-add-username, user-add-password, user-add-role, user-add-email,
 *               user-add-submit
 */

const API = '/api/v1';
const SESSION_ENDED = 'Your session ended; please sign in again';
const COMMAND_STATUSES = ['pending', 'queued', 'in_progress', 'completed', 'failed', 'timed_out', 'cancelled'];
const TERMINAL = new Set(['completed', 'failed', 'timed_out', 'cancelled']);
const VEHICLE_STATUSES = ['connected', 'disconnected', 'error'];
const ROLES = ['viewer', 'engineer', 'admin'];
// Same rules as the server, so most mistakes are caught before a round trip.
const KIND_PATTERNS = {
  ecu_address: /^0x[0-9A-Fa-f]{2}$/,
  data_id: /^0x[0-9A-Fa-f]{4}$/,
  dtc_code: /^P[0-9A-Fa-f]{4}$/,
};

const $main = document.getElementById('main');

/* ───────────────────────────── DOM and formatting helpers ───────────────────────────── */

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function showIn(slot, ...nodes) {
  slot.replaceChildren();
  return append(slot, nodes);
}

// Polled content is rebuilt every few seconds; keep keyboard focus on the "same" control
// (matched by row key + test id) so users tabbing through a live table are not thrown out.
function swap(container, node) {
  const active = document.activeElement;
  let selector = null;
  if (active && container.contains(active) && active.dataset.testid) {
    const row = active.closest('[data-key]');
    selector = (row ? `[data-key="${CSS.escape(row.dataset.key)}"] ` : '') + `[data-testid="${CSS.escape(active.dataset.testid)}"]`;
  }
  container.replaceChildren(node);
  if (selector) container.querySelector(selector)?.focus();
}

const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : '—');
const timeEl = (iso) => (iso ? h('time', { datetime: iso }, fmtTime(iso)) : '—');

function fmtDuration(start, end) {
  const ms = new Date(end) - new Date(start);
  if (!start || !end || !(ms >= 0)) return '—';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

function commandDuration(c) {
  if (c.completed_at) return fmtDuration(c.submitted_at, c.completed_at);
  return TERMINAL.has(c.status) ? '—' : 'running';
}

// Date inputs give local calendar days; the API wants instants, so send the local day's bounds.
const isoDayStart = (d) => new Date(`${d}T00:00:00`).toISOString().replace(/\.\d{3}Z$/, 'Z');
const isoDayEnd = (d) => new Date(`${d}T23:59:59`).toISOString().replace(/\.\d{3}Z$/, 'Z');

function pageHeading(text) {
  return h('h1', { tabindex: '-1', 'data-testid': 'page-heading' }, text);
}

function badge(status, testid) {
  return h('span', { class: `badge badge-${status ?? 'unknown'}`, 'data-testid': testid }, status ?? 'unknown');
}

function setBadge(el, status) {
  el.className = `badge badge-${status}`;
  el.textContent = status;
}

function field(label, control, { hint, id = control.id } = {}) {
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hint && h('p', { class: 'hint' }, hint));
}

function selectEl(id, options, testid, value = '') {
  const sel = h('select', { id, name: id, 'data-testid': testid },
    options.map(([v, text]) => h('option', { value: v }, text)));
  sel.value = value;
  return sel;
}

function notice(text) {
  return h('div', { class: 'alert alert-ok', role: 'status', 'data-testid': 'notice' }, text);
}

/* ─────────────────────────── API client with token refresh ─────────────────────────── */

class ApiError extends Error {
  constructor(message, { status = 0, code = '', correlationId = '', retryAfter = null, network = false } = {}) {
    super(message);
    Object.assign(this, { status, code, correlationId, retryAfter, network });
  }
}

const networkError = () => new ApiError('Cannot reach the server; check your connection', { network: true });

const session = {
  get access() { return sessionStorage.getItem('sovd.access'); },
  get refresh() { return sessionStorage.getItem('sovd.refresh'); },
  get expiresAt() { return Number(sessionStorage.getItem('sovd.expiresAt')) || 0; },
  get user() {
    try { return JSON.parse(sessionStorage.getItem('sovd.user')); } catch { return null; }
  },
  setTokens(t) {
    sessionStorage.setItem('sovd.access', t.access_token);
    // Refresh tokens rotate: the old one is dead the moment a new one is issued.
    sessionStorage.setItem('sovd.refresh', t.refresh_token);
    sessionStorage.setItem('sovd.expiresAt', String(Date.now() + (t.expires_in ?? 900) * 1000));
    scheduleRefresh();
  },
  setUser(u) { sessionStorage.setItem('sovd.user', JSON.stringify(u)); },
  clear() {
    for (const k of ['access', 'refresh', 'expiresAt', 'user']) sessionStorage.removeItem(`sovd.${k}`);
    clearTimeout(refreshTimer);
  },
};

let refreshTimer = 0;
let refreshing = null;
let flash = null; // message for the login page after the session ends

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  if (!session.refresh) return;
  const wait = Math.max(0, session.expiresAt - Date.now() - 60_000);
  refreshTimer = setTimeout(() => refreshTokens().catch((err) => {
    // A network blip must not sign anyone out; the token still has up to a minute left.
    if (err.network || err.status >= 500) refreshTimer = setTimeout(scheduleRefresh, 15_000);
  }), wait);
}

// Single flight: parallel requests that all see an expired token share one refresh, since
// a second refresh with the (already rotated) old token would fail and end the session.
function refreshTokens() {
  refreshing ??= (async () => {
    try {
      if (!session.refresh) throw new ApiError(SESSION_ENDED, { status: 401 });
      const { data } = await api('POST', '/auth/refresh', { body: { refresh_token: session.refresh }, auth: false });
      session.setTokens(data);
    } catch (err) {
      // Only a refusal ends the session; outages and rate limits are retried later.
      if (!err.network && err.status < 500 && err.status !== 429) endSession(SESSION_ENDED);
      throw err;
    }
  })().finally(() => { refreshing = null; });
  return refreshing;
}

// Covers tabs that slept through the refresh timer.
async function ensureFresh() {
  if (!session.refresh || session.expiresAt - Date.now() > 60_000) return;
  try {
    await refreshTokens();
  } catch (err) {
    if (!session.access || session.expiresAt <= Date.now()) throw err;
  }
}

function endSession(message) {
  session.clear();
  flash = message;
  if (location.hash.startsWith('#/login')) render();
  else location.hash = '#/login';
}

async function toApiError(res) {
  let env = null;
  try { env = (await res.json())?.error; } catch { /* not JSON: fall back to the status line */ }
  const retryAfter = Number.parseInt(res.headers.get('Retry-After') ?? '', 10);
  let message = env?.message || `The server answered ${res.status} ${res.statusText}`.trim();
  if (res.status === 429) message = `Too many requests; try again in ${Number.isFinite(retryAfter) ? retryAfter : 'a few'} s`;
  return new ApiError(message, {
    status: res.status,
    code: env?.code ?? '',
    correlationId: env?.correlation_id || res.headers.get('X-Request-ID') || '',
    retryAfter: Number.isFinite(retryAfter) ? retryAfter : null,
  });
}

/** Returns {data, total, headers}, or the Response itself with {raw: true}. Throws ApiError. */
async function api(method, path, opts = {}) {
  const { body, headers = {}, raw = false, auth = true } = opts;
  if (auth) await ensureFresh();
  const init = { method, headers: { Accept: 'application/json', ...headers } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (auth && session.access) init.headers.Authorization = `Bearer ${session.access}`;
  let res;
  try {
    res = await fetch(API + path, init);
  } catch {
    throw networkError();
  }
  if (res.ok) {
    if (raw) return res;
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch {
      throw new ApiError('The server sent an answer this page cannot read', {
        status: res.status, correlationId: res.headers.get('X-Request-ID') ?? '',
      });
    }
    const total = Number.parseInt(res.headers.get('X-Total-Count') ?? '', 10);
    return { data, total: Number.isFinite(total) ? total : null, headers: res.headers };
  }
  const err = await toApiError(res);
  if (auth && res.status === 401) {
    if (err.code === 'AUTH_004' && !opts.retried) {
      await refreshTokens(); // ends the session itself when the refresh token is refused
      return api(method, path, { ...opts, retried: true });
    }
    endSession(err.code === 'AUTH_006' ? err.message : SESSION_ENDED);
  }
  throw err;
}

async function downloadCsv(path, params, prefix) {
  const q = new URLSearchParams(params);
  q.set('format', 'csv');
  q.delete('limit');
  q.delete('offset');
  const res = await api('GET', `${path}?${q}`, { raw: true, headers: { Accept: 'text/csv' } });
  const url = URL.createObjectURL(await res.blob());
  const stamp = new Date().toISOString().slice(0, 16).replace(/[-:T]/g, '');
  const a = h('a', { href: url, download: `${prefix}-${stamp}.csv`, class: 'sr-only' });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/* ───────────────────────────────────── Router ───────────────────────────────────── */

const routes = [
  { path: /^\/login$/, title: 'Sign in', page: loginPage, public: true },
  { path: /^\/dashboard$/, title: 'Dashboard', page: dashboardPage, nav: 'dashboard' },
  { path: /^\/vehicles$/, title: 'Vehicles', page: vehiclesPage, nav: 'vehicles' },
  { path: /^\/command$/, title: 'New command', page: commandPage, nav: 'command' },
  { path: /^\/history$/, title: 'Command history', page: historyPage, nav: 'history' },
  { path: /^\/commands\/([^/?]+)$/, title: 'Command details', page: detailPage, nav: 'history' },
  { path: /^\/audit$/, title: 'Audit log', page: auditPage, nav: 'audit', admin: true },
  { path: /^\/users$/, title: 'Users', page: usersPage, nav: 'users', admin: true },
];

let current = null;

function render() {
  const hash = location.hash;
  if (!hash.startsWith('#/')) {
    // Other fragments (e.g. "#main" from the skip link) are not routes.
    if (!hash || hash === '#') location.replace(session.access ? '#/dashboard' : '#/login');
    return;
  }
  const [path, qs = ''] = hash.slice(1).split('?');
  let match = null;
  const route = routes.find((r) => (match = r.path.exec(path)));
  if (!route) return location.replace('#/dashboard');
  if (!route.public && !session.access) return location.replace('#/login');
  if (route.public && session.access) return location.replace('#/dashboard');

  if (current) {
    current.dead = true;
    for (const fn of current.cleanups) fn();
  }
  const ctx = {
    query: new URLSearchParams(qs),
    params: match.slice(1).map(decodeURIComponent),
    cleanups: [],
    dead: false,
    get alive() { return !this.dead; },
    onCleanup(fn) { this.cleanups.push(fn); },
  };
  current = ctx;
  updateChrome(route);
  document.title = `${route.title} · sovd`;
  $main.replaceChildren();
  if (route.admin && session.user?.role !== 'admin') {
    $main.append(pageHeading(route.title), h('div', { class: 'alert alert-info' },
      `This page is for administrators; you are signed in as ${session.user?.role ?? 'unknown role'}.`));
  } else {
    route.page(ctx);
  }
  $main.querySelector('h1')?.focus();
}

function updateChrome(route) {
  const user = session.user;
  const signedIn = Boolean(session.access);
  document.getElementById('mainnav').hidden = !signedIn;
  document.getElementById('userbox').hidden = !signedIn;
  document.getElementById('nav-user').textContent = user ? `${user.username} (${user.role})` : '';
  for (const li of document.querySelectorAll('[data-admin]')) li.hidden = user?.role !== 'admin';
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (route && a.dataset.nav === route.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

// Polls skip hidden tabs and never overlap a slow previous round.
function poll(ctx, fn, ms) {
  let busy = false;
  const id = setInterval(async () => {
    if (busy || document.hidden) return;
    busy = true;
    try { await fn(); } finally { busy = false; }
  }, ms);
  ctx.onCleanup(() => clearInterval(id));
}

/* ──────────────────────────────────── Components ──────────────────────────────────── */

function errorBox(err, retry) {
  if (!(err instanceof ApiError)) console.error(err); // details for developers, not users
  const message = err instanceof ApiError ? err.message : 'Something went wrong in this page; reload it and try again.';
  const canRetry = retry && (err?.network || err?.status >= 500 || err?.status === 429);
  return h('div', { class: 'alert alert-error', role: 'alert', 'data-testid': 'error-box' },
    h('p', { class: 'alert-message' }, message),
    err?.correlationId && h('p', { class: 'alert-ref' }, 'Reference: ', h('code', {}, err.correlationId)),
    canRetry && h('button', { type: 'button', class: 'btn btn-small', onclick: retry }, 'Retry'));
}

function table({ testid, caption, columns, rows, rowAttrs, empty = 'Nothing to show.' }) {
  const body = rows.length
    ? rows.map((r) => h('tr', rowAttrs?.(r) ?? {}, columns.map((c, i) => (i === 0
      ? h('th', { scope: 'row' }, c.cell(r))
      : h('td', { class: c.className }, c.cell(r))))))
    : h('tr', {}, h('td', { colspan: columns.length, class: 'empty' }, empty));
  // The wrapper scrolls on narrow screens; tabindex lets keyboard users scroll it too.
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption },
    h('table', { 'data-testid': testid },
      h('caption', { class: 'sr-only' }, caption),
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c.label)))),
      h('tbody', {}, body)));
}

function pager({ offset, limit, total, shown, onPage }) {
  const summary = shown
    ? `Showing ${offset + 1}–${offset + shown}${total == null ? '' : ` of ${total}`}`
    : `Showing 0 of ${total ?? 0}`;
  const atEnd = total == null ? shown < limit : offset + shown >= total;
  return h('nav', { class: 'pager', 'aria-label': 'Pagination' },
    h('button', { type: 'button', class: 'btn', 'data-testid': 'pager-prev', disabled: offset === 0, onclick: () => onPage(Math.max(0, offset - limit)) }, 'Previous'),
    h('span', { class: 'pager-summary', 'data-testid': 'pager-summary' }, summary),
    h('button', { type: 'button', class: 'btn', 'data-testid': 'pager-next', disabled: atEnd, onclick: () => onPage(offset + limit) }, 'Next'));
}

const commandColumns = {
  time: { label: 'Submitted', cell: (c) => h('a', { href: `#/commands/${encodeURIComponent(c.command_id)}` }, fmtTime(c.submitted_at)) },
  vin: { label: 'Vehicle (VIN)', cell: (c) => h('span', { class: 'mono' }, c.vin ?? c.vehicle_id) },
  op: { label: 'Operation', cell: (c) => c.command_name },
  status: { label: 'Status', cell: (c) => badge(c.status) },
  duration: { label: 'Duration', cell: commandDuration },
};

/**
 * A filter form + table + pager over one list endpoint. `fields` describe the filters:
 * {name, label, type: 'text'|'search'|'date'|'select', options, testid, param, toParam, live}.
 */
function listView(ctx, { path, key, fields, columns, testid, caption, rowAttrs, empty, csv, applyTestid, pollMs, limit = 25 }) {
  const slot = h('div');
  const tableSlot = h('div');
  const pagerSlot = h('div');
  let offset = 0;
  let params = new URLSearchParams();
  let requestNo = 0;
  const controls = {};
  const wraps = fields.map((f) => {
    const id = `f-${f.name}`;
    const input = f.type === 'select'
      ? selectEl(id, f.options, f.testid)
      : h('input', { id, name: f.name, type: f.type ?? 'text', 'data-testid': f.testid, placeholder: f.placeholder, autocomplete: 'off' });
    controls[f.name] = input;
    if (f.live) {
      let t = 0;
      input.addEventListener('input', () => { clearTimeout(t); t = setTimeout(apply, 300); });
      ctx.onCleanup(() => clearTimeout(t));
    }
    return field(f.label, input);
  });
  const exportBtn = csv && h('button', { type: 'button', class: 'btn', 'data-testid': csv.testid, onclick: exportCsv }, 'Export CSV');
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': `${caption} filters`, novalidate: true },
    wraps,
    h('div', { class: 'filter-actions' },
      h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': applyTestid }, 'Apply filters'),
      exportBtn));
  form.addEventListener('submit', (e) => { e.preventDefault(); apply(true); });
  form.addEventListener('change', () => apply());

  function apply(force = false) {
    const next = new URLSearchParams();
    for (const f of fields) {
      const v = controls[f.name].value.trim();
      if (v) next.set(f.param ?? f.name, f.toParam ? f.toParam(v) : v);
    }
    if (!force && next.toString() === params.toString()) return;
    params = next;
    offset = 0;
    load();
  }

  async function load() {
    const mine = ++requestNo; // a slow poll must not overwrite a newer filter's result
    const q = new URLSearchParams(params);
    q.set('limit', String(limit));
    q.set('offset', String(offset));
    try {
      const { data, total } = await api('GET', `${path}?${q}`);
      if (!ctx.alive || mine !== requestNo) return;
      const rows = (key ? data?.[key] : data) ?? [];
      showIn(slot);
      swap(tableSlot, table({ testid, caption, columns, rows, rowAttrs, empty }));
      swap(pagerSlot, pager({ offset, limit, total, shown: rows.length, onPage: (o) => { offset = o; load(); } }));
    } catch (e) {
      if (ctx.alive && mine === requestNo) showIn(slot, errorBox(e, load));
    }
  }

  async function exportCsv() {
    exportBtn.disabled = true;
    try {
      await downloadCsv(path, params, csv.prefix);
    } catch (e) {
      if (ctx.alive) showIn(slot, errorBox(e, exportCsv));
    } finally {
      exportBtn.disabled = false;
    }
  }

  load();
  if (pollMs) poll(ctx, load, pollMs);
  return { el: h('div', { class: 'list-view' }, form, slot, tableSlot, pagerSlot), controls };
}

function normalizeChunk(r) {
  return {
    seq: r.sequence_number,
    at: r.received_at,
    payload: r.response ?? r.response_payload ?? null,
    final: Boolean(r.is_final),
  };
}

// Human summary of well-known payload shapes (DTC entries, data identifier readings),
// searched a couple of levels deep so {"dtcs":[...]} works as well as a bare entry.
function friendlyLines(p, depth = 0) {
  if (depth > 3 || p == null || typeof p !== 'object') return [];
  if (Array.isArray(p)) return p.flatMap((x) => friendlyLines(x, depth + 1));
  if ('dtcCode' in p) {
    return [[p.dtcCode, p.description, p.status != null && `status: ${p.status}`].filter(Boolean).join(' — ')];
  }
  if ('name' in p && 'value' in p) {
    const v = typeof p.value === 'object' ? JSON.stringify(p.value) : p.value;
    return [`${p.name}: ${v}${p.unit ? ` ${p.unit}` : ''}`];
  }
  const nested = Object.values(p).flatMap((v) => friendlyLines(v, depth + 1));
  if (nested.length) return nested;
  if (typeof p.description === 'string' || typeof p.status === 'string') {
    return [[p.description, p.status && `status: ${p.status}`].filter(Boolean).join(' — ')];
  }
  return [];
}

function chunkItem(c, testid) {
  const lines = friendlyLines(c.payload);
  return h('li', { class: `chunk${c.final ? ' chunk-final' : ''}`, 'data-testid': testid, 'data-seq': String(c.seq) },
    h('div', { class: 'chunk-head' },
      h('span', { class: 'chunk-seq' }, `#${c.seq}`),
      timeEl(c.at),
      c.final && h('span', { class: 'tag' }, 'final')),
    lines.length > 0 && h('ul', { class: 'chunk-lines' }, lines.map((l) => h('li', {}, l))),
    h('pre', { class: 'json' }, JSON.stringify(c.payload, null, 2)));
}

function insertChunk(list, node, seq) {
  const after = [...list.children].find((li) => Number(li.dataset.seq) > seq);
  list.insertBefore(node, after ?? null);
}

/**
 * Live view of one command's responses over the WebSocket. Resumes after drops from the last
 * stream_sequence seen (server replays from there), and also drops repeated sequence_numbers
 * because chunks preloaded over REST carry no stream_sequence.
 */
function liveViewer({ command, initial = [], title = 'Live responses', showDetailsLink = false, onChange = () => {} }) {
  const id = command.command_id;
  let status = command.status ?? 'pending';
  let ended = false;
  let ws = null;
  let timer = 0;
  let attempt = 0;
  let authRetried = false;
  let destroyed = false;
  let lastStreamSeq = null;
  const seen = new Set();

  const statusBadge = badge(status, 'live-status');
  const conn = h('p', { class: 'live-conn', 'data-testid': 'live-connection' });
  const finalEl = h('div', { 'data-testid': 'live-final' });
  const announcer = h('div', { class: 'sr-only', 'aria-live': 'polite' });
  const list = h('ol', { class: 'chunks', 'aria-label': 'Responses received' });
  const empty = h('p', { class: 'muted' }, 'No responses yet.');
  const cancelSlot = h('div');
  const canCancel = session.user?.role !== 'viewer';
  const cancelBtn = h('button', { type: 'button', class: 'btn btn-danger', 'data-testid': 'live-cancel', hidden: !canCancel, onclick: cancel }, 'Cancel command');
  const heading = h('h2', { tabindex: '-1' }, title);
  const el = h('section', { class: 'live card', 'data-testid': 'live-viewer', 'data-command-id': id, 'aria-label': title },
    h('div', { class: 'live-head' }, heading, cancelBtn),
    h('dl', { class: 'kv' },
      h('dt', {}, 'Command'), h('dd', {}, h('code', {}, id)),
      h('dt', {}, 'Status'), h('dd', { role: 'status' }, statusBadge)),
    conn, cancelSlot, finalEl, empty, list, announcer,
    showDetailsLink && h('p', {}, h('a', { href: `#/commands/${encodeURIComponent(id)}`, 'data-testid': 'live-details-link' }, 'Open details')));

  const say = (text) => { announcer.textContent = text; };

  function addChunk(raw) {
    const c = normalizeChunk(raw);
    if (seen.has(c.seq)) return null;
    seen.add(c.seq);
    empty.remove();
    insertChunk(list, chunkItem(c, 'live-chunk'), c.seq);
    return c;
  }

  function setStatus(next, info = {}) {
    if (next && next !== status) {
      status = next;
      setBadge(statusBadge, status);
    }
    if (TERMINAL.has(status)) {
      ended = true;
      cancelBtn.hidden = true;
      showConn('');
      showIn(finalEl, h('p', { class: 'final' }, `Command ${status.replace('_', ' ')}`,
        info.completed_at ? ` at ${fmtTime(info.completed_at)}` : '', '.'),
      info.error_message && h('p', { class: 'alert alert-error', 'data-testid': 'live-error-message' }, info.error_message));
    }
    onChange({ status, completed_at: info.completed_at, error_message: info.error_message });
  }

  function showConn(text, isError = false) {
    conn.textContent = text;
    conn.classList.toggle('live-conn-error', isError);
  }
  const stop = (reason) => showConn(`Live updates stopped: ${reason}`, true);

  function reconnectLater() {
    showConn('connection lost, reconnecting…');
    timer = setTimeout(connect, Math.min(500 * 2 ** attempt++, 10_000)); // 0.5 s, 1 s, 2 s … 10 s
  }

  async function connect() {
    if (ended || destroyed) return;
    try { await ensureFresh(); } catch { if (!session.access) return; }
    if (destroyed) return;
    const q = new URLSearchParams({ token: session.access });
    if (lastStreamSeq != null) q.set('from_seq', String(lastStreamSeq));
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const sock = new WebSocket(`${scheme}://${location.host}/ws/responses/${encodeURIComponent(id)}?${q}`);
    ws = sock;
    sock.onopen = () => { if (attempt > 0) showConn('Reconnected.'); };
    sock.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (typeof msg.stream_sequence === 'number') {
        if (lastStreamSeq != null && msg.stream_sequence <= lastStreamSeq) return;
        lastStreamSeq = msg.stream_sequence;
      }
      attempt = 0;
      authRetried = false;
      showConn('');
      if (msg.event === 'response') {
        const c = addChunk(msg);
        if (!c) return;
        if (status === 'pending') setStatus('in_progress');
        const summary = friendlyLines(c.payload)[0];
        say(`Response ${c.seq} received${summary ? `: ${summary}` : ''}${c.final ? ' (final)' : ''}`);
      } else if (msg.event === 'status' || msg.event === 'error') {
        setStatus(msg.status, msg);
      }
    };
    sock.onclose = (ev) => {
      if (sock !== ws || destroyed) return;
      ws = null;
      if (ended) return;
      if (ev.code === 1008) {
        // Usually an access token that expired between our check and the handshake.
        if (authRetried) return stop(ev.reason || 'access denied');
        authRetried = true;
        showConn('Renewing sign-in…');
        refreshTokens().then(connect, (err) => (err.network ? reconnectLater() : stop(ev.reason || 'access denied')));
        return;
      }
      reconnectLater();
    };
  }

  async function cancel() {
    cancelBtn.disabled = true;
    showIn(cancelSlot);
    try {
      const { data } = await api('POST', `/commands/${encodeURIComponent(id)}/cancel`);
      say('Cancellation requested');
      if (data?.status) setStatus(data.status, data);
    } catch (e) {
      if (!destroyed) showIn(cancelSlot, errorBox(e, cancel));
    } finally {
      cancelBtn.disabled = false;
    }
  }

  for (const r of initial) addChunk(r);
  if (TERMINAL.has(status)) setStatus(status, command);
  else {
    showConn('Connecting for live updates…');
    connect();
  }

  const destroy = () => {
    destroyed = true;
    clearTimeout(timer);
    ws?.close(1000); // onclose ignores it: `destroyed` is set
  };
  return { el, heading, destroy };
}

/* ────────────────────────────────────── Pages ────────────────────────────────────── */

function loginPage(ctx) {
  const message = flash;
  flash = null;
  const errArea = h('div', { 'data-testid': 'login-error', class: 'login-error' });
  const user = h('input', { id: 'login-username', name: 'username', autocomplete: 'username', required: true, 'data-testid': 'login-username' });
  const pass = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true, 'data-testid': 'login-password' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block', 'data-testid': 'login-submit' }, 'Sign in');
  const form = h('form', { class: 'card login-card', novalidate: true },
    pageHeading('Sign in to sovd'),
    message && h('div', { class: 'alert alert-info', role: 'status', 'data-testid': 'login-notice' }, message),
    errArea,
    field('Username', user),
    field('Password', pass),
    submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!user.value.trim() || !pass.value) {
      showIn(errArea, errorBox(new ApiError('Enter your username and password.')));
      (user.value.trim() ? pass : user).focus();
      return;
    }
    submit.disabled = true;
    showIn(errArea);
    try {
      const { data } = await api('POST', '/auth/login', { body: { username: user.value.trim(), password: pass.value }, auth: false });
      session.setTokens(data);
      const me = await api('GET', '/auth/me');
      session.setUser(me.data);
      location.hash = '#/dashboard';
    } catch (err) {
      session.clear(); // /auth/me may fail after the tokens were stored: no half sessions
      if (ctx.alive) {
        showIn(errArea, errorBox(err));
        pass.select();
      }
    } finally {
      submit.disabled = false;
    }
  });
  $main.append(h('div', { class: 'login-wrap' }, form));
}

function dashboardPage(ctx) {
  const slot = h('div');
  const connected = h('p', { class: 'card-value', 'data-testid': 'dashboard-connected' }, '…');
  const lastHour = h('p', { class: 'card-value', 'data-testid': 'dashboard-commands-hour' }, '…');
  const rate = h('p', { class: 'card-value', 'data-testid': 'dashboard-success-rate' }, '…');
  const recent = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const card = (label, value) => h('section', { class: 'card stat' }, h('h2', { class: 'card-label' }, label), value);
  $main.append(pageHeading('Dashboard'), slot,
    h('div', { class: 'cards' },
      card('Vehicles connected', connected),
      card('Commands in the last hour', lastHour),
      card('Success rate (last hour)', rate)),
    h('h2', {}, 'Recent commands'), recent);

  async function load() {
    try {
      const { data: s } = await api('GET', '/stats');
      if (!ctx.alive) return;
      showIn(slot);
      connected.textContent = `${s.vehicles_connected} / ${s.vehicles_total}`;
      lastHour.textContent = String(s.commands_last_hour);
      rate.textContent = s.success_rate_last_hour == null ? '— (no finished commands)' : `${(s.success_rate_last_hour * 100).toFixed(1)} %`;
      swap(recent, table({
        testid: 'dashboard-recent',
        caption: 'Recent commands',
        columns: [commandColumns.time, commandColumns.vin, commandColumns.op, commandColumns.status],
        rows: s.recent_commands ?? [],
        rowAttrs: (c) => ({ 'data-testid': 'dashboard-recent-row', 'data-command-id': c.command_id, 'data-key': c.command_id }),
        empty: 'No commands yet.',
      }));
    } catch (e) {
      if (ctx.alive) showIn(slot, errorBox(e, load));
    }
  }
  load();
  poll(ctx, load, 10_000);
}

function vehiclesPage(ctx) {
  const canCommand = session.user?.role !== 'viewer';
  const columns = [
    { label: 'VIN', cell: (v) => h('span', { class: 'mono' }, v.vin) },
    { label: 'Make', cell: (v) => v.make },
    { label: 'Model', cell: (v) => v.model },
    { label: 'Year', cell: (v) => v.year },
    { label: 'Status', cell: (v) => badge(v.connection_status) },
    { label: 'Last seen', cell: (v) => timeEl(v.last_seen_at) },
  ];
  if (canCommand) {
    columns.push({
      label: 'Actions',
      cell: (v) => h('a', { class: 'btn btn-small', href: `#/command?vehicle=${encodeURIComponent(v.vehicle_id)}`, 'data-testid': 'vehicle-new-command', 'aria-label': `New command for ${v.vin}` }, 'New command'),
    });
  }
  const view = listView(ctx, {
    path: '/vehicles',
    caption: 'Vehicles',
    testid: 'vehicles-table',
    applyTestid: 'vehicles-apply',
    fields: [
      { name: 'search', label: 'VIN contains', type: 'search', testid: 'vehicles-search', placeholder: 'e.g. WVW', live: true },
      { name: 'status', label: 'Status', type: 'select', testid: 'vehicles-status', options: [['', 'Any status'], ...VEHICLE_STATUSES.map((s) => [s, s])] },
    ],
    columns,
    rowAttrs: (v) => ({ 'data-testid': 'vehicle-row', 'data-vehicle-id': v.vehicle_id, 'data-key': v.vehicle_id }),
    empty: 'No vehicles match these filters.',
    pollMs: 5000, // connection status is live data
  });
  $main.append(pageHeading('Vehicles'), view.el);
}

async function commandPage(ctx) {
  const slot = h('div');
  $main.append(pageHeading('New command'), slot);
  if (session.user?.role === 'viewer') {
    $main.append(h('div', { class: 'alert alert-info', 'data-testid': 'command-forbidden' },
      h('p', {}, 'Your role (viewer) may read vehicles and command history but not submit commands.'),
      h('p', {}, 'Ask an administrator for the engineer role if you need to send diagnostic requests.')));
    return;
  }
  const formHost = h('div', {}, h('p', { class: 'muted' }, 'Loading vehicles and operations…'));
  const viewerHost = h('div');
  $main.append(formHost, viewerHost);

  const load = async () => {
    showIn(slot);
    const pre = ctx.query.get('vehicle');
    let vehicles, ops;
    try {
      [vehicles, ops] = await Promise.all([
        api('GET', '/vehicles?limit=100').then((r) => r.data ?? []),
        api('GET', '/operations').then((r) => r.data ?? []),
      ]);
      // A deep-linked vehicle may be beyond the first page.
      if (pre && !vehicles.some((v) => v.vehicle_id === pre)) {
        vehicles.unshift((await api('GET', `/vehicles/${encodeURIComponent(pre)}`)).data);
      }
    } catch (e) {
      if (ctx.alive) showIn(slot, errorBox(e, load));
      return;
    }
    if (ctx.alive) formHost.replaceChildren(commandForm(ctx, { vehicles, ops, pre, op: ctx.query.get('op'), viewerHost }));
  };
  load();
}

function commandForm(ctx, { vehicles, ops, pre, op: preOp, viewerHost }) {
  let op = null;
  let pendingKey = null; // Idempotency-Key, kept only while a retry would be the same submission
  let viewer = null;
  const fields = new Map(); // API field name → {input, err}

  const errEl = (id, testid) => h('p', { id, class: 'field-error', 'data-testid': testid });
  const vehicleSel = h('select', { id: 'cmd-vehicle', 'data-testid': 'command-vehicle', required: true, 'aria-describedby': 'cmd-vehicle-note cmd-vehicle-err' },
    h('option', { value: '' }, 'Choose a vehicle…'),
    vehicles.map((v) => h('option', { value: v.vehicle_id, class: v.connection_status === 'connected' ? null : 'opt-offline' },
      `${v.connection_status === 'connected' ? '' : '⚠ '}${v.vin} — ${v.make} ${v.model} (${v.connection_status})`)));
  vehicleSel.value = vehicles.some((v) => v.vehicle_id === pre) ? pre : '';
  const vehicleNote = h('p', { id: 'cmd-vehicle-note', class: 'hint', 'data-testid': 'command-vehicle-note' });
  const vehicleErr = errEl('cmd-vehicle-err', 'command-vehicle-error');
  fields.set('vehicle_id', { input: vehicleSel, err: vehicleErr });

  const opSel = h('select', { id: 'cmd-op', 'data-testid': 'command-operation', required: true, 'aria-describedby': 'cmd-op-desc cmd-op-err' },
    h('option', { value: '' }, 'Choose an operation…'),
    ops.map((o) => h('option', { value: o.name }, o.name)));
  const opDesc = h('p', { id: 'cmd-op-desc', class: 'hint', 'data-testid': 'command-operation-description' });
  const opErr = errEl('cmd-op-err', 'command-operation-error');
  fields.set('command_name', { input: opSel, err: opErr });
  const warning = h('div', { class: 'alert alert-warn', 'data-testid': 'command-warning', hidden: true },
    h('strong', {}, 'Caution: '), 'This operation changes the vehicle and is never run twice.');
  const paramsHost = h('div', { class: 'params' });
  const confirmHost = h('div');
  const formError = h('div', { 'data-testid': 'command-form-error' });
  const submitBtn = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'command-submit' }, 'Send command');

  const form = h('form', { class: 'card command-form', novalidate: true, 'aria-label': 'New command' },
    h('div', { class: 'field' }, h('label', { for: 'cmd-vehicle' }, 'Vehicle', h('span', { class: 'req', 'aria-hidden': 'true' }, ' *')), vehicleSel, vehicleNote, vehicleErr),
    h('div', { class: 'field' }, h('label', { for: 'cmd-op' }, 'Operation', h('span', { class: 'req', 'aria-hidden': 'true' }, ' *')), opSel, opDesc, opErr),
    warning, paramsHost,
    h('p', { class: 'hint' }, 'Fields marked * are required.'),
    formError, confirmHost,
    h('div', { class: 'form-actions' }, submitBtn));

  function updateVehicleNote() {
    const v = vehicles.find((x) => x.vehicle_id === vehicleSel.value);
    vehicleNote.textContent = v && v.connection_status !== 'connected'
      ? `This vehicle's connection status is "${v.connection_status}": the command may wait and time out.` : '';
  }

  function renderOperation() {
    op = ops.find((o) => o.name === opSel.value) ?? null;
    opDesc.textContent = op?.description ?? '';
    warning.hidden = !op || op.idempotent !== false;
    for (const k of [...fields.keys()]) if (k.startsWith('command_params.')) fields.delete(k);
    paramsHost.replaceChildren();
    if (!op?.params?.length) return;
    const inputs = op.params.map((p) => {
      const id = `cmd-param-${p.name}`;
      const common = {
        id, name: p.name, required: p.required, 'aria-required': String(Boolean(p.required)),
        'aria-describedby': `${id}-hint ${id}-err`, 'data-testid': `command-param-${p.name}`, 'data-kind': p.kind,
      };
      // Parameters with a fixed set of words (routine action, reset type, session) are a select.
      const input = p.choices
        ? h('select', common, h('option', { value: '' }, 'Choose…'), p.choices.map((c) => h('option', { value: c }, c)))
        : h('input', { ...common, type: 'text', autocomplete: 'off', spellcheck: 'false' });
      const err = errEl(`${id}-err`, `command-param-error-${p.name}`);
      fields.set(`command_params.${p.name}`, { input, err, param: p });
      return h('div', { class: 'field' },
        h('label', { for: id }, p.name, p.required ? h('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : h('span', { class: 'muted' }, ' (optional)')),
        input,
        h('p', { id: `${id}-hint`, class: 'hint' }, p.format || p.kind),
        err);
    });
    paramsHost.append(h('fieldset', {}, h('legend', {}, 'Parameters'), inputs));
  }

  function markField(f, message) {
    f.input.setAttribute('aria-invalid', 'true');
    f.err.textContent = message;
  }

  function clearErrors() {
    for (const f of fields.values()) {
      f.input.removeAttribute('aria-invalid');
      f.err.textContent = '';
    }
    showIn(formError);
  }

  function validate() {
    clearErrors();
    let first = null;
    const fail = (name, message) => { const f = fields.get(name); markField(f, message); first ??= f.input; };
    if (!vehicleSel.value) fail('vehicle_id', 'Choose a vehicle.');
    if (!op) fail('command_name', 'Choose an operation.');
    for (const p of op?.params ?? []) {
      const v = fields.get(`command_params.${p.name}`).input.value.trim();
      // The server publishes each rule as a pattern; the built-in ones cover older servers.
      const re = p.pattern ? new RegExp(p.pattern) : KIND_PATTERNS[p.kind];
      if (!v) { if (p.required) fail(`command_params.${p.name}`, `${p.name} is required.`); }
      else if (re && !re.test(v)) fail(`command_params.${p.name}`, `${p.name} must be ${p.format || `in ${p.kind} format`}.`);
    }
    first?.focus();
    return !first;
  }

  // Anything edited makes it a new submission: new key, and any pending confirmation is void.
  function changed() {
    pendingKey = null;
    confirmHost.replaceChildren();
    submitBtn.disabled = false;
  }

  function confirmStep() {
    const v = vehicles.find((x) => x.vehicle_id === vehicleSel.value);
    const yes = h('button', { type: 'button', class: 'btn btn-danger', 'data-testid': 'command-confirm' }, `Yes, run ${op.name}`);
    const back = h('button', { type: 'button', class: 'btn', 'data-testid': 'command-confirm-cancel' }, 'Go back');
    yes.addEventListener('click', () => { confirmHost.replaceChildren(); submitBtn.disabled = false; send(true); });
    back.addEventListener('click', () => { confirmHost.replaceChildren(); submitBtn.disabled = false; submitBtn.focus(); });
    showIn(confirmHost, h('div', { class: 'confirm alert alert-warn', role: 'group', 'aria-labelledby': 'cmd-confirm-q' },
      h('p', { id: 'cmd-confirm-q' }, h('strong', {}, `Run ${op.name} on ${v?.vin ?? vehicleSel.value}?`),
        op.risk === 'change'
          ? ' This can change how the vehicle behaves (it needs the vehicle-changes permission) and is never run twice.'
          : ' This operation changes the vehicle and is never run twice.'),
      h('div', { class: 'form-actions' }, yes, back)));
    submitBtn.disabled = true;
    yes.focus();
  }

  async function send(confirmed = false) {
    pendingKey ??= crypto.randomUUID();
    const params = {};
    for (const p of op.params ?? []) {
      const v = fields.get(`command_params.${p.name}`).input.value.trim();
      if (v) params[p.name] = v;
    }
    const body = { command_name: op.name, vehicle_id: vehicleSel.value, command_params: params };
    if (confirmed) body.confirm = true;
    submitBtn.disabled = true;
    showIn(formError);
    try {
      const { data: cmd } = await api('POST', '/commands', { body, headers: { 'Idempotency-Key': pendingKey } });
      pendingKey = null;
      if (!ctx.alive) return;
      viewer?.destroy();
      viewer = liveViewer({ command: cmd, title: `${cmd.command_name} on ${cmd.vin ?? cmd.vehicle_id}`, showDetailsLink: true });
      ctx.onCleanup(viewer.destroy);
      viewerHost.replaceChildren(viewer.el);
      viewer.heading.focus();
    } catch (e) {
      // Only an answered, rejected request makes the key useless; after a network error or
      // a 5xx the server may have accepted it, so a retry must carry the same key.
      if (e.status >= 400 && e.status < 500 && e.status !== 429) pendingKey = null;
      if (!ctx.alive) return;
      const named = /^([\w.]+):/.exec(e.message ?? '');
      const f = named && fields.get(named[1]);
      if (f) { markField(f, e.message); f.input.focus(); }
      showIn(formError, errorBox(e, () => send(confirmed)));
    } finally {
      submitBtn.disabled = false;
    }
  }

  vehicleSel.addEventListener('change', () => { updateVehicleNote(); changed(); });
  opSel.addEventListener('change', () => { renderOperation(); changed(); });
  paramsHost.addEventListener('input', changed);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!validate()) return;
    if (op.idempotent === false || op.risk === 'change') confirmStep();
    else send();
  });

  if (preOp && ops.some((o) => o.name === preOp)) opSel.value = preOp;
  updateVehicleNote();
  renderOperation();
  return form;
}

function historyPage(ctx) {
  const isAdmin = session.user?.role === 'admin';
  const fields = [
    { name: 'vehicle_id', label: 'Vehicle', type: 'select', testid: 'history-filter-vehicle', options: [['', 'Any vehicle']] },
    { name: 'status', label: 'Status', type: 'select', testid: 'history-filter-status', options: [['', 'Any status'], ...COMMAND_STATUSES.map((s) => [s, s])] },
    { name: 'start_date', label: 'From', type: 'date', testid: 'history-filter-from', toParam: isoDayStart },
    { name: 'end_date', label: 'To', type: 'date', testid: 'history-filter-to', toParam: isoDayEnd },
  ];
  if (isAdmin) fields.push({ name: 'user_id', label: 'User id', testid: 'history-filter-user', placeholder: 'user UUID' });
  const view = listView(ctx, {
    path: '/commands',
    key: 'commands',
    caption: 'Command history',
    testid: 'history-table',
    applyTestid: 'history-apply',
    fields,
    columns: Object.values(commandColumns),
    rowAttrs: (c) => ({ 'data-testid': 'history-row', 'data-command-id': c.command_id, 'data-key': c.command_id }),
    empty: 'No commands match these filters.',
    csv: { testid: 'history-export', prefix: 'commands' },
  });
  append($main, [pageHeading('Command history'),
    session.user?.role === 'engineer' && h('p', { class: 'muted' }, 'Showing the commands you submitted.'),
    view.el]);
  // The vehicle filter is a convenience: without it the page still works.
  api('GET', '/vehicles?limit=100').then(({ data }) => {
    const sel = view.controls.vehicle_id;
    for (const v of data ?? []) sel.append(h('option', { value: v.vehicle_id }, `${v.vin} — ${v.make} ${v.model}`));
  }).catch(() => {});
}

async function detailPage(ctx) {
  const id = ctx.params[0];
  const slot = h('div');
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  $main.append(pageHeading('Command details'), slot, body);

  const load = async () => {
    showIn(slot);
    let cmd, responses;
    try {
      [cmd, responses] = await Promise.all([
        api('GET', `/commands/${encodeURIComponent(id)}`).then((r) => r.data),
        api('GET', `/commands/${encodeURIComponent(id)}/responses`).then((r) => r.data ?? []),
      ]);
    } catch (e) {
      if (ctx.alive) showIn(slot, errorBox(e, load));
      return;
    }
    if (!ctx.alive) return;
    document.title = `${cmd.command_name} · Command details · sovd`;
    const statusBadge = badge(cmd.status, 'detail-status');
    const completed = h('dd', {}, timeEl(cmd.completed_at));
    const duration = h('dd', {}, commandDuration(cmd));
    const error = h('dd', { 'data-testid': 'detail-error' }, cmd.error_message || '—');
    const row = (label, value) => [h('dt', {}, label), value instanceof Node && value.tagName === 'DD' ? value : h('dd', {}, value)];
    const summary = h('dl', { class: 'kv kv-wide' },
      row('Command id', h('code', {}, cmd.command_id)),
      row('Operation', cmd.command_name),
      row('Vehicle', [h('span', { class: 'mono' }, cmd.vin ?? '—'), ' ', h('span', { class: 'muted' }, `(${cmd.vehicle_id})`)]),
      row('Status', h('dd', { role: 'status' }, statusBadge)),
      row('Error', error),
      ...(cmd.negative_response
        ? row('Negative response', h('dd', { 'data-testid': 'detail-nrc' },
          h('code', {}, cmd.negative_response.code), ' ', cmd.negative_response.name))
        : []),
      row('Submitted by', h('code', {}, cmd.user_id)),
      row('Submitted at', timeEl(cmd.submitted_at)),
      row('Completed at', completed),
      row('Duration', duration),
      row('Attempts', cmd.attempts ?? '—'),
      row('Correlation id', h('code', {}, cmd.correlation_id ?? '—')));

    const entries = Object.entries(cmd.command_params ?? {});
    const params = h('section', { class: 'card', 'aria-labelledby': 'params-h', 'data-testid': 'detail-params' },
      h('h2', { id: 'params-h' }, 'Parameters'),
      entries.length
        ? h('dl', { class: 'kv' }, entries.map(([k, v]) => [h('dt', {}, k), h('dd', {}, h('code', {}, typeof v === 'object' ? JSON.stringify(v) : String(v)))]))
        : h('p', { class: 'muted' }, 'This operation takes no parameters.'));

    const respSection = h('section', { class: 'responses', 'data-testid': 'detail-responses', 'aria-labelledby': 'resp-h' },
      h('h2', { id: 'resp-h' }, `Responses`));
    if (TERMINAL.has(cmd.status)) {
      const sorted = [...responses].sort((a, b) => a.sequence_number - b.sequence_number);
      respSection.append(sorted.length
        ? h('ol', { class: 'chunks', 'aria-label': 'Responses received' }, sorted.map((r) => chunkItem(normalizeChunk(r), 'response-chunk')))
        : h('p', { class: 'muted' }, 'No responses were received.'));
    } else {
      const viewer = liveViewer({
        command: cmd,
        initial: responses,
        onChange: (s) => {
          setBadge(statusBadge, s.status);
          if (s.completed_at) {
            completed.replaceChildren(timeEl(s.completed_at));
            duration.textContent = fmtDuration(cmd.submitted_at, s.completed_at);
          }
          if (s.error_message) error.textContent = s.error_message;
        },
      });
      ctx.onCleanup(viewer.destroy);
      respSection.append(viewer.el);
    }
    body.replaceChildren(h('section', { class: 'card', 'aria-label': 'Summary' }, summary), params, respSection);
  };
  load();
}

function auditPage(ctx) {
  const summarize = (d) => {
    const text = Object.entries(d ?? {}).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`).join(', ');
    return text.length > 120 ? h('span', { title: text }, `${text.slice(0, 119)}…`) : text || '—';
  };
  const view = listView(ctx, {
    path: '/audit',
    key: 'entries',
    caption: 'Audit log',
    testid: 'audit-table',
    applyTestid: 'audit-apply',
    fields: [
      { name: 'from', label: 'From', type: 'date', testid: 'audit-filter-from', toParam: isoDayStart },
      { name: 'to', label: 'To', type: 'date', testid: 'audit-filter-to', toParam: isoDayEnd },
      { name: 'actor', label: 'Actor', testid: 'audit-filter-actor' },
      { name: 'action', label: 'Action', testid: 'audit-filter-action' },
      { name: 'vehicle', label: 'Vehicle', testid: 'audit-filter-vehicle' },
    ],
    columns: [
      { label: 'Time', cell: (e) => timeEl(e.occurred_at) },
      { label: 'Actor', cell: (e) => e.actor },
      { label: 'Action', cell: (e) => h('code', {}, e.action) },
      { label: 'Target', cell: (e) => e.target ?? '—' },
      { label: 'Details', cell: (e) => summarize(e.details), className: 'details' },
      { label: 'Correlation id', cell: (e) => (e.correlation_id ? h('code', {}, e.correlation_id) : '—') },
    ],
    rowAttrs: (e) => ({ 'data-testid': 'audit-row', 'data-key': String(e.id) }),
    empty: 'No audit entries match these filters.',
    csv: { testid: 'audit-export', prefix: 'audit' },
  });
  $main.append(pageHeading('Audit log'), view.el);
}

function usersPage(ctx) {
  const slot = h('div');
  const tableSlot = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const me = session.user;

  async function act(success, fn) {
    showIn(slot);
    try {
      await fn();
      if (ctx.alive) showIn(slot, notice(success));
      await load();
    } catch (e) {
      if (ctx.alive) showIn(slot, errorBox(e));
    }
  }

  function actionsCell(u) {
    const resetHost = h('div');
    const toggle = h('button', {
      type: 'button', class: 'btn btn-small', 'data-testid': 'user-toggle-active',
      disabled: u.user_id === me?.user_id, title: u.user_id === me?.user_id ? 'You cannot deactivate your own account' : null,
    }, u.active ? 'Deactivate' : 'Reactivate');
    toggle.addEventListener('click', () => act(`${u.username} ${u.active ? 'deactivated' : 'reactivated'}.`,
      () => api('PATCH', `/users/${encodeURIComponent(u.user_id)}`, { body: { active: !u.active } })));
    const resetBtn = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'user-reset-password', 'aria-expanded': 'false' }, 'Reset password');
    const close = () => { resetHost.replaceChildren(); resetBtn.setAttribute('aria-expanded', 'false'); };
    resetBtn.addEventListener('click', () => {
      if (resetHost.firstChild) { close(); return; }
      const pid = `pw-${u.user_id}`;
      const input = h('input', { id: pid, type: 'password', autocomplete: 'new-password', required: true, 'data-testid': 'user-reset-input' });
      const cancel = h('button', { type: 'button', class: 'btn btn-small' }, 'Cancel');
      cancel.addEventListener('click', () => { close(); resetBtn.focus(); });
      const f = h('form', { class: 'inline-form', novalidate: true },
        h('label', { for: pid }, `New password for ${u.username}`), input,
        h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn btn-small btn-primary', 'data-testid': 'user-reset-submit' }, 'Set password'), cancel));
      f.addEventListener('submit', (e) => {
        e.preventDefault();
        if (!input.value) { input.focus(); return; }
        act(`Password of ${u.username} reset.`,
          () => api('POST', `/users/${encodeURIComponent(u.user_id)}/reset-password`, { body: { password: input.value } }));
      });
      resetHost.replaceChildren(f);
      resetBtn.setAttribute('aria-expanded', 'true');
      input.focus();
    });
    const unlock = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'user-unlock',
      title: 'Lift every sign-in lock on this user' }, 'Unlock');
    unlock.addEventListener('click', async () => {
      showIn(slot);
      try {
        const { data } = await api('POST', `/users/${encodeURIComponent(u.user_id)}/unlock`);
        if (ctx.alive) showIn(slot, notice(data?.message ?? `${u.username} unlocked.`));
      } catch (e) {
        if (ctx.alive) showIn(slot, errorBox(e));
      }
    });
    return h('div', { class: 'row-actions' }, toggle, resetBtn, unlock, resetHost);
  }

  function permissionsCell(u) {
    const held = (u.permissions ?? []).includes('vehicle-changes');
    if (u.role === 'admin') return h('span', { class: 'muted' }, 'all (admin)');
    const id = `vc-${u.user_id}`;
    const box = h('input', { id, type: 'checkbox', 'data-testid': 'user-vehicle-changes' });
    box.checked = held;
    box.addEventListener('change', () => act(
      box.checked ? `${u.username} may now run operations that change a vehicle.` : `${u.username} may no longer change vehicles.`,
      () => api('PATCH', `/users/${encodeURIComponent(u.user_id)}`, { body: { permissions: box.checked ? ['vehicle-changes'] : [] } })));
    return h('label', { for: id, class: 'inline' }, box, ' may change vehicles');
  }

  function roleCell(u) {
    const sel = selectEl(`role-${u.user_id}`, ROLES.map((r) => [r, r]), 'user-role-select', u.role);
    sel.setAttribute('aria-label', `Role for ${u.username}`);
    const save = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'user-save-role' }, 'Save role');
    save.addEventListener('click', () => act(`Role of ${u.username} set to ${sel.value}.`,
      () => api('PATCH', `/users/${encodeURIComponent(u.user_id)}`, { body: { role: sel.value } })));
    return h('div', { class: 'inline' }, sel, save);
  }

  async function load() {
    try {
      const { data } = await api('GET', '/users');
      if (!ctx.alive) return;
      swap(tableSlot, table({
        testid: 'users-table',
        caption: 'Users',
        columns: [
          { label: 'Username', cell: (u) => u.username },
          { label: 'Role', cell: roleCell },
          { label: 'Email', cell: (u) => u.email || '—' },
          { label: 'Active', cell: (u) => badge(u.active ? 'active' : 'inactive') },
          { label: 'Permissions', cell: permissionsCell },
          { label: 'Created', cell: (u) => timeEl(u.created_at) },
          { label: 'Actions', cell: actionsCell },
        ],
        rows: data ?? [],
        rowAttrs: (u) => ({ 'data-testid': 'user-row', 'data-user-id': u.user_id, 'data-key': u.user_id }),
        empty: 'No users.',
      }));
    } catch (e) {
      if (ctx.alive) showIn(slot, errorBox(e, load));
    }
  }

  const nu = {
    username: h('input', { id: 'nu-username', autocomplete: 'off', required: true, 'data-testid': 'user-add-username' }),
    password: h('input', { id: 'nu-password', type: 'password', autocomplete: 'new-password', required: true, 'data-testid': 'user-add-password' }),
    role: selectEl('nu-role', ROLES.map((r) => [r, r]), 'user-add-role', 'viewer'),
    email: h('input', { id: 'nu-email', type: 'email', autocomplete: 'off', 'data-testid': 'user-add-email' }),
  };
  const addSlot = h('div');
  const addForm = h('form', { class: 'card add-user', novalidate: true, 'aria-labelledby': 'add-user-h' },
    h('h2', { id: 'add-user-h' }, 'Add a user'),
    addSlot,
    h('div', { class: 'form-grid' },
      field('Username', nu.username), field('Password', nu.password), field('Role', nu.role), field('Email (optional)', nu.email)),
    h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'user-add-submit' }, 'Add user')));
  addForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = { username: nu.username.value.trim(), password: nu.password.value, role: nu.role.value };
    if (!body.username || !body.password) {
      showIn(addSlot, errorBox(new ApiError('Username and password are required.')));
      (body.username ? nu.password : nu.username).focus();
      return;
    }
    if (nu.email.value.trim()) body.email = nu.email.value.trim();
    showIn(addSlot);
    try {
      await api('POST', '/users', { body });
      if (!ctx.alive) return;
      showIn(addSlot, notice(`User ${body.username} added as ${body.role}.`));
      addForm.reset();
      load();
    } catch (err) {
      if (ctx.alive) showIn(addSlot, errorBox(err));
    }
  });

  $main.append(pageHeading('Users'), slot, tableSlot, addForm);
  load();
}

/* ────────────────────────────────────── Start ────────────────────────────────────── */

async function signOut() {
  const token = session.refresh;
  try {
    if (token) await api('POST', '/auth/logout', { body: { refresh_token: token } });
  } catch { /* the local session ends regardless of what the server says */ }
  session.clear();
  flash = 'You are signed out.';
  if (location.hash.startsWith('#/login')) render();
  else location.hash = '#/login';
}

document.getElementById('signout').addEventListener('click', signOut);
// The skip link must not change the hash, which is the router's.
document.getElementById('skip-link').addEventListener('click', (e) => {
  e.preventDefault();
  ($main.querySelector('h1') ?? $main).focus();
});
window.addEventListener('hashchange', render);

if (session.access) {
  scheduleRefresh();
  // The role may have changed since the last visit; refresh what the navigation shows.
  api('GET', '/auth/me').then(({ data }) => {
    const before = session.user?.role;
    session.setUser(data);
    if (before !== data.role) render();
    else updateChrome(routes.find((r) => r.path.test(location.hash.slice(1).split('?')[0])));
  }).catch(() => {});
}
render();
