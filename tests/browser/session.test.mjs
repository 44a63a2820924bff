// Signing in and out of the dashboard: the one-time link (as scripts/run prints it), the key
// form, sign-out, and the signed-in pages (each main route) fitting a desktop and a phone
// screen with the nav in view.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  DESKTOP, PHONE, fetchFromPage, gotoRoute, horizontalOverflow, launch, signInWithKey,
  signInWithLink, statusText, withPage,
} from './lib/browser.mjs';
import { API, apiOk, demoRoutes, keys } from './lib/stack.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('a one-time link signs the owner in; sign-out ends the session', () =>
  withPage(browser, async ({ page, watch }) => {
    await signInWithLink(page, keys.owner());
    assert.match(await statusText(page), /\bowner\b/);

    // the session is a cookie: a reload stays signed in
    await page.reload({ waitUntil: 'networkidle0' });
    await page.waitForSelector('#sign-out');
    assert.match(await statusText(page), /\bowner\b/);

    // signed out, the session is gone server-side too (401s expected from here on)
    watch.allow(/status of 401 .*\/ui\/session\b/);
    await page.click('#sign-out');
    await page.waitForSelector('#api-key');
    assert.match(await statusText(page), /signed out/i);
    assert.equal(await page.$('#sign-out'), null);
    assert.equal((await fetchFromPage(page, 'GET', '/ui/session', { csrf: false })).status, 401);
    await page.reload({ waitUntil: 'networkidle0' });
    await page.waitForSelector('#api-key');
  }));

test('a sign-in link works once', async () => {
  const { path } = await apiOk('POST', '/ui/links', keys.viewer());
  const first = await fetch(API() + path, { redirect: 'manual' });
  assert.equal(first.status, 303);
  assert.match(first.headers.get('set-cookie') || '', /HttpOnly/i);
  const second = await fetch(API() + path, { redirect: 'manual' });
  assert.equal(second.status, 410);
});

test('the form signs a viewer in with a key; a wrong key is refused', () =>
  withPage(browser, async ({ page, watch }) => {
    watch.allow(/status of 401 .*\/ui\/session\b/);
    await page.goto(`${API()}/ui/`, { waitUntil: 'networkidle0' });
    await page.waitForSelector('#api-key');
    await page.type('#api-key', `pl_${'0'.repeat(48)}`);
    await page.click('form button[type=submit]');
    await page.waitForFunction(() => document.querySelector('[role=alert]')?.textContent.trim());
    assert.equal(await page.$('#sign-out'), null);

    await signInWithKey(page, watch, keys.viewer());
    assert.match(await statusText(page), /\bviewer\b/);
    const s = await fetchFromPage(page, 'GET', '/ui/session', { csrf: false });
    assert.equal(s.status, 200);
    assert.equal(s.data.role, 'viewer');
  }));

for (const [label, viewport] of [['1280×800', DESKTOP], ['390×844', PHONE]]) {
  test(`at ${label} the pages do not overflow horizontally`, () =>
    withPage(browser, async ({ page, watch }) => {
      watch.allow(/status of 401 .*\/ui\/session\b/);
      await page.goto(`${API()}/ui/`, { waitUntil: 'networkidle0' });
      await page.waitForSelector('#api-key');
      assert.equal(await horizontalOverflow(page), null, 'the sign-in page');
      await signInWithLink(page, keys.owner());
      assert.equal(await horizontalOverflow(page), null, 'the signed-in page');
      // every main route with the demo's data: wide tables scroll inside their wrapper
      for (const r of await demoRoutes()) {
        await gotoRoute(page, r.hash);
        assert.equal(await horizontalOverflow(page), null, `${r.name} (${r.hash})`);
        const nav = await page.$$eval('#nav a[data-nav]', (as) => as.map((a) => {
          const b = a.getBoundingClientRect();
          return { nav: a.dataset.nav, left: b.left, right: b.right, top: b.top, height: b.height };
        }));
        assert.equal(nav.length, 7, `${r.name}: the nav's links`);
        const width = await page.evaluate(() => document.documentElement.clientWidth);
        for (const a of nav) {
          assert.ok(a.height > 0 && a.left >= 0 && a.right <= width && a.top >= 0,
            `${r.name}: nav link ${a.nav} visible at ${JSON.stringify(a)} (width ${width})`);
        }
        assert.equal(await page.$eval('#nav', (n) => !n.hidden && getComputedStyle(n).visibility), 'visible');
      }
    }, viewport));
}
