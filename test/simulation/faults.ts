/**
 * The simulation's fault seams. Every fault goes through one of the project's
 * own seams, never by replacing an emulator:
 *
 * - `Seam`: wraps the `send` of the real SDK clients a handler factory is given
 *   (createSpeedHandler / createArchiveHandler take their clients as
 *   parameters). Armed with a one-shot fault, it lets `after` write requests
 *   through and then, on the next one, throws before sending (a crash after k
 *   of n writes), sends and then throws (the write lands, the response is
 *   lost), holds the request longer than the function's timeout (the local
 *   runtime then fails the invocation while the request lands late, as a
 *   timed-out Lambda's last request may), or throttles it (a BatchWriteItem
 *   does half its items and returns the rest as UnprocessedItems; another
 *   write fails with ProvisionedThroughputExceededException).
 * - `IngestFaults`: around the real Kinesis client ingest is given. Partial
 *   PutRecords failures reuse test/support/api.ts `flakyKinesis` (H6's seam);
 *   on top of it a request can be sent and its response lost.
 * - `InvokeHook`: between the event source mapping and the function (the
 *   mapping's `invoke` option): a function error after a successful run (the
 *   mapping bisects and redelivers), the same batch delivered twice, and an
 *   overlapping delivery (the batch's first half, then the whole batch).
 * - batch: the pipeline's own BatchHooks (`afterStage`, `afterItems`) and a
 *   wrapper of the BatchEngine that fails the SQL of a view.
 *
 * A seam written here rather than test/support/speed.ts `faultyClient`
 * because the simulation also needs S3 clients, delays and several clients
 * sharing one write count (the archive writes to S3 and DynamoDB).
 */
import { BatchWriteItemCommand, type BatchWriteItemCommandOutput, type WriteRequest } from '@aws-sdk/client-dynamodb';
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import type { KinesisStreamEvent } from 'aws-lambda';
import type { KinesisPut } from '../../functions/api/put-events.ts';
import type { BatchEngine, EngineSession } from '../../functions/batch/engine.ts';
import { type BatchHooks, SimulatedCrash } from '../../functions/batch/steps.ts';
import { flakyKinesis } from '../support/api.ts';

export class InjectedFault extends Error {
  constructor(what: string) {
    super(`injected fault: ${what}`);
    this.name = 'InjectedFault';
  }
}

export type WriteFaultKind = 'crash' | 'lost' | 'timeout' | 'throttle';

export interface WriteFault {
  /** Write requests that pass before the fault: the (after + 1)-th fails. */
  readonly after: number;
  readonly kind: WriteFaultKind;
}

/** SDK commands that change state (what "after k of n writes" counts). */
const WRITE_RE = /^(Put|Update|BatchWrite|Delete|Copy|CompleteMultipart)/;

type Sender = { send: (...args: never[]) => Promise<unknown> };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** One consumer's fault seam over every client its handler is given. */
export class Seam {
  private fault: WriteFault | undefined;
  private seen = 0;
  /** Faults that fired, by kind. */
  readonly fired: Record<WriteFaultKind, number> = { crash: 0, lost: 0, timeout: 0, throttle: 0 };
  /** Requests that were held past the function timeout and have not landed yet. */
  private late = new Set<Promise<unknown>>();

  constructor(
    readonly name: string,
    /** How long a `timeout` fault holds its request (longer than the function's timeout). */
    private readonly holdMs: number,
  ) {}

  arm(f: WriteFault | undefined): void {
    this.fault = f;
    this.seen = 0;
  }

  get armed(): boolean {
    return this.fault !== undefined;
  }

  /** Resolves when every held request has landed (or failed). */
  async settled(): Promise<void> {
    while (this.late.size > 0) await Promise.allSettled([...this.late]);
  }

  wrap<T extends object>(client: T): T {
    const real = client as unknown as Sender;
    const send = async (command: { constructor: { name: string } }, ...rest: unknown[]) => {
      const forward = () => (real.send as (c: unknown, ...r: unknown[]) => Promise<unknown>).call(real, command, ...rest);
      const f = this.fault;
      if (!f || !WRITE_RE.test(command.constructor.name)) return forward();
      if (this.seen++ < f.after) return forward();
      this.fault = undefined;
      this.fired[f.kind]++;
      const what = `${this.name}: ${f.kind} at write ${f.after + 1} (${command.constructor.name})`;
      if (f.kind === 'crash') throw new InjectedFault(what);
      if (f.kind === 'lost') {
        await forward().catch(() => undefined);
        throw new InjectedFault(what);
      }
      if (f.kind === 'throttle') {
        // DynamoDB under throttling: a BatchWriteItem does part of its work and returns the rest
        // as UnprocessedItems; any other write fails with the throttling error (after the SDK's retries).
        if (command instanceof BatchWriteItemCommand) {
          const done: Record<string, WriteRequest[]> = {};
          const rest: Record<string, WriteRequest[]> = {};
          for (const [table, requests] of Object.entries(command.input.RequestItems ?? {})) {
            const half = Math.ceil(requests.length / 2);
            if (half > 0) done[table] = requests.slice(0, half);
            if (requests.length > half) rest[table] = requests.slice(half);
          }
          const out =
            (await (real.send as (c: unknown) => Promise<BatchWriteItemCommandOutput>).call(
              real,
              new BatchWriteItemCommand({ RequestItems: done }),
            )) ?? {};
          return { ...out, UnprocessedItems: { ...(out.UnprocessedItems ?? {}), ...rest } };
        }
        throw Object.assign(new Error(`${what}: rate of requests exceeds the allowed throughput`), {
          name: 'ProvisionedThroughputExceededException',
        });
      }
      // timeout: the request lands after the invocation has been failed by the runtime.
      const landing = sleep(this.holdMs).then(forward);
      this.late.add(landing);
      landing.catch(() => undefined).finally(() => this.late.delete(landing));
      return landing;
    };
    return new Proxy(client, { get: (t, p, r) => (p === 'send' ? send : Reflect.get(t, p, r)) });
  }
}

export type InvokeFaultKind = 'errorAfter' | 'redeliver' | 'overlap';

/** Between an event source mapping and its function: batch-level delivery faults. */
export class InvokeHook {
  private pending: InvokeFaultKind | undefined;
  readonly fired: Record<InvokeFaultKind, number> = { errorAfter: 0, redeliver: 0, overlap: 0 };

  arm(kind: InvokeFaultKind | undefined): void {
    this.pending = kind;
  }

  get armed(): boolean {
    return this.pending !== undefined;
  }

  wrap(invoke: (e: KinesisStreamEvent) => Promise<unknown>): (e: KinesisStreamEvent) => Promise<unknown> {
    return async (event) => {
      const kind = this.pending;
      if (!kind) return invoke(event);
      if (kind === 'overlap' && event.Records.length < 2) return invoke(event);
      this.pending = undefined;
      this.fired[kind]++;
      if (kind === 'errorAfter') {
        const r = await invoke(event);
        // Only a clean success is turned into an error: the mapping then bisects and redelivers.
        if (r && typeof r === 'object' && ((r as { batchItemFailures?: unknown[] }).batchItemFailures?.length ?? 0) > 0) return r;
        throw new InjectedFault('function error after a successful run');
      }
      if (kind === 'redeliver') {
        await invoke(event).catch(() => undefined);
        return invoke(event);
      }
      // overlap: the first half is applied as a batch of its own, then the whole batch comes again.
      await invoke({ Records: event.Records.slice(0, Math.ceil(event.Records.length / 2)) }).catch(() => undefined);
      return invoke(event);
    };
  }
}

export type PutFaultKind = 'partial' | 'throw' | 'lost';

export interface PutFault {
  readonly kind: PutFaultKind;
  /** PutRecords requests affected (counted from the arming). */
  readonly requests: number;
  /** For `partial`: share of entries withheld. */
  readonly share: number;
}

/** Faults of ingest's Kinesis client: flakyKinesis (partial failures, thrown requests) plus lost responses. */
export class IngestFaults {
  private fault: PutFault | undefined;
  private left = 0;
  private random: () => number = Math.random;
  readonly fired: Record<PutFaultKind, number> = { partial: 0, throw: 0, lost: 0 };

  arm(f: PutFault | undefined, random: () => number): void {
    this.fault = f;
    this.left = f?.requests ?? 0;
    this.random = random;
  }

  /** Takes one affected request of the armed kind, if any. */
  private take(kind: PutFaultKind): boolean {
    if (this.fault?.kind !== kind || this.left <= 0) return false;
    this.left--;
    if (this.left === 0) this.fault = undefined;
    this.fired[kind]++;
    return true;
  }

  wrap(real: KinesisClient): KinesisPut {
    let partialRequest = -1;
    const flaky = flakyKinesis(
      real,
      (request) => {
        if (request !== partialRequest && this.fault?.kind === 'partial' && this.left > 0) {
          partialRequest = request;
          this.take('partial');
        }
        return request === partialRequest && this.random() < (this.fault?.share ?? 0.5);
      },
      () => this.take('throw'),
    );
    const send = async (command: unknown) => {
      const lose = this.fault?.kind === 'lost' && this.left > 0;
      const out = await (flaky.send as (c: unknown) => Promise<unknown>)(command);
      if (lose && this.take('lost'))
        throw Object.assign(new Error('injected: response lost after the records were stored'), { name: 'TimeoutError' });
      return out;
    };
    return { send: send as unknown as KinesisPut['send'] };
  }
}

export type BatchCrashStage = 'plan' | 'sql' | 'load' | 'publish';

export interface BatchFault {
  readonly stage: BatchCrashStage;
  /** `crash`: the process dies (no cleanup, the lock stays until it expires); `error`: the run fails and cleans up. */
  readonly mode: 'crash' | 'error';
  /** Which view (declaration order) the SQL or load fault hits. */
  readonly view: number;
}

/** The batch pipeline's own hooks plus an engine wrapper, armed for one run. */
export class BatchFaults {
  private fault: BatchFault | undefined;
  readonly fired: Record<BatchCrashStage, number> = { plan: 0, sql: 0, load: 0, publish: 0 };

  constructor(private readonly viewNames: readonly string[]) {}

  arm(f: BatchFault | undefined): void {
    this.fault = f;
  }

  get armed(): boolean {
    return this.fault !== undefined;
  }

  private fire(stage: BatchCrashStage): void {
    const f = this.fault;
    if (f?.stage !== stage) return;
    this.fault = undefined;
    this.fired[stage]++;
    const where = `in batch stage ${stage}`;
    throw f.mode === 'crash' ? new SimulatedCrash(where) : new InjectedFault(where);
  }

  private targetView(): string | undefined {
    const f = this.fault;
    return f ? this.viewNames[f.view % this.viewNames.length] : undefined;
  }

  readonly hooks: BatchHooks = {
    afterStage: (stage) => {
      if (stage === 'plan' || stage === 'publish') this.fire(stage);
    },
    afterItems: (view) => {
      if (this.fault?.stage === 'load' && view === this.targetView()) this.fire('load');
    },
  };

  wrapEngine(engine: BatchEngine): BatchEngine {
    return {
      name: engine.name,
      open: async (cutoff, runId, options) => {
        const session = await engine.open(cutoff, runId, options);
        const wrapped: EngineSession = {
          engine: session.engine,
          cutoff: session.cutoff,
          from: session.from,
          stats: session.stats,
          objectReads: () => session.objectReads(),
          runView: async (view, options) => {
            if (this.fault?.stage === 'sql' && view.name === this.targetView()) this.fire('sql');
            return session.runView(view, options);
          },
          close: () => session.close(),
        };
        return wrapped;
      },
    };
  }
}
