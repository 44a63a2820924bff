// The dashboard's entry point. Every text from the server goes into the page as text
// (textContent, never innerHTML): traces, prompts and LLM replies come from any client.
// The session lives in an HttpOnly cookie the script cannot read; the CSRF token it gets at
// sign-in goes with every mutation as X-CSRF-Token.

const main = document.getElementById('main');
const status = document.getElementById('status');
let session = null;

/** Creates an element with attributes and children (strings become text nodes). */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(typeof c === 'string' ? document.createTextNode(c) : c);
  return e;
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && session) headers['X-CSRF-Token'] = session.csrf_token;
  const res = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = { error: text }; }
  return { status: res.status, data };
}

function showSignIn(message) {
  session = null;
  status.textContent = 'signed out';
  const key = el('input', { type: 'password', id: 'api-key', name: 'api_key',
                            autocomplete: 'off', placeholder: 'pl_…', required: '' });
  const error = el('p', { class: 'error', role: 'alert' }, message || '');
  const form = el('form', { class: 'card signin', onsubmit: async (ev) => {
    ev.preventDefault();
    const r = await api('POST', '/ui/session', { api_key: key.value });
    if (r.status === 201) { session = r.data; showHome(); }
    else error.textContent = (r.data && r.data.error) || `sign-in failed (${r.status})`;
  } },
    el('h1', {}, 'Sign in'),
    el('label', { for: 'api-key' }, 'API key'), key,
    el('button', { type: 'submit' }, 'Sign in'), error);
  main.replaceChildren(form);
  key.focus();
}

function showHome() {
  status.replaceChildren(
    `${session.role} · tenant ${session.tenant_id.slice(0, 8)} · ${session.plan} plan `,
    el('button', { class: 'link', id: 'sign-out', onclick: async () => {
      await api('DELETE', '/ui/session');
      showSignIn('Signed out.');
    } }, 'Sign out'));
  main.replaceChildren(el('section', { class: 'card' },
    el('h1', {}, 'promptloop'),
    el('p', {}, 'Signed in. The dashboard pages (failures, prompt improvements, the HITL queue, ' +
                'policies, the kill switch, settings, registry and audit) come next.')));
}

async function start() {
  const r = await api('GET', '/ui/session');
  if (r.status === 200) { session = r.data; showHome(); } else showSignIn();
}

start();
