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

/**
 * Live events waiting to be written to one stream. A reader slower than the
 * events (its socket buffer full) makes them wait; past this many its stream
 * ends, so a slow reader cannot grow the server's memory without bound. It
 * resumes where it stopped with Last-Event-ID (the events are in the log).
 */
export const MAX_QUEUED_EVENTS = 1000;

/** Streams ended because their reader fell behind (for tests and metrics). */
export let slowStreamsEnded = 0;

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
  let queued = 0;

  /** Writes, and waits for the socket to drain when its buffer is full (backpressure). */
  const write = async (chunk: string): Promise<void> => {
    if (closed) return;
    if (raw.write(chunk)) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        raw.off('drain', done);
        raw.off('close', done);
        resolve();
      };
      raw.on('drain', done);
      raw.on('close', done);
    });
  };
  const tooSlow = () => {
    slowStreamsEnded++;
    req.log.info({ queued: MAX_QUEUED_EVENTS }, 'event stream reader too slow: stream ended (it resumes with Last-Event-ID)');
    finish();
  };

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
    await write(`id: ${e.seq}\nevent: ${e.type.replace(/[\r\n]/g, ' ')}\ndata: ${JSON.stringify(redact(e))}\n\n`);
    if (opts.endAfter && (await opts.endAfter(e))) {
      await write(`event: end\ndata: {}\n\n`);
      finish();
    }
  };

  open.add(finish);
  const unsubscribe = opts.engine.subscribe({}, (e) => {
    if (closed) return;
    if (queued + buffered.length >= MAX_QUEUED_EVENTS) {
      tooSlow();
      return;
    }
    if (!backlogDone) {
      buffered.push(e);
      return;
    }
    queued++;
    chain = chain.then(() => send(e)).catch((err: unknown) => {
      req.log.warn({ err }, 'event stream write failed');
      finish();
    }).finally(() => {
      queued--;
    });
  });
  const hb = setInterval(() => {
    // a keep-alive only on an idle connection: never onto a full buffer
    if (!closed && raw.writableLength === 0) raw.write(': keep-alive\n\n');
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
        await write(`event: end\ndata: {}\n\n`);
        finish();
      }
    });
    await chain;
  } catch (err) {
    req.log.warn({ err }, 'event stream failed');
    finish();
  }
}
