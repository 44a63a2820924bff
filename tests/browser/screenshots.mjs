#!/usr/bin/env node
// PNGs of the dashboard's main pages for the docs, 1280 wide and as long as the page, signed in as the demo owner,
// against a stack on which scripts/demo has played (scripts/screenshots does all of it).
//
//   node tests/browser/screenshots.mjs [OUTPUT_DIR]     (default docs/img)
//
// A page that logs an error while it is shot is named on stderr and fails the run (after
// every page was written), so a broken page does not end up in the docs unnoticed.

import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DESKTOP, gotoRoute, launch, openPage, signInWithLink } from './lib/browser.mjs';
import { demoRoutes, keys } from './lib/stack.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const out = resolve(process.argv[2] || join(root, 'docs/img'));
mkdirSync(out, { recursive: true });

const routes = await demoRoutes();
const browser = await launch();
let broken = 0;
try {
  const { page, watch } = await openPage(browser, DESKTOP);
  await signInWithLink(page, keys.owner());
  for (const r of routes) {
    const problems = watch.problems.length, dialogs = watch.dialogs.length;
    await gotoRoute(page, r.hash);
    const file = join(out, `${r.name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    const found = [...watch.problems.slice(problems), ...watch.dialogs.slice(dialogs)];
    if (found.length) {
      broken++;
      console.error(`${r.hash}: ${found.join('; ')}`);
    }
    console.log(`${file}  ${r.hash}`);
  }
} finally {
  await browser.close();
}
if (broken) {
  console.error(`screenshots: ${broken} page(s) logged errors`);
  process.exit(1);
}
