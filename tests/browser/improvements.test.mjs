// #/improvements: a passed candidate's diff and A/B report, the owner's approval shipping a
// new registry version, a rejection that needs a reason, a viewer without decisions, and the
// regression banner of the demo's rollback with its monitor chart.
// The deployments decided here are added by the test (insertDeployment): the demo's own
// stay as scripts/demo left them for the other tests.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  afterNavigation, fetchFromPage, gotoRoute, launch, signInWithKey, signInWithLink, texts,
  withPage,
} from './lib/browser.mjs';
import {
  adalineSystemText, apiOk, env, insertDeployment, keys, rolledBackDeployment, servedPrompt,
  supportChat, waitFor,
} from './lib/stack.mjs';

let browser;
let passed; // ab_passed: its diff, the viewer, then the owner's approval
let proposed; // proposed: the rejection
const demo = () => `?project=${env('PL_PROJECT_ID')}`;
const deployment = (id) => apiOk('GET', `/v1/prompts/deployments/${id}`, keys.viewer());
const lines = (t) => t.split('\n').filter((l) => l !== '');

before(async () => {
  const current = (await supportChat()).system;
  passed = await insertDeployment({
    status: 'ab_passed',
    rationale: 'The prompt never asks for JSON. <b>Edit</b>: ask for one JSON object.',
    // the first line changes (a removed and an added line); the markup must stay text
    proposedPrompt: `${current} Reply with one JSON object: {"answer": "..."}.\n` +
      'Never include markup such as <script>alert(5)</script> in the answer.\n',
  });
  proposed = await insertDeployment({
    status: 'proposed',
    rationale: 'A candidate the owner turns down.',
    proposedPrompt: `${current}\nAnswer in French.\n`,
  });
  browser = await launch();
});
after(async () => { await browser?.close(); });

test('a passed candidate shows its prompt diff and A/B report', () =>
  withPage(browser, async ({ page }) => {
    await signInWithLink(page, keys.owner());
    await gotoRoute(page, `#/improvements${demo()}`);
    const links = await page.$$eval('#main table.deployments a', (as) => as.map((a) => a.getAttribute('href')));
    assert.ok(links.some((h) => h.startsWith(`#/improvements/${passed.id}`)), 'listed');

    // the status filter narrows the list (a new page through the router)
    await afterNavigation(page, () => page.select('#status-filter', 'ab_passed'));
    const badges = await texts(page, '#main table.deployments tbody .badge');
    assert.ok(badges.length >= 1);
    assert.deepEqual([...new Set(badges)], ['ab passed']);

    await gotoRoute(page, `#/improvements/${passed.id}${demo()}`);
    assert.equal(await page.$eval('#main [data-field=status]', (e) => e.dataset.status), 'ab_passed');
    assert.equal(await page.$eval('#main [data-field=rationale]', (e) => e.textContent), passed.rationale);

    const strip = (s) => s.replace(/^[-+ ] /, '').replace(/\n$/, '');
    const del = (await texts(page, '#main pre.diff span.diff-del')).map(strip);
    const add = (await texts(page, '#main pre.diff span.diff-add')).map(strip);
    const oldLines = lines(passed.current_prompt);
    const newLines = lines(passed.proposed_prompt);
    assert.deepEqual(del, oldLines.filter((l) => !newLines.includes(l)), 'removed lines');
    assert.deepEqual(add, newLines.filter((l) => !oldLines.includes(l)), 'added lines');
    assert.ok(add.some((l) => l.includes('<script>alert(5)</script>')), 'the markup as text');
    assert.equal(await page.$$eval('#main script', (s) => s.length), 0);

    const ab = passed.ab_report;
    assert.ok((await page.$$('#main table.ab-table tbody tr')).length >= 2, 'A/B rows');
    assert.notEqual(await page.$eval('#main [data-field=mcnemar-p]', (e) => e.textContent), '—');
    assert.match(await page.$eval('#main [data-field=sample-size]', (e) => e.textContent),
      new RegExp(`^${ab.sample_size} held-out, ${ab.guardrail.sample_size} guardrail$`));
    assert.match(await page.$eval('#main [data-field=guardrail]', (e) => e.textContent), /^passed: /);
    // what an owner may do with a passed candidate
    assert.deepEqual(await page.$$eval('#main button[data-action]', (b) => b.map((x) => x.dataset.action)),
      ['approve', 'reject']);
  }));

test('a viewer is offered no decision, and its approval from the page is refused', () =>
  withPage(browser, async ({ page, watch }) => {
    await signInWithKey(page, watch, keys.viewer());
    for (const id of [passed.id, (await rolledBackDeployment()).id]) {
      await gotoRoute(page, `#/improvements/${id}${demo()}`);
      await page.waitForSelector('#main pre.diff');
      assert.deepEqual(await texts(page, '#main [data-action]'), [], `${id}: no action elements`);
    }
    // the one deployment an owner could approve now (csrf.test.mjs covers a rolled-back one)
    watch.allow(/status of 403\b/);
    const r = await fetchFromPage(page, 'POST', `/v1/prompts/deployments/${passed.id}/approve`);
    assert.equal(r.status, 403, JSON.stringify(r.data));
    assert.equal((await deployment(passed.id)).status, 'ab_passed');
  }));

test("the owner's approval ships the candidate: the registry serves the proposed prompt", () =>
  withPage(browser, async ({ page }) => {
    const chat = await supportChat();
    await signInWithLink(page, keys.owner());
    await gotoRoute(page, `#/improvements/${passed.id}${demo()}`);
    await page.click('#main button[data-action=approve]');
    // the page re-reads the deployment; the monitor may have taken it on already
    await page.waitForFunction(() =>
      ['shipped', 'monitoring'].includes(document.querySelector('#main [data-field=status]')?.dataset.status));
    assert.match(await page.$eval('#main .notice-area', (e) => e.textContent), /Approved and shipped/);
    assert.equal(await page.$('#main button[data-action=approve]'), null);
    assert.equal(await page.$$eval('#main script', (s) => s.length), 0);

    const d = await deployment(passed.id);
    assert.ok(['shipped', 'monitoring'].includes(d.status), d.status);
    assert.ok(d.shipped_version_id && d.shipped_version_id !== chat.live.version_id, 'a new version');
    const served = await servedPrompt(chat.prompt.id, chat.production.id);
    assert.equal(adalineSystemText(served.prompt), passed.proposed_prompt);
    const now = await supportChat();
    assert.equal(now.live.version_id, d.shipped_version_id);
    assert.equal(now.live.version, chat.prompt.latest_version + 1);
  }));

test('rejecting needs a reason; the reason is kept', () =>
  withPage(browser, async ({ page }) => {
    const posts = [];
    page.on('request', (r) => { if (r.method() === 'POST' && /\/reject$/.test(r.url())) posts.push(r.url()); });
    await signInWithLink(page, keys.owner());
    await gotoRoute(page, `#/improvements/${proposed.id}${demo()}`);
    assert.equal(await page.$eval('#main [data-field=status]', (e) => e.dataset.status), 'proposed');
    await page.click('#main button[data-action=reject]');
    await page.waitForSelector('#main form.reason-form #reason');
    const alertText = () => page.$eval('#main form.reason-form [role=alert]', (e) => e.textContent);
    const submitDisabled = () => page.$eval('#main form.reason-form button[type=submit]', (b) => b.disabled);

    // empty, then only blanks: nothing is sent
    assert.equal(await alertText(), 'a reason is required');
    assert.equal(await submitDisabled(), true);
    await page.click('#main form.reason-form button[type=submit]');
    await page.$eval('#main form.reason-form', (f) => f.dispatchEvent(new Event('submit', { cancelable: true })));
    await page.type('#main #reason', '   ');
    await page.$eval('#main form.reason-form', (f) => f.dispatchEvent(new Event('submit', { cancelable: true })));
    assert.equal(await alertText(), 'a reason is required');
    assert.equal(await submitDisabled(), true);
    assert.deepEqual(posts, [], 'no reject request without a reason');
    assert.equal((await deployment(proposed.id)).status, 'proposed');

    const reason = 'Out of scope: <em>French</em> answers are not wanted.';
    await page.type('#main #reason', reason);
    assert.equal(await alertText(), '');
    assert.equal(await submitDisabled(), false);
    await page.click('#main form.reason-form button[type=submit]');
    await page.waitForFunction(() =>
      document.querySelector('#main [data-field=status]')?.dataset.status === 'rejected');
    assert.equal(posts.length, 1);
    const d = await deployment(proposed.id);
    assert.equal(d.status, 'rejected');
    assert.equal(d.rejection_reason, reason);
    assert.equal(await page.$eval('#main [data-field=reason]', (e) => e.textContent), reason);
    assert.deepEqual(await texts(page, '#main [data-action]'), [], 'nothing left to decide');
  }));

test("the regression banner links to act 2's rollback, whose page charts the live series", () =>
  withPage(browser, async ({ page }) => {
    const rolled = await rolledBackDeployment();
    assert.equal(rolled.approved_by, 'system:auto_rollback');
    const series = await apiOk('GET', `/v1/prompts/deployments/${rolled.id}/series`, keys.viewer());
    assert.ok(series.points.length > 0, 'the rolled-back deployment has live points');

    await signInWithLink(page, keys.owner());
    const link = `#regression-banner[role=alert] a[data-deployment="${rolled.id}"]`;
    for (const route of ['failures', 'improvements']) {
      // each page draws the banner anew: the one shown before must not count
      await page.$eval('#banners', (e) => e.replaceChildren());
      await gotoRoute(page, `#/${route}${demo()}`);
      await page.waitForSelector(link);
      assert.match(await page.$eval('#regression-banner', (e) => e.textContent), /rolled back automatically/);
    }
    assert.equal(await afterNavigation(page, () => page.click(link)), 'improvements');
    assert.equal(new URL(page.url()).hash.split('?')[0], `#/improvements/${rolled.id}`);
    assert.equal(await page.$eval('#main [data-field=status]', (e) => e.dataset.status), 'rolled_back');
    const canvas = await page.waitForSelector('#main #monitor-chart canvas');
    const box = await canvas.boundingBox();
    assert.ok(box && box.width > 100 && box.height > 100, `the chart is drawn: ${JSON.stringify(box)}`);
    assert.equal(await page.$$eval('#monitor-chart .state-error', (e) => e.length), 0);
    assert.doesNotMatch(await page.$eval('#monitor-chart', (e) => e.textContent), /No live traces/);
  }));
