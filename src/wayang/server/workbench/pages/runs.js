// Runs: the list, filtered by status and workflow, paged, and kept live by GET /stream.

import { get, query, stream } from "../api.js";
import { badge, coalesce, h, showError, table, when } from "../ui.js";

const STATUSES = ["queued", "pending", "running", "succeeded", "failed", "cancelled"];
const PAGE = 50;

export async function list(ctx) {
  const filters = {
    status: ctx.query.get("status") || "",
    workflow: ctx.query.get("workflow") || "",
  };
  const workflows = await get("/workflows");
  const body = h("tbody", { testid: "runs" });
  const more = h("button", { type: "button", testid: "more", hidden: true }, "More");
  const empty = h("p", { class: "empty", testid: "no-runs", hidden: true }, "No run matches.");
  const state = { next: null, shown: 0 };

  const rowOf = (run) =>
    h(
      "tr",
      { testid: "run-row", "data-run": run.run_id, "data-status": run.status },
      h("td", {}, h("a", { href: `#/runs/${encodeURIComponent(run.run_id)}` }, run.run_id)),
      h(
        "td",
        {},
        h("a", { href: `#/workflows/${encodeURIComponent(run.workflow_id)}` }, run.workflow_id),
      ),
      h("td", {}, badge(run.status, "run-status")),
      h("td", {}, when(run.created_at)),
      h("td", {}, when(run.updated_at)),
    );

  const load = async (cursor, limit = PAGE) => {
    const page = await get(`/runs${query({ ...filters, limit, cursor })}`);
    const rows = page.items.map(rowOf);
    if (cursor) body.append(...rows);
    else body.replaceChildren(...rows);
    state.next = page.next;
    state.shown = body.children.length;
    more.hidden = !page.next;
    empty.hidden = state.shown > 0;
  };
  // A change: reload as many rows as are shown, so paging stays where it was.
  const refresh = coalesce(
    () => load(null, Math.min(Math.max(state.shown, PAGE), 1000)).catch(showError),
    300,
  );
  more.addEventListener("click", () => load(state.next).catch(showError));

  ctx.root.append(
    h(
      "h1",
      {},
      "Runs",
      h(
        "span",
        { class: "live", testid: "live", hidden: true, title: "updated as runs change" },
        "live",
      ),
    ),
    filterForm(filters, workflows),
    table(["run", "workflow", "status", "created", "updated"], body, { class: "runs" }),
    empty,
    more,
  );
  await load(null);

  const live = ctx.root.querySelector("[data-testid=live]");
  const stop = stream(
    () => "/stream",
    {
      open: () => {
        live.hidden = false;
        refresh(); // whatever changed before the stream was there
      },
      run: (change) => {
        const row = body.querySelector(`tr[data-run="${CSS.escape(change.run_id)}"]`);
        if (row && (!filters.status || filters.status === change.status)) {
          row.dataset.status = change.status;
          row
            .querySelector("[data-testid=run-status]")
            .replaceWith(badge(change.status, "run-status"));
        }
        refresh(); // new runs, runs leaving a status filter, updated times
      },
    },
    showError,
  );
  ctx.onLeave(() => {
    stop();
    live.hidden = true;
  });
}

function filterForm(filters, workflows) {
  const go = (event) => {
    const form = event.target.form || event.target;
    const data = new FormData(form);
    location.hash = `#/runs${query({ status: data.get("status"), workflow: data.get("workflow") })}`;
  };
  return h(
    "form",
    { class: "filters", testid: "run-filters", onsubmit: (e) => (e.preventDefault(), go(e)) },
    h(
      "label",
      {},
      "Status ",
      h(
        "select",
        { name: "status", testid: "filter-status", onchange: go },
        h("option", { value: "" }, "any"),
        STATUSES.map((s) => h("option", { value: s, selected: s === filters.status }, s)),
      ),
    ),
    h(
      "label",
      {},
      "Workflow ",
      h(
        "select",
        { name: "workflow", testid: "filter-workflow", onchange: go },
        h("option", { value: "" }, "any"),
        workflows.map((w) =>
          h("option", { value: w.id, selected: w.id === filters.workflow }, w.id),
        ),
      ),
    ),
  );
}
