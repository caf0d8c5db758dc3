/**
 * The steps of a batch run, each a function of its context (clients, names,
 * engine): plan -> per view (SQL -> load) -> publish, and fail. The in-process
 * pipeline (pipeline.ts: the local cloud, tests, benchmarks) and the Step
 * Functions task (task.ts, the handler of functions/batch-task.ts: AWS) call
 * the same functions, so both write the same run, manifest, lock and pointer items.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { Settings } from '../core/settings.ts';
import { iso } from '../core/time.ts';
import { findView, type View } from '../core/views.ts';
import {
  acquireLock,
  allocateVersion,
  type Control,
  createRun,
  getManifest,
  getPointer,
  getRun,
  type RunItem,
  recordManifestView,
  recordRunTimings,
  recordRunView,
  refreshLock,
  releaseLock,
  updateRun,
} from './control.ts';
import type { BatchEngine, EngineSession } from './engine.ts';
import { loadRows, rowPartitions } from './load.ts';
import { type CutoffPlan, computeCutoff, gatherArchiveProgress } from './planner.ts';
import { applyRetention, publishVersion, retireVersion } from './publish.ts';
import { checkCompleteness, type ExpectedObject, IncompleteArchiveError, readArchiveManifest } from './verify.ts';

/** Fault-injection points (tests). A hook crashes the run by throwing. */
export interface BatchHooks {
  /** After a stage completed: `plan`, `view:<name>` (SQL + load), before `publish`. */
  afterStage?(stage: string, runId: string): void | Promise<void>;
  /** After each load request, with the view's items written so far. */
  afterItems?(view: string, written: number): void | Promise<void>;
}

/**
 * Thrown by a hook to simulate the death of the process running the step: no
 * cleanup runs (the run stays RUNNING and the lock held until it expires), as
 * after a killed Lambda or a SIGKILL.
 */
export class SimulatedCrash extends Error {
  constructor(where: string) {
    super(`simulated crash ${where}`);
    this.name = 'SimulatedCrash';
  }
}

export interface BatchContext {
  readonly kinesis: KinesisClient;
  readonly ddb: DynamoDBClient;
  readonly doc: DynamoDBDocumentClient;
  readonly streamName: string;
  readonly tables: { readonly control: string; readonly batchViews: string };
  readonly views: readonly View[];
  readonly settings: Settings;
  readonly engine: BatchEngine;
  readonly now: () => number;
  /** Seconds a lock lives without a refresh. */
  readonly lockTtlSeconds: number;
  /** BatchWriteItem requests in flight while loading. */
  readonly loadConcurrency: number;
  readonly hooks?: BatchHooks | undefined;
}

export const DEFAULT_LOCK_TTL_SECONDS = 300;

const control = (ctx: BatchContext): Control => ({ doc: ctx.doc, table: ctx.tables.control });
const publishDeps = (ctx: BatchContext) => ({
  control: control(ctx),
  ddb: ctx.ddb,
  batchViewsTable: ctx.tables.batchViews,
  settings: ctx.settings,
  now: ctx.now,
});

export class LockLostError extends Error {
  constructor(runId: string) {
    super(`run ${runId} no longer holds the batch lock (it expired and another run took it)`);
    this.name = 'LockLostError';
  }
}

async function holdLock(ctx: BatchContext, runId: string): Promise<void> {
  if (!(await refreshLock(control(ctx), runId, ctx.now(), ctx.lockTtlSeconds))) throw new LockLostError(runId);
}

// ---- plan ---------------------------------------------------------------------------------------

export interface PlanOutput {
  readonly runId: string;
  /** True when the run publishes nothing (cutoff not advanced, or another run holds the lock). */
  readonly skipped: boolean;
  readonly version?: number;
  readonly cutoff?: number;
  /** The views to compute (empty when skipped). */
  readonly views: readonly string[];
  readonly note?: string;
}

/**
 * Takes the lock, creates the run item, plans the cutoff; when it advanced,
 * allocates the version, opens the engine and checks the archive is complete
 * up to the cutoff. Returns the open session when `keepSession` (in-process
 * runs read the staged objects once for every view).
 */
export async function planStep(
  ctx: BatchContext,
  runId: string,
  opts: { keepSession?: boolean } = {},
): Promise<PlanOutput & { session?: EngineSession }> {
  const t0 = performance.now();
  const c = control(ctx);
  const lock = await acquireLock(c, runId, ctx.now(), ctx.lockTtlSeconds);
  await createRun(c, runId, ctx.now());
  if (!lock.acquired) {
    const note = `another batch run (${lock.holder}) holds the lock`;
    await updateRun(c, runId, { state: 'SKIPPED', stage: 'done', finishedAt: ctx.now(), note });
    return { runId, skipped: true, views: [], note };
  }
  const pointer = await getPointer(c);
  const progress = await gatherArchiveProgress({
    kinesis: ctx.kinesis,
    doc: ctx.doc,
    streamName: ctx.streamName,
    controlTable: ctx.tables.control,
    now: ctx.now,
  });
  const plan = computeCutoff({ shards: progress.shards, now: progress.now, settings: ctx.settings, published: pointer?.cutoff ?? null });
  const planMs = performance.now() - t0;
  if (!plan.advanced) {
    const note = skipNote(plan);
    await updateRun(c, runId, {
      state: 'SKIPPED',
      stage: 'done',
      finishedAt: ctx.now(),
      cutoff: plan.cutoff,
      previousCutoff: plan.previous,
      note,
    });
    await recordRunTimings(c, runId, { plan: planMs, total: performance.now() - t0 });
    await releaseLock(c, runId);
    return { runId, skipped: true, cutoff: plan.cutoff, views: [], note };
  }
  const version = await allocateVersion(c, runId, plan.cutoff, ctx.now());
  await updateRun(c, runId, {
    stage: 'views',
    version,
    cutoff: plan.cutoff,
    previousCutoff: plan.previous,
    ...(plan.limitedBy ? { note: `cutoff held back by ${plan.limitedBy}` } : {}),
  });
  // The manifest is read before the engine lists the objects: an object the archive writes after the
  // listing (same arrival hour, later records) is then not taken for a missing one.
  const expected = await readArchiveManifest(ctx.doc, ctx.tables.control, plan.cutoff);
  const session = await ctx.engine.open(plan.cutoff, runId);
  try {
    const verifyMs = await verifyArchive(ctx, runId, session, expected);
    await recordRunTimings(c, runId, { plan: planMs, stage: session.stats.stageMs, verify: verifyMs });
    await ctx.hooks?.afterStage?.('plan', runId);
  } catch (e) {
    await session.close();
    throw e;
  }
  if (!opts.keepSession) await session.close();
  return {
    runId,
    skipped: false,
    version,
    cutoff: plan.cutoff,
    views: ctx.views.map((v) => v.name),
    ...(opts.keepSession ? { session } : {}),
  };
}

function skipNote(plan: CutoffPlan): string {
  const held = plan.limitedBy
    ? ` (held back by ${plan.limitedBy}, not archived past ${iso(plan.shards.find((s) => s.shardId === plan.limitedBy)!.bound)})`
    : '';
  return `the cutoff has not advanced past the published ${plan.previous === null ? 'nothing' : iso(plan.previous)}${held}`;
}

/** The completeness check (verify.ts); throws IncompleteArchiveError. Returns its duration. */
async function verifyArchive(
  ctx: BatchContext,
  runId: string,
  session: EngineSession,
  expected: readonly ExpectedObject[],
): Promise<number> {
  const t = performance.now();
  const reads = await session.objectReads();
  const result = checkCompleteness(expected, reads);
  await updateRun(control(ctx), runId, {
    archive: { objects: result.objects, records: result.records, extraObjects: result.extraObjects },
  });
  if (!result.complete) throw new IncompleteArchiveError(result);
  return performance.now() - t;
}

// ---- view ---------------------------------------------------------------------------------------

export interface ViewStepInput {
  readonly runId: string;
  readonly version: number;
  readonly cutoff: number;
  readonly view: string;
}

export interface ViewOutput {
  readonly view: string;
  readonly rows: number;
  readonly sqlMs: number;
  readonly loadMs: number;
}

/**
 * Computes one view with the engine and loads its rows as the version. The
 * manifest lists the view's partitions before any row is written, so the rows
 * of a run that dies mid-load can always be found and deleted.
 */
export async function viewStep(ctx: BatchContext, input: ViewStepInput, shared?: EngineSession): Promise<ViewOutput> {
  const c = control(ctx);
  await holdLock(ctx, input.runId);
  const view = findView(ctx.views, input.view);
  if (!view) throw new Error(`unknown view ${input.view}`);
  let session = shared;
  if (!session) {
    const expected = await readArchiveManifest(ctx.doc, ctx.tables.control, input.cutoff);
    session = await ctx.engine.open(input.cutoff, input.runId);
    // A separate step stages its own copy of the objects: check that copy too (cheap on DuckDB).
    if (session.engine === 'duckdb') {
      try {
        await verifyArchive(ctx, input.runId, session, expected);
      } catch (e) {
        await session.close();
        throw e;
      }
    }
  }
  try {
    const t0 = performance.now();
    const rows = await session.runView(view);
    const sqlMs = Math.round(performance.now() - t0);
    await recordManifestView(c, input.version, view.name, {
      rows: rows.length,
      partitions: rowPartitions(view, input.version, rows),
      loaded: false,
    });
    const t1 = performance.now();
    await loadRows(
      {
        ddb: ctx.ddb,
        table: ctx.tables.batchViews,
        concurrency: ctx.loadConcurrency,
        ...(ctx.hooks?.afterItems && { onProgress: (n: number) => ctx.hooks!.afterItems!(view.name, n) }),
      },
      view,
      input.version,
      rows,
    );
    const loadMs = Math.round(performance.now() - t1);
    await recordManifestView(c, input.version, view.name, {
      rows: rows.length,
      partitions: rowPartitions(view, input.version, rows),
      loaded: true,
    });
    const out: ViewOutput = { view: view.name, rows: rows.length, sqlMs, loadMs };
    await recordRunView(c, input.runId, view.name, { rows: out.rows, sqlMs, loadMs });
    await ctx.hooks?.afterStage?.(`view:${view.name}`, input.runId);
    return out;
  } finally {
    if (!shared) await session.close();
  }
}

// ---- publish ------------------------------------------------------------------------------------

export interface PublishInput {
  readonly runId: string;
  readonly skipped?: boolean;
  readonly version?: number;
  readonly cutoff?: number;
}

export interface PublishOutput {
  readonly runId: string;
  readonly state: RunItem['state'];
  readonly published: boolean;
  readonly version?: number;
  readonly cutoff?: number;
  /** The version that is current afterwards. */
  readonly current?: number;
  readonly retired?: readonly number[];
}

/** Flips the pointer, retires old versions, finishes the run and releases the lock. */
/** `startedAt`: performance.now() at the start of an in-process run. */
export async function publishStep(ctx: BatchContext, input: PublishInput, startedAt?: number): Promise<PublishOutput> {
  const c = control(ctx);
  if (input.skipped || input.version === undefined) {
    const run = await getRun(c, input.runId);
    return { runId: input.runId, state: run?.state ?? 'SKIPPED', published: false };
  }
  await holdLock(ctx, input.runId);
  await updateRun(c, input.runId, { stage: 'publish' });
  await ctx.hooks?.afterStage?.('publish', input.runId);
  const t0 = performance.now();
  const result = await publishVersion(
    publishDeps(ctx),
    input.version,
    input.runId,
    ctx.views.map((v) => v.name),
  );
  const finishedAt = ctx.now();
  const publishMs = performance.now() - t0;
  // In process, the total is measured on the monotonic clock from the start; across Lambda
  // invocations (Step Functions) only wall-clock start and finish exist.
  const total =
    startedAt !== undefined ? performance.now() - startedAt : finishedAt - ((await getRun(c, input.runId))?.startedAt ?? finishedAt);
  await recordRunTimings(c, input.runId, { publish: publishMs, total });
  if (!result.published) {
    const error = `lost the publish race: version ${result.current.version} (cutoff ${iso(result.current.cutoff)}) was published first; version ${input.version} is retired`;
    await updateRun(c, input.runId, { state: 'FAILED', stage: 'done', finishedAt, error });
    await releaseLock(c, input.runId);
    return { runId: input.runId, state: 'FAILED', published: false, version: input.version, current: result.current.version };
  }
  // The new version serves from here on; retiring old versions (deleting their rows) is cleanup.
  const t1 = performance.now();
  const retired = await applyRetention(publishDeps(ctx), input.version);
  await recordRunTimings(c, input.runId, { retire: performance.now() - t1 });
  await updateRun(c, input.runId, { state: 'SUCCEEDED', stage: 'done', finishedAt: ctx.now() });
  await releaseLock(c, input.runId);
  return {
    runId: input.runId,
    state: 'SUCCEEDED',
    published: true,
    version: input.version,
    cutoff: result.pointer.cutoff,
    current: input.version,
    retired,
  };
}

// ---- fail ---------------------------------------------------------------------------------------

export interface FailInput {
  readonly runId: string;
  readonly version?: number;
  readonly error: string;
}

/** Marks the run FAILED, retires its version unless it was published, releases the lock. */
export async function failStep(ctx: BatchContext, input: FailInput): Promise<{ runId: string; state: 'FAILED' }> {
  const c = control(ctx);
  await updateRun(c, input.runId, { state: 'FAILED', stage: 'done', finishedAt: ctx.now(), error: input.error });
  const version = input.version ?? (await getRun(c, input.runId))?.version;
  if (version !== undefined) {
    const m = await getManifest(c, version);
    const pointer = await getPointer(c);
    if (m && m.state === 'loading' && pointer?.version !== version) await retireVersion(publishDeps(ctx), m);
  }
  await releaseLock(c, input.runId);
  return { runId: input.runId, state: 'FAILED' };
}
