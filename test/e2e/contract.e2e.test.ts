/**
 * The end-to-end suite: the HTTP contract (docs/api.md) driven against any
 * target (the local cloud setup.ts starts, LocalStack, AWS), through HTTP only,
 * every answer checked against functions/contract/api.ts. What it sends is its
 * own: ids with a run-unique prefix, a run-unique country and event types, and
 * every query filtered by them, so other traffic on the target (the demo
 * generator, other runs) changes nothing it compares. An oracle of what it sent
 * (the first accepted copy of each id; test/support/oracle.ts, exact decimals)
 * is compared with the merged answers: after the speed layer, after a batch run
 * that covers everything sent, and after more sends on top of that batch.
 *
 * The speed layer lags: a barrier sends marker events of an own type after a
 * round and polls until all of them are counted. Each shard is applied in order
 * (partition key = id, one batch per shard at a time), and 64 markers land on
 * every shard but with a negligible chance, so once the markers are in, so is
 * every earlier send: a duplicate counted twice cannot hide behind a record not
 * yet applied. The queries are then polled until equal (or fail with a diff).
 */
import { randomBytes } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { gzipSync } from 'node:zlib';
import { describe, expect, inject, it } from 'vitest';
import {
  type EventInput,
  EventsRequestSchema,
  type QueryAnswer,
  type RunAnswer,
  type StatusAnswer,
  type ViewInfo,
} from '../../functions/contract/api.ts';
import { type OracleSpec, oracleRows } from '../support/oracle.ts';
import { type Answer, client, expectAnswer } from './http.ts';
import { E2E_ENV } from './target.ts';

const target = inject('e2eTarget');
const { request } = client(target);

const envSeconds = (name: string, fallback: number): number => {
  const n = Number(process.env[name]);
  return (Number.isFinite(n) && n > 0 ? n : fallback) * 1000;
};
const QUERY_TIMEOUT_MS = envSeconds(E2E_ENV.queryTimeout, 60);
// A deployed batch runs Step Functions and Athena, and the archive mapping batches for up to a minute.
const BATCH_TIMEOUT_MS = envSeconds(E2E_ENV.batchTimeout, target.local ? 120 : 900);
const TEST_TIMEOUT_MS = 2 * QUERY_TIMEOUT_MS + BATCH_TIMEOUT_MS + 120_000;

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const iso = (ms: number) => new Date(ms).toISOString();
/** The same instant written with a +02:00 offset. */
const isoPlus2 = (ms: number) => new Date(ms + 2 * HOUR).toISOString().replace('Z', '+02:00');

// ---- what this run owns ---------------------------------------------------------------------------

const RUN = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
const id = (s: string) => `e2e-${RUN}-${s}`;
const COUNTRY = `E2E-${RUN}`;
/** Carried only by a conflicting resend of an id: the first copy wins, so it must never show up. */
const OTHER_COUNTRY = `E2E-${RUN}-resent`;
const SIGNUP = `e2e_${RUN}_signup`;
const MARK = `e2e_${RUN}_mark`;
const MARKS_PER_BARRIER = 64;

const START = Date.now();
// From a day boundary (so `grain=day` rows are whole days) to two hours ahead: every event time of the run falls inside.
const FROM = Math.floor((START - 6 * HOUR) / DAY) * DAY;
const TO = Math.floor(START / HOUR) * HOUR + 2 * HOUR;
const LATE = START - 5 * HOUR;
const LATER = START - 3 * HOUR - 17 * MIN;

type Ev = EventInput & Record<string, string | number | boolean | null>;

const purchase = (
  name: string,
  amount: number | null | undefined,
  ts: string | number,
  extra: Record<string, string | number> = {},
): Ev => ({
  id: id(name),
  type: 'purchase',
  ts,
  country: COUNTRY,
  ...(amount !== undefined && { amount }),
  ...extra,
});
const pageView = (name: string, page: string, loadMs: number | undefined, ts: string | number): Ev => ({
  id: id(name),
  type: 'page_view',
  ts,
  page,
  country: COUNTRY,
  ...(loadMs !== undefined && { load_ms: loadMs }),
});
const signup = (name: string, ts: string | number): Ev => ({
  id: id(name),
  type: SIGNUP,
  ts,
  country: COUNTRY,
  plan: 'pro',
  trial: true,
  score: 1.5,
  ref: null,
});

// ---- the oracle ---------------------------------------------------------------------------------

/** The first accepted copy of each id, in the order accepted. */
const sent = new Map<string, Ev>();
let copiesAccepted = 0;

/** Adds the accepted events of a request (those not rejected, with the ids the answer gives) to the oracle. */
function record(events: readonly Ev[], answer: { ids: string[]; rejected: { index: number }[] }): void {
  const rejected = new Set(answer.rejected.map((r) => r.index));
  const accepted = events.filter((_, i) => !rejected.has(i));
  expect(answer.ids, 'one id per accepted event, in request order').toHaveLength(accepted.length);
  accepted.forEach((e, i) => {
    const given = answer.ids[i]!;
    if (e.id !== undefined) expect(given).toBe(e.id);
    copiesAccepted++;
    if (!sent.has(given)) sent.set(given, { ...e, id: given });
  });
}

/** An exact copy of an event this run sent (and the oracle holds). */
function copyOf(name: string): Ev {
  const e = sent.get(id(name));
  if (!e) throw new Error(`${id(name)} was not accepted before, so there is nothing to copy`);
  return { ...e };
}

/** POST /events expecting 200; a 503 is answered as the contract says: the events at `notStored` again, same ids. */
async function sendAll(events: readonly Ev[]): Promise<void> {
  expect(EventsRequestSchema.safeParse(events).success, 'a valid request').toBe(true);
  let pending = events;
  for (let attempt = 1; ; attempt++) {
    const r = await request('POST', '/events', { json: pending });
    if (r.status === 503 && attempt < 6) {
      const a = expectAnswer('POST /events', r, 503);
      record(pending, a);
      pending = a.notStored.map((i) => pending[i]!);
      await sleep(Number(r.headers.get('retry-after') ?? 1) * 1000);
      continue;
    }
    const a = expectAnswer('POST /events', r, 200);
    expect(a.rejected).toEqual([]);
    record(pending, a);
    return;
  }
}

// ---- queries ------------------------------------------------------------------------------------

const views = new Map<string, ViewInfo>();

function viewOf(name: string): ViewInfo {
  const v = views.get(name);
  if (!v) throw new Error(`the target does not declare the demo view ${name} (GET /views): the suite needs the demo views`);
  return v;
}

interface Query {
  readonly label: string;
  readonly view: string;
  readonly spec: OracleSpec;
}

const query = (view: string, grain: OracleSpec['grain'], groupBy: string[], filters: Record<string, string>): Query => ({
  label: `${view} grain=${grain} groupBy=${groupBy.join(',')} ${Object.entries(filters)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ')}`,
  view,
  spec: { from: FROM, to: TO, grain, groupBy, filters },
});

/** What the suite compares after each round: every view, several grains, filtered to this run's values. */
const QUERIES: readonly Query[] = [
  query('revenue_by_country', 'hour', ['country'], { country: COUNTRY }),
  query('revenue_by_country', 'day', ['country'], { country: COUNTRY }),
  query('revenue_by_country', 'all', [], { country: COUNTRY }),
  query('revenue_by_country', 'all', ['country'], { country: OTHER_COUNTRY }),
  query('page_views', 'minute', ['page', 'country'], { country: COUNTRY }),
  query('page_views', 'hour', ['page'], { country: COUNTRY }),
  query('events_by_type', 'minute', ['type'], { type: SIGNUP }),
  query('events_by_type', 'all', ['type'], { type: MARK }),
];
const MARK_QUERY = QUERIES[QUERIES.length - 1]!;

async function ask(q: Query, parts = false): Promise<QueryAnswer> {
  const params = new URLSearchParams({
    from: iso(q.spec.from),
    to: iso(q.spec.to),
    grain: q.spec.grain,
    groupBy: q.spec.groupBy.join(','),
    ...q.spec.filters,
    ...(parts && { parts: '1' }),
  });
  const a = expectAnswer('GET /views/{name}', await request('GET', `/views/${q.view}?${params}`), 200);
  expect(a).toMatchObject({ view: q.view, grain: q.spec.grain, from: iso(q.spec.from), to: iso(q.spec.to) });
  return a;
}

const withoutParts = (rows: QueryAnswer['rows']) => rows.map(({ parts: _, ...r }) => r);
// Through JSON, so -0 and 0 compare as the wire shows them.
const same = (a: unknown, b: unknown) => isDeepStrictEqual(JSON.parse(JSON.stringify(a)), JSON.parse(JSON.stringify(b)));

/** Polls every query until its rows equal the oracle's, or fails with the diff of the first that does not. */
async function untilEqual(queries: readonly Query[], parts = false): Promise<Map<Query, QueryAnswer>> {
  const deadline = Date.now() + QUERY_TIMEOUT_MS;
  const events = [...sent.values()];
  for (;;) {
    const answers = new Map<Query, QueryAnswer>();
    let unequal: { q: Query; actual: unknown; expected: unknown } | undefined;
    for (const q of queries) {
      const a = await ask(q, parts);
      answers.set(q, a);
      const expected = oracleRows(viewOf(q.view), events, q.spec);
      if (!unequal && !same(withoutParts(a.rows), expected)) unequal = { q, actual: withoutParts(a.rows), expected };
    }
    if (!unequal) return answers;
    if (Date.now() > deadline) {
      expect(unequal.actual, `${unequal.q.label}: still not the oracle's rows after ${QUERY_TIMEOUT_MS / 1000} s`).toEqual(
        unequal.expected,
      );
    }
    await sleep(1000);
  }
}

/** Sends 64 markers and waits until the speed layer counted all of them (see the header). */
async function barrier(round: string): Promise<void> {
  const ts = iso(Date.now());
  await sendAll(Array.from({ length: MARKS_PER_BARRIER }, (_, i) => ({ id: id(`mark-${round}-${i}`), type: MARK, ts })));
  await untilEqual([MARK_QUERY]);
}

/** The metrics of a view over no events: 0 for count and sum, null for the others (the contract's `parts`). */
function emptyMetrics(view: ViewInfo): Record<string, number | null> {
  return Object.fromEntries(
    Object.entries(view.metrics).map(([m, d]) => [m, d.fn === 'count' || d.fn === 'sum' || d.fn === 'distinct' ? 0 : null]),
  );
}

/** Each row's metrics from the oracle over `events`, by bucket and grouped dimensions. */
function sideRows(q: Query, events: readonly Ev[]): Map<string, Record<string, unknown>> {
  const view = viewOf(q.view);
  const key = (r: Record<string, unknown>) => JSON.stringify([r.bucket, ...q.spec.groupBy.map((d) => r[d] ?? null)]);
  return new Map(
    oracleRows(view, events, q.spec).map((r) => [key(r), Object.fromEntries(Object.keys(view.metrics).map((m) => [m, r[m]]))]),
  );
}

function expectParts(q: Query, a: QueryAnswer, batchEvents: readonly Ev[], speedEvents: readonly Ev[]): void {
  const view = viewOf(q.view);
  const batch = sideRows(q, batchEvents);
  const speed = sideRows(q, speedEvents);
  for (const row of a.rows) {
    const key = JSON.stringify([row.bucket, ...q.spec.groupBy.map((d) => row[d] ?? null)]);
    expect(row.parts, `${q.label}: parts=1 gives every row its parts`).toBeDefined();
    expect(row.parts, `${q.label} ${key}: the batch and speed parts`).toEqual({
      batch: batch.get(key) ?? emptyMetrics(view),
      speed: speed.get(key) ?? emptyMetrics(view),
    });
  }
}

async function status(): Promise<StatusAnswer> {
  return expectAnswer('GET /status', await request('GET', '/status'), 200);
}

// ---- the suite ----------------------------------------------------------------------------------

describe(`the HTTP contract end to end (${target.local ? 'local cloud started by the suite' : target.url}; run ${RUN})`, () => {
  it('GET /health answers without a key', async () => {
    expectAnswer('GET /health', await request('GET', '/health', { key: null }), 200);
  });

  it('every other route: 401 without a key, 403 with a wrong one, and nothing sent that way is stored', async () => {
    const refused = [purchase('unauthorized', 1000, iso(START))];
    const routes = [
      ['GET /views', 'GET', '/views', undefined],
      ['GET /views/{name}', 'GET', `/views/revenue_by_country?country=${COUNTRY}`, undefined],
      ['GET /status', 'GET', '/status', undefined],
      ['POST /events', 'POST', '/events', refused],
      ['POST /batch/runs', 'POST', '/batch/runs', {}],
      ['GET /batch/runs/{id}', 'GET', `/batch/runs/run-${RUN}`, undefined],
    ] as const;
    for (const [route, method, path, json] of routes) {
      const none = expectAnswer(route, await request(method, path, { key: null, ...(json !== undefined && { json }) }), 401);
      expect(none.error).toBeTruthy();
      const wrong = expectAnswer(route, await request(method, path, { key: `e2e-wrong-${RUN}`, ...(json !== undefined && { json }) }), 403);
      expect(wrong.error).toBeTruthy();
    }
    const preflight = await request('OPTIONS', '/events', {
      key: null,
      headers: { origin: 'https://example.com', 'access-control-request-method': 'POST' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-headers')).toContain('x-api-key');
  });

  it('GET /views declares the demo views the suite queries', async () => {
    const a = expectAnswer('GET /views', await request('GET', '/views'), 200);
    for (const v of a.views) views.set(v.name, v);
    expect(viewOf('revenue_by_country')).toMatchObject({ filter: { type: 'purchase' }, dimensions: ['country'] });
    expect(viewOf('page_views')).toMatchObject({ filter: { type: 'page_view' }, dimensions: ['page', 'country'] });
    expect(viewOf('events_by_type')).toMatchObject({ dimensions: ['type'] });
  });

  it('POST /events: 200 with the ids in request order (exact decimals, late events, three ways to write a time)', async () => {
    const now = Date.now();
    await sendAll([
      purchase('p1', 19.99, iso(now - 2 * MIN)),
      purchase('p2', 0.1, now - 2 * MIN),
      purchase('p3', 0.2, isoPlus2(now - MIN)),
      purchase('p4', 0.7, iso(now - MIN)),
      purchase('p5', 123456.123456789, iso(now - MIN)),
      purchase('p6', 0.000000001, iso(now)),
      purchase('p7', -0.3, iso(now)),
      purchase('p8', 99999999999.9999, now),
      purchase('p9', null, iso(now)),
      purchase('p10', undefined, iso(now)),
      purchase('late1', 5.55, iso(LATE)),
      purchase('late2', 0.05, LATE + 20_000),
      purchase('late3', 42, isoPlus2(LATER)),
      pageView('v1', '/e2e/a', 120, iso(now - MIN)),
      pageView('v2', '/e2e/a', 85.5, iso(now)),
      pageView('v3', '/e2e/b', 33.333333333, now),
      pageView('v4', '/e2e/b', undefined, iso(now)),
      pageView('v5', '/e2e/a', 7, iso(LATE)),
      signup('s1', iso(now)),
      signup('s2', iso(LATER)),
    ]);
  });

  it('POST /events: 207 names the field of each rejected event; the others are stored (an id assigned when absent)', async () => {
    const now = iso(Date.now());
    const events: Ev[] = [
      signup('s3', now),
      purchase('bad-amount', null, now, { amount: 'x' }),
      { id: id('bad-ts-missing'), type: 'purchase', country: COUNTRY, amount: 1 } as unknown as Ev,
      purchase('p11', 3.25, now),
      purchase('bad-digits', 0.30000000000000004, now),
      { ...pageView('bad-nested', '/e2e/a', 1, now), page: { path: '/' } } as unknown as Ev,
      purchase('bad-name', 1, now, { 'bad-name': 1 }),
      purchase(`long-${'x'.repeat(128)}`, 1, now),
      { type: 'purchase', ts: now, country: COUNTRY, amount: 7.77 },
      purchase('bad-ts', 1, 'yesterday'),
      { ...signup('bad-type', now), type: '' },
    ];
    const a = expectAnswer('POST /events', await request('POST', '/events', { json: { events } }), 207);
    expect(a.rejected.map(({ index, field }) => ({ index, field }))).toEqual([
      { index: 1, field: 'amount' },
      { index: 2, field: 'ts' },
      { index: 4, field: 'amount' },
      { index: 5, field: 'page' },
      { index: 6, field: 'bad-name' },
      { index: 7, field: 'id' },
      { index: 9, field: 'ts' },
      { index: 10, field: 'type' },
    ]);
    for (const r of a.rejected) expect(r.message.length).toBeGreaterThan(0);
    expect(a.accepted).toBe(3);
    expect(a.ids[2]).toMatch(/\S/);
    expect(a.ids[2]!.startsWith(`e2e-${RUN}`)).toBe(false);
    record(events, a);
  });

  it('POST /events: 400 (nothing acceptable, not JSON, no events), 413 (501 events, over 5 MB, also after gunzip), 415', async () => {
    const now = iso(Date.now());
    const none = expectAnswer(
      'POST /events',
      await request('POST', '/events', { json: [purchase('none-ts', 1, 'soon'), { ...purchase('none-type', 1, now), type: '' }] }),
      400,
    );
    expect(none).toMatchObject({
      field: 'ts',
      accepted: 0,
      rejected: [
        { index: 0, field: 'ts' },
        { index: 1, field: 'type' },
      ],
    });
    const notJson = await request('POST', '/events', { raw: `[${JSON.stringify(purchase('not-json', 1, now))}`, headers: json() });
    expect(expectAnswer('POST /events', notJson, 400)).toMatchObject({ field: 'body' });
    expect(expectAnswer('POST /events', await request('POST', '/events', { json: [] }), 400).error).toBeTruthy();

    const many = Array.from({ length: 501 }, (_, i) => purchase(`many-${i}`, 1, now));
    expect(expectAnswer('POST /events', await request('POST', '/events', { json: many }), 413)).toMatchObject({ field: 'events' });
    const big = `[${JSON.stringify(purchase('big', 1, now))}${' '.repeat(5 * 1024 * 1024)}]`;
    expect(expectAnswer('POST /events', await uploadTooLarge(big), 413)).toMatchObject({ field: 'body' });
    // Compressed bodies go as application/octet-stream: API Gateway passes that type through byte for byte (docs/deploy.md).
    const bomb = gzipSync(`[${JSON.stringify(purchase('bomb', 1, now))}${' '.repeat(6 * 1024 * 1024)}]`);
    const expands = await request('POST', '/events', { raw: bomb, headers: { ...octets(), 'content-encoding': 'gzip' } });
    expect(expectAnswer('POST /events', expands, 413)).toMatchObject({ field: 'body' });
    const brotli = await request('POST', '/events', {
      raw: JSON.stringify([purchase('brotli', 1, now)]),
      headers: { ...octets(), 'content-encoding': 'br' },
    });
    expect(expectAnswer('POST /events', brotli, 415)).toMatchObject({ field: 'content-encoding' });
  });

  it('POST /events: a gzip body is accepted', async () => {
    const events = [purchase('gz1', 0.01, iso(Date.now())), pageView('gz2', '/e2e/b', 250, Date.now())];
    const r = await request('POST', '/events', {
      raw: gzipSync(JSON.stringify(events)),
      headers: { ...octets(), 'content-encoding': 'gzip' },
    });
    record(events, expectAnswer('POST /events', r, 200));
  });

  it(
    'the same id sent again seconds later counts once (the first copy wins), late events count in their old buckets',
    async () => {
      await sleep(3000);
      const now = iso(Date.now());
      // Exact copies and conflicting copies (another time, amount, country) of ids already sent:
      // accepted by ingest, dropped by both layers.
      await sendAll([
        copyOf('p1'),
        copyOf('late1'),
        copyOf('v3'),
        purchase('p2', 1000, now, { country: OTHER_COUNTRY }),
        purchase('p4', 2000, now),
        purchase('p5', 123456.123456789, iso(LATE)),
        pageView('v1', '/e2e/a', 9999, now),
        signup('s1', now),
      ]);
      await barrier('speed');
      const answers = await untilEqual(QUERIES);

      const purchases = [...sent.values()].filter((e) => e.type === 'purchase');
      const total = answers.get(QUERIES[2]!)!.rows;
      expect(total).toHaveLength(1);
      expect(total[0]!.orders, 'each purchase id once').toBe(purchases.length);
      expect(copiesAccepted).toBeGreaterThan(sent.size);
      const byHour = answers.get(QUERIES[0]!)!.rows;
      const lateBucket = iso(Math.floor(LATE / HOUR) * HOUR);
      expect(byHour.find((r) => r.bucket === lateBucket)?.orders, 'the late purchases in their own hour').toBeGreaterThanOrEqual(1);
      expect(answers.get(QUERIES[3]!)!.rows, 'a conflicting resend changes nothing').toEqual([]);
    },
    TEST_TIMEOUT_MS,
  );

  let cutoff = 0;
  let beforeBatch: Ev[] = [];

  it(
    'a batch run started with POST /batch/runs and polled with GET /batch/runs/{id}; the answers are still the oracle, now from the batch',
    async () => {
      const sentBy = Date.parse((await status()).now);
      beforeBatch = [...sent.values()];
      const deadline = Date.now() + BATCH_TIMEOUT_MS;
      const runs: RunAnswer[] = [];
      // Repeated until the published cutoff is past everything sent: the archive and the cutoff margin lag behind arrivals.
      for (;;) {
        const started = expectAnswer('POST /batch/runs', await request('POST', '/batch/runs', { json: {} }), 202);
        const run = await pollRun(started.id, deadline);
        runs.push(run);
        if (run.state === 'FAILED') throw new Error(`batch run ${run.id} failed: ${run.error ?? '(no error given)'}`);
        if (run.state === 'SUCCEEDED') {
          expect(run).toMatchObject({ stage: 'done' });
          expect(run.version).toBeGreaterThan(0);
          for (const v of views.keys()) expect(Object.keys(run.views)).toContain(v);
        } else expect(run.note, 'a SKIPPED run says why').toBeTruthy();
        const pointer = (await status()).batch;
        if (pointer && Date.parse(pointer.cutoff) > sentBy) {
          cutoff = Date.parse(pointer.cutoff);
          break;
        }
        if (Date.now() > deadline) {
          const tried = JSON.stringify(runs.map((r) => [r.id, r.state, r.cutoff, r.note]));
          throw new Error(`no batch published a cutoff past ${iso(sentBy)} within ${BATCH_TIMEOUT_MS / 1000} s; runs: ${tried}`);
        }
        await sleep(target.local ? 1000 : 10_000);
      }

      const answers = await untilEqual(QUERIES, true);
      for (const [q, a] of answers) {
        expect(a.batch, `${q.label}: the merged version`).not.toBeNull();
        expect(Date.parse(a.batch!.cutoff)).toBeGreaterThanOrEqual(cutoff);
        // Everything was sent before the cutoff: the batch alone gives each row, the speed part is empty.
        expectParts(q, a, [...sent.values()], []);
      }
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'events sent after the batch add to it (duplicates of ids the batch counted still count once)',
    async () => {
      expect(cutoff, 'the batch test published a cutoff').toBeGreaterThan(0);
      const now = Date.now();
      await sendAll([
        purchase('after1', 8.88, iso(now)),
        purchase('after2', 0.11, iso(LATE)),
        pageView('after3', '/e2e/c', 61, now),
        signup('after4', iso(now)),
        copyOf('p1'),
        copyOf('late2'),
        copyOf('gz2'),
        purchase('p3', 3000, iso(now), { country: OTHER_COUNTRY }),
        purchase('late3', 0.42, iso(now)),
      ]);
      await barrier('after');
      const answers = await untilEqual(QUERIES, true);
      const afterBatch = [...sent.values()].slice(beforeBatch.length);
      for (const [q, a] of answers) {
        // A newer batch (a deployment's schedule) may have moved the split: then only the sum of the parts is the contract's.
        if (Date.parse(a.batch!.cutoff) === cutoff) expectParts(q, a, beforeBatch, afterBatch);
      }
    },
    TEST_TIMEOUT_MS,
  );

  it('GET /status shows the published batch, its last run and both consumers', async () => {
    const s = await status();
    expect(s.batch).not.toBeNull();
    expect(Date.parse(s.batch!.cutoff)).toBeGreaterThanOrEqual(cutoff);
    expect(s.lastRun).not.toBeNull();
    expect(s.speed.shards.length).toBeGreaterThan(0);
    expect(s.archive.shards.length).toBeGreaterThan(0);
    expect(s.windowSeconds).toBeGreaterThan(0);
  });

  it('errors name the parameter: unknown view 404, unknown run 404, bad grain and unknown parameter 400', async () => {
    expect(expectAnswer('GET /views/{name}', await request('GET', `/views/e2e_${RUN}`), 404)).toMatchObject({ field: 'name' });
    expect(expectAnswer('GET /batch/runs/{id}', await request('GET', `/batch/runs/run-${RUN}`), 404)).toMatchObject({ field: 'id' });
    const grain = await request('GET', '/views/revenue_by_country?grain=minute');
    expect(expectAnswer('GET /views/{name}', grain, 400)).toMatchObject({ field: 'grain' });
    const unknown = await request('GET', `/views/revenue_by_country?e2e_${RUN}=1`);
    expect(expectAnswer('GET /views/{name}', unknown, 400)).toMatchObject({ field: `e2e_${RUN}` });
  });
});

function json(): Record<string, string> {
  return { 'content-type': 'application/json' };
}

function octets(): Record<string, string> {
  return { 'content-type': 'application/octet-stream' };
}

/**
 * POST /events with a body over the limit. A server may answer 413 as soon as it
 * reads the content length and close the connection while the body is still
 * being sent (the local cloud does); the client then sometimes loses the answer
 * to the reset (EPIPE / ECONNRESET). That is the transport, not the contract:
 * try again, a few times.
 */
async function uploadTooLarge(body: string): Promise<Answer> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      return await request('POST', '/events', { raw: body, headers: json() });
    } catch (e) {
      if (!(e instanceof TypeError) || !/fetch failed/.test(e.message)) throw e;
      lastError = e;
      await sleep(200);
    }
  }
  throw new Error(
    `no answer to an over-limit body in 5 attempts: the connection closed before the answer could be read (${String(lastError)})`,
    {
      cause: lastError,
    },
  );
}

async function pollRun(runId: string, deadline: number): Promise<RunAnswer> {
  for (;;) {
    const r: Answer = await request('GET', `/batch/runs/${encodeURIComponent(runId)}`);
    const run = expectAnswer('GET /batch/runs/{id}', r, 200);
    expect(run.id).toBe(runId);
    if (run.state !== 'RUNNING') return run;
    if (Date.now() > deadline) throw new Error(`batch run ${runId} still RUNNING (stage ${run.stage}) after ${BATCH_TIMEOUT_MS / 1000} s`);
    await sleep(target.local ? 250 : 3000);
  }
}
