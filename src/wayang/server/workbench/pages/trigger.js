// Trigger: publish a message on a topic (event steps get a delivery, waiting runs may take it),
// and call an API step of the served project (mounted at /steps) with a JSON body.

import { STEPS, callStep, get, post } from "../api.js";
import { attempt, h, json, notify, showError } from "../ui.js";

export async function page(ctx) {
  const topic = h("input", {
    name: "topic",
    required: true,
    pattern: "[A-Za-z0-9_.:/\\-]+",
    testid: "topic",
    placeholder: "order.created",
    size: 30,
  });
  const key = h("input", {
    name: "key",
    testid: "key",
    placeholder: "optional ordering key",
    size: 24,
  });
  const data = h("textarea", {
    name: "data",
    rows: 8,
    spellcheck: "false",
    testid: "data",
    value: "{\n  \n}",
  });
  const check = h("p", { class: "check", testid: "json-check", "aria-live": "polite" });
  const emit = h("button", { type: "submit", class: "primary", testid: "emit" }, "Emit");
  const result = h("div", { testid: "emitted" });

  const parsed = () => {
    const text = data.value.trim();
    if (text === "") return { ok: true, value: null };
    try {
      return { ok: true, value: JSON.parse(text) };
    } catch (error) {
      return { ok: false, error: error.message };
    }
  };
  const validate = () => {
    const found = parsed();
    check.textContent = found.ok ? "valid JSON" : `not JSON: ${found.error}`;
    check.className = `check ${found.ok ? "ok" : "error"}`;
    emit.disabled = !found.ok;
  };
  const submit = async (event) => {
    event.preventDefault();
    const found = parsed();
    if (!found.ok) return;
    const body = { topic: topic.value.trim(), data: found.value, key: key.value };
    const emitted = await attempt(() => post("/topics/emit", body));
    if (!emitted) return;
    notify(`emitted on ${emitted.topic}`);
    result.replaceChildren(
      h(
        "p",
        {},
        `Message ${emitted.seq} on `,
        h("code", {}, emitted.topic),
        " · trace ",
        h("code", {}, emitted.trace_id),
      ),
    );
  };
  data.addEventListener("input", validate);
  validate();
  const apiCard = h(
    "section",
    { class: "card", testid: "api-form-card" },
    h("h2", {}, "Call an API step"),
  );

  ctx.root.append(
    h("h1", {}, "Trigger"),
    h(
      "form",
      { class: "card", testid: "emit-form", novalidate: true, onsubmit: submit },
      h("h2", {}, "Emit to a topic"),
      h("label", { class: "block" }, "Topic", topic),
      h("label", { class: "block" }, "Data (JSON; empty for none)", data),
      check,
      h("label", { class: "block" }, "Key", key),
      h("div", { class: "actions" }, emit),
      result,
    ),
    apiCard,
  );
  await apiSteps(apiCard);
}

// ------------------------------------------------------------------------------ API steps

/** Fill `card` with the form that calls an API step, or say why there is none. */
async function apiSteps(card) {
  let steps;
  try {
    ({ steps } = await get("/steps"));
  } catch (error) {
    if (error.kind === "no-steps-project") {
      card.append(h("p", { class: "notice-box", testid: "no-project" }, error.doc.detail));
    } else {
      showError(error);
      card.append(h("p", { class: "empty" }, "The API steps could not be listed."));
    }
    return;
  }
  const routes = steps
    .filter((s) => s.type === "api" && s.active)
    .map((s) => ({ name: s.name, ...splitTrigger(s.trigger) }))
    .sort((a, b) => a.path.localeCompare(b.path) || a.method.localeCompare(b.method));
  if (!routes.length) {
    const inactive = steps.filter((s) => s.type === "api" && !s.active).length;
    card.append(
      h(
        "p",
        { class: "empty", testid: "no-api-steps" },
        "The project has no active API step",
        inactive ? ` (${inactive} deactivated; activate them on the Steps page).` : ".",
      ),
    );
    return;
  }
  card.append(apiForm(routes));
}

/** "POST /orders/:id" as { method, path }. */
function splitTrigger(trigger) {
  const at = trigger.indexOf(" ");
  return at < 0
    ? { method: "GET", path: trigger }
    : { method: trigger.slice(0, at).toUpperCase(), path: trigger.slice(at + 1).trim() };
}

/** The placeholders of a path: `:id` (the steps' own) or `{id}`. */
function placeholders(path) {
  return path
    .split("/")
    .map((part) => placeholder(part))
    .filter(Boolean);
}

function placeholder(part) {
  if (part.startsWith(":") && part.length > 1) return part.slice(1);
  const braced = part.match(/^\{([^{}]+)\}$/);
  return braced ? braced[1] : "";
}

const NO_BODY = new Set(["GET", "HEAD"]);

function apiForm(routes) {
  const choice = h(
    "select",
    { name: "step", testid: "api-step" },
    routes.map((r) => h("option", { value: r.name }, `${r.method} ${r.path} · ${r.name}`)),
  );
  const params = h("div", { testid: "api-path-params" });
  const queryText = h("input", {
    name: "query",
    testid: "api-query",
    placeholder: "optional: a=1&b=two",
    size: 40,
  });
  const data = h("textarea", {
    name: "body",
    rows: 8,
    spellcheck: "false",
    testid: "api-body",
    value: "{\n  \n}",
  });
  const check = h("p", { class: "check", testid: "api-json-check", "aria-live": "polite" });
  const bodyPart = h(
    "div",
    { testid: "api-body-part" },
    h("label", { class: "block" }, "Body (JSON; empty for none)", data),
    check,
  );
  const target = h("p", { class: "check", testid: "api-url", "aria-live": "polite" });
  const send = h("button", { type: "submit", class: "primary", testid: "api-send" }, "Send");
  const answer = h("div", { testid: "api-response", "aria-live": "polite" });

  let inputs = []; // [name, input] of the chosen step's placeholders
  const chosen = () => routes.find((r) => r.name === choice.value) || routes[0];
  const hasBody = () => !NO_BODY.has(chosen().method);

  const parsed = () => {
    const text = data.value.trim();
    if (!hasBody() || text === "") return { ok: true, value: undefined };
    try {
      return { ok: true, value: JSON.parse(text) };
    } catch (error) {
      return { ok: false, error: error.message };
    }
  };
  /** The path to call under /steps, or the reason there is none yet. */
  const address = () => {
    const route = chosen();
    const missing = inputs.filter(([, input]) => input.value.trim() === "").map(([n]) => `:${n}`);
    if (missing.length) {
      const what = missing.length > 1 ? "parameters" : "parameter";
      return { ok: false, error: `fill in the path ${what} ${missing.join(", ")}` };
    }
    const values = new Map(inputs.map(([n, input]) => [n, input.value.trim()]));
    const path = route.path
      .split("/")
      .map((part) => {
        const name = placeholder(part);
        return name ? encodeURIComponent(values.get(name)) : part;
      })
      .join("/");
    const q = queryText.value.trim().replace(/^\?/, "");
    return { ok: true, path: q ? `${path}?${q}` : path };
  };
  const validate = () => {
    const found = parsed();
    bodyPart.hidden = !hasBody();
    check.textContent = found.ok ? (hasBody() ? "valid JSON" : "") : `not JSON: ${found.error}`;
    check.className = `check ${found.ok ? "ok" : "error"}`;
    const where = address();
    target.replaceChildren(
      where.ok ? h("code", {}, `${chosen().method} ${STEPS}${where.path}`) : where.error,
    );
    target.className = `check ${where.ok ? "" : "error"}`;
    send.disabled = !found.ok || !where.ok;
  };
  const pick = () => {
    inputs = placeholders(chosen().path).map((n) => [
      n,
      h("input", { name: `path-${n}`, testid: `path-param-${n}`, size: 24, oninput: validate }),
    ]);
    params.replaceChildren(
      ...inputs.map(([n, input]) =>
        h(
          "label",
          { class: "field", testid: `path-${n}` },
          h("span", { class: "name" }, `:${n}`, h("small", {}, " path parameter")),
          input,
        ),
      ),
    );
    answer.replaceChildren();
    validate();
  };
  const submit = async (event) => {
    event.preventDefault();
    validate();
    const found = parsed();
    const where = address();
    if (!found.ok || !where.ok) return;
    const route = chosen();
    send.disabled = true;
    try {
      const got = await attempt(() => callStep(route.method, where.path, found.value));
      if (got) answer.replaceChildren(...response(route, where.path, got).filter(Boolean));
    } finally {
      send.disabled = false;
      validate();
    }
  };
  choice.addEventListener("change", pick);
  queryText.addEventListener("input", validate);
  data.addEventListener("input", validate);
  pick();

  return h(
    "form",
    { testid: "api-form", novalidate: true, onsubmit: submit },
    h("label", { class: "block" }, "Step", choice),
    params,
    h("label", { class: "block" }, "Query string", queryText),
    bodyPart,
    target,
    h("div", { class: "actions" }, send),
    answer,
  );
}

/** The answer of a step: its status, then the problem it describes and its body. */
function response(route, path, got) {
  const tone = got.status < 300 ? "s-succeeded" : got.status < 400 ? "s-waiting" : "s-failed";
  const status = `${got.status}${got.statusText ? ` ${got.statusText}` : ""}`;
  let doc;
  let body;
  if (got.text === "") {
    body = h("p", { class: "empty", testid: "api-response-body" }, "(no body)");
  } else {
    try {
      doc = JSON.parse(got.text);
      body = json(doc);
    } catch {
      body = h("pre", { class: "json" }, got.text);
    }
    body.dataset.testid = "api-response-body";
  }
  const isProblem =
    doc !== null &&
    typeof doc === "object" &&
    !Array.isArray(doc) &&
    (got.contentType.includes("problem+json") ||
      (typeof doc.title === "string" && typeof doc.status === "number"));
  return [
    h(
      "p",
      { class: "meta" },
      h("span", { class: `badge ${tone}`, testid: "api-status" }, status),
      " ",
      h("code", {}, `${route.method} ${STEPS}${path}`),
      ` · ${got.contentType || "no content type"} · ${Math.round(got.ms)} ms`,
    ),
    isProblem ? problemBox(doc) : null,
    body,
  ];
}

/** An RFC 9457 problem document: title, detail, field errors and its type. */
function problemBox(doc) {
  const errors = Array.isArray(doc.errors) ? doc.errors : [];
  return h(
    "div",
    { class: "problem", testid: "api-problem" },
    h("strong", { testid: "api-problem-title" }, doc.title || "Problem"),
    doc.detail ? h("p", { testid: "api-problem-detail" }, doc.detail) : null,
    errors.length
      ? h(
          "ul",
          { class: "diagnostics" },
          errors.map((e) =>
            h("li", {}, e && e.field ? `${e.field}: ${e.message}` : JSON.stringify(e)),
          ),
        )
      : null,
    doc.type ? h("small", { class: "hint" }, "type ", h("code", {}, doc.type)) : null,
  );
}
