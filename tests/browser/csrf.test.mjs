// A script running in the dashboard's page (an injected one, say) sends the session cookie
// along: a mutation still needs the session's CSRF token, and then the role decides.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { fetchFromPage, launch, signInWithLink, withPage } from './lib/browser.mjs';
import { keys, rolledBackDeployment } from './lib/stack.mjs';

let browser;
let approve;
before(async () => {
  browser = await launch();
  approve = `/v1/prompts/deployments/${(await rolledBackDeployment()).id}/approve`;
});
after(async () => { await browser?.close(); });

test('a viewer session cannot approve a deployment, with or without the CSRF token', () =>
  withPage(browser, async ({ page, watch }) => {
    await signInWithLink(page, keys.viewer());
    watch.allow(/status of 403\b/);
    const withToken = await fetchFromPage(page, 'POST', approve, { csrf: true });
    assert.equal(withToken.status, 403, JSON.stringify(withToken.data));
    const without = await fetchFromPage(page, 'POST', approve, { csrf: false });
    assert.equal(without.status, 403, JSON.stringify(without.data));
  }));

test("an owner session's mutation without the session's CSRF token is refused", () =>
  // refused before the deployment is looked at: nothing changes
  withPage(browser, async ({ page, watch }) => {
    await signInWithLink(page, keys.owner());
    watch.allow(/status of 403\b/);
    const without = await fetchFromPage(page, 'POST', approve, { csrf: false });
    assert.equal(without.status, 403, JSON.stringify(without.data));
    assert.match(without.data.error, /csrf/i);
    const forged = await page.evaluate(async (path) => (await fetch(path, {
      method: 'POST', credentials: 'same-origin', headers: { 'X-CSRF-Token': 'forged' },
    })).status, approve);
    assert.equal(forged, 403);
  }));
