/**
 * The dashboard's only way out: the HTTP contract of docs/api.md, with the API
 * key in `x-api-key`. Failures come back as an ApiFailure whose `kind` drives
 * what the page shows (ask for the key again, "API down", a message).
 */

import type {
  ErrorBody,
  QueryAnswer,
  RunAnswer,
  StartRunAnswer,
  StatusAnswer,
  ViewInfo,
  ViewsAnswer,
} from '../../functions/contract/api.ts';

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
    // The contract's error body; a gateway or proxy in between may send something else, or nothing.
    const err = (data ?? {}) as Partial<ErrorBody>;
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
    return (await this.call<ViewsAnswer>('GET', '/views')).views;
  }

  query(view: string, params: Readonly<Record<string, string>>): Promise<QueryAnswer> {
    return this.call<QueryAnswer>('GET', `/views/${encodeURIComponent(view)}?${new URLSearchParams(params)}`);
  }

  status(): Promise<StatusAnswer> {
    return this.call<StatusAnswer>('GET', '/status');
  }

  startRun(): Promise<StartRunAnswer> {
    return this.call<StartRunAnswer>('POST', '/batch/runs', {});
  }

  run(id: string): Promise<RunAnswer> {
    return this.call<RunAnswer>('GET', `/batch/runs/${encodeURIComponent(id)}`);
  }
}
