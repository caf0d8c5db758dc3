/**
 * The speed layer: a Lambda on the stream (small batches, short window) that
 * folds each batch into per-arrival-window deltas in the speed table, claiming
 * event ids in the dedup table. Both tables expire items by TTL.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type * as kinesis from 'aws-cdk-lib/aws-kinesis';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type { KinesisEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { BUCKETS, STREAM, TABLES } from '../functions/resources.ts';
import { grantTableRead, grantTableReadWrite, tandemTable } from './common.ts';
import { addConsumerMapping } from './consumer.ts';
import { type FunctionDefaults, functionDefaults, TandemFunction } from './function.ts';

export interface SpeedLayerProps extends FunctionDefaults {
  /** The event stream. */
  readonly stream: kinesis.IStream;
  /** Record retention period of the stream (bounds `maxRecordAge`). */
  readonly streamRetentionPeriod: Duration;
  /** The control table (speed progress per shard, poison counter). */
  readonly controlTable: dynamodb.ITable;
  /** On-failure destination of the mapping; poison records are written there too. */
  readonly failureBucket: s3.IBucket;
  /** Views and settings variables (lib/environment.ts). */
  readonly environment: Readonly<Record<string, string>>;
  /**
   * Records per invocation.
   *
   * @default 100
   */
  readonly batchSize?: number;
  /**
   * Longest wait to fill a batch.
   *
   * @default Duration.seconds(1)
   */
  readonly maxBatchingWindow?: Duration;
  /**
   * Retries of a failing batch (bisected each time unless bisectBatchOnError is off) before its
   * records go to the on-failure destination.
   *
   * @default 10
   */
  readonly retryAttempts?: number;
  /**
   * Split a failing batch in two and retry each half (BisectBatchOnFunctionError).
   * Off where the platform does not implement it (LocalStack); poison records never
   * fail a batch either way.
   *
   * @default true
   */
  readonly bisectBatchOnError?: boolean;
  /**
   * Records older than this go to the on-failure destination unprocessed (the
   * batch layer still counts them: the archive has them).
   *
   * @default Duration.hours(6)
   */
  readonly maxRecordAge?: Duration;
  /**
   * Memory of the speed function in MB.
   *
   * @default 512
   */
  readonly memorySize?: number;
  /**
   * What happens to the speed and dedup tables when they leave the stack.
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
}

/** Speed function, speed table, dedup table and the speed mapping. */
export class SpeedLayer extends Construct {
  /** Speed-layer deltas (TTL on `expiresAt`). */
  readonly speedTable: dynamodb.Table;
  /** Event-id claims (TTL on `expiresAt`). */
  readonly dedupTable: dynamodb.Table;
  /** The speed function. */
  readonly function: lambda.Function;
  /** The event source mapping. */
  readonly eventSource: KinesisEventSource;

  constructor(scope: Construct, id: string, props: SpeedLayerProps) {
    super(scope, id);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    this.speedTable = tandemTable(this, 'SpeedTable', TABLES.speed, { removalPolicy });
    this.dedupTable = tandemTable(this, 'DedupTable', TABLES.dedup, { removalPolicy });
    const fn = new TandemFunction(this, 'Function', {
      ...functionDefaults(props),
      handler: 'speed',
      memorySize: props.memorySize ?? 512,
      timeout: Duration.minutes(2),
      environment: {
        ...props.environment,
        [STREAM.env]: props.stream.streamName,
        [TABLES.speed.env]: this.speedTable.tableName,
        [TABLES.dedup.env]: this.dedupTable.tableName,
        [TABLES.control.env]: props.controlTable.tableName,
        [BUCKETS.failures.env]: props.failureBucket.bucketName,
      },
    });
    this.function = fn.function;
    grantTableReadWrite(this.speedTable, this.function);
    grantTableReadWrite(this.dedupTable, this.function);
    grantTableReadWrite(props.controlTable, this.function);
    this.eventSource = addConsumerMapping(this, this.function, fn.role, props, {
      batchSize: 100,
      maxBatchingWindow: Duration.seconds(1),
      retryAttempts: 10,
      maxRecordAge: Duration.hours(6),
    });
  }

  /** Lets a principal read the speed deltas (the query side of the speed layer). */
  grantRead(grantee: iam.IGrantable): iam.Grant {
    return grantTableRead(this.speedTable, grantee);
  }

  /** Age of the newest record the speed mapping has read, per poll (Maximum, 1 minute). */
  metricIteratorAge(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.function.metric('IteratorAge', { statistic: 'Maximum', period: Duration.minutes(1), ...props });
  }

  /** Failed invocations of the speed function (Sum, 5 minutes). */
  metricErrors(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.function.metricErrors({ statistic: 'Sum', ...props });
  }
}
