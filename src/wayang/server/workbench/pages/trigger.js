// Trigger: publish a message on a topic (event steps get a delivery, waiting runs may take it).

import { post } from "../api.js";
import { attempt, h, notify } from "../ui.js";

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
    h(
      "section",
      { class: "card", testid: "api-steps-note" },
      h("h2", {}, "Call an API step"),
      h(
        "p",
        {},
        "wayang server does not route requests to the API steps of its project yet ",
        "(the HTTP API has no route for them), so they cannot be called from here. ",
        "Run the project with ",
        h("code", {}, "wayang dev --project DIR"),
        " to call them, or emit the topic they would emit above.",
      ),
    ),
  );
}
