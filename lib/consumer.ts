/**
 * The Kinesis event source mapping both consumers (speed, archive) use, with
 * the safe settings the design requires: bisect on error (unless turned off for a
 * platform without it), bounded retries and record age, partial batch responses,
 * an S3 on-failure destination, and one batch per shard at a time
 * (ParallelizationFactor 1: invariant 5 of docs/design.md relies on it).
 * The consumer also writes its poison records under failures/: the grant and
 * its cdk-nag acknowledgement live here with the destination's.
 */
import type { Duration } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { KinesisEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type { IConstruct } from 'constructs';
import { FAILURE_PREFIX } from '../functions/resources.ts';
import { acknowledge, checkDuration, checkRange, FailureBucketDestination, grantWritePrefix, invalid, nagResource } from './common.ts';

/** The mapping settings a consumer's props may override (each consumer has its own defaults). */
export interface ConsumerMappingSettings {
  /** Records per invocation. */
  readonly batchSize: number;
  /** Longest wait to fill a batch. */
  readonly maxBatchingWindow: Duration;
  /** Retries of a failing batch before its records go to the on-failure destination. */
  readonly retryAttempts: number;
  /** Records older than this go to the on-failure destination unprocessed. */
  readonly maxRecordAge: Duration;
}

/** What a consumer construct's props carry for its mapping. */
export interface ConsumerMappingProps extends Partial<ConsumerMappingSettings> {
  /**
   * Split a failing batch in two and retry each half. Exactness does not rest on it:
   * a poison record never fails a batch (the consumers write it to the failures bucket
   * themselves), so a batch fails only on an error of its writes, retried whole. Off for
   * LocalStack, whose Kinesis poller does not implement it (docs/deploy.md).
   *
   * @default true
   */
  readonly bisectBatchOnError?: boolean;
  readonly stream: kinesis.IStream;
  readonly streamRetentionPeriod: Duration;
  readonly failureBucket: s3.IBucket;
}

/**
 * Adds the mapping to `fn` from the consumer's props over its defaults (it also grants the
 * function read access to the stream), lets `role` write poison records under failures/, and
 * returns the mapping.
 */
export function addConsumerMapping(
  scope: IConstruct,
  fn: lambda.IFunction,
  role: iam.IRole,
  props: ConsumerMappingProps,
  defaults: ConsumerMappingSettings,
): KinesisEventSource {
  const o = {
    ...props,
    batchSize: props.batchSize ?? defaults.batchSize,
    maxBatchingWindow: props.maxBatchingWindow ?? defaults.maxBatchingWindow,
    retryAttempts: props.retryAttempts ?? defaults.retryAttempts,
    maxRecordAge: props.maxRecordAge ?? defaults.maxRecordAge,
  };
  checkRange(scope, 'batchSize', o.batchSize, 1, 10_000);
  checkDuration(scope, 'maxBatchingWindow', o.maxBatchingWindow, 0, 300);
  // -1 (infinite) is what Kinesis mappings default to and what the design forbids.
  checkRange(scope, 'retryAttempts', o.retryAttempts, 0, 10_000);
  checkDuration(scope, 'maxRecordAge', o.maxRecordAge, 60, 7 * 24 * 3600);
  const retention = o.streamRetentionPeriod;
  if (!o.maxRecordAge.isUnresolved() && !retention.isUnresolved() && o.maxRecordAge.toSeconds() > retention.toSeconds()) {
    invalid(
      scope,
      `maxRecordAge cannot exceed the stream retention (${retention.toHumanString()}). Received ${o.maxRecordAge.toHumanString()}`,
    );
  }
  const source = new KinesisEventSource(o.stream, {
    // Every record, from the oldest kept: the layers are exact only if none is skipped.
    startingPosition: lambda.StartingPosition.TRIM_HORIZON,
    batchSize: o.batchSize,
    maxBatchingWindow: o.maxBatchingWindow,
    bisectBatchOnError: props.bisectBatchOnError ?? true,
    retryAttempts: o.retryAttempts,
    maxRecordAge: o.maxRecordAge,
    reportBatchItemFailures: true,
    parallelizationFactor: 1,
    onFailure: new FailureBucketDestination(o.failureBucket),
  });
  fn.addEventSource(source);
  grantWritePrefix(props.failureBucket, fn, FAILURE_PREFIX);
  acknowledge(role, {
    [`IAM5[Resource::${nagResource(scope, props.failureBucket.arnForObjects(`${FAILURE_PREFIX}*`))}]`]:
      'Poison records are written under keys derived at run time; limited to the failures/ prefix',
    [`IAM5[Resource::${nagResource(scope, props.failureBucket.arnForObjects('*'))}]`]:
      'Lambda writes on-failure records under aws/lambda/<mapping id>/... keys it chooses; PutObject only',
  });
  return source;
}
