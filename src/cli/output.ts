import { yaml } from './lazy.js';

export type OutputFormat = 'table' | 'json' | 'yaml';
export interface Column<T = any> {
  header: string;
  get: (row: T) => unknown;
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'number' && v > 1e12 && v < 1e14) return new Date(v).toISOString().replace(/\.\d+Z$/, 'Z');
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v).replace(/\s+/g, ' ');
}

export function renderTable<T>(rows: T[], columns: Column<T>[]): string {
  const data = rows.map((r) => columns.map((c) => cell(c.get(r))));
  const widths = columns.map((c, i) => Math.min(60, Math.max(c.header.length, ...data.map((d) => d[i]!.length))));
  const line = (cells: string[]) => cells.map((s, i) => (s.length > widths[i]! ? s.slice(0, widths[i]! - 1) + '…' : s.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(columns.map((c) => c.header.toUpperCase())), ...data.map(line)].join('\n') + '\n';
}

/** Prints a list (table, json or yaml). */
export function printList(out: NodeJS.WritableStream, format: OutputFormat, rows: any[], columns: Column<any>[], extra?: { nextCursor?: string | null }): void {
  if (format === 'json') out.write(JSON.stringify({ items: rows, ...(extra?.nextCursor !== undefined ? { nextCursor: extra.nextCursor } : {}) }, null, 2) + '\n');
  else if (format === 'yaml') out.write(yaml().stringify({ items: rows, ...(extra?.nextCursor ? { nextCursor: extra.nextCursor } : {}) }));
  else {
    out.write(rows.length ? renderTable(rows, columns) : 'No items.\n');
    if (extra?.nextCursor) out.write(`(more: --cursor ${extra.nextCursor})\n`);
  }
}

/** Prints one object: table is a key/value listing. */
export function printObject(out: NodeJS.WritableStream, format: OutputFormat, obj: unknown): void {
  if (format === 'json') out.write(JSON.stringify(obj, null, 2) + '\n');
  else if (format === 'yaml') out.write(yaml().stringify(obj));
  else {
    const rec = (obj ?? {}) as Record<string, unknown>;
    const w = Math.max(...Object.keys(rec).map((k) => k.length), 1);
    for (const [k, v] of Object.entries(rec)) {
      if (v !== null && typeof v === 'object') out.write(`${k.padEnd(w)}  ${yaml().stringify(v).trimEnd().split('\n').join('\n' + ' '.repeat(w + 2))}\n`);
      else out.write(`${k.padEnd(w)}  ${cell(v)}\n`);
    }
  }
}
