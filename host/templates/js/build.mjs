// Builds the component: src/index.js componentized against the
// `actionhost:executor/executor` world of ./wit by ComponentizeJS (the
// version pinned in package-lock.json). `actionhost plugin build` runs
// `npm ci` and then this script with the output path.
//
// Usage: node build.mjs [OUTPUT]   (default dist/{{name}}.wasm)
import { componentize } from '@bytecodealliance/componentize-js';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const output = resolve(process.argv[2] ?? join(here, 'dist', '{{name}}.wasm'));
const started = performance.now();
// The JS API with absolute paths (the `jco componentize` command fails to
// find the WIT folder on some machines).
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
