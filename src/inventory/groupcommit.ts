export type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

/**
 * Group commit for allocators. Requests for the same pool (one prefix, one
 * VLAN pool, one server type) that arrive while a transaction for that pool
 * is in flight are queued and served together by the next transaction: one
 * lock, one walk of the free list, one multi-row insert, one commit (one
 * fsync). A lone request is never delayed; under load, the number of
 * requests per commit grows with the queue. Each request still gets its own
 * outcome: one request failing (exhausted, address in use) does not fail
 * the others in its batch.
 */
export class GroupCommit<R, O> {
  private readonly queues = new Map<string, { req: R; resolve: (v: O) => void; reject: (e: unknown) => void }[]>();
  private readonly running = new Set<string>();

  /** `process` serves one batch in one transaction (it opens and retries the transaction itself). */
  constructor(
    private readonly process: (key: string, reqs: R[]) => Promise<Outcome<O>[]>,
    private readonly maxBatch = 256,
  ) {}

  submit(key: string, req: R): Promise<O> {
    if (!this.running.has(key)) return this.lone(key, req);
    return new Promise<O>((resolve, reject) => {
      let q = this.queues.get(key);
      if (!q) this.queues.set(key, (q = []));
      // a request for this key is in flight: its end drains the queue
      q.push({ req, resolve, reject });
    });
  }

  /** Nothing in flight for the key: serve the request at once, without a queue; whatever arrives meanwhile is drained after it. */
  private async lone(key: string, req: R): Promise<O> {
    this.running.add(key);
    let out: Outcome<O>;
    try {
      out = (await this.process(key, [req]))[0]!;
    } finally {
      this.running.delete(key);
      if (this.queues.get(key)?.length) void this.drain(key);
    }
    if (out.ok) return out.value;
    throw out.error;
  }

  private async drain(key: string): Promise<void> {
    this.running.add(key);
    try {
      for (;;) {
        const q = this.queues.get(key);
        if (!q || q.length === 0) {
          this.queues.delete(key);
          break;
        }
        const batch = q.splice(0, this.maxBatch);
        try {
          const outs = await this.process(key, batch.map((b) => b.req));
          outs.forEach((o, i) => (o.ok ? batch[i]!.resolve(o.value) : batch[i]!.reject(o.error)));
        } catch (e) {
          for (const b of batch) b.reject(e);
        }
      }
    } finally {
      this.running.delete(key);
    }
  }
}
