// #/policies: billing-bot's two policies from scripts/demo, and the creation form showing the
// API's validation message as the API wrote it.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { afterNavigation, gotoRoute, launch, signInWithLink, texts, withPage } from './lib/browser.mjs';
import { API, apiOk, keys, projectByName } from './lib/stack.mjs';

let browser;
let billing;
before(async () => {
  billing = (await projectByName('billing-bot')).id;
  browser = await launch();
});
after(async () => { await browser?.close(); });

test("the policies page lists billing-bot's policies", () =>
  withPage(browser, async ({ page }) => {
    const api = await apiOk('GET', `/v1/policies?project_id=${billing}&limit=50`, keys.viewer());
    await signInWithLink(page, keys.owner());
    await gotoRoute(page, `#/policies?project=${billing}`);
    await page.waitForSelector('.page[data-page-name=policies][data-ready=true] table.policies');
    const names = await texts(page, '#main table.policies tbody tr td:first-child');
    assert.deepEqual(names.sort(), api.items.map((p) => p.name).sort());
    assert.ok(names.includes('retry once') && names.includes('fall back to gpt-4o'), names.join(', '));
  }));

test("an invalid policy shows the API's 422 message verbatim in #form-error", () =>
  withPage(browser, async ({ page, watch }) => {
    const name = `rollout out of range ${Date.now()}`;
    await signInWithLink(page, keys.owner());
    await gotoRoute(page, `#/policies?project=${billing}`);
    assert.equal(await afterNavigation(page, () => page.click('#main a[data-action=new-policy]')), 'policies');
    await page.waitForSelector('form#policy-form');
    await page.type('#policy-name', name);
    await page.$eval('#policy-rollout', (e) => { e.value = ''; });
    await page.type('#policy-rollout', '150');

    watch.allow(/status of 422\b/);
    const [res] = await Promise.all([
      page.waitForResponse((r) => r.url() === `${API()}/v1/policies` && r.request().method() === 'POST'),
      page.click('form#policy-form button[type=submit]'),
    ]);
    assert.equal(res.status(), 422);
    const { error } = await res.json();
    assert.match(error, /rollout_pct/);
    await page.waitForFunction(() => document.querySelector('#form-error').textContent !== '');
    assert.equal(await page.$eval('#form-error[role=alert]', (e) => e.textContent), error);
    const after = await apiOk('GET', `/v1/policies?project_id=${billing}&limit=50`, keys.viewer());
    assert.ok(!after.items.some((p) => p.name === name), 'nothing was created');
  }));
