import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { connect } from 'node:net';
import { openTestStore, type TestDb } from './support/dialects.js';
import { makeHarness, type Harness } from './api-harness.js';
import { Engine } from '../src/engine/index.js';
import { silentLogger } from '../src/core/log.js';
import * as sse from '../src/api/sse.js';

/**
 * A reader that stops reading an event stream must not grow the server's
 * memory without bound: writes wait for the socket to drain, live events
 * queue up to MAX_QUEUED_EVENTS, then the stream ends (the reader resumes
 * with Last-Event-ID from the event log). A reader that keeps up is not
 * affected.
 */
describe('SSE backpressure', () => {
  let t: TestDb;
  let h: Harness;
  let engine: Engine;
  let base: { host: string; port: number };
  beforeAll(async () => {
    t = await openTestStore('sqlite');
    engine = new Engine({ store: t.store, logger: silentLogger });
    h = await makeHarness('sqlite', { engine, t });
    await h.app.listen({ host: '127.0.0.1', port: 0 });
    const a = h.app.server.address();
    base = { host: '127.0.0.1', port: typeof a === 'object' && a ? a.port : 0 };
  });
  afterAll(async () => {
    await h?.close();
    await engine?.stop({ graceful: false });
    await t?.cleanup();
  });

  it('a reader that stops reading gets its stream ended once MAX_QUEUED_EVENTS wait; the server buffers no more', async () => {
    const before = sse.slowStreamsEnded;
    const sock = connect(base);
    await new Promise<void>((r) => sock.once('connect', () => r()));
    sock.write(`GET /api/v1/events/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${h.adminToken}\r\nAccept: text/event-stream\r\n\r\n`);
    let got = 0;
    const firstData = new Promise<void>((r) => sock.once('data', (c: Buffer) => {
      got += c.length;
      r();
    }));
    await firstData;
    sock.pause(); // stops reading: the kernel buffers fill, then the server's
    await vi.waitFor(() => expect(sse.openStreams()).toBe(1));
    const big = 'x'.repeat(8 * 1024);
    const n = sse.MAX_QUEUED_EVENTS * 3;
    for (let i = 0; i < n; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => engine.publish('test.big', `sub-${i + j}`, { blob: big, i: i + j })));
    // the stream was ended because its reader fell behind, not kept with ~24 MB queued
    await vi.waitFor(() => expect(sse.slowStreamsEnded).toBe(before + 1), { timeout: 60_000, interval: 50 });
    await vi.waitFor(() => expect(sse.openStreams()).toBe(0));
    sock.destroy();
    expect(got).toBeGreaterThan(0);
  }, 120_000);

  it('a reader that keeps up receives everything', async () => {
    const before = sse.slowStreamsEnded;
    const res = await fetch(`http://${base.host}:${base.port}/api/v1/events/stream?type=test.small`, { headers: { authorization: `Bearer ${h.adminToken}` } });
    const reader = res.body!.getReader();
    const seen = new Set<number>();
    const reading = (async () => {
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += new TextDecoder().decode(value);
        for (const m of buf.matchAll(/"i":(\d+)/g)) seen.add(Number(m[1]));
        buf = buf.slice(buf.lastIndexOf('\n\n') + 1);
        if (seen.size >= 300) return;
      }
    })();
    await vi.waitFor(() => expect(sse.openStreams()).toBe(1));
    for (let i = 0; i < 300; i++) await engine.publish('test.small', `s-${i}`, { i });
    await reading;
    await reader.cancel();
    expect(seen.size).toBe(300);
    expect(sse.slowStreamsEnded).toBe(before);
  }, 120_000);
});
