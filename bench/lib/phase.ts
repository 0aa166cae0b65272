/**
 * Runs one benchmark phase in its own process, so that every system is
 * measured on a fresh heap with its own connections, and so that the parent
 * can count the database's committed transactions after this process (and
 * every connection it held) is gone. Prints `RESULT <json>` as its last line.
 *
 *   tsx bench/lib/phase.ts '{"kind":"dbos","url":"postgres://…","spec":{…},"warmupRuns":8}'
 */
import type { WorkloadResult, WorkloadSpec } from './workload.js';

export type PhaseRequest =
  | { kind: 'engine'; dialect: 'sqlite' | 'postgres'; url: string; spec: WorkloadSpec; warmupRuns: number }
  | { kind: 'dbos'; url: string; spec: WorkloadSpec; warmupRuns: number }
  | { kind: 'pgboss'; url: string; spec: WorkloadSpec; warmupRuns: number };

async function main(): Promise<void> {
  const req = JSON.parse(process.argv[2] ?? '') as PhaseRequest;
  let result: WorkloadResult;
  switch (req.kind) {
    case 'engine': {
      const { runEngine } = await import('./engine-workload.js');
      result = await runEngine(req.dialect, req.url, req.spec, req.warmupRuns);
      break;
    }
    case 'dbos': {
      const { runDbos } = await import('./peers/dbos.js');
      result = await runDbos(req.url, req.spec, req.warmupRuns);
      break;
    }
    case 'pgboss': {
      const { runPgBoss } = await import('./peers/pgboss.js');
      result = await runPgBoss(req.url, req.spec, req.warmupRuns);
      break;
    }
  }
  process.stdout.write(`\nRESULT ${JSON.stringify(result)}\n`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
