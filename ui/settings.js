// Settings of the selected project: the control loop's switches and statistics. Owners
// change them (PATCH sends only the fields that changed); others read them.

import { fill, ctx, el, api, errorText, isOwner, fmtTime, heading, loading, errorBox, empty } from './lib.js';

// [field, label, kind, min, max, hint]; kinds: bool, int, num
const GROUPS = [
  ['Shipping', [
    ['prompt_autoship_enabled', 'Ship passed candidates automatically', 'bool', null, null,
     'ship an A/B-passed candidate without an owner’s approval'],
    ['auto_rollback_enabled', 'Roll back regressions automatically', 'bool', null, null,
     'roll back a shipped version the monitor found worse'],
    ['ship_canary_pct', 'Canary share %', 'int', 0, 99,
     'share of users served a new version first; 0 ships to everyone'],
    ['ship_canary_min_samples', 'Canary min. traces', 'int', 10, 1000000,
     'traces of the new version before the canary can be promoted'],
  ]],
  ['A/B test', [
    ['ab_min_delta', 'Min. improvement', 'num', 0, 1, 'pass-rate gain the candidate needs (0.05 = 5 pts)'],
    ['ab_alpha', 'Significance α', 'num', 0, 0.5, 'McNemar p must be below this'],
    ['ab_guardrail_tolerance', 'Guardrail tolerance', 'num', 0, 0.5, 'allowed drop on passing traces'],
    ['ab_holdout_size', 'Held-out traces', 'int', 1, 10000, 'cluster traces replayed per A/B'],
    ['ab_guardrail_size', 'Guardrail traces', 'int', 0, 10000, 'passing traces replayed as guardrail'],
  ]],
  ['Regression monitor', [
    ['regression_min_samples', 'Min. live traces', 'int', 1, 100000, 'before a regression can be called'],
    ['regression_alpha', 'False-rollback α', 'num', 0, 0.2, 'chance a version no worse is ever rolled back'],
    ['regression_tolerance', 'Tolerance', 'num', 0, 0.5, 'smaller drops are not a regression'],
    ['regression_baseline_size', 'Baseline traces', 'int', 10, 1000000, 'replaced version’s traces kept as baseline'],
    ['regression_window', 'Rolling window', 'int', 10, 100000, 'traces in the rolling pass rate'],
  ]],
  ['Failures and review', [
    ['cluster_min_size', 'Cluster min. size', 'int', 2, 100000, 'failures before an improvement is proposed'],
    ['hitl_timeout_s', 'HITL timeout (s)', 'int', 0, 2592000, 'an escalation waiting longer is rejected; 0 never'],
  ]],
];

export async function render(root) {
  fill(root, heading('Project settings'), loading());
  if (!ctx.projectId) { fill(root, heading('Project settings'), empty('No project selected.')); return; }
  const r = await api('GET', `/v1/projects/${encodeURIComponent(ctx.projectId)}`);
  if (!r.ok) {
    fill(root, heading('Project settings'), errorBox(`Could not load the project: ${errorText(r)}`));
    return;
  }
  draw(root, r.data);
}

function draw(root, project, message) {
  const owner = isOwner();
  const inputs = {};
  const mk = ([name, label, kind, min, max, hint]) => {
    const id = `set-${name}`;
    let input;
    if (kind === 'bool') {
      input = el('input', { id, name, type: 'checkbox', disabled: !owner });
      input.checked = !!project[name];
      inputs[name] = { input, kind };
      return el('div', { class: 'field check' }, input,
        el('label', { for: id }, label), el('small', { class: 'muted' }, hint));
    }
    input = el('input', { id, name, type: 'number', min: String(min), max: String(max),
                          step: kind === 'int' ? '1' : 'any', disabled: !owner });
    input.value = project[name] === null || project[name] === undefined ? '' : String(project[name]);
    inputs[name] = { input, kind };
    return el('div', { class: 'field' }, el('label', { for: id }, label), input,
      el('small', { class: 'muted' }, `${hint} (${min}–${max})`));
  };
  const nameInput = el('input', { id: 'set-name', name: 'name', maxlength: '200', disabled: !owner });
  nameInput.value = project.name || '';
  const error = el('p', { class: 'error', role: 'alert', id: 'form-error' });
  const ok = el('p', { class: 'ok', role: 'status' }, message || '');
  const submit = owner ? el('button', { type: 'submit', 'data-action': 'save-settings' }, 'Save settings') : null;

  const form = el('form', { id: 'settings-form', class: 'settings', novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    ok.textContent = '';
    const body = {};
    if (nameInput.value.trim() !== project.name) body.name = nameInput.value.trim();
    for (const [name, { input, kind }] of Object.entries(inputs)) {
      let v;
      if (kind === 'bool') v = input.checked;
      else {
        if (input.value.trim() === '') { error.textContent = `${name} needs a value`; return; }
        v = Number(input.value);
        if (!Number.isFinite(v) || (kind === 'int' && !Number.isInteger(v))) {
          error.textContent = `${name} must be ${kind === 'int' ? 'a whole number' : 'a number'}`;
          return;
        }
      }
      if (v !== project[name]) body[name] = v;
    }
    if (!Object.keys(body).length) { ok.textContent = 'Nothing changed.'; return; }
    submit.disabled = true;
    const r = await api('PATCH', `/v1/projects/${encodeURIComponent(project.id)}`, body);
    submit.disabled = false;
    if (!r.ok) { error.textContent = errorText(r); return; }
    draw(root, r.data, 'Saved.');
  } },
    el('fieldset', { class: 'card' }, el('legend', {}, 'Project'),
      el('div', { class: 'form-grid' },
        el('div', { class: 'field' }, el('label', { for: 'set-name' }, 'Name'), nameInput),
        el('div', { class: 'field' }, el('span', { class: 'label' }, 'Id'),
          el('span', { class: 'mono break' }, project.id)))),
    GROUPS.map(([title, list]) => el('fieldset', { class: 'card' }, el('legend', {}, title),
      el('div', { class: 'form-grid' }, list.map(mk)))),
    owner ? el('div', { class: 'actions sticky-actions' }, submit) : null,
    error, ok);

  fill(root, 
    heading(`Settings: ${project.name}`),
    owner ? null : el('p', { class: 'muted' }, 'Only owners change settings.'),
    el('p', { class: 'muted' }, `Updated ${fmtTime(project.updated_at)}.`),
    form);
}
