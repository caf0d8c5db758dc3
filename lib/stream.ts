/**
 * The event stream: one encrypted Kinesis data stream, on-demand or provisioned.
 * Ingest writes with the event id as partition key (DESIGN invariant 3); the
 * speed and archive layers each read it through their own event source mapping.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as kinesis from 'aws-cdk-lib/aws-kinesis';
import type * as kms from 'aws-cdk-lib/aws-kms';
import { Construct } from 'constructs';
import { STREAM } from '../functions/resources.ts';
import { checkDuration, checkRange, invalid } from './common.ts';

export type StreamCapacity = 'on-demand' | 'provisioned';

export interface EventStreamProps {
  /**
   * Capacity mode: `on-demand` scales by itself and bills per GB;
   * `provisioned` bills per shard-hour.
   *
   * @default 'on-demand'
   */
  readonly streamMode?: StreamCapacity;
  /**
   * Shards of a provisioned stream (ignored when on-demand).
   *
   * @default STREAM.defaultShards (2)
   */
  readonly shardCount?: number;
  /**
   * How long records stay readable. The archive must catch up within it, so it
   * bounds the archive mapping's `maxRecordAge` too.
   *
   * @default Duration.hours(24)
   */
  readonly retentionPeriod?: Duration;
  /**
   * Customer-managed key for server-side encryption.
   *
   * @default - the AWS-managed `aws/kinesis` key
   */
  readonly encryptionKey?: kms.IKey;
  /**
   * What happens to the stream when it leaves the stack.
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
}

/** The Kinesis stream between ingest and both layers. */
export class EventStream extends Construct {
  /** The stream. */
  readonly stream: kinesis.Stream;
  /** Record retention (bounds the consumers' maxRecordAge). */
  readonly retentionPeriod: Duration;

  constructor(scope: Construct, id: string, props: EventStreamProps = {}) {
    super(scope, id);
    const mode = props.streamMode ?? 'on-demand';
    if (mode !== 'on-demand' && mode !== 'provisioned')
      invalid(this, `streamMode must be 'on-demand' or 'provisioned'. Received ${JSON.stringify(mode)}`);
    if (mode === 'on-demand' && props.shardCount !== undefined)
      invalid(this, `shardCount applies to a provisioned stream only. Received ${props.shardCount} with streamMode 'on-demand'`);
    checkRange(this, 'shardCount', props.shardCount, 1, 10_000);
    this.retentionPeriod = props.retentionPeriod ?? Duration.hours(24);
    checkDuration(this, 'retentionPeriod', this.retentionPeriod, 24 * 3600, 8760 * 3600);
    this.stream = new kinesis.Stream(this, 'Resource', {
      streamMode: mode === 'on-demand' ? kinesis.StreamMode.ON_DEMAND : kinesis.StreamMode.PROVISIONED,
      ...(mode === 'provisioned' ? { shardCount: props.shardCount ?? STREAM.defaultShards } : {}),
      retentionPeriod: this.retentionPeriod,
      ...(props.encryptionKey
        ? { encryption: kinesis.StreamEncryption.KMS, encryptionKey: props.encryptionKey }
        : { encryption: kinesis.StreamEncryption.MANAGED }),
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    });
  }

  /** Lets a principal put records (PutRecord, PutRecords, ListShards; the key too when customer-managed). */
  grantIngest(grantee: iam.IGrantable): iam.Grant {
    return this.stream.grantWrite(grantee);
  }

  /** Records written to the stream (Sum, 5 minutes). */
  metricIncomingRecords(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stream.metricIncomingRecords({ statistic: 'Sum', ...props });
  }

  /** Records rejected by write throttling (Sum, 5 minutes). */
  metricWriteThrottles(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stream.metricPutRecordsThrottledRecords({ statistic: 'Sum', ...props });
  }

  /** Reads rejected by throttling (Sum, 5 minutes). */
  metricReadThrottles(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stream.metricReadProvisionedThroughputExceeded({ statistic: 'Sum', ...props });
  }
}
