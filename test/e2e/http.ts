/**
 * The suite's only way to the system: HTTP requests to the target, and every
 * answer checked against the schema of functions/contract/api.ts for its route
 * and status (strict schemas: a field the contract does not name fails too).
 */
import { z } from 'zod';
import { API, ErrorBodySchema, type RouteKey } from '../../functions/contract/api.ts';
import type { E2eTarget } from './target.ts';

export interface Answer {
  readonly status: number;
  readonly headers: Headers;
  /** The parsed JSON body (`undefined` for an empty one). */
  readonly body: unknown;
  readonly text: string;
}

export interface RequestOptions {
  /** Serialized as JSON with `content-type: application/json`. */
  readonly json?: unknown;
  /** Sent as is (set the content type in `headers`). */
  readonly raw?: string | Uint8Array;
  readonly headers?: Readonly<Record<string, string>>;
  /** The key to send: the target's by default, `null` for none. */
  readonly key?: string | null;
}

// A request slower than this is a failure of the target, not something to wait for.
const REQUEST_TIMEOUT_MS = 60_000;

export function client(target: E2eTarget) {
  async function request(method: 'GET' | 'POST' | 'OPTIONS', path: string, opts: RequestOptions = {}): Promise<Answer> {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    const key = opts.key === undefined ? target.key : opts.key;
    if (key !== null) headers['x-api-key'] = key;
    let body: string | Uint8Array | undefined = opts.raw;
    if (opts.json !== undefined) {
      body = JSON.stringify(opts.json);
      headers['content-type'] ??= 'application/json';
    }
    const r = await fetch(`${target.url}${path}`, {
      method,
      headers,
      ...(body !== undefined && { body: typeof body === 'string' ? body : new Uint8Array(body) }),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const text = await r.text();
    let parsed: unknown;
    if (text !== '') {
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new Error(`${method} ${path} answered ${r.status} with a body that is not JSON: ${text.slice(0, 500)}`);
      }
    }
    return { status: r.status, headers: r.headers, body: parsed, text };
  }

  return { request };
}

type Responses<R extends RouteKey> = (typeof API)[R]['responses'];
type Documented<R extends RouteKey> = keyof Responses<R> & number;
type Body<R extends RouteKey, S extends number> =
  S extends Documented<R> ? (Responses<R>[S] extends z.ZodType ? z.output<Responses<R>[S]> : never) : z.output<typeof ErrorBodySchema>;

/**
 * Checks that `answer` has the status `want` and a body valid for that status of
 * the route (statuses the route table leaves out, such as 401 and 403, carry the
 * error body), and that it carries the CORS header every response has.
 */
export function expectAnswer<R extends RouteKey, S extends number>(route: R, answer: Answer, want: S): Body<R, S> {
  if (answer.status !== want) {
    throw new Error(`${route}: expected ${want}, received ${answer.status}: ${answer.text.slice(0, 2000)}`);
  }
  if (!answer.headers.get('access-control-allow-origin')) {
    throw new Error(`${route} ${want}: the response has no access-control-allow-origin header`);
  }
  const responses = API[route].responses as Record<number, z.ZodType>;
  const schema = responses[want] ?? ErrorBodySchema;
  const r = schema.safeParse(answer.body);
  if (!r.success) {
    throw new Error(`${route} ${want}: the body does not match the contract (${z.prettifyError(r.error)}): ${answer.text.slice(0, 2000)}`);
  }
  return r.data as Body<R, S>;
}
