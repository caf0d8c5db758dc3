/**
 * The CLI's HTTP client: where the API is (target resolution) and one request
 * function that turns every failure into a message a person can act on. The
 * commands speak only the HTTP contract of docs/api.md through it; the dashboard
 * has its own fetch code.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ErrorBody } from '../functions/contract/api.ts';
import { API_KEY_FILE, DEFAULT_DATA_DIR, readLocalEndpoints } from '../local/endpoints.ts';

// The discovery files' home is local/ (the local cloud writes them); re-exported for the commands.
export { API_KEY_FILE, DEFAULT_DATA_DIR, ENDPOINTS_FILE, type LocalEndpoints, readLocalEndpoints } from '../local/endpoints.ts';

type Env = Readonly<Record<string, string | undefined>>;

/** Where `tandem local` listens unless told otherwise (the contract's default port). */
export const DEFAULT_URL = 'http://localhost:3000';

export interface Target {
  readonly url: string;
  readonly apiKey: string | undefined;
  /** Where the key came from, for error messages: `--api-key`, `TANDEM_API_KEY`, a file path, or none. */
  readonly keySource: string;
}

export interface TargetOptions {
  readonly url?: string | undefined;
  readonly apiKey?: string | undefined;
  readonly dataDir?: string | undefined;
}

/**
 * The API to talk to: `--url`/`--api-key`, else `TANDEM_API_URL`/`TANDEM_API_KEY`,
 * else the local cloud's (the URL a running `tandem local` wrote to
 * `<data dir>/endpoints.json`, else http://localhost:3000, and the key it saved in
 * `<data dir>/api-key`, the data dir being `--data-dir`, `TANDEM_DATA_DIR` or `.tandem`).
 */
export function resolveTarget(opts: TargetOptions, env: Env = process.env, cwd = process.cwd()): Target {
  const url = (opts.url ?? env.TANDEM_API_URL ?? readLocalEndpoints(opts.dataDir, env, cwd)?.api ?? DEFAULT_URL).replace(/\/+$/, '');
  if (opts.apiKey) return { url, apiKey: opts.apiKey, keySource: '--api-key' };
  if (env.TANDEM_API_KEY) return { url, apiKey: env.TANDEM_API_KEY, keySource: 'TANDEM_API_KEY' };
  const file = join(resolve(cwd, opts.dataDir ?? env.TANDEM_DATA_DIR ?? DEFAULT_DATA_DIR), API_KEY_FILE);
  if (existsSync(file)) {
    const key = readFileSync(file, 'utf8').trim();
    if (key) return { url, apiKey: key, keySource: file };
  }
  return { url, apiKey: undefined, keySource: 'none' };
}

/** An answer of the API that is not a success; `body` is its parsed JSON (or text). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The API could not be reached at all (down, wrong URL, timeout). */
export class UnreachableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnreachableError';
  }
}

export interface ApiResponse<T> {
  readonly status: number;
  readonly body: T;
}

export interface RequestOptions {
  readonly query?: Readonly<Record<string, string | undefined>>;
  readonly body?: unknown;
  /** Statuses to hand back instead of throwing (e.g. 207, 400 for POST /events). */
  readonly accept?: readonly number[];
  readonly timeoutMs?: number;
}

/** The `error` text of a contract error body `{"error": "...", "field"?: "..."}`, when there is one. */
export function errorOfBody(body: unknown): string | undefined {
  if (body && typeof body === 'object' && 'error' in body) {
    // The contract's error body (ErrorBody), checked: a proxy in between may answer anything.
    const { error, field } = body as { [K in keyof ErrorBody]?: unknown };
    if (typeof error === 'string') return typeof field === 'string' && !error.includes(field) ? `${field}: ${error}` : error;
  }
  if (body && typeof body === 'object' && 'message' in body && typeof (body as { message: unknown }).message === 'string') {
    return (body as { message: string }).message;
  }
  return undefined;
}

export class ApiClient {
  constructor(readonly target: Target) {}

  async request<T>(method: 'GET' | 'POST', path: string, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
    const url = new URL(this.target.url + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.target.apiKey) headers['x-api-key'] = this.target.apiKey;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers,
        ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
        signal: AbortSignal.timeout(opts.timeoutMs ?? 60_000),
      });
    } catch (e) {
      throw new UnreachableError(unreachableMessage(this.target.url, e));
    }
    const text = await res.text();
    let body: unknown = text;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      // Not JSON (a proxy's HTML error page, say): keep the text for the message.
    }
    if (res.ok || opts.accept?.includes(res.status)) return { status: res.status, body: body as T };
    throw new ApiError(res.status, body, this.failureMessage(method, path, res.status, body));
  }

  get<T>(path: string, opts?: RequestOptions): Promise<ApiResponse<T>> {
    return this.request<T>('GET', path, opts);
  }

  post<T>(path: string, body: unknown, opts?: RequestOptions): Promise<ApiResponse<T>> {
    return this.request<T>('POST', path, { ...opts, body });
  }

  private failureMessage(method: string, path: string, status: number, body: unknown): string {
    const detail = errorOfBody(body) ?? (typeof body === 'string' && body.length < 200 ? body : '');
    if (status === 401 || status === 403) {
      const how =
        this.target.keySource === 'none'
          ? 'no API key was found: pass --api-key, set TANDEM_API_KEY, or start `tandem local`, which saves its key in .tandem/api-key'
          : `the API key from ${this.target.keySource} was refused: pass the key \`tandem local\` printed with --api-key or TANDEM_API_KEY`;
      return `${status} from ${method} ${path}: ${how}`;
    }
    return `${status} from ${method} ${path}${detail ? `: ${detail}` : ''}`;
  }
}

function unreachableMessage(url: string, e: unknown): string {
  const err = e as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return `the Tandem API at ${url} did not answer in time`;
  const why = err.cause?.code ?? err.cause?.message ?? err.message ?? String(e);
  return `cannot reach the Tandem API at ${url} (${why}): is \`tandem local\` running, or is --url / TANDEM_API_URL right?`;
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
