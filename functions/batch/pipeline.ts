/**
 * A whole batch run in this process: plan -> per view (SQL -> load) ->
 * publish -> compact (steps.ts compactStep: after the publish, never fails
 * it), with failure handling, behind the batch lock. Used by the local
 * cloud (its scheduler and `POST /batch/runs` without Step Functions), tests
 * and benchmarks. In AWS, Step Functions calls the same steps one by one
 * through functions/batch-task.ts.
 */
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Clients } from '../adapters/clients.ts';
import type { Config } from '../config.ts';
import { SETTINGS_ENV } from '../resources.ts';
import { athenaEngine, athenaQueries } from './athena.ts';
import { acquireLock, type Control, createRun, getPointer, getRun, newRunId, RUN_ID_RE, type RunItem, refreshLock } from './control.ts';
import { duckDbEngine } from './duckdb.ts';
import type { BatchEngine, EngineSession } from './engine.ts';
import {
  type BatchContext,
  type BatchHooks,
  compactStep,
  computeView,
  DEFAULT_LOCK_TTL_SECONDS,
  failStep,
  loadView,
  planStep,
  publishStep,
  type RunRequest,
  SimulatedCrash,
  type ViewStepInput,
  viewStep,
} from './steps.ts';

type Env = Readonly<Record<string, string | undefined>>;

export type EngineName = 'duckdb' | 'athena';

/**
 * The engine `TANDEM_BATCH_ENGINE` selects (default duckdb; the CDK stack sets athena in AWS, where
 * the state machine runs the queries: that engine only names the path the steps take).
 */
export function engineFromEnv(clients: Pick<Clients, 's3'>, config: Pick<Config, 'buckets'>, env: Env = process.env): BatchEngine {
  const name = env[SETTINGS_ENV.batchEngine] || 'duckdb';
  if (name === 'athena') return athenaEngine();
  if (name !== 'duckdb') throw new Error(`environment variable ${SETTINGS_ENV.batchEngine} must be athena or duckdb, received "${name}"`);
  // Without a configured directory, one per store and bucket: two local clouds never share a cache.
  const store = createHash('sha256')
    .update(env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL ?? 'aws')
    .digest('hex')
    .slice(0, 12);
  const stageDir = env[SETTINGS_ENV.stageDir] || join(tmpdir(), 'tandem-stage', `${config.buckets.raw}-${store}`);
  return duckDbEngine({ s3: clients.s3, rawBucket: config.buckets.raw, stageDir });
}

export interface BatchOptions {
  /** The engine; from the environment when absent. */
  readonly engine?: BatchEngine;
  readonly hooks?: BatchHooks;
  readonly now?: () => number;
  /** A run id to use (else a new one). */
  readonly runId?: string;
  /** @default 300 */
  readonly lockTtlSeconds?: number;
  /** @default 8 */
  readonly loadConcurrency?: number;
  readonly env?: Env;
  /** What the run was asked for (rebuild all views, or one). */
  readonly request?: RunRequest;
}

export function batchContext(
  clients: Pick<Clients, 'kinesis' | 'dynamodb' | 'doc' | 's3' | 'athena'>,
  config: Config,
  opts: BatchOptions = {},
): BatchContext {
  return {
    kinesis: clients.kinesis,
    ddb: clients.dynamodb,
    doc: clients.doc,
    get streamName() {
      return config.streamName;
    },
    get tables() {
      return { control: config.tables.control, batchViews: config.tables.batchViews };
    },
    views: config.views,
    settings: config.settings,
    engine: opts.engine ?? engineFromEnv(clients, config, opts.env),
    s3: clients.s3,
    athena: athenaQueries(clients.athena),
    athenaWorkgroup: (opts.env ?? process.env)[SETTINGS_ENV.athenaWorkgroup],
    now: opts.now ?? Date.now,
    lockTtlSeconds: opts.lockTtlSeconds ?? DEFAULT_LOCK_TTL_SECONDS,
    loadConcurrency: opts.loadConcurrency ?? 8,
    hooks: opts.hooks,
  };
}

export interface StartedRun {
  readonly runId: string;
  /** True when another run held the lock: `runId` is that run's. */
  readonly alreadyRunning: boolean;
  /** Settles with the final run item (this run's, or the running one's current state). */
  readonly done: Promise<RunItem | undefined>;
}

/**
 * Starts a run in this process and returns at once with its id, or with the
 * id of the run already going (never two at once: the lock).
 */
export async function startBatchRun(
  clients: Pick<Clients, 'kinesis' | 'dynamodb' | 'doc' | 's3' | 'athena'>,
  config: Config,
  opts: BatchOptions = {},
): Promise<StartedRun> {
  const ctx = batchContext(clients, config, opts);
  const c: Control = { doc: ctx.doc, table: ctx.tables.control };
  const runId = opts.runId ?? newRunId(ctx.now());
  if (!RUN_ID_RE.test(runId)) throw new Error(`run id must be 1-80 letters, digits, - or _, received "${runId}"`);
  const lock = await acquireLock(c, runId, ctx.now(), ctx.lockTtlSeconds);
  if (!lock.acquired) return { runId: lock.holder, alreadyRunning: true, done: getRun(c, lock.holder) };
  await createRun(c, runId, ctx.now());
  return { runId, alreadyRunning: false, done: runSteps(ctx, runId, opts.request) };
}

/** Runs a batch to its end (tests, the local scheduler, benchmarks); the final run item. */
export async function runBatchToCompletion(
  clients: Pick<Clients, 'kinesis' | 'dynamodb' | 'doc' | 's3' | 'athena'>,
  config: Config,
  opts: BatchOptions = {},
): Promise<RunItem> {
  const started = await startBatchRun(clients, config, opts);
  const run = await started.done;
  if (!run) throw new Error(`batch run ${started.runId} has no run item`);
  return run;
}

async function runSteps(ctx: BatchContext, runId: string, request: RunRequest = {}): Promise<RunItem | undefined> {
  const c: Control = { doc: ctx.doc, table: ctx.tables.control };
  const startedAt = performance.now();
  // Keep the lock alive while steps run (a long query or a big load may outlast its TTL).
  const heartbeat = setInterval(
    () => {
      refreshLock(c, runId, ctx.now(), ctx.lockTtlSeconds).catch(() => undefined);
    },
    Math.max(1000, (ctx.lockTtlSeconds * 1000) / 3),
  );
  heartbeat.unref();
  let session: EngineSession | undefined;
  let version: number | undefined;
  try {
    const plan = await planStep(ctx, runId, { keepSession: true, request });
    session = plan.session;
    version = plan.version;
    if (!plan.skipped && plan.version !== undefined && plan.cutoff !== undefined) {
      const inputs = plan.views.map((view) => ({ runId, version: plan.version!, cutoff: plan.cutoff!, view }));
      if (session) await computeAndLoad(ctx, session, inputs);
      else for (const input of inputs) await viewStep(ctx, input);
      const published = await publishStep(ctx, { runId, version: plan.version, cutoff: plan.cutoff }, startedAt);
      // The staged JSON is no longer needed by this run: close it before compaction opens its own DuckDB.
      await session?.close().catch(() => undefined);
      session = undefined;
      if (published.published && published.cutoff !== undefined) await compactStep(ctx, runId, published.cutoff);
    }
  } catch (e) {
    // A simulated crash leaves everything as a dead process would: no cleanup at all.
    if (!(e instanceof SimulatedCrash)) {
      await failStep(ctx, { runId, ...(version !== undefined && { version }), error: describeError(e) }).catch(() => undefined);
    }
  } finally {
    clearInterval(heartbeat);
    await session?.close().catch(() => undefined);
  }
  return getRun(c, runId);
}

/**
 * The views one after another, each view's SQL started while the one before it loads: the engine works in its
 * own threads (DuckDB) while the load merges rows here and DynamoDB stores them. A view's load still finishes
 * before the next one starts, as viewStep does them. Largest first (by the rows the published version holds;
 * declaration order otherwise): the longest load then runs beside the other views' SQL, not after it.
 */
async function computeAndLoad(ctx: BatchContext, session: EngineSession, views: readonly ViewStepInput[]): Promise<void> {
  const published = (await getPointer({ doc: ctx.doc, table: ctx.tables.control }))?.views ?? {};
  const size = (input: ViewStepInput) => published[input.view]?.rows ?? 0;
  const inputs = [...views].sort((a, b) => size(b) - size(a));
  // Only the first view is computed in parts (a rebuild's: loaded as they come): nothing runs beside its SQL
  // otherwise, while each later view's SQL already runs beside the load of the one before it.
  const compute = (input: ViewStepInput, parts: boolean) => {
    const p = computeView(ctx, input, session, { parts });
    // Awaited below; a failure while the view before it loads must not count as unhandled meanwhile.
    p.catch(() => undefined);
    return p;
  };
  let next = inputs.length > 0 ? compute(inputs[0]!, true) : undefined;
  for (const [k, input] of inputs.entries()) {
    const computed = await next!;
    next = k + 1 < inputs.length ? compute(inputs[k + 1]!, false) : undefined;
    // The last view computed (its parts too): the session's tables can go while the loads finish.
    const last = k + 1 === inputs.length;
    if (last && !computed.rest) session.release?.();
    try {
      await loadView(ctx, input, computed);
    } catch (e) {
      // The next view's SQL may still be running on the session the caller closes next: let it end first (and a
      // view computed in parts stop computing its next one).
      await next?.then((c) => c.rest?.return?.()).catch(() => undefined);
      throw e;
    }
    if (last && computed.rest) session.release?.();
  }
}

export function describeError(e: unknown): string {
  return e instanceof Error ? `${e.name === 'Error' ? '' : `${e.name}: `}${e.message}` : String(e);
}
