// #/registry: the demo's prompt support-chat, its versions and the version production serves.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { afterNavigation, gotoRoute, launch, signInWithLink, withPage } from './lib/browser.mjs';
import { env, keys, supportChat } from './lib/stack.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('the registry lists support-chat with its versions and the live one', () =>
  withPage(browser, async ({ page }) => {
    const chat = await supportChat();
    await signInWithLink(page, keys.owner());
    await gotoRoute(page, `#/registry?project=${env('PL_PROJECT_ID')}`);
    await page.waitForSelector('.page[data-page-name=registry][data-ready=true] table.prompts');
    const link = `#main table.prompts a[href^="#/registry/${chat.prompt.id}"]`;
    assert.equal(await page.$eval(link, (a) => a.textContent), 'support-chat');

    await afterNavigation(page, () => page.click(link));
    const rows = await page.waitForSelector('#main table.versions');
    const versions = await rows.$$eval('tbody tr td:first-child', (td) => td.map((x) => x.textContent));
    // newest first, every version from v1 up
    const n = chat.prompt.latest_version;
    assert.deepEqual(versions, Array.from({ length: n }, (_, i) => `v${n - i}`));
    assert.equal(await page.$eval('#diff-to', (s) => s.value), String(n));
    assert.equal(await page.$eval('#diff-from', (s) => s.value), String(n - 1));
    assert.ok(await page.$('#main .diff-out pre.diff'));
    const prod = await page.$eval('#main [data-environment=production] h3', (e) => e.textContent);
    assert.match(prod, new RegExp(`serves v${chat.live.version}\\b`));
  }));
