import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeHarness, type Harness } from './api-harness.js';

describe('the console served at /', () => {
  let h: Harness;
  let missing: Harness;
  const dir = mkdtempSync(join(tmpdir(), 'infraflow-console-'));
  beforeAll(async () => {
    mkdirSync(join(dir, 'assets'));
    writeFileSync(join(dir, 'index.html'), '<!doctype html><title>console</title><div id="root"></div>');
    writeFileSync(join(dir, 'assets', 'index-abc.js'), 'console.log(1)');
    h = await makeHarness('sqlite', { server: { console: dir } });
    missing = await makeHarness('sqlite', { server: { console: join(dir, 'nope') } });
  });
  afterAll(async () => {
    await h?.close();
    await missing?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers index.html for the app\'s pages, with a strict CSP and no caching', async () => {
    for (const path of ['/', '/runs/run_1', '/identity/users?x=1']) {
      const res = await h.req('GET', path);
      expect(res.statusCode, path).toBe(200);
      expect(res.headers['content-type']).toMatch(/text\/html/);
      expect(res.body).toContain('<div id="root">');
      expect(res.headers['content-security-policy']).toMatch(/default-src 'self'/);
      expect(res.headers['cache-control']).toBe('no-cache');
    }
  });

  it('serves hashed assets with a year of caching', async () => {
    const res = await h.req('GET', '/assets/index-abc.js');
    expect(res.statusCode).toBe(200);
    expect(res.body).toBe('console.log(1)');
    expect(res.headers['cache-control']).toMatch(/immutable/);
  });

  it('keeps problem+json 404s for the API, unknown files and writes', async () => {
    for (const [method, path] of [['GET', '/api/v1/nope'], ['GET', '/assets/missing.js'], ['POST', '/somewhere']] as const) {
      const res = await h.req(method, path);
      expect(res.statusCode, path).toBe(404);
      expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
    }
  });

  it('says how to build the console when it is missing', async () => {
    const res = await missing.req('GET', '/');
    expect(res.statusCode).toBe(503);
    expect(res.body).toContain('npm run build:web');
  });
});
