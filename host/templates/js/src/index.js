/**
 * {{name}}: an actionhost executor plugin, in JavaScript (ComponentizeJS).
 *
 * Build:  actionhost plugin build     (writes dist/{{name}}.wasm; runs `npm ci`
 *                                      for the pinned ComponentizeJS first)
 * Test:   actionhost plugin test dist/{{name}}.wasm --case tests/basic.case.json
 *
 * The contract is the WIT world in `wit/executor.wit`; actionhost's
 * docs/plugins.md explains every function, error variant and limit.
 *
 * ComponentizeJS conventions: each export is a top-level camelCase function;
 * records are plain objects with camelCase fields, enums are strings,
 * variants are `{ tag, val }`. For a `result<T, E>`, returning is `ok`;
 * throwing an object with a `payload` property is `err(payload)`. Any other
 * exception traps the instance (the host reports it with the plugin's log).
 * Exports may be `async`: `await fetch(...)` works, over wasi:http, and the
 * host injects the account's credentials into each request.
 */
import { write as log } from 'actionhost:executor/log@0.1.3';

const ACTION = '{{action}}';

/** JSON Schema (2020-12) of the params; the host checks params against it first. */
const PARAMS_SCHEMA = JSON.stringify({
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, description: 'Who to greet.' },
    shout: { type: 'boolean', description: 'Greet in capitals.' },
  },
  required: ['name'],
  additionalProperties: false,
});

/** An `err` of a `result`: the bindings send its `payload`. */
class Failure extends Error {
  constructor(payload) {
    super(JSON.stringify(payload));
    this.payload = payload;
  }
}

/** Called once at load; must be deterministic and must not call out. */
export function describe() {
  return {
    name: '{{name}}',
    version: '0.1.0',
    description: 'Greets someone (a skeleton to start from).',
    actionTypes: [
      {
        name: ACTION,
        title: 'Greet someone',
        description: 'Returns a greeting for `name`.',
        paramsSchema: PARAMS_SCHEMA,
        outputSchema: undefined,
        // 'none': no connected account needed. A plugin calling an API lists
        // the schemes it accepts ('bearer', 'oauth2', ...).
        authSchemes: ['none'],
        idempotent: true,
        requiresApproval: false,
      },
    ],
    // Every host the plugin calls: { scheme: 'https', host: 'api.example.com', port: undefined }.
    outboundHosts: [],
  };
}

/**
 * Let the host keep an instance between executions of one account: a
 * JavaScript instance costs about 1 ms to create. Globals then survive from
 * one execution to the next (of the same account only).
 */
export function reusePolicy() {
  return { maxCalls: 1000, maxIdle: 0 };
}

/** Business rules the schema cannot express; report every problem. */
export function validate(actionType, params) {
  const errors = [];
  if (actionType !== ACTION) errors.push({ path: '', message: `unknown action type ${actionType}` });
  if (JSON.parse(params).name.trim() === '') errors.push({ path: '/name', message: 'must not be blank' });
  if (errors.length > 0) throw new Failure(errors);
}

/** One attempt of an action: the output as JSON text, or throw a Failure. */
export function execute(request) {
  const { name, shout } = JSON.parse(request.params);
  if (typeof name !== 'string') throw new Failure({ tag: 'permanent', val: 'name is missing' });
  let greeting = `Hello, ${name}!`;
  if (shout) greeting = greeting.toUpperCase();
  log('info', `greeting ${name} (attempt ${request.attempt})`);
  return JSON.stringify({ greeting });
}
