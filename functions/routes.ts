/**
 * The HTTP API of the contract: which handler serves which route, and which
 * routes need the API key. API Gateway (lib/) and the local HTTP server
 * (local/) are both built from this table.
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

/** Largest request body accepted (the contract: 5 MB), also after gzip decoding. */
export const MAX_BODY_BYTES = 5 * 1024 * 1024;
/** Most events in one POST /events. */
export const MAX_EVENTS_PER_REQUEST = 500;

/** Matches a concrete path against the route table; returns the route and its path parameters. */
export function matchRoute(method: string, path: string): { route: Route; params: Record<string, string> } | undefined {
  const parts = path.split('/').filter(Boolean);
  for (const route of ROUTES) {
    if (route.method !== method) continue;
    const want = route.path.split('/').filter(Boolean);
    if (want.length !== parts.length) continue;
    const params: Record<string, string> = {};
    if (
      want.every((w, i) => {
        const p = parts[i]!;
        if (w.startsWith('{') && w.endsWith('}')) {
          params[w.slice(1, -1)] = decodeURIComponent(p);
          return true;
        }
        return w === p;
      })
    )
      return { route, params };
  }
  return undefined;
}
