/**
 * The speed handler over given clients, tables and views: adapters/kinesis-event.ts
 * validates the envelope with the Powertools parser schemas and decodes the
 * records, process.ts does the work, and the batch's statistics become metrics.
 * Returns the partial batch response: on any failure the batch's first record,
 * so the whole batch is retried (see process.ts). The Lambda entry
 * (functions/speed.ts) calls it once with its module-scope clients; tests and
 * benchmarks call it with wrapped ones.
 */
import type { Logger } from '@aws-lambda-powertools/logger';
import { type Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { KinesisStreamBatchResponse } from 'aws-lambda';
import { toStreamRecords } from '../adapters/kinesis-event.ts';
import { SPEED_METRICS } from '../contract/telemetry.ts';
import { processSpeedBatch, type SpeedDeps, type SpeedStats } from './process.ts';

export interface SpeedHandlerDeps extends Omit<SpeedDeps, 'log'> {
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Sees each batch's statistics (benchmarks, tests). */
  readonly onStats?: (stats: SpeedStats) => void;
}

export type SpeedHandler = (event: unknown) => Promise<KinesisStreamBatchResponse>;

export function publishStats(metrics: Metrics, s: SpeedStats): void {
  metrics.addMetric(SPEED_METRICS.recordsIn, MetricUnit.Count, s.records);
  metrics.addMetric(SPEED_METRICS.duplicatesDropped, MetricUnit.Count, s.duplicates);
  metrics.addMetric(SPEED_METRICS.poisonRecords, MetricUnit.Count, s.poison);
  metrics.addMetric(SPEED_METRICS.speedItemsWritten, MetricUnit.Count, s.apply.written);
  metrics.addMetric(SPEED_METRICS.speedItemsSkipped, MetricUnit.Count, s.apply.skipped);
  metrics.addMetric(SPEED_METRICS.conditionalCheckConflicts, MetricUnit.Count, s.apply.conflicts);
  metrics.addMetric(SPEED_METRICS.repairs, MetricUnit.Count, s.apply.repairs);
  metrics.addMetric(SPEED_METRICS.dedupRequests, MetricUnit.Count, s.dedupRequests);
  metrics.addMetric(SPEED_METRICS.batchAge, MetricUnit.Milliseconds, s.batchAgeMs);
  if (s.failedShards > 0) metrics.addMetric(SPEED_METRICS.failedBatches, MetricUnit.Count, s.failedShards);
}

/** The speed handler for given clients, tables and views (tests inject wrapped clients here). */
export function createSpeedHandler(deps: SpeedHandlerDeps): SpeedHandler {
  const { logger, metrics } = deps;
  return async (event: unknown) => {
    try {
      const records = toStreamRecords(event);
      // Read per invocation (not spread at creation): names come from getters over the environment.
      const core: SpeedDeps = {
        ddb: deps.ddb,
        s3: deps.s3,
        tables: deps.tables,
        failureBucket: deps.failureBucket,
        views: deps.views,
        settings: deps.settings,
        cache: deps.cache,
        outside: deps.outside,
        log: logger,
        ...(deps.now && { now: deps.now }),
        ...(deps.concurrency && { concurrency: deps.concurrency }),
      };
      const { failures, stats } = await processSpeedBatch(records, core);
      publishStats(metrics, stats);
      deps.onStats?.(stats);
      logger.debug('speed batch', { ...stats, apply: { ...stats.apply } });
      return { batchItemFailures: failures.map((itemIdentifier) => ({ itemIdentifier })) };
    } finally {
      metrics.publishStoredMetrics();
    }
  };
}
