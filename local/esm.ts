/**
 * The Kinesis event source mapping of the local cloud: polls every shard of a
 * stream and invokes a function with Lambda's Kinesis events, keeping the
 * semantics of a Lambda event source mapping (docs/local-cloud.md has the
 * table of what matches AWS and what differs):
 *
 * - one poller per shard, records in order, one batch in flight per shard
 *   (ParallelizationFactor 1); closed parents are drained before their children;
 * - `batchSize`, `maxBatchingWindowMs` (and Lambda's 6 MB payload cap);
 * - starting position TRIM_HORIZON or LATEST; the checkpoint (last processed
 *   sequence number per shard) is persisted, so a restart resumes after it;
 * - `bisectBatchOnError` (a split does not count as a retry), ReportBatchItemFailures
 *   (retry from the lowest reported sequence number; an invalid response fails
 *   the whole batch), `retryAttempts`, `maxRecordAgeSeconds`;
 * - after retries are exhausted or records expire, the batch is written to the
 *   on-failure destination (an S3 object) and the shard moves on.
 *
 * Written by hand because nothing on npm polls Kinesis with Lambda's
 * semantics: the KCL is Java, and kinesis consumers on npm have no
 * bisect/partial-failure/destination behaviour.
 *
 * This module is the public entry; the parts live in local/esm/: the mapping
 * (mapping.ts), the shard worker (shard-worker.ts), the checkpoint file
 * (checkpoints.ts), the on-failure destination (failures.ts) and Lambda's
 * response rules (response.ts). The events are built by
 * functions/adapters/kinesis-records.ts, as the tests and benchmarks build theirs.
 */

export type { FailureObject } from './esm/failures.ts';
export { startEventSourceMapping } from './esm/mapping.ts';
export { checkBatchResponse, type Outcome } from './esm/response.ts';
export type {
  EventSourceMapping,
  EventSourceMappingOptions,
  FailureDestination,
  ShardState,
  ShardStats,
  StartingPosition,
} from './esm/types.ts';
