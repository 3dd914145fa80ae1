// Small DOM helpers shared by the pages: element building, the error banner, notices, formats.

/**
 * h("a", {href: "#/runs", class: "x"}, "text", child) — an element. Attributes starting with
 * "on" are listeners; `testid` sets data-testid; false/null/undefined attributes are left out.
 * Children are nodes or text (never parsed as HTML).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "testid") el.dataset.testid = value;
    else if (name === "value") el.value = value;
    else if (name === "checked") el.checked = Boolean(value);
    else el.setAttribute(name, value === true ? "" : value);
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

export function badge(status, testid = "status") {
  return h("span", { class: `badge s-${status || "none"}`, testid }, status || "—");
}

/** A table with a header row; `body` is its rows, or a tbody the caller keeps filling. */
export function table(head, body, attrs = {}) {
  const columns = head.map((name) => h("th", { scope: "col" }, name));
  const rows = body instanceof HTMLTableSectionElement ? body : h("tbody", {}, body);
  return h("table", attrs, h("thead", {}, h("tr", {}, columns)), rows);
}

export function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

// ------------------------------------------------------------------------------ messages

const banner = () => document.getElementById("banner");

/** Show an error in the banner: a Problem's title, detail and field errors, or any Error. */
export function showError(error) {
  const doc =
    error && error.doc ? error.doc : { title: "Error", detail: String(error?.message || error) };
  const el = banner();
  el.querySelector("[data-testid=banner-title]").textContent = doc.title || "Error";
  el.querySelector("[data-testid=banner-detail]").textContent = doc.detail || "";
  const errors = (doc.errors || []).filter((e) => e.message && e.message !== doc.detail);
  el.querySelector("[data-testid=banner-errors]").replaceChildren(
    ...errors.map((e) => h("li", {}, `${e.field}: ${e.message}`)),
  );
  el.hidden = false;
}

export function clearError() {
  banner().hidden = true;
}

let noticeTimer = 0;

/** A short success message that fades by itself. */
export function notify(text) {
  const el = document.getElementById("notice");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    el.hidden = true;
  }, 6000);
}

/** Run `action` (async); a failure goes to the banner. Returns the result or undefined. */
export async function attempt(action) {
  try {
    return await action();
  } catch (error) {
    showError(error);
    return undefined;
  }
}

// ------------------------------------------------------------------------------ formats

export function when(iso) {
  if (!iso) return "—";
  const at = new Date(iso);
  return at.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function seconds(s) {
  if (s === null || s === undefined) return "—";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${(s / 3600).toFixed(1)} h`;
}

/** `fn` coalesced: calls within `ms` of the first one run it once, `ms` later. */
export function coalesce(fn, ms) {
  let timer = 0;
  return () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = 0;
      fn();
    }, ms);
  };
}
