// The Workbench: a hash router over the pages, the "you are" box, the error banner.

import { setUser, user } from "./api.js";
import { forgetGraphs } from "./graph.js";
import * as approvals from "./pages/approvals.js";
import * as runs from "./pages/runs.js";
import * as run from "./pages/run.js";
import * as steps from "./pages/steps.js";
import * as trigger from "./pages/trigger.js";
import * as workflows from "./pages/workflows.js";
import { clearError, h, showError } from "./ui.js";

// What tests and the curious read: the graphs drawn on the current page.
window.__wayang = { cy: null, graphs: [], page: "" };

const ROUTES = [
  [/^\/workflows\/?$/, "workflows", workflows.list],
  [/^\/workflows\/(.+)$/, "workflows", workflows.detail],
  [/^\/runs\/?$/, "runs", runs.list],
  [/^\/runs\/(.+)$/, "runs", run.page],
  [/^\/approvals\/?$/, "approvals", approvals.page],
  [/^\/trigger\/?$/, "trigger", trigger.page],
  [/^\/steps\/?$/, "steps", steps.page],
];

let current = null; // the context of the page shown

/** What a page gets: its root element, the route's matches and query, and `onLeave`. */
function context(root, match, search) {
  const leaving = [];
  return {
    root,
    match,
    query: new URLSearchParams(search),
    left: false,
    onLeave(fn) {
      if (this.left) fn();
      else leaving.push(fn);
    },
    leave() {
      this.left = true;
      for (const fn of leaving.splice(0)) fn();
    },
  };
}

async function route() {
  const hash = location.hash.slice(1) || "/workflows";
  const [path, search = ""] = hash.split("?");
  const found = ROUTES.map(([re, name, render]) => [path.match(re), name, render]).find(([m]) => m);
  current?.leave();
  forgetGraphs();
  clearError();
  const root = h("section", { class: "page" });
  document.getElementById("page").replaceChildren(root);
  const [match, name, render] = found || [[], "", notFound];
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.page === name);
  }
  window.__wayang.page = name;
  current = context(root, match.slice(1).map(decodeURIComponent), search);
  root.dataset.testid = `page-${name || "not-found"}`;
  try {
    await render(current);
  } catch (error) {
    showError(error);
    if (!root.hasChildNodes())
      root.append(
        h("p", { class: "empty" }, "This page could not be shown; see the message above."),
      );
  }
  root.dataset.ready = "true";
}

function notFound(ctx) {
  const hash = location.hash.slice(1);
  ctx.root.append(
    h("h1", {}, "Not found"),
    h("p", {}, `No page at ${hash}. `, h("a", { href: "#/workflows" }, "Workflows")),
  );
}

function setUpUserBox() {
  const box = document.getElementById("user");
  box.value = user();
  box.addEventListener("input", () => setUser(box.value.trim()));
  box.addEventListener("change", () => window.dispatchEvent(new CustomEvent("wayang:user")));
}

document.getElementById("banner").querySelector(".close").addEventListener("click", clearError);
window.addEventListener("error", (event) => showError(event.error || event.message));
window.addEventListener("unhandledrejection", (event) => showError(event.reason));
window.addEventListener("hashchange", route);
setUpUserBox();
route();
