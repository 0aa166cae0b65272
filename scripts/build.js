// Builds dist/ from src/ with esbuild: every module transpiled to JavaScript
// one to one (no bundling, so `import()` stays lazy and stack traces name the
// source file). Type checking is `npm run typecheck`; this only emits.
//
//   node scripts/build.js            build now
//   node scripts/build.js --if-stale build only when src/ changed since the last build
//
// `ensureBuilt()` is what bin/infraflow.js and bin/infraflow-server.js call
// first: a checkout whose dist/ is missing or older than src/ is rebuilt
// (about half a second) under a lock, so that `npm start`, `infraflow` and the
// tests that spawn them always run the current sources. An installed package
// without src/ runs the dist/ it ships.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SRC = join(ROOT, 'src');
const DIST = join(ROOT, 'dist');
const STAMP = join(DIST, '.build-stamp.json');
const LOCK = join(ROOT, '.dist.lock');

function sources(dir = SRC, out = []) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) sources(p, out);
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** What dist/ was built from: the newest source mtime, the number of sources and this script's own mtime. */
function fingerprint(files) {
  let newest = statSync(fileURLToPath(import.meta.url)).mtimeMs;
  for (const f of files) newest = Math.max(newest, statSync(f).mtimeMs);
  return { newest, count: files.length };
}

function isFresh(fp) {
  if (!existsSync(STAMP)) return false;
  try {
    const s = JSON.parse(readFileSync(STAMP, 'utf8'));
    return s.newest === fp.newest && s.count === fp.count;
  } catch {
    return false;
  }
}

/** Builds dist/ from the given sources (defaults: all of src/). */
export async function build(files = sources()) {
  const fp = fingerprint(files);
  const esbuild = await import('esbuild');
  rmSync(DIST, { recursive: true, force: true });
  await esbuild.build({
    entryPoints: files,
    outdir: DIST,
    outbase: SRC,
    format: 'esm',
    platform: 'node',
    target: 'node22',
    sourcemap: 'linked',
    logLevel: 'warning',
  });
  writeFileSync(STAMP, JSON.stringify(fp));
  return relative(ROOT, DIST);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Rebuilds dist/ when src/ is newer (or dist/ is missing; always with
 * `force`), one process at a time; no-op without src/.
 */
export async function ensureBuilt({ force = false } = {}) {
  if (!existsSync(SRC)) return;
  for (;;) {
    const files = sources();
    if (!force && isFresh(fingerprint(files))) return;
    try {
      mkdirSync(LOCK);
    } catch {
      // another process is building: wait for it (a lock left by a crash expires)
      try {
        if (Date.now() - statSync(LOCK).mtimeMs > 30_000) rmSync(LOCK, { recursive: true, force: true });
      } catch {
        /* gone meanwhile */
      }
      await sleep(50);
      continue;
    }
    try {
      const again = sources();
      if (force || !isFresh(fingerprint(again))) await build(again);
    } finally {
      rmSync(LOCK, { recursive: true, force: true });
    }
    return;
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const t0 = performance.now();
  await ensureBuilt({ force: !process.argv.includes('--if-stale') });
  process.stdout.write(`built dist/ in ${Math.round(performance.now() - t0)} ms\n`);
}
