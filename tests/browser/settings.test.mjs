// #/settings: the demo project's settings as scripts/demo set them; owners may save them,
// viewers only read them.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { gotoRoute, launch, signInWithKey, signInWithLink, texts, withPage } from './lib/browser.mjs';
import { apiOk, env, keys } from './lib/stack.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const route = () => `#/settings?project=${env('PL_PROJECT_ID')}`;

test("the settings page shows the project's settings", () =>
  withPage(browser, async ({ page }) => {
    const project = await apiOk('GET', `/v1/projects/${env('PL_PROJECT_ID')}`, keys.viewer());
    await signInWithLink(page, keys.owner());
    await gotoRoute(page, route());
    await page.waitForSelector('.page[data-page-name=settings][data-ready=true] form#settings-form');
    const value = (f) => page.$eval(`#set-${f}`, (e) => (e.type === 'checkbox' ? e.checked : e.value));
    assert.equal(await value('name'), project.name);
    assert.equal(await value('cluster_min_size'), '150'); // scripts/demo's
    assert.equal(await value('ship_canary_pct'), String(project.ship_canary_pct));
    assert.equal(await value('prompt_autoship_enabled'), project.prompt_autoship_enabled);
    assert.ok(await page.$('#main button[data-action=save-settings]'));
  }));

test('a viewer reads the settings without a way to save them', () =>
  withPage(browser, async ({ page, watch }) => {
    await signInWithKey(page, watch, keys.viewer());
    await gotoRoute(page, route());
    await page.waitForSelector('form#settings-form');
    assert.equal(await page.$eval('#set-cluster_min_size', (e) => e.value), '150');
    assert.deepEqual(await texts(page, '#main [data-action]'), []);
    assert.equal(await page.$$eval('#settings-form input:not([disabled])', (i) => i.length), 0);
  }));
