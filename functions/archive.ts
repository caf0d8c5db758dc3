/**
 * The archive function, on its own Kinesis event source mapping (big batches,
 * ReportBatchItemFailures on, ParallelizationFactor 1). Thin, like the speed
 * function: adapters/kinesis-event.ts validates the envelope and decodes the records, and functions/archive/archive.ts writes the objects, manifest entries
 * and checkpoint with the module-scope clients.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { KinesisStreamBatchResponse } from 'aws-lambda';
import { clients } from './adapters/clients.ts';
import { toStreamRecords } from './adapters/kinesis-event.ts';
import { type ArchiveDeps, type ArchiveStats, archiveBatch } from './archive/archive.ts';
import { loadConfig } from './config.ts';

export function publishStats(metrics: Metrics, s: ArchiveStats): void {
  metrics.addMetric('RecordsIn', MetricUnit.Count, s.records);
  metrics.addMetric('RecordsArchived', MetricUnit.Count, s.archived);
  metrics.addMetric('ObjectsWritten', MetricUnit.Count, s.objects);
  metrics.addMetric('BytesWritten', MetricUnit.Bytes, s.bytes);
  metrics.addMetric('PoisonRecords', MetricUnit.Count, s.poison);
  metrics.addMetric('BatchAge', MetricUnit.Milliseconds, s.batchAgeMs);
  if (s.failedShards > 0) metrics.addMetric('FailedBatches', MetricUnit.Count, s.failedShards);
}

export type ArchiveHandler = (event: unknown) => Promise<KinesisStreamBatchResponse>;

export interface ArchiveHandlerDeps extends Omit<ArchiveDeps, 'log'> {
  readonly logger: Logger;
  readonly metrics: Metrics;
}

/** The archive handler for given clients and names (tests inject wrapped clients and hooks here). */
export function createArchiveHandler(deps: ArchiveHandlerDeps): ArchiveHandler {
  const { logger, metrics } = deps;
  return async (event: unknown) => {
    try {
      const records = toStreamRecords(event);
      const { failures, stats } = await archiveBatch(records, {
        s3: deps.s3,
        ddb: deps.ddb,
        rawBucket: deps.rawBucket,
        failureBucket: deps.failureBucket,
        controlTable: deps.controlTable,
        log: logger,
        ...(deps.now && { now: deps.now }),
        ...(deps.hooks && { hooks: deps.hooks }),
      });
      publishStats(metrics, stats);
      logger.debug('archive batch', { ...stats });
      return { batchItemFailures: failures.map((itemIdentifier) => ({ itemIdentifier })) };
    } finally {
      if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
    }
  };
}

const logger = new Logger({ serviceName: 'tandem-archive' });
const metrics = new Metrics({ namespace: 'Tandem', serviceName: 'archive' });
const config = loadConfig();
const aws = clients();

/** The Lambda entry point: clients and configuration live at module scope. */
export const handler: ArchiveHandler = createArchiveHandler({
  s3: aws.s3,
  ddb: aws.dynamodb,
  // Getters: names come from the environment, read on first use.
  get rawBucket() {
    return config.buckets.raw;
  },
  get failureBucket() {
    return config.buckets.failures;
  },
  get controlTable() {
    return config.tables.control;
  },
  logger,
  metrics,
});
