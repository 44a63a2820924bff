// Shared helpers of the dashboard pages: DOM building (text only), the API call, formatting,
// tables, pagers, page states and the confirmation dialog.
// Every text from the server goes into the page through text nodes: traces, prompts and LLM
// replies are written by any client.

/** What every page reads: the session, the projects and the selected project id. */
export const ctx = { session: null, projects: [], projectId: null };

export const isOwner = () => !!ctx.session && ctx.session.role === 'owner';

/**
 * Creates an element. attrs: on* become listeners, true/false toggle boolean attributes,
 * null/undefined are skipped. Children: strings and numbers become text nodes, arrays are
 * flattened, null/false are skipped.
 */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  setAttrs(e, attrs);
  append(e, children);
  return e;
}

/** Replaces node's children (same rules as el(): null/false skipped, arrays flattened). */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Like el() for SVG elements. */
export function svg(tag, attrs = {}, ...children) {
  const e = document.createElementNS(SVG_NS, tag);
  setAttrs(e, attrs);
  append(e, children);
  return e;
}

function setAttrs(e, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    // the CSP refuses inline style attributes; set styles through el.style instead
    if (k === 'style') throw new Error('style attributes are not allowed');
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(e, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(e, c);
    else if (c instanceof Node) e.append(c);
    else e.append(document.createTextNode(String(c)));
  }
}

/** Calls the API; never throws. Mutations carry the session's CSRF token. */
export async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && ctx.session) headers['X-CSRF-Token'] = ctx.session.csrf_token;
  let res;
  try {
    res = await fetch(path, {
      method, headers, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    return { status: 0, ok: false, data: { error: `network error: ${e.message}` } };
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = { error: text }; }
  if (res.status === 401 && ctx.onUnauthorized && !path.startsWith('/ui/session')) {
    ctx.onUnauthorized();
  }
  return { status: res.status, ok: res.status >= 200 && res.status < 300, data };
}

/** The error text of a failed call, as the API wrote it. */
export function errorText(r) {
  const msg = r.data && typeof r.data.error === 'string' && r.data.error;
  return msg || (r.status ? `request failed (${r.status})` : 'request failed');
}

/** A query string from an object, skipping empty values. */
export function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** A hash link that keeps the selected project. */
export function href(path, params = {}) {
  return `#/${path}${qs({ project: ctx.projectId, ...params })}`;
}

export function link(path, text, params) {
  return el('a', { href: href(path, params) }, text);
}

// ---- formatting

const pad = (n) => String(n).padStart(2, '0');

export function fmtTime(ts) {
  if (!ts) return '—';
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return String(ts);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
         `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function fmtDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function fmtAgo(ts) {
  if (!ts) return '—';
  const t = new Date(ts).getTime();
  if (Number.isNaN(t)) return String(ts);
  return `${fmtDuration((Date.now() - t) / 1000)} ago`;
}

/** A rate 0..1 as a percentage. */
export function fmtPct(x, digits = 1) {
  if (x === null || x === undefined || Number.isNaN(Number(x))) return '—';
  return `${(Number(x) * 100).toFixed(digits)} %`;
}

/** A signed difference of rates in percentage points. */
export function fmtPts(x, digits = 1) {
  if (x === null || x === undefined || Number.isNaN(Number(x))) return '—';
  const v = Number(x) * 100;
  return `${v > 0 ? '+' : v < 0 ? '−' : '±'}${Math.abs(v).toFixed(digits)} pts`;
}

export function fmtNum(x, digits = 3) {
  if (x === null || x === undefined) return '—';
  if (typeof x !== 'number') return String(x);
  if (Number.isInteger(x)) return String(x);
  return Math.abs(x) < 0.001 && x !== 0 ? x.toExponential(2) : x.toFixed(digits);
}

export const shortId = (id) => (id ? String(id).slice(0, 8) : '—');

export function shortSig(sig) {
  if (!sig) return '—';
  const s = String(sig);
  return s.startsWith('sha256:') ? s.slice(7, 19) : s.slice(0, 12);
}

/** Any JSON value as readable text (strings as they are). */
export function jsonText(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return v;
  return JSON.stringify(v, null, 2);
}

// ---- building blocks

export function badge(status) {
  const s = String(status || 'unknown');
  return el('span', { class: `badge badge-${s.replace(/[^a-z_]/gi, '')}` }, s.replace(/_/g, ' '));
}

/** A page heading with optional controls on the right. */
export function heading(title, ...controls) {
  return el('div', { class: 'page-head' }, el('h1', {}, title),
    el('div', { class: 'page-tools' }, controls));
}

export function loading(what = 'Loading…') {
  return el('p', { class: 'muted state-loading', 'aria-busy': 'true' }, what);
}

export function empty(text) {
  return el('p', { class: 'muted state-empty' }, text);
}

export function errorBox(text) {
  return el('p', { class: 'error state-error', role: 'alert' }, text);
}

/**
 * A table in a horizontally scrolling wrapper. columns: [{label, cell(row) → node|string,
 * cls}].
 */
export function table(columns, rows, attrs = {}) {
  return el('div', { class: 'table-wrap' },
    el('table', attrs,
      el('thead', {}, el('tr', {}, columns.map((c) => el('th', { class: c.cls }, c.label)))),
      el('tbody', {}, rows.map((r) => el('tr', {},
        columns.map((c) => el('td', { class: c.cls }, c.cell(r))))))));
}

/** Previous/next buttons; a missing handler leaves its button disabled. */
export function pager(onPrev, onNext, info) {
  // a single page needs no pager; its buttons stay in the page, hidden and disabled
  return el('div', { class: 'pager', hidden: !onPrev && !onNext },
    el('button', { type: 'button', class: 'secondary', 'data-page': 'prev', disabled: !onPrev,
                   onclick: () => onPrev && onPrev() }, '← Previous'),
    info ? el('span', { class: 'muted' }, info) : null,
    el('button', { type: 'button', class: 'secondary', 'data-page': 'next', disabled: !onNext,
                   onclick: () => onNext && onNext() }, 'Next →'));
}

/** A definition list from [label, value] pairs (values: nodes or text). */
export function fields(pairs) {
  return el('dl', { class: 'fields' },
    pairs.filter(Boolean).map(([k, v]) => [el('dt', {}, k),
      el('dd', {}, v === null || v === undefined || v === '' ? '—' : v)]));
}

export function section(title, ...children) {
  return el('section', { class: 'card' }, title ? el('h2', {}, title) : null, children);
}

/**
 * A form asking for a required reason. The submit button stays disabled and an alert says
 * so until the reason has text. onSubmit(reason) returns an error text or null.
 */
export function reasonForm({ submitLabel, onSubmit, onCancel, danger = true }) {
  const reason = el('textarea', { id: 'reason', name: 'reason', rows: '3', maxlength: '1000',
                                  required: true, placeholder: 'Why?' });
  const alert = el('p', { class: 'error', role: 'alert' }, 'a reason is required');
  const submit = el('button', { type: 'submit', class: danger ? 'danger' : null,
                                disabled: true }, submitLabel);
  const update = () => {
    const has = reason.value.trim() !== '';
    submit.disabled = !has;
    if (has && alert.textContent === 'a reason is required') alert.textContent = '';
    if (!has) alert.textContent = 'a reason is required';
  };
  reason.addEventListener('input', update);
  const form = el('form', { class: 'reason-form', onsubmit: async (ev) => {
    ev.preventDefault();
    const text = reason.value.trim();
    if (!text) { update(); return; }
    submit.disabled = true;
    const err = await onSubmit(text);
    if (err) { alert.textContent = err; submit.disabled = false; }
  } },
    el('label', { for: 'reason' }, 'Reason (required)'), reason,
    el('div', { class: 'actions' }, submit,
      el('button', { type: 'button', class: 'secondary', 'data-action': 'cancel',
                     onclick: () => onCancel && onCancel() }, 'Cancel')),
    alert);
  setTimeout(() => reason.focus(), 0);
  return form;
}

/** Asks in dialog#confirm; resolves true for yes. */
export function confirmDialog(title, message, yesLabel = 'Confirm') {
  const dialog = document.getElementById('confirm');
  dialog.querySelector('[data-field="confirm-title"]').textContent = title;
  dialog.querySelector('[data-field="confirm-message"]').textContent = message;
  const yes = dialog.querySelector('[data-confirm="yes"]');
  const no = dialog.querySelector('[data-confirm="no"]');
  yes.textContent = yesLabel;
  return new Promise((resolve) => {
    const done = (v) => {
      yes.removeEventListener('click', onYes);
      no.removeEventListener('click', onNo);
      dialog.removeEventListener('cancel', onNo);
      if (dialog.open) dialog.close();
      resolve(v);
    };
    const onYes = () => done(true);
    const onNo = (ev) => { if (ev) ev.preventDefault(); done(false); };
    yes.addEventListener('click', onYes);
    no.addEventListener('click', onNo);
    dialog.addEventListener('cancel', onNo);
    dialog.showModal();
    no.focus();
  });
}

/** Renders a list of chat messages (or any JSON value) as text blocks. */
export function messagesView(input) {
  if (Array.isArray(input) && input.every((m) => m && typeof m === 'object' && 'role' in m)) {
    return el('div', { class: 'messages' }, input.map((m) =>
      el('div', { class: 'message' },
        el('span', { class: 'role' }, String(m.role)),
        el('pre', { class: 'text' }, jsonText(m.content)))));
  }
  if (input === null || input === undefined) return el('span', { class: 'muted' }, 'none');
  return el('pre', { class: 'text' }, jsonText(input));
}

/** A short sparkline (bars) of hourly counts, oldest first. */
export function sparkline(values, label) {
  const v = Array.isArray(values) ? values.map((x) => Number(x) || 0) : [];
  const w = 96, h = 24, n = Math.max(v.length, 1), bw = w / n;
  const max = Math.max(1, ...v);
  const total = v.reduce((a, b) => a + b, 0);
  return svg('svg', { class: 'sparkline', width: w, height: h, viewBox: `0 0 ${w} ${h}`,
                      role: 'img', 'aria-label': label || `${total} in the last 24 h` },
    svg('title', {}, label || `${total} in the last 24 h (hourly)`),
    svg('line', { x1: 0, y1: h - 0.5, x2: w, y2: h - 0.5, class: 'spark-base' }),
    v.map((x, i) => {
      const bh = x > 0 ? Math.max(2, (x / max) * (h - 2)) : 0;
      return svg('rect', { x: (i * bw + 0.5).toFixed(2), y: (h - bh).toFixed(2),
                           width: Math.max(bw - 1, 1).toFixed(2), height: bh.toFixed(2),
                           class: i === v.length - 1 ? 'spark-now' : 'spark-bar' });
    }));
}

/** A select with options [[value, label]]. */
export function select(attrs, options, value) {
  const s = el('select', attrs, options.map(([v, l]) => el('option', { value: v }, l)));
  s.value = value === null || value === undefined ? '' : String(value);
  return s;
}
