/**
 * The read side of the API (API Gateway REST v1 proxy): GET /views (the
 * declared views), GET /views/{name} (batch version N merged with the speed
 * deltas of windows >= its cutoff), GET /status. Parameters are checked by the
 * core (core/query.ts): 400 naming the parameter, 404 for an unknown view.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { clients } from './adapters/clients.ts';
import { type ApiHandler, guarded, HttpError, json, jsonText, MAX_RESPONSE_BYTES, queryParams } from './api/http.ts';
import { exactDocClient, type ReadDeps, type ReadOptions, readView } from './api/read-view.ts';
import { readStatus } from './api/status.ts';
import { type Config, loadConfig } from './config.ts';
import { isQueryError, parseQuery, shapeResponse } from './core/query.ts';
import type { Settings } from './core/settings.ts';
import { iso } from './core/time.ts';
import { findView, type View } from './core/views.ts';
import { matchRoute } from './routes.ts';

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
function describeView(v: View): Record<string, unknown> {
  return {
    name: v.name,
    ...(v.description !== undefined && { description: v.description }),
    ...(v.filter !== undefined && { filter: v.filter }),
    dimensions: v.dimensions,
    grain: v.grain,
    metrics: v.metrics,
  };
}

/** GET /views/{name}: the contract's response for one view. */
export async function queryView(
  deps: QueryDeps,
  name: string,
  params: Record<string, string | undefined>,
): Promise<Record<string, unknown>> {
  const view = findView(deps.views, name);
  if (!view) throw new HttpError(404, `no view named "${name}" (views: ${deps.views.map((v) => v.name).join(', ')})`, 'name');
  const now = (deps.now ?? Date.now)();
  const spec = parseQuery(view, params, now);
  if (isQueryError(spec)) throw new HttpError(400, `${spec.field} ${spec.message}`, spec.field);
  const read = await readView(deps, view, spec.from, spec.to, now, deps.read);
  return {
    view: view.name,
    grain: spec.grain,
    from: iso(spec.from),
    to: iso(spec.to),
    batch: read.pointer && { version: read.pointer.version, cutoff: iso(read.pointer.cutoff) },
    rows: shapeResponse(view, spec, read.batchRows, read.speedRows, read.pointer?.cutoff ?? null),
  };
}

/** Which route an event is for: API Gateway sets `resource`; fall back to matching the path. */
function routeOf(event: APIGatewayProxyEvent): { path: string; params: Record<string, string> } {
  if (event.resource && event.resource !== '/{proxy+}')
    return { path: event.resource, params: { ...(event.pathParameters ?? {}) } as Record<string, string> };
  const m = matchRoute(event.httpMethod, event.path);
  return { path: m?.route.path ?? event.path, params: m?.params ?? {} };
}

export function createQueryHandler(deps: QueryDeps): ApiHandler {
  return guarded(deps.logger, async (event) => {
    const route = routeOf(event);
    if (event.httpMethod !== 'GET') throw new HttpError(405, `${event.httpMethod} is not allowed on ${route.path}`);
    switch (route.path) {
      case '/views':
        return json(200, { views: deps.views.map(describeView) });
      case '/views/{name}': {
        const name = route.params.name;
        if (!name) throw new HttpError(400, 'the view name is missing from the path', 'name');
        const answer = await queryView(deps, name, queryParams(event));
        const text = JSON.stringify(answer);
        const bytes = Buffer.byteLength(text, 'utf8');
        const limit = deps.maxResponseBytes ?? MAX_RESPONSE_BYTES;
        if (bytes > limit) {
          const rows = (answer.rows as unknown[]).length;
          throw new HttpError(
            400,
            `the answer has ${rows} rows (${(bytes / 1e6).toFixed(1)} MB), more than one response may carry (${(limit / 1e6).toFixed(1)} MB): ask for a coarser grain, fewer groupBy dimensions, a dimension filter or a shorter range`,
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

const logger = new Logger({ serviceName: 'tandem-query' });
const config: Config = loadConfig();
const doc = exactDocClient(clients().dynamodb);

export const handler: ApiHandler = createQueryHandler({
  doc,
  get tables() {
    return { speed: config.tables.speed, batchViews: config.tables.batchViews, control: config.tables.control };
  },
  views: config.views,
  settings: config.settings,
  logger,
});
