/**
 * The Kinesis event source mapping both consumers (speed, archive) use, with
 * the safe settings the design requires: bisect on error, bounded retries and
 * record age, partial batch responses, an S3 on-failure destination, and one
 * batch per shard at a time (ParallelizationFactor 1: invariant 5 relies on it).
 */
import type { Duration } from 'aws-cdk-lib';
import type * as kinesis from 'aws-cdk-lib/aws-kinesis';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import { KinesisEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type { IConstruct } from 'constructs';
import { checkDuration, checkRange, FailureBucketDestination, invalid } from './common.ts';

export interface ConsumerMappingOptions {
  readonly stream: kinesis.IStream;
  readonly streamRetention: Duration;
  readonly failureBucket: s3.IBucket;
  readonly batchSize: number;
  readonly maxBatchingWindow: Duration;
  readonly retryAttempts: number;
  readonly maxRecordAge: Duration;
  readonly startingPosition: lambda.StartingPosition;
}

/** Adds the mapping to `fn` (it also grants the function read access to the stream) and returns it. */
export function addConsumerMapping(scope: IConstruct, fn: lambda.IFunction, o: ConsumerMappingOptions): KinesisEventSource {
  checkRange(scope, 'batchSize', o.batchSize, 1, 10_000);
  checkDuration(scope, 'maxBatchingWindow', o.maxBatchingWindow, 0, 300);
  // -1 (infinite) is what Kinesis mappings default to and what the design forbids.
  checkRange(scope, 'retryAttempts', o.retryAttempts, 0, 10_000);
  checkDuration(scope, 'maxRecordAge', o.maxRecordAge, 60, 7 * 24 * 3600);
  if (!o.maxRecordAge.isUnresolved() && !o.streamRetention.isUnresolved() && o.maxRecordAge.toSeconds() > o.streamRetention.toSeconds()) {
    invalid(scope, `maxRecordAge cannot exceed the stream retention (${o.streamRetention.toHumanString()}). Received ${o.maxRecordAge.toHumanString()}`);
  }
  const source = new KinesisEventSource(o.stream, {
    startingPosition: o.startingPosition,
    batchSize: o.batchSize,
    maxBatchingWindow: o.maxBatchingWindow,
    bisectBatchOnError: true,
    retryAttempts: o.retryAttempts,
    maxRecordAge: o.maxRecordAge,
    reportBatchItemFailures: true,
    parallelizationFactor: 1,
    onFailure: new FailureBucketDestination(o.failureBucket),
  });
  fn.addEventSource(source);
  return source;
}
