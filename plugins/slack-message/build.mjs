// Builds dist/slack-message.wasm: src/index.js componentized against the
// `actionhost:executor/executor` world of ./wit (a link to the 0.1.2
// contract) by ComponentizeJS, the version pinned in package-lock.json.
//
// Usage: `npm ci && node build.mjs` (or `npm run build`).
//
// Uses the JS API rather than `jco componentize`, whose CLI fails to resolve
// the WIT path on some machines; every path given to it is absolute.
import { componentize } from '@bytecodealliance/componentize-js';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const OUTPUT = 'slack-message.wasm';

const here = dirname(fileURLToPath(import.meta.url));
const output = join(here, 'dist', OUTPUT);
const started = performance.now();
const { component } = await componentize({
  sourcePath: join(here, 'src', 'index.js'),
  witPath: join(here, 'wit'),
  worldName: 'executor',
  // The plugin exports no `wasi:http/incoming-handler`.
  disableFeatures: ['fetch-event'],
});
await mkdir(dirname(output), { recursive: true });
await writeFile(output, component);
const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(`${output}: ${component.length} bytes in ${seconds} s`);
