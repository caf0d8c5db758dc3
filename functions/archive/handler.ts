/**
 * The archive handler over given clients and names: adapters/kinesis-event.ts
 * validates the envelope and decodes the records, archive.ts writes the
 * objects, manifest entries and checkpoint, and the batch's statistics become
 * metrics. The Lambda entry (functions/archive.ts) calls it once with its
 * module-scope clients; tests and benchmarks call it with wrapped ones and hooks.
 */
import type { Logger } from '@aws-lambda-powertools/logger';
import { type Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { KinesisStreamBatchResponse } from 'aws-lambda';
import { toStreamRecords } from '../adapters/kinesis-event.ts';
import { ARCHIVE_METRICS } from '../contract/telemetry.ts';
import { type ArchiveDeps, type ArchiveStats, archiveBatch } from './archive.ts';

export function publishStats(metrics: Metrics, s: ArchiveStats): void {
  metrics.addMetric(ARCHIVE_METRICS.recordsIn, MetricUnit.Count, s.records);
  metrics.addMetric(ARCHIVE_METRICS.recordsArchived, MetricUnit.Count, s.archived);
  metrics.addMetric(ARCHIVE_METRICS.objectsWritten, MetricUnit.Count, s.objects);
  metrics.addMetric(ARCHIVE_METRICS.bytesWritten, MetricUnit.Bytes, s.bytes);
  metrics.addMetric(ARCHIVE_METRICS.poisonRecords, MetricUnit.Count, s.poison);
  metrics.addMetric(ARCHIVE_METRICS.batchAge, MetricUnit.Milliseconds, s.batchAgeMs);
  if (s.failedShards > 0) metrics.addMetric(ARCHIVE_METRICS.failedBatches, MetricUnit.Count, s.failedShards);
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
