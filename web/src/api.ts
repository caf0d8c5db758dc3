/**
 * The dashboard's only way out: the HTTP contract of DESIGN.md, with the API
 * key in `x-api-key`. Failures come back as an ApiFailure whose `kind` drives
 * what the page shows (ask for the key again, "API down", a message).
 */

/** A view as GET /views lists it. */
export interface ViewInfo {
  readonly name: string;
  readonly description?: string;
  readonly filter?: Readonly<Record<string, string | number | boolean>>;
  readonly dimensions: readonly string[];
  readonly grain: 'minute' | 'hour' | 'day';
  readonly metrics: Readonly<Record<string, { readonly fn: 'count' | 'sum' | 'min' | 'max' | 'avg'; readonly field?: string }>>;
}

/** A cell of a response row: the bucket and dimensions are text, metrics numbers (null when undefined). */
export type Cell = string | number | null;

/** A response row, and the batch/speed split when the API sends it. */
export interface Row {
  readonly [column: string]: Cell | RowParts | undefined;
  readonly parts?: RowParts;
}

/** Per-row split of the merged metrics (`parts=1`, when the API offers it). */
export interface RowParts {
  readonly batch: Readonly<Record<string, number | null>>;
  readonly speed: Readonly<Record<string, number | null>>;
}

export interface QueryAnswer {
  readonly view: string;
  readonly grain: string;
  readonly from: string;
  readonly to: string;
  readonly batch: { readonly version: number; readonly cutoff: string } | null;
  readonly rows: readonly Row[];
}

export interface ShardProgress {
  readonly shard: string;
  readonly arrival?: string;
  readonly records?: number;
  readonly lagMs?: number;
  readonly millisBehindLatest?: number;
  readonly updatedAt?: string;
}

export interface RunInfo {
  readonly id?: string;
  readonly runId?: string;
  readonly state?: string;
  readonly stage?: string;
  readonly startedAt?: string;
  readonly finishedAt?: string;
  readonly durationMs?: number;
  readonly version?: number;
  readonly cutoff?: string;
  readonly error?: string;
  readonly reason?: string;
  readonly views?: Readonly<Record<string, { readonly rows?: number; readonly sqlMs?: number; readonly loadMs?: number }>>;
}

export interface StatusAnswer {
  readonly now?: string;
  readonly batch?: {
    readonly version: number;
    readonly cutoff: string;
    readonly lagSeconds?: number;
    readonly publishedAt?: string;
  } | null;
  readonly lastRun?: RunInfo | null;
  readonly speed?: { readonly shards?: readonly ShardProgress[] };
  readonly archive?: { readonly shards?: readonly ShardProgress[] };
  readonly windowSeconds?: number;
  readonly poison?: { readonly count?: number };
}

export type FailureKind = 'auth' | 'down' | 'bad-request' | 'not-found' | 'server';

export class ApiFailure extends Error {
  constructor(
    readonly kind: FailureKind,
    message: string,
    readonly status = 0,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'ApiFailure';
  }
}

/**
 * Where the API is: `?api=<url>` on the page (remembered for the session), a
 * `<meta name="tandem-api">` set when the static files are deployed next to an
 * API elsewhere, else this page's own origin (the local cloud serves both).
 */
export function apiBase(): string {
  const fromQuery = new URLSearchParams(location.search).get('api');
  if (fromQuery) sessionStorage.setItem('tandem.api', fromQuery);
  const meta = document.querySelector<HTMLMetaElement>('meta[name="tandem-api"]')?.content;
  return (fromQuery ?? sessionStorage.getItem('tandem.api') ?? (meta || location.origin)).replace(/\/+$/, '');
}

export class Api {
  constructor(
    private readonly base: string,
    private readonly key: string,
  ) {}

  private async call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(this.base + path, {
        method,
        headers: {
          'x-api-key': this.key,
          accept: 'application/json',
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        cache: 'no-store',
        signal: AbortSignal.timeout(30_000),
      });
    } catch {
      throw new ApiFailure('down', `The API at ${this.base} cannot be reached.`);
    }
    let data: unknown = null;
    try {
      data = await res.json();
    } catch {
      // A body that is not JSON is reported by status below.
    }
    if (res.ok) return data as T;
    const err = (data ?? {}) as { error?: string; field?: string };
    const message = err.error
      ? err.field && !err.error.includes(err.field)
        ? `${err.field}: ${err.error}`
        : err.error
      : `HTTP ${res.status}`;
    if (res.status === 401 || res.status === 403) throw new ApiFailure('auth', 'The API refused this key.', res.status);
    if (res.status === 404) throw new ApiFailure('not-found', message, res.status, err.field);
    if (res.status >= 400 && res.status < 500) throw new ApiFailure('bad-request', message, res.status, err.field);
    if (res.status === 502 || res.status === 503 || res.status === 504)
      throw new ApiFailure('down', `The API is unavailable (${res.status}).`, res.status);
    throw new ApiFailure('server', message, res.status);
  }

  async views(): Promise<ViewInfo[]> {
    const body = await this.call<{ views: ViewInfo[] } | ViewInfo[]>('GET', '/views');
    return Array.isArray(body) ? body : body.views;
  }

  query(view: string, params: Readonly<Record<string, string>>): Promise<QueryAnswer> {
    return this.call<QueryAnswer>('GET', `/views/${encodeURIComponent(view)}?${new URLSearchParams(params)}`);
  }

  status(): Promise<StatusAnswer> {
    return this.call<StatusAnswer>('GET', '/status');
  }

  startRun(): Promise<{ id?: string; runId?: string }> {
    return this.call('POST', '/batch/runs', {});
  }

  run(id: string): Promise<RunInfo> {
    return this.call<RunInfo>('GET', `/batch/runs/${encodeURIComponent(id)}`);
  }
}
