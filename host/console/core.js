// What every page of the console shares: the session, the API client, and
// the one way values reach the page (`el`, which makes text nodes: nothing
// from the server is ever parsed as markup).

export const state = { session: null, runs: new Map(), contacts: new Map(), onSignedOut: null };

export const $ = (id) => document.getElementById(id);

// An element with attributes and children; strings become text nodes.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else if (name === "checked" || name === "value") node[name] = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...nodes(children));
  return node;
}

// Children as nodes: arrays flattened, absent ones (null, undefined,
// false) left out, everything else as text.
function nodes(children) {
  return children.flat(Infinity)
    .filter((child) => child !== undefined && child !== null && child !== false)
    .map((child) => (child instanceof Node ? child : document.createTextNode(String(child))));
}

// Replaces what `target` shows with `children`, as `el` takes them.
export function put(target, ...children) {
  target.replaceChildren(...nodes(children));
}

export function toast(message) {
  const box = $("toast");
  box.textContent = message;
  box.classList.add("shown");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => box.classList.remove("shown"), 3000);
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.message || body.error)) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }

  // The message and each field the server named, one per line.
  get details() {
    const fields = (this.body && this.body.errors) || [];
    return [this.message, ...fields.map((f) => `${f.path}: ${f.message}`)].join("\n");
  }
}

// A request to the API with the session cookie, and the CSRF token on every
// change. `body` is JSON unless it is a Blob or ArrayBuffer (sent as is).
export async function api(method, path, body) {
  const headers = { accept: "application/json" };
  const raw = body instanceof Blob || body instanceof ArrayBuffer;
  if (body !== undefined) headers["content-type"] = raw ? "application/octet-stream" : "application/json";
  if (method !== "GET" && state.session) headers["x-csrf-token"] = state.session.csrf_token;
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : raw ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (response.status === 401 && path !== "/console/session") {
    state.session = null;
    if (state.onSignedOut) state.onSignedOut("Your session has ended; sign in again.");
    throw new ApiError(401, json);
  }
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

export const can = (scope) => Boolean(state.session && state.session.scopes.includes(scope));
export const json = (value) => JSON.stringify(value, null, 2);
export const when = (text) => (text ? new Date(text).toLocaleString() : "");
export const query = (params) => {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, value);
  }
  return search.toString();
};
export const enc = encodeURIComponent;

// A page's frame while it loads, and its error if it fails.
export function loading(title) {
  put($("view"), el("h1", {}, title), el("p", { class: "meta" }, "Loading…"));
}
export function failed(title, err) {
  put($("view"), el("h1", {}, title), el("pre", { class: "error" }, err.details || err.message));
}

// Previous / next over a listing of `total` in pages of `limit`.
export function pager(offset, limit, total, go) {
  return el("div", { class: "pager" },
    el("button", { disabled: offset === 0, onclick: () => go(Math.max(0, offset - limit)) }, "Previous"),
    el("span", { class: "meta" }, `${Math.min(offset + 1, total)}–${Math.min(offset + limit, total)} of ${total}`),
    el("button", { disabled: offset + limit >= total, onclick: () => go(offset + limit) }, "Next"));
}

export async function contactOf(id) {
  if (!id) return null;
  if (!state.contacts.has(id)) {
    state.contacts.set(id, api("GET", `/v1/contacts/${enc(id)}`)
      .then((answer) => answer.contact || answer).catch(() => null));
  }
  return state.contacts.get(id);
}

// ---- diffs ----

// The lines of `before` and `after` as a list of [" " | "-" | "+", line],
// from their longest common subsequence (small inputs: params and text).
export function lineDiff(before, after) {
  const a = before.split("\n");
  const b = after.split("\n");
  const common = Array.from({ length: a.length + 1 }, () => new Array(b.length + 1).fill(0));
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      common[i][j] = a[i] === b[j] ? common[i + 1][j + 1] + 1 : Math.max(common[i + 1][j], common[i][j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) { out.push([" ", a[i]]); i++; j++; }
    else if (common[i + 1][j] >= common[i][j + 1]) out.push(["-", a[i++]]);
    else out.push(["+", b[j++]]);
  }
  while (i < a.length) out.push(["-", a[i++]]);
  while (j < b.length) out.push(["+", b[j++]]);
  return out;
}

// JSON with its keys sorted, so that a diff shows changed values, not moves.
export function canonical(value) {
  const sort = (v) => (Array.isArray(v) ? v.map(sort)
    : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort(v[k])])) : v);
  return JSON.stringify(sort(value), null, 2);
}

// A diff of two values as a <pre>, removed lines and added lines marked.
export function diffView(before, after, id) {
  const lines = lineDiff(canonical(before), canonical(after));
  const changed = lines.some(([mark]) => mark !== " ");
  return el("pre", { class: "diff", id },
    changed ? lines.map(([mark, line]) => el("span", { class: mark === "-" ? "del" : mark === "+" ? "ins" : "same" }, `${mark} ${line}\n`))
      : "(no change)");
}
