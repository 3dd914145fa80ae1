// A run's timeline (Gantt) as SVG: one row per step, one bar per attempt or wait, from the
// spans of GET /runs/{id}/trace (times in seconds since the epoch; end null = still going).

import { seconds } from "./ui.js";

const SVG = "http://www.w3.org/2000/svg";
const ROW = 26;
const BAR = 16;
const LABELS = 150;
const AXIS = 22;

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, value);
  el.append(...children);
  return el;
}

function rowsOf(spans, order) {
  const steps = [...new Set(spans.map((s) => s.step))];
  const rank = (step) => {
    const i = order.indexOf(step);
    return i < 0 ? order.length : i;
  };
  const first = new Map(
    steps.map((step) => [
      step,
      Math.min(...spans.filter((s) => s.step === step).map((s) => s.start)),
    ]),
  );
  return steps.sort((a, b) => first.get(a) - first.get(b) || rank(a) - rank(b));
}

function ticks(span) {
  const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400];
  const step = steps.find((s) => span / s <= 6) || span / 6;
  const found = [];
  for (let t = 0; t <= span + 1e-9; t += step) found.push(t);
  return found;
}

/**
 * Draw `trace` into `container` (replacing what was there). `order` (step ids) breaks ties in
 * row order; `now` (seconds) ends the bars still going.
 */
export function drawTimeline(container, trace, { order = [], now = Date.now() / 1000 } = {}) {
  const spans = trace.spans || [];
  if (spans.length === 0) {
    container.replaceChildren(document.createTextNode("No step has started yet."));
    return;
  }
  const start = Math.min(trace.start ?? Infinity, ...spans.map((s) => s.start));
  const latest = Math.max(...spans.map((s) => s.end ?? s.start));
  const end = Math.max(trace.end ?? Math.max(now, latest), latest, start + 0.001);
  const total = end - start;
  const rows = rowsOf(spans, order);
  const width = Math.max(container.clientWidth || 800, 480);
  const plot = width - LABELS - 12;
  const x = (t) => LABELS + ((t - start) / total) * plot;
  const height = AXIS + rows.length * ROW + 6;

  const chart = svg("svg", {
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    class: "timeline",
    role: "img",
    "aria-label": `Timeline of run ${trace.run_id}`,
    "data-testid": "timeline-svg",
  });
  chart.append(
    svg(
      "defs",
      {},
      svg(
        "pattern",
        {
          id: "hatch",
          width: 6,
          height: 6,
          patternUnits: "userSpaceOnUse",
          patternTransform: "rotate(45)",
        },
        svg("rect", { width: 6, height: 6, class: "hatch-bg" }),
        svg("line", { x1: 0, y1: 0, x2: 0, y2: 6, class: "hatch-line" }),
      ),
    ),
  );
  for (const t of ticks(total)) {
    chart.append(
      svg("line", { x1: x(start + t), x2: x(start + t), y1: AXIS - 4, y2: height, class: "tick" }),
      svg("text", { x: x(start + t), y: AXIS - 8, class: "tick-label" }, seconds(t)),
    );
  }
  rows.forEach((step, i) => {
    const y = AXIS + i * ROW;
    chart.append(svg("text", { x: 4, y: y + ROW / 2 + 4, class: "row-label" }, step));
    for (const span of spans.filter((s) => s.step === step)) {
      const from = x(span.start);
      const to = x(span.end ?? end);
      const duration = (span.end ?? end) - span.start;
      const what = span.kind === "wait" ? "wait" : `attempt ${span.attempt}`;
      chart.append(
        svg(
          "rect",
          {
            x: from,
            y: y + (ROW - BAR) / 2,
            width: Math.max(to - from, 3),
            height: BAR,
            rx: 3,
            class: `bar s-${span.status} k-${span.kind}${span.end === null ? " ongoing" : ""}`,
            "data-testid": "span",
            "data-step": step,
            "data-status": span.status,
          },
          svg(
            "title",
            {},
            `${step} ${what}: ${span.status}, ${seconds(duration)}${span.end === null ? " so far" : ""}`,
          ),
        ),
      );
    }
  });
  container.replaceChildren(chart);
}
