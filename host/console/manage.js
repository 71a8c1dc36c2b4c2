// The pages beside the inbox: agents and their runs, contacts and their
// timelines, plugins, accounts and API keys. Each lists what the session's
// scopes may read and offers what they may change.

import { $, el, api, can, json, when, query, enc, toast, failed, loading, pager, state, put } from "./core.js";

const table = (heads, rows, empty) => (rows.length
  ? el("table", {}, el("thead", {}, el("tr", {}, heads.map(([text, wide]) => el("th", wide ? { class: "wide" } : {}, text)))),
    el("tbody", {}, rows))
  : el("p", { class: "empty" }, empty));
const cell = (content, wide) => el("td", wide ? { class: "wide" } : {}, content);

// ---- agents and runs ----

export async function showAgents() {
  loading("Agents");
  let answer;
  try { answer = await api("GET", "/v1/agents?limit=100"); } catch (err) { failed("Agents", err); return; }
  const rows = (answer.agents || []).map((a) => el("tr", {},
    cell(el("a", { href: `#/agents/${enc(a._id)}` }, a.name)),
    cell(el("span", { class: "status" }, a.enabled ? "enabled" : "disabled")),
    cell(a.monitoring && a.monitoring.schedule_cron ? a.monitoring.schedule_cron : "on demand", true),
    cell(`${a.llm_config.provider} ${a.llm_config.model}`, true),
    cell(when(a.updated_at), true)));
  put($("view"), el("h1", {}, `Agents (${answer.total})`),
    table([["Agent"], ["State"], ["Schedule", true], ["Model", true], ["Changed", true]], rows, "No agents yet."));
}

const runsPage = { offset: 0 };

export async function showAgent(id) {
  loading("Agent");
  let agent;
  let runs;
  const limit = 20;
  try {
    agent = (await api("GET", `/v1/agents/${enc(id)}`)).agent;
    runs = await api("GET", `/v1/agents/${enc(id)}/runs?${query({ limit, offset: runsPage.offset })}`);
  } catch (err) { failed("Agent", err); return; }
  const rows = (runs.runs || []).map((r) => el("tr", {},
    cell(el("a", { href: `#/runs/${enc(r._id)}` }, when(r.created_at) || r._id)),
    cell(el("span", { class: "status" }, r.status)),
    cell(`${r.summary.contacts_evaluated} contacts · ${r.summary.actions_proposed} proposed · ${r.summary.actions_pending_approval} waiting · ${r.summary.actions_auto_approved} auto-approved · ${r.summary.errors} errors`),
    cell(r.trigger, true)));
  const trigger = can("agents:trigger")
    ? el("button", { id: "trigger-run", onclick: async () => {
      try {
        const started = await api("POST", `/v1/agents/${enc(id)}/trigger`, {});
        toast(`Run ${started.job_id || ""} queued`);
      } catch (err) { toast(err.message); }
      showAgent(id);
    } }, "Run now") : null;
  put($("view"),
    el("p", {}, el("a", { href: "#/agents" }, "← Agents")),
    el("h1", {}, agent.name),
    el("p", { class: "meta" }, `${agent._id} · ${agent.enabled ? "enabled" : "disabled"} · ${agent.llm_config.provider} ${agent.llm_config.model}`
      + (agent.identity_id ? ` · identity ${agent.identity_id}` : "")),
    agent.description ? el("p", {}, agent.description) : null,
    trigger,
    el("h2", {}, "Playbook"), el("pre", {}, agent.playbook.playbook_md || json(agent.playbook)),
    el("h2", {}, `Runs (${runs.total})`),
    table([["Started"], ["Status"], ["Summary"], ["Trigger", true]], rows, "No runs yet."),
    pager(runsPage.offset, limit, runs.total, (offset) => { runsPage.offset = offset; showAgent(id); }));
}

export async function showRun(id) {
  loading("Run");
  let run;
  try { run = (await api("GET", `/v1/agents/runs/${enc(id)}?mode=full`)).run; } catch (err) { failed("Run", err); return; }
  const results = (run.contact_results || []).map((r) => el("article", { class: "item" },
    el("div", { class: "head" },
      el("span", { class: "summary" }, r.contact.email || r.contact_id),
      el("span", { class: "status" }, r.result)),
    r.reasoning ? el("div", { class: "reasoning" }, r.reasoning) : null,
    r.errors.length ? el("pre", { class: "error" }, r.errors.join("\n")) : null,
    r.proposed_actions.map((p) => el("div", { class: "proposal" },
      el("p", { class: "meta" }, `${p.type} · ${p.status}`, p.action_id ? " · " : "",
        p.action_id ? el("a", { href: `#/actions/${enc(p.action_id)}` }, p.action_id) : null,
        p.error ? ` · ${p.error}` : ""),
      el("pre", { class: "params" }, json(p.params))))));
  const s = run.summary;
  put($("view"),
    el("p", {}, el("a", { href: `#/agents/${enc(run.agent_id)}` }, "← Agent")),
    el("h1", {}, `Run ${run._id}`),
    el("p", {}, el("span", { class: "status" }, run.status), " ",
      el("span", { class: "meta" }, `${run.trigger} · started ${when(run.started_at || run.created_at)}`
        + (run.completed_at ? ` · finished ${when(run.completed_at)}` : ""))),
    el("p", { class: "meta", id: "run-summary" }, `${s.contacts_evaluated} contacts evaluated · ${s.actions_proposed} actions proposed · ${s.actions_auto_approved} auto-approved · ${s.actions_pending_approval} waiting for approval · ${s.errors} errors`),
    run.error ? el("p", { class: "error" }, run.error) : null,
    el("h2", {}, "Contacts"),
    results.length ? results : el("p", { class: "empty" }, "No contact evaluated yet."));
}

// ---- contacts ----

const contacts = { q: "", offset: 0 };

export async function showContacts() {
  const limit = 50;
  let answer;
  try {
    answer = await api("GET", `/v1/contacts?${query({ q: contacts.q, limit, offset: contacts.offset })}`);
  } catch (err) { failed("Contacts", err); return; }
  const name = (c) => [c.properties.firstname, c.properties.lastname].filter(Boolean).join(" ");
  const rows = (answer.contacts || []).map((c) => el("tr", {},
    cell(el("a", { href: `#/contacts/${enc(c._id)}` }, name(c) || c.email || c._id)),
    cell(c.email || ""),
    cell(c.properties.lifecyclestage === undefined ? "" : String(c.properties.lifecyclestage), true),
    cell(c.properties.company === undefined ? "" : String(c.properties.company), true),
    cell(when(c.updated_at), true)));
  put($("view"),
    el("h1", {}, `Contacts (${answer.total})`),
    el("div", { class: "filters" }, el("div", {}, el("label", { for: "c-q" }, "Search (name, email, company)"),
      el("input", { id: "c-q", type: "search", value: contacts.q, onchange: (e) => { contacts.q = e.target.value.trim(); contacts.offset = 0; showContacts(); } }))),
    table([["Contact"], ["Email"], ["Stage", true], ["Company", true], ["Changed", true]], rows, "No contacts match."),
    pager(contacts.offset, limit, answer.total, (offset) => { contacts.offset = offset; showContacts(); }));
}

export async function showContact(id) {
  loading("Contact");
  let answer;
  try { answer = await api("GET", `/v1/contacts/${enc(id)}/timeline?limit=100`); } catch (err) { failed("Contact", err); return; }
  const c = answer.contact;
  const entries = (answer.timeline || []).map((t) => {
    let what;
    if (t.event) what = [el("strong", {}, t.event.event), t.event.url ? ` ${t.event.url}` : ""];
    else if (t.action) what = [el("a", { href: `#/actions/${enc(t.action.id)}` }, t.action.summary || t.action.type), " ", el("span", { class: "status" }, t.action.status)];
    else if (t.note) what = el("span", { class: "note" }, t.note.body);
    return el("tr", {}, cell(when(t.at)), cell(t.kind), cell(what));
  });
  put($("view"),
    el("p", {}, el("a", { href: "#/contacts" }, "← Contacts")),
    el("h1", {}, [c.properties.firstname, c.properties.lastname].filter(Boolean).join(" ") || c.email || c._id),
    el("p", { class: "meta" }, `${c._id}${c.email ? ` · ${c.email}` : ""} · created ${when(c.created_at)}`),
    el("h2", {}, "Properties"), el("pre", {}, json(c.properties)),
    el("h2", {}, `Timeline (${answer.total})`),
    table([["When"], ["Kind"], ["What"]], entries, "Nothing happened yet."));
}

// ---- plugins ----

async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest("SHA-256", buffer);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export async function showPlugins() {
  loading("Plugins");
  let answer;
  try { answer = await api("GET", "/v1/plugins"); } catch (err) { failed("Plugins", err); return; }
  const write = can("plugins:write");
  const act = async (method, path, done) => {
    try { await api(method, path); toast(done); } catch (err) { toast(err.message); }
    showPlugins();
  };
  const rows = (answer.items || []).map((p) => {
    const at = p.version ? `/v1/plugins/${enc(p.name)}/${enc(p.version)}` : null;
    const limits = p.limits
      ? [`${Math.round(p.limits.memory_bytes / 1048576)} MiB`, `deadline ${p.limits.deadline}`, p.limits.fuel ? `fuel ${p.limits.fuel}` : ""].filter(Boolean).join(" · ")
      : "";
    const reuse = p.reuse ? `reused ${p.reuse.reused} · retired ${p.reuse.retired} · idle ${p.reuse.idle}` : "no reuse";
    return el("tr", { "data-plugin": `${p.name}@${p.version || ""}` },
      cell([el("strong", {}, p.name), " ", p.version || ""]),
      cell([el("span", { class: "status" }, p.state), p.reason ? el("p", { class: "error" }, p.reason) : null]),
      cell((p.action_types || []).join(", "), true),
      cell([p.load_ms === null || p.load_ms === undefined ? "" : `${p.load_ms} ms`, p.cache ? ` (${p.cache})` : "", el("br"), limits, el("br"), reuse], true),
      cell(p.sha256 ? el("code", { title: p.sha256 }, p.sha256.slice(0, 12)) : "", true),
      cell(write && at ? el("div", { class: "decide" },
        p.state === "disabled"
          ? el("button", { onclick: () => act("POST", `${at}/enable`, `Enabled ${p.name} ${p.version}`) }, "Enable")
          : el("button", { onclick: () => act("POST", `${at}/disable`, `Disabled ${p.name} ${p.version}`) }, "Disable"),
        p.source === "upload"
          ? el("button", { class: "reject", onclick: () => { if (confirm(`Remove ${p.name} ${p.version}?`)) act("DELETE", at, `Removed ${p.name} ${p.version}`); } }, "Remove")
          : null) : ""));
  });
  const upload = write ? uploadForm() : null;
  put($("view"), el("h1", {}, "Plugins"), upload,
    table([["Plugin"], ["State"], ["Action types", true], ["Load, limits, reuse", true], ["SHA-256", true], [""]], rows, "No plugins."));
}

function uploadForm() {
  const file = el("input", { type: "file", id: "plugin-file", accept: ".wasm,application/wasm" });
  const expected = el("input", { type: "text", id: "plugin-sha256", placeholder: "Expected SHA-256 (64 hex digits, from the plugin's author)" });
  const computed = el("p", { class: "meta", id: "plugin-computed" });
  const problem = el("pre", { class: "error", hidden: true });
  let bytes = null;
  let hash = "";
  file.addEventListener("change", async () => {
    bytes = file.files[0] ? await file.files[0].arrayBuffer() : null;
    hash = bytes ? await sha256Hex(bytes) : "";
    computed.textContent = bytes ? `${file.files[0].name}: ${bytes.byteLength} bytes, SHA-256 ${hash}` : "";
  });
  const send = async () => {
    problem.hidden = true;
    if (!bytes) { toast("Choose a .wasm file first."); return; }
    const want = expected.value.trim().toLowerCase();
    if (want && want !== hash) {
      problem.textContent = `The file's SHA-256 is ${hash}, not the expected ${want}: nothing was uploaded.`;
      problem.hidden = false;
      return;
    }
    try {
      // The server checks the hash again, on the bytes it received.
      const info = await api("POST", `/v1/plugins?sha256=${want || hash}`, bytes);
      toast(`Installed ${info.name} ${info.version}`);
      showPlugins();
    } catch (err) {
      problem.textContent = err.details || err.message;
      problem.hidden = false;
    }
  };
  return el("div", { class: "item", id: "plugin-upload" }, el("h2", {}, "Upload a plugin"),
    el("div", { class: "filters" }, el("div", {}, el("label", { for: "plugin-file" }, "Component (.wasm)"), file),
      el("div", {}, el("label", { for: "plugin-sha256" }, "Expected SHA-256 (optional)"), expected)),
    computed, problem, el("button", { class: "approve", id: "plugin-send", onclick: send }, "Upload"));
}

// ---- accounts ----

export async function showAccounts() {
  loading("Accounts");
  let configs;
  let accounts;
  try {
    configs = (await api("GET", "/api/v1/auth-configs")).items || [];
    accounts = (await api("GET", "/api/v1/connectedAccounts")).items || [];
  } catch (err) { failed("Accounts", err); return; }
  const write = can("accounts:write");
  const connect = async (config, entity) => {
    try {
      const answer = await api("POST", "/api/v1/connectedAccounts", {
        authConfigId: config.id, entityId: entity, redirectUrl: `${location.origin}/console#/accounts`,
      });
      if (answer.redirectUrl) { location.assign(answer.redirectUrl); return; }
      toast(`Connected ${config.appName} for ${entity}`);
    } catch (err) { toast(err.message); }
    showAccounts();
  };
  const configRows = configs.map((c) => {
    const entity = el("input", { type: "text", class: "entity", placeholder: "entity (user) id", value: "default" });
    return el("tr", { "data-config": c.id },
      cell([el("strong", {}, c.appName), " ", c.name]),
      cell(c.scheme.type || ""),
      cell((c.hosts || []).join(", "), true),
      cell(write && c.scheme.type === "oauth2"
        ? el("div", { class: "decide" }, entity, el("button", { class: "connect", onclick: () => connect(c, entity.value.trim() || "default") }, "Connect"))
        : ""));
  });
  const accountRows = accounts.map((a) => el("tr", { "data-account": a.id },
    cell([el("strong", {}, a.appName), " ", a.entityId]),
    cell([el("span", { class: "status" }, a.status), a.statusReason ? el("p", { class: "meta" }, a.statusReason) : null]),
    cell(a.tokenExpiresAt ? `token until ${new Date(a.tokenExpiresAt * 1000).toLocaleString()}` : "", true),
    cell(a.id, true),
    cell(write ? el("button", { class: "reject", onclick: async () => {
      if (!confirm(`Delete the ${a.appName} account of ${a.entityId}?`)) return;
      try { await api("DELETE", `/api/v1/connectedAccounts/${enc(a.id)}`); toast("Deleted"); } catch (err) { toast(err.message); }
      showAccounts();
    } }, "Delete") : "")));
  put($("view"),
    el("h1", {}, "Accounts"),
    el("h2", {}, "Auth configs"),
    table([["App"], ["Scheme"], ["Hosts", true], [""]], configRows, "No auth configs."),
    el("h2", {}, "Connected accounts"),
    table([["Account"], ["Status"], ["Token", true], ["Id", true], [""]], accountRows, "No connected accounts."));
}

// ---- API keys ----

const SCOPES = ["actions:read", "actions:write", "actions:approve", "actions:execute", "accounts:read",
  "accounts:write", "plugins:read", "plugins:write", "keys:read", "keys:write", "agents:read",
  "agents:write", "agents:trigger", "agents:approve", "contacts:read", "contacts:write",
  "events:read", "events:write", "identities:read"];

export async function showKeys() {
  loading("API keys");
  let answer;
  try { answer = await api("GET", "/v1/api-keys"); } catch (err) { failed("API keys", err); return; }
  const write = can("keys:write");
  const rows = (answer.api_keys || []).map((k) => el("tr", { "data-key": k.id },
    cell([el("strong", {}, k.name || k.id), el("p", { class: "meta" }, `${k.prefix}…`)]),
    cell(k.revoked_at ? el("span", { class: "status" }, `revoked ${when(k.revoked_at)}`) : el("span", { class: "status" }, "active")),
    cell(k.scopes.join(" "), true),
    cell(when(k.created_at), true),
    cell(write && !k.revoked_at && k.id !== state.session.key_id ? el("button", { class: "reject", onclick: async () => {
      if (!confirm(`Revoke ${k.name || k.id}? Clients using it stop at once.`)) return;
      try { await api("DELETE", `/v1/api-keys/${enc(k.id)}`); toast("Revoked"); } catch (err) { toast(err.message); }
      showKeys();
    } }, "Revoke") : "")));
  put($("view"), el("h1", {}, "API keys"), write ? mintForm() : null,
    table([["Key"], ["State"], ["Scopes", true], ["Created", true], [""]], rows, "No keys."));
}

function mintForm() {
  const name = el("input", { type: "text", id: "key-name", placeholder: "What the key is for" });
  const boxes = SCOPES.filter(can).map((scope) => el("label", { class: "scope" },
    el("input", { type: "checkbox", value: scope, checked: scope.endsWith(":read") }), scope));
  const shown = el("div", { id: "minted" });
  const mint = async () => {
    const scopes = boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
    try {
      const answer = await api("POST", "/v1/api-keys", { name: name.value.trim() || undefined, scopes });
      const secret = el("input", { type: "text", id: "minted-key", readonly: true, value: answer.key });
      put(shown, el("div", { class: "item minted" },
        el("p", {}, el("strong", {}, "Copy the key now: it is shown once and never again.")),
        secret,
        el("div", { class: "decide" },
          el("button", { onclick: async () => { await navigator.clipboard.writeText(secret.value); toast("Copied"); } }, "Copy"),
          el("button", { onclick: () => { put(shown, ); showKeys(); } }, "Done"))));
      secret.select();
    } catch (err) {
      put(shown, el("pre", { class: "error" }, err.details || err.message));
    }
  };
  return el("div", { class: "item", id: "key-mint" }, el("h2", {}, "Mint a key"),
    el("label", { for: "key-name" }, "Name"), name,
    el("label", {}, "Scopes (at most your own)"), el("div", { class: "scopes" }, boxes),
    el("button", { class: "approve", id: "key-mint-send", onclick: mint }, "Mint"), shown);
}
