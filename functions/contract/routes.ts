/**
 * The HTTP API of the contract: which handler serves which route, and which
 * routes need the API key. API Gateway (lib/) and the local HTTP server
 * (local/) are both built from this table, and every API handler finds its
 * route with `resolveRoute`. The bodies of each route are in api.ts.
 */

/** Lambda entry points, relative to the repository root. */
export const HANDLERS = {
  ingest: 'functions/ingest.ts',
  query: 'functions/query.ts',
  batchApi: 'functions/batch-api.ts',
  health: 'functions/health.ts',
  speed: 'functions/speed.ts',
  archive: 'functions/archive.ts',
  batchTask: 'functions/batch-task.ts',
  authorizer: 'functions/authorizer.ts',
} as const;

export type HandlerName = keyof typeof HANDLERS;

export interface Route {
  readonly method: 'GET' | 'POST';
  /** API Gateway resource path, with `{param}` segments. */
  readonly path: string;
  readonly handler: HandlerName;
  /** Needs a valid `x-api-key`. */
  readonly auth: boolean;
}

export const ROUTES: readonly Route[] = [
  { method: 'GET', path: '/health', handler: 'health', auth: false },
  { method: 'POST', path: '/events', handler: 'ingest', auth: true },
  { method: 'GET', path: '/views', handler: 'query', auth: true },
  { method: 'GET', path: '/views/{name}', handler: 'query', auth: true },
  { method: 'GET', path: '/status', handler: 'query', auth: true },
  { method: 'POST', path: '/batch/runs', handler: 'batchApi', auth: true },
  { method: 'GET', path: '/batch/runs/{id}', handler: 'batchApi', auth: true },
  { method: 'POST', path: '/batch/rollback', handler: 'batchApi', auth: true },
];

// The request limits are the event contract's (core/events.ts): the gateway and the handlers enforce the same numbers.
export { MAX_BODY_BYTES, MAX_EVENTS_PER_REQUEST } from '../core/events.ts';

/** What the resolver reads of a request: an API Gateway REST v1 proxy event has all of it. */
export interface RouteRequest {
  readonly httpMethod: string;
  /** The concrete path, e.g. `/views/page_views`. */
  readonly path: string;
  /** API Gateway's resource path (`/views/{name}`); absent (or `/{proxy+}`) in an event built without a gateway. */
  readonly resource?: string | null;
  /** API Gateway's path parameters, read with `resource`. */
  readonly pathParameters?: Readonly<Record<string, string | undefined>> | null;
}

export interface ResolvedRoute {
  /** The resource path the request is for (`/views/{name}`). */
  readonly resource: string;
  readonly params: Record<string, string>;
  /** The route of the request's method at that resource; undefined when the method is not routed there. */
  readonly route: Route | undefined;
  /** Every route at that resource, in table order (the methods a 405 or a preflight names). */
  readonly routes: readonly Route[];
}

const RESOURCES = [...new Set(ROUTES.map((r) => r.path))];

/** The resource a concrete path falls under, with its decoded `{param}` segments (a malformed %-escape throws URIError). */
function matchResource(path: string): { resource: string; params: Record<string, string> } | undefined {
  const parts = path.split('/').filter(Boolean);
  for (const resource of RESOURCES) {
    const want = resource.split('/').filter(Boolean);
    if (want.length !== parts.length) continue;
    const params: Record<string, string> = {};
    const matches = want.every((w, i) => {
      const p = parts[i]!;
      if (w.startsWith('{') && w.endsWith('}')) {
        params[w.slice(1, -1)] = decodeURIComponent(p);
        return true;
      }
      return w === p;
    });
    if (matches) return { resource, params };
  }
  return undefined;
}

/**
 * The one route resolver (API handlers and the local HTTP server): the
 * resource API Gateway names in the event when there is one (with its path
 * parameters), else the resource whose pattern the path matches. Undefined
 * when no resource has that path.
 */
export function resolveRoute(req: RouteRequest): ResolvedRoute | undefined {
  let resource: string;
  let params: Record<string, string>;
  if (req.resource && req.resource !== '/{proxy+}') {
    resource = req.resource;
    params = {};
    for (const [k, v] of Object.entries(req.pathParameters ?? {})) if (v !== undefined) params[k] = v;
  } else {
    const m = matchResource(req.path);
    if (!m) return undefined;
    ({ resource, params } = m);
  }
  const routes = ROUTES.filter((r) => r.path === resource);
  return { resource, params, route: routes.find((r) => r.method === req.httpMethod), routes };
}
