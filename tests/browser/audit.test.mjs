// #/audit: the demo tenant's audit log, its hash chain verified, and the action filter.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { afterNavigation, gotoRoute, launch, signInWithLink, texts, withPage } from './lib/browser.mjs';
import { apiOk, env, keys } from './lib/stack.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('the audit log shows the entries, verifies the chain and filters by action', () =>
  withPage(browser, async ({ page }) => {
    const newest = (await apiOk('GET', '/v1/audit-log?limit=1', keys.owner())).items[0];
    assert.ok(newest, 'scripts/demo left audit entries');
    await signInWithLink(page, keys.owner());
    await gotoRoute(page, `#/audit?project=${env('PL_PROJECT_ID')}`);
    await page.waitForSelector('.page[data-page-name=audit][data-ready=true] table.audit');
    assert.ok((await page.$$('#main table.audit tbody tr')).length > 0);
    await page.waitForFunction(() => /^chain (verified|broken)/.test(document.querySelector('#audit-verify').textContent));
    assert.match(await page.$eval('#audit-verify', (e) => e.textContent), /^chain verified \(\d+ entries\)$/);

    await page.type('#audit-action', newest.action);
    await afterNavigation(page, () => page.click('#audit-filters button[type=submit]'));
    const actions = await texts(page, '#main table.audit tbody tr td:nth-child(4)');
    assert.ok(actions.length >= 1);
    assert.deepEqual([...new Set(actions)], [newest.action]);
  }));
