// #/hitl: billing-bot's pending escalations with what a reviewer needs, the owner's approval
// and rejection (with a reason), a viewer without decisions, and the kill switch's dialog.
// invoice-43's escalation is scripts/demo's; the one rejected here comes from a trace the
// test ingests the same way (invoice-44).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { gotoRoute, launch, signInWithKey, signInWithLink, texts, withPage } from './lib/browser.mjs';
import {
  api, apiOk, ingestEscalation, keys, pendingEscalations, projectByName, waitFor,
} from './lib/stack.mjs';

let browser;
let billing;
let demoEscalation; // invoice-43's, pending since scripts/demo
let ownEscalation; // invoice-44's id
const action = (id) => apiOk('GET', `/v1/control/actions/${id}`, keys.viewer());
const card = (id) => `#main [data-action-id="${id}"]`;

before(async () => {
  billing = (await projectByName('billing-bot')).id;
  demoEscalation = (await pendingEscalations()).find((a) => a.trace_id === 'invoice-43');
  if (!demoEscalation) throw new Error("invoice-43's escalation is not pending: did scripts/demo run against this stack?");
  ownEscalation = await ingestEscalation(billing, 'invoice-44',
    'Please cancel my subscription <b>today</b>.', 'Your subscription ends at the end of the month.');
  browser = await launch();
});
after(async () => { await browser?.close(); });

test("the queue shows invoice-43's escalation with its input, policy and waiting time", () =>
  withPage(browser, async ({ page }) => {
    const trace = await apiOk('GET', `/v1/traces/invoice-43?project_id=${billing}`, keys.viewer());
    const question = trace.input.messages.find((m) => m.role === 'user').content;
    await signInWithLink(page, keys.owner());
    await gotoRoute(page, `#/hitl?project=${billing}`);
    const c = await page.waitForSelector(card(demoEscalation.id));
    const text = await c.evaluate((e) => e.textContent);
    assert.ok(text.includes('invoice-43'), 'the trace id');
    assert.deepEqual(await c.$$eval('.message pre', (p) => p.map((x) => x.textContent)),
      trace.input.messages.map((m) => m.content), 'the trace input, message by message');
    assert.ok(text.includes(question));
    assert.equal(await c.$eval('[data-field=policy]', (e) => e.textContent), demoEscalation.policy_name);
    assert.equal(demoEscalation.policy_name, 'retry once');
    assert.match(await c.$eval('[data-field=waiting]', (e) => e.textContent),
      /^waiting \d+(s|m \d+s|h \d+m|d \d+h)$/);
    // the ingested escalation is listed too, its markup as text
    const own = await page.waitForSelector(card(ownEscalation));
    assert.ok((await own.evaluate((e) => e.textContent)).includes('<b>today</b>'));
    assert.equal(await page.$$eval('#main b', (b) => b.length), 0);
  }));

test('a viewer sees the queue without decisions', () =>
  withPage(browser, async ({ page, watch }) => {
    await signInWithKey(page, watch, keys.viewer());
    await gotoRoute(page, `#/hitl?project=${billing}`);
    await page.waitForSelector(card(demoEscalation.id));
    await page.waitForSelector('#killswitch-state');
    assert.deepEqual(await texts(page, '#main [data-action]'), []);
  }));

test("the owner approves invoice-43's escalation: the card is decided, the action executed", () =>
  withPage(browser, async ({ page }) => {
    await signInWithLink(page, keys.owner());
    await gotoRoute(page, `#/hitl?project=${billing}`);
    await page.click(`${card(demoEscalation.id)} button[data-action=approve]`);
    await page.waitForSelector(`${card(demoEscalation.id)}.decided`, { timeout: 30000 });
    assert.match(await page.$eval(card(demoEscalation.id), (e) => e.textContent),
      /^Approved: trace invoice-43 → executed$/);
    assert.equal((await action(demoEscalation.id)).status, 'executed');
    assert.ok(!(await pendingEscalations()).some((a) => a.id === demoEscalation.id), 'left the queue');
  }));

test('rejecting an escalation needs a reason, which the action keeps', () =>
  withPage(browser, async ({ page }) => {
    await signInWithLink(page, keys.owner());
    await gotoRoute(page, `#/hitl?project=${billing}`);
    const c = card(ownEscalation);
    await page.click(`${c} button[data-action=reject]`);
    await page.waitForSelector(`${c} form.reason-form #reason`);
    assert.equal(await page.$eval(`${c} form.reason-form [role=alert]`, (e) => e.textContent),
      'a reason is required');
    assert.equal(await page.$eval(`${c} form.reason-form button[type=submit]`, (b) => b.disabled), true);
    await page.$eval(`${c} form.reason-form`, (f) => f.dispatchEvent(new Event('submit', { cancelable: true })));
    assert.equal((await action(ownEscalation)).status, 'pending_approval');

    const reason = 'The customer asked support directly; nothing to retry.';
    await page.type(`${c} #reason`, reason);
    await page.click(`${c} form.reason-form button[type=submit]`);
    await page.waitForSelector(`${c}.decided`);
    assert.match(await page.$eval(c, (e) => e.textContent), /^Rejected: trace invoice-44 → failed$/);
    const a = await action(ownEscalation);
    assert.equal(a.status, 'failed');
    assert.equal(a.result.reason, reason);
  }));

test('the kill switch asks before it changes, and the banner follows it', () =>
  withPage(browser, async ({ page }) => {
    const state = async () => (await apiOk('GET', '/v1/control/killswitch', keys.viewer())).active;
    assert.equal(await state(), false);
    await signInWithLink(page, keys.owner());
    await gotoRoute(page, `#/hitl?project=${billing}`);
    const shown = () => page.$eval('#killswitch-state', (e) => e.dataset.active);
    assert.equal(await shown(), 'false');

    // cancelled: nothing changes
    await page.click('#main button[data-action=killswitch-enable]');
    await page.waitForSelector('dialog#confirm[open]');
    await page.click('dialog#confirm [data-confirm=no]');
    await page.waitForSelector('dialog#confirm:not([open])');
    assert.equal(await state(), false);
    assert.equal(await shown(), 'false');

    try {
      await page.click('#main button[data-action=killswitch-enable]');
      await page.waitForSelector('dialog#confirm[open]');
      await page.click('dialog#confirm [data-confirm=yes]');
      await page.waitForSelector('#killswitch-state[data-active="true"]');
      await page.waitForSelector('#killswitch-banner');
      assert.equal(await state(), true);

      await page.click('#main button[data-action=killswitch-disable]');
      await page.waitForSelector('dialog#confirm[open]');
      await page.click('dialog#confirm [data-confirm=yes]');
      await page.waitForSelector('#killswitch-state[data-active="false"]');
      await waitFor('the kill switch banner gone', async () => !(await page.$('#killswitch-banner')));
      assert.equal(await state(), false);
    } finally {
      // the control loop must run for the tests after this one
      if (await state()) await api('POST', '/v1/control/killswitch/disable', keys.owner(), {});
    }
  }));
