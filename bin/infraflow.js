#!/usr/bin/env node
// The `infraflow` command. Runs the TypeScript sources through tsx (no build
// step needed after `npm ci`); uses the compiled output (dist/) when the
// sources are not there.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'src', 'cli', 'main.ts');
const built = join(root, 'dist', 'cli', 'main.js');
let mod;
if (!existsSync(source) && existsSync(built)) {
  mod = await import(pathToFileURL(built).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  mod = await import(pathToFileURL(source).href);
}
process.exitCode = await mod.runCli(process.argv.slice(2), mod.nodeIo());
