/**
 * `slack_post_message`: posts a message to a Slack channel, as the connected
 * account, with Slack's Web API method `chat.postMessage`.
 *
 * `POST {base_url}/api/chat.postMessage` with the JSON body
 * `{"channel", "text", "blocks"?, "thread_ts"?}`. The host adds
 * `Authorization: Bearer <token>` (a bot or user token, or an OAuth2 access
 * token it refreshes); this code never sees it.
 *
 * Slack answers almost everything with HTTP 200 and `{"ok": true, ...}` or
 * `{"ok": false, "error": "<code>"}`; only rate limits (429 with
 * `Retry-After`, in seconds) and outages (5xx) use the HTTP status.
 *
 * Account metadata: `{"base_url": "https://slack.com"}`, optional (tests
 * point it at a local peer).
 *
 * ## How this maps onto the WIT contract (ComponentizeJS)
 *
 * - Each export of the `executor` world is a top-level function named in
 *   camelCase (`reuse-policy` → `reusePolicy`); records are plain objects with
 *   camelCase fields, enums are strings, `option<T>` is `T | undefined`, u64
 *   is a BigInt, variants are `{ tag, val }`.
 * - `result<T, E>`: returning a value means `ok(value)` (returning
 *   `{ tag: 'ok' | 'err', val }` is also understood); throwing means
 *   `err(...)`. The bindings take the error from the thrown value's own
 *   `payload` property if it has one ({@link Failure} does), else the thrown
 *   value itself. A stray `Error` (no `payload`) is no valid `execute-error`:
 *   the component traps, which the host counts as a plugin fault.
 * - Exports are synchronous in WIT but may be `async` here: the bindings
 *   await the returned promise and the engine (StarlingMonkey) drives its
 *   event loop, polling `wasi:http` futures, until it settles. That is how
 *   `execute` waits for `fetch`.
 */
import { write as log } from 'actionhost:executor/log@0.1.2';

const NAME = 'slack_post_message';
const BASE_URL = 'https://slack.com';
/** Slack's limit on blocks per message. */
const MAX_BLOCKS = 50;

/** JSON Schema (2020-12) of the params. */
const PARAMS_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'SlackPostMessageParams',
  type: 'object',
  properties: {
    channel: {
      description: 'Channel id (`C0123456789`), or a name such as `#general`.',
      type: 'string',
      minLength: 1,
    },
    text: {
      description:
        'Message text (Slack mrkdwn); also the notification and fallback text when `blocks` are given.',
      type: 'string',
      minLength: 1,
    },
    blocks: {
      description: 'Block Kit layout blocks, at most 50.',
      type: 'array',
      maxItems: MAX_BLOCKS,
      items: {
        type: 'object',
        properties: { type: { type: 'string' } },
        required: ['type'],
      },
    },
    thread_ts: {
      description: "The parent message's `ts`, to reply in its thread.",
      type: 'string',
    },
  },
  required: ['channel', 'text'],
  additionalProperties: false,
};

/** JSON Schema of the output. */
const OUTPUT_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'SlackPostMessageOutput',
  type: 'object',
  properties: {
    channel: { description: 'The channel id the message was posted to.', type: 'string' },
    ts: { description: "The message's timestamp: its id within the channel.", type: 'string' },
    ok: { const: true },
  },
  required: ['channel', 'ts', 'ok'],
};

/** Slack error codes (`{"ok": false, "error": ...}`) by outcome. */
const UNAUTHORIZED = new Set([
  'invalid_auth', 'not_authed', 'account_inactive', 'token_revoked', 'token_expired',
  'missing_scope', 'no_permission',
]);
const RATE_LIMITED = new Set(['ratelimited', 'rate_limited']);
const TRANSIENT = new Set(['internal_error', 'fatal_error', 'service_unavailable', 'request_timeout']);
/** Errors about one param: the JSON Pointer of the field to blame. */
const FIELD_ERRORS = new Map([
  ['channel_not_found', '/channel'],
  ['not_in_channel', '/channel'],
  ['is_archived', '/channel'],
  ['no_text', '/text'],
  ['msg_too_long', '/text'],
  ['invalid_blocks', '/blocks'],
  ['invalid_blocks_format', '/blocks'],
]);

/**
 * An `execute-error` to throw from `execute`: the bindings send its `payload`
 * (the WIT variant as `{ tag, val }`) as the `err` of the result.
 */
class Failure extends Error {
  constructor(tag, val) {
    super(`${tag}: ${typeof val === 'string' ? val : JSON.stringify(val, bigints)}`);
    this.payload = { tag, val };
  }
}

const bigints = (_key, value) => (typeof value === 'bigint' ? value.toString() : value);

/** What the plugin provides; called once at load time. */
export function describe() {
  return {
    name: 'slack-message',
    version: '1.0.0',
    description: 'Posts messages to Slack channels',
    actionTypes: [
      {
        name: NAME,
        title: 'Post a Slack message',
        description:
          'Posts a message to a Slack channel, or as a reply in a thread, as the connected ' +
          'Slack account, and returns the channel and the timestamp (`ts`) of the new message.',
        paramsSchema: JSON.stringify(PARAMS_SCHEMA),
        outputSchema: JSON.stringify(OUTPUT_SCHEMA),
        authSchemes: ['oauth2', 'bearer'],
        // Slack has no idempotency key: a retry after an unknown outcome
        // could post the message twice.
        idempotent: false,
        requiresApproval: false,
      },
    ],
    outboundHosts: [{ scheme: 'https', host: 'slack.com', port: undefined }],
  };
}

/** Instances may be reused: the plugin keeps nothing between executions. */
export function reusePolicy() {
  return { maxCalls: 1000, maxIdle: 0 };
}

/**
 * Business rules beyond the schema: every problem, as `field-error`s.
 * @returns {Array<{path: string, message: string}>}
 */
function check(actionType, params) {
  if (actionType !== NAME) {
    return [{ path: '', message: `unknown action type ${JSON.stringify(actionType)}` }];
  }
  if (params === null || typeof params !== 'object' || Array.isArray(params)) {
    return [{ path: '', message: 'params must be a JSON object' }];
  }
  const errors = [];
  if (typeof params.channel !== 'string' || params.channel.trim() === '') {
    errors.push({ path: '/channel', message: 'must name a channel' });
  }
  if (typeof params.text !== 'string' || params.text.trim() === '') {
    errors.push({ path: '/text', message: 'must not be blank' });
  }
  if (params.blocks !== undefined) {
    if (!Array.isArray(params.blocks) || params.blocks.length === 0) {
      errors.push({ path: '/blocks', message: 'must hold at least one block when given' });
    } else if (params.blocks.length > MAX_BLOCKS) {
      errors.push({ path: '/blocks', message: `Slack takes at most ${MAX_BLOCKS} blocks` });
    }
  }
  return errors;
}

/** `check` on params still in JSON text. */
function checkJson(actionType, params) {
  try {
    return check(actionType, JSON.parse(params));
  } catch (err) {
    return [{ path: '', message: `params are not JSON: ${err.message}` }];
  }
}

/** `validate`: returns nothing when the params pass, throws the list otherwise. */
export function validate(actionType, params) {
  const errors = checkJson(actionType, params);
  if (errors.length > 0) throw errors;
}

/** `Retry-After` (delay-seconds or an HTTP date) in milliseconds, as a u64. */
function retryAfterMs(headers) {
  const value = headers.get('retry-after');
  if (value === null) return undefined;
  // At most a day: an absurd value must not overflow the u64.
  const clamp = (ms) => BigInt(Math.min(Math.max(0, Math.ceil(ms)), 86_400_000));
  const seconds = Number(value.trim());
  if (Number.isFinite(seconds) && seconds >= 0) return clamp(seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : clamp(date - Date.now());
}

/** The `execute-error` for Slack's `{"ok": false, "error": code}`. */
function slackError(code, response) {
  const message = `Slack refused the message: ${code}`;
  if (UNAUTHORIZED.has(code)) return new Failure('unauthorized', message);
  if (RATE_LIMITED.has(code)) {
    return new Failure('rate-limited', { message, retryAfterMs: retryAfterMs(response.headers) });
  }
  if (TRANSIENT.has(code)) return new Failure('transient', message);
  const path = FIELD_ERRORS.get(code);
  if (path) return new Failure('invalid-input', [{ path, message }]);
  return new Failure('permanent', message);
}

/** The API base URL: the account metadata's `base_url`, else Slack's. */
function accountBaseUrl(account) {
  let metadata = {};
  try {
    metadata = account ? JSON.parse(account.metadata) : {};
  } catch {
    // The host only stores JSON objects; fall back to the default.
  }
  const url = typeof metadata?.base_url === 'string' ? metadata.base_url : BASE_URL;
  return url.replace(/\/+$/, '');
}

/** Posts the message; see the module comment for the API and error mapping. */
export async function execute(request) {
  const errors = checkJson(request.actionType, request.params);
  if (errors.length > 0) throw new Failure('invalid-input', errors);
  const params = JSON.parse(request.params);
  const baseUrl = accountBaseUrl(request.account);
  const body = { channel: params.channel, text: params.text };
  if (params.blocks !== undefined) body.blocks = params.blocks;
  if (params.thread_ts !== undefined) body.thread_ts = params.thread_ts;

  log('info', `posting a message to ${params.channel}${params.thread_ts ? ' (thread reply)' : ''}`);
  let response;
  try {
    response = await fetch(`${baseUrl}/api/chat.postMessage`, {
      method: 'POST',
      headers: { 'content-type': 'application/json; charset=utf-8' },
      body: JSON.stringify(body),
    });
  } catch (err) {
    // No response: refused or dropped connection, DNS, timeout (StarlingMonkey's
    // fetch rejects with one generic TypeError for all of them).
    throw new Failure('transient', `could not reach Slack: ${err?.message ?? err}`);
  }

  const status = response.status;
  if (status === 429) {
    throw new Failure('rate-limited', {
      message: 'Slack rate limit (HTTP 429)',
      retryAfterMs: retryAfterMs(response.headers),
    });
  }
  if (status >= 500) throw new Failure('transient', `Slack answered HTTP ${status}`);
  if (status === 401 || status === 403) throw new Failure('unauthorized', `Slack answered HTTP ${status}`);
  if (status < 200 || status >= 300) throw new Failure('permanent', `Slack answered HTTP ${status}`);

  let text;
  try {
    text = await response.text();
  } catch (err) {
    // Slack accepted the request (2xx): the message may well be posted, so
    // a retry could post it twice. Permanent, saying the outcome is unknown.
    throw new Failure('permanent', `outcome unknown: Slack answered HTTP ${status} but its body broke off: ${err?.message ?? err}`);
  }
  let answer = null;
  try {
    answer = JSON.parse(text);
  } catch {
    // Reported below.
  }
  if (answer === null || typeof answer !== 'object' || typeof answer.ok !== 'boolean') {
    throw new Failure('permanent', `unexpected answer from Slack: ${text.slice(0, 200)}`);
  }
  if (!answer.ok) throw slackError(String(answer.error ?? 'unknown_error'), response);
  log('info', `posted message ${answer.ts} to ${answer.channel}`);
  return JSON.stringify({ channel: answer.channel, ts: answer.ts, ok: true });
}
