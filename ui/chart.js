// The post-ship chart (uPlot): the shipped version's live pass rate over time, the replaced
// version's pass rate as a dashed baseline, the canary share as a step line and a vertical
// marker at the monitor's decision.

import uPlot from './vendor-uplot.js';
import { fill, el } from './lib.js';

const COLORS = { rate: '#2458d6', base: '#6b7280', share: '#c2410c', decision: '#b42318',
                 promoted: '#067647', ship: '#98a2b3' };

const secs = (ts) => new Date(ts).getTime() / 1000;

/** Draws vertical lines with a label at given times. */
function markerPlugin(markers) {
  return {
    hooks: {
      draw: [(u) => {
        const c = u.ctx;
        const { top, height, left, width } = u.bbox;
        const dpr = window.devicePixelRatio || 1;
        for (const m of markers) {
          const x = Math.round(u.valToPos(m.at, 'x', true));
          if (x < left - 1 || x > left + width + 1) continue;
          c.save();
          c.strokeStyle = m.color;
          c.lineWidth = 1.5 * dpr;
          c.setLineDash(m.dash ? m.dash.map((d) => d * dpr) : []);
          c.beginPath();
          c.moveTo(x, top);
          c.lineTo(x, top + height);
          c.stroke();
          c.fillStyle = m.color;
          c.font = `${11 * dpr}px system-ui, sans-serif`;
          const tw = c.measureText(m.label).width;
          const tx = x + 4 * dpr + tw > left + width ? x - 4 * dpr - tw : x + 4 * dpr;
          c.fillText(m.label, tx, top + 12 * dpr);
          c.restore();
        }
      }],
    },
  };
}

/** The value of a step function [{at, v}] (sorted) at time t; before the first: fallback. */
function stepAt(steps, t, fallback) {
  let v = fallback;
  for (const s of steps) { if (s.at <= t) v = s.v; else break; }
  return v;
}

/**
 * Builds uPlot's data and options from a /series answer. Returns null when there is nothing
 * to draw yet.
 */
export function chartModel(series) {
  const points = (series.points || []).map((p) => ({ at: secs(p.at), rate: p.pass_rate,
                                                     traces: p.traces }));
  if (!points.length) return null;
  const shipped = series.shipped_at ? secs(series.shipped_at) : points[0].at;
  const decision = series.decision && series.decision.at ? secs(series.decision.at) : null;
  const rolledBack = series.rolled_back_at ? secs(series.rolled_back_at) : null;
  const steps = (series.rollout || []).map((r) => ({ at: secs(r.at), v: r.rollout_pct }))
    .filter((s) => Number.isFinite(s.at)).sort((a, b) => a.at - b.at);
  const start = Math.min(shipped, points[0].at);
  const xs = new Set(points.map((p) => p.at));
  xs.add(start);
  if (decision) xs.add(decision);
  if (rolledBack) xs.add(rolledBack);
  for (const s of steps) if (s.at >= start) xs.add(s.at);
  const x = [...xs].sort((a, b) => a - b);
  const byAt = new Map(points.map((p) => [p.at, p]));
  const base = series.baseline_pass_rate;
  const hasShare = steps.length > 0;
  const data = [
    x,
    x.map((t) => (byAt.has(t) ? byAt.get(t).rate : null)),
    x.map(() => (base === null || base === undefined ? null : base)),
  ];
  if (hasShare) data.push(x.map((t) => stepAt(steps, t, 0)));
  const markers = [{ at: shipped, label: 'shipped', color: COLORS.ship, dash: [3, 3] }];
  if (decision) {
    const kind = series.decision.kind || 'decision';
    markers.push({ at: decision, label: kind,
                   color: kind === 'promoted' ? COLORS.promoted : COLORS.decision });
  }
  return { data, markers, hasShare, hasBase: base !== null && base !== undefined };
}

function options(model, width) {
  const pct = (v) => (v === null || v === undefined ? '—' : `${(v * 100).toFixed(1)} %`);
  const series = [
    {},
    { label: 'live pass rate', scale: 'rate', stroke: COLORS.rate, width: 2, spanGaps: true,
      points: { show: true, size: 5, fill: COLORS.rate }, value: (u, v) => pct(v) },
    { label: 'baseline (replaced version)', scale: 'rate', stroke: COLORS.base, width: 1.5,
      dash: [8, 5], points: { show: false }, show: model.hasBase, value: (u, v) => pct(v) },
  ];
  const axes = [
    {},
    { scale: 'rate', label: 'pass rate', values: (u, vals) => vals.map((v) => `${Math.round(v * 100)} %`) },
  ];
  if (model.hasShare) {
    series.push({ label: 'canary share', scale: 'share', stroke: COLORS.share, width: 1.5,
                  paths: uPlot.paths.stepped({ align: 1 }), points: { show: false },
                  spanGaps: true, value: (u, v) => (v === null || v === undefined ? '—' : `${v} %`) });
    axes.push({ scale: 'share', side: 1, label: 'share of users', grid: { show: false },
                values: (u, vals) => vals.map((v) => `${v} %`) });
  }
  return {
    width, height: 280,
    scales: { x: { time: true }, rate: { range: [0, 1] }, share: { range: [0, 100] } },
    series, axes, legend: { live: true },
    cursor: { drag: { x: false, y: false } },
    plugins: [markerPlugin(model.markers)],
  };
}

/**
 * Mounts the chart into container (which must be in the document) and keeps its width
 * following the container. Returns the uPlot instance or null.
 */
export function mountChart(container, series) {
  const model = chartModel(series);
  if (!model) {
    fill(container, el('p', { class: 'muted' },
      'No live traces of the shipped version yet.'));
    return null;
  }
  const width = () => Math.max(280, container.clientWidth || 600);
  const plot = new uPlot(options(model, width()), model.data, container);
  if (window.ResizeObserver) {
    let last = width();
    const ro = new ResizeObserver(() => {
      if (!container.isConnected) { ro.disconnect(); plot.destroy(); return; }
      const w = width();
      if (w !== last) { last = w; plot.setSize({ width: w, height: 280 }); }
    });
    ro.observe(container);
  }
  return plot;
}
