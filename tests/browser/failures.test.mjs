// #/failures: the demo's clusters with their 24 h trend, the XSS fixture's cluster shown as
// text, triage by an owner (audited), and none offered to a viewer.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  fetchFromPage, gotoRoute, launch, signInWithKey, signInWithLink, texts, withPage,
} from './lib/browser.mjs';
import {
  XSS, api, apiOk, demoCluster, env, ingestXssFixtures, keys, waitFor, xssClusters,
} from './lib/stack.mjs';

let browser;
let xssCluster;
const demo = () => `?project=${env('PL_PROJECT_ID')}`;

before(async () => {
  await ingestXssFixtures();
  // the detector clusters the fixture's error a moment after evaluating it
  xssCluster = await waitFor('the XSS fixture trace in a cluster', async () =>
    (await xssClusters()).find((c) => (c.sample_ids || []).includes(XSS.traceId)));
  browser = await launch();
});
after(async () => { await browser?.close(); });

test('the failures list shows the clusters, each with its 24 h sparkline', () =>
  withPage(browser, async ({ page }) => {
    const cluster = await demoCluster();
    await signInWithLink(page, keys.owner());
    await gotoRoute(page, `#/failures${demo()}`);
    const rows = await page.$$eval('.page[data-page-name=failures] table.clusters tbody tr',
      (trs) => trs.map((tr) => ({
        href: tr.querySelector('a')?.getAttribute('href') || '',
        bars: tr.querySelectorAll('svg.sparkline rect').length,
        drawn: [...tr.querySelectorAll('svg.sparkline rect')]
          .filter((r) => Number(r.getAttribute('height')) > 0).length,
      })));
    assert.ok(rows.length >= 2, `clusters listed: ${rows.length}`);
    for (const r of rows) assert.ok(r.bars > 0, `a sparkline in the row of ${r.href}`);
    const row = rows.find((r) => r.href.includes(`failures/${cluster.id}`));
    assert.ok(row, `the demo cluster ${cluster.id} is listed`);
    assert.equal(row.bars, cluster.trend_24h.length, 'one bar per hour of trend_24h');
    // act 1's failures happened within the last hour: at least one bar has height
    assert.ok(row.drawn > 0, 'the sparkline shows the recent failures');
  }));

test("the XSS fixture's cluster shows its markup as text and creates no element from it", () =>
  withPage(browser, async ({ page, watch }) => {
    await signInWithLink(page, keys.owner());
    await gotoRoute(page, `#/failures/${xssCluster.id}${demo()}`);
    const main = await page.$eval('#main', (e) => e.textContent);
    for (const text of [XSS.output, XSS.error, XSS.question, xssCluster.error_message]) {
      assert.ok(main.includes(text), `the page shows ${text} literally`);
    }
    assert.deepEqual(await texts(page, '#main pre.error-text'), [XSS.error]);
    const injected = await page.evaluate(() => ({
      img: document.querySelectorAll('img').length,
      script: document.querySelectorAll('#main script').length,
      handlers: document.querySelectorAll('[onerror], [onload]').length,
    }));
    assert.deepEqual(injected, { img: 0, script: 0, handlers: 0 });
    assert.deepEqual(watch.dialogs, []);
  }));

test('an owner acknowledges a cluster (audited) and reopens it', () =>
  withPage(browser, async ({ page }) => {
    const id = xssCluster.id;
    const status = async () => (await apiOk('GET', `/v1/failures/clusters/${id}`, keys.viewer())).status;
    // the fixture's own cluster: the demo's clusters keep their status
    if (await status() !== 'new') {
      await apiOk('PATCH', `/v1/failures/clusters/${id}`, keys.owner(), { status: 'new' });
    }
    const audited = async (to) => {
      const a = await apiOk('GET', `/v1/audit-log?action=cluster.status&target=${id}&limit=100`,
        keys.owner());
      return a.items.filter((e) => e.target === id && e.detail && e.detail.to === to);
    };
    const before = (await audited('acknowledged')).length;

    await signInWithLink(page, keys.owner());
    await gotoRoute(page, `#/failures/${id}${demo()}`);
    const shown = () => page.$eval('#main [data-field=status]', (e) => e.textContent.trim());
    assert.equal(await shown(), 'new');
    await page.click('#main button[data-action=acknowledge]');
    await page.waitForFunction(() =>
      document.querySelector('#main [data-field=status]')?.textContent.trim() === 'acknowledged');
    assert.equal(await status(), 'acknowledged');
    const entries = await audited('acknowledged');
    assert.equal(entries.length, before + 1, 'one cluster.status audit entry for the move');
    assert.equal(entries[0].detail.from, 'new');
    assert.match(entries[0].actor, /^key:/);

    // reopened from the buttons the acknowledged cluster offers
    assert.equal(await page.$('#main button[data-action=acknowledge]'), null);
    await page.click('#main button[data-action=reopen]');
    await page.waitForFunction(() =>
      document.querySelector('#main [data-field=status]')?.textContent.trim() === 'new');
    assert.equal(await status(), 'new');
    assert.equal((await audited('new')).length >= 1, true, 'the reopening is audited too');
  }));

test('a viewer sees no triage buttons, and a triage request from its page is refused', () =>
  withPage(browser, async ({ page, watch }) => {
    const cluster = await demoCluster();
    await signInWithKey(page, watch, keys.viewer());
    await gotoRoute(page, `#/failures${demo()}`);
    assert.ok((await page.$$('#main table.clusters tbody tr')).length > 0, 'clusters listed');
    assert.deepEqual(await texts(page, '#main [data-action]'), [], 'list: no action elements');
    await gotoRoute(page, `#/failures/${cluster.id}${demo()}`);
    await page.waitForSelector('#main [data-field=status]');
    assert.deepEqual(await texts(page, '#main [data-action]'), [], 'detail: no action elements');

    watch.allow(/status of 403\b/);
    const r = await fetchFromPage(page, 'PATCH', `/v1/failures/clusters/${cluster.id}`,
      { body: { status: 'resolved' } });
    assert.equal(r.status, 403, JSON.stringify(r.data));
    const after = await api('GET', `/v1/failures/clusters/${cluster.id}`, keys.viewer());
    assert.equal(after.data.status, cluster.status, 'the status is unchanged');
  }));
