/**
 * The read side of the API (API Gateway REST v1 proxy): GET /views (the
 * declared views), GET /views/{name} (batch version N merged with the speed
 * items of windows >= its cutoff), GET /status. Parameters are checked by the
 * core (core/query.ts), which also orders and limits the rows (`orderBy`, `limit`):
 * 400 naming the parameter, 404 for an unknown view.
 */
import type { Logger } from '@aws-lambda-powertools/logger';
import type { QueryAnswer, QueryRow, ViewInfo, ViewsAnswer } from '../contract/api.ts';
import { resolveRoute } from '../contract/routes.ts';
import { isQueryError, parseQuery, shapeResponse } from '../core/query.ts';
import type { Settings } from '../core/settings.ts';
import { iso } from '../core/time.ts';
import { findView, type View } from '../core/views.ts';
import { type ApiHandler, guarded, HttpError, json, jsonText, MAX_RESPONSE_BYTES, queryParams } from './http.ts';
import { type ReadDeps, type ReadOptions, readView } from './read-view.ts';
import { readStatus } from './status.ts';

export interface QueryDeps extends Omit<ReadDeps, 'settings'> {
  readonly views: readonly View[];
  readonly settings: Settings;
  readonly logger: Logger;
  readonly now?: () => number;
  /** Read options (benchmarks: a batch-only read of the same range). */
  readonly read?: ReadOptions;
  /** @default MAX_RESPONSE_BYTES */
  readonly maxResponseBytes?: number;
}

/** The view as GET /views shows it: the declaration, loadable again with parseViews. */
export function describeView(v: View): ViewInfo {
  return {
    name: v.name,
    ...(v.description !== undefined && { description: v.description }),
    ...(v.filter !== undefined && { filter: v.filter }),
    dimensions: [...v.dimensions],
    grain: v.grain,
    metrics: v.metrics,
  };
}

/** GET /views/{name}: the contract's response for one view. */
export async function queryView(deps: QueryDeps, name: string, params: Record<string, string | undefined>): Promise<QueryAnswer> {
  const view = findView(deps.views, name);
  if (!view) throw new HttpError(404, `no view named "${name}" (views: ${deps.views.map((v) => v.name).join(', ')})`, 'name');
  const now = (deps.now ?? Date.now)();
  const spec = parseQuery(view, params, now);
  if (isQueryError(spec)) throw new HttpError(400, `${spec.field} ${spec.message}`, spec.field);
  // The grain lets the batch part read rollups (read-view.ts batchReads); the speed part stays at the view's grain.
  const read = await readView(deps, view, spec.from, spec.to, now, { ...deps.read, grain: spec.grain, groupBy: spec.groupBy });
  return {
    view: view.name,
    grain: spec.grain,
    from: iso(spec.from),
    to: iso(spec.to),
    batch: read.pointer && { version: read.pointer.version, cutoff: iso(read.pointer.cutoff) },
    // core/query.ts builds each row as the contract's: bucket first, then the dimensions, metrics and parts.
    rows: shapeResponse(view, spec, read.batchRows, read.speedRows, read.pointer?.cutoff ?? null) as QueryRow[],
  };
}

export function createQueryHandler(deps: QueryDeps): ApiHandler {
  return guarded(deps.logger, async (event) => {
    const route = resolveRoute(event);
    const resource = route?.resource ?? event.path;
    if (event.httpMethod !== 'GET') throw new HttpError(405, `${event.httpMethod} is not allowed on ${resource}`);
    switch (route?.route?.handler === 'query' ? resource : undefined) {
      case '/views': {
        const answer: ViewsAnswer = { views: deps.views.map(describeView) };
        return json(200, answer);
      }
      case '/views/{name}': {
        const name = route?.params.name;
        if (!name) throw new HttpError(400, 'the view name is missing from the path', 'name');
        const answer = await queryView(deps, name, queryParams(event));
        const text = JSON.stringify(answer);
        const bytes = Buffer.byteLength(text, 'utf8');
        const limit = deps.maxResponseBytes ?? MAX_RESPONSE_BYTES;
        if (bytes > limit) {
          throw new HttpError(
            400,
            `the answer has ${answer.rows.length} rows (${(bytes / 1e6).toFixed(1)} MB), ` +
              `more than one response may carry (${(limit / 1e6).toFixed(1)} MB): ` +
              `ask for a coarser grain, fewer groupBy dimensions, a dimension filter, a limit per bucket or a shorter range`,
            answer.grain === 'all' ? 'groupBy' : 'grain',
          );
        }
        return jsonText(200, text);
      }
      case '/status':
        return json(200, await readStatus(deps, (deps.now ?? Date.now)()));
      default:
        throw new HttpError(404, `no route ${event.httpMethod} ${event.path}`);
    }
  });
}
