/**
 * Tandem, the L3 construct: the whole Lambda Architecture from one views
 * declaration. Stream -> (speed layer, raw archive) -> batch layer -> serving,
 * behind one REST API, with alarms and a dashboard. Every layer is its own
 * construct (lib/*.ts); this one only wires them and owns what they share:
 * the control table, the on-failure bucket and the access-log bucket.
 */
import { Duration, RemovalPolicy, type Size } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type * as kinesis from 'aws-cdk-lib/aws-kinesis';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { ROUTES } from '../functions/contract/routes.ts';
import { DEMO_VIEWS } from '../functions/core/demo-views.ts';
import type { Settings } from '../functions/core/settings.ts';
import { parseViews, type View, ViewValidationError } from '../functions/core/views.ts';
import { TABLES } from '../functions/resources.ts';
import { type BatchEngine, BatchLayer } from './batch-layer.ts';
import { invalid, secureBucket, tandemTable } from './common.ts';
import { type SettingsProps, settingsEnvironment, toSettings } from './environment.ts';
import type { FunctionDefaults } from './function.ts';
import { type ApiAuth, IngestApi } from './ingest-api.ts';
import { FAILURE_METRICS_FILTER, Monitoring } from './monitoring.ts';
import { RawArchive } from './raw-archive.ts';
import { Serving } from './serving.ts';
import { SpeedLayer } from './speed-layer.ts';
import { EventStream } from './stream.ts';

/**
 * Props of the Tandem construct. A prop that sets one layer's construct prop
 * carries that prop's name, prefixed with the layer where the bare name would
 * be ambiguous here (`speedBatchSize` is SpeedLayer's `batchSize`,
 * `streamRetentionPeriod` is EventStream's `retentionPeriod`).
 */
export interface TandemProps extends SettingsProps, FunctionDefaults {
  /**
   * The views, declared with `view()` of functions/core/views.ts. Views read
   * from JSON are parsed first with `parseViews` or `parseViewsJson` of that
   * module (as bin/app.ts does for `-c views=`). They are validated again here
   * with the schema the local cloud uses.
   *
   * @default - the demo views (functions/core/demo-views.ts)
   */
  readonly views?: readonly View[];
  /**
   * Where the batch SQL runs: `athena` or `duckdb` (inside the batch-task
   * function; LocalStack's free plan has no Athena or Glue).
   *
   * @default 'athena'
   */
  readonly batchEngine?: BatchEngine;
  /**
   * Kinesis capacity mode.
   *
   * @default kinesis.StreamMode.ON_DEMAND
   */
  readonly streamMode?: kinesis.StreamMode;
  /**
   * Shards of a provisioned stream.
   *
   * @default 2
   */
  readonly shardCount?: number;
  /**
   * Record retention period of the stream.
   *
   * @default Duration.hours(24)
   */
  readonly streamRetentionPeriod?: Duration;
  /**
   * Customer-managed key of the stream.
   *
   * @default - the AWS-managed aws/kinesis key
   */
  readonly streamEncryptionKey?: kms.IKey;
  /**
   * Speed mapping: records per invocation.
   *
   * @default 100
   */
  readonly speedBatchSize?: number;
  /**
   * Speed mapping: longest wait to fill a batch.
   *
   * @default Duration.seconds(1)
   */
  readonly speedMaxBatchingWindow?: Duration;
  /**
   * Speed mapping: retries before records go to the on-failure bucket.
   *
   * @default 10
   */
  readonly speedRetryAttempts?: number;
  /**
   * Speed mapping: records older than this are not aggregated (the batch still counts them).
   *
   * @default Duration.hours(6)
   */
  readonly speedMaxRecordAge?: Duration;
  /**
   * Both mappings: split a failing batch in two and retry each half. Exactness does not
   * rest on it (a poison record never fails a batch); turn it off where the platform
   * does not implement it (LocalStack: docs/deploy.md).
   *
   * @default true
   */
  readonly bisectBatchOnError?: boolean;
  /**
   * Archive mapping: records per invocation.
   *
   * @default 5000
   */
  readonly archiveBatchSize?: number;
  /**
   * Archive mapping: longest wait to fill a batch.
   *
   * @default Duration.seconds(60)
   */
  readonly archiveMaxBatchingWindow?: Duration;
  /**
   * Archive mapping: retries before records go to the on-failure bucket.
   *
   * @default 1000
   */
  readonly archiveRetryAttempts?: number;
  /**
   * Archive mapping: records older than this go to the on-failure bucket.
   *
   * @default - the stream's retention period
   */
  readonly archiveMaxRecordAge?: Duration;
  /**
   * Age after which raw objects move to a cheaper storage class.
   *
   * @default Duration.days(30)
   */
  readonly rawTransitionAfter?: Duration;
  /**
   * The cheaper storage class of raw objects.
   *
   * @default s3.StorageClass.INTELLIGENT_TIERING
   */
  readonly rawTransitionStorageClass?: s3.StorageClass;
  /**
   * How long S3 server access logs are kept.
   *
   * @default Duration.days(90)
   */
  readonly accessLogsRetention?: Duration;
  /**
   * Batch schedule rate (each run rewrites every batch-view row: docs/deploy.md).
   *
   * @default Duration.hours(1)
   */
  readonly batchEvery?: Duration;
  /**
   * Whether the batch schedule is enabled.
   *
   * @default true
   */
  readonly batchScheduleEnabled?: boolean;
  /**
   * Flexible window of the batch schedule.
   *
   * @default Duration.minutes(1)
   */
  readonly batchFlexibleWindow?: Duration;
  /**
   * Views computed at once in a batch run.
   *
   * @default 2
   */
  readonly viewConcurrency?: number;
  /**
   * Athena: raw archive bytes a day, the input of the bytes-scanned cost model (BatchLayerProps).
   *
   * @default Size.gibibytes(1)
   */
  readonly athenaRawBytesPerDay?: Size;
  /**
   * Athena: days of raw history the largest query (a rebuild) reads (BatchLayerProps).
   *
   * @default 30
   */
  readonly athenaHistoryDays?: number;
  /**
   * Athena: bytes one query may scan.
   *
   * @default - 2 × athenaRawBytesPerDay × athenaHistoryDays (docs/batch-layer.md, "Athena in AWS")
   */
  readonly athenaBytesScannedCutoff?: Size;
  /**
   * Athena: first arrival day of partition projection (YYYY-MM-DD).
   *
   * @default - the day of synthesis (UTC): pin it once deployed
   */
  readonly projectionStartDay?: string;
  /**
   * API keys accepted besides the control table's (`name:sha256hex` or `sha256hex`).
   *
   * @default - only keys created with `tandem keys create`
   */
  readonly apiKeyHashes?: string[];
  /**
   * Where the API key is checked: a REQUEST authorizer, or the API functions themselves
   * (for an API Gateway without Lambda authorizers, such as LocalStack's free plan).
   *
   * @default ApiAuth.AUTHORIZER
   */
  readonly apiAuth?: ApiAuth;
  /**
   * Whether API Gateway checks the shape of request bodies before calling a function
   * (the functions validate every body anyway).
   *
   * @default true
   */
  readonly validateRequestBody?: boolean;
  /**
   * Browser origin allowed by CORS.
   *
   * @default '*'
   */
  readonly corsAllowOrigin?: string;
  /**
   * Stage steady-state request rate.
   *
   * @default 500
   */
  readonly throttlingRateLimit?: number;
  /**
   * Stage burst.
   *
   * @default 1000
   */
  readonly throttlingBurstLimit?: number;
  /**
   * Create and associate a WAF web ACL.
   *
   * @default false
   */
  readonly createWebAcl?: boolean;
  /**
   * Associate an existing WAF web ACL (REGIONAL) instead.
   *
   * @default - none
   */
  readonly webAclArn?: string;
  /**
   * Topic that alarms notify.
   *
   * @default - no notifications
   */
  readonly alarmTopic?: sns.ITopic;
  /**
   * What happens to the stream, tables and buckets when they leave the stack.
   * DESTROY suits test stacks (buckets must be empty to be deleted).
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
}

/** Feature flag: server access logs are delivered through a bucket policy instead of the LogDeliveryWrite ACL. */
export const S3_LOGS_BY_POLICY = '@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy';

/** The whole Tandem system. */
export class Tandem extends Construct {
  /** The validated views every function runs. */
  readonly views: readonly View[];
  /** The validated settings. */
  readonly settings: Settings;
  /** The Kinesis stream. */
  readonly stream: kinesis.IStream;
  /** Speed deltas. */
  readonly speedTable: dynamodb.ITable;
  /** Dedup claims. */
  readonly dedupTable: dynamodb.ITable;
  /** Batch-view rows. */
  readonly batchViewsTable: dynamodb.ITable;
  /** Pointer, manifests, checkpoints, runs, locks, API keys. */
  readonly controlTable: dynamodb.Table;
  /** Raw archive bucket. */
  readonly rawBucket: s3.IBucket;
  /** On-failure bucket of both mappings. */
  readonly failureBucket: s3.IBucket;
  /** The batch state machine. */
  readonly stateMachine: sfn.IStateMachine;
  /** Base URL of the API (ends in `/`). */
  readonly apiUrl: string;
  /** The layers. */
  readonly eventStream: EventStream;
  readonly ingestApi: IngestApi;
  readonly speedLayer: SpeedLayer;
  readonly rawArchive: RawArchive;
  readonly batchLayer: BatchLayer;
  readonly serving: Serving;
  readonly monitoring: Monitoring;

  constructor(scope: Construct, id: string, props: TandemProps = {}) {
    super(scope, id);
    // S3 access logs delivered through a bucket policy, not ACLs (all buckets are BucketOwnerEnforced).
    this.node.setContext(S3_LOGS_BY_POLICY, true);
    try {
      this.views = props.views === undefined ? DEMO_VIEWS : parseViews(props.views);
    } catch (e) {
      if (e instanceof ViewValidationError) invalid(this, e.message);
      throw e;
    }
    if (this.views.length === 0) invalid(this, 'views must declare at least one view. Received []');
    try {
      this.settings = toSettings(props);
    } catch (e) {
      invalid(this, (e as Error).message);
    }
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const environment = settingsEnvironment(this.views, this.settings);
    const fnDefaults: FunctionDefaults = {
      ...(props.architecture ? { architecture: props.architecture } : {}),
      ...(props.runtime ? { runtime: props.runtime } : {}),
      logRetention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      ...(props.logLevel ? { logLevel: props.logLevel } : {}),
      ...(props.handlerCode ? { handlerCode: props.handlerCode } : {}),
      logRemovalPolicy: props.logRemovalPolicy ?? removalPolicy,
    };

    const accessLogsBucket = secureBucket(this, 'AccessLogsBucket', {
      removalPolicy,
      accessLogsBucket: undefined,
      lifecycleRules: [{ id: 'expire-access-logs', expiration: props.accessLogsRetention ?? Duration.days(90) }],
    });
    this.controlTable = tandemTable(this, 'ControlTable', TABLES.control, { removalPolicy });
    this.failureBucket = secureBucket(this, 'FailureBucket', {
      removalPolicy,
      accessLogsBucket,
      accessLogsPrefix: 'failure-bucket/',
      metrics: [{ id: FAILURE_METRICS_FILTER }],
    });

    this.eventStream = new EventStream(this, 'Stream', {
      ...(props.streamMode ? { streamMode: props.streamMode } : {}),
      ...(props.shardCount !== undefined ? { shardCount: props.shardCount } : {}),
      ...(props.streamRetentionPeriod ? { retentionPeriod: props.streamRetentionPeriod } : {}),
      ...(props.streamEncryptionKey ? { encryptionKey: props.streamEncryptionKey } : {}),
      removalPolicy,
    });
    this.stream = this.eventStream.stream;
    const streamRetentionPeriod = this.eventStream.retentionPeriod;

    this.ingestApi = new IngestApi(this, 'Api', {
      ...fnDefaults,
      stream: this.eventStream,
      controlTable: this.controlTable,
      environment,
      ...(props.apiKeyHashes ? { apiKeyHashes: props.apiKeyHashes } : {}),
      ...(props.apiAuth ? { apiAuth: props.apiAuth } : {}),
      ...(props.validateRequestBody !== undefined ? { validateRequestBody: props.validateRequestBody } : {}),
      ...(props.corsAllowOrigin ? { corsAllowOrigin: props.corsAllowOrigin } : {}),
      ...(props.throttlingRateLimit !== undefined ? { throttlingRateLimit: props.throttlingRateLimit } : {}),
      ...(props.throttlingBurstLimit !== undefined ? { throttlingBurstLimit: props.throttlingBurstLimit } : {}),
      ...(props.createWebAcl ? { createWebAcl: props.createWebAcl } : {}),
      ...(props.webAclArn ? { webAclArn: props.webAclArn } : {}),
    });

    this.speedLayer = new SpeedLayer(this, 'Speed', {
      ...fnDefaults,
      stream: this.stream,
      streamRetentionPeriod,
      controlTable: this.controlTable,
      failureBucket: this.failureBucket,
      environment,
      removalPolicy,
      ...(props.speedBatchSize !== undefined ? { batchSize: props.speedBatchSize } : {}),
      ...(props.speedMaxBatchingWindow ? { maxBatchingWindow: props.speedMaxBatchingWindow } : {}),
      ...(props.speedRetryAttempts !== undefined ? { retryAttempts: props.speedRetryAttempts } : {}),
      ...(props.speedMaxRecordAge ? { maxRecordAge: props.speedMaxRecordAge } : {}),
      ...(props.bisectBatchOnError !== undefined ? { bisectBatchOnError: props.bisectBatchOnError } : {}),
    });
    this.speedTable = this.speedLayer.speedTable;
    this.dedupTable = this.speedLayer.dedupTable;

    this.rawArchive = new RawArchive(this, 'Archive', {
      ...fnDefaults,
      stream: this.stream,
      streamRetentionPeriod,
      controlTable: this.controlTable,
      failureBucket: this.failureBucket,
      accessLogsBucket,
      environment,
      removalPolicy,
      ...(props.archiveBatchSize !== undefined ? { batchSize: props.archiveBatchSize } : {}),
      ...(props.archiveMaxBatchingWindow ? { maxBatchingWindow: props.archiveMaxBatchingWindow } : {}),
      ...(props.archiveRetryAttempts !== undefined ? { retryAttempts: props.archiveRetryAttempts } : {}),
      ...(props.archiveMaxRecordAge ? { maxRecordAge: props.archiveMaxRecordAge } : {}),
      ...(props.bisectBatchOnError !== undefined ? { bisectBatchOnError: props.bisectBatchOnError } : {}),
      ...(props.rawTransitionAfter ? { rawTransitionAfter: props.rawTransitionAfter } : {}),
      ...(props.rawTransitionStorageClass ? { rawTransitionStorageClass: props.rawTransitionStorageClass } : {}),
    });
    this.rawBucket = this.rawArchive.bucket;

    this.batchLayer = new BatchLayer(this, 'Batch', {
      ...fnDefaults,
      stream: this.stream,
      controlTable: this.controlTable,
      rawBucket: this.rawArchive.bucket,
      accessLogsBucket,
      environment,
      removalPolicy,
      maxBatchLag: Duration.seconds(this.settings.maxBatchLagSeconds),
      ...(props.batchEngine ? { batchEngine: props.batchEngine } : {}),
      ...(props.batchEvery ? { batchEvery: props.batchEvery } : {}),
      ...(props.batchScheduleEnabled !== undefined ? { batchScheduleEnabled: props.batchScheduleEnabled } : {}),
      ...(props.batchFlexibleWindow ? { batchFlexibleWindow: props.batchFlexibleWindow } : {}),
      ...(props.viewConcurrency !== undefined ? { viewConcurrency: props.viewConcurrency } : {}),
      ...(props.athenaBytesScannedCutoff ? { athenaBytesScannedCutoff: props.athenaBytesScannedCutoff } : {}),
      ...(props.athenaRawBytesPerDay ? { athenaRawBytesPerDay: props.athenaRawBytesPerDay } : {}),
      ...(props.athenaHistoryDays !== undefined ? { athenaHistoryDays: props.athenaHistoryDays } : {}),
      ...(props.projectionStartDay ? { projectionStartDay: props.projectionStartDay } : {}),
    });
    this.batchViewsTable = this.batchLayer.batchViewsTable;
    this.stateMachine = this.batchLayer.stateMachine;

    this.serving = new Serving(this, 'Serving', {
      ...fnDefaults,
      speedTable: this.speedTable,
      controlTable: this.controlTable,
      batch: this.batchLayer,
      environment,
      apiEnvironment: this.ingestApi.apiEnvironment,
    });
    const served: Partial<Record<string, lambda.IFunction>> = {
      query: this.serving.queryFunction,
      batchApi: this.serving.batchApiFunction,
    };
    for (const route of ROUTES) {
      const fn = served[route.handler];
      if (fn) this.ingestApi.addRoute(route, fn);
    }
    const missing = this.ingestApi.missingHandlers();
    if (missing.length > 0) invalid(this, `every route of the contract needs a function; none serves handler(s) ${missing.join(', ')}`);
    this.apiUrl = this.ingestApi.url;

    this.monitoring = new Monitoring(this, 'Monitoring', {
      stream: this.eventStream,
      api: this.ingestApi,
      speed: this.speedLayer,
      archive: this.rawArchive,
      batch: this.batchLayer,
      serving: this.serving,
      failureBucket: this.failureBucket,
      settings: this.settings,
      ...(props.alarmTopic ? { alarmTopic: props.alarmTopic } : {}),
    });
  }

  /** Lets a principal put events straight into the stream (producers that skip the HTTP API). */
  grantIngest(grantee: iam.IGrantable): iam.Grant {
    return this.eventStream.grantIngest(grantee);
  }

  /** Lets a principal read what the query function reads (no writes). */
  grantQuery(grantee: iam.IGrantable): iam.Grant {
    return this.serving.grantQuery(grantee);
  }
}
