// The headers that make the dashboard safe to show untrusted text in: a CSP without inline
// script or eval and no framing, and no MIME sniffing, on every file under /ui/.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { API } from './lib/stack.mjs';

/** 'a b; c d' -> Map { a => ['b'], c => ['d'] } */
function parseCsp(header) {
  const m = new Map();
  for (const part of header.split(';')) {
    const [name, ...values] = part.trim().split(/\s+/);
    if (name) m.set(name.toLowerCase(), values);
  }
  return m;
}

for (const path of ['/ui/', '/ui/app.js', '/ui/app.css']) {
  test(`GET ${path} sends the dashboard's security headers`, async () => {
    const res = await fetch(API() + path);
    assert.equal(res.status, 200);
    const header = res.headers.get('content-security-policy');
    assert.ok(header, 'a Content-Security-Policy header');
    const csp = parseCsp(header);
    const scripts = csp.get('script-src') || csp.get('default-src');
    assert.ok(scripts, `script-src or default-src in ${header}`);
    for (const unsafe of ["'unsafe-inline'", "'unsafe-eval'"]) {
      assert.ok(!scripts.includes(unsafe), `script-src without ${unsafe}: ${header}`);
    }
    assert.deepEqual(csp.get('frame-ancestors'), ["'none'"], `frame-ancestors 'none': ${header}`);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
  });
}
