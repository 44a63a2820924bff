// The audit log: entries newest first, filtered by actor, action and target, with the
// hash chain's verification. The log is the tenant's (not one project's).

import {
  fill, ctx, el, api, errorText, qs, fmtTime, heading, loading, empty, errorBox, table, pager,
  jsonText,
} from './lib.js';

const LIMIT = 50;
// the cursors walked so far, for Previous (the API pages backwards in time only)
let walk = { key: null, cursors: [''] };

export async function render(root, route) {
  const q = route.query;
  const filters = { actor: q.get('actor') || '', action: q.get('action') || '', target: q.get('target') || '' };
  const cursor = q.get('cursor') || '';
  const key = JSON.stringify(filters);
  if (walk.key !== key) walk = { key, cursors: [''] };
  let at = walk.cursors.indexOf(cursor);
  if (at < 0) { walk.cursors.push(cursor); at = walk.cursors.length - 1; }

  const verify = el('span', { id: 'audit-verify', class: 'muted' }, 'verifying the chain…');
  const inputs = {};
  for (const k of ['actor', 'action', 'target']) {
    inputs[k] = el('input', { id: `audit-${k}`, name: k, placeholder: k, maxlength: '256' });
    inputs[k].value = filters[k];
  }
  const form = el('form', { class: 'filters', id: 'audit-filters', onsubmit: (ev) => {
    ev.preventDefault();
    ctx.setQuery({ actor: inputs.actor.value.trim(), action: inputs.action.value.trim(),
                   target: inputs.target.value.trim(), cursor: '' });
  } },
    ['actor', 'action', 'target'].map((k) => el('label', { class: 'filter' },
      el('span', { class: 'muted' }, k), inputs[k])),
    el('button', { type: 'submit' }, 'Filter'),
    el('button', { type: 'button', class: 'secondary', onclick: () =>
      ctx.setQuery({ actor: '', action: '', target: '', cursor: '' }) }, 'Clear'));
  const body = el('div', {}, loading());
  fill(root, heading('Audit log', verify),
    el('p', { class: 'muted' }, 'Every change of the tenant, chained by hash. The log covers all projects.'),
    form, body);

  api('GET', '/v1/audit/verify').then((r) => {
    if (!r.ok) { verify.textContent = `verification failed: ${errorText(r)}`; verify.className = 'error'; return; }
    if (r.data.verified) {
      verify.textContent = `chain verified (${r.data.row_count} entries)`;
      verify.className = 'ok';
    } else {
      verify.textContent = `chain broken: ${r.data.error || 'unknown error'}`;
      verify.className = 'error';
      verify.setAttribute('role', 'alert');
    }
  });

  const r = await api('GET', `/v1/audit-log${qs({ ...filters, cursor, limit: LIMIT })}`);
  if (!r.ok) { fill(body, errorBox(`Could not load the audit log: ${errorText(r)}`)); return; }
  const items = r.data.items || [];
  const next = r.data.next_cursor;
  const cols = [
    { label: '#', cls: 'num', cell: (e) => String(e.id) },
    { label: 'When', cls: 'nowrap', cell: (e) => fmtTime(e.at) },
    { label: 'Actor', cls: 'mono', cell: (e) => filterLink('actor', e.actor) },
    { label: 'Action', cell: (e) => filterLink('action', e.action) },
    { label: 'Target', cls: 'mono', cell: (e) => filterLink('target', e.target) },
    { label: 'Detail', cls: 'wide', cell: (e) => detail(e.detail) },
    { label: 'Hash', cls: 'mono', cell: (e) => el('span', { title: e.hash }, String(e.hash || '').slice(0, 10)) },
  ];
  fill(body,
    items.length ? table(cols, items, { class: 'audit' }) : empty('No audit entries match.'),
    pager(at > 0 ? () => ctx.setQuery({ cursor: walk.cursors[at - 1] || '' }) : null,
          next ? () => ctx.setQuery({ cursor: next }) : null));
}

/** A value that filters the log by itself when clicked; long ids are shortened. */
function filterLink(k, v) {
  if (v === null || v === undefined || v === '') return '—';
  const text = String(v);
  const shown = /^(key:)?[0-9a-f]{8}-[0-9a-f-]{27}$/.test(text)
    ? `${text.slice(0, text.startsWith('key:') ? 12 : 8)}…` : text;
  return el('button', { type: 'button', class: 'link', title: `only ${k} ${text}`,
                        'data-filter': k, onclick: () => ctx.setQuery({ [k]: text, cursor: '' }) },
    shown);
}

function detail(d) {
  if (d === null || d === undefined) return '—';
  const text = jsonText(d);
  if (text.length <= 60 && !text.includes('\n')) return el('code', {}, text);
  const oneLine = JSON.stringify(d);
  return el('details', {}, el('summary', {}, oneLine.length > 60 ? `${oneLine.slice(0, 57)}…` : oneLine),
    el('pre', { class: 'text' }, text));
}
