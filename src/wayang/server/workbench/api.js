// The HTTP API of `wayang server`: JSON requests, problem documents, the acting user, the API
// token, and Server-Sent Events read through fetch (EventSource cannot send headers).

const BASE = "/api/v1";
export const STEPS = "/steps"; // where the server mounts the API steps of its project
const USER_KEY = "wayang.user";
const TOKEN_KEY = "wayang.token";

/** A failed request: the server's RFC 9457 problem document (or one made up for it). */
export class Problem extends Error {
  constructor(doc) {
    super(doc.detail || doc.title || "the request failed");
    this.doc = doc;
    this.status = doc.status || 0;
    this.kind = String(doc.type || "")
      .split("/")
      .pop();
  }
}

export const user = () => localStorage.getItem(USER_KEY) || "";

export function setUser(name) {
  if (name) localStorage.setItem(USER_KEY, name);
  else localStorage.removeItem(USER_KEY);
}

function headers(extra = {}) {
  const found = { Accept: "application/json", ...extra };
  const name = user();
  const token = localStorage.getItem(TOKEN_KEY);
  if (name) found["X-Wayang-User"] = name;
  if (token) found.Authorization = `Bearer ${token}`;
  return found;
}

let asking = null; // one token prompt however many requests answered 401

/** Ask for the API token in the page's dialog; resolves true once one is stored. */
function askToken(reason) {
  if (asking) return asking;
  const dialog = document.getElementById("token-dialog");
  dialog.querySelector("[data-testid=token-reason]").textContent = reason;
  const input = dialog.querySelector("input");
  input.value = "";
  asking = new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        asking = null;
        const ok = dialog.returnValue === "ok" && input.value.trim() !== "";
        if (ok) localStorage.setItem(TOKEN_KEY, input.value.trim());
        resolve(ok);
      },
      { once: true },
    );
  });
  dialog.showModal();
  return asking;
}

async function problemOf(response) {
  const text = await response.text();
  try {
    const doc = JSON.parse(text);
    if (doc && typeof doc === "object" && "detail" in doc) return new Problem(doc);
  } catch {
    // not JSON: a proxy's page, say
  }
  const detail = text.trim().slice(0, 300) || `HTTP ${response.status} ${response.statusText}`;
  return new Problem({ title: `HTTP ${response.status}`, status: response.status, detail });
}

async function send(method, path, body) {
  const init = { method, headers: headers() };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(BASE + path, init);
  } catch (error) {
    throw new Problem({
      title: "No answer",
      detail: `the server did not answer (${error.message})`,
    });
  }
  return response;
}

/** One JSON request; throws a {@link Problem} unless the answer is 2xx. */
export async function request(method, path, body) {
  let response = await send(method, path, body);
  if (response.status === 401) {
    const problem = await problemOf(response);
    if (!(await askToken(problem.message))) throw problem;
    response = await send(method, path, body);
  }
  if (!response.ok) throw await problemOf(response);
  return response.status === 204 ? null : response.json();
}

/**
 * Call an API step of the served project (mounted at /steps, outside /api/v1) with the same
 * user and token headers; `body`, when given, is sent as JSON. Whatever the status, resolves to
 * the answer as { status, statusText, contentType, text, ms }; throws a {@link Problem} only
 * when the server does not answer.
 */
export async function callStep(method, path, body) {
  const init = { method, headers: headers({ Accept: "application/json, */*;q=0.5" }) };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const started = performance.now();
  let response;
  try {
    response = await fetch(STEPS + path, init);
  } catch (error) {
    throw new Problem({
      title: "No answer",
      detail: `the server did not answer (${error.message})`,
    });
  }
  const text = await response.text();
  return {
    status: response.status,
    statusText: response.statusText,
    contentType: response.headers.get("Content-Type") || "",
    text,
    ms: performance.now() - started,
  };
}

export const get = (path) => request("GET", path);
export const post = (path, body = {}) => request("POST", path, body);

/** A query string from the non-empty values of `params` ("" when there are none). */
export function query(params) {
  const pairs = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "");
  return pairs.length ? `?${new URLSearchParams(pairs)}` : "";
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Follow the Server-Sent Events of `pathOf()` (called again on every reconnect, so it can carry
 * cursors). `handlers[event](data)` gets each event's parsed data; a handler returning "stop"
 * ends the stream; `handlers.open()` hears each (re)connection; `onError(problem)` hears
 * refusals. Returns the function that stops it.
 */
export function stream(pathOf, handlers, onError = () => {}) {
  const control = new AbortController();
  let stopped = false;
  const stop = () => {
    stopped = true;
    control.abort();
  };
  const follow = async () => {
    for (let delay = 500; !stopped; delay = Math.min(delay * 2, 8000)) {
      try {
        const done = await readEvents(pathOf(), handlers, control.signal);
        if (done) return stop();
        delay = 250; // a clean end of a long stream: reconnect soon
      } catch (error) {
        if (stopped) return undefined;
        if (error instanceof Problem) {
          if (error.status === 401 && (await askToken(error.message))) continue;
          onError(error);
          if (error.status >= 400 && error.status < 500) return stop();
        }
      }
      await sleep(delay);
    }
    return undefined;
  };
  follow();
  return stop;
}

async function readEvents(path, handlers, signal) {
  const response = await fetch(BASE + path, {
    headers: headers({ Accept: "text/event-stream" }),
    signal,
  });
  if (!response.ok) throw await problemOf(response);
  handlers.open?.();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return false;
    buffer += value.replaceAll("\r\n", "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (dispatch(block, handlers) === "stop") {
        reader.cancel().catch(() => {});
        return true;
      }
    }
  }
}

function dispatch(block, handlers) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  const handler = handlers[event];
  if (!handler || data.length === 0) return undefined;
  return handler(JSON.parse(data.join("\n")));
}
