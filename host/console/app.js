// The actionhost console: a reviewer's inbox and the actions, over the
// server's own API with a session cookie. Every value from the server is
// rendered as text (textContent), never as markup; the page holds no key.

const state = { session: null, runs: new Map(), contacts: new Map() };

const $ = (id) => document.getElementById(id);

// An element with attributes and children; strings become text nodes.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function toast(message) {
  const box = $("toast");
  box.textContent = message;
  box.classList.add("shown");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => box.classList.remove("shown"), 3000);
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.message || body.error)) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && state.session) headers["x-csrf-token"] = state.session.csrf_token;
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (response.status === 401 && path !== "/console/session") {
    state.session = null;
    showSignIn("Your session has ended; sign in again.");
    throw new ApiError(401, json);
  }
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

// ---- signing in and out ----

function showSignIn(message) {
  $("bar").hidden = true;
  $("view").replaceChildren();
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message || "";
  $("api-key").focus();
}

async function signIn(event) {
  event.preventDefault();
  const input = $("api-key");
  const key = input.value;
  input.value = ""; // the key leaves the page with this request, and only it
  try {
    state.session = await api("POST", "/console/session", { api_key: key });
    started();
  } catch (err) {
    $("sign-in-error").textContent = err.message;
  }
}

async function signOut() {
  try { await api("DELETE", "/console/session"); } catch { /* ended anyway */ }
  state.session = null;
  location.hash = "";
  showSignIn("Signed out.");
}

function started() {
  $("sign-in").hidden = true;
  $("bar").hidden = false;
  $("who").textContent = `${state.session.user_email} · ${state.session.key_name}`;
  if (!location.hash) location.hash = "#/inbox";
  route();
}

// ---- helpers ----

const can = (scope) => state.session && state.session.scopes.includes(scope);
const json = (value) => JSON.stringify(value, null, 2);
const when = (text) => (text ? new Date(text).toLocaleString() : "");
const query = (params) => {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value) search.set(name, value);
  return search.toString();
};

async function contactOf(id) {
  if (!id) return null;
  if (!state.contacts.has(id)) {
    state.contacts.set(id, api("GET", `/v1/contacts/${encodeURIComponent(id)}`)
      .then((answer) => answer.contact || answer).catch(() => null));
  }
  return state.contacts.get(id);
}

// The model's reasoning for a contact in a run (pages of 25 results).
async function reasoningOf(runId, contactId) {
  if (!runId || !contactId || !can("agents:read")) return null;
  const key = `${runId}:${contactId}`;
  if (!state.runs.has(key)) {
    state.runs.set(key, (async () => {
      let offset = 0;
      for (let page = 0; page < 40 && offset !== undefined && offset !== null; page += 1) {
        const answer = await api("GET", `/v1/agents/runs/${encodeURIComponent(runId)}?offset=${offset}`);
        const results = answer.run.contact_results || [];
        const found = results.find((r) => r.contact_id === contactId);
        if (found) return found.reasoning || null;
        offset = answer.run.next_offset;
      }
      return null;
    })().catch(() => null));
  }
  return state.runs.get(key);
}

// ---- the inbox ----

const inbox = { items: [], current: 0, filters: {} };

async function showInbox() {
  const filters = inbox.filters;
  const field = (name, label) => el("div", {}, el("label", { for: `f-${name}` }, label),
    el("input", { id: `f-${name}`, value: filters[name] || "", onchange: (e) => { filters[name] = e.target.value.trim(); showInbox(); } }));
  const view = $("view");
  view.replaceChildren(el("h1", {}, "Inbox"), el("p", { class: "meta" }, "Loading…"));
  let answer;
  try {
    answer = await api("GET", `/v1/actions?${query({
      status: "pending_approval", limit: 100, type: filters.type,
      identity_id: filters.identity, contact_id: filters.contact,
    })}`);
  } catch (err) {
    view.replaceChildren(el("h1", {}, "Inbox"), el("p", { class: "error" }, err.message));
    return;
  }
  let items = answer.actions || [];
  if (filters.agent) items = items.filter((a) => a.agent_id === filters.agent);
  inbox.items = items;
  inbox.current = Math.min(inbox.current, Math.max(items.length - 1, 0));
  const total = answer.pagination ? answer.pagination.total_items : items.length;
  const comment = el("input", { type: "text", id: "bulk-comment", placeholder: "Comment for the selected (optional)" });
  const bulk = (decision) => decideMany(decision, selected(), comment.value);
  view.replaceChildren(
    el("h1", {}, `Inbox (${total} waiting)`),
    el("div", { class: "filters" }, field("type", "Type"), field("agent", "Agent"),
      field("identity", "Identity"), field("contact", "Contact")),
    el("div", { class: "bulk" },
      el("label", {}, el("input", { type: "checkbox", id: "select-all", onchange: (e) => selectAll(e.target.checked) }), " All"),
      comment,
      el("button", { class: "approve", id: "approve-selected", onclick: () => bulk("approve"), disabled: !can("actions:approve") }, "Approve selected"),
      el("button", { class: "reject", id: "reject-selected", onclick: () => bulk("reject"), disabled: !can("actions:approve") }, "Reject selected")),
    el("p", { class: "keys" }, "Keys: j / k next and previous, x select, a approve, r reject, o open."),
    items.length ? el("div", { id: "items" }, items.map(itemCard)) : el("p", { class: "empty" }, "Nothing waits for a decision."));
  markCurrent();
}

function itemCard(action, index) {
  const comment = el("input", { type: "text", class: "comment", placeholder: "Comment (optional)" });
  const reasoning = el("div", { class: "reasoning", hidden: true });
  const contact = el("span");
  const card = el("article", { class: "item", "data-id": action.id, onclick: () => { inbox.current = index; markCurrent(); } },
    el("div", { class: "head" },
      el("input", { type: "checkbox", class: "pick", "aria-label": "select" }),
      el("span", { class: "summary" }, action.summary || action.type),
      el("span", { class: "status" }, action.type)),
    el("div", { class: "meta" }, `identity ${action.identity_id}`, contact,
      action.agent_id ? ` · agent ${action.agent_id}` : "", ` · created ${when(action.created_at)}`),
    reasoning,
    el("pre", { class: "params" }, json(action.params)),
    el("div", { class: "decide" }, comment,
      el("button", { class: "approve", onclick: () => decide(action, "approve", comment.value), disabled: !can("actions:approve") }, "Approve"),
      el("button", { class: "reject", onclick: () => decide(action, "reject", comment.value), disabled: !can("actions:approve") }, "Reject"),
      el("a", { href: `#/actions/${encodeURIComponent(action.id)}` }, "Details"),
      action.run_id && can("agents:approve")
        ? el("button", { onclick: () => approveRun(action.run_id) }, "Approve the whole run") : null));
  contactOf(action.contact_id).then((c) => {
    if (c) contact.textContent = ` · contact ${c.email || c.id || action.contact_id}`;
    else if (action.contact_id) contact.textContent = ` · contact ${action.contact_id}`;
  });
  reasoningOf(action.run_id, action.contact_id).then((text) => {
    if (text) { reasoning.textContent = text; reasoning.hidden = false; }
  });
  return card;
}

function cards() { return [...document.querySelectorAll("#items .item")]; }
function selected() {
  return cards().filter((c) => c.querySelector(".pick").checked).map((c) => c.dataset.id);
}
function selectAll(on) { for (const c of cards()) c.querySelector(".pick").checked = on; }
function markCurrent() {
  cards().forEach((c, i) => c.classList.toggle("current", i === inbox.current));
}

async function decide(action, decision, comment) {
  try {
    await api("POST", `/v1/actions/${encodeURIComponent(action.id)}/approve`,
      { action: decision, ...(comment ? { comment } : {}) });
    toast(`${decision === "approve" ? "Approved" : "Rejected"}: ${action.summary || action.id}`);
  } catch (err) {
    toast(err.message);
  }
  showInbox();
}

async function decideMany(decision, ids, comment) {
  if (!ids.length) { toast("Select actions first."); return; }
  try {
    const answer = await api("POST", "/v1/actions/approve/bulk",
      { action: decision, action_ids: ids, ...(comment ? { comment } : {}) });
    toast(`${answer.succeeded} of ${ids.length} ${decision === "approve" ? "approved" : "rejected"}`);
  } catch (err) {
    toast(err.message);
  }
  showInbox();
}

async function approveRun(runId) {
  try {
    await api("POST", `/v1/agents/runs/${encodeURIComponent(runId)}/approve`, {});
    toast(`Approved the proposals of run ${runId}`);
  } catch (err) {
    toast(err.message);
  }
  showInbox();
}

document.addEventListener("keydown", (event) => {
  if (!location.hash.startsWith("#/inbox") || !state.session) return;
  if (["INPUT", "TEXTAREA", "SELECT"].includes(event.target.tagName)) return;
  const action = inbox.items[inbox.current];
  const card = cards()[inbox.current];
  switch (event.key) {
    case "j": inbox.current = Math.min(inbox.current + 1, inbox.items.length - 1); markCurrent(); break;
    case "k": inbox.current = Math.max(inbox.current - 1, 0); markCurrent(); break;
    case "x": if (card) { const pick = card.querySelector(".pick"); pick.checked = !pick.checked; } break;
    case "a": if (action) decide(action, "approve", card.querySelector(".comment").value); break;
    case "r": if (action) decide(action, "reject", card.querySelector(".comment").value); break;
    case "o": if (action) location.hash = `#/actions/${encodeURIComponent(action.id)}`; break;
    default: return;
  }
  if (card) card.scrollIntoView({ block: "nearest" });
  event.preventDefault();
});

// ---- actions ----

const listing = { filters: { sort_by: "created_at", sort_dir: "desc" }, skip: 0 };

async function showActions() {
  const f = listing.filters;
  const change = (name) => (e) => { f[name] = e.target.value.trim(); listing.skip = 0; showActions(); };
  const input = (name, label) => el("div", {}, el("label", { for: `a-${name}` }, label),
    el("input", { id: `a-${name}`, value: f[name] || "", onchange: change(name) }));
  const choice = (name, label, options) => el("div", {}, el("label", { for: `a-${name}` }, label),
    el("select", { id: `a-${name}`, onchange: change(name) },
      options.map((o) => el("option", { value: o, selected: (f[name] || "") === o }, o || "any"))));
  const view = $("view");
  const limit = 50;
  let answer;
  try {
    answer = await api("GET", `/v1/actions?${query({ ...f, limit, skip: listing.skip })}`);
  } catch (err) {
    view.replaceChildren(el("h1", {}, "Actions"), el("p", { class: "error" }, err.message));
    return;
  }
  const total = answer.pagination.total_items;
  const rows = (answer.actions || []).map((a) => el("tr", {},
    el("td", {}, el("a", { href: `#/actions/${encodeURIComponent(a.id)}` }, a.summary || a.id)),
    el("td", {}, el("span", { class: "status" }, a.status)),
    el("td", { class: "wide" }, a.type),
    el("td", { class: "wide" }, a.identity_id),
    el("td", { class: "wide" }, when(a.created_at))));
  view.replaceChildren(
    el("h1", {}, `Actions (${total})`),
    el("div", { class: "filters" },
      choice("status", "Status", ["", "pending_approval", "scheduled", "executing", "succeeded", "failed", "outcome_unknown", "cancelled", "rejected"]),
      input("type", "Type"), input("identity_id", "Identity"), input("contact_id", "Contact"), input("list_id", "List"),
      choice("sort_by", "Sort by", ["created_at", "updated_at", "scheduled_time", "due_at", "status", "type"]),
      choice("sort_dir", "Order", ["desc", "asc"])),
    rows.length ? el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Action"), el("th", {}, "Status"),
      el("th", { class: "wide" }, "Type"), el("th", { class: "wide" }, "Identity"), el("th", { class: "wide" }, "Created"))),
      el("tbody", {}, rows)) : el("p", { class: "empty" }, "No actions match."),
    el("div", { class: "pager" },
      el("button", { disabled: listing.skip === 0, onclick: () => { listing.skip = Math.max(0, listing.skip - limit); showActions(); } }, "Previous"),
      el("span", { class: "meta" }, `${Math.min(listing.skip + 1, total)}–${Math.min(listing.skip + limit, total)} of ${total}`),
      el("button", { disabled: listing.skip + limit >= total, onclick: () => { listing.skip += limit; showActions(); } }, "Next")));
}

async function showAction(id) {
  const view = $("view");
  let action;
  try {
    action = (await api("GET", `/v1/actions/${encodeURIComponent(id)}`)).action;
  } catch (err) {
    view.replaceChildren(el("h1", {}, "Action"), el("p", { class: "error" }, err.message));
    return;
  }
  const history = el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "When"), el("th", {}, "Transition"),
    el("th", {}, "Status"), el("th", { class: "wide" }, "By"), el("th", {}, "Comment"))),
    el("tbody", {}, (action.history || []).map((h) => el("tr", {},
      el("td", {}, when(h.at)), el("td", {}, h.transition),
      el("td", {}, `${h.from || "—"} → ${h.to}`),
      el("td", { class: "wide" }, h.actor ? (h.actor.email || h.actor.user_id || h.actor.name || h.actor.key_id || "") : ""),
      el("td", {}, h.comment || (h.error ? `${h.error.code}: ${h.error.message}` : ""))))));
  const revisions = (action.revisions || []).map((r) => el("div", {},
    el("p", { class: "meta" }, `Revision ${r.revision}, replaced ${when(r.replaced_at)}`), el("pre", {}, json(r.params))));
  const executions = el("div", {}, (action.executions || []).map((execId) => {
    const box = el("div", { class: "item" }, el("p", { class: "meta" }, `Execution ${execId}`));
    api("GET", `/v1/executions/${encodeURIComponent(execId)}`).then((ex) => {
      const errors = (ex.errors || []).map((e) => el("p", { class: "error" }, `${e.code}: ${e.message}`));
      box.replaceChildren(
        el("div", { class: "head" }, el("span", { class: "summary" }, `Execution ${ex.id}`), el("span", { class: "status" }, ex.outcome || ex.status)),
        el("p", { class: "meta" }, `${ex.plugin}@${ex.plugin_version} · attempt ${ex.attempt}`),
        errors,
        el("label", {}, "Log"), el("pre", { class: "log" }, (ex.log || []).map((l) => `${l.level} ${l.message}`).join("\n") || "(empty)"),
        ex.trace ? [el("label", {}, "Trace"), el("pre", {}, json(ex.trace))] : null,
        ex.output !== undefined && ex.output !== null ? [el("label", {}, "Output"), el("pre", {}, json(ex.output))] : null);
    }).catch((err) => box.append(el("p", { class: "error" }, err.message)));
    return box;
  }));
  const resolve = action.status === "outcome_unknown" && can("actions:execute")
    ? el("div", { class: "decide" },
      el("button", { class: "approve", onclick: () => resolveAs(action.id, "mark_succeeded") }, "It happened: mark succeeded"),
      el("button", { class: "reject", onclick: () => resolveAs(action.id, "mark_failed") }, "It did not: mark failed"))
    : null;
  const pending = action.status === "pending_approval" && can("actions:approve")
    ? el("div", { class: "decide" },
      el("button", { class: "approve", onclick: async () => { await decide(action, "approve", ""); location.hash = "#/inbox"; } }, "Approve"),
      el("button", { class: "reject", onclick: async () => { await decide(action, "reject", ""); location.hash = "#/inbox"; } }, "Reject"))
    : null;
  view.replaceChildren(
    el("p", {}, el("a", { href: "#/actions" }, "← Actions")),
    el("h1", {}, action.summary || action.id),
    el("p", {}, el("span", { class: "status", id: "action-status" }, action.status), " ",
      el("span", { class: "meta" }, `${action.type} · ${action.id} · identity ${action.identity_id}`)),
    pending, resolve,
    action.last_error ? el("p", { class: "error" }, `${action.last_error.code}: ${action.last_error.message}`) : null,
    el("h2", {}, `Params (revision ${action.revision})`), el("pre", { class: "params" }, json(action.params)),
    revisions.length ? [el("h2", {}, "Earlier revisions"), revisions] : null,
    el("h2", {}, "History"), history,
    el("h2", {}, "Executions"), (action.executions || []).length ? executions : el("p", { class: "meta" }, "None yet."));
}

async function resolveAs(id, outcome) {
  try {
    await api("POST", `/v1/actions/${encodeURIComponent(id)}/resolve`, { action: outcome });
    toast(`Resolved as ${outcome}`);
  } catch (err) {
    toast(err.message);
  }
  showAction(id);
}

// ---- routing ----

function route() {
  if (!state.session) return;
  const hash = location.hash || "#/inbox";
  for (const link of document.querySelectorAll("header nav a")) {
    link.classList.toggle("active", hash.startsWith(link.getAttribute("href")));
  }
  const detail = hash.match(/^#\/actions\/(.+)$/);
  if (detail) showAction(decodeURIComponent(detail[1]));
  else if (hash.startsWith("#/actions")) showActions();
  else showInbox();
}

window.addEventListener("hashchange", route);
$("sign-in").addEventListener("submit", signIn);
$("sign-out").addEventListener("click", signOut);

// A reloaded page goes on with its session, if it has one.
api("GET", "/console/session")
  .then((session) => { state.session = session; started(); })
  .catch(() => showSignIn());
