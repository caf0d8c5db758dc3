/**
 * The batch run as a Step Functions state machine (Amazon States Language),
 * without any CDK dependency, so the CDK stack (DefinitionBody.fromString)
 * and the local interpreter test run the very same definition (hence its
 * place in functions/contract/, which lib/ may import):
 *
 *   Plan -> Views (Map over the views: View) -> Publish
 *   any failure (after retries) -> MarkFailed -> Failed
 *
 * With the Athena engine (`athena` option) no Lambda waits on a query: the
 * state machine starts each query, polls it (Wait / GetQueryExecution), starts
 * it again with a fresh ClientRequestToken when Athena calls the failure
 * retryable, and stops it (StopQueryExecution) when polling fails or the
 * query outlives its budget; the rows are loaded from the query's S3 output
 * by a Map over partition groups:
 *
 *   Plan -> Skipped? -> Compile -> Objects query -> Verify
 *        -> Views (Map: view query -> Parts -> Loads (Map over groups: Load) -> Finish) -> Publish
 *        -> Published? -> CompactPlan -> CompactHours (Map: UNLOAD query -> CompactPut) -> CompactRecord -> Done
 *
 * (the compaction states with the `compaction` option: their failures are caught and recorded, never
 * failing or un-publishing the run)
 *
 * Every Task calls functions/batch-task.ts with `{ step, runId, ... }` (see
 * docs/batch-layer.md for the exact input and output of each step). The run
 * id is the execution name, so a schedule that names executions after its
 * window gets duplicate firings absorbed by Step Functions itself, and the API
 * can report the run under the same id.
 */

/** Errors a Lambda task retries: the service's transient ones and throttling. */
const LAMBDA_TRANSIENT = [
  'Lambda.ServiceException',
  'Lambda.AWSLambdaException',
  'Lambda.SdkClientException',
  'Lambda.TooManyRequestsException',
];

export interface StateMachineOptions {
  /** Views computed at once. @default 2 */
  readonly maxConcurrency?: number;
  /** Seconds each task may run (Lambda's own timeout should match). @default 900 */
  readonly taskTimeoutSeconds?: number;
  /**
   * Seconds the whole run may take before Step Functions times it out. Part of the ASL itself:
   * the CDK's `timeout` prop is ignored with DefinitionBody.fromString. @default - no limit
   */
  readonly timeoutSeconds?: number;
  /** Run the SQL on Athena from the state machine itself (engine `athena`). @default - the view steps run the engine (DuckDB) */
  readonly athena?: AthenaOptions;
}

export interface AthenaOptions {
  /** The workgroup (its result location, encryption and bytes-scanned cutoff apply). */
  readonly workgroup: string;
  readonly database: string;
  readonly table: string;
  /** `s3://bucket/prefix/` where UNLOAD writes (a prefix the workgroup's results bucket holds). */
  readonly resultsLocation: string;
  /** Seconds between two polls of a running query. @default 15 */
  readonly pollSeconds?: number;
  /** Seconds a query may run (all its attempts) before the state machine stops it. @default 1800 */
  readonly queryTimeoutSeconds?: number;
  /** Attempts of a query whose failure Athena calls retryable (AthenaError.Retryable), each with a new token. @default 3 */
  readonly queryAttempts?: number;
  /** Load groups loaded at once per view (Lambda tasks writing to DynamoDB). @default 8 */
  readonly loadConcurrency?: number;
  /**
   * Compaction of covered arrival hours into Parquet after a publish (docs/batch-layer.md "Compaction"), and
   * reading them from the Parquet table. @default - none: every hour is read from the raw table
   */
  readonly compaction?: CompactionOptions;
}

export interface CompactionOptions {
  /** The Glue table over compact/ (Parquet, the same partitions as the raw table). */
  readonly table: string;
  /** The raw bucket, whose compact/ prefix receives the files (a definition substitution in the stack). */
  readonly rawBucket: string;
  /** Hours compacted at once (UNLOADs running together). @default 2 */
  readonly concurrency?: number;
}

/** Errors an Athena call retries: throttling and Athena's own transient ones. */
const ATHENA_TRANSIENT = ['Athena.TooManyRequestsException', 'Athena.InternalServerException'];

const at = (base: string, key: string) => (base === '$' ? `$.${key}` : `${base}.${key}`);

/**
 * The states of one Athena query: Start (token and SQL per attempt) -> Wait -> Poll -> Check, with
 * Again (a retryable failure: next attempt), Stop (polling failed or the budget ran out) and the
 * failure exit. The query is read at `query` (`{ name, head, tail }`: the SQL is head + attempt +
 * tail, so each attempt can write to its own UNLOAD location); the loop keeps its state under `base`.
 */
export function athenaQueryStates(
  prefix: string,
  a: AthenaOptions,
  paths: { query: string; base: string },
  next: string,
  failed: Record<string, unknown>,
): Record<string, unknown> {
  const { query, base } = paths;
  const wait = a.pollSeconds ?? 15;
  const maxPolls = Math.max(1, Math.ceil((a.queryTimeoutSeconds ?? 1800) / wait));
  const attempts = a.queryAttempts ?? 3;
  const loop = at(base, 'loop');
  const retry = [{ ErrorEquals: ATHENA_TRANSIENT, IntervalSeconds: 2, MaxAttempts: 5, BackoffRate: 2, JitterStrategy: 'FULL' }];
  const n = (s: string) => `${prefix}${s}`;
  return {
    [n('Start')]: {
      Type: 'Task',
      Resource: 'arn:aws:states:::athena:startQueryExecution',
      Parameters: {
        'QueryString.$': `States.Format('{}{}{}', ${query}.head, ${loop}.attempt, ${query}.tail)`,
        // The same token returns the same execution, FAILED ones too: one token per run, query and attempt.
        'ClientRequestToken.$': `States.Hash(States.Format('{}/{}/{}', $$.Execution.Name, ${query}.name, ${loop}.attempt), 'SHA-256')`,
        WorkGroup: a.workgroup,
        QueryExecutionContext: { Database: a.database },
      },
      ResultSelector: { 'id.$': '$.QueryExecutionId' },
      ResultPath: at(base, 'started'),
      Retry: retry,
      // Nothing runs yet: nothing to stop.
      Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: n('Failed') }],
      Next: n('Wait'),
    },
    [n('Wait')]: { Type: 'Wait', Seconds: wait, Next: n('Poll') },
    [n('Poll')]: {
      Type: 'Task',
      Resource: 'arn:aws:states:::athena:getQueryExecution',
      Parameters: { 'QueryExecutionId.$': `${at(base, 'started')}.id` },
      ResultSelector: {
        'state.$': '$.QueryExecution.Status.State',
        'status.$': '$.QueryExecution.Status',
        'output.$': '$.QueryExecution.ResultConfiguration.OutputLocation',
      },
      ResultPath: at(base, 'execution'),
      Retry: retry,
      Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: n('Stop') }],
      Next: n('Check'),
    },
    [n('Check')]: {
      Type: 'Choice',
      Choices: [
        { Variable: `${at(base, 'execution')}.state`, StringEquals: 'SUCCEEDED', Next: next },
        {
          And: [
            { Variable: `${at(base, 'execution')}.state`, StringEquals: 'FAILED' },
            { Variable: `${at(base, 'execution')}.status.AthenaError.Retryable`, IsPresent: true },
            { Variable: `${at(base, 'execution')}.status.AthenaError.Retryable`, BooleanEquals: true },
            { Variable: `${loop}.attempt`, NumericLessThan: attempts - 1 },
          ],
          Next: n('Again'),
        },
        {
          Or: [
            { Variable: `${at(base, 'execution')}.state`, StringEquals: 'FAILED' },
            { Variable: `${at(base, 'execution')}.state`, StringEquals: 'CANCELLED' },
          ],
          Next: n('QueryFailed'),
        },
      ],
      Default: n('Count'),
    },
    [n('Again')]: {
      Type: 'Pass',
      Parameters: { 'attempt.$': `States.MathAdd(${loop}.attempt, 1)`, 'polls.$': `${loop}.polls` },
      ResultPath: loop,
      Next: n('Start'),
    },
    [n('Count')]: {
      Type: 'Pass',
      Parameters: { 'attempt.$': `${loop}.attempt`, 'polls.$': `States.MathAdd(${loop}.polls, 1)` },
      ResultPath: loop,
      Next: n('Budget'),
    },
    [n('Budget')]: {
      Type: 'Choice',
      Choices: [{ Variable: `${loop}.polls`, NumericGreaterThanEquals: maxPolls, Next: n('TooLong') }],
      Default: n('Wait'),
    },
    [n('TooLong')]: {
      Type: 'Pass',
      Parameters: { Error: 'Athena.QueryTimeout', Cause: `the query ran longer than ${maxPolls * wait} s and was stopped` },
      ResultPath: '$.error',
      Next: n('Stop'),
    },
    [n('QueryFailed')]: {
      Type: 'Pass',
      Parameters: { Error: 'Athena.QueryFailed', 'Cause.$': `States.JsonToString(${at(base, 'execution')}.status)` },
      ResultPath: '$.error',
      Next: n('Failed'),
    },
    [n('Stop')]: {
      Type: 'Task',
      Resource: 'arn:aws:states:::athena:stopQueryExecution',
      Parameters: { 'QueryExecutionId.$': `${at(base, 'started')}.id` },
      ResultPath: null,
      Retry: retry,
      // The run fails with the error that led here, not with the stop's.
      Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.stopError', Next: n('Failed') }],
      Next: n('Failed'),
    },
    [n('Failed')]: failed,
  };
}

/** The ASL definition for a batch-task function ARN (or a `${...}` definition substitution). */
export function batchStateMachineDefinition(taskFunctionArn: string, opts: StateMachineOptions = {}): Record<string, unknown> {
  const retry = [{ ErrorEquals: LAMBDA_TRANSIENT, IntervalSeconds: 2, MaxAttempts: 3, BackoffRate: 2 }];
  const catchAll = [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'MarkFailed' }];
  const task = (parameters: Record<string, unknown>) => ({
    Type: 'Task',
    Resource: taskFunctionArn,
    Parameters: parameters,
    TimeoutSeconds: opts.taskTimeoutSeconds ?? 900,
    Retry: retry,
  });
  if (opts.athena) return athenaDefinition(opts, opts.athena, task, catchAll);
  return {
    Comment: 'Tandem batch run: plan the cutoff, recompute and load each view as a new version, publish it',
    StartAt: 'Plan',
    ...(opts.timeoutSeconds !== undefined ? { TimeoutSeconds: opts.timeoutSeconds } : {}),
    States: {
      Plan: planState(task, catchAll, 'Views'),
      Views: {
        Type: 'Map',
        ItemsPath: '$.plan.views',
        MaxConcurrency: opts.maxConcurrency ?? 2,
        ItemSelector: {
          step: 'view',
          'runId.$': '$.plan.runId',
          'version.$': '$.plan.version',
          'cutoff.$': '$.plan.cutoff',
          'view.$': '$$.Map.Item.Value',
        },
        ItemProcessor: {
          ProcessorConfig: { Mode: 'INLINE' },
          StartAt: 'View',
          States: {
            View: {
              ...task({ 'step.$': '$.step', 'runId.$': '$.runId', 'version.$': '$.version', 'cutoff.$': '$.cutoff', 'view.$': '$.view' }),
              End: true,
            },
          },
        },
        ResultPath: '$.views',
        Catch: catchAll,
        Next: 'Publish',
      },
      ...endStates(task, catchAll),
    },
  };
}

type TaskFn = (parameters: Record<string, unknown>) => Record<string, unknown>;
type CatchList = readonly Record<string, unknown>[];

/** The first state of both definitions. The execution's input rides along: POST /batch/runs puts a rebuild request there. */
function planState(task: TaskFn, catchAll: CatchList, next: string): Record<string, unknown> {
  return {
    ...task({ step: 'plan', 'runId.$': '$$.Execution.Name', 'input.$': '$' }),
    ResultPath: '$.plan',
    Catch: catchAll,
    Next: next,
  };
}

/** Publish, MarkFailed and Failed: the same in both definitions. */
function endStates(task: TaskFn, catchAll: CatchList): Record<string, unknown> {
  return {
    Publish: {
      ...task({
        step: 'publish',
        'runId.$': '$.plan.runId',
        'skipped.$': '$.plan.skipped',
        'version.$': '$.plan.version',
        'cutoff.$': '$.plan.cutoff',
      }),
      ResultPath: '$.publish',
      Catch: catchAll,
      End: true,
    },
    MarkFailed: {
      ...task({ step: 'fail', 'runId.$': '$$.Execution.Name', 'error.$': '$.error' }),
      ResultPath: '$.failed',
      Next: 'Failed',
    },
    Failed: { Type: 'Fail', Error: 'BatchRunFailed', Cause: 'A step of the batch run failed; the run item holds the error' },
  };
}

function athenaDefinition(opts: StateMachineOptions, a: AthenaOptions, task: TaskFn, catchAll: CatchList): Record<string, unknown> {
  const run = { 'runId.$': '$.plan.runId', 'version.$': '$.plan.version', 'cutoff.$': '$.plan.cutoff' };
  return {
    Comment:
      'Tandem batch run on Athena: plan the cutoff, query each view from the state machine, load its output by partition groups, publish',
    StartAt: 'Plan',
    ...(opts.timeoutSeconds !== undefined ? { TimeoutSeconds: opts.timeoutSeconds } : {}),
    States: {
      Plan: planState(task, catchAll, 'Skipped'),
      Skipped: {
        Type: 'Choice',
        Choices: [{ Variable: '$.plan.skipped', BooleanEquals: true, Next: 'Publish' }],
        Default: 'Compile',
      },
      // The SQL comes from the core's compiler (functions/core/sql.ts), inside the Lambda.
      Compile: {
        ...task({
          step: 'compile',
          ...run,
          database: a.database,
          table: a.table,
          resultsLocation: a.resultsLocation,
          ...(a.compaction && { compactTable: a.compaction.table }),
        }),
        ResultPath: '$.compiled',
        Catch: catchAll,
        Next: 'ObjectsInit',
      },
      ObjectsInit: { Type: 'Pass', Result: { loop: { attempt: 0, polls: 0 } }, ResultPath: '$.objects', Next: 'ObjectsStart' },
      ...athenaQueryStates('Objects', a, { query: '$.compiled.objects', base: '$.objects' }, 'Verify', {
        Type: 'Pass',
        Next: 'MarkFailed',
      }),
      Verify: {
        ...task({
          step: 'verify',
          ...run,
          'expected.$': '$.compiled.expected',
          'output.$': '$.objects.execution.output',
          ...(a.compaction && { 'verified.$': '$.compiled.verified' }),
        }),
        ResultPath: null,
        Catch: catchAll,
        Next: 'Views',
      },
      Views: {
        Type: 'Map',
        ItemsPath: '$.compiled.views',
        MaxConcurrency: opts.maxConcurrency ?? 2,
        ItemSelector: {
          ...run,
          'view.$': '$$.Map.Item.Value.view',
          'query.$': '$$.Map.Item.Value.query',
          'location.$': '$$.Map.Item.Value.location',
          loop: { attempt: 0, polls: 0 },
        },
        ItemProcessor: {
          ProcessorConfig: { Mode: 'INLINE' },
          StartAt: 'ViewStart',
          States: {
            ...athenaQueryStates('View', a, { query: '$.query', base: '$' }, 'Parts', {
              Type: 'Fail',
              ErrorPath: '$.error.Error',
              CausePath: '$.error.Cause',
            }),
            // The attempt that succeeded wrote to <location>a<attempt>/.
            Parts: {
              ...task({
                step: 'parts',
                'runId.$': '$.runId',
                'version.$': '$.version',
                'view.$': '$.view',
                'location.$': "States.Format('{}a{}/', $.location, $.loop.attempt)",
                'queryId.$': '$.started.id',
              }),
              ResultPath: '$.parts',
              Next: 'Loads',
            },
            Loads: {
              Type: 'Map',
              ItemsPath: '$.parts.groups',
              MaxConcurrency: a.loadConcurrency ?? 8,
              ItemSelector: {
                step: 'load',
                'runId.$': '$.runId',
                'version.$': '$.version',
                'view.$': '$.view',
                'location.$': '$.parts.location',
                'group.$': '$$.Map.Item.Value',
              },
              ItemProcessor: {
                ProcessorConfig: { Mode: 'INLINE' },
                StartAt: 'Load',
                States: {
                  Load: {
                    ...task({
                      'step.$': '$.step',
                      'runId.$': '$.runId',
                      'version.$': '$.version',
                      'view.$': '$.view',
                      'location.$': '$.location',
                      'group.$': '$.group',
                    }),
                    End: true,
                  },
                },
              },
              ResultPath: '$.loads',
              Next: 'Finish',
            },
            Finish: {
              ...task({
                step: 'finish',
                'runId.$': '$.runId',
                'version.$': '$.version',
                'view.$': '$.view',
                'loads.$': '$.loads',
                'sqlMs.$': '$.parts.sqlMs',
              }),
              End: true,
            },
          },
        },
        ResultPath: '$.views',
        Catch: catchAll,
        Next: 'Publish',
      },
      ...endStates(task, catchAll),
      ...(a.compaction && compactionStates(a, a.compaction, task, catchAll)),
    },
  };
}

/**
 * After a publish: compaction of the covered hours (functions/batch/athena-compact.ts). Publish goes on to
 * `Published`; every failure after it is caught (per hour inside the Map, or the plan or the Map as a whole) and
 * handed to CompactRecord, which writes it on the run item; a failing CompactRecord ends the run all the same.
 */
function compactionStates(a: AthenaOptions, c: CompactionOptions, task: TaskFn, catchAll: CatchList): Record<string, unknown> {
  const { End: _end, ...publish } = endStates(task, catchAll).Publish as Record<string, unknown>;
  return {
    Publish: { ...publish, Next: 'Published' },
    Published: {
      Type: 'Choice',
      Choices: [{ Variable: '$.publish.published', BooleanEquals: true, Next: 'CompactPlan' }],
      Default: 'Done',
    },
    CompactPlan: {
      ...task({
        step: 'compactPlan',
        'runId.$': '$.plan.runId',
        'cutoff.$': '$.plan.cutoff',
        database: a.database,
        table: a.table,
        resultsLocation: a.resultsLocation,
        'verified.$': '$.compiled.verified',
      }),
      ResultSelector: { 'hours.$': '$.hours', 'skipped.$': '$.skipped', results: [], error: null },
      ResultPath: '$.compaction',
      Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.compactionError', Next: 'CompactPlanFailed' }],
      Next: 'CompactHours',
    },
    CompactPlanFailed: {
      Type: 'Pass',
      Parameters: { hours: [], skipped: [], results: [], 'error.$': '$.compactionError' },
      ResultPath: '$.compaction',
      Next: 'CompactRecord',
    },
    CompactHours: {
      Type: 'Map',
      ItemsPath: '$.compaction.hours',
      MaxConcurrency: c.concurrency ?? 2,
      ItemSelector: {
        'runId.$': '$.plan.runId',
        'hour.$': '$$.Map.Item.Value.hour',
        'query.$': '$$.Map.Item.Value.query',
        'location.$': '$$.Map.Item.Value.location',
        'shards.$': '$$.Map.Item.Value.shards',
        loop: { attempt: 0, polls: 0 },
      },
      ItemProcessor: {
        ProcessorConfig: { Mode: 'INLINE' },
        StartAt: 'CompactStart',
        States: {
          ...athenaQueryStates('Compact', a, { query: '$.query', base: '$' }, 'CompactPut', {
            Type: 'Pass',
            Parameters: { 'hour.$': '$.hour', 'error.$': '$.error' },
            End: true,
          }),
          // The attempt that succeeded wrote to <location>a<attempt>/.
          CompactPut: {
            ...task({
              step: 'compactPut',
              'runId.$': '$.runId',
              'hour.$': '$.hour',
              'location.$': "States.Format('{}a{}/', $.location, $.loop.attempt)",
              'shards.$': '$.shards',
              rawBucket: c.rawBucket,
            }),
            Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'CompactFailed' }],
            End: true,
          },
        },
      },
      ResultPath: '$.compaction.results',
      Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.compaction.error', Next: 'CompactRecord' }],
      Next: 'CompactRecord',
    },
    CompactRecord: {
      ...task({
        step: 'compactRecord',
        'runId.$': '$.plan.runId',
        'results.$': '$.compaction.results',
        'skipped.$': '$.compaction.skipped',
        'error.$': '$.compaction.error',
      }),
      ResultPath: '$.compaction.recorded',
      Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.compaction.recordError', Next: 'Done' }],
      Next: 'Done',
    },
    Done: { Type: 'Succeed' },
  };
}
