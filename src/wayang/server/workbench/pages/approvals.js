// The approvals inbox: steps waiting for people (approvals, negotiations, completions) and the
// answers to them, as the user named in the header. Kept live by GET /stream.

import { get, post, query, stream, user } from "../api.js";
import { attempt, badge, coalesce, h, json, notify, showError, when } from "../ui.js";

export async function page(ctx) {
  const mine = ctx.query.get("mine") === "true";
  const list = h("div", { class: "cards", testid: "approvals" });
  const cards = new Map(); // key of a wait → its card, kept while the wait is unchanged

  const load = async () => {
    const waits = await get(`/approvals${query({ mine: mine ? "true" : "" })}`);
    const shown = waits.map((wait) => {
      const key = JSON.stringify([wait.run_id, wait.step_id, wait.wait]);
      const card = cards.get(key) || waitCard(wait, reload);
      cards.set(key, card);
      return card;
    });
    for (const [key, card] of cards) if (!shown.includes(card)) cards.delete(key);
    list.replaceChildren(...shown);
    if (!shown.length)
      list.append(
        h(
          "p",
          { class: "empty", testid: "no-approvals" },
          mine ? `Nothing waits for ${user() || "you"}.` : "Nothing waits for anyone.",
        ),
      );
  };
  const reload = coalesce(() => load().catch(showError), 300);

  const onlyMine = h("input", {
    type: "checkbox",
    testid: "mine",
    checked: mine,
    onchange: (e) => (location.hash = `#/approvals${e.target.checked ? "?mine=true" : ""}`),
  });
  ctx.root.append(
    h("h1", {}, "Approvals"),
    h(
      "p",
      {},
      h("label", {}, onlyMine, " only those I may answer"),
      h(
        "span",
        { class: "hint" },
        " · answering as ",
        h("strong", { testid: "acting-user" }, user() || "the server's user"),
        " (the “You are” box)",
      ),
    ),
    list,
  );
  await load();
  const stop = stream(() => "/stream", { run: reload, open: reload }, showError);
  const renamed = () => {
    ctx.root.querySelector("[data-testid=acting-user]").textContent = user() || "the server's user";
    reload();
  };
  window.addEventListener("wayang:user", renamed);
  ctx.onLeave(() => {
    stop();
    window.removeEventListener("wayang:user", renamed);
  });
}

function waitCard(wait, reload) {
  const path = `/runs/${encodeURIComponent(wait.run_id)}/steps/${encodeURIComponent(wait.step_id)}`;
  const send = async (action, body) => {
    const answer = await attempt(() => post(`${path}/${action}`, body));
    if (answer) notify(`${wait.step_id}: ${answer.outcome}`);
    reload();
  };
  const forms = { approval: approvalForm, negotiation: negotiationForm, complete: completionForm };
  return h(
    "article",
    {
      class: "card wait",
      testid: "approval",
      "data-run": wait.run_id,
      "data-step": wait.step_id,
      "data-kind": wait.kind,
    },
    h(
      "header",
      {},
      badge(wait.kind, "wait-kind"),
      " ",
      h("strong", {}, wait.step_id),
      " of ",
      h("a", { href: `#/runs/${encodeURIComponent(wait.run_id)}` }, wait.run_id),
      ` (${wait.workflow_id}) · waiting since ${when(wait.since)}`,
    ),
    wait.prompt ? h("p", { class: "prompt", testid: "prompt" }, wait.prompt) : null,
    h(
      "p",
      { class: "assignees", testid: "assignees" },
      "For: ",
      wait.assignees.length ? wait.assignees.join(", ") : "anyone",
    ),
    context(wait),
    runContext(wait.run_id),
    forms[wait.kind](wait.wait, send),
  );
}

/** What the wait says beyond its prompt: quorum, votes, rounds, the offer on the table. */
function context(wait) {
  const w = wait.wait;
  const facts = [];
  const add = (name, value) => facts.push(h("dt", {}, name), h("dd", {}, value));
  if (w.quorum) add("quorum", `${(w.approvals || []).length} of ${w.quorum} approvals`);
  if (w.voters?.length) add("voted", w.voters.join(", "));
  if (w.max_rounds) add("round", `${w.round || 0} of ${w.max_rounds}`);
  if (w.offer)
    add(
      "offer",
      h(
        "span",
        { testid: "offer-on-table" },
        `${w.offer.actor} (${w.offer.party}): ${terms(w.offer.terms)}`,
      ),
    );
  if (w.required_fields?.length) add("required", w.required_fields.join(", "));
  if (w.due_at) add("due", when(new Date(w.due_at * 1000).toISOString()));
  if (w.escalated) add("escalated", "yes");
  return facts.length ? h("dl", { class: "facts", testid: "context" }, facts) : null;
}

const terms = (t) =>
  Object.entries(t)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");

function runContext(runId) {
  const body = h("div", {});
  const open = async (event) => {
    if (!event.target.open || body.hasChildNodes()) return;
    const run = await attempt(() => get(`/runs/${encodeURIComponent(runId)}`));
    if (!run) return;
    const done = run.order.filter((s) => run.steps[s].status === "succeeded");
    body.append(
      h("h4", {}, "Parameters"),
      json(run.params),
      h("p", {}, `Done: ${done.join(", ") || "nothing yet"} · started by ${run.started_by || "—"}`),
    );
  };
  return h("details", { ontoggle: open }, h("summary", {}, "Run context"), body);
}

function approvalForm(w, send) {
  const comment = h("textarea", { rows: 2, testid: "comment", placeholder: "comment" });
  const extra = (w.required_fields || []).filter((f) => f !== "comment");
  const fields = extra.map((name) => [name, h("input", { name, testid: `field-${name}` })]);
  const vote = (action) => (event) => {
    event.preventDefault();
    const values = Object.fromEntries(fields.map(([name, input]) => [name, input.value]));
    send(
      action,
      action === "approve"
        ? { comment: comment.value, fields: values }
        : { comment: comment.value },
    );
  };
  return h(
    "form",
    { class: "answer", onsubmit: vote("approve") },
    h(
      "label",
      { class: "block" },
      `Comment${(w.required_fields || []).includes("comment") ? " (required)" : ""}`,
      comment,
    ),
    fields.map(([name, input]) => h("label", { class: "block" }, name, input)),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "primary", testid: "approve" }, "Approve"),
      h(
        "button",
        { type: "button", class: "danger", testid: "reject", onclick: vote("reject") },
        "Reject",
      ),
    ),
  );
}

function negotiationForm(w, send) {
  const inputs = Object.entries(w.terms || {}).map(([name, term]) => [
    name,
    term,
    termInput(name, term, w.offer?.terms?.[name]),
  ]);
  const comment = h("input", { testid: "offer-comment", placeholder: "comment" });
  const offer = (event) => {
    event.preventDefault();
    try {
      const values = Object.fromEntries(
        inputs
          .map(([name, term, input]) => [name, termValue(name, term, input)])
          .filter(([, v]) => v !== undefined),
      );
      send("offer", { terms: values, comment: comment.value });
    } catch (error) {
      showError(error);
    }
  };
  const settle = (action) => () => send(action, { comment: comment.value });
  return h(
    "form",
    { class: "answer", testid: "offer-form", onsubmit: offer },
    h(
      "div",
      { class: "terms" },
      inputs.map(([name, term, input]) =>
        h(
          "label",
          { class: "field", testid: `term-${name}` },
          h("span", { class: "name" }, name, h("small", {}, ` ${term.type || ""}${rangeOf(term)}`)),
          input,
          term.description ? h("small", { class: "help" }, term.description) : null,
        ),
      ),
    ),
    h("label", { class: "block" }, "Comment ", comment),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "primary", testid: "offer" }, "Offer"),
      h(
        "button",
        { type: "button", testid: "accept", disabled: !w.offer, onclick: settle("accept") },
        "Accept offer",
      ),
      h(
        "button",
        { type: "button", class: "danger", testid: "decline", onclick: settle("decline") },
        "Decline",
      ),
    ),
  );
}

const rangeOf = (t) =>
  t.min !== undefined || t.max !== undefined ? ` ${t.min ?? "…"}–${t.max ?? "…"}` : "";

function termInput(name, term, current) {
  if (term.choices) {
    return h(
      "select",
      { name },
      term.choices.map((c) =>
        h("option", { value: JSON.stringify(c), selected: c === current }, String(c)),
      ),
    );
  }
  if (term.type === "number" || term.type === "integer") {
    return h("input", {
      name,
      type: "number",
      step: term.type === "integer" ? "1" : "any",
      min: term.min,
      max: term.max,
      value: current ?? "",
    });
  }
  if (term.type === "boolean")
    return h("input", { name, type: "checkbox", checked: current === true });
  return h("input", { name, value: current ?? "" });
}

function termValue(name, term, input) {
  if (term.choices) return JSON.parse(input.value);
  if (term.type === "boolean") return input.checked;
  if (input.value.trim() === "") return undefined;
  if (term.type === "number" || term.type === "integer") {
    const value = Number(input.value);
    if (!Number.isFinite(value) || (term.type === "integer" && !Number.isInteger(value))) {
      throw new Error(
        `term ${name}: ${input.value} is not ${term.type === "integer" ? "an integer" : "a number"}`,
      );
    }
    return value;
  }
  return input.value;
}

function completionForm(w, send) {
  const outputs = h("textarea", { rows: 3, testid: "outputs", placeholder: '{"key": "value"}' });
  const complete = (event) => {
    event.preventDefault();
    let value = {};
    try {
      value = outputs.value.trim() ? JSON.parse(outputs.value) : {};
    } catch (error) {
      showError(new Error(`outputs: not JSON (${error.message})`));
      return;
    }
    send("complete", { outputs: value });
  };
  return h(
    "form",
    { class: "answer", onsubmit: complete },
    w.instructions ? h("p", {}, w.instructions) : null,
    h("label", { class: "block" }, "Outputs (JSON object)", outputs),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "primary", testid: "complete" }, "Complete"),
    ),
  );
}
