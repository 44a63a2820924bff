// Prompt improvements (deployments): the list by status, and one deployment with its prompt
// diff, its A/B report, the owner's decisions and, once shipped, the live monitoring.

import {
  fill, ctx, el, api, errorText, qs, href, link, isOwner, fmtTime, fmtAgo, fmtPct, fmtPts, fmtNum,
  shortSig, shortId, badge, heading, loading, empty, errorBox, table, pager, fields, section,
  select, reasonForm,
} from './lib.js';
import { diffView } from './diffview.js';
import { mountChart } from './chart.js';

const LIMIT = 25;
const STATUSES = ['proposed', 'ab_running', 'ab_passed', 'ab_failed', 'shipped', 'monitoring',
                  'regressed', 'rolled_back', 'rejected'];

// the statuses each owner decision applies from (common/deploy.c)
const CAN = {
  approve: ['ab_passed'],
  // a live deployment rejected is taken back like a rollback and ends rejected
  reject: ['proposed', 'ab_running', 'ab_passed', 'shipped', 'monitoring', 'regressed'],
  rollback: ['shipped', 'monitoring', 'regressed'],
};

export function render(root, route) {
  return route.parts[1] ? renderDetail(root, route.parts[1]) : renderList(root, route.query);
}

async function renderList(root, query) {
  const status = query.get('status') || '';
  const offset = Math.max(0, parseInt(query.get('offset') || '0', 10) || 0);
  const filter = select({ id: 'status-filter', 'aria-label': 'Status',
                          onchange: (ev) => ctx.setQuery({ status: ev.target.value, offset: '' }) },
    [['', 'all statuses'], ...STATUSES.map((s) => [s, s.replace(/_/g, ' ')])], status);
  const body = el('div', {}, loading());
  fill(root, heading('Prompt improvements', filter), body);

  const r = await api('GET', `/v1/prompts/deployments${qs({
    project_id: ctx.projectId, status, limit: LIMIT, offset })}`);
  if (!r.ok) {
    fill(body, errorBox(`Could not load the prompt improvements: ${errorText(r)}`));
    return;
  }
  const items = r.data.items || [];
  const total = typeof r.data.total === 'number' ? r.data.total : null;
  const hasNext = total !== null ? offset + items.length < total : items.length === LIMIT;
  const cols = [
    { label: 'Deployment', cls: 'mono', cell: (d) =>
      el('a', { href: href(`improvements/${encodeURIComponent(d.id)}`) }, shortId(d.id)) },
    { label: 'Status', cell: (d) => badge(d.status) },
    { label: 'Cluster', cls: 'mono', cell: (d) => d.cluster_id
      ? el('a', { href: href(`failures/${encodeURIComponent(d.cluster_id)}`),
                  title: d.cluster_signature }, shortSig(d.cluster_signature))
      : el('span', { title: d.cluster_signature }, shortSig(d.cluster_signature)) },
    { label: 'Rationale', cls: 'wide', cell: (d) => el('span', { class: 'clip' }, d.rationale || '') },
    { label: 'Created', cls: 'nowrap', cell: (d) => fmtTime(d.created_at) },
    { label: 'Approved by', cell: (d) => d.approved_by || el('span', { class: 'muted' }, '—') },
  ];
  fill(body, 
    items.length ? table(cols, items, { class: 'deployments' })
      : empty(status ? `No prompt improvements in status ${status.replace(/_/g, ' ')}.`
        : 'No prompt improvements in this project yet.'),
    pager(offset > 0 ? () => ctx.setQuery({ offset: Math.max(0, offset - LIMIT) || '' }) : null,
          hasNext ? () => ctx.setQuery({ offset: offset + LIMIT }) : null,
          items.length ? `${offset + 1}–${offset + items.length}${total !== null ? ` of ${total}` : ''}` : ''));
}

// ---- the A/B report

function interval(ci) {
  if (!Array.isArray(ci) || ci.length !== 2) return '';
  return ` [${fmtPct(ci[0])}, ${fmtPct(ci[1])}]`;
}

function abReport(ab) {
  if (!ab || typeof ab !== 'object') {
    return empty('No A/B report yet: the candidate has not been replayed.');
  }
  const ci = ab.confidence_intervals || {};
  const rows = [];
  rows.push({ metric: 'correctness (held-out failures)',
              base: fmtPct(ab.correctness_baseline) + interval(ci.baseline),
              cand: fmtPct(ab.correctness_candidate) + interval(ci.candidate),
              delta: fmtPts(ab.correctness_delta), n: ab.sample_size });
  const g = ab.guardrail;
  if (g && typeof g === 'object') {
    rows.push({ metric: 'guardrail (passing traces)', base: fmtPct(g.baseline),
                cand: fmtPct(g.candidate),
                delta: fmtPts(typeof g.candidate === 'number' && typeof g.baseline === 'number'
                  ? g.candidate - g.baseline : null), n: g.sample_size });
  }
  if (ab.rules && typeof ab.rules === 'object') {
    for (const [name, v] of Object.entries(ab.rules)) {
      if (!v || typeof v !== 'object') continue;
      rows.push({ metric: `rule ${name}`, base: fmtPct(v.baseline), cand: fmtPct(v.candidate),
                  delta: fmtPts(typeof v.candidate === 'number' && typeof v.baseline === 'number'
                    ? v.candidate - v.baseline : null), n: ab.sample_size });
    }
  }
  const lat = ab.latency_ms;
  if (lat && lat.baseline && lat.candidate) {
    rows.push({ metric: 'latency mean / p95 (ms)',
                base: `${fmtNum(lat.baseline.mean, 1)} / ${fmtNum(lat.baseline.p95)}`,
                cand: `${fmtNum(lat.candidate.mean, 1)} / ${fmtNum(lat.candidate.p95)}`,
                delta: typeof lat.candidate.mean === 'number' && typeof lat.baseline.mean === 'number'
                  ? `${fmtNum(lat.candidate.mean - lat.baseline.mean, 1)} ms` : '—', n: '' });
  }
  const tok = ab.tokens;
  if (tok && tok.baseline && tok.candidate) {
    const sum = (t) => (Number(t.prompt) || 0) + (Number(t.completion) || 0);
    rows.push({ metric: 'tokens (prompt + completion)', base: String(sum(tok.baseline)),
                cand: String(sum(tok.candidate)),
                delta: String(sum(tok.candidate) - sum(tok.baseline)), n: '' });
  }
  const cols = [
    { label: 'Metric', cell: (x) => x.metric },
    { label: 'Baseline (current)', cls: 'num', cell: (x) => x.base },
    { label: 'Candidate (proposed)', cls: 'num', cell: (x) => x.cand },
    { label: 'Delta', cls: 'num', cell: (x) => x.delta },
    { label: 'n', cls: 'num', cell: (x) => (x.n === undefined || x.n === null ? '' : String(x.n)) },
  ];
  const gr = g && typeof g === 'object'
    ? (g.applied === false || g.passed === null || g.passed === undefined
      ? 'not applied (no guardrail traces)'
      : `${g.passed ? 'passed' : 'failed'}: lower bound ${fmtPts(g.lower_bound)} ` +
        `${g.passed ? '>' : '≤'} margin ${fmtPts(-g.margin)} ` +
        `(${g.test || 'non-inferiority'}, α ${fmtNum(g.alpha)})`)
    : '—';
  const th = ab.thresholds || {};
  return el('div', { class: 'ab-report' },
    table(cols, rows, { class: 'ab-table' }),
    fields([
      ['Decision', ab.decision ? badge(ab.decision) : '—'],
      ['McNemar p', el('span', { 'data-field': 'mcnemar-p' }, fmtNum(ab.mcnemar_p, 4))],
      ['Discordant pairs', ab.discordant
        ? `${ab.discordant.candidate_only} only the candidate passed, ` +
          `${ab.discordant.baseline_only} only the baseline` : '—'],
      ['Guardrail', el('span', { 'data-field': 'guardrail' }, gr)],
      ['Sample size', el('span', { 'data-field': 'sample-size' },
        `${ab.sample_size ?? '—'} held-out` + (g && g.sample_size !== undefined
          ? `, ${g.sample_size} guardrail` : ''))],
      ['Thresholds', th.min_delta !== undefined
        ? `delta ≥ ${fmtPts(th.min_delta)}, p < ${fmtNum(th.alpha)}, guardrail margin ` +
          `${fmtPct(th.guardrail_tolerance)}` : null],
      ['LLM errors', ab.llm_errors !== undefined ? String(ab.llm_errors) : null],
      ['Reason', ab.reason ? el('span', { class: 'pre-line' }, String(ab.reason)) : null],
    ]));
}

// ---- live monitoring

function monitorFigures(m) {
  if (!m || typeof m !== 'object') return empty('The monitor has not reported yet.');
  const b = m.baseline || {}, s = m.shipped || {}, st = m.statistic || {};
  const figs = [
    ['Monitor decision', m.decision ? badge(m.decision) : '—'],
    ['Shipped version', s.version !== undefined && s.version !== null
      ? `v${s.version}: ${fmtPct(s.pass_rate)} of ${s.traces ?? 0} live traces (${s.passed ?? 0} passed)`
      : null],
    ['Baseline', b.traces !== undefined
      ? `${b.version ? `v${b.version}: ` : ''}${fmtPct(b.pass_rate)} of ${b.traces} traces ` +
        `(${b.source || 'baseline'}; lower bound ${fmtPct(b.lower_bound)})` : null],
    ['Reference', m.reference !== undefined ? `${fmtPct(m.reference)} (lower bound − tolerance ${fmtPct(m.tolerance)})` : null],
    ['Statistic', st.log_e_value !== undefined
      ? `log e-value ${fmtNum(st.log_e_value)} vs threshold ${fmtNum(st.threshold)}` : null],
    ['Regressed at', m.regressed_at
      ? `${m.regressed_at.traces} traces, log e-value ${fmtNum(m.regressed_at.log_e_value)}` : null],
    ['Canary', m.canary ? `rollout ${m.canary.rollout_pct ?? '—'} %, promotion after ` +
      `${m.canary.min_samples} traces` : null],
    ['α / min samples', `${fmtNum(m.alpha)} / ${m.min_samples ?? '—'}`],
  ];
  return el('div', { class: 'monitor-figures' }, fields(figs.filter(([, v]) => v !== null)),
    m.rule ? el('details', {}, el('summary', {}, 'Decision rule'),
      el('p', { class: 'muted pre-line' }, String(m.rule))) : null);
}

async function monitorSection(d) {
  const chartBox = el('div', { id: 'monitor-chart', class: 'chart' }, loading('Loading the live series…'));
  const sec = section('Live monitoring',
    el('p', { class: 'muted' }, `Shipped ${fmtTime(d.shipped_at)} (${fmtAgo(d.shipped_at)})` +
      (d.rolled_back_at ? `, rolled back ${fmtTime(d.rolled_back_at)}` : '') +
      `. Rollout now ${d.rollout_pct ?? 0} %. Regression metric ` +
      `${d.regression_metric === null || d.regression_metric === undefined ? '—' : fmtPct(d.regression_metric)}.`),
    chartBox, monitorFigures(d.monitor_report));
  const load = async () => {
    const r = await api('GET', `/v1/prompts/deployments/${encodeURIComponent(d.id)}/series`);
    if (!chartBox.isConnected) await new Promise((res) => requestAnimationFrame(res));
    if (!r.ok) { fill(chartBox, errorBox(`Could not load the live series: ${errorText(r)}`)); return; }
    fill(chartBox);
    try { mountChart(chartBox, r.data); } catch (e) {
      fill(chartBox, errorBox(`The chart failed: ${e.message}`));
    }
  };
  return { sec, load };
}

// ---- the detail page

async function renderDetail(root, id) {
  fill(root, loading());
  const r = await api('GET', `/v1/prompts/deployments/${encodeURIComponent(id)}`);
  if (!r.ok) {
    fill(root, el('p', { class: 'crumbs' }, link('improvements', '← Prompt improvements')),
      errorBox(`Could not load the prompt improvement: ${errorText(r)}`));
    return;
  }
  await drawDetail(root, r.data);
}

async function drawDetail(root, d, message) {
  const notice = el('div', { class: 'notice-area' },
    message ? el('p', { class: 'ok', role: 'status' }, message) : null);
  const formArea = el('div', { class: 'form-area' });

  const act = async (action, body) => {
    const r = await api('POST', `/v1/prompts/deployments/${encodeURIComponent(d.id)}/${action}`, body);
    if (!r.ok) return errorText(r);
    // re-read: the answer may lack fields the detail shows
    const fresh = await api('GET', `/v1/prompts/deployments/${encodeURIComponent(d.id)}`);
    const next = fresh.ok ? fresh.data : (r.data && r.data.id ? r.data : d);
    const done = { approve: 'Approved and shipped.', reject: 'Rejected.', rollback: 'Rolled back.' };
    await drawDetail(root, next, done[action]);
    ctx.refreshBanners();
    return null;
  };

  const openReason = (action, label) => {
    fill(formArea, section(action === 'reject' ? 'Reject this proposal' : 'Roll back this deployment',
      reasonForm({ submitLabel: label,
                   onSubmit: (reason) => act(action, { reason }),
                   onCancel: () => fill(formArea) })));
  };

  let buttons = null;
  if (isOwner()) {
    const b = [];
    if (CAN.approve.includes(d.status)) {
      b.push(el('button', { type: 'button', 'data-action': 'approve', onclick: async (ev) => {
        ev.currentTarget.disabled = true;
        const err = await act('approve', {});
        if (err) { fill(notice, errorBox(err)); ev.target.disabled = false; }
      } }, 'Approve & ship'));
    }
    if (CAN.reject.includes(d.status)) {
      b.push(el('button', { type: 'button', class: 'secondary', 'data-action': 'reject',
                            onclick: () => openReason('reject', 'Reject') }, 'Reject'));
    }
    if (CAN.rollback.includes(d.status)) {
      b.push(el('button', { type: 'button', class: 'danger', 'data-action': 'rollback',
                            onclick: () => openReason('rollback', 'Roll back') }, 'Roll back'));
    }
    if (b.length) buttons = el('div', { class: 'actions', 'data-field': 'actions' }, b);
  }

  const shipped = !!d.shipped_at;
  const monitor = shipped ? await monitorSection(d) : null;

  fill(root, 
    el('p', { class: 'crumbs' }, link('improvements', '← Prompt improvements')),
    heading(`Prompt improvement ${shortId(d.id)}`,
      el('span', { 'data-field': 'status', 'data-status': d.status }, badge(d.status))),
    notice,
    section(null,
      fields([
        ['Cluster', d.cluster_id
          ? el('a', { href: href(`failures/${encodeURIComponent(d.cluster_id)}`), class: 'mono' },
            shortSig(d.cluster_signature))
          : el('span', { class: 'mono' }, shortSig(d.cluster_signature))],
        ['Created', fmtTime(d.created_at)],
        ['Updated', fmtTime(d.updated_at)],
        ['Approved by', d.approved_by || '—'],
        ['Shipped', d.shipped_at ? fmtTime(d.shipped_at) : '—'],
        d.rolled_back_at ? ['Rolled back', fmtTime(d.rolled_back_at)] : null,
        d.rejection_reason ? ['Reason', el('span', { class: 'pre-line', 'data-field': 'reason' },
          d.rejection_reason)] : null,
        d.prompt_id ? ['Prompt', el('a', { href: href(`registry/${encodeURIComponent(d.prompt_id)}`) },
          'registry')] : null,
      ]),
      el('h3', {}, 'Rationale'),
      el('p', { class: 'rationale pre-line', 'data-field': 'rationale' }, d.rationale || '—'),
      buttons),
    formArea,
    section('Prompt change', diffView(d.current_prompt, d.proposed_prompt,
      { fromLabel: 'current prompt', toLabel: 'proposed prompt' })),
    section('A/B test', abReport(d.ab_report)),
    monitor ? monitor.sec : null);
  if (monitor) await monitor.load();
}
