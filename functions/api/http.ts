/**
 * What every API handler shares: JSON responses with CORS headers, the
 * `{ "error", "field"? }` error shape, request bodies (base64, gzip, size
 * limit), and a top-level guard that checks the API key where no authorizer
 * does (functions/api/key-check.ts) and turns an unexpected error into a 500
 * JSON body without a stack. API Gateway REST v1 proxy events in and out, so
 * the same handler runs behind API Gateway and behind the local HTTP server.
 */
import { gunzipSync, inflateSync } from 'node:zlib';
import type { Logger } from '@aws-lambda-powertools/logger';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import type { ErrorBody } from '../contract/api.ts';
import { MAX_BODY_BYTES, ROUTES } from '../contract/routes.ts';
import { SETTINGS_ENV } from '../resources.ts';
import { type KeyCheck, keyCheckFromEnv } from './key-check.ts';

export type ApiHandler = (event: APIGatewayProxyEvent, context: Context) => Promise<APIGatewayProxyResult>;

/**
 * CORS for the dashboard. The key travels in a header (never a cookie), so a
 * wildcard origin exposes nothing a caller without the key could use; a
 * deployment may still pin its dashboard's origin.
 */
export function corsHeaders(env: Readonly<Record<string, string | undefined>> = process.env): Record<string, string> {
  return {
    'access-control-allow-origin': env[SETTINGS_ENV.corsOrigin] || '*',
    'access-control-allow-methods': 'GET,POST,OPTIONS',
    'access-control-allow-headers': 'content-type,content-encoding,x-api-key',
    'access-control-max-age': '600',
  };
}

/** A JSON response. */
export function json(statusCode: number, body: unknown, headers: Record<string, string> = {}): APIGatewayProxyResult {
  return jsonText(statusCode, JSON.stringify(body), headers);
}

/** A JSON response from already serialized text (when the caller had to measure it). */
export function jsonText(statusCode: number, text: string, headers: Record<string, string> = {}): APIGatewayProxyResult {
  return {
    statusCode,
    headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...corsHeaders(), ...headers },
    body: text,
  };
}

/**
 * Largest response body a handler sends. Lambda caps a synchronous response
 * at 6 MB, and the proxy integration carries the body as a JSON string inside
 * JSON, which escapes every quote of it (+10-15 % for query rows): 5 MB of body
 * stays under the cap.
 */
export const MAX_RESPONSE_BYTES = 5_000_000;

/** The contract's error body: `{ "error": message, "field"?: name }`, plus any extra fields. */
export function errorBody<E extends object = Record<never, never>>(message: string, field?: string, extra?: E): ErrorBody & E {
  return { error: message, ...(field === undefined ? {} : { field }), ...extra } as ErrorBody & E;
}

/** A 4xx/5xx answer that a handler throws from anywhere below it; the guard renders it. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly field?: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }

  toResponse(): APIGatewayProxyResult {
    return json(this.statusCode, errorBody(this.message, this.field, this.extra), this.headers);
  }
}

/** A header's value, whatever its case (API Gateway keeps the client's casing). */
export function header(event: Pick<APIGatewayProxyEvent, 'headers'>, name: string): string | undefined {
  const want = name.toLowerCase();
  for (const [k, v] of Object.entries(event.headers ?? {})) if (k.toLowerCase() === want && v !== undefined) return v;
  return undefined;
}

const tooLarge = (what: string) =>
  new HttpError(413, `${what} is larger than ${MAX_BODY_BYTES} bytes (the limit is 5 MB, also after decompression)`, 'body');

/**
 * The request body as bytes: base64 undone, `Content-Encoding: gzip` (or
 * deflate) expanded, and the 5 MB limit enforced both before and after
 * expansion (a small gzip body may expand enormously: zlib stops at the limit
 * instead of inflating it all).
 */
export function readBody(event: Pick<APIGatewayProxyEvent, 'body' | 'isBase64Encoded' | 'headers'>, limit = MAX_BODY_BYTES): Buffer {
  if (event.body === null || event.body === undefined || event.body === '') throw new HttpError(400, 'the request has no body', 'body');
  const raw = event.isBase64Encoded ? Buffer.from(event.body, 'base64') : Buffer.from(event.body, 'utf8');
  if (raw.length > limit) throw tooLarge('the request body');
  const encoding = (header(event, 'content-encoding') ?? 'identity').trim().toLowerCase();
  if (encoding === 'identity' || encoding === '') return raw;
  if (encoding !== 'gzip' && encoding !== 'deflate') {
    throw new HttpError(415, `content-encoding must be gzip, deflate or identity, received "${encoding}"`, 'content-encoding');
  }
  let expanded: Buffer;
  try {
    // One byte past the limit tells "exactly at the limit" from "too large".
    expanded = (encoding === 'gzip' ? gunzipSync : inflateSync)(raw, { maxOutputLength: limit + 1 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError) throw tooLarge('the decompressed body');
    throw new HttpError(400, `the body is not valid ${encoding} data: ${(e as Error).message}`, 'body');
  }
  if (expanded.length > limit) throw tooLarge('the decompressed body');
  return expanded;
}

/** The body parsed as JSON (after readBody); 400 naming `body` when it is not JSON. */
export function readJsonBody(event: Pick<APIGatewayProxyEvent, 'body' | 'isBase64Encoded' | 'headers'>, limit = MAX_BODY_BYTES): unknown {
  const bytes = readBody(event, limit);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new HttpError(400, 'the body is not valid UTF-8 text', 'body');
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, `the body is not valid JSON: ${(e as Error).message}`, 'body');
  }
}

/** True for a route the contract leaves open (`GET /health`): no key is asked for, whatever the environment. */
function isPublic(event: Pick<APIGatewayProxyEvent, 'httpMethod' | 'resource' | 'path'>): boolean {
  const path = event.resource || event.path;
  return ROUTES.some((r) => !r.auth && r.method === event.httpMethod && r.path === path);
}

/**
 * The top-level guard of every API handler: answers CORS preflights, checks the
 * API key when the function is to do it itself (`keyCheck`, by default from
 * TANDEM_API_AUTH: see functions/api/key-check.ts) before any routing, renders
 * HttpErrors, and turns anything else into `500 {"error": "internal error"}`
 * (with the request id, so the log line can be found) while the stack goes to
 * the log only.
 */
export function guarded(logger: Logger, handle: ApiHandler, keyCheck: KeyCheck | undefined = keyCheckFromEnv(logger)): ApiHandler {
  return async (event, context) => {
    if (event.httpMethod === 'OPTIONS') return { statusCode: 204, headers: corsHeaders(), body: '' };
    try {
      const refused = keyCheck && !isPublic(event) ? await keyCheck(event) : undefined;
      if (refused) return json(refused.statusCode, errorBody(refused.error, refused.field));
      return await handle(event, context);
    } catch (e) {
      if (e instanceof HttpError) return e.toResponse();
      logger.error('unhandled error', { error: e as Error, path: event.path, method: event.httpMethod });
      return json(500, errorBody('internal error', undefined, { requestId: context?.awsRequestId }));
    }
  };
}

/** A query-string parameter map with absent values dropped (API Gateway sends null when there are none). */
export function queryParams(event: Pick<APIGatewayProxyEvent, 'queryStringParameters'>): Record<string, string | undefined> {
  return { ...(event.queryStringParameters ?? {}) };
}
