/**
 * The batch run as a Step Functions state machine (Amazon States Language),
 * without any CDK dependency, so the CDK stack (DefinitionBody.fromString)
 * and the local interpreter test run the very same definition (hence its
 * place in functions/contract/, which lib/ may import):
 *
 *   Plan -> Views (Map over the views: View) -> Publish
 *   any failure (after retries) -> MarkFailed -> Failed
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
  return {
    Comment: 'Tandem batch run: plan the cutoff, recompute and load each view as a new version, publish it',
    StartAt: 'Plan',
    States: {
      Plan: {
        ...task({ step: 'plan', 'runId.$': '$$.Execution.Name' }),
        ResultPath: '$.plan',
        Catch: catchAll,
        Next: 'Views',
      },
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
    },
  };
}
