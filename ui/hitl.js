// The HITL queue: escalations waiting for a decision, oldest first, each with what a
// reviewer needs (the trace, the steps already taken, the policy, why it escalated), and the
// tenant's kill switch. Only owners decide (services/api/remediation.c, actions.c).

import {
  fill, ctx, el, api, errorText, qs, isOwner, fmtTime, fmtDuration, shortId, badge, heading, loading,
  empty, errorBox, pager, section, reasonForm, confirmDialog, messagesView, jsonText,
} from './lib.js';

const LIMIT = 20;
// cursors of the pages walked so far, for Previous (the API pages forward only)
let walk = { key: '', cursors: [''] };

export async function render(root, route) {
  const query = route.query;
  const cursor = query.get('cursor') || '';
  const key = ctx.projectId || '';
  if (walk.key !== key) walk = { key, cursors: [''] };
  let at = walk.cursors.indexOf(cursor);
  if (at < 0) { walk.cursors.push(cursor); at = walk.cursors.length - 1; }

  const ks = el('div', {}, loading('Loading the kill switch…'));
  const list = el('div', {}, loading());
  fill(root, heading('Human review queue'), section('Control', ks),
    el('h2', { class: 'section-title' }, 'Pending escalations'), list);
  await Promise.all([killSwitch(ks), queue(list, cursor, at)]);
}

async function killSwitch(box) {
  const r = await api('GET', '/v1/control/killswitch');
  if (!r.ok) { fill(box, errorBox(`Could not read the kill switch: ${errorText(r)}`)); return; }
  const active = !!(r.data && r.data.active);
  const notice = el('div', {});
  const toggle = async (enable) => {
    const ok = await confirmDialog(
      enable ? 'Enable the kill switch?' : 'Disable the kill switch?',
      enable ? 'The control loop stops executing actions for every project of this tenant ' +
               'until the switch is disabled. Arriving actions wait as pending.'
             : 'The control loop resumes and executes the actions that waited.',
      enable ? 'Enable' : 'Disable');
    if (!ok) return;
    const res = await api('POST', `/v1/control/killswitch/${enable ? 'enable' : 'disable'}`, {});
    if (!res.ok) { fill(notice, errorBox(errorText(res))); return; }
    ctx.refreshBanners();
    await killSwitch(box);
  };
  fill(box, el('div', { class: 'killswitch' },
    el('p', {}, 'Kill switch: ',
      el('strong', { id: 'killswitch-state', 'data-active': String(active),
                     class: active ? 'state-on' : 'state-off' }, active ? 'active' : 'off'),
      el('span', { class: 'muted' }, active
        ? ' — the control loop executes nothing for this tenant.'
        : ' — the control loop runs.')),
    isOwner() ? el('div', { class: 'actions' }, active
      ? el('button', { type: 'button', 'data-action': 'killswitch-disable',
                       onclick: () => toggle(false) }, 'Disable kill switch')
      : el('button', { type: 'button', class: 'danger', 'data-action': 'killswitch-enable',
                       onclick: () => toggle(true) }, 'Enable kill switch')) : null),
  notice);
}

function stepResult(result) {
  if (!result || typeof result !== 'object') return el('span', { class: 'muted' }, 'no result');
  const parts = [];
  if (typeof result.output === 'string') parts.push(el('pre', { class: 'text' }, result.output));
  if (result.error) parts.push(el('pre', { class: 'text error-text' }, String(result.error)));
  if (Array.isArray(result.evaluations) && result.evaluations.length) {
    parts.push(el('ul', { class: 'evals' }, result.evaluations.map((e) => el('li', {},
      el('span', { class: e.passed ? 'pass' : 'fail' }, e.passed ? '✓ ' : '✗ '),
      `${e.rule_name || e.metric_name || 'rule'}${e.feedback ? `: ${e.feedback}` : ''}`))));
  }
  if (!parts.length) parts.push(el('pre', { class: 'text' }, jsonText(result)));
  return parts;
}

function escalationCard(a, onDecided) {
  const trace = a.trace || {};
  const history = Array.isArray(a.history) ? a.history : [];
  const waiting = (Date.now() - new Date(a.created_at).getTime()) / 1000;
  const notice = el('div', {});
  const formArea = el('div', {});
  const decide = async (action, body) => {
    const r = await api('POST', `/v1/control/actions/${encodeURIComponent(a.id)}/${action}`, body);
    if (!r.ok) return errorText(r);
    onDecided(card, action, r.data);
    return null;
  };
  const buttons = isOwner() ? el('div', { class: 'actions' },
    el('button', { type: 'button', 'data-action': 'approve', onclick: async (ev) => {
      ev.currentTarget.disabled = true;
      const err = await decide('approve', {});
      if (err) { fill(notice, errorBox(err)); ev.target.disabled = false; }
    } }, 'Approve'),
    el('button', { type: 'button', class: 'secondary', 'data-action': 'reject', onclick: () => {
      fill(formArea, reasonForm({ submitLabel: 'Reject',
        onSubmit: (reason) => decide('reject', { reason }),
        onCancel: () => fill(formArea) }));
    } }, 'Reject')) : null;
  const intended = a.payload && a.payload.intended_action;
  const card = el('article', { class: 'card escalation', 'data-action-id': a.id },
    el('header', { class: 'esc-head' },
      el('span', { class: 'mono' }, a.trace_id),
      badge(a.escalation_reason || a.action_type),
      el('span', { class: 'muted', 'data-field': 'waiting', title: fmtTime(a.created_at) },
        `waiting ${fmtDuration(waiting)}`)),
    el('dl', { class: 'fields' },
      el('dt', {}, 'Policy'), el('dd', { 'data-field': 'policy' },
        a.policy_name || (a.policy_id ? shortId(a.policy_id) : 'none (through the API)')),
      el('dt', {}, 'Reason'), el('dd', {}, a.escalation_reason
        ? a.escalation_reason.replace(/_/g, ' ') : 'escalate policy'),
      intended ? [el('dt', {}, 'On approval'), el('dd', {}, `runs ${intended}`)] : null,
      el('dt', {}, 'Model'), el('dd', {}, trace.model || '—'),
      el('dt', {}, 'Queued'), el('dd', {}, fmtTime(a.created_at))),
    el('div', { class: 'esc-body' },
      el('div', { class: 'sample-part' }, el('h4', {}, 'Trace input'),
        messagesView(trace.input && trace.input.messages ? trace.input.messages : trace.input)),
      el('div', { class: 'sample-part' }, el('h4', {}, 'Original output'),
        trace.output === null || trace.output === undefined ? el('span', { class: 'muted' }, 'none')
          : el('pre', { class: 'text' }, String(trace.output)),
        trace.error ? el('pre', { class: 'text error-text' }, String(trace.error)) : null),
      el('div', { class: 'sample-part' }, el('h4', {}, `Remediations so far (${history.length})`),
        history.length ? el('ol', { class: 'history' }, history.map((h) => el('li', {},
          el('div', { class: 'step-head' }, el('strong', {}, h.action_type), ' ', badge(h.status)),
          stepResult(h.result)))) : el('span', { class: 'muted' }, 'none'))),
    buttons, formArea, notice);
  return card;
}

async function queue(box, cursor, at) {
  const r = await api('GET', `/v1/control/actions/pending${qs({
    project_id: ctx.projectId, limit: LIMIT, cursor })}`);
  if (!r.ok) { fill(box, errorBox(`Could not load the queue: ${errorText(r)}`)); return; }
  const items = r.data.items || [];
  const next = r.data.next_cursor;
  const onDecided = (card, action, result) => {
    const st = result && result.status ? result.status : (action === 'approve' ? 'executed' : 'failed');
    fill(card, el('p', { class: 'ok', role: 'status' },
      `${action === 'approve' ? 'Approved' : 'Rejected'}: trace `, el('span', { class: 'mono' },
        card.dataset.actionId ? items.find((i) => i.id === card.dataset.actionId)?.trace_id || '' : ''),
      ' → ', badge(st)));
    card.classList.add('decided');
  };
  fill(box, 
    items.length ? el('div', { class: 'queue' }, items.map((a) => escalationCard(a, onDecided)))
      : empty(cursor ? 'No more escalations.' : 'Nothing is waiting for a decision.'),
    pager(at > 0 ? () => ctx.setQuery({ cursor: walk.cursors[at - 1] || '' }) : null,
          next ? () => ctx.setQuery({ cursor: next }) : null));
}
