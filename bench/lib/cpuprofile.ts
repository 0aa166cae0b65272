/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`, e.g. `npm run bench:api -- --profile DIR`):
 *
 *   npx tsx bench/lib/cpuprofile.ts FILE [--top N] [--match TEXT]
 *
 * Prints self time by function and by package/file, and total (inclusive) time
 * of the functions whose name or file contains --match (e.g. `--match authenticate`),
 * with the callers of those frames (`--callers`: the stack above them, a few frames deep).
 */
import { readFileSync } from 'node:fs';

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number; children?: number[] }
interface Profile { nodes: Node[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[] }

const argv = process.argv.slice(2);
const file = argv.find((a) => !a.startsWith('--') && argv[argv.indexOf(a) - 1] !== '--top' && argv[argv.indexOf(a) - 1] !== '--match');
if (!file) {
  process.stderr.write('usage: tsx bench/lib/cpuprofile.ts FILE [--top N] [--match TEXT]\n');
  process.exit(2);
}
const top = argv.includes('--top') ? Number(argv[argv.indexOf('--top') + 1]) : 30;
const match = argv.includes('--match') ? argv[argv.indexOf('--match') + 1] : undefined;
const callers = argv.includes('--callers');
const prof = JSON.parse(readFileSync(file, 'utf8')) as Profile;

const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const selfUs = new Map<number, number>();
for (let i = 0; i < prof.samples.length; i++) selfUs.set(prof.samples[i]!, (selfUs.get(prof.samples[i]!) ?? 0) + (prof.timeDeltas[i] ?? 0));
const total = [...selfUs.values()].reduce((a, b) => a + b, 0);

const short = (url: string) => {
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const src = url.indexOf('/src/');
  return src >= 0 ? url.slice(src + 1) : url.replace(/^file:\/\//, '') || '(native)';
};
const label = (n: Node) => `${n.callFrame.functionName || '(anonymous)'} ${short(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
const pct = (us: number) => `${((us / total) * 100).toFixed(1).padStart(5)}%`;

const fn = new Map<string, number>();
const pkg = new Map<string, number>();
for (const [id, us] of selfUs) {
  const n = byId.get(id)!;
  fn.set(label(n), (fn.get(label(n)) ?? 0) + us);
  const p = short(n.callFrame.url);
  pkg.set(p, (pkg.get(p) ?? 0) + us);
}
const print = (title: string, m: Map<string, number>) => {
  process.stdout.write(`\n${title}\n`);
  for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${pct(us)}  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}\n`);
};
process.stdout.write(`${file}: ${(total / 1e6).toFixed(1)} s sampled\n`);
print('self time by function', fn);
print('self time by package / file', pkg);

if (match) {
  // inclusive time: a sample counts once for every distinct matching frame on its stack
  const incl = new Map<string, number>();
  for (let i = 0; i < prof.samples.length; i++) {
    const seen = new Set<string>();
    for (let id: number | undefined = prof.samples[i]; id !== undefined; id = parent.get(id)) {
      const n = byId.get(id)!;
      const l = label(n);
      if (!seen.has(l) && (l.includes(match))) {
        seen.add(l);
        incl.set(l, (incl.get(l) ?? 0) + (prof.timeDeltas[i] ?? 0));
      }
    }
  }
  print(`total time of frames matching "${match}"`, incl);
}

if (match && callers) {
  const stacks = new Map<string, number>();
  for (let i = 0; i < prof.samples.length; i++) {
    for (let id: number | undefined = prof.samples[i]; id !== undefined; id = parent.get(id)) {
      if (!label(byId.get(id)!).includes(match)) continue;
      const chain: string[] = [];
      for (let p = parent.get(id); p !== undefined && chain.length < 6; p = parent.get(p)) chain.push(label(byId.get(p)!));
      const key = chain.join(' < ');
      stacks.set(key, (stacks.get(key) ?? 0) + (prof.timeDeltas[i] ?? 0));
      break;
    }
  }
  print(`callers of "${match}"`, stacks);
}
