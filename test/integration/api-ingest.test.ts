/**
 * POST /events against the real Kinesis emulator: every status code and
 * rejection of the contract, ids, partition keys, gzip, and PutRecords partial
 * failures injected through a wrapper around the real client.
 */
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KinesisPut } from '../../functions/api/put-events.ts';
import { MAX_BODY_BYTES } from '../../functions/contract/routes.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { createIngestHandler } from '../../functions/ingest.ts';
import { flakyKinesis, lambdaContext, parse, postEvents, readStream, type StreamRecord, silentLogger } from '../support/api.ts';
import { startTestCloud, type TestCloud } from '../support/cloud.ts';

let cloud: TestCloud;
let streamName: string;
let run = 0;

beforeAll(async () => {
  cloud = await startTestCloud({ setProcessEnv: true });
  streamName = cloud.names.TANDEM_STREAM_NAME!;
});
afterAll(async () => {
  await cloud?.stop();
});

const ingest = (kinesis: KinesisPut = cloud.clients.kinesis) =>
  createIngestHandler({ kinesis, streamName, views: DEMO_VIEWS, logger: silentLogger(), put: { baseDelayMs: 5 } });

async function send(body: unknown, kinesis?: KinesisPut, over = {}) {
  return parse(await ingest(kinesis)(postEvents(body, over), lambdaContext()));
}

/** A unique id prefix per test, so tests sharing the stream can find their own records. */
const prefix = () => `t${++run}-${Date.now()}-`;
const stored = async (p: string): Promise<StreamRecord[]> =>
  (await readStream(cloud.clients.kinesis, streamName)).filter((r) => r.partitionKey.startsWith(p));

const ev = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  type: 'page_view',
  ts: '2025-01-01T10:00:00Z',
  page: '/',
  country: 'DE',
  load_ms: 120,
  ...extra,
});

describe('POST /events', () => {
  it('accepts one event: 200, stored with the event id as partition key', async () => {
    const p = prefix();
    const r = await send(ev(`${p}a`));
    expect(r).toEqual({ status: 200, body: { accepted: 1, rejected: [], ids: [`${p}a`] } });
    const recs = await stored(p);
    expect(recs).toHaveLength(1);
    expect(recs[0]!.data).toEqual(ev(`${p}a`));
  });

  it('accepts an array and {"events": [...]}, keeping ts as sent', async () => {
    const p = prefix();
    const a = await send([ev(`${p}1`), ev(`${p}2`, { ts: 1735725600000 })]);
    expect(a.status).toBe(200);
    expect(a.body.accepted).toBe(2);
    const b = await send({ events: [ev(`${p}3`)] });
    expect(b.status).toBe(200);
    const recs = await stored(p);
    expect(recs.map((r) => r.partitionKey).sort()).toEqual([`${p}1`, `${p}2`, `${p}3`]);
    expect(recs.find((r) => r.partitionKey === `${p}2`)!.data).toMatchObject({ ts: 1735725600000 });
  });

  it('assigns ids to events without one and returns them in order', async () => {
    const p = prefix();
    const r = await send([
      { type: 'signup', ts: '2025-01-01T00:00:00Z', plan: 'free' },
      ev(`${p}x`),
      { type: 'signup', ts: 0 + 946684800000 },
    ]);
    expect(r.status).toBe(200);
    const ids = r.body.ids as string[];
    expect(ids).toHaveLength(3);
    expect(ids[1]).toBe(`${p}x`);
    expect(new Set(ids).size).toBe(3);
    const all = await readStream(cloud.clients.kinesis, streamName);
    for (const id of ids) {
      const rec = all.find((x) => x.partitionKey === id);
      expect(rec, id).toBeDefined();
      expect((rec!.data as { id: string }).id).toBe(id);
    }
  });

  it('207 when some are rejected: each rejection names index and field; the rest are stored', async () => {
    const p = prefix();
    const r = await send([
      ev(`${p}ok1`),
      ev(`${p}bad-ts`, { ts: 'yesterday' }),
      { id: `${p}bad-amount`, type: 'purchase', ts: '2025-01-01T00:00:00Z', country: 'FR', amount: 'ten' },
      ev(`${p}nested`, { meta: { a: 1 } }),
      ev(`${p}ok2`),
      { id: `${p}no-type`, ts: '2025-01-01T00:00:00Z' },
      'not an event',
    ]);
    expect(r.status).toBe(207);
    expect(r.body.accepted).toBe(2);
    const rejected = r.body.rejected as { index: number; field: string; message: string }[];
    expect(rejected.map((x) => [x.index, x.field])).toEqual([
      [1, 'ts'],
      [2, 'amount'],
      [3, 'meta'],
      [5, 'type'],
      [6, 'event'],
    ]);
    for (const x of rejected) expect(x.message.length).toBeGreaterThan(3);
    expect((await stored(p)).map((x) => x.partitionKey).sort()).toEqual([`${p}ok1`, `${p}ok2`]);
  });

  it('400 when nothing can be accepted, naming the field', async () => {
    const p = prefix();
    const r = await send([ev(`${p}1`, { ts: 'never' })]);
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ field: 'ts', accepted: 0, rejected: [{ index: 0, field: 'ts' }] });
    expect(typeof r.body.error).toBe('string');
    expect(await stored(p)).toEqual([]);
  });

  it('400 for a body that is not JSON, empty, or not an event container', async () => {
    for (const body of ['{"type": ', '', 'null', '42', '[]', '{"events": 3}']) {
      const r = await send(body);
      expect(r.status, body).toBe(400);
      expect(typeof r.body.error, body).toBe('string');
      expect(typeof r.body.field === 'string' || r.body.field === undefined, body).toBe(true);
    }
    expect((await send('{"type": ')).body.field).toBe('body');
    expect((await send('{"events": 3}')).body.field).toBe('events');
  });

  it('413 for more than 500 events, for more than 5 MB, and for gzip that expands past 5 MB', async () => {
    const p = prefix();
    const many = Array.from({ length: 501 }, (_, i) => ev(`${p}${i}`));
    expect(await send(many)).toMatchObject({ status: 413, body: { field: 'events' } });
    const big = JSON.stringify([ev(`${p}big`, { blob: 'x'.repeat(MAX_BODY_BYTES) })]);
    expect((await send(big)).status).toBe(413);
    const bomb = gzipSync(Buffer.from(`[${JSON.stringify(ev(`${p}z`))}${' '.repeat(MAX_BODY_BYTES)}]`)).toString('base64');
    expect((await send(bomb, undefined, { isBase64Encoded: true, headers: { 'content-encoding': 'gzip' } })).status).toBe(413);
    expect(await stored(p)).toEqual([]);
  });

  it('accepts a gzip body', async () => {
    const p = prefix();
    const body = gzipSync(JSON.stringify([ev(`${p}g1`), ev(`${p}g2`)])).toString('base64');
    const r = await send(body, undefined, { isBase64Encoded: true, headers: { 'Content-Encoding': 'gzip' } });
    expect(r.status).toBe(200);
    expect((await stored(p)).length).toBe(2);
  });

  it('accepts exactly 500 events in one request', async () => {
    const p = prefix();
    const r = await send(Array.from({ length: 500 }, (_, i) => ev(`${p}${i}`)));
    expect(r.status).toBe(200);
    expect(r.body.accepted).toBe(500);
    expect((await stored(p)).length).toBe(500);
  });
});

describe('PutRecords partial failures (wrapper around the real client)', () => {
  it('resends only the failed entries and stores every event once', async () => {
    const p = prefix();
    const events = Array.from({ length: 30 }, (_, i) => ev(`${p}${String(i).padStart(2, '0')}`));
    // Request 0: every third entry fails; request 1: the first of the resent fails again.
    const kinesis = flakyKinesis(cloud.clients.kinesis, (req, pos) => (req === 0 ? pos % 3 === 0 : req === 1 ? pos === 0 : false));
    const r = await send(events, kinesis);
    expect(r.status).toBe(200);
    expect(r.body.accepted).toBe(30);
    const failedFirst = events.filter((_, i) => i % 3 === 0).map((e) => e.id);
    expect(kinesis.requests).toHaveLength(3);
    expect(kinesis.requests[0]).toHaveLength(30);
    expect(kinesis.requests[1]).toEqual(failedFirst);
    expect(kinesis.requests[2]).toEqual([failedFirst[0]]);
    const recs = await stored(p);
    expect(recs.map((x) => x.partitionKey).sort()).toEqual(events.map((e) => e.id).sort());
  });

  it('answers 503 naming the indices that never got stored', async () => {
    const p = prefix();
    const events = [ev(`${p}0`), ev(`${p}stuck`), { type: 'x' }, ev(`${p}3`)];
    const kinesis = flakyKinesis(cloud.clients.kinesis, (_req, _pos, key) => key === `${p}stuck`);
    const r = await send(events, kinesis);
    expect(r.status).toBe(503);
    expect(r.body).toMatchObject({ notStored: [1], accepted: 2, rejected: [{ index: 2, field: 'ts' }] });
    expect(kinesis.requests.length).toBe(5);
    expect(kinesis.requests.slice(1)).toEqual(Array.from({ length: 4 }, () => [`${p}stuck`]));
    expect((await stored(p)).map((x) => x.partitionKey).sort()).toEqual([`${p}0`, `${p}3`]);
    // The client retries the named index with the same id: now stored once.
    const again = await send([events[1]]);
    expect(again.status).toBe(200);
    expect((await stored(p)).filter((x) => x.partitionKey === `${p}stuck`)).toHaveLength(1);
  });

  it('a request that throws is answered 503 for all its events, never 5xx without a body', async () => {
    const p = prefix();
    const kinesis = flakyKinesis(
      cloud.clients.kinesis,
      () => false,
      () => true,
    );
    const r = await send([ev(`${p}a`), ev(`${p}b`)], kinesis);
    expect(r.status).toBe(503);
    expect(r.body.notStored).toEqual([0, 1]);
    expect(r.body.error).toMatch(/could not be stored/);
  });

  it('a PutRecords that outlasts the invocation is abandoned in time: 503 naming its events', async () => {
    const p = prefix();
    const signals: AbortSignal[] = [];
    // Never answers unless aborted, like a stream endpoint that hangs.
    const hanging = {
      send: (_cmd: unknown, options?: { abortSignal?: AbortSignal }) =>
        new Promise((_resolve, reject) => {
          if (!options?.abortSignal) return;
          signals.push(options.abortSignal);
          options.abortSignal.addEventListener('abort', () => reject(Object.assign(new Error('Request aborted'), { name: 'AbortError' })));
        }),
    } as unknown as KinesisPut;
    const r = parse(await ingest(hanging)(postEvents([ev(`${p}a`), ev(`${p}b`)]), lambdaContext(2500)));
    expect(signals).toHaveLength(1);
    expect(signals[0]!.aborted).toBe(true);
    expect(r.status).toBe(503);
    expect(r.body.notStored).toEqual([0, 1]);
  });
});
