/**
 * The archive function, on its own Kinesis event source mapping (big batches,
 * ReportBatchItemFailures on, ParallelizationFactor 1). Thin, like the speed
 * function: the Powertools parser validates the envelope (with `data` kept as
 * text, for the reasons given in functions/speed.ts), record bytes are decoded
 * here, and functions/archive/archive.ts writes the objects, manifest entries
 * and checkpoint with the module-scope clients.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { KinesisDataStreamRecord, KinesisDataStreamRecordPayload, KinesisDataStreamSchema } from '@aws-lambda-powertools/parser/schemas/kinesis';
import type { KinesisStreamBatchResponse } from 'aws-lambda';
import { z } from 'zod';
import { clients } from './adapters/clients.ts';
import { type ArchiveDeps, type ArchiveRecord, type ArchiveStats, archiveBatch } from './archive/archive.ts';
import { loadConfig } from './config.ts';

export const ArchiveEventSchema = KinesisDataStreamSchema.extend({
  Records: z.array(KinesisDataStreamRecord.extend({ kinesis: KinesisDataStreamRecordPayload.extend({ data: z.string() }) })).min(1),
});

export class ArchiveEventError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArchiveEventError';
  }
}

/** Records of a validated event: arrival in epoch ms, the shard from eventID (`<shardId>:<sequenceNumber>`). */
export function toArchiveRecords(event: unknown): ArchiveRecord[] {
  const parsed = ArchiveEventSchema.safeParse(event);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ArchiveEventError(`not a Kinesis event: ${issue ? `${issue.path.join('.')}: ${issue.message}` : 'invalid'}`);
  }
  return parsed.data.Records.map((r) => {
    const cut = r.eventID.lastIndexOf(':');
    return {
      shard: cut > 0 ? r.eventID.slice(0, cut) : r.eventID,
      seq: r.kinesis.sequenceNumber,
      // Lambda gives seconds with millisecond precision: round, never truncate, a float product.
      arrival: Math.round(r.kinesis.approximateArrivalTimestamp * 1000),
      data: Buffer.from(r.kinesis.data, 'base64'),
    };
  });
}

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
      const records = toArchiveRecords(event);
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
