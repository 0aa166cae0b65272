import type { z } from 'zod';
import type { SerializedError } from '../core/errors.js';

/**
 * The engine's public contract. Areas (stacks, fulfillment, inventory waits…)
 * write workflows against these types only; `Engine` implements them.
 *
 * Workflow code must be deterministic: all I/O and all non-determinism
 * (time, randomness, ids) go through `ctx` so that a replay after a crash
 * meets the same steps in the same order.
 */

export type RunStatus = 'pending' | 'running' | 'waiting' | 'succeeded' | 'failed' | 'cancelling' | 'cancelled';
export const TERMINAL_STATUSES: readonly RunStatus[] = ['succeeded', 'failed', 'cancelled'];

export interface RetryPolicy {
  /** Total attempts including the first. Default 3 for steps. */
  maxAttempts?: number;
  /** First backoff. Default 1000 ms. */
  initialIntervalMs?: number;
  /** Multiplier per attempt. Default 2. */
  backoffCoefficient?: number;
  /** Cap on one backoff. Default 60 s. */
  maxIntervalMs?: number;
  /** Full jitter fraction 0..1. Default 0.2. */
  jitter?: number;
  /** Error codes (InfraflowError.code) or error names never retried. */
  nonRetryable?: string[];
}

export interface StepContext {
  /** Unique to (run, step); pass it to backends so a retried call has one effect. */
  readonly idempotencyKey: string;
  readonly runId: string;
  /** 1-based attempt number. */
  readonly attempt: number;
  /** Aborted on step timeout, run cancellation, or worker shutdown/lease loss. */
  readonly signal: AbortSignal;
  /** Appends a line to the step's log (kept in the run timeline). */
  log(message: string, data?: Record<string, unknown>): void;
}

export interface StepOptions<T = unknown> {
  retry?: RetryPolicy;
  /** Per-attempt timeout. */
  timeoutMs?: number;
  /**
   * Undo registered once the step has succeeded. On cancel or failure of the
   * run, undos run in reverse order, durably (each is itself a journaled step).
   */
  compensate?: (result: T, sc: StepContext) => Promise<void>;
}

export interface PollOptions {
  intervalMs: number;
  timeoutMs: number;
  retry?: RetryPolicy;
}

export interface ChildOptions {
  /** Caller-chosen id; default derived from parent run and step name. */
  id?: string;
  labels?: Record<string, string>;
}

export interface WorkflowContext<I = unknown> {
  readonly runId: string;
  readonly workflow: string;
  readonly version: number;
  readonly input: I;
  readonly labels: Readonly<Record<string, string>>;
  /** Deterministic time: journaled on first execution. */
  now(): Promise<number>;
  /** Runs `fn` once; its result (or final error) is journaled under `name`. */
  step<T>(name: string, fn: (sc: StepContext) => Promise<T>, opts?: StepOptions<T>): Promise<T>;
  /** Durable sleep: survives restarts; the run holds no worker while it sleeps. */
  sleep(name: string, ms: number): Promise<void>;
  /**
   * Waits for `signal(runId, signalName, payload)`. Resolves with the payload,
   * or rejects with TimeoutError (code `engine.wait_timeout`) after timeoutMs.
   */
  waitFor<T = unknown>(signalName: string, opts?: { timeoutMs?: number; name?: string }): Promise<T>;
  /**
   * Calls `fn` every intervalMs until it returns `{ done: true, value }`.
   * Only the final result is journaled, not each poll.
   */
  poll<T>(name: string, fn: (sc: StepContext) => Promise<{ done: boolean; value?: T; status?: string }>, opts: PollOptions): Promise<T>;
  /** Starts a child run and waits for its result. */
  child<O = unknown>(workflow: string, input: unknown, opts?: ChildOptions & { name?: string }): Promise<O>;
  /** Reports what the run is doing now (stage, what it waits for); shown in visibility APIs. */
  progress(p: { stage?: string; waitingFor?: string; percent?: number; message?: string }): void;
  /** Emits a typed event into the engine's event stream (journaled, emitted once). */
  emit(type: string, data: Record<string, unknown>, subject?: string): Promise<void>;
  log(message: string, data?: Record<string, unknown>): void;
}

export interface WorkflowDefinition<I = any, O = any> {
  name: string;
  version: number;
  /** Validates input on start; failing input is refused with `engine.invalid_input`. */
  input?: z.ZodType<I>;
  /** Queue the run goes to (default 'default'). Queues have concurrency limits. */
  queue?: string;
  /** Runs with the same key run one at a time (e.g. one apply per stack). */
  concurrencyKey?: (input: I) => string | undefined;
  /** Whole-run timeout. */
  timeoutMs?: number;
  /** Default step retry policy for this workflow. */
  retry?: RetryPolicy;
  run(ctx: WorkflowContext<I>, input: I): Promise<O>;
}

export function defineWorkflow<I, O>(def: WorkflowDefinition<I, O>): WorkflowDefinition<I, O> {
  return def;
}

export interface StartOptions {
  /** Caller-chosen run id; starting the same id twice returns the same run. */
  id?: string;
  labels?: Record<string, string>;
  queue?: string;
  concurrencyKey?: string;
  /** Start no earlier than this time (ms). */
  startAt?: number;
}

export interface RunInfo {
  id: string;
  workflow: string;
  version: number;
  status: RunStatus;
  input: unknown;
  output?: unknown;
  error?: SerializedError;
  labels: Record<string, string>;
  queue: string;
  concurrencyKey?: string | null;
  parentRunId?: string | null;
  progress?: { stage?: string; waitingFor?: string; percent?: number; message?: string; since?: number } | null;
  createdAt: number;
  startedAt?: number | null;
  finishedAt?: number | null;
  updatedAt: number;
  /** The worker (host-pid-nonce) executing the run now, or the last one that did. */
  worker?: string | null;
  /** When the run was last taken over from a worker that died or lost its lease, and which one. */
  takenOverAt?: number | null;
  takenOverFrom?: string | null;
}

export interface StepRecord {
  runId: string;
  seq: number;
  name: string;
  kind: 'step' | 'sleep' | 'wait' | 'poll' | 'child' | 'now' | 'emit' | 'compensate';
  status: 'running' | 'succeeded' | 'failed' | 'skipped';
  attempts: number;
  output?: unknown;
  error?: SerializedError;
  logs: { at: number; message: string; data?: Record<string, unknown> }[];
  startedAt: number;
  finishedAt?: number | null;
  /** The worker that executed the step (wrote its journal row). */
  worker?: string | null;
}

export interface RunFilter {
  workflow?: string;
  status?: RunStatus | RunStatus[];
  labels?: Record<string, string>;
  createdAfter?: number;
  createdBefore?: number;
  parentRunId?: string;
  /** Cursor: return runs with id > after (ids sort by creation). */
  after?: string;
  limit?: number;
}

export interface EngineEvent {
  /** Monotonic sequence number; resumable streams use it as the cursor. */
  seq: number;
  type: string;
  /** What the event is about: a run id, a resource id, a stack id… */
  subject: string;
  runId?: string | null;
  data: Record<string, unknown>;
  at: number;
}

export interface EventFilter {
  types?: string[];
  subject?: string;
  /** Prefix match on type, e.g. 'run.' */
  typePrefix?: string;
  afterSeq?: number;
  limit?: number;
}

export type OverlapPolicy = 'skip' | 'buffer_one' | 'allow_all';

export interface ScheduleSpec {
  id: string;
  cron: string;
  timezone?: string;
  workflow: string;
  input: unknown;
  overlap?: OverlapPolicy;
  paused?: boolean;
  /** Labels on every run the schedule starts; `schedule: <id>` is always added. */
  labels?: Record<string, string>;
}

export interface TriggerSpec {
  id: string;
  /** Event type to react to (exact, or ending in '*' for a prefix). */
  eventType: string;
  /** Optional subject filter. */
  subject?: string;
  workflow: string;
  /** Input for the started run; the event is passed as `input.event` if no mapper is given. */
  input?: (event: EngineEvent) => unknown;
}

/** One operator action on a run (retry, skip), from the run's history. */
export interface HistoryEntry {
  runId: string;
  actor: string;
  action: string;
  data: Record<string, unknown> | null;
  at: number;
}

/** The operations the rest of Infraflow (API, CLI, areas) uses. */
export interface EngineApi {
  register(def: WorkflowDefinition): void;
  start<I>(workflow: string, input: I, opts?: StartOptions): Promise<RunInfo>;
  get(runId: string): Promise<RunInfo>;
  list(filter?: RunFilter): Promise<RunInfo[]>;
  timeline(runId: string): Promise<StepRecord[]>;
  /** Resolves when the run is terminal. */
  result(runId: string, opts?: { timeoutMs?: number }): Promise<RunInfo>;
  signal(runId: string, name: string, payload?: unknown): Promise<void>;
  cancel(runId: string, reason?: string): Promise<RunInfo>;
  /** Operator action: re-run a failed run from its failed step. Audited in history. */
  retry(runId: string, opts?: { actor?: string }): Promise<RunInfo>;
  /** Operator action: mark a step done with a supplied result. Audited in history. */
  skipStep(runId: string, stepName: string, result: unknown, opts?: { actor?: string }): Promise<RunInfo>;
  events(filter?: EventFilter): Promise<EngineEvent[]>;
  /**
   * Live events after commit, in seq order: this process's at once, other
   * processes' within the engine's poll interval. Returns an unsubscribe function.
   */
  subscribe(filter: EventFilter, onEvent: (e: EngineEvent) => void): () => void;
  /** Appends an event from outside a run (resources, allocations, API). */
  publish(type: string, subject: string, data: Record<string, unknown>): Promise<EngineEvent>;
  upsertSchedule(spec: ScheduleSpec): Promise<void>;
  deleteSchedule(id: string): Promise<void>;
  addTrigger(spec: TriggerSpec): void;
  /** Operator actions on a run (retry, skip), oldest first. */
  history?(runId: string): Promise<HistoryEntry[]>;
  /** Stored schedules with their next fire time. */
  listSchedules?(): Promise<(ScheduleSpec & { nextAt: number; lastRunId: string | null })[]>;
}
