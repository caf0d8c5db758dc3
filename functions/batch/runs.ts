/**
 * Batch-run control behind the batch routes of the API (functions/api/batch.ts
 * speaks HTTP, this module the batch layer):
 *
 * - start a run, or name the one going. In AWS (TANDEM_STATE_MACHINE_ARN set) a
 *   Step Functions execution named after the run id does the work; without it
 *   (the local cloud) the run goes on in this process after the answer.
 * - a run item as GET /batch/runs/{id} shows it.
 * - roll back to a kept version, holding the batch lock meanwhile.
 */
import { StartExecutionCommand } from '@aws-sdk/client-sfn';
import type { Clients } from '../adapters/clients.ts';
import type { Config } from '../config.ts';
import type { PointerAnswer, RunAnswer, StartRunAnswer, StartRunRequest } from '../contract/api.ts';
import { iso } from '../core/time.ts';
import { SETTINGS_ENV } from '../resources.ts';
import {
  acquireLock,
  type Control,
  createRun,
  getRun,
  lockHolder,
  newRunId,
  type Pointer,
  type RunItem,
  releaseLock,
  updateRun,
} from './control.ts';
import { type BatchOptions, describeError, startBatchRun } from './pipeline.ts';
import { rollbackTo } from './publish.ts';

export interface BatchApiDeps {
  readonly clients: Pick<Clients, 'kinesis' | 'dynamodb' | 'doc' | 's3' | 'athena' | 'sfn'>;
  readonly config: Config;
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Options of in-process runs (tests: engine, hooks, clock). */
  readonly batch?: BatchOptions;
}

/** Where a run that fails after the answer is reported (in-process runs only). */
export interface RunLog {
  error(message: string, extra: Record<string, unknown>): void;
}

/** The input of the Step Functions execution of a run: its id and the request (a rebuild, or one view's). */
export function executionInput(runId: string, request: StartRunRequest = {}): string {
  return JSON.stringify({ runId, ...request });
}

const isoOrNull = (ms: number | null | undefined) => (ms === undefined || ms === null ? null : iso(ms));

/** A run item as the API shows it (times ISO-8601). */
export function runResponse(run: RunItem): RunAnswer {
  return {
    id: run.runId,
    state: run.state,
    stage: run.stage,
    startedAt: isoOrNull(run.startedAt),
    finishedAt: isoOrNull(run.finishedAt),
    version: run.version ?? null,
    cutoff: isoOrNull(run.cutoff),
    previousCutoff: isoOrNull(run.previousCutoff),
    views: run.views ?? {},
    timings: run.timings ?? {},
    ...(run.archive && { archive: run.archive }),
    ...(run.compaction && { compaction: run.compaction }),
    ...(run.note && { note: run.note }),
    ...(run.error && { error: run.error }),
  };
}

export function pointerResponse(p: Pointer): PointerAnswer {
  return {
    version: p.version,
    cutoff: iso(p.cutoff),
    publishedAt: iso(p.publishedAt),
    runId: p.runId,
    views: p.views,
    ...(p.rolledBackFrom !== undefined && { rolledBackFrom: p.rolledBackFrom }),
  };
}

/** The batch-run operations of the API over one deployment's clients and configuration. */
export function batchRuns(d: BatchApiDeps, log: RunLog) {
  const env = d.env ?? process.env;
  const control: Control = { doc: d.clients.doc, table: d.config.tables.control };
  const now = d.batch?.now ?? Date.now;
  return {
    /** `request` is checked already (the view exists). */
    async start(request: StartRunRequest = {}): Promise<StartRunAnswer> {
      const arn = env[SETTINGS_ENV.stateMachineArn];
      if (!arn) {
        const started = await startBatchRun(d.clients, d.config, { ...d.batch, request });
        started.done.catch((e) => log.error('batch run failed', { runId: started.runId, error: describeError(e) }));
        return { id: started.runId, state: 'RUNNING', ...(started.alreadyRunning && { alreadyRunning: true as const }) };
      }
      const holder = await lockHolder(control, now());
      if (holder) return { id: holder, state: 'RUNNING', alreadyRunning: true };
      const runId = newRunId(now());
      await createRun(control, runId, now());
      try {
        await d.clients.sfn.send(new StartExecutionCommand({ stateMachineArn: arn, name: runId, input: executionInput(runId, request) }));
      } catch (e) {
        await updateRun(control, runId, {
          state: 'FAILED',
          stage: 'done',
          finishedAt: now(),
          error: `could not start the state machine: ${describeError(e)}`,
        });
        throw e;
      }
      return { id: runId, state: 'RUNNING' };
    },

    /** The declared view names (a rebuild of one must name one of them). */
    viewNames(): string[] {
      return d.config.views.map((v) => v.name);
    },

    async get(id: string): Promise<RunAnswer | undefined> {
      const run = await getRun(control, id);
      return run && runResponse(run);
    },

    /** The pointer after the rollback; `unknown` version, or `conflict` (the rollback rule, or a run holds the lock). */
    async rollback(version: number) {
      // The rollback holds the batch lock: a run publishing right after it would silently undo it.
      const lockId = `rollback-${now()}`;
      const lock = await acquireLock(control, lockId, now(), 60);
      if (!lock.acquired) {
        return { status: 'conflict' as const, message: `batch run ${lock.holder} is going: roll back once it has finished` };
      }
      let result: Awaited<ReturnType<typeof rollbackTo>>;
      try {
        result = await rollbackTo(
          { control, ddb: d.clients.dynamodb, batchViewsTable: d.config.tables.batchViews, settings: d.config.settings, now },
          version,
        );
      } finally {
        await releaseLock(control, lockId);
      }
      return result.status === 'ok' ? { status: 'ok' as const, pointer: pointerResponse(result.pointer) } : result;
    },
  };
}
