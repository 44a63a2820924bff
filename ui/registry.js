// Registry: the project's prompts, and one prompt with its versions (a diff between any two),
// the environments serving it and their deployment history.

import {
  fill, ctx, el, api, errorText, qs, href, link, fmtTime, heading, loading, empty, errorBox,
  table, pager, section, select, jsonText, badge,
} from './lib.js';
import { diffView } from './diffview.js';

const LIMIT = 50;

export function render(root, route) {
  return route.parts[1] ? renderPrompt(root, route.parts[1], route.query)
    : renderList(root, route.query);
}

async function renderList(root, query) {
  const offset = Math.max(0, parseInt(query.get('offset') || '0', 10) || 0);
  const body = el('div', {}, loading());
  fill(root, heading('Prompt registry'), body);
  const r = await api('GET', `/v1/prompts${qs({ project_id: ctx.projectId, limit: LIMIT, offset })}`);
  if (!r.ok) { fill(body, errorBox(`Could not load the prompts: ${errorText(r)}`)); return; }
  const items = r.data.items || [];
  const total = typeof r.data.total === 'number' ? r.data.total : null;
  const cols = [
    { label: 'Prompt', cell: (p) => el('a', { href: href(`registry/${encodeURIComponent(p.id)}`) }, p.name) },
    { label: 'Latest version', cls: 'num', cell: (p) => (p.latest_version ? `v${p.latest_version}` : '—') },
    { label: 'Created', cls: 'nowrap', cell: (p) => fmtTime(p.created_at) },
  ];
  fill(body, 
    items.length ? table(cols, items, { class: 'prompts' }) : empty('No prompts in this project.'),
    pager(offset > 0 ? () => ctx.setQuery({ offset: Math.max(0, offset - LIMIT) || '' }) : null,
          (total !== null ? offset + items.length < total : items.length === LIMIT)
            ? () => ctx.setQuery({ offset: offset + LIMIT }) : null,
          items.length ? `${offset + 1}–${offset + items.length}${total !== null ? ` of ${total}` : ''}` : ''));
}

/** A manifest as readable text: each message, then the other members as JSON. */
function manifestText(m) {
  if (!m || typeof m !== 'object') return jsonText(m);
  const out = [];
  for (const msg of Array.isArray(m.messages) ? m.messages : []) {
    out.push(`[${msg.role}]${msg.name ? ` (${msg.name})` : ''}`, jsonText(msg.content), '');
  }
  const rest = { ...m };
  delete rest.messages;
  for (const k of ['name', 'type', 'version', 'ml_repo', 'version_alias']) delete rest[k];
  if (Object.keys(rest).length) out.push(JSON.stringify(rest, null, 2));
  return out.join('\n');
}

/** The prompt's versions, newest first: from the prompt itself when it lists them, else from
 * the TrueFoundry-compatible version list. */
async function loadVersions(prompt) {
  if (Array.isArray(prompt.versions)) return { items: prompt.versions, more: false };
  const r = await api('GET', `/api/ml/v1/prompt-versions${qs({ prompt_id: prompt.id, limit: 100 })}`);
  if (!r.ok) return { error: errorText(r) };
  const items = (r.data.data || []).map((v) => ({
    id: v.id, version: v.manifest && v.manifest.version, version_alias: v.manifest && v.manifest.version_alias,
    manifest: v.manifest, created_at: v.created_at, tags: v.tags || [],
    created_by: v.created_by_subject ? v.created_by_subject.subjectSlug : '',
  }));
  items.sort((a, b) => (b.version || 0) - (a.version || 0));
  const total = r.data.pagination && r.data.pagination.total;
  return { items, more: typeof total === 'number' && total > items.length };
}

async function renderPrompt(root, id, query) {
  fill(root, loading());
  const r = await api('GET', `/v1/prompts/${encodeURIComponent(id)}`);
  const crumbs = el('p', { class: 'crumbs' }, link('registry', '← Registry'));
  if (!r.ok) { fill(root, crumbs, errorBox(`Could not load the prompt: ${errorText(r)}`)); return; }
  const prompt = r.data;
  const versionsBox = el('div', {}, loading());
  const diffBox = el('div', {});
  const envBox = el('div', {}, loading());
  fill(root, crumbs,
    heading(`Prompt ${prompt.name}`),
    el('p', { class: 'muted' }, `Created ${fmtTime(prompt.created_at)} · latest version ` +
      `${prompt.latest_version ? `v${prompt.latest_version}` : '—'}`),
    section('Versions', versionsBox),
    section('Compare versions', diffBox),
    section('Environments', envBox));

  const [vs] = await Promise.all([loadVersions(prompt), environments(envBox, prompt)]);
  if (vs.error) {
    fill(versionsBox, errorBox(`Could not load the versions: ${vs.error}`));
    fill(diffBox);
    return;
  }
  const versions = vs.items;
  fill(versionsBox, 
    versions.length ? table([
      { label: 'Version', cls: 'num', cell: (v) => `v${v.version}` },
      { label: 'Alias', cell: (v) => v.version_alias || '—' },
      { label: 'Tags', cell: (v) => (v.tags && v.tags.length ? v.tags.join(', ') : '—') },
      { label: 'Created by', cell: (v) => v.created_by || '—' },
      { label: 'Created', cls: 'nowrap', cell: (v) => fmtTime(v.created_at) },
    ], versions, { class: 'versions' }) : empty('This prompt has no versions yet.'),
    vs.more ? el('p', { class: 'muted' }, 'Showing the newest 100 versions.') : null);

  if (versions.length < 1) { fill(diffBox, empty('Nothing to compare.')); return; }
  const opts = versions.map((v) => [String(v.version), `v${v.version}${v.version_alias ? ` (${v.version_alias})` : ''}`]);
  const byNum = new Map(versions.map((v) => [String(v.version), v]));
  const want = (k, d) => (byNum.has(query.get(k) || '') ? query.get(k) : d);
  const newest = String(versions[0].version);
  const previous = String(versions[Math.min(1, versions.length - 1)].version);
  const from = select({ id: 'diff-from', 'aria-label': 'From version' }, opts, want('from', previous));
  const to = select({ id: 'diff-to', 'aria-label': 'To version' }, opts, want('to', newest));
  const out = el('div', { class: 'diff-out' });
  const update = () => {
    const a = byNum.get(from.value), b = byNum.get(to.value);
    fill(out, diffView(manifestText(a && a.manifest), manifestText(b && b.manifest),
      { fromLabel: `v${from.value}`, toLabel: `v${to.value}` }));
  };
  from.addEventListener('change', update);
  to.addEventListener('change', update);
  fill(diffBox, el('div', { class: 'diff-pick' },
    el('label', { for: 'diff-from' }, 'From'), from,
    el('label', { for: 'diff-to' }, 'to'), to), out);
  update();
}

async function environments(box, prompt) {
  const r = await api('GET', `/v1/environments${qs({ project_id: prompt.project_id })}`);
  if (!r.ok) { fill(box, errorBox(`Could not load the environments: ${errorText(r)}`)); return; }
  const envs = r.data.items || [];
  if (!envs.length) { fill(box, empty('The project has no environments.')); return; }
  const parts = await Promise.all(envs.map(async (env) => {
    const live = (env.live || []).find((l) => l.prompt_id === prompt.id);
    const h = await api('GET', `/v1/environments/${encodeURIComponent(env.id)}/deployments${qs({
      prompt_id: prompt.id, limit: 20 })}`);
    const rows = h.ok ? h.data.items || [] : [];
    return el('div', { class: 'env', 'data-environment': env.name },
      el('h3', {}, env.name, ' ',
        live ? el('span', { class: 'muted' }, `serves v${live.version}` +
          (live.rollout_pct < 100 ? ` (canary ${live.rollout_pct} %)` : '') +
          ` since ${fmtTime(live.created_at)}`) : el('span', { class: 'muted' }, 'not deployed')),
      !h.ok ? errorBox(`Could not load the history: ${errorText(h)}`)
        : rows.length ? table([
          { label: 'When', cls: 'nowrap', cell: (d) => fmtTime(d.created_at) },
          { label: 'Version', cls: 'num', cell: (d) => `v${d.version}` },
          { label: 'Rollout', cls: 'num', cell: (d) => (d.rollout_pct === undefined ? '—' : `${d.rollout_pct} %`) },
          { label: 'By', cell: (d) => d.created_by || '—' },
          { label: '', cell: (d) => (rows[0] === d ? badge('live') : null) },
        ], rows, { class: 'env-history' }) : empty('No deployments of this prompt here.'),
      h.ok && typeof h.data.total === 'number' && h.data.total > rows.length
        ? el('p', { class: 'muted' }, `Newest ${rows.length} of ${h.data.total}.`) : null);
  }));
  fill(box, ...parts);
}

