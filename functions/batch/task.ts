/**
 * The handler of the Lambda that the batch state machine (functions/contract/state-machine.ts)
 * calls for each step: `{ step: 'plan' | 'view' | 'publish' | 'fail', runId, ... }` (on Athena also
 * 'compile' | 'verify' | 'parts' | 'load' | 'finish' around the queries the state machine runs, and
 * 'compactPlan' | 'compactPut' | 'compactRecord' around the compaction UNLOADs after a publish)
 * -> the step's result (docs/batch-layer.md has the exact contract). The event
 * is validated with zod, then steps.ts does the work. Publishes the age of the
 * published cutoff as a metric after plan, publish and fail, the input of the
 * batch-lag alarm (threshold from core/settings.ts). The Lambda entry is
 * functions/batch-task.ts; tests and the local interpreter pass their own context.
 */
import type { Logger } from '@aws-lambda-powertools/logger';
import { type Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { z } from 'zod';
import { BATCH_METRICS } from '../contract/telemetry.ts';
import { compactPlanStep, compactPutStep, compactRecordStep } from './athena-compact.ts';
import { getPointer, RUN_ID_RE } from './control.ts';
import { describeError } from './pipeline.ts';
import {
  type BatchContext,
  compileStep,
  failStep,
  finishStep,
  loadStep,
  partsStep,
  planStep,
  publishStep,
  verifyStep,
  viewStep,
} from './steps.ts';

const runId = z.string().regex(RUN_ID_RE, { error: 'runId must be 1-80 letters, digits, - or _' });
const ms = z.number().int().nonnegative();

export const BatchTaskEventSchema = z.discriminatedUnion('step', [
  // `input`: the execution's input (POST /batch/runs passes its body there; a schedule its own fields).
  z.object({
    step: z.literal('plan'),
    runId,
    input: z.looseObject({ rebuild: z.boolean().optional(), view: z.string().min(1).optional() }).optional(),
  }),
  z.object({ step: z.literal('view'), runId, version: z.number().int().positive(), cutoff: ms, view: z.string().min(1) }),
  z.object({
    step: z.literal('publish'),
    runId,
    skipped: z.boolean().optional(),
    version: z.number().int().positive().nullish(),
    cutoff: ms.nullish(),
  }),
  // The Athena path (functions/contract/state-machine.ts with the athena option): the state machine runs the queries.
  z.object({
    step: z.literal('compile'),
    runId,
    version: z.number().int().positive(),
    cutoff: ms,
    database: z.string().min(1),
    table: z.string().min(1),
    resultsLocation: z.string().startsWith('s3://'),
    compactTable: z.string().min(1).optional(),
  }),
  z.object({
    step: z.literal('verify'),
    runId,
    version: z.number().int().positive(),
    cutoff: ms,
    expected: z.string().startsWith('s3://'),
    output: z.string().startsWith('s3://'),
    verified: z.string().startsWith('s3://').optional(),
  }),
  z.object({
    step: z.literal('parts'),
    runId,
    version: z.number().int().positive(),
    view: z.string().min(1),
    location: z.string().startsWith('s3://'),
    queryId: z.string().min(1).optional(),
  }),
  z.object({
    step: z.literal('load'),
    runId,
    version: z.number().int().positive(),
    view: z.string().min(1),
    location: z.string().startsWith('s3://'),
    group: z.string().regex(/^g=\d+$/),
  }),
  z.object({
    step: z.literal('finish'),
    runId,
    version: z.number().int().positive(),
    view: z.string().min(1),
    loads: z.array(z.looseObject({ written: z.number().int().nonnegative(), rows: z.number().int(), loadMs: z.number().nonnegative() })),
    sqlMs: z.number().nonnegative().optional(),
  }),
  // Compaction after a publish on Athena (functions/batch/athena-compact.ts).
  z.object({
    step: z.literal('compactPlan'),
    runId,
    cutoff: ms,
    database: z.string().min(1),
    table: z.string().min(1),
    resultsLocation: z.string().startsWith('s3://'),
    verified: z.string().startsWith('s3://'),
  }),
  z.object({
    step: z.literal('compactPut'),
    runId,
    hour: ms,
    location: z.string().startsWith('s3://'),
    shards: z.record(
      z.string(),
      z.object({
        lines: z.number().int().nonnegative(),
        recorded: z.number().int().nonnegative(),
        objects: z.number().int().nonnegative(),
      }),
    ),
    rawBucket: z.string().min(1),
  }),
  // `results`: per hour of the Map, the put step's output or `{ hour, error }` (a Catch's `{ Error, Cause }`).
  z.object({
    step: z.literal('compactRecord'),
    runId,
    results: z.array(z.looseObject({ hour: ms, error: z.unknown().optional() })),
    skipped: z.array(z.object({ hour: ms, error: z.string() })),
    error: z.unknown().optional(),
  }),
  // `error` is what a Catch put at $.error: `{ Error, Cause }` (Cause: Lambda's JSON error text).
  z.object({ step: z.literal('fail'), runId, version: z.number().int().positive().optional(), error: z.unknown().optional() }),
]);
export type BatchTaskEvent = z.infer<typeof BatchTaskEventSchema>;

/** A readable message out of a Step Functions error object. */
export function stepError(error: unknown): string {
  if (error && typeof error === 'object') {
    const e = error as { Error?: unknown; Cause?: unknown };
    const name = typeof e.Error === 'string' ? e.Error : 'Error';
    const cause = typeof e.Cause === 'string' ? e.Cause : '';
    try {
      // A Lambda error: its own type and message say it all.
      const parsed = JSON.parse(cause) as { errorType?: string; errorMessage?: string };
      if (parsed.errorMessage) return `${parsed.errorType ?? name}: ${parsed.errorMessage}`;
    } catch {
      // not JSON: keep the text
    }
    return cause ? `${name}: ${cause}` : name;
  }
  return error === undefined ? 'the run failed' : String(error);
}

/** Seconds since the published cutoff (undefined before the first publish). */
export async function cutoffAgeSeconds(ctx: BatchContext): Promise<number | undefined> {
  const pointer = await getPointer({ doc: ctx.doc, table: ctx.tables.control }).catch(() => undefined);
  return pointer ? Math.max(0, Math.round((ctx.now() - pointer.cutoff) / 1000)) : undefined;
}

function publishCutoffAge(metrics: Metrics, age: number | undefined): void {
  if (age !== undefined) metrics.addMetric(BATCH_METRICS.cutoffAge, MetricUnit.Seconds, age);
}

export type BatchTaskHandler = (event: unknown) => Promise<Record<string, unknown>>;

/** The handler over a given context (tests and the local interpreter pass theirs). */
export function createBatchTaskHandler(context: () => BatchContext, logger: Logger, metrics: Metrics): BatchTaskHandler {
  return async (event: unknown) => {
    const parsed = BatchTaskEventSchema.safeParse(event);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new Error(`invalid batch task event: ${issue ? `${issue.path.join('.') || 'event'}: ${issue.message}` : 'invalid'}`);
    }
    const e = parsed.data;
    const ctx = context();
    try {
      switch (e.step) {
        case 'plan': {
          const request = {
            ...(e.input?.rebuild !== undefined && { rebuild: e.input.rebuild }),
            ...(e.input?.view && { view: e.input.view }),
          };
          // On Athena the state machine runs the completeness query (compile -> query -> verify).
          const { session: _s, ...out } = await planStep(ctx, e.runId, { request, verifyLater: ctx.engine.name === 'athena' });
          // Always present, so the state machine's JSONPath never misses them.
          return { ...out, version: out.version ?? null, cutoff: out.cutoff ?? null };
        }
        case 'view': {
          const out = await viewStep(ctx, e);
          metrics.addMetric(BATCH_METRICS.viewRows, MetricUnit.Count, out.rows);
          metrics.addMetric(BATCH_METRICS.viewSqlTime, MetricUnit.Milliseconds, out.sqlMs);
          metrics.addMetric(BATCH_METRICS.viewLoadTime, MetricUnit.Milliseconds, out.loadMs);
          return { ...out };
        }
        case 'compile':
          return { ...(await compileStep(ctx, e)) };
        case 'verify':
          return { ...(await verifyStep(ctx, e)) };
        case 'parts':
          return { ...(await partsStep(ctx, e)) };
        case 'load':
          return { ...(await loadStep(ctx, e)) };
        case 'finish': {
          const out = await finishStep(ctx, e);
          metrics.addMetric(BATCH_METRICS.viewRows, MetricUnit.Count, out.rows);
          metrics.addMetric(BATCH_METRICS.viewSqlTime, MetricUnit.Milliseconds, out.sqlMs);
          metrics.addMetric(BATCH_METRICS.viewLoadTime, MetricUnit.Milliseconds, out.loadMs);
          return { ...out };
        }
        case 'compactPlan':
          return { ...(await compactPlanStep(ctx, e)) };
        case 'compactPut':
          return { ...(await compactPutStep(ctx, e)) };
        case 'compactRecord':
          return {
            ...(await compactRecordStep(ctx, {
              runId: e.runId,
              results: e.results.map((r) => ({ hour: r.hour, ...(r.error != null && { error: stepError(r.error) }) })),
              skipped: e.skipped,
              ...(e.error != null && { error: stepError(e.error) }),
            })),
          };
        case 'publish':
          return {
            ...(await publishStep(ctx, {
              runId: e.runId,
              ...(e.skipped !== undefined && { skipped: e.skipped }),
              ...(e.version != null && { version: e.version }),
              ...(e.cutoff != null && { cutoff: e.cutoff }),
            })),
          };
        case 'fail': {
          metrics.addMetric(BATCH_METRICS.runsFailed, MetricUnit.Count, 1);
          return { ...(await failStep(ctx, { runId: e.runId, ...(e.version && { version: e.version }), error: stepError(e.error) })) };
        }
      }
    } catch (err) {
      logger.error('batch step failed', { step: e.step, runId: e.runId, error: describeError(err) });
      throw err;
    } finally {
      if (e.step === 'plan' || e.step === 'publish' || e.step === 'fail') {
        publishCutoffAge(metrics, await cutoffAgeSeconds(ctx));
      }
      if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
    }
  };
}
