// Steps: the event steps of the server's project (activate, deactivate), its flows drawn as
// graphs with topic edges, and its state. A server without --project says so.

import { get, post } from "../api.js";
import { drawGraph, legend } from "../graph.js";
import { attempt, badge, h, json, notify, table } from "../ui.js";

export async function page(ctx) {
  ctx.root.append(h("h1", {}, "Steps"));
  let steps;
  try {
    ({ steps } = await get("/steps"));
  } catch (error) {
    if (error.kind !== "no-steps-project") throw error;
    ctx.root.append(h("p", { class: "notice-box", testid: "no-project" }, error.doc.detail));
    return;
  }
  const list = h("div", {});
  const paint = (found) => list.replaceChildren(stepsTable(found, paint));
  paint(steps);
  const flows = h("div", { class: "flows", testid: "flows" });
  const state = h("div", { testid: "state" });
  ctx.root.append(
    h("section", {}, h("h2", {}, "Steps"), list),
    h("section", {}, h("h2", {}, "Flows"), flows),
    h("section", {}, h("h2", {}, "State"), state),
  );
  await Promise.all([drawFlows(flows), stateViewer(state)]);
}

function stepsTable(steps, paint) {
  const toggle = (step) => async () => {
    const action = step.active ? "deactivate" : "activate";
    const changed = await attempt(() => post(`/steps/${encodeURIComponent(step.name)}/${action}`));
    if (!changed) return;
    notify(`${changed.name} is ${changed.active ? "active" : "inactive"}`);
    paint(steps.map((s) => (s.name === changed.name ? changed : s)));
  };
  const rows = steps.map((s) =>
    h(
      "tr",
      { testid: "step-info", "data-step": s.name, "data-active": String(s.active) },
      h("td", {}, s.name),
      h("td", {}, s.type),
      h("td", {}, h("code", {}, s.trigger)),
      h("td", {}, s.emits.join(", ") || "—"),
      h("td", {}, s.flows.join(", ") || "—"),
      h("td", {}, badge(s.active ? "active" : "inactive", "step-active")),
      h("td", {}, h("small", {}, s.file)),
      h(
        "td",
        {},
        h(
          "button",
          { type: "button", testid: s.active ? "deactivate" : "activate", onclick: toggle(s) },
          s.active ? "Deactivate" : "Activate",
        ),
      ),
    ),
  );
  return table(["step", "type", "trigger", "emits", "flows", "", "file", ""], rows, {
    class: "step-list",
  });
}

async function drawFlows(box) {
  const flows = await get("/flows");
  if (!flows.length) box.append(h("p", { class: "empty" }, "No step names a flow."));
  for (const flow of flows) {
    const canvas = h("div", { class: "graph", testid: "flow-graph", "data-flow": flow.name });
    box.append(h("article", { class: "flow" }, h("h3", {}, flow.name), canvas, legend(flow.graph)));
    drawGraph(canvas, flow.graph);
  }
}

async function stateViewer(box) {
  const groups = await get("/state");
  const shown = h("div", { testid: "state-values" });
  const open = (group) => async () => {
    const found = await attempt(() => get(`/state/${encodeURIComponent(group)}`));
    if (found)
      shown.replaceChildren(
        h("h3", {}, `${found.group} (${found.values.length})`),
        json(found.values),
      );
  };
  box.replaceChildren(
    groups.length
      ? h(
          "ul",
          { class: "groups", testid: "state-groups" },
          groups.map((g) =>
            h("li", {}, h("button", { type: "button", class: "link", onclick: open(g) }, g)),
          ),
        )
      : h("p", { class: "empty" }, "No state yet."),
    shown,
  );
}
