/**
 * The batch routes of the HTTP API (API Gateway REST v1 proxy events):
 *
 * - `POST /batch/runs` (body `{}`, none, `{"rebuild": true}` or `{"view": NAME}`) -> 202
 *   `{ id, state }`: starts a run, or answers with the running one's id; 400 naming the field
 *   of an invalid body (`view` for an unknown view).
 * - `GET /batch/runs/{id}` -> the run: state, stage, version, cutoff, per-view
 *   rows and timings, error; 404 when unknown.
 * - `POST /batch/rollback` `{ "version": N }` -> 200 with the pointer, 404 for an
 *   unknown version, 409 when the rollback rule forbids it (batch/publish.ts) or
 *   a run holds the batch lock.
 *
 * The API key is checked before this handler (local server / authorizer). The
 * work is the batch layer's (functions/batch/runs.ts), handed in by the entry
 * point as `BatchRuns`.
 */
import type { Logger } from '@aws-lambda-powertools/logger';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import {
  type PointerAnswer,
  RollbackRequestSchema,
  RUN_ID_RE,
  type RunAnswer,
  type StartRunAnswer,
  type StartRunRequest,
  StartRunRequestSchema,
} from '../contract/api.ts';
import { resolveRoute } from '../contract/routes.ts';
import { type ApiHandler, guarded, HttpError, json, readJsonBody } from './http.ts';

/** What the batch routes need of the batch layer. */
export interface BatchRuns {
  start(request?: StartRunRequest): Promise<StartRunAnswer>;
  /** The declared views' names. */
  viewNames(): readonly string[];
  get(id: string): Promise<RunAnswer | undefined>;
  rollback(
    version: number,
  ): Promise<
    { readonly status: 'ok'; readonly pointer: PointerAnswer } | { readonly status: 'unknown' | 'conflict'; readonly message: string }
  >;
}

/** `runs` is called per request (the entry point builds its clients lazily). */
export function createBatchRunsHandler(runs: () => BatchRuns, logger: Logger): ApiHandler {
  return guarded(logger, async (event: APIGatewayProxyEvent) => {
    const batch = runs();
    const resolved = resolveRoute(event);
    const route = resolved?.route;
    if (!resolved || route?.handler !== 'batchApi') throw new HttpError(404, `no route ${event.httpMethod} ${event.path}`);
    const { params } = resolved;

    if (route.path === '/batch/runs') {
      const request = startRequest(event, batch.viewNames());
      const started = await batch.start(request);
      // A rebuild asked while another run holds the lock would silently not happen: say so instead.
      const asked = request.view !== undefined ? 'view' : request.rebuild ? 'rebuild' : undefined;
      if (started.alreadyRunning && asked) {
        throw new HttpError(409, `batch run ${started.id} is going: ask for the rebuild again once it has finished`, asked);
      }
      return json(202, started);
    }

    if (route.path === '/batch/runs/{id}') {
      const id = params.id ?? '';
      if (!RUN_ID_RE.test(id)) throw new HttpError(400, 'id must be a run id (letters, digits, - or _, at most 80)', 'id');
      const run = await batch.get(id);
      if (!run) throw new HttpError(404, `there is no batch run ${id}`, 'id');
      return json(200, run);
    }

    // POST /batch/rollback
    const body = RollbackRequestSchema.safeParse(readJsonBody(event));
    if (!body.success) {
      const issue = body.error.issues[0];
      throw new HttpError(400, issue?.path.length ? issue.message : 'the body must be {"version": <number>}', 'version');
    }
    const result = await batch.rollback(body.data.version);
    if (result.status !== 'ok') throw new HttpError(result.status === 'unknown' ? 404 : 409, result.message, 'version');
    return json(200, result.pointer);
  });
}

/** The body of POST /batch/runs, checked: none or `{}` is a plain run. */
function startRequest(event: APIGatewayProxyEvent, views: readonly string[]): StartRunRequest {
  const raw = event.body === null || event.body === undefined || event.body === '' ? {} : readJsonBody(event);
  const body = StartRunRequestSchema.safeParse(raw);
  if (!body.success) {
    const issue = body.error.issues[0];
    if (issue?.code === 'unrecognized_keys') {
      const key = issue.keys[0] ?? 'body';
      throw new HttpError(400, `${key} is not a field of this body (it takes "rebuild" or "view")`, key);
    }
    const field = issue?.path.length ? String(issue.path[0]) : 'body';
    throw new HttpError(400, issue?.path.length ? issue.message : 'the body must be {}, {"rebuild": true} or {"view": "<name>"}', field);
  }
  const view = body.data.view;
  if (view !== undefined && !views.includes(view)) {
    throw new HttpError(400, `view must be the name of a view: there is no view named "${view}" (views: ${views.join(', ')})`, 'view');
  }
  return body.data;
}
