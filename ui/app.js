// The dashboard's entry point: sign-in, the shell (nav, project selector, banners) and the
// hash router. Every text from the server goes into the page as text (textContent, never
// innerHTML): traces, prompts and LLM replies come from any client.
// The session lives in an HttpOnly cookie the script cannot read; the CSRF token it gets at
// sign-in goes with every mutation as X-CSRF-Token (lib.js api()).

import { fill, ctx, el, api, errorText, href, qs, errorBox, shortId, fmtAgo } from './lib.js';
import * as failures from './failures.js';
import * as improvements from './improvements.js';
import * as hitl from './hitl.js';
import * as policies from './policies.js';
import * as settings from './settings.js';
import * as registry from './registry.js';
import * as audit from './audit.js';

const main = document.getElementById('main');
const status = document.getElementById('status');
const nav = document.getElementById('nav');
const picker = document.getElementById('project-picker');
const projectSelect = document.getElementById('project');
const banners = document.getElementById('banners');

const pages = { failures, improvements, hitl, policies, settings, registry, audit };
const DEFAULT_ROUTE = 'improvements';
const PROJECT_KEY = 'pl.project';

/** The current hash as {page, parts, query}. */
function parseHash() {
  const h = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = h.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { page: parts[0] || '', parts, query: new URLSearchParams(query) };
}

/** Goes to a page with query params; the project is kept unless given. */
ctx.navigate = (path, params = {}) => {
  const target = href(path, params);
  if (location.hash === target) route();
  else location.hash = target;
};

/** Replaces the current query params (same page), e.g. a filter or a page offset. */
ctx.setQuery = (params) => {
  const r = parseHash();
  const q = Object.fromEntries(r.query.entries());
  delete q.project;
  ctx.navigate(r.parts.map(encodeURIComponent).join('/'), { ...q, ...params });
};

ctx.refreshBanners = () => refreshBanners();
ctx.onUnauthorized = () => { if (ctx.session) showSignIn('Your session ended. Sign in again.'); };

function showSignIn(message) {
  ctx.session = null;
  nav.hidden = true;
  picker.hidden = true;
  fill(banners);
  status.textContent = 'signed out';
  const key = el('input', { type: 'password', id: 'api-key', name: 'api_key',
                            autocomplete: 'off', placeholder: 'pl_…', required: '' });
  const error = el('p', { class: 'error', role: 'alert' }, message || '');
  const form = el('form', { class: 'card signin', onsubmit: async (ev) => {
    ev.preventDefault();
    const r = await api('POST', '/ui/session', { api_key: key.value });
    if (r.status === 201) { ctx.session = r.data; await showApp(); }
    else error.textContent = (r.data && r.data.error) || `sign-in failed (${r.status})`;
  } },
    el('h1', {}, 'Sign in'),
    el('label', { for: 'api-key' }, 'API key'), key,
    el('button', { type: 'submit' }, 'Sign in'), error);
  fill(main, form);
  key.focus();
}

function showStatus() {
  const s = ctx.session;
  const user = s.user && s.user.startsWith('key:') ? `key ${shortId(s.user.slice(4))}` : s.user;
  const who = s.user_name || user || (s.key_id ? `key ${shortId(s.key_id)}` : '');
  fill(status,
    el('span', { class: 'who' }, `${who ? `${who} · ` : ''}`,
      el('span', { class: 'role', 'data-field': 'role' }, s.role),
      ` · ${s.plan} plan `),
    el('button', { class: 'link', id: 'sign-out', type: 'button', onclick: async () => {
      await api('DELETE', '/ui/session');
      showSignIn('Signed out.');
    } }, 'Sign out'));
}

async function loadProjects() {
  const r = await api('GET', '/v1/projects?limit=200');
  ctx.projects = r.ok ? (r.data.items || []).filter((p) => !p.archived_at) : [];
  fill(projectSelect, ...ctx.projects.map((p) =>
    el('option', { value: p.id }, p.name)));
  if (!r.ok) {
    projectSelect.append(el('option', { value: '' }, 'projects unavailable'));
    return errorText(r);
  }
  if (!ctx.projects.length) projectSelect.append(el('option', { value: '' }, 'no projects'));
  return null;
}

async function showApp() {
  showStatus();
  nav.hidden = false;
  picker.hidden = false;
  const err = await loadProjects();
  if (err) fill(main, errorBox(`Could not load the projects: ${err}`));
  if (!parseHash().page) {
    history.replaceState(null, '', `#/${DEFAULT_ROUTE}`);
  }
  route();
}

projectSelect.addEventListener('change', () => {
  const id = projectSelect.value;
  try { localStorage.setItem(PROJECT_KEY, id); } catch (e) { /* storage may be off */ }
  ctx.projectId = id;
  // a detail page belongs to the project it was opened in: go back to the list
  const page = parseHash().page || DEFAULT_ROUTE;
  ctx.navigate(pages[page] ? page : DEFAULT_ROUTE);
});

/** Picks the project: the hash's, else the last one used, else the first. */
function pickProject(query) {
  const ids = ctx.projects.map((p) => p.id);
  let stored = null;
  try { stored = localStorage.getItem(PROJECT_KEY); } catch (e) { /* storage may be off */ }
  const wanted = query.get('project');
  if (wanted && (ids.includes(wanted) || !ids.length)) return wanted;
  if (stored && ids.includes(stored)) return stored;
  return ids[0] || wanted || null;
}

let renderSeq = 0;

async function route() {
  if (!ctx.session) return;
  const r = parseHash();
  if (!pages[r.page]) {
    history.replaceState(null, '', `#/${DEFAULT_ROUTE}`);
    return route();
  }
  const pid = pickProject(r.query);
  if (pid && r.query.get('project') !== pid) {
    // keep the project in the hash so that the link can be shared
    r.query.set('project', pid);
    history.replaceState(null, '', `#/${r.parts.map(encodeURIComponent).join('/')}?${r.query}`);
  }
  ctx.projectId = pid;
  if (pid) projectSelect.value = pid;
  for (const a of nav.querySelectorAll('a[data-nav]')) {
    a.setAttribute('href', href(a.dataset.nav));
    if (a.dataset.nav === r.page) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  // each render writes into its own root: a slow answer of a page left meanwhile lands in
  // a detached node
  const seq = ++renderSeq;
  const root = el('div', { class: 'page', 'data-page-name': r.page });
  fill(main, root);
  refreshBanners();
  try {
    await pages[r.page].render(root, { parts: r.parts, query: r.query });
  } catch (e) {
    if (seq === renderSeq) fill(root, errorBox(`This page failed: ${e.message}`));
    console.error(e);
  }
  // drawn with its data (or its error): what tests and bench/ui wait for
  root.dataset.ready = 'true';
}

let bannerSeq = 0;

async function refreshBanners() {
  const seq = ++bannerSeq;
  const r = await api('GET', `/v1/alerts${qs({ project_id: ctx.projectId })}`);
  if (seq !== bannerSeq || !ctx.session) return;
  const out = [];
  if (r.ok && r.data) {
    const regs = Array.isArray(r.data.regressions) ? r.data.regressions : [];
    if (regs.length) {
      out.push(el('div', { id: 'regression-banner', class: 'banner banner-danger', role: 'alert' },
        el('strong', {}, regs.length === 1 ? 'Regression detected: ' : `${regs.length} regressions: `),
        regs.map((g, i) => [i ? ', ' : '',
          el('a', { href: href(`improvements/${encodeURIComponent(g.deployment_id)}`),
                    'data-deployment': g.deployment_id },
            `deployment ${shortId(g.deployment_id)}`),
          ` ${String(g.status).replace(/_/g, ' ')}${g.auto ? ' automatically' : ''} ` +
          `${fmtAgo(g.at)}`])));
    }
    const ks = r.data.killswitch;
    if (ks && ks.active) {
      out.push(el('div', { id: 'killswitch-banner', class: 'banner banner-warn', role: 'status' },
        el('strong', {}, 'Kill switch active: '),
        'the control loop executes nothing for this tenant',
        ks.updated_by ? ` (enabled by ${ks.updated_by} ${fmtAgo(ks.updated_at)})` : '',
        '. ', el('a', { href: href('hitl') }, 'Control')));
    }
  }
  fill(banners, ...out);
}

window.addEventListener('hashchange', route);

async function start() {
  const r = await api('GET', '/ui/session');
  if (r.status === 200) { ctx.session = r.data; await showApp(); } else showSignIn();
}

start();
