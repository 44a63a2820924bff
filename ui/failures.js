// Failures: the project's failure clusters with their 24 h trend, and one cluster with its
// sample traces. Owners triage (acknowledge, resolve, reopen).

import {
  fill, ctx, el, api, errorText, qs, href, link, isOwner, fmtTime, fmtAgo, shortSig, shortId, badge,
  heading, loading, empty, errorBox, table, pager, fields, section, select, sparkline,
  messagesView,
} from './lib.js';

const LIMIT = 50;
const STATUSES = ['new', 'acknowledged', 'resolved'];

// the button per move, and the statuses it applies from
const MOVES = [
  { action: 'acknowledge', label: 'Acknowledge', to: 'acknowledged', from: ['new'] },
  { action: 'resolve', label: 'Resolve', to: 'resolved', from: ['new', 'acknowledged'] },
  { action: 'reopen', label: 'Reopen', to: 'new', from: ['acknowledged', 'resolved'] },
];

export function render(root, route) {
  return route.parts[1] ? renderDetail(root, route.parts[1]) : renderList(root, route.query);
}

/** Owner buttons for a cluster; onDone(updated cluster) after a move. */
function moveButtons(cluster, onDone, onError) {
  if (!isOwner()) return null;
  return el('div', { class: 'row-actions' }, MOVES.filter((m) => m.from.includes(cluster.status))
    .map((m) => el('button', { type: 'button', class: 'small secondary', 'data-action': m.action,
      onclick: async (ev) => {
        const button = ev.currentTarget;
        button.disabled = true;
        const r = await api('PATCH', `/v1/failures/clusters/${encodeURIComponent(cluster.id)}`,
                            { status: m.to });
        if (r.ok) onDone(r.data && r.data.id ? r.data : { ...cluster, status: m.to });
        else { button.disabled = false; onError(errorText(r)); }
      } }, m.label)));
}

function errorLabel(c) {
  return el('div', { class: 'err-cell' },
    el('span', { class: 'tag' }, c.error_type || 'error'),
    el('span', { class: 'clip' }, c.error_message || ''));
}

async function renderList(root, query) {
  const status = query.get('status') || '';
  const offset = Math.max(0, parseInt(query.get('offset') || '0', 10) || 0);
  const filter = select({ id: 'status-filter', 'aria-label': 'Status',
                          onchange: (ev) => ctx.setQuery({ status: ev.target.value, offset: '' }) },
    [['', 'all statuses'], ...STATUSES.map((s) => [s, s])], status);
  const body = el('div', {}, loading());
  const notice = el('div', {});
  fill(root, heading('Failures', filter), notice, body);

  const r = await api('GET', `/v1/failures/clusters${qs({
    project_id: ctx.projectId, status, limit: LIMIT, offset })}`);
  if (!r.ok) { fill(body, errorBox(`Could not load the clusters: ${errorText(r)}`)); return; }
  const clusters = r.data.clusters || [];
  const rows = clusters.map((c) => ({ ...c }));

  const draw = () => {
    const cols = [
      { label: 'Signature', cls: 'mono', cell: (c) =>
        el('a', { href: href(`failures/${encodeURIComponent(c.id)}`), title: c.signature },
          shortSig(c.signature)) },
      { label: 'Error', cls: 'wide', cell: errorLabel },
      { label: 'Count', cls: 'num', cell: (c) => String(c.count) },
      { label: 'First seen', cls: 'nowrap', cell: (c) => fmtTime(c.first_seen) },
      { label: 'Last seen', cls: 'nowrap', cell: (c) => fmtTime(c.last_seen) },
      { label: '24 h', cell: (c) => sparkline(c.trend_24h) },
      { label: 'Status', cell: (c) => badge(c.status) },
      { label: 'Fix', cell: (c) => c.deployment_id
        ? el('a', { href: href(`improvements/${encodeURIComponent(c.deployment_id)}`) },
          badge(c.deployment_status || 'proposed'))
        : el('span', { class: 'muted' }, '—') },
    ];
    if (isOwner()) {
      cols.push({ label: 'Triage', cell: (c) => moveButtons(c, (u) => {
        Object.assign(c, u);
        draw();
      }, (e) => fill(notice, errorBox(e))) });
    }
    const nextOffset = r.data.next_offset;
    const hasNext = nextOffset !== undefined ? nextOffset !== null : clusters.length === LIMIT;
    fill(body, 
      rows.length ? table(cols, rows, { class: 'clusters' })
        : empty(status ? `No ${status} failure clusters.` : 'No failure clusters in this project.'),
      pager(offset > 0 ? () => ctx.setQuery({ offset: Math.max(0, offset - LIMIT) || '' }) : null,
            hasNext ? () => ctx.setQuery({ offset: nextOffset || offset + LIMIT }) : null,
            rows.length ? `${offset + 1}–${offset + rows.length}` : ''));
  };
  draw();
}

function sampleView(s) {
  return el('article', { class: 'sample' },
    el('header', { class: 'sample-head' },
      el('span', { class: 'mono' }, s.id),
      s.model ? el('span', { class: 'tag' }, s.model) : null,
      el('span', { class: 'muted' }, fmtTime(s.created_at))),
    el('div', { class: 'sample-part' }, el('h4', {}, 'Input'),
      messagesView(s.input && s.input.messages ? s.input.messages : s.input)),
    el('div', { class: 'sample-part' }, el('h4', {}, 'Output'),
      s.output === null || s.output === undefined ? el('span', { class: 'muted' }, 'none')
        : el('pre', { class: 'text' }, String(s.output))),
    s.error ? el('div', { class: 'sample-part' }, el('h4', {}, 'Error'),
      el('pre', { class: 'text error-text' }, String(s.error))) : null);
}

async function renderDetail(root, id) {
  fill(root, loading());
  const r = await api('GET', `/v1/failures/clusters/${encodeURIComponent(id)}`);
  if (!r.ok) {
    fill(root, link('failures', '← Failures'),
      errorBox(`Could not load the cluster: ${errorText(r)}`));
    return;
  }
  const c = r.data;
  const notice = el('div', {});
  const draw = () => {
    const deps = Array.isArray(c.deployments) ? c.deployments : [];
    const samples = Array.isArray(c.samples) ? c.samples : [];
    fill(root, 
      el('p', { class: 'crumbs' }, link('failures', '← Failures')),
      heading(`Failure cluster ${shortSig(c.signature)}`,
        moveButtons(c, (u) => { Object.assign(c, u); draw(); },
                    (e) => fill(notice, errorBox(e)))),
      notice,
      section(null, fields([
        ['Status', el('span', { 'data-field': 'status' }, badge(c.status))],
        ['Error type', c.error_type],
        ['Message', el('span', { class: 'pre-line' }, c.error_message || '')],
        ['Count', String(c.count)],
        ['First seen', `${fmtTime(c.first_seen)} (${fmtAgo(c.first_seen)})`],
        ['Last seen', `${fmtTime(c.last_seen)} (${fmtAgo(c.last_seen)})`],
        ['Last 24 h', sparkline(c.trend_24h)],
        ['Signature', el('span', { class: 'mono break' }, c.signature)],
      ])),
      section('Prompt improvements',
        deps.length ? el('ul', { class: 'plain' }, deps.map((d) => el('li', {},
          el('a', { href: href(`improvements/${encodeURIComponent(d.id)}`) },
            `deployment ${shortId(d.id)}`), ' ', badge(d.status), ' ',
          el('span', { class: 'muted' }, fmtTime(d.created_at)))))
          : empty('No prompt improvement was proposed for this cluster yet.')),
      section(`Sample traces (${samples.length})`,
        samples.length ? samples.map(sampleView) : empty('No samples stored.')));
  };
  draw();
}
