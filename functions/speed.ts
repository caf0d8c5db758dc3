/**
 * The speed function, on the Kinesis event source mapping (ReportBatchItemFailures
 * on, ParallelizationFactor 1). Thin: adapters/kinesis-event.ts validates the
 * envelope with the Powertools parser schemas and decodes the records, and functions/speed/process.ts
 * does the work with the module-scope clients. Returns the partial batch
 * response: on any failure the batch's first record, so the whole batch is
 * retried (see process.ts).
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { KinesisStreamBatchResponse } from 'aws-lambda';
import { clients } from './adapters/clients.ts';
import { toStreamRecords } from './adapters/kinesis-event.ts';
import { loadConfig } from './config.ts';
import { ItemCache } from './speed/apply.ts';
import { processSpeedBatch, type SpeedDeps, type SpeedStats } from './speed/process.ts';

// Re-exported for the tests and benchmarks that build speed batches.
export { KinesisEventError as SpeedEventError, toStreamRecords } from './adapters/kinesis-event.ts';

export interface SpeedHandlerDeps extends Omit<SpeedDeps, 'log'> {
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Sees each batch's statistics (benchmarks, tests). */
  readonly onStats?: (stats: SpeedStats) => void;
}

export type SpeedHandler = (event: unknown) => Promise<KinesisStreamBatchResponse>;

export function publishStats(metrics: Metrics, s: SpeedStats): void {
  metrics.addMetric('RecordsIn', MetricUnit.Count, s.records);
  metrics.addMetric('DuplicatesDropped', MetricUnit.Count, s.duplicates);
  metrics.addMetric('PoisonRecords', MetricUnit.Count, s.poison);
  metrics.addMetric('DeltaItemsWritten', MetricUnit.Count, s.apply.written);
  metrics.addMetric('DeltaItemsSkipped', MetricUnit.Count, s.apply.skipped);
  metrics.addMetric('ConditionalCheckConflicts', MetricUnit.Count, s.apply.conflicts);
  metrics.addMetric('Repairs', MetricUnit.Count, s.apply.repairs);
  metrics.addMetric('DedupRequests', MetricUnit.Count, s.dedupRequests);
  metrics.addMetric('BatchAge', MetricUnit.Milliseconds, s.batchAgeMs);
  if (s.failedShards > 0) metrics.addMetric('FailedBatches', MetricUnit.Count, s.failedShards);
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

const logger = new Logger({ serviceName: 'tandem-speed' });
const metrics = new Metrics({ namespace: 'Tandem', serviceName: 'speed' });
const config = loadConfig();
const aws = clients();

/** The Lambda entry point: clients, configuration and the item cache live at module scope. */
export const handler: SpeedHandler = createSpeedHandler({
  ddb: aws.dynamodb,
  s3: aws.s3,
  get tables() {
    return { speed: config.tables.speed, dedup: config.tables.dedup, control: config.tables.control };
  },
  get failureBucket() {
    return config.buckets.failures;
  },
  views: config.views,
  settings: config.settings,
  cache: new ItemCache(),
  logger,
  metrics,
});
