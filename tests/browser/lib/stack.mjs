// The running stack the browser tests talk to: its variables (eval "$(scripts/stack up)"),
// its REST API with a key, and the data the tests rely on: what scripts/demo left (the
// rolled-back deployment, a failure cluster, billing-bot's pending escalation) and the XSS
// fixture trace the tests ingest themselves.

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

/** A variable of the stack's environment; throws when it is not set. */
export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the tests with the stack's variables (eval "$(scripts/stack up)")`);
  return v;
}

export const API = () => env('PL_API_URL');
export const keys = {
  owner: () => env('PL_OWNER_KEY'),
  member: () => env('PL_MEMBER_KEY'),
  viewer: () => env('PL_VIEWER_KEY'),
};

/** A REST call with an API key: { status, data (parsed JSON or null), headers }. */
export async function api(method, path, key, body) {
  const headers = { Authorization: `Bearer ${key}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(API() + path, {
    method, headers, redirect: 'manual',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: text }; }
  return { status: res.status, data, headers: res.headers };
}

/** Like api(), but throws unless the status is one of ok. */
export async function apiOk(method, path, key, body, ok = [200, 201]) {
  const r = await api(method, path, key, body);
  if (!ok.includes(r.status)) {
    throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.data)}`);
  }
  return r.data;
}

/** Polls fn until it returns a truthy value or timeoutMs passes (then throws with what). */
export async function waitFor(what, fn, timeoutMs = 30000, intervalMs = 200) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) { last = e; }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

// ---- what scripts/demo left --------------------------------------------------------------

/** The demo's deployment that was shipped and then rolled back by the monitor. */
export async function rolledBackDeployment() {
  const d = await apiOk('GET', '/v1/prompts/deployments?status=rolled_back', keys.viewer());
  if (!d.items.length) throw new Error('no rolled-back deployment: did scripts/demo run against this stack?');
  return d.items[0];
}

/** The demo project's largest failure cluster: act 1's answers that are not JSON. */
export async function demoCluster(projectId = env('PL_PROJECT_ID')) {
  const d = await apiOk('GET', `/v1/failures/clusters?project_id=${projectId}&limit=500`, keys.viewer());
  if (!d.clusters.length) throw new Error('no failure cluster: did scripts/demo run against this stack?');
  return d.clusters.reduce((a, b) => (b.count > a.count ? b : a));
}

/** The escalations waiting in the HITL queue (scripts/demo leaves invoice-43's there). */
export async function pendingEscalations() {
  return (await apiOk('GET', '/v1/control/actions/pending', keys.viewer())).items;
}

// ---- fixtures the tests ingest -------------------------------------------------------------

/** Markup where the pages show text: any of it executing is a dialog or a CSP report. */
export const XSS = {
  traceId: 'xss-fixture-1',
  output: '<img src=x onerror=alert(1)>',
  error: '<img src=x onerror=alert(2)><script>alert(3)</script>',
  question: '<svg onload=alert(4)></svg>',
};

/**
 * Ingests the XSS fixture trace into the demo project (PL_MEMBER_KEY), once: a second call
 * finds it a duplicate. Resolves when the detector has evaluated it, with its id and project.
 */
export async function ingestXssFixtures() {
  const project = env('PL_PROJECT_ID');
  await apiOk('POST', '/v1/ingest', keys.member(), {
    project_id: project,
    id: XSS.traceId,
    model: 'gpt-4o-mini',
    input: { messages: [
      { role: 'system', content: 'You are the support assistant of an online shop.' },
      { role: 'user', content: XSS.question },
    ] },
    output: XSS.output,
    error: XSS.error,
    latency_ms: 120,
  }, [200, 201, 202]);
  await waitFor(`trace ${XSS.traceId} evaluated`, async () => {
    const r = await api('GET', `/v1/traces/${XSS.traceId}?project_id=${project}`, keys.viewer());
    return r.status === 200 && r.data.evaluations.length > 0;
  });
  return { traceId: XSS.traceId, projectId: project };
}

/** A cluster's id in routes: its id where the API has one, else its signature. */
export const clusterRouteId = (c) => c.id || c.signature;

/** A project of the demo tenant by name (scripts/demo creates billing-bot). */
export async function projectByName(name) {
  const d = await apiOk('GET', '/v1/projects?limit=200', keys.viewer());
  const p = d.items.find((x) => x.name === name);
  if (!p) throw new Error(`no project ${name}: did scripts/demo run against this stack?`);
  return p;
}

/**
 * The dashboard's main routes, with the ids of what scripts/demo left: [{ name, hash }].
 * ?project= picks the project the page shows: the demo project, or billing-bot where act 3
 * left its data. The screenshots and the route sweeps go through these.
 */
export async function demoRoutes() {
  const demo = `?project=${env('PL_PROJECT_ID')}`;
  const billing = `?project=${(await projectByName('billing-bot')).id}`;
  const cluster = await demoCluster();
  const deployment = await rolledBackDeployment();
  return [
    { name: 'failures', hash: `#/failures${demo}` },
    { name: 'failure-cluster', hash: `#/failures/${clusterRouteId(cluster)}${demo}` },
    { name: 'improvements', hash: `#/improvements${demo}` },
    { name: 'improvement-rolled-back', hash: `#/improvements/${deployment.id}${demo}` },
    { name: 'hitl', hash: `#/hitl${billing}` },
    { name: 'policies', hash: `#/policies${billing}` },
    { name: 'settings', hash: `#/settings${demo}` },
    { name: 'registry', hash: `#/registry${demo}` },
    { name: 'registry-prompt',
      hash: `#/registry/${(await supportChat()).prompt.id}${demo}&from=1&to=2` },
    { name: 'audit', hash: `#/audit${demo}` },
  ];
}

/** The clusters the XSS fixture trace joined (its output fails the json rule; its error). */
export async function xssClusters(projectId = env('PL_PROJECT_ID')) {
  const d = await apiOk('GET', `/v1/failures/clusters?project_id=${projectId}&limit=200`, keys.viewer());
  return d.clusters.filter((c) => (c.sample_ids || []).includes(XSS.traceId) ||
                                  c.error_message.includes('<script>'));
}

// ---- the registry and rows the tests add --------------------------------------------------

/**
 * Runs sql through psql against the stack's database (PL_PG_DSN); vars become psql variables
 * (:'name' in sql quotes one as a literal). Returns the output's rows, fields split on |.
 */
export function psql(sql, vars = {}) {
  const args = [env('PL_PG_DSN'), '-X', '-At', '-v', 'ON_ERROR_STOP=1'];
  for (const [k, v] of Object.entries(vars)) args.push('-v', `${k}=${v}`);
  const r = spawnSync('psql', args, { input: sql, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`psql: ${r.error ? r.error.message : r.stderr}`);
  return r.stdout.split('\n').filter(Boolean).map((line) => line.split('|'));
}

/** The system prompt text of an Adaline prompt object (GET /v2/deployments). */
export function adalineSystemText(prompt) {
  const m = (prompt.messages || []).find((x) => x.role === 'system');
  if (!m) return null;
  return Array.isArray(m.content) ? m.content.map((c) => c.value ?? '').join('') : String(m.content);
}

/** What production serves of prompt promptId: GET /v2/deployments?deploymentId=current. */
export async function servedPrompt(promptId, environmentId) {
  return apiOk('GET', `/v2/deployments?promptId=${promptId}&deploymentId=current` +
    `&deploymentEnvironmentId=${environmentId}`, keys.viewer());
}

/**
 * scripts/demo's registry prompt support-chat: { prompt, production (the environment),
 * live (its live row there: version_id, version), system (the text served now) }.
 */
export async function supportChat(projectId = env('PL_PROJECT_ID')) {
  const prompts = await apiOk('GET', `/v1/prompts?project_id=${projectId}&limit=200`, keys.viewer());
  const prompt = prompts.items.find((p) => p.name === 'support-chat');
  if (!prompt) throw new Error('no prompt support-chat: did scripts/demo run against this stack?');
  const envs = await apiOk('GET', `/v1/environments?project_id=${projectId}`, keys.viewer());
  const production = envs.items.find((e) => e.name === 'production');
  const live = production && (production.live || []).find((l) => l.prompt_id === prompt.id);
  if (!live) throw new Error('support-chat is not live in production');
  const system = adalineSystemText((await servedPrompt(prompt.id, production.id)).prompt);
  return { prompt, production, live, system };
}

/**
 * Adds a deployment of support-chat to the demo project as the differ and the A/B harness
 * would have left it: status proposed (no A/B report yet) or ab_passed (with the report of
 * the demo's rolled-back deployment, which the monitor needs once it ships). Its base is the
 * live version and current_prompt that version's system prompt, so that an approval ships a
 * new registry version (pl_registry_ship_hook). Returns the deployment as the API shows it.
 */
export async function insertDeployment({ status, proposedPrompt, rationale }) {
  const chat = await supportChat();
  const source = await rolledBackDeployment();
  const [[id]] = psql(`
    INSERT INTO prompt_deployments (tenant_id, project_id, cluster_signature, status,
      current_prompt, proposed_prompt, rationale, prompt_id, base_version_id, ab_report)
    SELECT tenant_id, project_id, :'sig', :'status', :'cur', :'prop', :'why', :'prompt',
      :'base', CASE WHEN :'status' = 'proposed' THEN NULL ELSE ab_report END
    FROM prompt_deployments WHERE id = :'src'
    RETURNING id;`, {
    // its own signature: one open deployment per (project, signature)
    sig: `sha256:${randomBytes(32).toString('hex')}`,
    status, cur: chat.system, prop: proposedPrompt, why: rationale,
    prompt: chat.prompt.id, base: chat.live.version_id, src: source.id,
  });
  return apiOk('GET', `/v1/prompts/deployments/${id}`, keys.viewer());
}

/**
 * Ingests into project a trace whose prose answer fails billing-bot's json rule, as
 * scripts/demo does with invoice-43, and waits until its escalation is pending approval.
 * Returns the escalation's id.
 */
export async function ingestEscalation(projectId, traceId, question, answer) {
  await apiOk('POST', '/v1/ingest', keys.member(), {
    project_id: projectId, id: traceId, model: 'gpt-4o-mini',
    input: { messages: [
      { role: 'system', content: 'You are the billing assistant. Reply with a JSON object.' },
      { role: 'user', content: question },
    ] },
    output: answer, latency_ms: 900,
  }, [200, 201, 202]);
  return waitFor(`the escalation of trace ${traceId}`, async () => {
    const t = await apiOk('GET', `/v1/traces/${traceId}?project_id=${projectId}`, keys.viewer());
    const e = (t.remediation_history || []).find((h) => h.status === 'pending_approval');
    return e && e.id;
  }, 60000);
}
