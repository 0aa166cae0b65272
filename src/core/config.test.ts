import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from './config.js';
import { ValidationError } from './errors.js';

/** The config file is strict: a typo is refused with its path instead of being ignored. */
describe('config file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'h12b-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  it('refuses an unknown top-level key, naming it', () => {
    const e = (() => { try { loadConfig({ file: file('a.yaml', 'logLevl: debug\n'), env: {} }); } catch (x) { return x; } })() as ValidationError;
    expect(e).toBeInstanceOf(ValidationError);
    expect(e.message).toMatch(/key logLevl: unknown field "logLevl"/);
    expect(e.details).toMatchObject({ field: 'logLevl' });
  });

  it('refuses an unknown nested key with its path', () => {
    expect(() => loadConfig({ file: file('b.yaml', 'http:\n  prot: 9000\n'), env: {} })).toThrow(/http\.prot: unknown field "prot"/);
    expect(() => loadConfig({ file: file('c.yaml', 'worker:\n  concurency: 3\n'), env: {} })).toThrow(/worker\.concurency/);
  });

  it('accepts every documented key', () => {
    const c = loadConfig({ file: file('d.yaml', 'dataDir: /tmp/x\nhttp:\n  port: 9000\nworker:\n  concurrency: 3\nsim:\n  speed: 2\nlogLevel: warn\n'), env: {} });
    expect(c.http.port).toBe(9000);
    expect(c.worker.concurrency).toBe(3);
  });
});
