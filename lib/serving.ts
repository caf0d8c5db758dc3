/**
 * The serving layer: the query function (GET /views, /views/{name}, /status)
 * merging batch version N with the speed deltas of windows >= its cutoff, and
 * the batch-API function (POST /batch/runs, GET /batch/runs/{id}, POST
 * /batch/rollback). The query function can read and nothing else.
 */
import { Duration } from 'aws-cdk-lib';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';
import { SETTINGS_ENV, TABLES } from '../functions/resources.ts';
import type { BatchLayer } from './batch-layer.ts';
import { grantTableRead, grantTableReadWrite } from './common.ts';
import { type FunctionDefaults, functionDefaults, TandemFunction } from './function.ts';

export interface ServingProps extends FunctionDefaults {
  /** Speed-layer deltas. */
  readonly speedTable: dynamodb.ITable;
  /** The control table (pointer, runs, checkpoints). */
  readonly controlTable: dynamodb.ITable;
  /** The batch layer (batch-views table, state machine). */
  readonly batch: BatchLayer;
  /** Views and settings variables (lib/environment.ts). */
  readonly environment: Readonly<Record<string, string>>;
  /** Variables of every API function (CORS origin), from the IngestApi. */
  readonly apiEnvironment: Readonly<Record<string, string>>;
  /**
   * Memory of the query function in MB.
   *
   * @default 1024
   */
  readonly queryMemorySize?: number;
}

/** Query and batch-API functions. */
export class Serving extends Construct {
  /** GET /views, GET /views/{name}, GET /status. */
  readonly queryFunction: lambda.Function;
  /** POST /batch/runs, GET /batch/runs/{id}, POST /batch/rollback. */
  readonly batchApiFunction: lambda.Function;

  private readonly tables: readonly dynamodb.ITable[];

  constructor(scope: Construct, id: string, props: ServingProps) {
    super(scope, id);
    const defaults = functionDefaults(props);
    this.tables = [props.speedTable, props.batch.batchViewsTable, props.controlTable];
    this.queryFunction = new TandemFunction(this, 'QueryFunction', {
      ...defaults,
      handler: 'query',
      memorySize: props.queryMemorySize ?? 1024,
      // API Gateway gives up after 29 s.
      timeout: Duration.seconds(29),
      environment: {
        ...props.environment,
        ...props.apiEnvironment,
        [TABLES.speed.env]: props.speedTable.tableName,
        [TABLES.batchViews.env]: props.batch.batchViewsTable.tableName,
        [TABLES.control.env]: props.controlTable.tableName,
      },
    }).function;
    grantTableRead(this.tables, this.queryFunction);

    this.batchApiFunction = new TandemFunction(this, 'BatchApiFunction', {
      ...defaults,
      handler: 'batchApi',
      memorySize: 256,
      timeout: Duration.seconds(29),
      environment: {
        ...props.environment,
        ...props.apiEnvironment,
        [TABLES.control.env]: props.controlTable.tableName,
        // Named because the configuration requires it; POST /batch/rollback only flips the pointer in the control table.
        [TABLES.batchViews.env]: props.batch.batchViewsTable.tableName,
        [SETTINGS_ENV.stateMachineArn]: props.batch.stateMachine.stateMachineArn,
        [SETTINGS_ENV.batchEngine]: props.batch.engine,
      },
    }).function;
    grantTableReadWrite(props.controlTable, this.batchApiFunction);
    props.batch.grantStartRun(this.batchApiFunction);
  }

  /** Lets a principal read what the query function reads (speed, batch-views and control tables), nothing more. */
  grantQuery(grantee: iam.IGrantable): iam.Grant {
    return grantTableRead(this.tables, grantee);
  }

  /** Query function errors (Sum, 5 minutes). */
  metricQueryErrors(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.queryFunction.metricErrors({ statistic: 'Sum', ...props });
  }
}
