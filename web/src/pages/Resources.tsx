import { useEffect, useMemo, useRef, useState } from 'react';
import { useInfiniteQuery, useQueryClient } from '@tanstack/react-query';
import { createColumnHelper, flexRender, getCoreRowModel, useReactTable } from '@tanstack/react-table';
import { useVirtualizer } from '@tanstack/react-virtual';
import { api, call } from '../api/client';
import { useEventStream } from '../api/sse';
import { useSession } from '../app/session';
import { Link, navigate, useLocation } from '../app/router';
import { ago, Page, Phase, ProblemBox } from '../ui';

interface Row { id: string; kind: string; name: string; project: string; status: { phase: string }; labels: Record<string, string>; updatedAt: number }

const PAGE = 500;
const col = createColumnHelper<Row>();
const columns = [
  col.accessor('name', { header: 'Name', cell: (c) => <Link to={`/resources/${c.row.original.id}`}>{c.getValue()}</Link> }),
  col.accessor('kind', { header: 'Kind' }),
  col.accessor((r) => r.status.phase, { id: 'phase', header: 'Phase', cell: (c) => <Phase value={c.getValue()} /> }),
  col.accessor('project', { header: 'Project' }),
  col.accessor((r) => Object.entries(r.labels).filter(([k]) => !k.startsWith('infraflow.dev/')).map(([k, v]) => `${k}=${v}`).join(', '), { id: 'labels', header: 'Labels' }),
  col.accessor('updatedAt', { header: 'Updated', cell: (c) => ago(c.getValue()) }),
];

/**
 * Every resource of the project with server-side filtering and cursor paging:
 * one request per page of 500, fetched as the list scrolls near its end;
 * only the rows on screen are in the DOM (TanStack Virtual).
 */
export default function Resources() {
  const { project } = useSession();
  const { search } = useLocation();
  const qc = useQueryClient();
  const [kind, setKind] = useState(search.get('kind') ?? '');
  const [phase, setPhase] = useState(search.get('phase') ?? '');
  const [labels, setLabels] = useState(search.get('labels') ?? '');
  const [name, setName] = useState(search.get('name') ?? '');
  const [applied, setApplied] = useState({ kind, phase, labels, name });
  useEffect(() => {
    const t = setTimeout(() => setApplied({ kind, phase, labels, name }), 250);
    return () => clearTimeout(t);
  }, [kind, phase, labels, name]);
  useEffect(() => {
    const q = new URLSearchParams(Object.entries(applied).filter(([, v]) => v));
    const s = q.toString();
    if (s !== location.search.slice(1)) navigate(`/resources${s ? `?${s}` : ''}`, { replace: true });
  }, [applied]);
  const key = ['resources', project, applied] as const;
  const q = useInfiniteQuery({
    queryKey: key,
    initialPageParam: undefined as string | undefined,
    queryFn: ({ pageParam }) => call<{ items: Row[]; nextCursor: string | null }>(api.GET('/api/v1/resources', {
      params: { query: { project, limit: PAGE, ...(pageParam ? { cursor: pageParam } : {}), ...(applied.kind ? { kind: applied.kind } : {}), ...(applied.phase ? { phase: applied.phase } : {}), ...(applied.labels ? { labels: applied.labels } : {}), ...(applied.name ? { name: applied.name } : {}) } },
    })),
    getNextPageParam: (last) => last.nextCursor ?? undefined,
  });
  const rows = useMemo(() => q.data?.pages.flatMap((p) => p.items) ?? [], [q.data]);
  const table = useReactTable({ data: rows, columns, getCoreRowModel: getCoreRowModel(), manualPagination: true, manualFiltering: true });
  const scroller = useRef<HTMLDivElement>(null);
  const virtual = useVirtualizer({ count: rows.length + (q.hasNextPage ? 1 : 0), getScrollElement: () => scroller.current, estimateSize: () => 36, overscan: 20 });
  const items = virtual.getVirtualItems();
  const lastIndex = items[items.length - 1]?.index ?? 0;
  useEffect(() => {
    if (lastIndex >= rows.length - 50 && q.hasNextPage && !q.isFetchingNextPage) void q.fetchNextPage();
  }, [lastIndex, rows.length, q.hasNextPage, q.isFetchingNextPage]);
  // live: a resource event updates the row in place when it is loaded (no reload of the list)
  const [created, setCreated] = useState(0);
  useEffect(() => setCreated(0), [project, applied]);
  useEventStream(`/api/v1/projects/${encodeURIComponent(project)}/events/stream`, (e) => {
    if (!e.type.startsWith('resource.')) return;
    if (e.type === 'resource.created') setCreated((n) => n + 1);
    const id = e.subject;
    const phaseNow = e.data?.phase ?? e.data?.to;
    qc.setQueryData(key, (old: typeof q.data) => old && {
      ...old,
      pages: old.pages.map((p) => ({ ...p, items: p.items.map((r) => (r.id === id && phaseNow ? { ...r, status: { ...r.status, phase: phaseNow }, updatedAt: e.at ?? r.updatedAt } : r)) })),
    });
  });
  const headers = table.getHeaderGroups()[0]!.headers;
  const tableRows = table.getRowModel().rows;
  return (
    <Page title="Resources">
      <form className="filters" role="search" aria-label="Filter resources" onSubmit={(e) => e.preventDefault()}>
        <label>Kind <input name="kind" value={kind} onChange={(e) => setKind(e.target.value)} placeholder="compute/Server" /></label>
        <label>Phase
          <select name="phase" value={phase} onChange={(e) => setPhase(e.target.value)}>
            <option value="">any</option>
            {['pending', 'creating', 'ready', 'updating', 'deleting', 'failed'].map((p) => <option key={p}>{p}</option>)}
          </select>
        </label>
        <label>Labels <input name="labels" value={labels} onChange={(e) => setLabels(e.target.value)} placeholder="team=web,env=prod" /></label>
        <label>Name starts with <input name="name" value={name} onChange={(e) => setName(e.target.value)} /></label>
      </form>
      <ProblemBox error={q.error} />
      <p className="muted small" role="status" aria-live="polite" data-testid="resource-count">
        {q.isPending ? 'Loading…' : `${rows.length.toLocaleString()}${q.hasNextPage ? '+' : ''} resources`}
      </p>
      {created > 0 && (
        <p>
          <button type="button" onClick={() => { setCreated(0); void q.refetch(); }}>
            {created} new resource{created === 1 ? '' : 's'}: show
          </button>
        </p>
      )}
      <div className="vtable" role="table" aria-label="Resources" aria-rowcount={q.hasNextPage ? -1 : rows.length + 1}>
        <div role="rowgroup" className="vhead">
          <div role="row" className="vrow">
            {headers.map((h) => <div role="columnheader" key={h.id} className={`vcell c-${h.id}`}>{flexRender(h.column.columnDef.header, h.getContext())}</div>)}
          </div>
        </div>
        <div ref={scroller} className="vbody">
          <div role="rowgroup" style={{ height: virtual.getTotalSize(), position: 'relative' }}>
            {items.map((v) => {
              const row = tableRows[v.index];
              return (
                <div role="row" key={v.key} className="vrow" aria-rowindex={v.index + 2} style={{ position: 'absolute', top: 0, left: 0, right: 0, height: v.size, transform: `translateY(${v.start}px)` }}>
                  {row ? row.getVisibleCells().map((c) => <div role="cell" key={c.id} className={`vcell c-${c.column.id}`}>{flexRender(c.column.columnDef.cell, c.getContext())}</div>) : <div role="cell" className="vcell muted">Loading more…</div>}
                </div>
              );
            })}
          </div>
        </div>
      </div>
    </Page>
  );
}
