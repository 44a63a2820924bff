#!/usr/bin/env node
// The dashboard's browser tests: Chromium (puppeteer-core, the system's /usr/bin/chromium or
// PL_CHROMIUM) against a running stack on which scripts/demo has played. scripts/test runs
// them; by hand:
//
//   eval "$(scripts/stack up)" && scripts/demo >/dev/null    # a stack with the demo's data
//   node tests/browser/run.mjs                               # every *.test.mjs here
//   node tests/browser/run.mjs session.test.mjs              # some of them
//
// Each *.test.mjs is a node:test file run by `node --test`, one file after the other (they
// share one stack; one Chromium at a time suits small machines). Exit status 1 if any failed.
//
// Adding a test for a page: create tests/browser/<page>.test.mjs, e.g.
//
//   import assert from 'node:assert/strict';
//   import { after, before, test } from 'node:test';
//   import { gotoRoute, launch, signInWithLink, withPage } from './lib/browser.mjs';
//   import { keys, rolledBackDeployment } from './lib/stack.mjs';
//
//   let browser;
//   before(async () => { browser = await launch(); });
//   after(async () => { await browser?.close(); });
//
//   test('the improvement page shows the rollback', () =>
//     // a page with its own cookies; afterwards the test fails on any console error,
//     // exception, CSP violation, 5xx answer or dialog the page had (lib/browser.mjs)
//     withPage(browser, async ({ page, watch }) => {
//       await signInWithLink(page, keys.owner());                  // or signInWithKey
//       await gotoRoute(page, `#/improvements/${(await rolledBackDeployment()).id}`);
//       assert.match(await page.$eval('#main', (e) => e.textContent), /rolled.back/);
//     }));
//
// It is picked up by its name; PAGE_TESTS below lists the ones planned, with what they
// should cover, and until a file exists the runner reports it as not written yet. The data to
// test against: lib/stack.mjs (the demo's rolled-back deployment, failure clusters, the
// escalation of trace invoice-43 pending in billing-bot's HITL queue, the XSS fixture trace
// and ingestXssFixtures(); demoRoutes() lists the routes with real ids).

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

// The page tests to come; skipped while their file does not exist.
const PAGE_TESTS = {
  'failures.test.mjs': '#/failures and #/failures/<cluster>: the demo cluster, the XSS fixture trace as text (XSS.*), triage as owner (audited), none for a viewer',
  'improvements.test.mjs': '#/improvements and #/improvements/<deployment>: a candidate\'s diff, approval shipping a registry version, rejection with a reason, none for a viewer; the rollback\'s banner and monitor chart',
  'hitl.test.mjs': "#/hitl: invoice-43's pending escalation (pendingEscalations()) approved by the owner, another rejected with a reason; no decisions for a viewer; the kill switch",
  'policies.test.mjs': "#/policies: billing-bot's two policies; the API's 422 message in the creation form",
  'settings.test.mjs': '#/settings: the project settings scripts/demo set (cluster_min_size 150, canary)',
  'registry.test.mjs': '#/registry: prompt support-chat, its versions, the live one',
  'audit.test.mjs': '#/audit: the audit log of the demo tenant',
};

const args = process.argv.slice(2);
const files = args.length
  ? args
  : readdirSync(here).filter((f) => f.endsWith('.test.mjs')).sort();

let failed = 0;
for (const f of files) {
  const path = join(here, f);
  if (!existsSync(path)) {
    console.error(`browser tests: no ${f} in ${here}`);
    failed++;
    continue;
  }
  console.log(`# ${f}`);
  const r = spawnSync(process.execPath, ['--test', path], { stdio: 'inherit', cwd: here });
  if (r.status !== 0) failed++;
}
if (!args.length) {
  for (const [f, covers] of Object.entries(PAGE_TESTS)) {
    if (!existsSync(join(here, f))) console.log(`# skipped ${f} (not written yet): ${covers}`);
  }
}
console.log(failed ? `# browser tests: ${failed} of ${files.length} file(s) failed`
                   : `# browser tests: all ${files.length} file(s) passed`);
process.exit(failed ? 1 : 0);
