/**
 * The event stream: one encrypted Kinesis data stream, on-demand or provisioned.
 * Ingest writes with the event id as partition key (invariant 3, docs/design.md); the
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

export interface EventStreamProps {
  /**
   * Capacity mode: ON_DEMAND scales by itself and bills per GB; PROVISIONED
   * bills per shard-hour.
   *
   * @default kinesis.StreamMode.ON_DEMAND
   */
  readonly streamMode?: kinesis.StreamMode;
  /**
   * Shards of a provisioned stream (an on-demand stream rejects it).
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
    const mode = props.streamMode ?? kinesis.StreamMode.ON_DEMAND;
    // Callers without the type (JavaScript, context values) may pass anything.
    if (!Object.values(kinesis.StreamMode).includes(mode))
      invalid(this, `streamMode must be one of ${Object.values(kinesis.StreamMode).join(', ')}. Received ${JSON.stringify(mode)}`);
    if (mode === kinesis.StreamMode.ON_DEMAND && props.shardCount !== undefined)
      invalid(this, `shardCount applies to a provisioned stream only. Received ${props.shardCount} with streamMode ${mode}`);
    checkRange(this, 'shardCount', props.shardCount, 1, 10_000);
    this.retentionPeriod = props.retentionPeriod ?? Duration.hours(24);
    checkDuration(this, 'retentionPeriod', this.retentionPeriod, 24 * 3600, 8760 * 3600);
    this.stream = new kinesis.Stream(this, 'Resource', {
      streamMode: mode,
      ...(mode === kinesis.StreamMode.PROVISIONED ? { shardCount: props.shardCount ?? STREAM.defaultShards } : {}),
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

  /**
   * Successful GetRecords calls (Sum, 5 minutes): the mappings poll every shard about once a second,
   * records or not, so this has a data point in every period while the consumers run (a heartbeat).
   */
  metricPolls(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stream.metricGetRecordsSuccess({ statistic: 'Sum', ...props });
  }

  /** Reads rejected by throttling (Sum, 5 minutes). */
  metricReadThrottles(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stream.metricReadProvisionedThroughputExceeded({ statistic: 'Sum', ...props });
  }
}
