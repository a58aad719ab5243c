#!/usr/bin/env node
// Fetch and verify targets from a published CFL library with tuf-js, a TUF client written
// independently of python-tuf, so the interop tests show the library is plain TUF and not
// "whatever our own client accepts".
//
// usage: node verify_with_tufjs.mjs --metadata-url URL --targets-url URL --root ROOT.json
//                                   --cache DIR TARGET_PATH...
//
// stdout: one JSON document {"schema_version": 1, "tuf_js": VERSION, "targets": [...]}, one entry
// per requested target: {"path", "sha256", "length"} when tuf-js downloaded and verified it, or
// {"path", "error"} when it refused it. stderr: one "error: ..." line per refusal.
// exit: 0 every target verified; 1 a refresh or a target failed verification; 2 usage error.

import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const require = createRequire(import.meta.url);
// tuf-js is CommonJS; require() keeps its named exports independent of ESM interop heuristics.
const { Updater } = require('tuf-js');
const TUF_JS_VERSION = require('tuf-js/package.json').version;

const FETCH_TIMEOUT_MS = 30_000;

function usage(message) {
  process.stderr.write(
    `error: ${message}\n` +
      'usage: verify_with_tufjs.mjs --metadata-url URL --targets-url URL --root ROOT.json ' +
      '--cache DIR TARGET_PATH...\n',
  );
  process.exit(2);
}

function describe(error) {
  // tuf-js error classes do not set `name`; the class name is what tells the failures apart.
  const kind = error?.constructor?.name ?? 'Error';
  return `${kind}: ${error?.message ?? String(error)}`;
}

function sha256File(path) {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      'metadata-url': { type: 'string' },
      'targets-url': { type: 'string' },
      root: { type: 'string' },
      cache: { type: 'string' },
    },
  });
} catch (error) {
  usage(error.message);
}
const { values, positionals: targets } = parsed;
for (const option of ['metadata-url', 'targets-url', 'root', 'cache']) {
  if (!values[option]) usage(`--${option} is required`);
}
if (targets.length === 0) usage('give at least one target path');
if (!existsSync(values.root)) usage(`--root ${values.root}: no such file`);

const metadataDir = join(values.cache, 'metadata');
const targetDir = join(values.cache, 'targets');
mkdirSync(metadataDir, { recursive: true });
mkdirSync(targetDir, { recursive: true });
// tuf-js starts from <metadataDir>/root.json; a cache that already has one has moved on from the
// bootstrap root and must keep what it trusts now.
const trustedRoot = join(metadataDir, 'root.json');
if (!existsSync(trustedRoot)) copyFileSync(values.root, trustedRoot);

const updater = new Updater({
  metadataDir,
  metadataBaseUrl: values['metadata-url'],
  targetDir,
  targetBaseUrl: values['targets-url'],
  config: { fetchTimeout: FETCH_TIMEOUT_MS, fetchRetry: 0 },
});

try {
  await updater.refresh();
} catch (error) {
  process.stderr.write(`error: refresh from ${values['metadata-url']}: ${describe(error)}\n`);
  process.exit(1);
}

const results = [];
let failed = false;
for (const [index, path] of targets.entries()) {
  try {
    const info = await updater.getTargetInfo(path);
    if (info === undefined) {
      throw new Error(`no trusted metadata lists target ${path}`);
    }
    // A fresh file per request: a cached copy must never stand in for a download.
    const downloaded = await updater.downloadTarget(info, join(targetDir, `${index}.bin`));
    results.push({ path, sha256: sha256File(downloaded), length: readFileSync(downloaded).length });
  } catch (error) {
    failed = true;
    results.push({ path, error: describe(error) });
    process.stderr.write(`error: ${path}: ${describe(error)}\n`);
  }
}

process.stdout.write(`${JSON.stringify({ schema_version: 1, tuf_js: TUF_JS_VERSION, targets: results })}\n`);
process.exit(failed ? 1 : 0);
