/**
 * The local cloud's API Gateway: turns each HTTP request into an API Gateway
 * REST (v1) proxy event, routes it with functions/contract/routes.ts (the table the CDK
 * RestApi is built from), checks the API key as API Gateway/the authorizer does
 * in AWS, calls the route's handler, and writes the proxy result back. Also
 * serves the dashboard (web/dist, else web/) at `/`.
 *
 * Errors of the gateway itself (404, 405, 401/403, 413, a failed or malformed
 * handler) are JSON `{"error": ...}`, never HTML or a stack trace.
 */

import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import type { LogSink } from '../functions/adapters/log.ts';
import { type HandlerName, MAX_BODY_BYTES, type ResolvedRoute, type Route, resolveRoute } from '../functions/contract/routes.ts';
import { InvocationTimeoutError, LOCAL_ACCOUNT, REPO_ROOT } from './runtime.ts';

export interface HttpServerOptions {
  /** Port to listen on; 0 picks a free one. @default 3000 */
  readonly port?: number;
  /** @default '127.0.0.1' */
  readonly host?: string;
  /** The valid API keys (`x-api-key`). */
  readonly apiKeys: string | readonly string[];
  /** Also accepts a key this says is valid (keys created with `tandem keys`, kept as hashes in the control table). */
  readonly lookupKey?: (key: string) => Promise<boolean>;
  /** Calls a route's handler (through the local runtime) with the proxy event. */
  readonly invoke: (handler: HandlerName, event: APIGatewayProxyEvent) => Promise<unknown>;
  /** Where the dashboard is looked for, first found wins. @default [web/dist, web] */
  readonly staticDirs?: readonly string[];
  /** Request body limit in bytes. @default MAX_BODY_BYTES */
  readonly maxBodyBytes?: number;
  readonly logger?: LogSink;
}

export interface HttpServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

const CORS = {
  'access-control-allow-origin': '*',
  'access-control-allow-headers': 'content-type,content-encoding,x-api-key',
  'access-control-allow-methods': 'GET,POST,OPTIONS',
  'access-control-max-age': '600',
} as const;

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.woff2': 'font/woff2',
};

/** Bodies API Gateway passes as text; anything else (or any Content-Encoding) arrives base64-encoded. */
export function isTextBody(contentType: string | undefined, contentEncoding: string | undefined): boolean {
  if (contentEncoding && contentEncoding.toLowerCase() !== 'identity') return false;
  if (!contentType) return true;
  const t = contentType.split(';')[0]!.trim().toLowerCase();
  return (
    t.startsWith('text/') ||
    t === 'application/json' ||
    t.endsWith('+json') ||
    t === 'application/xml' ||
    t.endsWith('+xml') ||
    t === 'application/x-www-form-urlencoded' ||
    t === 'application/javascript'
  );
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Constant-time key check: compares fixed-length digests, so neither content nor length leaks through timing. */
export function keyMatches(given: string, valid: readonly Buffer[]): boolean {
  const d = digest(given);
  let ok = false;
  for (const v of valid) ok = timingSafeEqual(d, v) || ok;
  return ok;
}

function requestTime(d: Date): string {
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number) => String(n).padStart(2, '0');
  return (
    `${p(d.getUTCDate())}/${months[d.getUTCMonth()]}/${d.getUTCFullYear()}:` +
    `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`
  );
}

export interface ProxyEventInput {
  readonly route: Route;
  readonly params: Record<string, string>;
  readonly method: string;
  readonly url: URL;
  /** Node's rawHeaders: names as the client sent them, in order. */
  readonly rawHeaders: readonly string[];
  readonly body: Buffer;
  readonly sourceIp: string;
  readonly requestId: string;
  readonly apiKey?: string;
  readonly now?: Date;
}

/** Builds the API Gateway REST v1 proxy event of one request. */
export function toProxyEvent(i: ProxyEventInput): APIGatewayProxyEvent {
  const headers: Record<string, string> = {};
  const multiValueHeaders: Record<string, string[]> = {};
  const lower: Record<string, string> = {};
  for (let k = 0; k + 1 < i.rawHeaders.length; k += 2) {
    const name = i.rawHeaders[k]!;
    const value = i.rawHeaders[k + 1]!;
    headers[name] = value; // API Gateway keeps the last value of a repeated header here
    multiValueHeaders[name] = [...(multiValueHeaders[name] ?? []), value];
    lower[name.toLowerCase()] = value;
  }
  const query: Record<string, string> = {};
  const multiQuery: Record<string, string[]> = {};
  for (const [k, v] of i.url.searchParams) {
    query[k] = v;
    multiQuery[k] = [...(multiQuery[k] ?? []), v];
  }
  const text = isTextBody(lower['content-type'], lower['content-encoding']);
  const now = i.now ?? new Date();
  const hasQuery = Object.keys(query).length > 0;
  return {
    resource: i.route.path,
    path: i.url.pathname,
    httpMethod: i.method,
    headers,
    multiValueHeaders,
    queryStringParameters: hasQuery ? query : null,
    multiValueQueryStringParameters: hasQuery ? multiQuery : null,
    pathParameters: Object.keys(i.params).length > 0 ? i.params : null,
    stageVariables: null,
    body: i.body.length === 0 ? null : text ? i.body.toString('utf8') : i.body.toString('base64'),
    isBase64Encoded: i.body.length > 0 && !text,
    requestContext: {
      accountId: LOCAL_ACCOUNT,
      apiId: 'local',
      authorizer: i.route.auth ? { principalId: 'api-key', integrationLatency: 0 } : null,
      protocol: 'HTTP/1.1',
      httpMethod: i.method,
      identity: {
        accessKey: null,
        accountId: null,
        apiKey: i.apiKey ?? null,
        apiKeyId: i.apiKey ? 'local' : null,
        caller: null,
        clientCert: null,
        cognitoAuthenticationProvider: null,
        cognitoAuthenticationType: null,
        cognitoIdentityId: null,
        cognitoIdentityPoolId: null,
        principalOrgId: null,
        sourceIp: i.sourceIp,
        user: null,
        userAgent: lower['user-agent'] ?? null,
        userArn: null,
      },
      path: `/local${i.url.pathname}`,
      stage: 'local',
      requestId: i.requestId,
      requestTime: requestTime(now),
      requestTimeEpoch: now.getTime(),
      resourceId: 'local',
      resourcePath: i.route.path,
      domainName: lower.host ?? 'localhost',
      extendedRequestId: i.requestId,
    },
  };
}

class BodyTooLarge extends Error {}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((res, rej) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        over = true;
        chunks.length = 0;
        // Keep draining so the client can read our 413; give up on absurd sizes.
        if (size > 4 * limit) req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => (over ? rej(new BodyTooLarge()) : res(Buffer.concat(chunks))));
    req.on('error', (e) => (over ? rej(new BodyTooLarge()) : rej(e)));
    req.on('close', () => over && rej(new BodyTooLarge()));
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...CORS, ...headers });
  res.end(text);
}

/** Checks a handler's result as API Gateway does; undefined when it is not a valid proxy result. */
function asProxyResult(r: unknown): APIGatewayProxyResult | undefined {
  if (r === null || typeof r !== 'object') return undefined;
  const p = r as Record<string, unknown>;
  if (!Number.isInteger(p.statusCode) || (p.statusCode as number) < 100 || (p.statusCode as number) > 599) return undefined;
  if (p.body !== undefined && p.body !== null && typeof p.body !== 'string') return undefined;
  if (p.headers !== undefined && p.headers !== null && typeof p.headers !== 'object') return undefined;
  if (p.multiValueHeaders !== undefined && p.multiValueHeaders !== null && typeof p.multiValueHeaders !== 'object') return undefined;
  return p as unknown as APIGatewayProxyResult;
}

function writeProxyResult(res: ServerResponse, r: APIGatewayProxyResult, requestId: string, head: boolean): void {
  const out: Record<string, string | string[]> = { 'content-type': 'application/json' };
  const set = (k: string, v: string | string[]) => {
    for (const existing of Object.keys(out)) if (existing.toLowerCase() === k.toLowerCase()) delete out[existing];
    out[k] = v;
  };
  for (const [k, v] of Object.entries(r.headers ?? {})) set(k, String(v));
  for (const [k, v] of Object.entries(r.multiValueHeaders ?? {})) set(k, (v as unknown[]).map(String));
  for (const [k, v] of Object.entries(CORS)) if (!Object.keys(out).some((h) => h.toLowerCase() === k)) out[k] = v;
  out['x-amzn-requestid'] = requestId;
  const body = r.body ? (r.isBase64Encoded ? Buffer.from(r.body, 'base64') : Buffer.from(r.body, 'utf8')) : Buffer.alloc(0);
  out['content-length'] = String(body.length);
  res.writeHead(r.statusCode, out);
  res.end(head ? undefined : body);
}

function findStaticRoot(dirs: readonly string[]): string | undefined {
  for (const d of dirs) if (existsSync(join(d, 'index.html'))) return d;
  return undefined;
}

const PLACEHOLDER =
  `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tandem local cloud</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}` +
  `code{background:#eee;padding:0 .3em}</style></head>
<body><h1>Tandem local cloud</h1>
<p>The API is up. The dashboard has not been built yet (no <code>web/dist/index.html</code> or <code>web/index.html</code>).</p>
<ul><li><a href="/health">/health</a></li>` +
  `<li><code>curl -H "x-api-key: $KEY" localhost:PORT/views</code></li><li><code>npx tandem --help</code></li></ul>
</body></html>
`;

function serveStatic(req: IncomingMessage, res: ServerResponse, url: URL, dirs: readonly string[]): boolean {
  const root = findStaticRoot(dirs);
  const head = req.method === 'HEAD';
  if (!root) {
    if (url.pathname !== '/' && url.pathname !== '/index.html') return false;
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(PLACEHOLDER) });
    res.end(head ? undefined : PLACEHOLDER);
    return true;
  }
  let rel: string;
  try {
    rel = decodeURIComponent(url.pathname);
  } catch {
    return false;
  }
  if (rel.split('/').some((p) => p.startsWith('.') && p !== '')) return false; // no dotfiles, no ..
  let file = resolve(root, `.${rel}`);
  if (file !== resolve(root) && !file.startsWith(resolve(root) + sep)) return false;
  if (existsSync(file) && statSync(file).isDirectory()) file = join(file, 'index.html');
  if (!existsSync(file) || !statSync(file).isFile()) return false;
  const size = statSync(file).size;
  res.writeHead(200, {
    'content-type': MIME[extname(file)] ?? 'application/octet-stream',
    'content-length': size,
    'cache-control': 'no-cache',
  });
  if (head) res.end();
  else createReadStream(file).pipe(res);
  return true;
}

/** Starts the HTTP server; resolves once it listens. */
export async function startHttpServer(opts: HttpServerOptions): Promise<HttpServer> {
  const keys = (typeof opts.apiKeys === 'string' ? [opts.apiKeys] : [...opts.apiKeys]).filter((k) => k.length > 0);
  if (keys.length === 0) throw new Error('the HTTP server needs at least one API key');
  const valid = keys.map(digest);
  const limit = opts.maxBodyBytes ?? MAX_BODY_BYTES;
  const staticDirs = opts.staticDirs ?? [join(REPO_ROOT, 'web', 'dist'), join(REPO_ROOT, 'web')];
  const log = opts.logger ?? { info: () => {}, warn: (m, ...x) => console.warn(m, ...x), error: (m, ...x) => console.error(m, ...x) };

  const lookup = async (key: string) => {
    try {
      return (await opts.lookupKey?.(key)) === true;
    } catch (e) {
      log.warn('API key lookup failed; refusing the key', e);
      return false;
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const requestId = randomUUID();
    const method = (req.method ?? 'GET').toUpperCase();
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      return sendJson(res, 400, { error: 'malformed request URL' });
    }
    let resolved: ResolvedRoute | undefined;
    try {
      resolved = resolveRoute({ httpMethod: method === 'HEAD' ? 'GET' : method, path: url.pathname });
    } catch {
      return sendJson(res, 400, { error: 'malformed percent-encoding in the path' });
    }
    const sameResource = resolved?.routes ?? [];
    const match = resolved?.route && { route: resolved.route, params: resolved.params };
    if (method === 'OPTIONS') {
      if (sameResource.length === 0) return sendJson(res, 404, { error: `no route for ${url.pathname}` });
      res.writeHead(204, { ...CORS, allow: [...new Set([...sameResource.map((r) => r.method), 'OPTIONS'])].join(',') });
      return res.end();
    }
    if (!match) {
      if (sameResource.length > 0 && !(method === 'HEAD' && sameResource.some((r) => r.method === 'GET'))) {
        const allow = [...new Set(sameResource.map((r) => r.method))].join(',');
        return sendJson(res, 405, { error: `method ${method} is not allowed on ${url.pathname} (allowed: ${allow})` }, { allow });
      }
      if ((method === 'GET' || method === 'HEAD') && serveStatic(req, res, url, staticDirs)) return;
      return sendJson(res, 404, { error: `no route for ${method} ${url.pathname}` });
    }
    const { route, params } = match;
    let apiKey: string | undefined;
    if (route.auth) {
      const given = req.headers['x-api-key'];
      apiKey = Array.isArray(given) ? given[0] : given;
      if (!apiKey) return sendJson(res, 401, { error: 'missing API key: send it in the x-api-key header' });
      if (!keyMatches(apiKey, valid) && !(await lookup(apiKey))) return sendJson(res, 403, { error: 'invalid API key (x-api-key)' });
    }
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      req.resume();
      return sendJson(res, 413, { error: `request body is larger than ${limit} bytes`, field: 'body' }, { connection: 'close' });
    }
    let body: Buffer;
    try {
      body = await readBody(req, limit);
    } catch (e) {
      if (e instanceof BodyTooLarge)
        return sendJson(res, 413, { error: `request body is larger than ${limit} bytes`, field: 'body' }, { connection: 'close' });
      throw e;
    }
    const event = toProxyEvent({
      route,
      params,
      method: method === 'HEAD' ? 'GET' : method,
      url,
      rawHeaders: req.rawHeaders,
      body,
      sourceIp: (req.socket.remoteAddress ?? '127.0.0.1').replace(/^::ffff:/, ''),
      requestId,
      ...(apiKey ? { apiKey } : {}),
    });
    let result: unknown;
    try {
      result = await opts.invoke(route.handler, event);
    } catch (e) {
      if (e instanceof InvocationTimeoutError) {
        log.error(`${method} ${url.pathname}: ${route.handler} timed out (${requestId})`);
        return sendJson(res, 504, { error: 'the handler timed out', requestId });
      }
      log.error(`${method} ${url.pathname}: ${route.handler} failed (${requestId})`, e);
      return sendJson(res, 502, { error: 'the handler failed', requestId });
    }
    const proxy = asProxyResult(result);
    if (!proxy) {
      log.error(`${method} ${url.pathname}: ${route.handler} returned a malformed proxy result (${requestId})`);
      return sendJson(res, 502, { error: 'malformed Lambda proxy response', requestId });
    }
    writeProxyResult(res, proxy, requestId, method === 'HEAD');
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((e) => {
      log.error('HTTP server error', e);
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error in the local API gateway' });
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((res, rej) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      rej(e.code === 'EADDRINUSE' ? new Error(`HTTP port ${opts.port ?? 3000} is already in use (choose another with --port)`) : e),
    );
    server.listen(opts.port ?? 3000, opts.host ?? '127.0.0.1', () => res());
  });
  const port = (server.address() as AddressInfo).port;
  const host = opts.host && opts.host !== '0.0.0.0' ? opts.host : '127.0.0.1';
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    close: () =>
      new Promise<void>((res) => {
        server.close(() => res());
        server.closeAllConnections();
      }),
  };
}
