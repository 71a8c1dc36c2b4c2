// The actionhost console: sign-in and routing. The pages are in review.js
// (inbox, actions) and manage.js (agents, contacts, plugins, accounts,
// keys); core.js has what they share. Every value from the server is
// rendered as text (textContent), never as markup; the page holds no key.

import { $, api, can, state, toast } from "./core.js";
import { showInbox, showActions, showAction, inboxKey } from "./review.js";
import {
  showAgents, showAgent, showRun, showContacts, showContact, showPlugins, showAccounts, showKeys,
} from "./manage.js";

// ---- signing in and out ----

// The sign-in form. A session that ended under a page (it expired, or its
// key was revoked) keeps that page hidden, edits and all, for after the
// next sign-in; signing out clears it.
function showSignIn(message, keepPage) {
  $("bar").hidden = true;
  if (keepPage) $("view").hidden = true;
  else $("view").replaceChildren();
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message || "";
  $("api-key").focus();
}
state.onSignedOut = (message) => showSignIn(message, true);

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

// The pages, the scope each needs to be shown, and how a hash reaches them.
const PAGES = [
  { nav: "nav-inbox", scope: "actions:read", match: /^#\/inbox/, show: () => showInbox() },
  { nav: "nav-actions", scope: "actions:read", match: /^#\/actions\/(.+)$/, show: (id) => showAction(id) },
  { nav: "nav-actions", scope: "actions:read", match: /^#\/actions/, show: () => showActions() },
  { nav: "nav-agents", scope: "agents:read", match: /^#\/runs\/(.+)$/, show: (id) => showRun(id) },
  { nav: "nav-agents", scope: "agents:read", match: /^#\/agents\/(.+)$/, show: (id) => showAgent(id) },
  { nav: "nav-agents", scope: "agents:read", match: /^#\/agents/, show: () => showAgents() },
  { nav: "nav-contacts", scope: "contacts:read", match: /^#\/contacts\/(.+)$/, show: (id) => showContact(id) },
  { nav: "nav-contacts", scope: "contacts:read", match: /^#\/contacts/, show: () => showContacts() },
  { nav: "nav-plugins", scope: "plugins:read", match: /^#\/plugins/, show: () => showPlugins() },
  { nav: "nav-accounts", scope: "accounts:read", match: /^#\/accounts/, show: () => showAccounts() },
  { nav: "nav-keys", scope: "keys:read", match: /^#\/keys/, show: () => showKeys() },
];

function started() {
  $("sign-in").hidden = true;
  $("bar").hidden = false;
  $("who").textContent = `${state.session.user_email} · ${state.session.key_name}`;
  // Only the pages the session's scopes may read are offered.
  for (const page of PAGES) $(page.nav).hidden = !PAGES.some((p) => p.nav === page.nav && can(p.scope));
  const view = $("view");
  if (view.hidden && view.childElementCount) {
    view.hidden = false;
    toast("Signed in again: the page is as you left it.");
    return;
  }
  view.hidden = false;
  if (!location.hash) location.hash = "#/inbox";
  route();
}

function route() {
  if (!state.session) return;
  const hash = location.hash || "#/inbox";
  for (const link of document.querySelectorAll("header nav a")) {
    link.classList.toggle("active", hash.startsWith(link.getAttribute("href")));
  }
  const page = PAGES.find((p) => p.match.test(hash)) || PAGES[0];
  const found = hash.match(page.match);
  page.show(found && found[1] ? decodeURIComponent(found[1]) : undefined);
}

document.addEventListener("keydown", (event) => {
  if (!location.hash.startsWith("#/inbox") || !state.session) return;
  if (["INPUT", "TEXTAREA", "SELECT"].includes(event.target.tagName)) return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (inboxKey(event)) event.preventDefault();
});

window.addEventListener("hashchange", route);
$("sign-in").addEventListener("submit", signIn);
$("sign-out").addEventListener("click", signOut);

// A reloaded page goes on with its session, if it has one.
api("GET", "/console/session")
  .then((session) => { state.session = session; started(); })
  .catch(() => showSignIn());
