/**
 * The raw archive: a Lambda on the stream (large batches, long window) that
 * writes gzip NDJSON objects under `raw/dt=/hr=/` with keys derived from the
 * shard and sequence range (idempotent, invariant 6 of docs/design.md), then moves the shard's
 * "archived through" checkpoint in the control table.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type * as kinesis from 'aws-cdk-lib/aws-kinesis';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type { KinesisEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { BUCKETS, RAW_PREFIX, STREAM, TABLES } from '../functions/resources.ts';
import { acknowledge, checkDuration, grantReadPrefix, grantTableReadWrite, grantWritePrefix, nagResource, secureBucket } from './common.ts';
import { addConsumerMapping } from './consumer.ts';
import { type FunctionDefaults, functionDefaults, TandemFunction } from './function.ts';

export interface RawArchiveProps extends FunctionDefaults {
  /** The event stream. */
  readonly stream: kinesis.IStream;
  /** Record retention period of the stream (bounds `maxRecordAge`). */
  readonly streamRetentionPeriod: Duration;
  /** The control table (per-shard checkpoints, poison counter). */
  readonly controlTable: dynamodb.ITable;
  /** On-failure destination of the mapping; poison records are written there too. */
  readonly failureBucket: s3.IBucket;
  /** Receives the raw bucket's server access logs. */
  readonly accessLogsBucket: s3.IBucket;
  /** Views and settings variables (lib/environment.ts). */
  readonly environment: Readonly<Record<string, string>>;
  /**
   * Records per invocation (one or a few objects each).
   *
   * @default 5000
   */
  readonly batchSize?: number;
  /**
   * Longest wait to fill a batch (fewer, larger objects).
   *
   * @default Duration.seconds(60)
   */
  readonly maxBatchingWindow?: Duration;
  /**
   * Retries of a failing batch before its records go to the on-failure
   * destination. High: a record the archive drops is missing from every later
   * batch view, so only a long outage may push records out.
   *
   * @default 1000
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
   * Records older than this go to the on-failure destination unarchived.
   *
   * @default - the stream's retention period
   */
  readonly maxRecordAge?: Duration;
  /**
   * Age after which raw objects move to a cheaper storage class.
   *
   * @default Duration.days(30)
   */
  readonly rawTransitionAfter?: Duration;
  /**
   * The cheaper storage class. Intelligent-Tiering charges no retrieval fee,
   * which matters because a batch run may re-read the whole history.
   *
   * @default s3.StorageClass.INTELLIGENT_TIERING
   */
  readonly rawTransitionStorageClass?: s3.StorageClass;
  /**
   * Memory of the archive function in MB (gzip of large batches).
   *
   * @default 1024
   */
  readonly memorySize?: number;
  /**
   * What happens to the raw bucket when it leaves the stack.
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
}

/** Raw bucket, archive function and the archive mapping. */
export class RawArchive extends Construct {
  /** The raw archive bucket (objects under `raw/`). */
  readonly bucket: s3.Bucket;
  /** The archive function. */
  readonly function: lambda.Function;
  /** The event source mapping. */
  readonly eventSource: KinesisEventSource;

  constructor(scope: Construct, id: string, props: RawArchiveProps) {
    super(scope, id);
    const transitionAfter = props.rawTransitionAfter ?? Duration.days(30);
    checkDuration(this, 'rawTransitionAfter', transitionAfter, 86_400, 100 * 365 * 86_400);
    this.bucket = secureBucket(this, 'Bucket', {
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
      accessLogsBucket: props.accessLogsBucket,
      accessLogsPrefix: 'raw-bucket/',
      lifecycleRules: [
        {
          id: 'raw-to-cheaper-storage',
          prefix: RAW_PREFIX,
          transitions: [{ storageClass: props.rawTransitionStorageClass ?? s3.StorageClass.INTELLIGENT_TIERING, transitionAfter }],
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
      ],
    });
    const fn = new TandemFunction(this, 'Function', {
      ...functionDefaults(props),
      handler: 'archive',
      memorySize: props.memorySize ?? 1024,
      timeout: Duration.minutes(5),
      environment: {
        ...props.environment,
        [STREAM.env]: props.stream.streamName,
        [TABLES.control.env]: props.controlTable.tableName,
        [BUCKETS.raw.env]: this.bucket.bucketName,
        [BUCKETS.failures.env]: props.failureBucket.bucketName,
      },
    });
    this.function = fn.function;
    grantWritePrefix(this.bucket, this.function, RAW_PREFIX);
    grantTableReadWrite(props.controlTable, this.function);
    this.eventSource = addConsumerMapping(this, this.function, fn.role, props, {
      batchSize: 5000,
      maxBatchingWindow: Duration.seconds(60),
      retryAttempts: 1000,
      maxRecordAge: props.streamRetentionPeriod,
    });
    acknowledge(fn.role, {
      [`IAM5[Resource::${nagResource(this, this.bucket.arnForObjects(`${RAW_PREFIX}*`))}]`]:
        'Object keys are derived per shard and sequence range at run time; writes are limited to the raw/ prefix',
    });
  }

  /** Lets a principal read the raw objects (GetObject under raw/ and listing of raw/). */
  grantRead(grantee: iam.IGrantable): iam.Grant {
    return grantReadPrefix(this.bucket, grantee, RAW_PREFIX);
  }

  /** Age of the newest record the archive mapping has read, per poll (Maximum, 1 minute). */
  metricIteratorAge(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.function.metric('IteratorAge', { statistic: 'Maximum', period: Duration.minutes(1), ...props });
  }

  /** Failed invocations of the archive function (Sum, 5 minutes). */
  metricErrors(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.function.metricErrors({ statistic: 'Sum', ...props });
  }
}
