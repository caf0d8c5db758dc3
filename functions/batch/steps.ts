/**
 * The steps of a batch run, each a function of its context (clients, names,
 * engine): plan -> per view (SQL -> load) -> publish, and fail. The in-process
 * pipeline (pipeline.ts: the local cloud, tests, benchmarks) and the Step
 * Functions task (task.ts, the handler of functions/batch-task.ts: AWS) call
 * the same functions, so both write the same run, manifest, lock and pointer items.
 */
import { gunzipSync } from 'node:zlib';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { type DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { HOUR_MS } from '../archive/layout.ts';
import { versionKey } from '../core/keys.ts';
import { mapLimit } from '../core/limit.ts';
import type { Settings } from '../core/settings.ts';
import { rawReadRange } from '../core/sql.ts';
import { iso } from '../core/time.ts';
import { findView, type View, viewFingerprint } from '../core/views.ts';
import {
  type AthenaQueries,
  type CompactedSource,
  compactedReadsOf,
  objectReadsOf,
  objectsQuerySql,
  parseAthenaCsv,
  runMarkers,
  s3Location,
  stopRunQueries,
  unloadRows,
  unloadSql,
  type VerifiedHours,
  verifiedHours,
  viewQuerySql,
} from './athena.ts';
import { type CompactedHour, compactCovered, readCompacted } from './compact.ts';
import {
  acquireLock,
  allocateVersion,
  type Control,
  createRun,
  getManifest,
  getPointer,
  getRun,
  type Pointer,
  type RebuildReason,
  type RunItem,
  recordManifestPlan,
  recordManifestView,
  recordRunTimings,
  recordRunView,
  refreshLock,
  releaseLock,
  updateRun,
  type VersionManifest,
  type ViewManifest,
  type ViewMode,
} from './control.ts';
import type { BatchEngine, BatchRow, EngineSession, ObjectRead, ViewPart } from './engine.ts';
import {
  loadPartitionGroups,
  loadPartitions,
  MERGEABLE_LAYOUTS,
  mergePartition,
  type PartitionWrite,
  planDayBlocks,
  type RollupsEntry,
  rebuildWrites,
  rollupsEntry,
  rowsByPartition,
  STORAGE_LAYOUT,
  writeDayBlocks,
} from './load.ts';
import { type CutoffPlan, computeCutoff, gatherArchiveProgress } from './planner.ts';
import { applyRetention, publishVersion, retireVersion } from './publish.ts';
import { type CompactedInput, checkCompleteness, type ExpectedObject, IncompleteArchiveError, readArchiveManifest } from './verify.ts';

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
  /** S3: the Athena path of the state machine reads query outputs (functions/contract/state-machine.ts). */
  readonly s3?: S3Client;
  /** What the Lambda still asks Athena (a query's statistics, stopping the run's queries): athena.ts athenaQueries. */
  readonly athena?: AthenaQueries;
  /** The Athena workgroup the state machine runs the queries in (the fail step stops the run's leftovers there). */
  readonly athenaWorkgroup?: string | undefined;
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

async function holdLock(ctx: BatchContext, runId: string, ttlSeconds = ctx.lockTtlSeconds): Promise<void> {
  if (!(await refreshLock(control(ctx), runId, ctx.now(), ttlSeconds))) throw new LockLostError(runId);
}

/**
 * The lock's life across an Athena query: no Lambda runs while the state machine polls one, so each
 * Athena step refreshes the lock for the longest a query may run (the state machine's default budget,
 * 30 min) plus a margin; a run that dies meanwhile (execution timeout) holds it back that long at most.
 */
export const ATHENA_LOCK_TTL_SECONDS = 35 * 60;
const holdAthenaLock = (ctx: BatchContext, runId: string) => holdLock(ctx, runId, Math.max(ctx.lockTtlSeconds, ATHENA_LOCK_TTL_SECONDS));

// ---- plan ---------------------------------------------------------------------------------------

/** What a run was asked for (POST /batch/runs): rebuild every view, or one; else each view as the rule says. */
export interface RunRequest {
  readonly rebuild?: boolean;
  readonly view?: string;
}

/** How a run computes one view. */
export interface ViewPlan {
  readonly mode: ViewMode;
  readonly reason?: RebuildReason;
  /** An increment: the published version it merges into, and its cutoff (the increment's `since`). */
  readonly base?: number;
  readonly since?: number;
}

/**
 * Per view: INCREMENT (merge the arrivals in [C, C') into the published version (N, C)) when
 * N's manifest holds the view computed from the same declaration (fingerprint) with the same
 * dedup horizon; else, or when the run asks for it, REBUILD from all history.
 */
export function planViews(
  views: readonly View[],
  published: Pick<Pointer, 'version' | 'cutoff'> | undefined,
  base: Pick<VersionManifest, 'views'> | undefined,
  horizonMs: number,
  request: RunRequest = {},
): Record<string, ViewPlan> {
  const out: Record<string, ViewPlan> = {};
  for (const view of views) {
    const entry = published && base ? base.views?.[view.name] : undefined;
    if (request.rebuild || request.view === view.name) out[view.name] = { mode: 'rebuild', reason: 'requested' };
    else if (!entry) out[view.name] = { mode: 'rebuild', reason: 'new view' };
    // A manifest from before increments (no fingerprint, a list of keys) cannot vouch for its declaration.
    // A changed horizon changes which copies count, as a changed filter would.
    else if (entry.fingerprint !== viewFingerprint(view) || entry.horizonMs !== horizonMs || Array.isArray(entry.partitions))
      out[view.name] = { mode: 'rebuild', reason: 'declaration changed' };
    // Rows stored in an older layout: merging an increment into them would read nothing.
    else if (!MERGEABLE_LAYOUTS.includes(entry.layout ?? '')) out[view.name] = { mode: 'rebuild', reason: 'storage changed' };
    else out[view.name] = { mode: 'increment', base: published!.version, since: published!.cutoff };
  }
  return out;
}

/** The lowest arrival an engine must read for these views: the dedup look-back before the earliest `since`, null for all history. */
export function readFrom(plans: readonly ViewPlan[], horizonMs: number): number | null {
  let from = Number.POSITIVE_INFINITY;
  for (const p of plans) {
    if (p.mode === 'rebuild' || p.since === undefined) return null;
    from = Math.min(from, p.since - horizonMs);
  }
  return from === Number.POSITIVE_INFINITY ? null : from;
}

const horizonMsOf = (ctx: BatchContext) => ctx.settings.dedupHorizonSeconds * 1000;

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
  opts: { keepSession?: boolean; request?: RunRequest; verifyLater?: boolean } = {},
): Promise<PlanOutput & { session?: EngineSession }> {
  const t0 = performance.now();
  const c = control(ctx);
  const request = opts.request ?? {};
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
  const plan = computeCutoff({
    shards: progress.shards,
    backfills: progress.backfills,
    now: progress.now,
    settings: ctx.settings,
    published: pointer?.cutoff ?? null,
  });
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
  // The API checks the name; a run started otherwise (a schedule's input) fails here, before it allocates a version.
  if (request.view !== undefined && !findView(ctx.views, request.view))
    throw new Error(`there is no view named "${request.view}" to rebuild`);
  const version = await allocateVersion(c, runId, plan.cutoff, ctx.now());
  const base = pointer ? await getManifest(c, pointer.version) : undefined;
  const plans = planViews(ctx.views, pointer, base, horizonMsOf(ctx), request);
  // The manifest holds the plan before any row is written: each view step (a Lambda of its own in
  // AWS) reads its mode there, and the fingerprint is what the next run compares with.
  await recordManifestPlan(
    c,
    version,
    Object.fromEntries(
      ctx.views.map((v) => {
        const p = plans[v.name]!;
        const entry: ViewManifest = {
          rows: 0,
          partitions: {},
          loaded: false,
          fingerprint: viewFingerprint(v),
          horizonMs: horizonMsOf(ctx),
          layout: STORAGE_LAYOUT,
          ...p,
        };
        return [v.name, entry];
      }),
    ),
  );
  await updateRun(c, runId, {
    stage: 'views',
    version,
    cutoff: plan.cutoff,
    previousCutoff: plan.previous,
    ...(plan.limitedBy ? { note: `cutoff held back by ${plan.limitedBy}` } : {}),
  });
  // On Athena the state machine runs the completeness query itself (compile -> objects query -> verify).
  if (opts.verifyLater) {
    await recordRunTimings(c, runId, { plan: planMs });
    await ctx.hooks?.afterStage?.('plan', runId);
    return { runId, skipped: false, version, cutoff: plan.cutoff, views: ctx.views.map((v) => v.name) };
  }
  // The manifest is read before the engine lists the objects: an object the archive writes after the
  // listing (same arrival hour, later records) is then not taken for a missing one.
  const from = readFrom(Object.values(plans), horizonMsOf(ctx));
  const expected = await readArchiveManifest(ctx.doc, ctx.tables.control, plan.cutoff, from);
  const compacted = await compactedHours(ctx, plan.cutoff, from);
  const session = await ctx.engine.open(plan.cutoff, runId, { from, compacted, recorded: recordedHours(expected), views: ctx.views });
  try {
    const verifyMs = await verifyArchive(ctx, runId, session, expected, compacted);
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
  compacted: ReadonlyMap<number, CompactedHour> = new Map(),
): Promise<number> {
  const t = performance.now();
  const compactedReads = (await session.compactedReads?.()) ?? new Map();
  await recordCompleteness(ctx, runId, await session.objectReads(), expected, { items: compacted, reads: compactedReads });
  return performance.now() - t;
}

/** The arrival hours the archive's manifest records objects in: the hours an engine lists (OpenOptions.recorded). */
const recordedHours = (expected: readonly ExpectedObject[]): Set<number> => new Set(expected.map((e) => e.hour));

/**
 * The compacted hours of a run's range (compact.ts), read after the manifest, for an engine that reads
 * them in the Lambda (DuckDB); the Athena path reads them in its compile step (the queries read them).
 */
async function compactedHours(ctx: BatchContext, cutoff: number, from: number | null): Promise<Map<number, CompactedHour>> {
  if (!ctx.engine.compactor) return new Map();
  return readCompacted({ doc: ctx.doc, table: ctx.tables.control }, cutoff, from);
}

/**
 * The oldest arrival a run's compaction looks at: the dedup look-back of the next increment (H before
 * the cutoff) and a day more, so every hour an increment reads gets compacted and a failed hour is
 * retried by the runs of at least a day. Older hours (history archived before the first run, say)
 * stay JSON: only a rebuild reads them, and looking at all history every run is what this avoids.
 */
export const compactFrom = (cutoff: number, horizonMs: number): number => cutoff - horizonMs - 24 * HOUR_MS;

/**
 * After a publish: compacts into Parquet every arrival hour the published cutoff covers whole that is
 * not compacted yet (compact.ts). Never fails the run: an hour that fails is recorded on the run
 * item and compacted by a later run. Returns its duration, ms.
 */
export async function compactStep(ctx: BatchContext, runId: string, cutoff: number): Promise<number> {
  const compactor = ctx.engine.compactor;
  if (!compactor) return 0;
  const t = performance.now();
  const c = control(ctx);
  try {
    const outcome = await compactCovered(
      {
        doc: ctx.doc,
        table: ctx.tables.control,
        compactor,
        now: ctx.now,
        expectedOf: (hour) => readArchiveManifest(ctx.doc, ctx.tables.control, hour + HOUR_MS, hour),
        afterObject: (hour) => ctx.hooks?.afterStage?.(`compact:${hour}`, runId),
      },
      cutoff,
      compactFrom(cutoff, horizonMsOf(ctx)),
    );
    await updateRun(c, runId, {
      compaction: {
        hours: outcome.compacted.length,
        failed: outcome.failed.length,
        ...(outcome.failed.length > 0 && { error: outcome.failed[0]!.error }),
      },
    });
    for (const f of outcome.failed) console.error(`batch run ${runId}: compaction of ${f.error} (retried by the next run)`);
  } catch (e) {
    console.error(`batch run ${runId}: compaction failed (retried by the next run): ${e instanceof Error ? e.message : String(e)}`);
  }
  const ms = performance.now() - t;
  await recordRunTimings(c, runId, { compact: ms }).catch(() => undefined);
  return ms;
}

/** Compares what was read with what the archive recorded, records it on the run; throws IncompleteArchiveError. */
async function recordCompleteness(
  ctx: BatchContext,
  runId: string,
  reads: ReadonlyMap<string, ObjectRead>,
  expected: readonly ExpectedObject[],
  compacted?: CompactedInput,
): Promise<void> {
  // `expected` holds the hours the session reads only (readArchiveManifest with the session's from).
  const result = checkCompleteness(expected, reads, compacted);
  await updateRun(control(ctx), runId, {
    archive: {
      objects: result.objects,
      records: result.records,
      extraObjects: result.extraObjects,
      rawObjectsRead: result.rawObjectsRead,
      rawRowsRead: result.rawRowsRead,
      rawBytesRead: result.rawBytesRead,
      compactedHours: result.compactedHours,
    },
  });
  if (!result.complete) throw new IncompleteArchiveError(result);
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
  /** Rows of the view in the version (shared partitions included). */
  readonly rows: number;
  readonly sqlMs: number;
  readonly loadMs: number;
  readonly mode: ViewMode;
  /** Rows the step wrote: every row for a rebuild, the touched partitions' rows for an increment. */
  readonly written: number;
}

/** What loadPartitions needs of the batch context, with the test hook reporting a view's written items. */
function loadDepsOf(ctx: BatchContext, viewName: string) {
  return {
    ddb: ctx.ddb,
    table: ctx.tables.batchViews,
    concurrency: ctx.loadConcurrency,
    ...(ctx.hooks?.afterItems && { onProgress: (n: number) => ctx.hooks!.afterItems!(viewName, n) }),
  };
}

/**
 * Computes one view with the engine and loads its rows as the version, as its plan in the
 * manifest says. REBUILD: the SQL over all history, every partition written as this version.
 * INCREMENT: the SQL over the arrivals since the base version's cutoff; each partition the
 * increment touches is read from its writer, merged with the increment (metric monoids) and
 * written as this version; the others stay with their writer (copy-on-write). The manifest
 * maps the partitions to their writers before any row is written, so the rows of a run that
 * dies mid-load can always be found and deleted. Without a `shared` session (a step of its
 * own, in AWS), it opens one over the view's read range and checks the archive first.
 */
export async function viewStep(ctx: BatchContext, input: ViewStepInput, shared?: EngineSession): Promise<ViewOutput> {
  if (shared) return loadView(ctx, input, await computeView(ctx, input, shared));
  const c = control(ctx);
  await holdLock(ctx, input.runId);
  const view = findView(ctx.views, input.view);
  if (!view) throw new Error(`unknown view ${input.view}`);
  const plan = (await getManifest(c, input.version))?.views?.[view.name];
  if (!plan?.mode) throw new Error(`version ${input.version} has no plan for view ${view.name}`);
  const horizonMs = horizonMsOf(ctx);
  const from = readFrom([plan as ViewPlan], horizonMs);
  const expected = await readArchiveManifest(ctx.doc, ctx.tables.control, input.cutoff, from);
  const compacted = await compactedHours(ctx, input.cutoff, from);
  const session = await ctx.engine.open(input.cutoff, input.runId, { from, compacted, recorded: recordedHours(expected), views: [view] });
  try {
    // A separate step stages its own copy of the objects: check that copy too (cheap on DuckDB).
    if (session.engine === 'duckdb') await verifyArchive(ctx, input.runId, session, expected, compacted);
    return await loadView(ctx, input, await computeView(ctx, input, session));
  } finally {
    await session.close();
  }
}

/** A view's rows as the engine computed them for its plan, before they are loaded (`loadView`). */
export interface ComputedView {
  readonly view: View;
  readonly plan: ViewManifest;
  readonly rows: readonly BatchRow[];
  readonly sqlMs: number;
  /**
   * A rebuild on an engine that computes in parts (EngineSession.runViewParts): its first part (`rows` then holds
   * those rows, `sqlMs` its time) and the rest, which the engine computes while the load writes the parts before.
   */
  readonly rest?: AsyncIterator<ViewPart>;
}

/**
 * The first half of `viewStep`: the view's SQL over the session. Only reads (the manifest, the engine's
 * session), so a run in one process computes the next view while it loads this one (pipeline.ts).
 */
export async function computeView(
  ctx: BatchContext,
  input: ViewStepInput,
  session: EngineSession,
  opts: { readonly parts?: boolean } = {},
): Promise<ComputedView> {
  await holdLock(ctx, input.runId);
  const view = findView(ctx.views, input.view);
  if (!view) throw new Error(`unknown view ${input.view}`);
  const plan = (await getManifest(control(ctx), input.version))?.views?.[view.name];
  if (!plan?.mode) throw new Error(`version ${input.version} has no plan for view ${view.name}`);
  const increment = plan.mode === 'increment' && plan.base !== undefined && plan.since !== undefined;
  const t0 = performance.now();
  if (!increment && opts.parts && session.runViewParts) {
    // A rebuild writes whole partitions, so it can load them part by part (loadParts).
    const parts = session.runViewParts(view, { horizonMs: horizonMsOf(ctx) })[Symbol.asyncIterator]();
    const first = await parts.next();
    return { view, plan, rows: first.done ? [] : first.value.rows, sqlMs: Math.round(performance.now() - t0), rest: parts };
  }
  const rows = await session.runView(view, { horizonMs: horizonMsOf(ctx), ...(increment && { since: plan.since! }) });
  return { view, plan, rows, sqlMs: Math.round(performance.now() - t0) };
}

/** The second half of `viewStep`: the computed rows merged (an increment) and loaded as the version, then recorded. */
export async function loadView(ctx: BatchContext, input: ViewStepInput, computed: ComputedView): Promise<ViewOutput> {
  if (computed.rest) return loadParts(ctx, input, computed, computed.rest);
  const c = control(ctx);
  const { view, plan, rows, sqlMs } = computed;
  const increment = plan.mode === 'increment' && plan.base !== undefined && plan.since !== undefined;
  const t1 = performance.now();
  const next = increment ? await mergeIncrement(ctx, view, plan, input.version, rows) : rebuildOf(view, input.version, rows);
  // Day blocks are named in the manifest before they are written, like partitions (a dying run's rows stay findable).
  const days = planDayBlocks(view, input.version, next.partitions, next.rollups);
  const { inherits: _, ...rest } = plan;
  const entry: ViewManifest = {
    ...rest,
    rows: next.rows,
    partitions: next.partitions,
    ...(Object.keys(next.inherits).length > 0 && { inherits: next.inherits }),
    ...(days.rollups && { rollups: days.rollups }),
    loaded: false,
  };
  await recordManifestView(c, input.version, view.name, entry);
  await loadPartitions(loadDepsOf(ctx, view.name), view, input.version, next.writes);
  const fresh = new Map(next.writes.map((w) => [w.start, w.rollups.get('day') ?? []]));
  await writeDayBlocks(loadDepsOf(ctx, view.name), view, input.version, days.build, fresh);
  const loadMs = Math.round(performance.now() - t1);
  await recordManifestView(c, input.version, view.name, { ...entry, loaded: true });
  const out: ViewOutput = { view: view.name, rows: next.rows, sqlMs, loadMs, mode: plan.mode!, written: writtenRows(next.writes) };
  await recordRunView(c, input.runId, view.name, {
    rows: out.rows,
    sqlMs,
    loadMs,
    mode: plan.mode!,
    ...(plan.reason && { reason: plan.reason }),
    written: out.written,
  });
  await ctx.hooks?.afterStage?.(`view:${view.name}`, input.runId);
  return out;
}

/**
 * `loadView` for a rebuild computed in parts (ComputedView.rest): each part's partitions are named in the manifest,
 * then written whole with their rollups, while the engine computes the next part; the day blocks, planned from the
 * whole partition map, last. What the run records: `sqlMs` the engine's time on the parts, `loadMs` the rest.
 */
async function loadParts(
  ctx: BatchContext,
  input: ViewStepInput,
  computed: ComputedView,
  rest: AsyncIterator<ViewPart>,
): Promise<ViewOutput> {
  const c = control(ctx);
  const { view, plan } = computed;
  const t1 = performance.now();
  let sqlMs = computed.sqlMs;
  let waitMs = 0;
  const { inherits: _, ...base } = plan;
  const rollups = rollupsEntry(view, input.version);
  const partitions: Record<string, number> = {};
  const fresh = new Map<string, readonly BatchRow[]>();
  let rows = 0;
  const deps = loadDepsOf(ctx, view.name);
  async function* groups(): AsyncGenerator<readonly PartitionWrite[]> {
    for (let part: readonly BatchRow[] | undefined = computed.rows; part !== undefined; ) {
      yield rebuildWrites(view, part);
      const t = performance.now();
      const next = await rest.next();
      waitMs += performance.now() - t;
      if (next.done) part = undefined;
      else {
        part = next.value.rows;
        sqlMs += Math.round(next.value.ms);
      }
    }
  }
  try {
    await loadPartitionGroups(deps, view, input.version, groups(), {
      // Named before their rows are written, like a whole load's (a dying run's rows stay findable).
      before: async (writes) => {
        for (const w of writes) partitions[w.start] = input.version;
        rows += writes.reduce((n, w) => n + w.rows.length, 0);
        await recordManifestView(c, input.version, view.name, { ...base, rows, partitions, ...(rollups && { rollups }), loaded: false });
      },
      written: (w) => fresh.set(w.start, w.rollups.get('day') ?? []),
    });
  } catch (e) {
    await rest.return?.();
    throw e;
  }
  const days = planDayBlocks(view, input.version, partitions, rollups);
  const entry: ViewManifest = { ...base, rows, partitions, ...(days.rollups && { rollups: days.rollups }), loaded: false };
  if (days.build.length > 0) await recordManifestView(c, input.version, view.name, entry);
  await writeDayBlocks(deps, view, input.version, days.build, fresh);
  const loadMs = Math.round(performance.now() - t1 - waitMs);
  await recordManifestView(c, input.version, view.name, { ...entry, loaded: true });
  const out: ViewOutput = { view: view.name, rows, sqlMs, loadMs, mode: plan.mode!, written: rows };
  await recordRunView(c, input.runId, view.name, {
    rows,
    sqlMs,
    loadMs,
    mode: plan.mode!,
    ...(plan.reason && { reason: plan.reason }),
    written: rows,
  });
  await ctx.hooks?.afterStage?.(`view:${view.name}`, input.runId);
  return out;
}

interface NextPartitions {
  /** Rows of the view in the new version. */
  readonly rows: number;
  /** Partition -> writer, the new version's manifest entry. */
  readonly partitions: Record<string, number>;
  /** Partition -> the earlier writers it inherits blocks from (ViewManifest.inherits). */
  readonly inherits: Record<string, readonly number[]>;
  /** What to write as the new version: whole partitions, or an increment's touched blocks, with rollups. */
  readonly writes: readonly PartitionWrite[];
  readonly rollups?: RollupsEntry | undefined;
}

/** The base rows a load writes (the figure runs report as `written`; rollups and day blocks are not counted). */
const writtenRows = (writes: readonly PartitionWrite[]) => writes.reduce((n, w) => n + w.rows.length, 0);

function rebuildOf(view: View, version: number, rows: readonly BatchRow[]): NextPartitions {
  const writes = rebuildWrites(view, rows);
  return {
    rows: rows.length,
    partitions: Object.fromEntries(writes.map((w) => [w.start, version])),
    inherits: {},
    writes,
    rollups: rollupsEntry(view, version),
  };
}

/** The writes of an increment's rows, merged per touched partition into the base entry (mergePartition), at most `concurrency` at a time. */
async function mergeWrites(ctx: BatchContext, view: View, base: ViewManifest, increment: readonly BatchRow[]): Promise<PartitionWrite[]> {
  const deps = { ddb: ctx.ddb, table: ctx.tables.batchViews, concurrency: ctx.loadConcurrency };
  return mapLimit([...rowsByPartition(view, increment).entries()], ctx.loadConcurrency, ([p, rows]) =>
    mergePartition(deps, view, base, p, rows),
  );
}

/** A base entry's `partitions` and `inherits` with numbers as numbers (the document client may give NumberValues). */
function baseMaps(entry: ViewManifest): { partitions: Record<string, number>; inherits: Record<string, readonly number[]> } {
  return {
    partitions: Object.fromEntries(Object.entries(entry.partitions as Record<string, number>).map(([p, w]) => [p, Number(w)])),
    inherits: Object.fromEntries(Object.entries(entry.inherits ?? {}).map(([p, ws]) => [p, ws.map(Number)])),
  };
}

async function mergeIncrement(
  ctx: BatchContext,
  view: View,
  plan: ViewManifest,
  version: number,
  increment: readonly BatchRow[],
): Promise<NextPartitions> {
  const { entry } = await baseEntry(ctx, view, plan, version);
  const { partitions, inherits } = baseMaps(entry);
  const writes = await mergeWrites(ctx, view, entry, increment);
  let rows = Number(entry.rows);
  for (const w of writes) {
    rows += w.rows.length - w.replaced;
    partitions[w.start] = version;
    if (w.inherits) inherits[w.start] = w.inherits;
    else delete inherits[w.start];
  }
  return { rows, partitions, inherits, writes, rollups: rollupsEntry(view, version, entry.rollups) };
}

// ---- Athena from the state machine: compile, verify, parts, load, finish ----------------------------

/** One Athena query as the state machine runs it: the SQL of attempt n is `head + n + tail`. */
export interface CompiledQuery {
  readonly name: string;
  readonly head: string;
  readonly tail: string;
}

export interface CompileInput {
  readonly runId: string;
  readonly version: number;
  readonly cutoff: number;
  readonly database: string;
  readonly table: string;
  /** `s3://bucket/prefix/` of the workgroup's results bucket. */
  readonly resultsLocation: string;
  /** The Glue table over compact/: compacted hours are read from it (absent: every hour from the raw table). */
  readonly compactTable?: string;
}

/** What compile keeps in S3 for the verify step: the archive's record of the range, and the compacted hours read as Parquet. */
export interface ExpectedFile {
  readonly objects: readonly ExpectedObject[];
  readonly compacted: readonly CompactedHour[];
}

export interface CompileOutput {
  /** Where the archive's record of the objects in range is kept for the verify step (JSON: ExpectedFile). */
  readonly expected: string;
  /** Where the verify step keeps what it read per (hour, shard), for the compaction after the publish (athena-compact.ts). */
  readonly verified: string;
  /** The completeness query (objects and their line counts). */
  readonly objects: CompiledQuery;
  /** Per view: its query and the prefix its UNLOAD attempts write under (`<location>a<attempt>/`). */
  readonly views: readonly { readonly view: string; readonly mode: ViewMode; readonly location: string; readonly query: CompiledQuery }[];
}

export const athenaClients = (ctx: BatchContext) => {
  if (!ctx.s3 || !ctx.athena) throw new Error('the Athena steps need the S3 client and the Athena queries in the batch context');
  return { s3: ctx.s3, athena: ctx.athena };
};

/**
 * The queries of a run on Athena (the SQL comes from core/sql.ts, so from a Lambda): the
 * completeness query over the run's arrival range and one UNLOAD per view. The archive's
 * record of the objects in range is read now, before the query lists them (an object the
 * archive writes after the listing is then not taken for a missing one), and kept in S3.
 */
export async function compileStep(ctx: BatchContext, input: CompileInput): Promise<CompileOutput> {
  await holdAthenaLock(ctx, input.runId);
  const { s3 } = athenaClients(ctx);
  const manifest = await getManifest(control(ctx), input.version);
  const horizonMs = horizonMsOf(ctx);
  const plans = ctx.views.map((view) => {
    const plan = manifest?.views?.[view.name];
    if (!plan?.mode) throw new Error(`version ${input.version} has no plan for view ${view.name}`);
    return { view, plan: plan as ViewPlan };
  });
  const from = readFrom(
    plans.map((p) => p.plan),
    horizonMs,
  );
  const base = input.resultsLocation.endsWith('/') ? input.resultsLocation : `${input.resultsLocation}/`;
  const expected = await readArchiveManifest(ctx.doc, ctx.tables.control, input.cutoff, from);
  // After the manifest, as on DuckDB: the views and the completeness query read these hours from the Parquet table,
  // and the verify step checks them by counts (verify.ts), never object by object.
  const items = input.compactTable ? await readCompacted({ doc: ctx.doc, table: ctx.tables.control }, input.cutoff, from) : new Map();
  const compacted: CompactedSource | undefined = input.compactTable ? { table: input.compactTable, hours: [...items.keys()] } : undefined;
  const expectedUrl = `${base}expected/${input.runId}.json`;
  const where = s3Location(expectedUrl);
  const file: ExpectedFile = { objects: expected, compacted: [...items.values()] };
  await s3.send(
    new PutObjectCommand({ Bucket: where.bucket, Key: where.key, Body: JSON.stringify(file), ContentType: 'application/json' }),
  );
  const views = plans.map(({ view, plan }) => {
    const increment = plan.mode === 'increment' && plan.since !== undefined;
    const options = { horizonMs, ...(increment && { since: plan.since! }) };
    const need = rawReadRange(input.cutoff, horizonMs, increment ? plan.since : undefined).from;
    const location = `${base}unload/${input.runId}/${view.name}/`;
    const sql = unloadSql(view, viewQuerySql(input.database, input.table, view, input.cutoff, need, options, compacted), location);
    return { view: view.name, mode: plan.mode, location, query: { name: `view-${view.name}`, ...sql } };
  });
  // The comment keeps each attempt's statement distinct, as its token is, and marks the run's query (stopRunQueries).
  const marker = runMarkers(input.runId)[1]!;
  const objects = {
    name: 'objects',
    head: `${objectsQuerySql(input.database, input.table, input.cutoff, from, compacted)}\n${marker}attempt `,
    tail: '',
  };
  return { expected: expectedUrl, verified: `${base}verified/${input.runId}.json`, objects, views };
}

export async function readObject(s3: S3Client, url: string): Promise<string> {
  const { bucket, key } = s3Location(url);
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const bytes = Buffer.from(await got.Body!.transformToByteArray());
  // UNLOAD's GZIP output; CSV results and our own JSON are plain.
  return (bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzipSync(bytes) : bytes).toString('utf8');
}

export async function listKeys(s3: S3Client, url: string): Promise<{ key: string; size: number }[]> {
  const { bucket, key: prefix } = s3Location(url);
  const out: { key: string; size: number }[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of page.Contents ?? []) if (o.Key) out.push({ key: o.Key, size: o.Size ?? 0 });
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out;
}

/**
 * The completeness check over the objects query's CSV result (`output`) and the archive's record kept by compile:
 * raw objects one by one, compacted hours by their counts per (hour, shard) (verify.ts). With `verified`, keeps
 * there what the check read per (hour, shard) of the raw hours, which the compaction after the publish relies on.
 */
export async function verifyStep(
  ctx: BatchContext,
  input: { runId: string; version: number; cutoff: number; expected: string; output: string; verified?: string },
): Promise<{ runId: string; objects: number }> {
  await holdAthenaLock(ctx, input.runId);
  const { s3 } = athenaClients(ctx);
  const t = performance.now();
  const [text, csv] = await Promise.all([readObject(s3, input.expected), readObject(s3, input.output)]);
  const parsed = JSON.parse(text) as ExpectedFile | ExpectedObject[];
  // An array: written by a compile before compaction on Athena (an execution that spans a deploy).
  const file: ExpectedFile = Array.isArray(parsed) ? { objects: parsed, compacted: [] } : parsed;
  const rows = parseAthenaCsv(csv);
  const reads = objectReadsOf(rows, '');
  const items = new Map(file.compacted.map((c) => [c.hour, c]));
  await recordCompleteness(ctx, input.runId, reads, file.objects, { items, reads: compactedReadsOf(rows, '') });
  if (input.verified) {
    const where = s3Location(input.verified);
    const body: VerifiedHours = verifiedHours(input.cutoff, reads, file.objects);
    await s3.send(
      new PutObjectCommand({ Bucket: where.bucket, Key: where.key, Body: JSON.stringify(body), ContentType: 'application/json' }),
    );
  }
  await recordRunTimings(control(ctx), input.runId, { verify: performance.now() - t });
  return { runId: input.runId, objects: reads.size };
}

export interface PartsOutput {
  readonly location: string;
  /** The load groups the UNLOAD wrote (`g=<n>`), each holding whole batch-view partitions. */
  readonly groups: readonly string[];
  readonly bytes: number;
  readonly sqlMs: number;
}

/**
 * After a view's query: the load groups its UNLOAD wrote, and the view's manifest entry before any
 * row is written (an increment starts from its base's partition map; each load maps the partitions
 * it writes to this version before writing them).
 */
export async function partsStep(
  ctx: BatchContext,
  input: { runId: string; version: number; view: string; location: string; queryId?: string },
): Promise<PartsOutput> {
  await holdAthenaLock(ctx, input.runId);
  const { s3, athena } = athenaClients(ctx);
  const view = findView(ctx.views, input.view);
  if (!view) throw new Error(`unknown view ${input.view}`);
  const c = control(ctx);
  const plan = (await getManifest(c, input.version))?.views?.[view.name];
  if (!plan?.mode) throw new Error(`version ${input.version} has no plan for view ${view.name}`);
  let maps: ReturnType<typeof baseMaps> = { partitions: {}, inherits: {} };
  let rows = 0;
  let rollups = rollupsEntry(view, input.version);
  if (plan.mode === 'increment') {
    const entry = (await baseEntry(ctx, view, plan, input.version)).entry;
    maps = baseMaps(entry);
    rows = Number(entry.rows);
    rollups = rollupsEntry(view, input.version, entry.rollups);
  }
  // Each load group holds whole partitions, so each writes its partitions' rollups too (loadPartitions). `inherits` is
  // always a map here: each load sets or removes its partitions' entries in it.
  await recordManifestView(c, input.version, view.name, { ...plan, rows, ...maps, ...(rollups && { rollups }), loaded: false });
  const keys = await listKeys(s3, input.location);
  const prefix = s3Location(input.location).key;
  const groups = new Set<string>();
  let bytes = 0;
  for (const k of keys) {
    const g = /^(g=\d+)\//.exec(k.key.slice(prefix.length))?.[1];
    if (g) groups.add(g);
    bytes += k.size;
  }
  let sqlMs = 0;
  if (input.queryId) {
    sqlMs = (await athena.statistics(input.queryId)).engineMs;
  }
  return { location: input.location, groups: [...groups].sort(), bytes, sqlMs };
}

async function baseEntry(ctx: BatchContext, view: View, plan: ViewManifest, version: number) {
  const base = await getManifest(control(ctx), plan.base!);
  const entry = base?.views?.[view.name];
  if (!base || base.state === 'retired' || !entry || Array.isArray(entry.partitions)) {
    throw new Error(`version ${version} increments version ${plan.base}, which no longer holds view ${view.name}`);
  }
  return { base, entry };
}

export interface LoadOutput {
  readonly group: string;
  /** Rows written as this version. */
  readonly written: number;
  /** Rows the view gains in the version through this group (an increment: merged minus replaced). */
  readonly rows: number;
  readonly loadMs: number;
}

/**
 * Loads one load group of a view's UNLOAD (whole batch-view partitions): its files read in parallel,
 * rows grouped by partition; an increment merges each partition with the rows its writer holds.
 * Each partition is mapped to this version in the manifest before its rows are written (a run that
 * dies mid-load leaves only rows its manifest names). Idempotent: a retried load writes the same.
 */
export async function loadStep(
  ctx: BatchContext,
  input: { runId: string; version: number; view: string; location: string; group: string },
): Promise<LoadOutput> {
  const t0 = performance.now();
  await holdAthenaLock(ctx, input.runId);
  const { s3 } = athenaClients(ctx);
  const view = findView(ctx.views, input.view);
  if (!view) throw new Error(`unknown view ${input.view}`);
  if (!/^g=\d+$/.test(input.group)) throw new Error(`a load group is g=<n>, received ${JSON.stringify(input.group)}`);
  const c = control(ctx);
  const plan = (await getManifest(c, input.version))?.views?.[view.name];
  if (!plan?.mode) throw new Error(`version ${input.version} has no plan for view ${view.name}`);
  const { bucket } = s3Location(input.location);
  const files = await listKeys(s3, `${input.location}${input.group}/`);
  const parts = await mapLimit(files, 8, (f) => readObject(s3, `s3://${bucket}/${f.key}`));
  const rows = parts.flatMap((text) => unloadRows(view, text));
  const increment = plan.mode === 'increment' && plan.base !== undefined;
  const writes = increment
    ? await mergeWrites(ctx, view, (await baseEntry(ctx, view, plan, input.version)).entry, rows)
    : rebuildWrites(view, rows);
  await mapPartitions(ctx, input.version, view.name, writes, increment);
  await loadPartitions(loadDepsOf(ctx, view.name), view, input.version, writes);
  const delta = writes.reduce((n, w) => n + w.rows.length - w.replaced, 0);
  return { group: input.group, written: writtenRows(writes), rows: delta, loadMs: Math.round(performance.now() - t0) };
}

/**
 * Maps partitions of a view to `version` in its manifest, and (an increment) sets or removes what each inherits; one
 * update per 25 partitions (concurrent loads touch other paths of the item).
 */
async function mapPartitions(
  ctx: BatchContext,
  version: number,
  view: string,
  writes: readonly PartitionWrite[],
  increment: boolean,
): Promise<void> {
  for (let i = 0; i < writes.length; i += 25) {
    const chunk = writes.slice(i, i + 25);
    const names: Record<string, string> = { '#views': 'views', '#v': view, '#parts': 'partitions', '#state': 'state' };
    if (increment) names['#inh'] = 'inherits';
    const values: Record<string, unknown> = { ':n': version, ':loading': 'loading' };
    const sets: string[] = [];
    const removes: string[] = [];
    chunk.forEach((w, j) => {
      names[`#p${j}`] = w.start;
      sets.push(`#views.#v.#parts.#p${j} = :n`);
      if (!increment) return;
      if (w.inherits) {
        values[`:i${j}`] = w.inherits;
        sets.push(`#views.#v.#inh.#p${j} = :i${j}`);
      } else removes.push(`#views.#v.#inh.#p${j}`);
    });
    await ctx.doc.send(
      new UpdateCommand({
        TableName: ctx.tables.control,
        Key: versionKey(version),
        UpdateExpression: `SET ${sets.join(', ')}${removes.length > 0 ? ` REMOVE ${removes.join(', ')}` : ''}`,
        ConditionExpression: '#state = :loading',
        ExpressionAttributeNames: names,
        ExpressionAttributeValues: values,
      }),
    );
  }
}

/** After every load group of a view: its total rows, `loaded` in the manifest, and the run item's view entry. */
export async function finishStep(
  ctx: BatchContext,
  input: {
    runId: string;
    version: number;
    view: string;
    loads: readonly Pick<LoadOutput, 'written' | 'rows' | 'loadMs'>[];
    sqlMs?: number;
  },
): Promise<ViewOutput> {
  await holdAthenaLock(ctx, input.runId);
  const view = findView(ctx.views, input.view);
  if (!view) throw new Error(`unknown view ${input.view}`);
  const c = control(ctx);
  const entry = (await getManifest(c, input.version))?.views?.[view.name];
  if (!entry?.mode) throw new Error(`version ${input.version} has no plan for view ${view.name}`);
  // From the base, not from the entry: a retried finish must not add the loads twice.
  const start =
    entry.mode === 'increment' && entry.base !== undefined ? Number((await baseEntry(ctx, view, entry, input.version)).entry.rows) : 0;
  const rows = start + input.loads.reduce((n, l) => n + l.rows, 0);
  const written = input.loads.reduce((n, l) => n + l.written, 0);
  const t0 = performance.now();
  // Day blocks from the partitions' day rollups the loads wrote (the new map is complete only now), named first.
  const map = Array.isArray(entry.partitions) ? {} : ((entry.partitions ?? {}) as Record<string, number>);
  const partitions = Object.fromEntries(Object.entries(map).map(([p, w]) => [p, Number(w)]));
  const days = planDayBlocks(view, input.version, partitions, entry.rollups);
  const done: ViewManifest = { ...entry, rows, ...(days.rollups && { rollups: days.rollups }) };
  if (days.build.length > 0) {
    await recordManifestView(c, input.version, view.name, { ...done, loaded: false });
    await writeDayBlocks(loadDepsOf(ctx, view.name), view, input.version, days.build);
  }
  const loadMs = input.loads.reduce((n, l) => n + l.loadMs, 0) + Math.round(performance.now() - t0);
  const sqlMs = input.sqlMs ?? 0;
  await recordManifestView(c, input.version, view.name, { ...done, loaded: true });
  await recordRunView(c, input.runId, view.name, {
    rows,
    sqlMs,
    loadMs,
    mode: entry.mode,
    ...(entry.reason && { reason: entry.reason }),
    written,
  });
  await ctx.hooks?.afterStage?.(`view:${view.name}`, input.runId);
  return { view: view.name, rows, sqlMs, loadMs, mode: entry.mode, written };
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
    const error =
      `lost the publish race: version ${result.current.version} (cutoff ${iso(result.current.cutoff)}) was published first; ` +
      `version ${input.version} is retired`;
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

/**
 * Marks the run FAILED, retires its version unless it was published, releases the lock. On Athena it
 * first stops the run's queries still running (a failed view makes the Map cancel its siblings mid-query).
 */
export async function failStep(
  ctx: BatchContext,
  input: FailInput,
): Promise<{ runId: string; state: 'FAILED'; stoppedQueries?: string[] }> {
  const c = control(ctx);
  let stoppedQueries: string[] | undefined;
  if (ctx.engine.name === 'athena' && ctx.athena && ctx.athenaWorkgroup) {
    // Best effort: the run must be marked FAILED and its lock released whatever Athena answers.
    stoppedQueries = await stopRunQueries(ctx.athena, ctx.athenaWorkgroup, input.runId).catch(() => undefined);
  }
  await updateRun(c, input.runId, { state: 'FAILED', stage: 'done', finishedAt: ctx.now(), error: input.error });
  const version = input.version ?? (await getRun(c, input.runId))?.version;
  if (version !== undefined) {
    const m = await getManifest(c, version);
    const pointer = await getPointer(c);
    if (m && m.state === 'loading' && pointer?.version !== version) await retireVersion(publishDeps(ctx), m);
  }
  await releaseLock(c, input.runId);
  return { runId: input.runId, state: 'FAILED', ...(stoppedQueries && { stoppedQueries }) };
}
