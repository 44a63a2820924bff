// A unified line diff of two texts (jsdiff's diffLines), drawn as text: one span per line,
// + for added, - for removed, two spaces for unchanged.

import { diffLines } from './vendor-diff.js';
import { el } from './lib.js';

/** Splits a change's value into its lines (the last newline ends a line, it starts none). */
function lines(value) {
  const parts = value.split('\n');
  if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
  return parts;
}

/** pre.diff of before → after, with a summary line above it. */
export function diffView(before, after, { fromLabel = 'before', toLabel = 'after' } = {}) {
  const a = before === null || before === undefined ? '' : String(before);
  const b = after === null || after === undefined ? '' : String(after);
  // a last line without its newline would differ from the same line with one
  const nl = (t) => (t === '' || t.endsWith('\n') ? t : `${t}\n`);
  const changes = diffLines(nl(a), nl(b));
  let added = 0, removed = 0;
  const spans = [];
  for (const c of changes) {
    const cls = c.added ? 'diff-add' : c.removed ? 'diff-del' : 'diff-ctx';
    const prefix = c.added ? '+ ' : c.removed ? '- ' : '  ';
    for (const line of lines(c.value)) {
      if (c.added) added++;
      if (c.removed) removed++;
      spans.push(el('span', { class: cls }, prefix + line + '\n'));
    }
  }
  return el('div', { class: 'diff-wrap' },
    el('p', { class: 'diff-summary muted' },
      el('span', { class: 'diff-del-label' }, `- ${fromLabel}`), '  ',
      el('span', { class: 'diff-add-label' }, `+ ${toLabel}`), '  ',
      `${added} line${added === 1 ? '' : 's'} added, ${removed} removed`),
    added || removed ? null : el('p', { class: 'muted' }, 'The two texts are identical.'),
    el('pre', { class: 'diff' }, spans));
}
