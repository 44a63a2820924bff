// Chromium for the dashboard tests: launching it (the system's chromium, never a download),
// pages that record everything that must not happen (console errors, uncaught exceptions,
// Content-Security-Policy violations, server errors, dialogs), and signing in.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import puppeteer from 'puppeteer-core';
import { API, api, apiOk, waitFor } from './stack.mjs';

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };

/** Chromium from PL_CHROMIUM, else Debian's /usr/bin/chromium. */
export async function launch() {
  const executablePath = process.env.PL_CHROMIUM || '/usr/bin/chromium';
  if (!existsSync(executablePath)) {
    throw new Error(`no browser at ${executablePath} (scripts/deps installs chromium; PL_CHROMIUM overrides)`);
  }
  const args = ['--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check'];
  // Chromium refuses to start its sandbox as root (CI machines run as root).
  if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');
  return puppeteer.launch({ executablePath, headless: true, args, protocolTimeout: 60000 });
}

/**
 * A page in a context of its own (its own cookies: one session per page) that records what
 * must not happen. Returns { page, context, watch }: watch.problems lists console errors,
 * uncaught exceptions, CSP violations and 5xx answers; watch.dialogs every alert/confirm/
 * prompt (dismissed), which is what script injected through trace text would open.
 * watch.allow(regexp) accepts console errors that match, for a test that provokes them on
 * purpose; watch.acceptDialogs(regexp) accepts (clicks OK on) the page's own confirm()s whose
 * message matches, recording them in watch.accepted instead.
 */
export async function openPage(browser, viewport = DESKTOP) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.setDefaultNavigationTimeout(30000);
  await page.setViewport(viewport);
  const watch = {
    problems: [],
    dialogs: [],
    accepted: [],
    allowed: [],
    acceptedDialogs: [],
    allow(re) { this.allowed.push(re); },
    acceptDialogs(re) { this.acceptedDialogs.push(re); },
  };
  const problem = (text) => {
    if (!watch.allowed.some((re) => re.test(text))) watch.problems.push(text);
  };
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const where = m.location() && m.location().url ? ` (${m.location().url})` : '';
    problem(`console error: ${m.text()}${where}`);
  });
  page.on('pageerror', (e) => problem(`uncaught exception: ${e.message || e}`));
  page.on('response', (r) => {
    if (r.status() >= 500) problem(`server error: ${r.status()} ${r.request().method()} ${r.url()}`);
  });
  page.on('dialog', (d) => {
    const text = `${d.type()}: ${d.message()}`;
    if (d.type() !== 'alert' && watch.acceptedDialogs.some((re) => re.test(d.message()))) {
      watch.accepted.push(text);
      d.accept().catch(() => {});
    } else {
      watch.dialogs.push(text);
      d.dismiss().catch(() => {});
    }
  });
  // A CSP violation is also a console error in Chromium; the event says which directive.
  await page.exposeFunction('__plCspViolation', (v) => problem(`CSP violation: ${v}`));
  await page.evaluateOnNewDocument(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__plCspViolation(`${e.violatedDirective} blocked ${e.blockedURI || '(inline)'}` +
        `${e.sourceFile ? ` at ${e.sourceFile}:${e.lineNumber}` : ''}${e.sample ? `: ${e.sample}` : ''}`);
    });
  });
  return { page, context, watch };
}

/** Fails the test when the page recorded a problem or a dialog. */
export function assertClean(watch, what = 'the page') {
  assert.deepEqual(watch.problems, [], `${what}: console errors, exceptions or CSP violations`);
  assert.deepEqual(watch.dialogs, [], `${what}: dialogs opened`);
}

/**
 * Runs fn({ page, context, watch }) on a fresh page (see openPage), then fails the test if the
 * page recorded a problem or a dialog, and closes the page's context.
 */
export async function withPage(browser, fn, viewport = DESKTOP) {
  const p = await openPage(browser, viewport);
  try {
    await fn(p);
    assertClean(p.watch);
  } finally {
    await p.context.close().catch(() => {});
  }
}

/** Waits until the page has made no request for idleMs (the page's data has arrived). */
export async function settle(page, idleMs = 300, timeout = 15000) {
  await page.waitForNetworkIdle({ idleTime: idleMs, timeout });
}

/**
 * Signs in with a one-time link for key (POST /ui/links, as `scripts/run` prints): the link
 * redirects to /ui/ with the session cookie set; resolves once the signed-in header shows.
 */
export async function signInWithLink(page, key) {
  const { path } = await apiOk('POST', '/ui/links', key);
  await page.goto(API() + path, { waitUntil: 'networkidle0' });
  assert.equal(new URL(page.url()).pathname, '/ui/', 'the sign-in link lands on /ui/');
  await page.waitForSelector('#sign-out');
}

/** Signs in through the page's form with key (the page starts signed out). */
export async function signInWithKey(page, watch, key) {
  // Signed out, the page's first GET /ui/session answers 401 and Chromium logs it.
  watch.allow(/status of 401 .*\/ui\/session\b/);
  await page.goto(`${API()}/ui/`, { waitUntil: 'networkidle0' });
  await page.waitForSelector('#api-key');
  await page.type('#api-key', key);
  await Promise.all([
    page.waitForSelector('#sign-out'),
    page.click('form button[type=submit]'),
  ]);
}

/**
 * Shows a dashboard route (the part after #, e.g. '#/failures') and waits until its page is
 * drawn with its data (the router's data-ready on a page root newer than the one shown before).
 */
export async function gotoRoute(page, hash) {
  const url = `${API()}/ui/${hash}`;
  if (new URL(page.url()).pathname === '/ui/') {
    await afterNavigation(page, () => page.evaluate((h) => {
      // the same hash again fires no hashchange: ask the router to draw it anew
      if (window.location.hash === h) window.dispatchEvent(new HashChangeEvent('hashchange'));
      else window.location.hash = h;
    }, hash));
  } else {
    await page.goto(url, { waitUntil: 'networkidle0' });
    await page.waitForSelector('#main .page[data-ready="true"]');
  }
  await settle(page);
}

/**
 * Runs fn (a click, a select, anything that makes the router draw a page) and waits for the
 * new page root to be ready: the roots present before are marked stale so that a ready old
 * one does not count. Returns the new root's data-page-name.
 */
export async function afterNavigation(page, fn) {
  await page.evaluate(() => {
    for (const p of document.querySelectorAll('#main .page')) p.dataset.stale = 'true';
  });
  await fn();
  const root = await page.waitForSelector('#main .page[data-ready="true"]:not([data-stale])');
  return root.evaluate((e) => e.dataset.pageName);
}

/** The text of every element matching selector, in document order. */
export async function texts(page, selector) {
  return page.$$eval(selector, (els) => els.map((e) => e.textContent));
}

/** The signed-in header's text (#status: role, tenant, plan). */
export async function statusText(page) {
  return page.$eval('#status', (e) => e.textContent);
}

/** Horizontal overflow of the document: { scrollWidth, clientWidth } when it overflows. */
export async function horizontalOverflow(page) {
  const m = await page.evaluate(() => ({
    scrollWidth: Math.max(document.body.scrollWidth, document.documentElement.scrollWidth),
    clientWidth: document.documentElement.clientWidth,
  }));
  return m.scrollWidth > m.clientWidth ? m : null;
}

/**
 * A request from inside the page with the page's session cookie, as a script injected into
 * the page could send it. csrf: true sends the session's CSRF token (from GET /ui/session).
 */
export async function fetchFromPage(page, method, path, { csrf = true, body } = {}) {
  return page.evaluate(async (method, path, csrf, body) => {
    const headers = {};
    if (csrf) {
      const s = await fetch('/ui/session', { credentials: 'same-origin' });
      headers['X-CSRF-Token'] = (await s.json()).csrf_token;
    }
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch(path, {
      method, headers, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = { error: text }; }
    return { status: r.status, data };
  }, method, path, csrf, body);
}

export { api, apiOk, waitFor };
