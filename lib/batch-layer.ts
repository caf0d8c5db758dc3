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
import { ArnFormat, Aws, Duration, Fn, RemovalPolicy, Size, Stack } from 'aws-cdk-lib';
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
import { type AthenaOptions, batchStateMachineDefinition } from '../functions/contract/state-machine.ts';
import {
  COMPACT_PREFIX,
  GLUE_COLUMNS,
  GLUE_COMPACT_COLUMNS,
  GLUE_PARQUET_SERDE,
  GLUE_PARTITION_KEYS,
  GLUE_SERDE,
  glueProjectionParameters,
} from '../functions/core/sql.ts';
import { BUCKETS, RAW_PREFIX, SETTINGS_ENV, STREAM, TABLES } from '../functions/resources.ts';
import {
  acknowledge,
  checkDuration,
  checkRange,
  grantReadPrefix,
  grantTableReadWrite,
  grantWritePrefix,
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

/** The last 12 hex digits of the stack id (a UUID new on every stack create): names that must not outlive a create. */
function stackIdSuffix(): string {
  return Fn.select(4, Fn.split('-', Fn.select(2, Fn.split('/', Aws.STACK_ID))));
}

/** Prefix of Athena query results in the results bucket. */
const RESULTS_PREFIX = 'athena/';
/** Name of the Glue table over `raw/`. */
export const RAW_TABLE_NAME = 'raw_events';
/** Name of the Glue table over `compact/` (compacted arrival hours, Parquet: docs/batch-layer.md "Compaction"). */
export const COMPACT_TABLE_NAME = 'raw_events_compact';

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
   * Athena: raw archive bytes a day (gzip JSON as archived, about 60 bytes an event), the input of
   * the bytes-scanned cost model below.
   *
   * @default Size.gibibytes(1) (about 17 M events a day)
   */
  readonly athenaRawBytesPerDay?: Size;
  /**
   * Athena: days of raw history the largest query reads: a rebuild reads all history (an
   * increment only the dedup horizon plus the new hour).
   *
   * @default 30
   */
  readonly athenaHistoryDays?: number;
  /**
   * Athena: bytes one query may scan before Athena cancels it (the workgroup's
   * BytesScannedCutoffPerQuery). The cost model (docs/batch-layer.md, "Athena in AWS"): the largest
   * query is a rebuild over all history, so cutoff = 2 × athenaRawBytesPerDay × athenaHistoryDays
   * (twice the model: room for growth before the alarm, at 80 %, asks for a new model), at least
   * Athena's minimum of 10 MB. A query costs at most cutoff × $5 / TB.
   *
   * @default - 2 × athenaRawBytesPerDay × athenaHistoryDays (60 GiB with their defaults: at most $0.32 a query)
   */
  readonly athenaBytesScannedCutoff?: Size;
  /**
   * Athena: the first arrival day partition projection enumerates (YYYY-MM-DD, `-c projectionStartDay`).
   * Nothing archived before the stack exists, so the deploy day is the natural start; pin it (cdk.json)
   * once deployed: a later start hides older hours from Athena, and a run then fails its completeness check.
   *
   * @default - the day of synthesis (UTC)
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

/** A real calendar day written YYYY-MM-DD. */
function isDay(text: string): boolean {
  const at = new Date(`${text}T00:00:00Z`);
  return /^\d{4}-\d{2}-\d{2}$/.test(text) && !Number.isNaN(at.getTime()) && at.toISOString().slice(0, 10) === text;
}

/** The cost model of the bytes-scanned cutoff (see athenaBytesScannedCutoff), in bytes; unresolved sizes are not allowed. */
export function bytesScannedCutoff(
  props: Pick<BatchLayerProps, 'athenaBytesScannedCutoff' | 'athenaRawBytesPerDay' | 'athenaHistoryDays'>,
): number {
  if (props.athenaBytesScannedCutoff) return props.athenaBytesScannedCutoff.toBytes();
  const perDay = (props.athenaRawBytesPerDay ?? Size.gibibytes(1)).toBytes();
  return Math.max(10_000_000, 2 * perDay * (props.athenaHistoryDays ?? 30));
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
  /** The workgroup's bytes-scanned cutoff per query, bytes (engine `athena` only). */
  readonly bytesScannedCutoff?: number;
  /** The first day partition projection enumerates (engine `athena` only). */
  readonly projectionStartDay?: string;

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
        `batchEvery must be shorter than maxBatchLag (${props.maxBatchLag.toHumanString()}), or the lag alarm fires between runs. ` +
          `Received ${every.toHumanString()}`,
      );
    }
    const flexible = props.batchFlexibleWindow ?? Duration.minutes(1);
    checkDuration(this, 'batchFlexibleWindow', flexible, 60, 86_400);
    checkRange(this, 'batchScheduleRetryAttempts', props.batchScheduleRetryAttempts, 0, 185);
    checkRange(this, 'viewConcurrency', props.viewConcurrency, 1, 40);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const runTimeout = props.batchTimeout ?? Duration.hours(2);
    // At least one task's timeout; at most a Standard execution's year.
    checkDuration(this, 'batchTimeout', runTimeout, TASK_TIMEOUT.toSeconds(), 365 * 86_400);

    this.batchViewsTable = tandemTable(this, 'BatchViewsTable', TABLES.batchViews, { removalPolicy });

    const engineEnv: Record<string, string> = { [SETTINGS_ENV.batchEngine]: this.engine };
    let athenaOptions: AthenaOptions | undefined;
    if (this.engine === 'athena') {
      checkRange(this, 'athenaHistoryDays', props.athenaHistoryDays, 1, 36_500);
      const cutoffBytes = bytesScannedCutoff(props);
      // Athena's minimum is 10 MB.
      if (cutoffBytes < 10_000_000) invalid(this, `athenaBytesScannedCutoff must be at least 10 MB. Received ${cutoffBytes} bytes`);
      const startDay = props.projectionStartDay ?? new Date().toISOString().slice(0, 10);
      if (!isDay(startDay)) invalid(this, `projectionStartDay must be a day YYYY-MM-DD. Received ${JSON.stringify(startDay)}`);
      this.bytesScannedCutoff = cutoffBytes;
      this.projectionStartDay = startDay;
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
      // Always deleted with the stack: it holds only the table definition below, which the next create
      // makes again, and a retained database with this fixed name would fail that create ("already exists").
      const database = new glue.Database(this, 'Database', {
        databaseName,
        description: 'Tandem raw archive',
        removalPolicy: RemovalPolicy.DESTROY,
      });
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
            ...glueProjectionParameters(location, startDay),
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
      const compactLocation = `s3://${props.rawBucket.bucketName}/${COMPACT_PREFIX}`;
      // The same partitions as the raw table, over the Parquet objects of the compacted hours.
      const compactTable = new glue.CfnTable(this, 'CompactTable', {
        catalogId: Stack.of(this).account,
        databaseName,
        tableInput: {
          name: COMPACT_TABLE_NAME,
          description:
            'Compacted arrival hours: the raw lines of an hour a published cutoff covers, as Parquet (functions/batch/compact.ts)',
          tableType: 'EXTERNAL_TABLE',
          parameters: { classification: 'parquet', EXTERNAL: 'TRUE', ...glueProjectionParameters(compactLocation, startDay) },
          partitionKeys: GLUE_PARTITION_KEYS.map((c) => ({ name: c.name, type: c.type })),
          storageDescriptor: {
            location: compactLocation,
            columns: GLUE_COMPACT_COLUMNS.map((c) => ({ name: c.name, type: c.type })),
            inputFormat: GLUE_PARQUET_SERDE.inputFormat,
            outputFormat: GLUE_PARQUET_SERDE.outputFormat,
            serdeInfo: { serializationLibrary: GLUE_PARQUET_SERDE.serializationLibrary, parameters: {} },
          },
        },
      });
      compactTable.node.addDependency(database);
      const workGroup = new athena.CfnWorkGroup(this, 'WorkGroup', {
        name: `${databaseName}_batch`,
        description: 'Tandem batch views',
        // Without it CloudFormation cannot delete a workgroup that ran any query, so `cdk destroy` fails.
        // It deletes the workgroup's query history and saved queries, not the results bucket (removalPolicy).
        recursiveDeleteOption: true,
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
      athenaOptions = {
        workgroup: workGroup.name,
        database: databaseName,
        table: RAW_TABLE_NAME,
        // A definition substitution: the ASL is a plain string (the same the local interpreter runs).
        resultsLocation: `s3://\${ResultsBucket}/${RESULTS_PREFIX}`,
        // Covered hours compacted to Parquet after each publish, and read from the compacted table (docs/batch-layer.md).
        // biome-ignore lint/suspicious/noTemplateCurlyInString: a Step Functions definition substitution, not a JS template
        compaction: { table: COMPACT_TABLE_NAME, rawBucket: '${RawBucket}' },
      };
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
    // Compacted hours (functions/batch/compact.ts) are read by every engine's run; with DuckDB the run also writes them,
    // with Athena it copies the files an UNLOAD staged into place (CopyObject: a write) after deleting an earlier
    // attempt's (functions/batch/athena-compact.ts). Never anything outside compact/.
    grantReadPrefix(props.rawBucket, this.function, COMPACT_PREFIX);
    grantWritePrefix(props.rawBucket, this.function, COMPACT_PREFIX);
    if (this.engine === 'athena') {
      iam.Grant.addToPrincipal({
        grantee: this.function,
        actions: ['s3:DeleteObject'],
        resourceArns: [props.rawBucket.arnForObjects(`${COMPACT_PREFIX}*`)],
      });
    }
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
      [`IAM5[Resource::${nagResource(this, props.rawBucket.arnForObjects(`${COMPACT_PREFIX}*`))}]`]:
        'The batch reads and writes (DuckDB: its own object; Athena: copies of the staged UNLOAD files, replacing an earlier ' +
        "attempt's) the Parquet objects of each compacted arrival hour, keyed by the hour; compact/ prefix only",
    };
    if (this.workGroup && this.database && this.table && this.resultsBucket) {
      const stack = Stack.of(this);
      // The state machine runs the queries; the function reads their statistics and outputs, and the fail
      // step stops the run's queries a cancelled Map iteration left running.
      iam.Grant.addToPrincipal({
        grantee: this.function,
        actions: ['athena:GetQueryExecution', 'athena:ListQueryExecutions', 'athena:BatchGetQueryExecution', 'athena:StopQueryExecution'],
        resourceArns: [stack.formatArn({ service: 'athena', resource: 'workgroup', resourceName: this.workGroup.name })],
      });
      // Query outputs (CSV, UNLOAD parts, the compaction's staged Parquet: the source of its copies) and the archive
      // record kept for the verify step.
      iam.Grant.addToPrincipal({
        grantee: this.function,
        actions: ['s3:GetBucketLocation', 's3:ListBucket'],
        resourceArns: [this.resultsBucket.bucketArn],
      });
      iam.Grant.addToPrincipal({
        grantee: this.function,
        actions: ['s3:GetObject', 's3:PutObject'],
        resourceArns: [this.resultsBucket.arnForObjects(`${RESULTS_PREFIX}*`)],
      });
      ackFn[`IAM5[Resource::${nagResource(this, this.resultsBucket.arnForObjects(`${RESULTS_PREFIX}*`))}]`] =
        'Athena names each result object after its query id; access is limited to the athena/ prefix of the results bucket';
    }
    acknowledge(fn.role, ackFn);

    const stateLogs = new logs.LogGroup(this, 'StateMachineLogs', {
      // The /aws/vendedlogs/ prefix keeps CloudWatch's resource policy small (Step Functions guidance). The
      // name ends with a piece of the stack id, new on every create: the group may be retained, and a fixed
      // name would make the next create (after a failed first one, or `cdk destroy`) fail with "already exists".
      logGroupName: `/aws/vendedlogs/states/${Stack.of(this).stackName}-batch-${stackIdSuffix()}`,
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
            // In the ASL: the `timeout` prop of sfn.StateMachine is ignored with DefinitionBody.fromString.
            timeoutSeconds: runTimeout.toSeconds(),
            ...(athenaOptions ? { athena: athenaOptions } : {}),
          }),
        ),
      ),
      definitionSubstitutions: {
        BatchTaskArn: this.function.functionArn,
        ...(this.resultsBucket ? { ResultsBucket: this.resultsBucket.bucketName, RawBucket: props.rawBucket.bucketName } : {}),
      },
      stateMachineType: sfn.StateMachineType.STANDARD,
      tracingEnabled: true,
      logs: { destination: stateLogs, level: sfn.LogLevel.ALL, includeExecutionData: true },
    });
    this.function.grantInvoke(this.stateMachine);
    const smAck: Record<string, string> = {
      [`IAM5[Resource::${nagResource(this, fn.function.functionArn)}:*]`]:
        'Step Functions invokes the batch-task function by ARN; CDK also allows its versions and aliases (ARN:*)',
      'IAM5[Resource::*]': 'CloudWatch Logs delivery (logs:*LogDelivery*) and X-Ray actions support no resource-level permissions',
    };
    if (this.workGroup && this.database && this.resultsBucket) this.grantQueries(this.stateMachine, props.rawBucket, smAck);
    acknowledge(this.stateMachine.role, smAck);

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

  /**
   * What Athena needs from the principal that runs the queries (the state machine): Athena runs them
   * with the caller's permissions, reading the Glue tables, raw/ and compact/, writing results and UNLOAD
   * output (the views' and the compaction's staged Parquet) under athena/ of the results bucket only: it
   * never writes the raw bucket (the batch task copies staged files into compact/).
   */
  private grantQueries(sm: sfn.StateMachine, rawBucket: s3.IBucket, ack: Record<string, string>): void {
    const stack = Stack.of(this);
    const results = this.resultsBucket!;
    const add = (actions: string[], resourceArns: string[]) => iam.Grant.addToPrincipal({ grantee: sm, actions, resourceArns });
    add(
      ['athena:StartQueryExecution', 'athena:GetQueryExecution', 'athena:StopQueryExecution'],
      [stack.formatArn({ service: 'athena', resource: 'workgroup', resourceName: this.workGroup!.name })],
    );
    add(
      ['glue:GetDatabase', 'glue:GetTable', 'glue:GetPartition', 'glue:GetPartitions'],
      [
        this.database!.catalog.catalogArn,
        this.database!.databaseArn,
        stack.formatArn({ service: 'glue', resource: 'table', resourceName: `${this.database!.databaseName}/${RAW_TABLE_NAME}` }),
        stack.formatArn({ service: 'glue', resource: 'table', resourceName: `${this.database!.databaseName}/${COMPACT_TABLE_NAME}` }),
      ],
    );
    add(['s3:GetBucketLocation', 's3:ListBucket'], [rawBucket.bucketArn]);
    add(['s3:GetObject'], [rawBucket.arnForObjects(`${RAW_PREFIX}*`), rawBucket.arnForObjects(`${COMPACT_PREFIX}*`)]);
    add(['s3:GetBucketLocation', 's3:ListBucket', 's3:ListBucketMultipartUploads'], [results.bucketArn]);
    add(
      ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload', 's3:ListMultipartUploadParts'],
      [results.arnForObjects(`${RESULTS_PREFIX}*`)],
    );
    ack[`IAM5[Resource::${nagResource(this, rawBucket.arnForObjects(`${RAW_PREFIX}*`))}]`] =
      "Athena reads the raw objects of the hours a query covers with the caller's permissions; read-only, raw/ prefix only";
    ack[`IAM5[Resource::${nagResource(this, rawBucket.arnForObjects(`${COMPACT_PREFIX}*`))}]`] =
      "Athena reads the Parquet objects of the compacted hours a query covers with the caller's permissions; read-only, compact/ only";
    ack[`IAM5[Resource::${nagResource(this, results.arnForObjects(`${RESULTS_PREFIX}*`))}]`] =
      'Athena writes results and UNLOAD output named after the query and run; limited to the athena/ prefix of the results bucket';
  }

  /**
   * The largest bytes one query of the workgroup scanned (Athena's ProcessedBytes per workgroup, every
   * query state: a query the cutoff cancels counts too), Maximum over `period` (default 5 minutes).
   */
  metricMaxBytesScanned(props?: cloudwatch.MetricOptions): cloudwatch.MathExpression | undefined {
    if (!this.workGroup) return undefined;
    const period = props?.period ?? Duration.minutes(5);
    const metric = (state: string) =>
      new cloudwatch.Metric({
        namespace: 'AWS/Athena',
        metricName: 'ProcessedBytes',
        dimensionsMap: { WorkGroup: this.workGroup!.name, QueryType: 'DML', QueryState: state },
        statistic: 'Maximum',
        period,
      });
    return new cloudwatch.MathExpression({
      expression: 'MAX([FILL(succeeded, 0), FILL(failed, 0), FILL(cancelled, 0)])',
      usingMetrics: { succeeded: metric('SUCCEEDED'), failed: metric('FAILED'), cancelled: metric('CANCELED') },
      period,
      label: 'bytes scanned by the largest batch query',
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
