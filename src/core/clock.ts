/**
 * Injectable time. Production uses the system clock; tests use a manual clock;
 * simulations use a scaled clock that runs faster than real time.
 */
export interface Clock {
  /** Milliseconds since the epoch, in this clock's time. */
  now(): number;
  /** Resolves after `ms` of this clock's time. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

function abortable(realMs: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, Math.max(0, realMs));
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) => abortable(ms, signal),
};

/** Time runs `speed` times faster than wall time, starting from `start`. */
export function scaledClock(speed: number, start = Date.now()): Clock {
  if (!(speed > 0)) throw new RangeError('clock speed must be > 0');
  const realStart = Date.now();
  return {
    now: () => start + Math.floor((Date.now() - realStart) * speed),
    sleep: (ms, signal) => abortable(ms / speed, signal),
  };
}

/** A clock that moves only when told to. Sleeps resolve when `advance` passes their deadline. */
export class ManualClock implements Clock {
  private t: number;
  private waiters: { at: number; resolve: () => void }[] = [];
  constructor(start = 1_700_000_000_000) {
    this.t = start;
  }
  now(): number {
    return this.t;
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const w = { at: this.t + ms, resolve };
      this.waiters.push(w);
      signal?.addEventListener('abort', () => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(signal.reason);
      }, { once: true });
      if (ms <= 0) this.flush();
    });
  }
  advance(ms: number): void {
    this.t += ms;
    this.flush();
  }
  set(t: number): void {
    this.t = t;
    this.flush();
  }
  private flush(): void {
    const due = this.waiters.filter((w) => w.at <= this.t);
    this.waiters = this.waiters.filter((w) => w.at > this.t);
    for (const w of due) w.resolve();
  }
}
