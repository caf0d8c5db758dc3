/** The public face of the local event source mapping: its options, its handle and its statistics. */
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import type { S3Client } from '@aws-sdk/client-s3';
import type { KinesisStreamEvent } from 'aws-lambda';
import type { LogSink } from '../../functions/adapters/log.ts';

export type StartingPosition = 'TRIM_HORIZON' | 'LATEST';

/** Where discarded batches go: one JSON object per batch (failures.ts). */
export interface FailureDestination {
  readonly s3: S3Client;
  readonly failureBucket: string;
  readonly prefix?: string;
}

export interface EventSourceMappingOptions {
  /** Mapping name: names the checkpoint file and the failure objects. */
  readonly name: string;
  readonly kinesis: KinesisClient;
  readonly streamName: string;
  /**
   * One synchronous invocation of the function (e.g. LocalFunction.invoke), typed
   * `Promise<KinesisStreamBatchResponse | void>` by handlers; the response is checked
   * at run time (an invalid one fails the batch). A rejection is a function error.
   */
  readonly invoke: (event: KinesisStreamEvent) => Promise<unknown>;
  /** Most records in one event (1..10,000). @default 100 */
  readonly batchSize?: number;
  /** How long to gather records before invoking with a short batch (0..300,000 ms). @default 0 */
  readonly maxBatchingWindowMs?: number;
  /** Where a shard without a checkpoint starts. @default 'TRIM_HORIZON' */
  readonly startingPosition?: StartingPosition;
  /** Split a failed batch in two and retry each half (splits do not count as retries). @default false */
  readonly bisectBatchOnError?: boolean;
  /** Honour `batchItemFailures` in the function's response. @default false (the response is ignored, as in AWS) */
  readonly reportBatchItemFailures?: boolean;
  /** Retries after a failed invocation before the records are discarded; -1 = until the records expire. @default 2 (AWS: -1) */
  readonly retryAttempts?: number;
  /** Records older than this (by arrival) are discarded instead of invoked; -1 = never. @default 3600 (AWS: -1; AWS's minimum is 60) */
  readonly maxRecordAgeSeconds?: number;
  /** Where discarded batches go. @default - discarded records are only logged */
  readonly onFailure?: FailureDestination;
  /** Directory of the checkpoint file `<name>.json`. @default - checkpoints live in memory only */
  readonly checkpointDir?: string;
  /** Sleep between GetRecords calls of a shard that is caught up. @default 250 */
  readonly pollIntervalMs?: number;
  /** How often the shard list is refreshed (new shards after a reshard). @default 5000 */
  readonly shardRefreshMs?: number;
  /** First delay between retries of a failed batch, doubled per retry up to 5 s. @default 200 */
  readonly retryBackoffMs?: number;
  readonly logger?: LogSink;
}

export interface ShardStats {
  /** Last processed (or discarded) sequence number. */
  checkpoint?: string;
  /** Age of the oldest record read but not yet processed, or GetRecords' MillisBehindLatest when larger. */
  millisBehindLatest?: number;
  /** Invocations made (including retries). */
  batches: number;
  /** Records the function processed successfully. */
  records: number;
  /** Failed invocations (errors, timeouts, invalid responses, partial failures). */
  failures: number;
  /** Records sent to the on-failure destination (or dropped when there is none). */
  discarded: number;
  state: ShardState;
}

export type ShardState = 'waiting-for-parent' | 'polling' | 'done' | 'stopped';

export interface EventSourceMapping {
  stop(): Promise<void>;
  /** Resolves when every shard has processed what the stream held when idle() was called, and no batch is in flight. */
  idle(): Promise<void>;
  stats(): { perShard: Record<string, ShardStats> };
}

/** A record read from a shard and not yet processed. */
export interface Rec {
  readonly seq: string;
  readonly partitionKey: string;
  /** Base64 data, encoded once at read time. */
  readonly data: string;
  readonly arrivalMs: number;
  /** Approximate bytes this record adds to the event JSON. */
  readonly size: number;
}
