// One run: its status and actions, its graph coloured by step status, its timeline, each step's
// inputs, outputs and errors, and its logs, all kept live by GET /runs/{id}/stream.

import { get, post, query, stream } from "../api.js";
import { drawGraph, legend, paintStatuses } from "../graph.js";
import { drawTimeline } from "../timeline.js";
import {
  attempt,
  badge,
  coalesce,
  h,
  json,
  notify,
  seconds,
  showError,
  table,
  when,
} from "../ui.js";

const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
const MAX_LOG_LINES = 5000;

export async function page(ctx) {
  const [id] = ctx.match;
  const path = `/runs/${encodeURIComponent(id)}`;
  const run = await get(path);
  const view = new RunView(ctx, path, run, await traceOf(path, run));
  await view.logs.load();
  view.follow();
}

/** The run's timeline; none yet while it is queued (the server has no trace for it then). */
async function traceOf(path, run) {
  try {
    return await get(`${path}/trace`);
  } catch (error) {
    if (run.status !== "queued" || error.status !== 404) throw error;
    return { run_id: run.run_id, status: run.status, start: null, end: null, spans: [] };
  }
}

class RunView {
  constructor(ctx, path, run, trace) {
    this.path = path;
    this.run = run;
    this.trace = trace;
    this.open = new Set(); // steps whose details are unfolded
    this.header = h("div", { class: "run-head" });
    this.graphBox = h("div", { class: "graph", testid: "graph" });
    this.legend = h("div", {});
    this.timeline = h("div", { class: "timeline-box", testid: "timeline" });
    this.steps = h("div", { testid: "steps" });
    this.logs = new Logs(path, run);
    ctx.root.append(
      this.header,
      h(
        "div",
        { class: "columns" },
        h("section", { class: "wide" }, h("h2", {}, "Graph"), this.graphBox, this.legend),
        h("section", {}, h("h2", {}, "Parameters"), json(run.params)),
      ),
      h("section", {}, h("h2", {}, "Timeline"), this.timeline),
      h("section", {}, h("h2", {}, "Steps"), this.steps),
      h("section", {}, h("h2", {}, "Logs"), this.logs.el),
    );
    this.cy = null;
    this.refresh = coalesce(() => this.reload().catch(showError), 250);
    this.ctx = ctx;
    this.render();
    const tick = setInterval(() => this.ticking() && this.drawTimeline(), 1000);
    ctx.onLeave(() => clearInterval(tick));
  }

  ticking() {
    return !FINISHED.has(this.run.status) && this.trace.spans.some((s) => s.end === null);
  }

  follow() {
    const cursor = { after: 0 };
    const stop = stream(
      () => `${this.path}/stream${query({ after: cursor.after, logs_after: this.logs.after })}`,
      {
        "run-event": (event) => {
          cursor.after = event.seq;
          this.refresh();
        },
        log: (line) => this.logs.add(line),
        end: () => {
          this.refresh();
          return "stop";
        },
      },
      showError,
    );
    this.ctx.onLeave(stop);
  }

  async reload() {
    this.run = await get(this.path);
    this.trace = await traceOf(this.path, this.run);
    this.render();
  }

  render() {
    this.renderHeader();
    this.paintGraph();
    this.logs.offer(this.run.order);
    this.drawTimeline();
    this.renderSteps();
  }

  paintGraph() {
    const graph = this.run.graph;
    if (this.cy && graph) paintStatuses(this.cy, graph);
    else if (graph) {
      this.graphBox.replaceChildren();
      this.cy = drawGraph(this.graphBox, graph, { onSelect: (step) => this.reveal(step) });
      this.legend.replaceChildren(legend(graph));
    } else {
      const why =
        this.run.status === "queued"
          ? "The run is queued; its graph shows once it starts."
          : "No graph: the run has not recorded its definition.";
      this.graphBox.replaceChildren(h("p", { class: "empty" }, why));
    }
  }

  drawTimeline() {
    drawTimeline(this.timeline, this.trace, { order: this.run.order });
  }

  renderHeader() {
    const run = this.run;
    const busy = !FINISHED.has(run.status);
    const from = h(
      "select",
      { testid: "retry-from", "aria-label": "retry from step" },
      h("option", { value: "" }, "from the failed step"),
      run.order.map((s) => h("option", { value: s }, `from ${s}`)),
    );
    const parts = [
      h("h1", {}, "Run ", h("code", {}, run.run_id), " ", badge(run.status, "run-status")),
      h(
        "p",
        { class: "meta" },
        "workflow ",
        h("a", { href: `#/workflows/${encodeURIComponent(run.workflow_id)}` }, run.workflow_id),
        ` · started by ${run.started_by || "—"}`,
        ` · created ${when(run.created_at)} · updated ${when(run.updated_at)}`,
        run.retry_of
          ? h(
              "span",
              {},
              " · retry of ",
              h("a", { href: `#/runs/${encodeURIComponent(run.retry_of)}` }, run.retry_of),
            )
          : null,
      ),
      run.workspace
        ? h(
            "p",
            { class: "meta", testid: "run-workspace" },
            "workspace ",
            h("code", {}, run.workspace),
            " · open a shell in it: ",
            h("code", {}, `wayang workspace shell ${run.run_id}`),
          )
        : null,
      run.reason
        ? h("p", { class: `reason s-${run.status}`, testid: "run-reason" }, run.reason)
        : null,
      h(
        "div",
        { class: "actions" },
        h(
          "button",
          { type: "button", testid: "cancel", disabled: !busy, onclick: () => this.act("cancel") },
          "Cancel",
        ),
        h(
          "button",
          {
            type: "button",
            testid: "resume",
            disabled: !busy || run.status === "queued",
            onclick: () => this.act("resume"),
          },
          "Resume",
        ),
        h(
          "button",
          {
            type: "button",
            testid: "retry",
            disabled: busy,
            onclick: () => this.retry(from.value),
          },
          "Retry",
        ),
        from,
      ),
    ];
    this.header.replaceChildren(...parts.filter(Boolean));
  }

  async act(action) {
    const summary = await attempt(() => post(`${this.path}/${action}`));
    if (summary) notify(`${action}: run ${summary.run_id} is ${summary.status}`);
    this.refresh();
  }

  async retry(fromStep) {
    const accepted = await attempt(() =>
      post(`${this.path}/retry`, fromStep ? { from_step: fromStep } : {}),
    );
    if (accepted) location.hash = `#/runs/${encodeURIComponent(accepted.run_id)}`;
  }

  renderSteps() {
    const rows = this.run.order.flatMap((id) => this.stepRows(this.run.steps[id]));
    this.steps.replaceChildren(
      table(["step", "kind", "status", "attempts", "took", "started", "note"], rows, {
        class: "steps",
      }),
    );
  }

  stepRows(step) {
    const toggle = () => {
      if (this.open.has(step.id)) this.open.delete(step.id);
      else this.open.add(step.id);
      this.renderSteps();
    };
    const note = step.error || step.waiting_for || step.reason || "";
    const row = h(
      "tr",
      {
        testid: "step-row",
        "data-step": step.id,
        "data-status": step.status,
        class: this.open.has(step.id) ? "open" : "",
      },
      h(
        "td",
        {},
        h(
          "button",
          {
            type: "button",
            class: "link",
            "aria-expanded": String(this.open.has(step.id)),
            onclick: toggle,
          },
          step.id,
        ),
      ),
      h("td", {}, step.kind),
      h("td", {}, badge(step.status, "step-status")),
      h("td", { class: "num" }, tries(step)),
      h("td", { class: "num" }, step.started_at ? seconds(step.duration_s) : "—"),
      h("td", {}, when(step.started_at)),
      h("td", { class: step.error ? "error" : "" }, note),
    );
    if (!this.open.has(step.id)) return [row];
    const parts = [
      h("div", {}, h("h3", {}, "Inputs"), json(step.inputs)),
      h("div", {}, h("h3", {}, "Outputs"), json(step.outputs)),
      step.error
        ? h("div", {}, h("h3", {}, "Error"), h("pre", { class: "error" }, step.error))
        : null,
    ];
    return [
      row,
      h(
        "tr",
        { class: "details", testid: "step-details" },
        h("td", { colspan: 7 }, h("div", { class: "step-io" }, parts)),
      ),
    ];
  }

  reveal(stepId) {
    this.open.add(stepId);
    this.renderSteps();
    this.steps
      .querySelector(`tr[data-step="${CSS.escape(stepId)}"]`)
      ?.scrollIntoView({ block: "center", behavior: "smooth" });
    this.logs.show(stepId);
  }
}

/** The run's log lines, all steps or one, and the live ones as they come. */
class Logs {
  constructor(path, run) {
    this.path = path;
    this.after = 0;
    this.step = "";
    this.lines = [];
    this.pre = h("pre", { class: "logs", testid: "logs" });
    this.select = h("select", {
      testid: "log-step",
      "aria-label": "log of step",
      onchange: () => this.show(this.select.value),
    });
    this.offer(run.order);
    this.el = h("div", {}, h("label", {}, "Show ", this.select), this.pre);
  }

  /** The steps to choose from, once the run has them (a queued run has none yet). */
  offer(order) {
    if (this.select.options.length === order.length + 1) return;
    this.select.replaceChildren(
      h("option", { value: "" }, "all steps"),
      ...order.map((s) => h("option", { value: s }, s)),
    );
    this.select.value = this.step;
  }

  /** Every line so far (of the chosen step), page by page. */
  async load() {
    const lines = [];
    let cursor = 0;
    for (;;) {
      const page = await get(
        `${this.path}/logs${query({ step: this.step, after: cursor, limit: 1000 })}`,
      );
      lines.push(...page.items);
      if (!page.next) break;
      cursor = page.next;
    }
    this.lines = lines.slice(-MAX_LOG_LINES);
    if (!this.step) this.after = Math.max(this.after, ...lines.map((l) => l.seq || 0));
    this.paint();
  }

  show(step) {
    this.step = step;
    this.select.value = step;
    this.load().catch(showError);
  }

  add(line) {
    this.after = Math.max(this.after, line.seq || 0);
    if (this.step && line.step !== this.step) return;
    if (line.seq && this.lines.some((l) => l.seq === line.seq)) return;
    this.lines.push(line);
    if (this.lines.length === 1) this.pre.replaceChildren(); // the "no line yet" note
    if (this.lines.length > MAX_LOG_LINES) this.lines.shift();
    this.pre.append(lineOf(line));
    this.pre.scrollTop = this.pre.scrollHeight;
  }

  paint() {
    this.pre.replaceChildren(...this.lines.map(lineOf));
    if (!this.lines.length) this.pre.append(h("span", { class: "empty" }, "No log line yet."));
  }
}

function lineOf(line) {
  const time = line.at ? new Date(line.at).toLocaleTimeString() : "";
  return h(
    "span",
    { class: `line ${line.stream}`, testid: "log-line", "data-step": line.step },
    h("span", { class: "at" }, time),
    h("span", { class: "step" }, `${line.step}${line.attempt ? `#${line.attempt}` : ""}`),
    `${line.line}\n`,
  );
}

/** "2/3": the try of the step's current visit against its retry limit ("" before the first). */
function tries(step) {
  if (!step.tries) return "";
  return step.max_attempts > 1 ? `${step.tries}/${step.max_attempts}` : String(step.tries);
}
