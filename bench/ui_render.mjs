// The dashboard's first render in Chromium, for bench/ui: for each main page, the time from
// navigation start to the page's content in place (the page root marked data-ready after its
// data arrived and was drawn), measured inside the page with performance.now(). Cold: the
// browser cache off (every file fetched, parsed and run again); warm: the cache on.
// Prints one line per page and "render ok" when every cold render is under 1 s.
import { createRequire } from 'node:module';

const require = createRequire(new URL('../tests/browser/package.json', import.meta.url));
const puppeteer = require('puppeteer-core');

const base = process.env.PL_API_URL;
const project = process.env.PL_PROJECT_ID;
const TARGET_MS = 1000;
const RUNS = Number(process.env.RUNS || 5);

const pages = [
  ['failures', `#/failures?project=${project}`],
  ['cluster detail', `#/failures/${process.env.CLUSTER}?project=${project}`],
  ['improvements', `#/improvements?project=${project}`],
  ['improvement detail + chart', `#/improvements/${process.env.DEPLOYMENT}?project=${project}`],
  ['hitl queue', `#/hitl?project=${project}`],
  ['policies', `#/policies?project=${project}`],
  ['settings', `#/settings?project=${project}`],
  ['registry', `#/registry?project=${project}`],
  ['audit', `#/audit?project=${project}`],
];

async function signInLink() {
  const r = await fetch(`${base}/ui/links`, {
    method: 'POST', headers: { Authorization: `Bearer ${process.env.PL_OWNER_KEY}` },
  });
  if (r.status !== 201) throw new Error(`POST /ui/links: ${r.status}`);
  return (await r.json()).path;
}

async function renderMs(page, url) {
  await page.goto('about:blank');
  await page.goto(url);
  const handle = await page.waitForFunction(
    () => document.querySelector('.page[data-ready="true"]') && performance.now(),
    { polling: 'raf', timeout: 10000 });
  return handle.jsonValue();
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const args = ['--headless=new', '--disable-gpu'];
if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');
const browser = await puppeteer.launch({
  executablePath: process.env.PL_CHROMIUM || '/usr/bin/chromium', args,
});
let ok = true;
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  await page.goto(`${base}${await signInLink()}`);
  await page.waitForSelector('.page[data-ready="true"]', { timeout: 10000 });
  for (const [name, hash] of pages) {
    const cold = [], warm = [];
    for (let i = 0; i < RUNS; i++) {
      await page.setCacheEnabled(false);
      cold.push(await renderMs(page, `${base}/ui/${hash}`));
      await page.setCacheEnabled(true);
      warm.push(await renderMs(page, `${base}/ui/${hash}`));
    }
    const worst = Math.max(...cold);
    if (worst >= TARGET_MS) ok = false;
    console.log(`${name.padEnd(28)} cold median ${median(cold).toFixed(0).padStart(4)} ms, ` +
                `max ${worst.toFixed(0).padStart(4)} ms; warm median ` +
                `${median(warm).toFixed(0).padStart(4)} ms (${RUNS} runs)`);
  }
} finally {
  await browser.close();
}
console.log(ok ? 'render ok: every cold first render < 1 s' : 'render slow: a first render took >= 1 s');
