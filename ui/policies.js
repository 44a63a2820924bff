// Policies: the project's list, one policy (owners edit it, others read it), a creation
// form, and archiving. The API's validation messages are shown as it wrote them.

import {
  fill, ctx, el, api, errorText, qs, href, link, isOwner, fmtTime, shortId, badge, heading, loading,
  empty, errorBox, table, pager, fields, section, select, confirmDialog, jsonText,
} from './lib.js';

const LIMIT = 50;
const STATUSES = ['draft', 'active', 'paused', 'archived'];
const TRIGGERS = ['eval_score', 'failure_rate'];
const ACTIONS = ['retry', 'fallback_model', 'prompt_modification', 'escalate', 'block'];
const PARAM_HINTS = {
  failure_rate: '{"threshold": 0.2, "window_s": 3600, "min_traces": 20}',
  eval_score: '{}',
  fallback_model: '{"model": "gpt-4o"}',
  prompt_modification: '{"append_system": "Reply with one JSON object."}',
  retry: '{}', escalate: '{}', block: '{}',
};

export function render(root, route) {
  const id = route.parts[1];
  if (id === 'new') return renderForm(root, null);
  return id ? renderDetail(root, id) : renderList(root, route.query);
}

function trigger(p) {
  if (p.trigger_type === 'failure_rate' && p.trigger_params) {
    return `failure rate > ${p.trigger_params.threshold}` +
           (p.trigger_params.window_s ? ` over ${p.trigger_params.window_s}s` : '');
  }
  return `eval score${p.rule_id ? ` (rule ${shortId(p.rule_id)})` : ' (any rule)'}`;
}

function actionText(p) {
  const ap = p.action_params || {};
  if (p.action_type === 'fallback_model' && ap.model) return `fallback to ${ap.model}`;
  if (p.action_type === 'prompt_modification') {
    return ap.version ? `prompt version ${ap.version}` : 'append to system prompt';
  }
  return p.action_type.replace(/_/g, ' ');
}

async function archive(p, notice, after) {
  const ok = await confirmDialog(`Archive policy “${p.name}”?`,
    'An archived policy no longer runs and can no longer change. It stays listed.', 'Archive');
  if (!ok) return;
  const r = await api('DELETE', `/v1/policies/${encodeURIComponent(p.id)}`);
  if (!r.ok) { fill(notice, errorBox(errorText(r))); return; }
  after();
}

async function renderList(root, query) {
  const status = query.get('status') || '';
  const offset = Math.max(0, parseInt(query.get('offset') || '0', 10) || 0);
  const filter = select({ id: 'status-filter', 'aria-label': 'Status',
                          onchange: (ev) => ctx.setQuery({ status: ev.target.value, offset: '' }) },
    [['', 'all statuses'], ...STATUSES.map((s) => [s, s])], status);
  const body = el('div', {}, loading());
  const notice = el('div', {});
  fill(root, heading('Policies', filter,
    isOwner() ? el('a', { class: 'button', href: href('policies/new'), 'data-action': 'new-policy' },
      'New policy') : null), notice, body);

  const r = await api('GET', `/v1/policies${qs({ project_id: ctx.projectId, status, limit: LIMIT, offset })}`);
  if (!r.ok) { fill(body, errorBox(`Could not load the policies: ${errorText(r)}`)); return; }
  const items = r.data.items || [];
  const total = typeof r.data.total === 'number' ? r.data.total : null;
  const cols = [
    { label: 'Name', cell: (p) => el('a', { href: href(`policies/${encodeURIComponent(p.id)}`) }, p.name) },
    { label: 'Status', cell: (p) => badge(p.status) },
    { label: 'Trigger', cell: trigger },
    { label: 'Action', cell: actionText },
    { label: 'Priority', cls: 'num', cell: (p) => String(p.priority) },
    { label: 'Rollout', cls: 'num', cell: (p) => `${p.rollout_pct} %` },
    { label: 'Dry run', cell: (p) => (p.dry_run ? el('span', { class: 'tag' }, 'dry run') : 'no') },
  ];
  if (isOwner()) {
    cols.push({ label: '', cell: (p) => (p.status === 'archived' ? null
      : el('button', { type: 'button', class: 'small secondary', 'data-action': 'archive',
                       onclick: () => archive(p, notice, () => ctx.setQuery({})) }, 'Archive')) });
  }
  fill(body, 
    items.length ? table(cols, items, { class: 'policies' })
      : empty(status ? `No ${status} policies.` : 'No policies in this project yet.'),
    pager(offset > 0 ? () => ctx.setQuery({ offset: Math.max(0, offset - LIMIT) || '' }) : null,
          (total !== null ? offset + items.length < total : items.length === LIMIT)
            ? () => ctx.setQuery({ offset: offset + LIMIT }) : null,
          items.length ? `${offset + 1}–${offset + items.length}${total !== null ? ` of ${total}` : ''}` : ''));
}

async function renderDetail(root, id) {
  fill(root, loading());
  const r = await api('GET', `/v1/policies/${encodeURIComponent(id)}`);
  if (!r.ok) {
    fill(root, el('p', { class: 'crumbs' }, link('policies', '← Policies')),
      errorBox(`Could not load the policy: ${errorText(r)}`));
    return;
  }
  const p = r.data;
  if (isOwner() && p.status !== 'archived') return renderForm(root, p);
  const notice = el('div', {});
  fill(root, 
    el('p', { class: 'crumbs' }, link('policies', '← Policies')),
    heading(`Policy ${p.name}`, el('span', { 'data-field': 'status' }, badge(p.status))),
    notice,
    section(null, fields([
      ['Description', p.description ? el('span', { class: 'pre-line' }, p.description) : null],
      ['Trigger', trigger(p)],
      ['Trigger parameters', el('pre', { class: 'text' }, jsonText(p.trigger_params))],
      ['Action', p.action_type],
      ['Action parameters', el('pre', { class: 'text' }, jsonText(p.action_params))],
      ['Priority', String(p.priority)],
      ['Rollout', `${p.rollout_pct} %`],
      ['Dry run', p.dry_run ? 'yes' : 'no'],
      ['Max retry depth', String(p.max_retry_depth)],
      ['Max cascade depth', String(p.max_cascade_depth)],
      ['Rule YAML', p.rule_yaml ? el('pre', { class: 'text' }, p.rule_yaml) : null],
      ['Created', `${fmtTime(p.created_at)} by ${p.created_by}`],
      ['Updated', fmtTime(p.updated_at)],
    ])));
}

/** A labelled form field. */
function field(label, input, hint) {
  return el('div', { class: 'field' }, el('label', { for: input.id }, label), input,
    hint ? el('small', { class: 'muted' }, hint) : null);
}

async function renderForm(root, p) {
  const editing = !!p;
  if (!isOwner()) {
    fill(root, el('p', { class: 'crumbs' }, link('policies', '← Policies')),
      errorBox('Only owners create or change policies.'));
    return;
  }
  const v = p || { name: '', description: '', status: 'draft', trigger_type: 'eval_score',
                   trigger_params: {}, rule_id: null, action_type: 'retry', action_params: {},
                   priority: 100, rollout_pct: 0, dry_run: true, max_retry_depth: 3,
                   max_cascade_depth: 5, rule_yaml: null };
  const rules = await api('GET', `/v1/eval-rules${qs({ project_id: ctx.projectId, limit: 200 })}`);
  const ruleOptions = [['', 'any rule of the project'],
    ...((rules.ok && rules.data.items) || []).map((x) => [x.id, `${x.metric_name} (${x.evaluator_type})`])];
  if (v.rule_id && !ruleOptions.some(([id]) => id === v.rule_id)) ruleOptions.push([v.rule_id, v.rule_id]);

  const I = {
    name: el('input', { id: 'policy-name', name: 'name', required: true, maxlength: '200' }),
    description: el('textarea', { id: 'policy-description', name: 'description', rows: '2', maxlength: '2000' }),
    status: select({ id: 'policy-status', name: 'status' }, STATUSES.filter((s) => s !== 'archived').map((s) => [s, s]), v.status),
    trigger_type: select({ id: 'policy-trigger', name: 'trigger_type' }, TRIGGERS.map((s) => [s, s]), v.trigger_type),
    trigger_params: el('textarea', { id: 'policy-trigger-params', name: 'trigger_params', rows: '3', class: 'mono', spellcheck: 'false' }),
    rule_id: select({ id: 'policy-rule', name: 'rule_id' }, ruleOptions, v.rule_id || ''),
    action_type: select({ id: 'policy-action', name: 'action_type' }, ACTIONS.map((s) => [s, s]), v.action_type),
    action_params: el('textarea', { id: 'policy-action-params', name: 'action_params', rows: '3', class: 'mono', spellcheck: 'false' }),
    priority: el('input', { id: 'policy-priority', name: 'priority', type: 'number', min: '0', max: '10000', step: '1' }),
    rollout_pct: el('input', { id: 'policy-rollout', name: 'rollout_pct', type: 'number', min: '0', max: '100', step: '1' }),
    dry_run: el('input', { id: 'policy-dry-run', name: 'dry_run', type: 'checkbox' }),
    max_retry_depth: el('input', { id: 'policy-retry-depth', name: 'max_retry_depth', type: 'number', min: '1', max: '10', step: '1' }),
    max_cascade_depth: el('input', { id: 'policy-cascade-depth', name: 'max_cascade_depth', type: 'number', min: '1', max: '20', step: '1' }),
    rule_yaml: el('textarea', { id: 'policy-rule-yaml', name: 'rule_yaml', rows: '3', class: 'mono', spellcheck: 'false' }),
  };
  I.name.value = v.name;
  I.description.value = v.description || '';
  I.trigger_params.value = JSON.stringify(v.trigger_params || {}, null, 2);
  I.action_params.value = JSON.stringify(v.action_params || {}, null, 2);
  I.priority.value = String(v.priority);
  I.rollout_pct.value = String(v.rollout_pct);
  I.dry_run.checked = !!v.dry_run;
  I.max_retry_depth.value = String(v.max_retry_depth);
  I.max_cascade_depth.value = String(v.max_cascade_depth);
  I.rule_yaml.value = v.rule_yaml || '';
  I.trigger_params.placeholder = PARAM_HINTS[v.trigger_type] || '{}';
  I.action_params.placeholder = PARAM_HINTS[v.action_type] || '{}';
  I.trigger_type.addEventListener('change', () => {
    I.trigger_params.placeholder = PARAM_HINTS[I.trigger_type.value] || '{}';
  });
  I.action_type.addEventListener('change', () => {
    I.action_params.placeholder = PARAM_HINTS[I.action_type.value] || '{}';
  });

  const error = el('p', { class: 'error', role: 'alert', id: 'form-error' });
  const ok = el('p', { class: 'ok', role: 'status' });

  /** The form's values as the API wants them, or throws with a message. */
  const values = () => {
    const json = (input, label) => {
      const t = input.value.trim();
      if (!t) return {};
      let o;
      try { o = JSON.parse(t); } catch (e) { throw new Error(`${label} is not valid JSON: ${e.message}`); }
      if (!o || typeof o !== 'object' || Array.isArray(o)) throw new Error(`${label} must be a JSON object`);
      return o;
    };
    const int = (input, label) => {
      const n = Number(input.value);
      if (input.value.trim() === '' || !Number.isInteger(n)) throw new Error(`${label} must be a whole number`);
      return n;
    };
    return {
      name: I.name.value.trim(),
      description: I.description.value,
      status: I.status.value,
      trigger_type: I.trigger_type.value,
      trigger_params: json(I.trigger_params, 'trigger_params'),
      rule_id: I.rule_id.value || null,
      action_type: I.action_type.value,
      action_params: json(I.action_params, 'action_params'),
      priority: int(I.priority, 'priority'),
      rollout_pct: int(I.rollout_pct, 'rollout_pct'),
      dry_run: I.dry_run.checked,
      max_retry_depth: int(I.max_retry_depth, 'max_retry_depth'),
      max_cascade_depth: int(I.max_cascade_depth, 'max_cascade_depth'),
      rule_yaml: I.rule_yaml.value.trim() ? I.rule_yaml.value : null,
    };
  };

  const submit = el('button', { type: 'submit' }, editing ? 'Save changes' : 'Create policy');
  const form = el('form', { id: 'policy-form', class: 'card form-grid', novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    ok.textContent = '';
    let body;
    try { body = values(); } catch (e) { error.textContent = e.message; return; }
    if (editing) {
      // only what changed: the server validates the stored policy with the changes on top
      const changed = {};
      for (const [k, x] of Object.entries(body)) {
        if (JSON.stringify(x) !== JSON.stringify(p[k] === undefined ? null : p[k])) changed[k] = x;
      }
      if (!Object.keys(changed).length) { ok.textContent = 'Nothing changed.'; return; }
      body = changed;
    } else {
      body = { project_id: ctx.projectId, ...body };
    }
    submit.disabled = true;
    const r = editing
      ? await api('PATCH', `/v1/policies/${encodeURIComponent(p.id)}`, body)
      : await api('POST', '/v1/policies', body);
    submit.disabled = false;
    if (!r.ok) { error.textContent = errorText(r); return; }
    if (editing) {
      Object.assign(p, r.data);
      ok.textContent = 'Saved.';
    } else {
      ctx.navigate(`policies/${encodeURIComponent(r.data.id)}`);
    }
  } },
    field('Name', I.name),
    field('Description', I.description),
    field('Status', I.status, 'draft and paused policies do not run'),
    field('Trigger', I.trigger_type),
    field('Trigger parameters (JSON)', I.trigger_params, 'failure_rate: {"threshold": 0.2, "window_s": 3600}'),
    field('Eval rule', I.rule_id, 'for eval_score: the rule whose failure triggers the policy'),
    field('Action', I.action_type),
    field('Action parameters (JSON)', I.action_params,
          'fallback_model: {"model": …}; prompt_modification: {"append_system": …} or {"version": n}'),
    field('Priority', I.priority, 'lower runs first (0–10000)'),
    field('Rollout %', I.rollout_pct, 'share of matching traces acted on (0–100)'),
    el('div', { class: 'field check' }, I.dry_run, el('label', { for: 'policy-dry-run' },
      'Dry run (record what would happen, do nothing)')),
    field('Max retry depth', I.max_retry_depth, '1–10'),
    field('Max cascade depth', I.max_cascade_depth, '1–20'),
    field('Rule YAML (optional, stored verbatim)', I.rule_yaml),
    el('div', { class: 'actions span-all' }, submit,
      el('a', { href: href('policies'), class: 'button secondary' }, 'Cancel')),
    el('div', { class: 'span-all' }, error, ok));

  const notice = el('div', {});
  fill(root, 
    el('p', { class: 'crumbs' }, link('policies', '← Policies')),
    heading(editing ? `Policy ${p.name}` : 'New policy',
      editing ? el('span', { 'data-field': 'status' }, badge(p.status)) : null,
      editing ? el('button', { type: 'button', class: 'secondary', 'data-action': 'archive',
        onclick: () => archive(p, notice, () => ctx.navigate('policies')) }, 'Archive') : null),
    notice,
    editing ? el('p', { class: 'muted' }, `Created ${fmtTime(p.created_at)} by ${p.created_by}; ` +
      `updated ${fmtTime(p.updated_at)}.`) : null,
    form);
  I.name.focus();
}
