// Trace text is untrusted: markup in an output, an error or a question must show as text.
// The fixture trace is ingested here (once per stack); the page tests look for it on their
// pages. Any script it runs opens a dialog or is reported as a CSP violation.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { gotoRoute, launch, signInWithLink, withPage } from './lib/browser.mjs';
import { clusterRouteId, demoRoutes, ingestXssFixtures, keys, xssClusters } from './lib/stack.mjs';

let browser;
before(async () => {
  await ingestXssFixtures();
  browser = await launch();
});
after(async () => { await browser?.close(); });

test('the signed-in page loads with the XSS fixture ingested and opens no dialog', () =>
  withPage(browser, async ({ page, watch }) => {
    await signInWithLink(page, keys.owner());
    assert.deepEqual(watch.dialogs, []);
  }));

test('no route opens a dialog or runs inline script', () =>
  withPage(browser, async ({ page, watch }) => {
    await signInWithLink(page, keys.owner());
    const routes = await demoRoutes();
    for (const c of await xssClusters()) {
      routes.push({ name: 'xss cluster', hash: `#/failures/${clusterRouteId(c)}?project=${c.project_id}` });
    }
    for (const r of routes) {
      await gotoRoute(page, r.hash);
      assert.deepEqual(watch.dialogs, [], `${r.hash}: dialogs`);
      assert.deepEqual(watch.problems, [], `${r.hash}: console errors, exceptions or CSP violations`);
    }
  }));
