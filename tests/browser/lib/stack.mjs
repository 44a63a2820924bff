// The running stack the browser tests talk to: its variables (eval "$(scripts/stack up)"),
// its REST API with a key, and the data the tests rely on: what scripts/demo left (the
// rolled-back deployment, a failure cluster, billing-bot's pending escalation) and the XSS
// fixture trace the tests ingest themselves.

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
    { name: 'audit', hash: `#/audit${demo}` },
  ];
}

/** The clusters the XSS fixture trace joined (its output fails the json rule; its error). */
export async function xssClusters(projectId = env('PL_PROJECT_ID')) {
  const d = await apiOk('GET', `/v1/failures/clusters?project_id=${projectId}&limit=200`, keys.viewer());
  return d.clusters.filter((c) => (c.sample_ids || []).includes(XSS.traceId) ||
                                  c.error_message.includes('<script>'));
}
