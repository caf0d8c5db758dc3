/**
 * The local API gateway over real HTTP, with test handlers: the proxy event it
 * builds (checked with Powertools' own API Gateway schema), the API-key check,
 * the body limit, routing errors, handler failures and the dashboard files.
 */

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { APIGatewayProxyEventSchema } from '@aws-lambda-powertools/parser/schemas';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandlerName } from '../../functions/contract/routes.ts';
import { type HttpServer, keyMatches, startHttpServer } from '../../local/http.ts';
import { wrapHandler } from '../../local/runtime.ts';

const KEY = 'test-key-0123456789';
const seen: APIGatewayProxyEvent[] = [];
let behaviour: 'echo' | 'throw' | 'malformed' | 'sleep' | 'binary' = 'echo';

const fn = wrapHandler(
  async (event: APIGatewayProxyEvent) => {
    seen.push(event);
    if (behaviour === 'throw') throw new Error('secret internals at line 42');
    if (behaviour === 'malformed') return { body: 'no status code' };
    if (behaviour === 'sleep') await new Promise((r) => setTimeout(r, 3000));
    if (behaviour === 'binary')
      return {
        statusCode: 200,
        headers: { 'content-type': 'application/octet-stream' },
        body: Buffer.from([0, 1, 2, 255]).toString('base64'),
        isBase64Encoded: true,
      };
    return {
      statusCode: 200,
      headers: { 'Content-Type': 'application/json', 'x-test': 'one' },
      multiValueHeaders: { 'set-cookie': ['a=1', 'b=2'] },
      body: JSON.stringify({ path: event.path }),
    };
  },
  { name: 'http-test', entry: 'inline', timeoutSeconds: 0.5 },
);

const dirs: string[] = [];
let server: HttpServer;
let bare: HttpServer;
let small: HttpServer;
const invoked: HandlerName[] = [];
const logs: string[] = [];

beforeAll(async () => {
  const web = mkdtempSync(join(tmpdir(), 'http-web-'));
  dirs.push(web);
  mkdirSync(join(web, 'assets'));
  writeFileSync(join(web, 'index.html'), '<!doctype html><title>dash</title>');
  writeFileSync(join(web, 'assets', 'app.js'), 'console.log(1)');
  const invoke = (h: HandlerName, e: APIGatewayProxyEvent) => {
    invoked.push(h);
    return fn.invoke(e);
  };
  const logger = { info: () => {}, warn: (m: string) => logs.push(m), error: (m: string) => logs.push(m) };
  [server, bare, small] = await Promise.all([
    startHttpServer({ port: 0, apiKeys: KEY, invoke, staticDirs: [join(web, 'missing'), web], logger }),
    startHttpServer({ port: 0, apiKeys: [KEY], invoke, staticDirs: [join(web, 'missing')], logger }),
    startHttpServer({ port: 0, apiKeys: KEY, invoke, maxBodyBytes: 1024, logger, lookupKey: async (k) => k === 'made-with-tandem-keys' }),
  ]);
});

afterAll(async () => {
  await Promise.all([server?.close(), bare?.close(), small?.close()]);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const json = async (r: Response) => ({
  status: r.status,
  type: r.headers.get('content-type'),
  body: (await r.json()) as Record<string, unknown>,
});

describe('local API gateway', () => {
  it('builds an API Gateway REST v1 proxy event and writes the proxy result back', async () => {
    behaviour = 'echo';
    seen.length = 0;
    const r = await fetch(`${server.url}/events?a=1&b=x&b=y`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'X-Api-Key': KEY, 'X-Custom': 'v' },
      body: '{"id":"e1","type":"t","ts":1}',
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('x-test')).toBe('one');
    expect(r.headers.getSetCookie()).toEqual(['a=1', 'b=2']);
    expect(await r.json()).toEqual({ path: '/events' });
    const e = seen[0]!;
    expect(APIGatewayProxyEventSchema.safeParse(e).success).toBe(true);
    expect(e).toMatchObject({
      resource: '/events',
      path: '/events',
      httpMethod: 'POST',
      body: '{"id":"e1","type":"t","ts":1}',
      isBase64Encoded: false,
      queryStringParameters: { a: '1', b: 'y' },
      multiValueQueryStringParameters: { a: ['1'], b: ['x', 'y'] },
      pathParameters: null,
      requestContext: { stage: 'local', resourcePath: '/events', httpMethod: 'POST', identity: { sourceIp: '127.0.0.1', apiKey: KEY } },
    });
    // Header names as the client sent them, as API Gateway passes them.
    expect(e.headers['X-Custom']).toBe('v');
    expect(e.multiValueHeaders['X-Custom']).toEqual(['v']);
    expect(r.headers.get('x-amzn-requestid')).toBe(e.requestContext.requestId);
    expect(invoked.at(-1)).toBe('ingest');
  });

  it('passes path parameters decoded, and a gzip body base64-encoded', async () => {
    behaviour = 'echo';
    seen.length = 0;
    await fetch(`${server.url}/views/page%20views`, { headers: { 'x-api-key': KEY } });
    expect(seen[0]).toMatchObject({
      resource: '/views/{name}',
      pathParameters: { name: 'page views' },
      body: null,
      queryStringParameters: null,
    });
    const gz = gzipSync('[{"id":"e1"}]');
    await fetch(`${server.url}/events`, {
      method: 'POST',
      headers: { 'x-api-key': KEY, 'content-type': 'application/json', 'content-encoding': 'gzip' },
      body: gz,
    });
    expect(seen[1]!.isBase64Encoded).toBe(true);
    expect(Buffer.from(seen[1]!.body!, 'base64')).toEqual(gz);
  });

  it('requires the API key on every route but /health: 401 without, 403 wrong, 200 right', async () => {
    behaviour = 'echo';
    const without = await json(await fetch(`${server.url}/views`));
    expect(without).toMatchObject({ status: 401, type: 'application/json' });
    expect(String(without.body.error)).toMatch(/x-api-key/);
    const wrong = await json(await fetch(`${server.url}/views`, { headers: { 'x-api-key': `${KEY}x` } }));
    expect(wrong).toMatchObject({ status: 403, body: { error: expect.stringMatching(/invalid API key/) } });
    expect((await fetch(`${server.url}/views`, { headers: { 'x-api-key': KEY } })).status).toBe(200);
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
    expect(keyMatches(KEY, [Buffer.alloc(32)])).toBe(false);
    // A key created with `tandem keys create` (looked up in the control table) works too.
    expect((await fetch(`${small.url}/views`, { headers: { 'x-api-key': 'made-with-tandem-keys' } })).status).toBe(200);
    expect((await fetch(`${server.url}/views`, { headers: { 'x-api-key': 'made-with-tandem-keys' } })).status).toBe(403);
  });

  it('answers 413 JSON to a body over the limit, declared or streamed', async () => {
    const declared = await json(
      await fetch(`${small.url}/events`, { method: 'POST', headers: { 'x-api-key': KEY }, body: 'x'.repeat(1025) }),
    );
    expect(declared).toMatchObject({ status: 413, type: 'application/json' });
    const stream = new ReadableStream({
      start(c) {
        for (let i = 0; i < 3; i++) c.enqueue(new TextEncoder().encode('y'.repeat(600)));
        c.close();
      },
    });
    const streamed = await fetch(`${small.url}/events`, {
      method: 'POST',
      headers: { 'x-api-key': KEY },
      body: stream,
      duplex: 'half',
    } as RequestInit);
    expect(streamed.status).toBe(413);
    // The real limit of the contract: 5 MB.
    const big = await fetch(`${server.url}/events`, {
      method: 'POST',
      headers: { 'x-api-key': KEY },
      body: 'z'.repeat(5 * 1024 * 1024 + 1),
    });
    expect(big.status).toBe(413);
    expect((await fetch(`${small.url}/events`, { method: 'POST', headers: { 'x-api-key': KEY }, body: 'x'.repeat(1024) })).status).toBe(
      200,
    );
  });

  it('answers unknown routes 404, wrong methods 405, and CORS preflights, all without HTML', async () => {
    const missing = await json(await fetch(`${server.url}/nope`, { headers: { 'x-api-key': KEY } }));
    expect(missing).toMatchObject({ status: 404, type: 'application/json' });
    const postMissing = await json(await fetch(`${server.url}/nope`, { method: 'POST' }));
    expect(postMissing.status).toBe(404);
    const wrong = await fetch(`${server.url}/events`, { method: 'GET', headers: { 'x-api-key': KEY } });
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toBe('POST');
    expect(((await wrong.json()) as { error: string }).error).toMatch(/GET/);
    const pre = await fetch(`${server.url}/events`, {
      method: 'OPTIONS',
      headers: { origin: 'http://x', 'access-control-request-method': 'POST' },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe('*');
    expect(pre.headers.get('access-control-allow-headers')).toContain('x-api-key');
  });

  it('a failing, malformed or timed-out handler gives a JSON 502/504 without internals', async () => {
    behaviour = 'throw';
    const thrown = await fetch(`${server.url}/views`, { headers: { 'x-api-key': KEY } });
    const text = await thrown.text();
    expect(thrown.status).toBe(502);
    expect(text).not.toMatch(/secret internals|at line|\.ts/);
    expect(JSON.parse(text)).toMatchObject({ error: 'the handler failed' });
    expect(logs.at(-1)).toMatch(/query failed/);
    behaviour = 'malformed';
    expect((await json(await fetch(`${server.url}/views`, { headers: { 'x-api-key': KEY } }))).status).toBe(502);
    behaviour = 'sleep';
    expect((await json(await fetch(`${server.url}/views`, { headers: { 'x-api-key': KEY } }))).status).toBe(504);
    behaviour = 'binary';
    const bin = await fetch(`${server.url}/views`, { headers: { 'x-api-key': KEY } });
    expect(Buffer.from(await bin.arrayBuffer())).toEqual(Buffer.from([0, 1, 2, 255]));
    behaviour = 'echo';
  });

  it('names the port when it is taken', async () => {
    await expect(startHttpServer({ port: server.port, apiKeys: KEY, invoke: async () => ({ statusCode: 200 }) })).rejects.toThrow(
      `HTTP port ${server.port} is already in use (choose another with --port)`,
    );
  });

  it('serves the dashboard files, and a placeholder page when there is none', async () => {
    const index = await fetch(`${server.url}/`);
    expect(index.headers.get('content-type')).toMatch(/text\/html/);
    expect(await index.text()).toContain('<title>dash</title>');
    const asset = await fetch(`${server.url}/assets/app.js`);
    expect(asset.headers.get('content-type')).toMatch(/javascript/);
    expect(await asset.text()).toBe('console.log(1)');
    expect((await fetch(`${server.url}/assets/%2e%2e/%2e%2e/package.json`)).status).toBe(404);
    expect((await fetch(`${server.url}/assets/missing.js`)).status).toBe(404);
    const placeholder = await fetch(`${bare.url}/`);
    expect(placeholder.status).toBe(200);
    expect(await placeholder.text()).toContain('Tandem local cloud');
  });
});
