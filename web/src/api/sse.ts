import { useEffect, useRef, useState } from 'react';

export interface StreamEvent { seq: number; type: string; subject?: string; runId?: string | null; data?: any; at?: number }

/**
 * Reads one of the server's SSE streams with fetch (the session cookie goes
 * along; EventSource cannot receive every named event type). On a dropped
 * connection it reconnects with `Last-Event-ID: <last seq seen>`, so the
 * server resumes right after it: no gap, no duplicate. Ends on `event: end`.
 */
export function followStream(url: string, onEvent: (e: StreamEvent) => void, onState: (connected: boolean) => void): () => void {
  const ctl = new AbortController();
  let last = 0;
  let delay = 500;
  const run = async () => {
    while (!ctl.signal.aborted) {
      let ended = false;
      try {
        const res = await fetch(url, { cache: 'no-store', headers: { accept: 'text/event-stream', ...(last ? { 'last-event-id': String(last) } : {}) }, signal: ctl.signal });
        if (res.status === 401 || res.status === 403 || res.status === 404) return;
        if (!res.ok || !res.body) throw new Error(`stream ${res.status}`);
        onState(true);
        delay = 500;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        while (true) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let id = 0;
            let type = 'message';
            let data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('id: ')) id = Number(line.slice(4));
              else if (line.startsWith('event: ')) type = line.slice(7);
              else if (line.startsWith('data: ')) data += line.slice(6);
            }
            if (type === 'end') {
              ended = true;
              continue;
            }
            if (!data || (id && id <= last)) continue;
            if (id) last = id;
            try {
              onEvent({ ...(JSON.parse(data) as StreamEvent), seq: id, type });
            } catch {
              /* not JSON: ignore */
            }
          }
        }
      } catch {
        if (ctl.signal.aborted) return;
      }
      onState(false);
      if (ended) return;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10_000);
    }
  };
  void run();
  return () => ctl.abort();
}

export function useEventStream(url: string | null, onEvent: (e: StreamEvent) => void): { connected: boolean } {
  const [connected, setConnected] = useState(false);
  const handler = useRef(onEvent);
  handler.current = onEvent;
  useEffect(() => {
    if (!url) return;
    const stop = followStream(url, (e) => handler.current(e), setConnected);
    return () => {
      stop();
      setConnected(false);
    };
  }, [url]);
  return { connected };
}
