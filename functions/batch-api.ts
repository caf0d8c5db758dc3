/**
 * The batch routes of the HTTP API (API Gateway REST v1 proxy events):
 *
 * - `POST /batch/runs` -> 202 `{ id, state }`: starts a run, or answers with the
 *   running one's id. In AWS (TANDEM_STATE_MACHINE_ARN set) a Step Functions
 *   execution named after the run id does the work; without it (the local
 *   cloud) the run goes on in this process after the answer.
 * - `GET /batch/runs/{id}` -> the run: state, stage, version, cutoff, per-view
 *   rows and timings, error; 404 when unknown.
 * - `POST /batch/rollback` `{ "version": N }` -> 200 with the pointer, 404 for an
 *   unknown version, 409 when the rollback rule forbids it (publish.ts) or a run
 *   holds the batch lock.
 *
 * The API key is checked before this handler (local server / authorizer).
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { StartExecutionCommand } from '@aws-sdk/client-sfn';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { z } from 'zod';
import { type Clients, clients } from './adapters/clients.ts';
import { guarded, HttpError, json, readJsonBody } from './api/http.ts';
import {
  acquireLock,
  type Control,
  createRun,
  getRun,
  lockHolder,
  newRunId,
  type Pointer,
  RUN_ID_RE,
  type RunItem,
  releaseLock,
  updateRun,
} from './batch/control.ts';
import { type BatchOptions, errorText, startBatchRun } from './batch/pipeline.ts';
import { rollbackTo } from './batch/publish.ts';
import { type Config, loadConfig } from './config.ts';
import { iso } from './core/time.ts';
import { SETTINGS_ENV } from './resources.ts';
import { matchRoute } from './routes.ts';

const isoOrNull = (ms: number | null | undefined) => (ms === undefined || ms === null ? null : iso(ms));

/** A run item as the API shows it (times ISO-8601). */
export function runResponse(run: RunItem): Record<string, unknown> {
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
    ...(run.note && { note: run.note }),
    ...(run.error && { error: run.error }),
  };
}

export function pointerResponse(p: Pointer): Record<string, unknown> {
  return {
    version: p.version,
    cutoff: iso(p.cutoff),
    publishedAt: iso(p.publishedAt),
    runId: p.runId,
    views: p.views,
    ...(p.rolledBackFrom !== undefined && { rolledBackFrom: p.rolledBackFrom }),
  };
}

const RollbackBody = z.object({
  version: z
    .number({ error: 'version must be a whole number' })
    .int({ error: 'version must be a whole number' })
    .positive({ error: 'version must be positive' }),
});

export interface BatchApiDeps {
  readonly clients: Pick<Clients, 'kinesis' | 'dynamodb' | 'doc' | 's3' | 'athena' | 'sfn'>;
  readonly config: Config;
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Options of in-process runs (tests: engine, hooks, clock). */
  readonly batch?: BatchOptions;
}

export function createBatchApiHandler(deps: () => BatchApiDeps, logger: Logger) {
  return guarded(logger, async (event: APIGatewayProxyEvent) => {
    const d = deps();
    const env = d.env ?? process.env;
    const control: Control = { doc: d.clients.doc, table: d.config.tables.control };
    const route = matchRoute(event.httpMethod, event.path) ?? matchRoute(event.httpMethod, event.resource ?? '');
    if (route?.route.handler !== 'batchApi') throw new HttpError(404, `no route ${event.httpMethod} ${event.path}`);
    const now = d.batch?.now ?? Date.now;

    if (route.route.path === '/batch/runs') {
      const arn = env[SETTINGS_ENV.stateMachineArn];
      if (!arn) {
        const started = await startBatchRun(d.clients, d.config, d.batch);
        started.done.catch((e) => logger.error('batch run failed', { runId: started.runId, error: errorText(e) }));
        return json(202, { id: started.runId, state: 'RUNNING', ...(started.alreadyRunning && { alreadyRunning: true }) });
      }
      const holder = await lockHolder(control, now());
      if (holder) return json(202, { id: holder, state: 'RUNNING', alreadyRunning: true });
      const runId = newRunId(now());
      await createRun(control, runId, now());
      try {
        await d.clients.sfn.send(new StartExecutionCommand({ stateMachineArn: arn, name: runId, input: JSON.stringify({ runId }) }));
      } catch (e) {
        await updateRun(control, runId, {
          state: 'FAILED',
          stage: 'done',
          finishedAt: now(),
          error: `could not start the state machine: ${errorText(e)}`,
        });
        throw e;
      }
      return json(202, { id: runId, state: 'RUNNING' });
    }

    if (route.route.path === '/batch/runs/{id}') {
      const id = route.params.id ?? event.pathParameters?.id ?? '';
      if (!RUN_ID_RE.test(id)) throw new HttpError(400, 'id must be a run id (letters, digits, - or _, at most 80)', 'id');
      const run = await getRun(control, id);
      if (!run) throw new HttpError(404, `there is no batch run ${id}`, 'id');
      return json(200, runResponse(run));
    }

    // POST /batch/rollback
    const body = RollbackBody.safeParse(readJsonBody(event));
    if (!body.success) {
      const issue = body.error.issues[0];
      throw new HttpError(400, issue?.path.length ? issue.message : 'the body must be {"version": <number>}', 'version');
    }
    // The rollback holds the batch lock: a run publishing right after it would silently undo it.
    const lockId = `rollback-${now()}`;
    const lock = await acquireLock(control, lockId, now(), 60);
    if (!lock.acquired) throw new HttpError(409, `batch run ${lock.holder} is going: roll back once it has finished`, 'version');
    let result: Awaited<ReturnType<typeof rollbackTo>>;
    try {
      result = await rollbackTo(
        { control, ddb: d.clients.dynamodb, batchViewsTable: d.config.tables.batchViews, settings: d.config.settings, now },
        body.data.version,
      );
    } finally {
      await releaseLock(control, lockId);
    }
    if (result.status === 'unknown') throw new HttpError(404, result.message, 'version');
    if (result.status === 'conflict') throw new HttpError(409, result.message, 'version');
    return json(200, pointerResponse(result.pointer));
  });
}

const logger = new Logger({ serviceName: 'tandem-batch-api' });
let deps: BatchApiDeps | undefined;

/** The Lambda entry point. */
export const handler = createBatchApiHandler(() => {
  deps ??= { clients: clients(), config: loadConfig() };
  return deps;
}, logger);
