// Workflows: the registered ones, registering a workflow.toml, and a workflow's page with its
// graph and the form that starts a run.

import { get, post, query } from "../api.js";
import { drawGraph, legend } from "../graph.js";
import { attempt, h, notify, showError, table, when } from "../ui.js";

export async function list(ctx) {
  const found = await get("/workflows");
  const rows = found.map((w) =>
    h(
      "tr",
      { testid: "workflow-row", "data-workflow": w.id },
      h("td", {}, h("a", { href: `#/workflows/${encodeURIComponent(w.id)}` }, w.id)),
      h("td", {}, w.name),
      h("td", {}, w.description),
      h("td", {}, w.latest),
      h("td", { class: "num" }, String(w.versions)),
    ),
  );
  ctx.root.append(
    h("h1", {}, "Workflows"),
    found.length
      ? table(["id", "name", "description", "latest", "versions"], rows, { testid: "workflows" })
      : h(
          "p",
          { class: "empty", testid: "no-workflows" },
          "No workflow is registered yet: register one below.",
        ),
    registerForm(),
  );
}

function registerForm() {
  const filename = h("input", { name: "filename", value: "workflow.toml", size: 40 });
  const source = h("textarea", {
    name: "source",
    rows: 14,
    spellcheck: "false",
    testid: "register-source",
    placeholder: 'id = "hello"\n\n[steps.greet]\nrun = "echo hello"',
  });
  const report = h("div", { testid: "register-report" });
  const body = () => ({ source: source.value, filename: filename.value || "workflow.toml" });
  const validate = async () => {
    const found = await attempt(() => post("/workflows/validate", body()));
    if (!found) return;
    report.replaceChildren(
      found.valid
        ? h("p", { class: "ok" }, `Valid: workflow ${found.workflow_id}.`)
        : h(
            "ul",
            { class: "diagnostics" },
            found.diagnostics.map((d) =>
              h("li", {}, `${d.file}:${d.line}:${d.column} ${d.severity} ${d.code}: ${d.message}`),
            ),
          ),
    );
  };
  const register = async (event) => {
    event.preventDefault();
    const detail = await attempt(() => post("/workflows", body()));
    if (detail) location.hash = `#/workflows/${encodeURIComponent(detail.id)}`;
  };
  return h(
    "details",
    { class: "card" },
    h("summary", {}, "Register a workflow"),
    h(
      "form",
      { onsubmit: register },
      h("label", {}, "File name ", filename),
      h("label", { class: "block" }, "workflow.toml", source),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", onclick: validate }, "Validate"),
        h("button", { type: "submit" }, "Register"),
      ),
      report,
    ),
  );
}

// ------------------------------------------------------------------------------ one workflow

export async function detail(ctx) {
  const [id] = ctx.match;
  const version = ctx.query.get("version") || "";
  const workflow = await get(`/workflows/${encodeURIComponent(id)}${query({ version })}`);
  const canvas = h("div", { class: "graph", testid: "graph" });
  ctx.root.append(
    h("h1", {}, workflow.name),
    h(
      "p",
      { class: "meta" },
      h("code", {}, workflow.id),
      ` · version ${version || workflow.latest}`,
      versionPicker(workflow, version),
    ),
    workflow.description ? h("p", {}, workflow.description) : null,
    h(
      "div",
      { class: "columns" },
      h("section", { class: "wide" }, h("h2", {}, "Graph"), canvas, legend(workflow.graph)),
      h("section", {}, h("h2", {}, "Start a run"), startForm(workflow, version)),
    ),
    h(
      "details",
      { class: "card" },
      h("summary", {}, "Source"),
      h("pre", { class: "source", testid: "source" }, workflow.source),
    ),
  );
  drawGraph(canvas, workflow.graph);
}

function versionPicker(workflow, chosen) {
  if (workflow.history.length < 2) return null;
  const select = h(
    "select",
    {
      onchange: (e) => {
        const version = query({ version: e.target.value });
        location.hash = `#/workflows/${encodeURIComponent(workflow.id)}${version}`;
      },
    },
    h("option", { value: "" }, `latest (${workflow.latest})`),
    workflow.history.map((v) =>
      h(
        "option",
        { value: v.version, selected: v.version === chosen },
        `${v.version} · ${when(v.registered_at)}`,
      ),
    ),
  );
  return h("label", { class: "inline" }, " · ", select);
}

function startForm(workflow, version) {
  const fields = Object.entries(workflow.parameters).map(([name, p]) => parameterField(name, p));
  const start = async (event) => {
    event.preventDefault();
    let params;
    try {
      params = Object.fromEntries(
        fields.map((f) => [f.name, f.read()]).filter(([, v]) => v !== undefined),
      );
    } catch (error) {
      showError(error);
      return;
    }
    const body = { workflow: workflow.id, params, ...(version ? { version } : {}) };
    const accepted = await attempt(() => post("/runs", body));
    if (!accepted) return;
    const position = accepted.position ? ` (position ${accepted.position})` : "";
    notify(`Run ${accepted.run_id} ${accepted.status}${position}`);
    location.hash = `#/runs/${encodeURIComponent(accepted.run_id)}`;
  };
  return h(
    "form",
    { class: "params", testid: "start-form", novalidate: true, onsubmit: start },
    fields.length
      ? fields.map((f) => f.el)
      : h("p", { class: "empty" }, "This workflow takes no parameters."),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "primary", testid: "start" }, "Start"),
    ),
  );
}

/** One parameter's input and how to read it (undefined: leave it to the default). */
function parameterField(name, p) {
  const input = inputFor(name, p);
  const label = h(
    "label",
    { class: "field", testid: `param-${name}` },
    h(
      "span",
      { class: "name" },
      name,
      p.required ? h("abbr", { title: "required" }, " *") : null,
      h("small", {}, ` ${p.type}`),
    ),
    input,
    p.description ? h("small", { class: "help" }, p.description) : null,
  );
  return { name, el: label, read: () => readValue(name, p, input) };
}

function inputFor(name, p) {
  const shown = p.default === null || p.default === undefined ? "" : p.default;
  if (p.choices) {
    return h(
      "select",
      { name },
      p.required && shown === "" ? h("option", { value: "" }, "— choose —") : null,
      !p.required && shown === "" ? h("option", { value: "" }, "—") : null,
      p.choices.map((c) =>
        h("option", { value: JSON.stringify(c), selected: c === p.default }, String(c)),
      ),
    );
  }
  switch (p.type) {
    case "boolean":
      return h("input", { name, type: "checkbox", checked: p.default === true });
    case "integer":
      return h("input", { name, type: "number", step: "1", value: shown });
    case "number":
      return h("input", { name, type: "number", step: "any", value: shown });
    case "array":
    case "object":
      return h("textarea", {
        name,
        rows: 3,
        spellcheck: "false",
        placeholder: p.type === "array" ? "[ ]" : "{ }",
        value: shown === "" ? "" : JSON.stringify(shown, null, 1),
      });
    default:
      return h("input", {
        name,
        type: "text",
        value: String(shown),
        placeholder: p.type === "path" ? "a path" : "",
      });
  }
}

function readValue(name, p, input) {
  if (p.type === "boolean" && !p.choices) return input.checked;
  const text = input.value.trim();
  if (text === "") return undefined;
  if (p.choices) return JSON.parse(text);
  if (p.type === "integer") {
    const value = Number(text);
    if (!Number.isInteger(value)) throw new Error(`parameter ${name}: ${text} is not an integer`);
    return value;
  }
  if (p.type === "number") {
    const value = Number(text);
    if (!Number.isFinite(value)) throw new Error(`parameter ${name}: ${text} is not a number`);
    return value;
  }
  if (p.type === "array" || p.type === "object") {
    let value;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new Error(`parameter ${name}: not JSON (${error.message})`);
    }
    const isArray = Array.isArray(value);
    if ((p.type === "array") !== isArray || typeof value !== "object" || value === null) {
      throw new Error(`parameter ${name}: expected a JSON ${p.type}`);
    }
    return value;
  }
  return input.value;
}
