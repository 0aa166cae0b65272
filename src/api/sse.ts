import type { FastifyReply, FastifyRequest } from 'fastify';
import type { EngineApi, EngineEvent } from '../engine/types.js';
import { redact } from '../core/secrets.js';
import { sseClients } from './metrics.js';

/**
 * Server-sent events over the engine's event log. Each event is sent with
 * `id: <seq>`; a client that reconnects with `Last-Event-ID` (or `?after=`)
 * gets every matching event after that one, then live events, with no gap
 * and no duplicate: live events that arrive while the backlog is read are
 * buffered and de-duplicated by seq.
 */
export interface SseOptions {
  engine: EngineApi;
  /** Which events this stream carries (already authorized by the route). */
  filter: (e: EngineEvent) => boolean | Promise<boolean>;
  /** Narrow the backlog query to one subject: only when every matching event has this subject. */
  subject?: string;
  afterSeq: number;
  /** After each sent event: return true to end the stream (e.g. the run is finished). */
  endAfter?: (e: EngineEvent) => boolean | Promise<boolean>;
  /** Checked once after the backlog: end right away (e.g. the run was already finished). */
  endNow?: () => Promise<boolean>;
  heartbeatMs?: number;
}

/** The finish function of every open stream in this process. */
const open = new Set<() => void>();

/** Ends every open stream (graceful shutdown); clients resume elsewhere with Last-Event-ID. */
export function closeAllStreams(): void {
  for (const finish of [...open]) finish();
  open.clear();
}

export function openStreams(): number {
  return open.size;
}

export function lastEventId(req: FastifyRequest, after?: number): number {
  const h = req.headers['last-event-id'];
  const v = Array.isArray(h) ? h[0] : h;
  if (v !== undefined && /^\d+$/.test(v)) return Number(v);
  return after ?? 0;
}

export async function streamEvents(req: FastifyRequest, reply: FastifyReply, opts: SseOptions): Promise<void> {
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
    'x-request-id': String(req.id),
  });
  raw.write(': infraflow event stream\nretry: 2000\n\n');
  sseClients.inc();
  let closed = false;
  let lastSeq = opts.afterSeq;
  let backlogDone = false;
  const buffered: EngineEvent[] = [];
  let chain: Promise<void> = Promise.resolve();

  const finish = () => {
    if (closed) return;
    closed = true;
    sseClients.dec();
    unsubscribe();
    clearInterval(hb);
    open.delete(finish);
    try {
      raw.end();
    } catch {
      /* gone */
    }
  };

  const send = async (e: EngineEvent): Promise<void> => {
    if (closed || e.seq <= lastSeq) return;
    if (!(await opts.filter(e))) {
      lastSeq = Math.max(lastSeq, e.seq);
      return;
    }
    lastSeq = e.seq;
    raw.write(`id: ${e.seq}\nevent: ${e.type.replace(/[\r\n]/g, ' ')}\ndata: ${JSON.stringify(redact(e))}\n\n`);
    if (opts.endAfter && (await opts.endAfter(e))) {
      raw.write(`event: end\ndata: {}\n\n`);
      finish();
    }
  };

  open.add(finish);
  const unsubscribe = opts.engine.subscribe({}, (e) => {
    if (closed) return;
    if (!backlogDone) {
      buffered.push(e);
      return;
    }
    chain = chain.then(() => send(e)).catch((err: unknown) => {
      req.log.warn({ err }, 'event stream write failed');
      finish();
    });
  });
  const hb = setInterval(() => {
    if (!closed) raw.write(': keep-alive\n\n');
  }, opts.heartbeatMs ?? 15_000);
  hb.unref();
  req.raw.on('close', finish);

  try {
    // backlog, then the live events that arrived meanwhile (send skips seq <= lastSeq), then live
    let after = opts.afterSeq;
    while (!closed) {
      const batch = await opts.engine.events({ afterSeq: after, limit: 1000, ...(opts.subject ? { subject: opts.subject } : {}) });
      for (const e of batch) await send(e);
      if (batch.length < 1000) break;
      after = batch[batch.length - 1]!.seq;
    }
    backlogDone = true;
    const pending = buffered.splice(0).sort((a, b) => a.seq - b.seq);
    chain = chain.then(async () => {
      for (const e of pending) await send(e);
      if (!closed && opts.endNow && (await opts.endNow())) {
        raw.write(`event: end\ndata: {}\n\n`);
        finish();
      }
    });
    await chain;
  } catch (err) {
    req.log.warn({ err }, 'event stream failed');
    finish();
  }
}
