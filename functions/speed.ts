/**
 * The speed function, on the Kinesis event source mapping (ReportBatchItemFailures
 * on, ParallelizationFactor 1). Thin: the Powertools parser validates the
 * envelope, the record bytes are decoded here, and functions/speed/process.ts
 * does the work with the module-scope clients. Returns the partial batch
 * response: on any failure the batch's first record, so the whole batch is
 * retried (see process.ts).
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { KinesisDataStreamRecord, KinesisDataStreamRecordPayload, KinesisDataStreamSchema } from '@aws-lambda-powertools/parser/schemas/kinesis';
import type { KinesisStreamBatchResponse } from 'aws-lambda';
import { z } from 'zod';
import { clients } from './adapters/clients.ts';
import { loadConfig } from './config.ts';
import { ItemCache } from './speed/apply.ts';
import { processSpeedBatch, type SpeedDeps, type SpeedStats, type StreamRecord } from './speed/process.ts';

/**
 * Powertools' Kinesis schema with `data` kept as text. Its own `Base64Encoded`
 * helper is not used: it tries gunzip on every record (measured here: 130 µs a
 * record, 1.3 s for a batch of 10,000, against 2 µs for Buffer + JSON.parse)
 * and throws a TypeError out of the whole parse on one badly padded record,
 * which would turn one bad record into a failed batch. Record bytes are decoded
 * per record below, and what cannot be decoded is poison, not a failed batch.
 */
export const SpeedEventSchema = KinesisDataStreamSchema.extend({
  Records: z.array(KinesisDataStreamRecord.extend({ kinesis: KinesisDataStreamRecordPayload.extend({ data: z.string() }) })).min(1),
});
export type SpeedEvent = z.infer<typeof SpeedEventSchema>;

export class SpeedEventError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SpeedEventError';
  }
}

/** Records of a validated event, arrival in epoch ms; the shard from eventID (`<shardId>:<sequenceNumber>`). */
export function toStreamRecords(event: unknown): StreamRecord[] {
  const parsed = SpeedEventSchema.safeParse(event);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new SpeedEventError(`not a Kinesis event: ${issue ? `${issue.path.join('.')}: ${issue.message}` : 'invalid'}`);
  }
  return parsed.data.Records.map((r) => {
    const cut = r.eventID.lastIndexOf(':');
    const shard = cut > 0 ? r.eventID.slice(0, cut) : r.eventID;
    return {
      shard,
      seq: r.kinesis.sequenceNumber,
      // Lambda gives seconds with millisecond precision: round, never truncate, a float product.
      arrival: Math.round(r.kinesis.approximateArrivalTimestamp * 1000),
      data: Buffer.from(r.kinesis.data, 'base64'),
    };
  });
}

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
