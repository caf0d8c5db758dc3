/**
 * The HTTP contract end to end on the local cloud (startLocalCloud: emulators,
 * pollers, the real handlers behind the local HTTP server): every route, its
 * status codes and error bodies, auth, CORS, gzip; events sent over HTTP show
 * up in queries, before and after a batch run started over HTTP.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { findView } from '../../functions/core/views.ts';
import { type LocalCloud, startLocalCloud } from '../../local/cloud.ts';
import { oracleRows } from '../support/oracle.ts';

const KEY = 'test-key-0123456789';
let cloud: LocalCloud;
let dataDir: string;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'tandem-api-http-'));
  process.env.TANDEM_CUTOFF_MARGIN_SECONDS = '0';
  cloud = await startLocalCloud({
    port: 0,
    demo: false,
    batchEverySeconds: null,
    windowSeconds: 1,
    dataDir,
    apiKey: KEY,
    logger: { info: () => undefined, warn: () => undefined, error: (m, ...x) => console.error(m, ...x) },
  });
});
afterAll(async () => {
  await cloud?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

async function call(
  method: string,
  path: string,
  opts: { body?: unknown; raw?: Buffer | string; headers?: Record<string, string>; key?: string | null } = {},
) {
  const headers: Record<string, string> = { ...(opts.key === null ? {} : { 'x-api-key': opts.key ?? KEY }), ...opts.headers };
  let body: Buffer | string | undefined = opts.raw;
  if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    headers['content-type'] ??= 'application/json';
  }
  const r = await fetch(`${cloud.url}${path}`, {
    method,
    headers,
    ...(body !== undefined && { body: typeof body === 'string' ? body : new Uint8Array(body) }),
  });
  const text = await r.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = { notJson: text };
  }
  return { status: r.status, headers: r.headers, body: json };
}

const T0 = Date.now();
const sent: Record<string, unknown>[] = [];
const ev = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  type: 'purchase',
  ts: new Date(T0 - 30 * 60_000).toISOString(),
  country: 'DE',
  amount: 10.25,
  ...extra,
});

describe('HTTP API on the local cloud', () => {
  it('GET /health answers without a key', async () => {
    const r = await call('GET', '/health', { key: null });
    expect(r).toMatchObject({ status: 200, body: { status: 'ok' } });
  });

  it('401 without a key, 403 with a wrong one, JSON bodies', async () => {
    for (const [method, path] of [
      ['GET', '/views'],
      ['POST', '/events'],
      ['GET', '/status'],
      ['GET', '/views/page_views'],
      ['POST', '/batch/runs'],
    ] as const) {
      const none = await call(method, path, { key: null });
      expect(none.status, path).toBe(401);
      expect(typeof none.body.error).toBe('string');
      const wrong = await call(method, path, { key: 'nope' });
      expect(wrong.status, path).toBe(403);
      expect(typeof wrong.body.error).toBe('string');
    }
  });

  it('POST /events: 200, 207, 400, 413, gzip, with CORS headers', async () => {
    const one = await call('POST', '/events', { body: ev('h-1') });
    expect(one).toMatchObject({ status: 200, body: { accepted: 1, rejected: [], ids: ['h-1'] } });
    expect(one.headers.get('access-control-allow-origin')).toBe('*');
    sent.push(ev('h-1'));

    const mixed = await call('POST', '/events', {
      body: { events: [ev('h-2', { country: 'FR', amount: 3 }), ev('h-3', { amount: 'x' }), { ...ev('h-4'), ts: undefined }] },
    });
    expect(mixed.status).toBe(207);
    expect(mixed.body).toMatchObject({
      accepted: 1,
      rejected: [
        { index: 1, field: 'amount' },
        { index: 2, field: 'ts' },
      ],
      ids: ['h-2'],
    });
    sent.push(ev('h-2', { country: 'FR', amount: 3 }));

    const none = await call('POST', '/events', { body: [ev('h-5', { type: '' })] });
    expect(none).toMatchObject({ status: 400, body: { field: 'type', accepted: 0 } });
    const notJson = await call('POST', '/events', { raw: '{nope', headers: { 'content-type': 'application/json' } });
    expect(notJson).toMatchObject({ status: 400, body: { field: 'body' } });

    const tooMany = await call('POST', '/events', { body: Array.from({ length: 501 }, (_, i) => ev(`h-many-${i}`)) });
    expect(tooMany.status).toBe(413);
    const tooBig = await call('POST', '/events', {
      raw: `[${JSON.stringify(ev('h-big'))}${' '.repeat(5 * 1024 * 1024)}]`,
      headers: { 'content-type': 'application/json' },
    });
    expect(tooBig.status).toBe(413);
    expect(typeof tooBig.body.error).toBe('string');
    const bomb = gzipSync(`[${JSON.stringify(ev('h-bomb'))}${' '.repeat(6 * 1024 * 1024)}]`);
    const expands = await call('POST', '/events', {
      raw: bomb,
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
    });
    expect(expands.status).toBe(413);

    const zipped = await call('POST', '/events', {
      raw: gzipSync(JSON.stringify([ev('h-6', { country: 'US', amount: 0.1 })])),
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
    });
    expect(zipped).toMatchObject({ status: 200, body: { accepted: 1 } });
    sent.push(ev('h-6', { country: 'US', amount: 0.1 }));
    // a client retry of h-1: accepted again, counted once
    expect((await call('POST', '/events', { body: ev('h-1') })).status).toBe(200);
  });

  it('CORS preflight, unknown route and wrong method answer JSON', async () => {
    const pre = await fetch(`${cloud.url}/events`, {
      method: 'OPTIONS',
      headers: { origin: 'http://example.com', 'access-control-request-method': 'POST' },
    });
    expect(pre.status).toBeLessThan(300);
    expect(pre.headers.get('access-control-allow-headers')).toContain('x-api-key');
    const nf = await call('GET', '/nowhere');
    expect(nf.status).toBe(404);
    expect(typeof nf.body.error).toBe('string');
    const wm = await call('DELETE', '/views');
    expect([404, 405]).toContain(wm.status);
    expect(typeof wm.body.error).toBe('string');
  });

  it('GET /views and GET /views/{name} errors', async () => {
    const views = await call('GET', '/views');
    expect(views.status).toBe(200);
    expect((views.body.views as { name: string }[]).map((v) => v.name)).toEqual(DEMO_VIEWS.map((v) => v.name));
    expect(await call('GET', '/views/nope')).toMatchObject({ status: 404 });
    expect(await call('GET', '/views/revenue_by_country?grain=minute')).toMatchObject({ status: 400, body: { field: 'grain' } });
    expect(await call('GET', '/views/revenue_by_country?from=soon')).toMatchObject({ status: 400, body: { field: 'from' } });
    expect(await call('GET', '/views/revenue_by_country?groupBy=city')).toMatchObject({ status: 400, body: { field: 'groupBy' } });
    expect(await call('GET', '/views/revenue_by_country?city=x')).toMatchObject({ status: 400, body: { field: 'city' } });
  });

  it('events sent over HTTP are counted once, before and after a batch run started over HTTP', async () => {
    const view = findView(DEMO_VIEWS, 'revenue_by_country')!;
    const to = Math.ceil(Date.now() / 3_600_000) * 3_600_000;
    const spec = { from: to - 24 * 3_600_000, to, grain: 'hour' as const, groupBy: ['country'] };
    await cloud.idle(['speed']);
    const before = await call('GET', '/views/revenue_by_country');
    expect(before.status).toBe(200);
    expect(before.body.batch).toBeNull();
    expect(before.body.rows).toEqual(oracleRows(view, sent, spec));

    await cloud.idle();
    const started = await call('POST', '/batch/runs');
    expect(started.status).toBe(202);
    const id = String(started.body.id);
    let run: Record<string, unknown> = {};
    for (let i = 0; i < 300; i++) {
      run = (await call('GET', `/batch/runs/${id}`)).body;
      if (run.state !== 'RUNNING') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(run.state).toBe('SUCCEEDED');
    const after = await call('GET', '/views/revenue_by_country');
    expect(after.body.batch).toEqual({ version: run.version, cutoff: run.cutoff });
    expect(after.body.rows).toEqual(oracleRows(view, sent, spec));
    expect(await call('GET', '/batch/runs/run-unknown')).toMatchObject({ status: 404 });

    const status = await call('GET', '/status');
    expect(status.status).toBe(200);
    expect(status.body).toMatchObject({
      batch: { version: run.version, cutoff: run.cutoff },
      lastRun: { id, state: 'SUCCEEDED' },
      windowSeconds: 1,
      poison: { count: 0 },
    });
    expect((status.body.speed as { shards: unknown[] }).shards.length).toBeGreaterThan(0);
    expect((status.body.archive as { shards: unknown[] }).shards.length).toBeGreaterThan(0);
  });
});
