// The reviewer's pages: the inbox of pending approvals (approve, reject, or
// edit then approve), the actions list, and an action's page.

import {
  $, el, api, can, json, when, query, enc, toast, state, contactOf, failed, loading, pager,
  diffView, put,
} from "./core.js";

// ---- the params editor: a form from the type's JSON Schema ----

const types = { loaded: null };

// The action types with their params schemas, once per page load (needs
// plugins:read; without it the editor edits the params as JSON).
async function typeSchema(type) {
  if (!can("plugins:read")) return null;
  if (!types.loaded) {
    types.loaded = api("GET", "/v1/action-types")
      .then((answer) => new Map((answer.items || []).map((t) => [t.name, t.params_schema])))
      .catch(() => new Map());
  }
  return (await types.loaded).get(type) || null;
}

const kindOf = (schema) => {
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  if (schema.enum) return "enum";
  return ["string", "integer", "number", "boolean"].includes(type) ? type : "json";
};
const LONG_TEXT = /^(body|message|html|text|content|note|description)$/i;

// A form for `params` under `schema`: its node, and `read()`, which returns
// the edited params or throws an Error naming the field that is wrong.
function paramsForm(schema, params) {
  const properties = (schema && schema.properties) || {};
  const required = new Set((schema && schema.required) || []);
  const names = [...new Set([...Object.keys(properties), ...Object.keys(params)])];
  const fields = names.map((name) => {
    const prop = properties[name] || {};
    const kind = schema ? kindOf(prop) : "json";
    const value = params[name];
    const id = `edit-${name}`;
    let input;
    if (kind === "enum") {
      input = el("select", { id, "data-name": name },
        required.has(name) ? null : el("option", { value: "" }, "(none)"),
        prop.enum.map((option) => el("option", { value: JSON.stringify(option), selected: option === value }, String(option))));
    } else if (kind === "boolean") {
      input = el("input", { id, type: "checkbox", "data-name": name, checked: value === true });
    } else if (kind === "integer" || kind === "number") {
      input = el("input", { id, type: "number", step: kind === "integer" ? "1" : "any", "data-name": name, value: value ?? "" });
    } else if (kind === "string") {
      const long = LONG_TEXT.test(name) || (prop.maxLength || 0) > 200 || String(value ?? "").length > 80 || String(value ?? "").includes("\n");
      input = long
        ? el("textarea", { id, rows: 6, "data-name": name, value: value ?? "" })
        : el("input", { id, type: "text", "data-name": name, value: value ?? "" });
    } else {
      input = el("textarea", { id, rows: 4, class: "code", "data-name": name, value: value === undefined ? "" : json(value) });
    }
    const read = () => {
      if (kind === "boolean") return input.checked;
      const text = input.value;
      if (text === "" && !(kind === "string" && name in params && params[name] === "")) return undefined;
      if (kind === "enum") return JSON.parse(text);
      if (kind === "integer" || kind === "number") {
        const number = Number(text);
        if (!Number.isFinite(number) || (kind === "integer" && !Number.isInteger(number))) {
          throw new Error(`${name}: expected ${kind === "integer" ? "a whole number" : "a number"}`);
        }
        return number;
      }
      if (kind === "string") return text;
      try { return JSON.parse(text); } catch { throw new Error(`${name}: not valid JSON`); }
    };
    const label = `${prop.title || name}${required.has(name) ? " *" : ""}`;
    return {
      name,
      read,
      node: el("div", { class: "field" }, el("label", { for: id }, label),
        prop.description ? el("p", { class: "meta" }, prop.description) : null, input),
    };
  });
  return {
    node: el("div", { class: "form" }, fields.map((f) => f.node)),
    read() {
      const out = {};
      for (const field of fields) {
        const value = field.read();
        if (value !== undefined) out[field.name] = value;
      }
      return out;
    },
  };
}

// Opens the editor for `action` in `host`; `done` runs after a decision.
async function openEditor(action, host, done) {
  if (host.querySelector(".editor")) return;
  const schema = await typeSchema(action.type);
  const form = paramsForm(schema, action.params || {});
  const changes = el("div", { class: "changes" });
  const problem = el("pre", { class: "error", hidden: true });
  const comment = el("input", { type: "text", class: "edit-comment", placeholder: "Comment (optional)" });
  const show = () => {
    try {
      put(changes, el("label", {}, "Changes"), diffView(action.params || {}, form.read(), "edit-diff"));
      problem.hidden = true;
    } catch (err) {
      problem.textContent = err.message;
      problem.hidden = false;
    }
  };
  const editor = el("div", { class: "editor" },
    schema ? null : el("p", { class: "meta" }, "Edit the params as JSON (the type's schema needs plugins:read)."),
    form.node, changes, problem,
    el("div", { class: "decide" }, comment,
      el("button", { class: "approve", id: "approve-edited", onclick: async () => {
        let params;
        try { params = form.read(); } catch (err) { problem.textContent = err.message; problem.hidden = false; return; }
        try {
          await api("POST", `/v1/actions/${enc(action.id)}/approve`,
            { action: "edit", params, ...(comment.value ? { comment: comment.value } : {}) });
          toast(`Edited and approved: ${action.summary || action.id}`);
          done();
        } catch (err) {
          problem.textContent = err.details || err.message;
          problem.hidden = false;
        }
      } }, "Approve with changes"),
      el("button", { onclick: () => editor.remove() }, "Cancel")));
  editor.addEventListener("input", show);
  editor.addEventListener("change", show);
  host.append(editor);
  show();
  const first = editor.querySelector("input, textarea, select");
  if (first) first.focus();
}

// ---- the inbox ----

const inbox = { filters: {}, items: [], current: 0 };

async function reasoningOf(runId, contactId) {
  if (!runId || !contactId || !can("agents:read")) return null;
  if (!state.runs.has(runId)) {
    state.runs.set(runId, (async () => {
      const results = new Map();
      for (let offset = 0; offset < 10000;) {
        const answer = await api("GET", `/v1/agents/runs/${enc(runId)}?offset=${offset}`);
        const page = answer.run.contact_results || [];
        for (const r of page) results.set(r.contact_id, r.reasoning);
        if (page.length === 0) break;
        offset += page.length;
        if (offset >= answer.run.summary.contacts_evaluated) break;
      }
      return results;
    })().catch(() => new Map()));
  }
  return (await state.runs.get(runId)).get(contactId) || null;
}

export async function showInbox() {
  const filters = inbox.filters;
  const field = (name, label) => el("div", {}, el("label", { for: `f-${name}` }, label),
    el("input", { id: `f-${name}`, value: filters[name] || "", onchange: (e) => { filters[name] = e.target.value.trim(); showInbox(); } }));
  loading("Inbox");
  let answer;
  try {
    answer = await api("GET", `/v1/actions?${query({
      status: "pending_approval", limit: 100, type: filters.type,
      identity_id: filters.identity, contact_id: filters.contact, agent_id: filters.agent,
    })}`);
  } catch (err) {
    failed("Inbox", err);
    return;
  }
  const items = answer.actions || [];
  inbox.items = items;
  inbox.current = Math.min(inbox.current, Math.max(items.length - 1, 0));
  const total = answer.pagination ? answer.pagination.total_items : items.length;
  const comment = el("input", { type: "text", id: "bulk-comment", placeholder: "Comment for the selected (optional)" });
  const bulk = (decision) => decideMany(decision, selected(), comment.value);
  put($("view"),
    el("h1", {}, `Inbox (${total} waiting)`),
    el("div", { class: "filters" }, field("type", "Type"), field("agent", "Agent"),
      field("identity", "Identity"), field("contact", "Contact")),
    el("div", { class: "bulk" },
      el("label", {}, el("input", { type: "checkbox", id: "select-all", onchange: (e) => selectAll(e.target.checked) }), " All"),
      comment,
      el("button", { class: "approve", id: "approve-selected", onclick: () => bulk("approve"), disabled: !can("actions:approve") }, "Approve selected"),
      el("button", { class: "reject", id: "reject-selected", onclick: () => bulk("reject"), disabled: !can("actions:approve") }, "Reject selected")),
    el("p", { class: "keys" }, "Keys: j / k next and previous, x select, a approve, r reject, e edit, o open."),
    items.length ? el("div", { id: "items" }, items.map(itemCard)) : el("p", { class: "empty" }, "Nothing waits for a decision."));
  markCurrent();
}

function itemCard(action, index) {
  const comment = el("input", { type: "text", class: "comment", placeholder: "Comment (optional)" });
  const reasoning = el("div", { class: "reasoning", hidden: true });
  const contact = el("span");
  const approver = !can("actions:approve");
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
      el("button", { class: "approve", onclick: () => decide(action, "approve", comment.value), disabled: approver }, "Approve"),
      el("button", { class: "reject", onclick: () => decide(action, "reject", comment.value), disabled: approver }, "Reject"),
      el("button", { class: "edit", onclick: () => openEditor(action, card, showInbox), disabled: approver }, "Edit"),
      el("a", { href: `#/actions/${enc(action.id)}` }, "Details"),
      action.run_id && can("agents:approve")
        ? el("button", { onclick: () => approveRun(action.run_id) }, "Approve the whole run") : null));
  contactOf(action.contact_id).then((c) => {
    if (c) contact.textContent = ` · contact ${c.email || c._id || action.contact_id}`;
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
    await api("POST", `/v1/actions/${enc(action.id)}/approve`,
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
    await api("POST", `/v1/agents/runs/${enc(runId)}/approve`, { action: "approve" });
    toast(`Approved the proposals of run ${runId}`);
  } catch (err) {
    toast(err.message);
  }
  showInbox();
}

// The inbox's keyboard path.
export function inboxKey(event) {
  const action = inbox.items[inbox.current];
  const card = cards()[inbox.current];
  switch (event.key) {
    case "j": inbox.current = Math.min(inbox.current + 1, inbox.items.length - 1); markCurrent(); break;
    case "k": inbox.current = Math.max(inbox.current - 1, 0); markCurrent(); break;
    case "x": if (card) { const pick = card.querySelector(".pick"); pick.checked = !pick.checked; } break;
    case "a": if (action) decide(action, "approve", card.querySelector(".comment").value); break;
    case "r": if (action) decide(action, "reject", card.querySelector(".comment").value); break;
    case "e": if (action && can("actions:approve")) openEditor(action, card, showInbox); break;
    case "o": if (action) location.hash = `#/actions/${enc(action.id)}`; break;
    default: return false;
  }
  if (card) card.scrollIntoView({ block: "nearest" });
  return true;
}

// ---- actions ----

const listing = { filters: { sort_by: "created_at", sort_dir: "desc" }, skip: 0 };

export async function showActions() {
  const f = listing.filters;
  const change = (name) => (e) => { f[name] = e.target.value.trim(); listing.skip = 0; showActions(); };
  const input = (name, label) => el("div", {}, el("label", { for: `a-${name}` }, label),
    el("input", { id: `a-${name}`, value: f[name] || "", onchange: change(name) }));
  const choice = (name, label, options) => el("div", {}, el("label", { for: `a-${name}` }, label),
    el("select", { id: `a-${name}`, onchange: change(name) },
      options.map((o) => el("option", { value: o, selected: (f[name] || "") === o }, o || "any"))));
  const limit = 50;
  let answer;
  try {
    answer = await api("GET", `/v1/actions?${query({ ...f, limit, skip: listing.skip })}`);
  } catch (err) {
    failed("Actions", err);
    return;
  }
  const total = answer.pagination.total_items;
  const rows = (answer.actions || []).map((a) => el("tr", {},
    el("td", {}, el("a", { href: `#/actions/${enc(a.id)}` }, a.summary || a.id)),
    el("td", {}, el("span", { class: "status" }, a.status)),
    el("td", { class: "wide" }, a.type),
    el("td", { class: "wide" }, a.identity_id),
    el("td", { class: "wide" }, when(a.created_at))));
  put($("view"),
    el("h1", {}, `Actions (${total})`),
    el("div", { class: "filters" },
      choice("status", "Status", ["", "pending_approval", "scheduled", "executing", "succeeded", "failed", "outcome_unknown", "cancelled", "rejected"]),
      input("type", "Type"), input("identity_id", "Identity"), input("contact_id", "Contact"),
      input("agent_id", "Agent"), input("list_id", "List"),
      choice("sort_by", "Sort by", ["created_at", "updated_at", "scheduled_time", "due_at", "status", "type"]),
      choice("sort_dir", "Order", ["desc", "asc"])),
    rows.length ? el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Action"), el("th", {}, "Status"),
      el("th", { class: "wide" }, "Type"), el("th", { class: "wide" }, "Identity"), el("th", { class: "wide" }, "Created"))),
      el("tbody", {}, rows)) : el("p", { class: "empty" }, "No actions match."),
    pager(listing.skip, limit, total, (skip) => { listing.skip = skip; showActions(); }));
}

function executionBox(execId) {
  const box = el("div", { class: "item" }, el("p", { class: "meta" }, `Execution ${execId}`));
  api("GET", `/v1/executions/${enc(execId)}`).then((ex) => {
    const errors = (ex.errors || []).map((e) => el("p", { class: "error" }, `${e.code}: ${e.message}`));
    put(box,
      el("div", { class: "head" }, el("span", { class: "summary" }, `Execution ${ex.id}`), el("span", { class: "status" }, ex.outcome || ex.status)),
      el("p", { class: "meta" }, `${ex.plugin}@${ex.plugin_version} · attempt ${ex.attempt}`),
      errors,
      el("label", {}, "Log"), el("pre", { class: "log" }, (ex.log || []).map((l) => `${l.level} ${l.message}`).join("\n") || "(empty)"),
      ex.trace ? [el("label", {}, "Trace"), el("pre", {}, json(ex.trace))] : null,
      ex.output !== undefined && ex.output !== null ? [el("label", {}, "Output"), el("pre", {}, json(ex.output))] : null);
  }).catch((err) => box.append(el("p", { class: "error" }, err.message)));
  return box;
}

export async function showAction(id) {
  let action;
  try {
    action = (await api("GET", `/v1/actions/${enc(id)}`)).action;
  } catch (err) {
    failed("Action", err);
    return;
  }
  const history = el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "When"), el("th", {}, "Transition"),
    el("th", {}, "Status"), el("th", { class: "wide" }, "By"), el("th", {}, "Comment"))),
    el("tbody", {}, (action.history || []).map((h) => el("tr", {},
      el("td", {}, when(h.at)), el("td", {}, h.transition),
      el("td", {}, `${h.from || "—"} → ${h.to}`),
      el("td", { class: "wide" }, h.actor ? (h.actor.email || h.actor.user_id || h.actor.name || h.actor.key_id || "") : ""),
      el("td", {}, h.comment || (h.error ? `${h.error.code}: ${h.error.message}` : ""))))));
  // Each revision beside the one that replaced it.
  const revisions = action.revisions || [];
  const revisionViews = revisions.map((r, i) => {
    const next = i + 1 < revisions.length ? revisions[i + 1] : { revision: action.revision, params: action.params };
    return el("div", { class: "revision" },
      el("p", { class: "meta" }, `Revision ${r.revision} → ${next.revision}, ${when(r.replaced_at)}`
        + (r.replaced_by ? ` by ${r.replaced_by.email || r.replaced_by.user_id || r.replaced_by.name || ""}` : "")),
      diffView(r.params, next.params));
  });
  const resolve = action.status === "outcome_unknown" && can("actions:execute")
    ? el("div", { class: "decide" },
      el("button", { class: "approve", onclick: () => resolveAs(action.id, "mark_succeeded") }, "It happened: mark succeeded"),
      el("button", { class: "reject", onclick: () => resolveAs(action.id, "mark_failed") }, "It did not: mark failed"))
    : null;
  const body = el("div", { id: "action-body" });
  const back = () => { location.hash = "#/inbox"; };
  const pending = action.status === "pending_approval" && can("actions:approve")
    ? el("div", { class: "decide" },
      el("button", { class: "approve", onclick: async () => { await decide(action, "approve", ""); back(); } }, "Approve"),
      el("button", { class: "reject", onclick: async () => { await decide(action, "reject", ""); back(); } }, "Reject"),
      el("button", { class: "edit", onclick: () => openEditor(action, body, () => showAction(action.id)) }, "Edit"))
    : null;
  put($("view"),
    el("p", {}, el("a", { href: "#/actions" }, "← Actions")),
    el("h1", {}, action.summary || action.id),
    el("p", {}, el("span", { class: "status", id: "action-status" }, action.status), " ",
      el("span", { class: "meta" }, `${action.type} · ${action.id} · identity ${action.identity_id}`
        + (action.agent_id ? ` · agent ${action.agent_id}` : ""))),
    pending, resolve, body,
    action.last_error ? el("p", { class: "error" }, `${action.last_error.code}: ${action.last_error.message}`) : null,
    el("h2", {}, `Params (revision ${action.revision})`), el("pre", { class: "params" }, json(action.params)),
    revisionViews.length ? [el("h2", {}, "Revisions"), revisionViews] : null,
    el("h2", {}, "History"), history,
    el("h2", {}, "Executions"),
    (action.executions || []).length ? el("div", {}, action.executions.map(executionBox)) : el("p", { class: "meta" }, "None yet."));
}

async function resolveAs(id, outcome) {
  try {
    await api("POST", `/v1/actions/${enc(id)}/resolve`, { action: outcome });
    toast(`Resolved as ${outcome}`);
  } catch (err) {
    toast(err.message);
  }
  showAction(id);
}
