/**
 * The batch layer: a Step Functions state machine (plan -> one step per view ->
 * publish, with Retry and a Catch that records the failure) whose steps are
 * `functions/batch-task.ts`, started on a schedule by EventBridge Scheduler and
 * on demand by POST /batch/runs. The SQL runs on Athena over a Glue table with
 * partition projection (engine `athena`), or on DuckDB inside the batch-task
 * function over the raw objects (engine `duckdb`: for LocalStack, which has no
 * Athena or Glue, and for small data). Rows land in the batch-views table as
 * version N; the pointer flips only when all are written (invariant 7, docs/design.md).
 */
import { ArnFormat, Duration, RemovalPolicy, Size, Stack } from 'aws-cdk-lib';
import * as athena from 'aws-cdk-lib/aws-athena';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as glue from 'aws-cdk-lib/aws-glue';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kinesis from 'aws-cdk-lib/aws-kinesis';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as schedulerTargets from 'aws-cdk-lib/aws-scheduler-targets';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { batchStateMachineDefinition } from '../functions/contract/state-machine.ts';
import { GLUE_COLUMNS, GLUE_PARTITION_KEYS, GLUE_SERDE, glueProjectionParameters } from '../functions/core/sql.ts';
import { BUCKETS, RAW_PREFIX, SETTINGS_ENV, STREAM, TABLES } from '../functions/resources.ts';
import {
  acknowledge,
  checkDuration,
  checkRange,
  grantReadPrefix,
  grantTableReadWrite,
  invalid,
  nagResource,
  principalConstruct,
  secureBucket,
  tandemTable,
} from './common.ts';
import { type FunctionDefaults, functionDefaults, TandemFunction } from './function.ts';

export type BatchEngine = 'athena' | 'duckdb';
export const BATCH_ENGINES: readonly BatchEngine[] = ['athena', 'duckdb'];

/** Longest run of one batch step (Lambda's maximum); the state machine's task timeout matches it. */
const TASK_TIMEOUT = Duration.minutes(15);

/** Prefix of Athena query results in the results bucket. */
const RESULTS_PREFIX = 'athena/';
/** Name of the Glue table over `raw/`. */
export const RAW_TABLE_NAME = 'raw_events';

export interface BatchLayerProps extends FunctionDefaults {
  /** The event stream (the planner checks idle shards, invariant 4 of docs/design.md). */
  readonly stream: kinesis.IStream;
  /** The control table (lock, runs, manifests, pointer, checkpoints). */
  readonly controlTable: dynamodb.ITable;
  /** The raw archive bucket (objects under `raw/`). */
  readonly rawBucket: s3.IBucket;
  /** Receives the results bucket's server access logs. */
  readonly accessLogsBucket: s3.IBucket;
  /** Views and settings variables (lib/environment.ts). */
  readonly environment: Readonly<Record<string, string>>;
  /**
   * Where the SQL runs: `athena` (Glue table with partition projection, Athena
   * workgroup) or `duckdb` (inside the batch-task function, over raw objects
   * copied to its /tmp; no Glue or Athena resources are created).
   *
   * @default 'athena'
   */
  readonly batchEngine?: BatchEngine;
  /**
   * How often the scheduler starts a batch run. Must be shorter than maxBatchLag.
   * Each published version is a full copy of every view (invariant 7, docs/design.md), so a
   * run costs about two DynamoDB writes per batch-view row: see docs/deploy.md.
   *
   * @default Duration.hours(1)
   */
  readonly batchEvery?: Duration;
  /**
   * Whether the schedule is enabled (runs can still be started with POST /batch/runs).
   *
   * @default true
   */
  readonly batchScheduleEnabled?: boolean;
  /**
   * Flexible time window of the schedule (lets Scheduler spread starts).
   *
   * @default Duration.minutes(1)
   */
  readonly batchFlexibleWindow?: Duration;
  /**
   * Retries of the schedule's StartExecution call.
   *
   * @default 3
   */
  readonly batchScheduleRetryAttempts?: number;
  /**
   * The longest the published cutoff may lag (settings); the schedule rate is checked against it.
   */
  readonly maxBatchLag: Duration;
  /**
   * Views run at once by the state machine's Map state.
   *
   * @default 2
   */
  readonly viewConcurrency?: number;
  /**
   * Longest run of the whole state machine.
   *
   * @default Duration.hours(2)
   */
  readonly batchTimeout?: Duration;
  /**
   * Memory of the batch-task function in MB.
   *
   * @default 1024 with athena, 3008 with duckdb
   */
  readonly batchTaskMemorySize?: number;
  /**
   * Athena: bytes one query may scan before Athena cancels it.
   *
   * @default Size.gibibytes(100)
   */
  readonly athenaBytesScannedCutoff?: Size;
  /**
   * Athena: the first arrival day partition projection enumerates (YYYY-MM-DD).
   * Keep it near the deployment date.
   *
   * @default '2025-01-01'
   */
  readonly projectionStartDay?: string;
  /**
   * Athena: name of the Glue database (lowercase).
   *
   * @default - the stack name, lowercased, with `_` for other characters
   */
  readonly glueDatabaseName?: string;
  /**
   * What happens to the batch-views table and the results bucket when they leave the stack.
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
}

/** Batch-views table, batch-task function, state machine, schedule, and the engine's resources. */
export class BatchLayer extends Construct {
  /** Batch-view rows per view, version and partition. */
  readonly batchViewsTable: dynamodb.Table;
  /** The batch-task function (every state of the state machine). */
  readonly function: lambda.Function;
  /** The batch state machine. */
  readonly stateMachine: sfn.StateMachine;
  /** The schedule starting it. */
  readonly schedule: scheduler.Schedule;
  /** The engine running the SQL. */
  readonly engine: BatchEngine;
  /** Athena workgroup (engine `athena` only). */
  readonly workGroup?: athena.CfnWorkGroup;
  /** Glue database (engine `athena` only). */
  readonly database?: glue.Database;
  /** Glue table over raw/ (engine `athena` only). */
  readonly table?: glue.CfnTable;
  /** Athena results bucket (engine `athena` only). */
  readonly resultsBucket?: s3.Bucket;

  constructor(scope: Construct, id: string, props: BatchLayerProps) {
    super(scope, id);
    this.engine = props.batchEngine ?? 'athena';
    if (!BATCH_ENGINES.includes(this.engine))
      invalid(this, `batchEngine must be one of ${BATCH_ENGINES.join(', ')}. Received ${JSON.stringify(this.engine)}`);
    const every = props.batchEvery ?? Duration.hours(1);
    checkDuration(this, 'batchEvery', every, 60, 86_400);
    if (!every.isUnresolved() && !props.maxBatchLag.isUnresolved() && every.toSeconds() >= props.maxBatchLag.toSeconds()) {
      invalid(
        this,
        `batchEvery must be shorter than maxBatchLag (${props.maxBatchLag.toHumanString()}), or the lag alarm fires between runs. Received ${every.toHumanString()}`,
      );
    }
    const flexible = props.batchFlexibleWindow ?? Duration.minutes(1);
    checkDuration(this, 'batchFlexibleWindow', flexible, 60, 86_400);
    checkRange(this, 'batchScheduleRetryAttempts', props.batchScheduleRetryAttempts, 0, 185);
    checkRange(this, 'viewConcurrency', props.viewConcurrency, 1, 40);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;

    this.batchViewsTable = tandemTable(this, 'BatchViewsTable', TABLES.batchViews, { removalPolicy });

    const engineEnv: Record<string, string> = { [SETTINGS_ENV.batchEngine]: this.engine };
    if (this.engine === 'athena') {
      const cutoff = props.athenaBytesScannedCutoff ?? Size.gibibytes(100);
      const cutoffBytes = cutoff.toBytes();
      // Athena's minimum is 10 MB.
      if (cutoffBytes < 10_000_000) invalid(this, `athenaBytesScannedCutoff must be at least 10 MB. Received ${cutoffBytes} bytes`);
      const resultsBucket = secureBucket(this, 'ResultsBucket', {
        removalPolicy,
        accessLogsBucket: props.accessLogsBucket,
        accessLogsPrefix: 'athena-results/',
        lifecycleRules: [
          {
            id: 'expire-query-results',
            prefix: RESULTS_PREFIX,
            expiration: Duration.days(7),
            abortIncompleteMultipartUploadAfter: Duration.days(1),
          },
        ],
      });
      const databaseName =
        props.glueDatabaseName ??
        Stack.of(this)
          .stackName.toLowerCase()
          .replace(/[^a-z0-9_]/g, '_');
      if (!/^[a-z0-9_]{1,255}$/.test(databaseName))
        invalid(this, `glueDatabaseName must be lowercase letters, digits or _. Received ${JSON.stringify(databaseName)}`);
      const database = new glue.Database(this, 'Database', { databaseName, description: 'Tandem raw archive', removalPolicy });
      const location = `s3://${props.rawBucket.bucketName}/${RAW_PREFIX}`;
      const table = new glue.CfnTable(this, 'RawTable', {
        catalogId: Stack.of(this).account,
        databaseName,
        tableInput: {
          name: RAW_TABLE_NAME,
          description: 'Raw archive: one RawRecord (functions/core/record.ts) per gzip NDJSON line, partitioned by arrival hour',
          tableType: 'EXTERNAL_TABLE',
          parameters: {
            classification: 'json',
            compressionType: 'gzip',
            EXTERNAL: 'TRUE',
            ...glueProjectionParameters(location, props.projectionStartDay ?? '2025-01-01'),
          },
          partitionKeys: GLUE_PARTITION_KEYS.map((c) => ({ name: c.name, type: c.type })),
          storageDescriptor: {
            location,
            columns: GLUE_COLUMNS.map((c) => ({ name: c.name, type: c.type })),
            inputFormat: 'org.apache.hadoop.mapred.TextInputFormat',
            outputFormat: 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat',
            compressed: true,
            serdeInfo: { serializationLibrary: GLUE_SERDE.serializationLibrary, parameters: { ...GLUE_SERDE.parameters } },
          },
        },
      });
      table.node.addDependency(database);
      const workGroup = new athena.CfnWorkGroup(this, 'WorkGroup', {
        name: `${databaseName}_batch`,
        description: 'Tandem batch views',
        recursiveDeleteOption: removalPolicy === RemovalPolicy.DESTROY,
        workGroupConfiguration: {
          enforceWorkGroupConfiguration: true,
          publishCloudWatchMetricsEnabled: true,
          bytesScannedCutoffPerQuery: cutoffBytes,
          engineVersion: { selectedEngineVersion: 'Athena engine version 3' },
          resultConfiguration: {
            outputLocation: resultsBucket.s3UrlForObject(RESULTS_PREFIX),
            encryptionConfiguration: { encryptionOption: 'SSE_S3' },
          },
        },
      });
      engineEnv[SETTINGS_ENV.athenaWorkgroup] = workGroup.name;
      engineEnv[SETTINGS_ENV.athenaDatabase] = databaseName;
      engineEnv[SETTINGS_ENV.athenaTable] = RAW_TABLE_NAME;
      this.resultsBucket = resultsBucket;
      this.database = database;
      this.table = table;
      this.workGroup = workGroup;
    }

    const duckdb = this.engine === 'duckdb';
    const fn = new TandemFunction(this, 'TaskFunction', {
      ...functionDefaults(props),
      handler: 'batchTask',
      memorySize: props.batchTaskMemorySize ?? (duckdb ? 3008 : 1024),
      timeout: TASK_TIMEOUT,
      // DuckDB is a native module: npm installs it (linux, the function's architecture) next to the bundle.
      ...(duckdb ? { nodeModules: ['@duckdb/node-api'] } : {}),
      environment: {
        ...props.environment,
        ...engineEnv,
        ...(duckdb ? { [SETTINGS_ENV.stageDir]: '/tmp/tandem-stage' } : {}),
        [STREAM.env]: props.stream.streamName,
        [TABLES.batchViews.env]: this.batchViewsTable.tableName,
        [TABLES.control.env]: props.controlTable.tableName,
        [BUCKETS.raw.env]: props.rawBucket.bucketName,
      },
    });
    this.function = fn.function;
    grantTableReadWrite(this.batchViewsTable, this.function);
    grantTableReadWrite(props.controlTable, this.function);
    grantReadPrefix(props.rawBucket, this.function, RAW_PREFIX);
    // The planner's view of the stream: which shards exist, and whether anything lies past a checkpoint.
    iam.Grant.addToPrincipal({
      grantee: this.function,
      actions: ['kinesis:DescribeStreamSummary', 'kinesis:ListShards', 'kinesis:GetShardIterator', 'kinesis:GetRecords'],
      resourceArns: [props.stream.streamArn],
    });
    if (props.stream.encryptionKey) props.stream.encryptionKey.grantDecrypt(this.function);
    const ackFn: Record<string, string> = {
      [`IAM5[Resource::${nagResource(this, props.rawBucket.arnForObjects(`${RAW_PREFIX}*`))}]`]:
        'The batch reads every raw object up to the cutoff; keys are derived per shard and sequence range; read-only, raw/ prefix only',
    };
    if (this.workGroup && this.database && this.table && this.resultsBucket) {
      const stack = Stack.of(this);
      iam.Grant.addToPrincipal({
        grantee: this.function,
        actions: ['athena:StartQueryExecution', 'athena:GetQueryExecution', 'athena:GetQueryResults', 'athena:StopQueryExecution'],
        resourceArns: [stack.formatArn({ service: 'athena', resource: 'workgroup', resourceName: this.workGroup.name })],
      });
      iam.Grant.addToPrincipal({
        grantee: this.function,
        actions: ['glue:GetDatabase', 'glue:GetTable', 'glue:GetPartition', 'glue:GetPartitions'],
        resourceArns: [
          this.database.catalog.catalogArn,
          this.database.databaseArn,
          stack.formatArn({ service: 'glue', resource: 'table', resourceName: `${this.database.databaseName}/${RAW_TABLE_NAME}` }),
        ],
      });
      // Athena writes and reads query results with the caller's permissions.
      iam.Grant.addToPrincipal({
        grantee: this.function,
        actions: ['s3:GetBucketLocation', 's3:ListBucket', 's3:ListBucketMultipartUploads'],
        resourceArns: [this.resultsBucket.bucketArn],
      });
      iam.Grant.addToPrincipal({
        grantee: this.function,
        actions: ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload', 's3:ListMultipartUploadParts'],
        resourceArns: [this.resultsBucket.arnForObjects(`${RESULTS_PREFIX}*`)],
      });
      iam.Grant.addToPrincipal({ grantee: this.function, actions: ['s3:GetBucketLocation'], resourceArns: [props.rawBucket.bucketArn] });
      ackFn[`IAM5[Resource::${nagResource(this, this.resultsBucket.arnForObjects(`${RESULTS_PREFIX}*`))}]`] =
        'Athena names each result object after its query id; access is limited to the athena/ prefix of the results bucket';
    }
    acknowledge(fn.role, ackFn);

    const stateLogs = new logs.LogGroup(this, 'StateMachineLogs', {
      // The /aws/vendedlogs/ prefix keeps CloudWatch's resource policy small (Step Functions guidance).
      logGroupName: `/aws/vendedlogs/states/${Stack.of(this).stackName}-batch`,
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: props.logRemovalPolicy ?? RemovalPolicy.RETAIN,
    });
    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      // The same ASL the local interpreter runs (functions/contract/state-machine.ts), the task ARN substituted.
      definitionBody: sfn.DefinitionBody.fromString(
        JSON.stringify(
          // biome-ignore lint/suspicious/noTemplateCurlyInString: a Step Functions definition substitution, not a JS template
          batchStateMachineDefinition('${BatchTaskArn}', {
            maxConcurrency: props.viewConcurrency ?? 2,
            taskTimeoutSeconds: TASK_TIMEOUT.toSeconds(),
          }),
        ),
      ),
      definitionSubstitutions: { BatchTaskArn: this.function.functionArn },
      stateMachineType: sfn.StateMachineType.STANDARD,
      timeout: props.batchTimeout ?? Duration.hours(2),
      tracingEnabled: true,
      logs: { destination: stateLogs, level: sfn.LogLevel.ALL, includeExecutionData: true },
    });
    this.function.grantInvoke(this.stateMachine);
    acknowledge(this.stateMachine.role, {
      [`IAM5[Resource::${nagResource(this, fn.function.functionArn)}:*]`]:
        'Step Functions invokes the batch-task function by ARN; CDK also allows its versions and aliases (ARN:*)',
      'IAM5[Resource::*]': 'CloudWatch Logs delivery (logs:*LogDelivery*) and X-Ray actions support no resource-level permissions',
    });

    this.schedule = new scheduler.Schedule(this, 'Schedule', {
      description: 'Starts a Tandem batch run',
      schedule: scheduler.ScheduleExpression.rate(every),
      enabled: props.batchScheduleEnabled ?? true,
      timeWindow: scheduler.TimeWindow.flexible(flexible),
      target: new schedulerTargets.StepFunctionsStartExecution(this.stateMachine, {
        input: scheduler.ScheduleTargetInput.fromObject({ trigger: 'schedule' }),
        retryAttempts: props.batchScheduleRetryAttempts ?? 3,
        maxEventAge: Duration.minutes(10),
      }),
    });
  }

  /** Lets a principal start runs and describe their executions (POST /batch/runs). */
  grantStartRun(grantee: iam.IGrantable): iam.Grant {
    this.stateMachine.grantStartExecution(grantee);
    const executions = Stack.of(this).formatArn({
      service: 'states',
      resource: 'execution',
      resourceName: `${this.stateMachine.stateMachineName}:*`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
    const grant = iam.Grant.addToPrincipal({ grantee, actions: ['states:DescribeExecution'], resourceArns: [executions] });
    const principal = principalConstruct(grantee);
    if (principal) {
      acknowledge(principal, {
        [`IAM5[Resource::${nagResource(this, executions)}]`]:
          'Executions of this state machine only; their names (run ids) are chosen at run time',
      });
    }
    return grant;
  }

  /** Runs that failed, timed out or were aborted (Sum, 5 minutes). */
  metricFailedRuns(props?: cloudwatch.MetricOptions): cloudwatch.IMetric {
    return new cloudwatch.MathExpression({
      expression: 'failed + timedOut + aborted',
      usingMetrics: {
        failed: this.stateMachine.metricFailed({ statistic: 'Sum', ...props }),
        timedOut: this.stateMachine.metricTimedOut({ statistic: 'Sum', ...props }),
        aborted: this.stateMachine.metricAborted({ statistic: 'Sum', ...props }),
      },
      label: 'failed batch runs',
      ...(props?.period ? { period: props.period } : {}),
    });
  }

  /** Runs that succeeded, skipped runs included (Sum, 5 minutes). */
  metricSucceededRuns(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stateMachine.metricSucceeded({ statistic: 'Sum', ...props });
  }
}
