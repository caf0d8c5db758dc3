/**
 * GET /views, /views/{name} and /status against real dynalite. Speed items are
 * written by the real speed layer (processSpeedBatch), batch rows by the batch
 * layer's loader (loadRows). Every answer is
 * compared with an independent oracle over the unique events.
 */
import { GetCommand, PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exactDocClient } from '../../functions/api/read-view.ts';
import { loadRows } from '../../functions/batch/load.ts';
import { aggregate } from '../../functions/core/aggregate.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { cellAttribute, speedPart, speedPk, speedSk, speedSlot } from '../../functions/core/keys.ts';
import { combineViewStates, stateToColumns, type ViewState } from '../../functions/core/metrics.ts';
import { toRawRecord } from '../../functions/core/record.ts';
import { DEFAULT_SETTINGS } from '../../functions/core/settings.ts';
import { findView, type View } from '../../functions/core/views.ts';
import { createQueryHandler, type QueryDeps } from '../../functions/query.ts';
import { processSpeedBatch } from '../../functions/speed/process.ts';
import { apiEvent, lambdaContext, parse, silentLogger } from '../support/api.ts';
import { startTestCloud, type TestCloud } from '../support/cloud.ts';
import { type OracleSpec, oracleRows } from '../support/oracle.ts';

const HOUR = 3_600_000;
const MIN = 60_000;
const SHARDS = ['shardId-000000000000', 'shardId-000000000001'];
const now = Number(process.env.TEST_NOW ?? Date.now());
const cutoff = Math.floor((now - 20 * MIN) / MIN) * MIN;

let cloud: TestCloud;
let doc: ReturnType<typeof exactDocClient>;
let tables: QueryDeps['tables'];

interface Sent {
  readonly event: Record<string, unknown>;
  readonly arrival: number;
  readonly shard: string;
  readonly seq: string;
}

// A deterministic demo mix: page views, purchases (cents), signups; late events; duplicates.
function makeEvents(): Sent[] {
  let s = 42;
  const rand = () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 31;
  };
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
  const out: Sent[] = [];
  const seqs = [0, 0];
  for (let i = 0; i < 80; i++) {
    const arrival = now - 50 * MIN + Math.floor(rand() * 49 * MIN);
    const late = rand() < 0.2;
    const ts = late ? arrival - Math.floor(rand() * 5 * HOUR) : arrival - Math.floor(rand() * 2 * MIN);
    const type = pick(['page_view', 'page_view', 'purchase', 'signup']);
    const event: Record<string, unknown> = {
      id: `q-${i}`,
      type,
      ts: i % 3 === 0 ? ts : new Date(ts).toISOString(),
      country: pick(['DE', 'FR', 'US', null]),
    };
    if (type === 'page_view') Object.assign(event, { page: pick(['/', '/pricing', '/docs']), load_ms: Math.floor(rand() * 900) });
    if (type === 'purchase' && rand() < 0.9) event.amount = Math.floor(rand() * 100_000) / 100 + (rand() < 0.2 ? 0.000000001 : 0);
    const shard = SHARDS[i % 2]!;
    const k = i % 2;
    seqs[k]! += 1;
    out.push({ event, arrival, shard, seq: `49${String(k)}${String(seqs[k]).padStart(53, '0')}` });
  }
  // duplicates: a client retry of 10 events, arriving later on the same shard
  for (let i = 0; i < 10; i++) {
    const first = out[i * 7]!;
    const k = SHARDS.indexOf(first.shard);
    seqs[k]! += 1;
    out.push({
      ...first,
      arrival: Math.min(now - MIN, first.arrival + 3 * MIN),
      seq: `49${String(k)}${String(seqs[k]).padStart(53, '0')}`,
    });
  }
  return out;
}

const sent = makeEvents();
/** First arrival wins: the unique events, and which of them the batch covers. */
function unique(list: readonly Sent[]): Sent[] {
  const first = new Map<string, Sent>();
  for (const s of [...list].sort((a, b) => a.arrival - b.arrival || (a.seq < b.seq ? -1 : 1)))
    if (!first.has(String(s.event.id))) first.set(String(s.event.id), s);
  return [...first.values()];
}

/** Writes batch-view rows of `version` for the unique events with arrival < c with the batch layer's loader. */
async function writeBatchVersion(version: number, c: number, list: readonly Sent[], garbage = false): Promise<void> {
  const covered = unique(list).filter((s) => s.arrival < c);
  const raws = covered.map((s) => toRawRecord(s.event, s.arrival, s.shard, s.seq));
  for (const view of DEMO_VIEWS) {
    const rows = new Map<string, { bucket: number; dims: readonly (string | null)[]; state: ViewState }>();
    for (const d of aggregate([view], raws, DEFAULT_SETTINGS.windowSeconds * 1000)) {
      const key = JSON.stringify([d.bucket, d.dims]);
      const seen = rows.get(key);
      rows.set(key, { bucket: d.bucket, dims: d.dims, state: seen ? combineViewStates(view, seen.state, d.state) : d.state });
    }
    const loaded = [...rows.values()].map((r) => ({
      bucket: r.bucket,
      dims: r.dims,
      values: Object.fromEntries(Object.entries(stateToColumns(view, r.state)).map(([k, v]) => [k, garbage && v !== null ? '999' : v])),
    }));
    await loadRows({ ddb: cloud.clients.dynamodb, table: tables.batchViews }, view, version, loaded);
  }
}

async function publish(version: number, c: number): Promise<void> {
  await doc.send(
    new PutCommand({
      TableName: tables.control,
      Item: { pk: 'pointer', sk: 'current', version, cutoff: c, publishedAt: Date.now(), runId: `run-${version}`, views: {} },
    }),
  );
}

function handler(over: Partial<QueryDeps> = {}) {
  return createQueryHandler({
    doc,
    tables,
    views: DEMO_VIEWS,
    settings: DEFAULT_SETTINGS,
    logger: silentLogger(),
    now: () => now,
    ...over,
  });
}

async function get(path: string, query: Record<string, string> = {}, over: Partial<QueryDeps> = {}) {
  const name = /^\/views\/(.+)$/.exec(path)?.[1];
  const event = apiEvent('GET', path, {
    resource: name ? '/views/{name}' : path,
    pathParameters: name ? { name: decodeURIComponent(name) } : null,
    queryStringParameters: Object.keys(query).length > 0 ? query : null,
  });
  return parse(await handler(over)(event, lambdaContext()));
}

const defaultSpec = (view: View): OracleSpec => {
  const step = view.grain === 'hour' ? HOUR : MIN;
  const to = Math.ceil(now / step) * step;
  return { from: to - 24 * HOUR, to, grain: view.grain, groupBy: view.dimensions };
};

function expectRows(viewName: string, actual: unknown, spec: Partial<OracleSpec> = {}, list: readonly Sent[] = sent) {
  const view = findView(DEMO_VIEWS, viewName)!;
  const events = unique(list).map((s) => s.event);
  expect(actual).toEqual(oracleRows(view, events, { ...defaultSpec(view), ...spec }));
}

beforeAll(async () => {
  cloud = await startTestCloud();
  doc = exactDocClient(cloud.clients.dynamodb);
  tables = {
    speed: cloud.names.TANDEM_SPEED_TABLE!,
    batchViews: cloud.names.TANDEM_BATCH_VIEWS_TABLE!,
    control: cloud.names.TANDEM_CONTROL_TABLE!,
  };
  // Every event goes through the real speed layer, in per-shard order, in a few batches.
  const bySeq = [...sent].sort((a, b) => (a.seq < b.seq ? -1 : 1));
  for (let i = 0; i < bySeq.length; i += 25) {
    const res = await processSpeedBatch(
      bySeq.slice(i, i + 25).map((s) => ({ shard: s.shard, seq: s.seq, arrival: s.arrival, data: Buffer.from(JSON.stringify(s.event)) })),
      {
        ddb: cloud.clients.dynamodb,
        s3: cloud.clients.s3,
        tables: { speed: tables.speed, dedup: cloud.names.TANDEM_DEDUP_TABLE!, control: tables.control },
        failureBucket: cloud.names.TANDEM_FAILURE_BUCKET!,
        views: DEMO_VIEWS,
        settings: DEFAULT_SETTINGS,
        log: { warn: () => undefined, error: (m, a) => console.error(m, JSON.stringify(a)) },
      },
    );
    expect(res.failures).toEqual([]);
  }
});
afterAll(async () => {
  await cloud?.stop();
});

describe('GET /views', () => {
  it('lists the declared views', async () => {
    const r = await get('/views');
    expect(r.status).toBe(200);
    const views = r.body.views as { name: string; grain: string; dimensions: string[]; metrics: object }[];
    expect(views.map((v) => v.name)).toEqual(DEMO_VIEWS.map((v) => v.name));
    expect(views[1]).toMatchObject({ name: 'revenue_by_country', filter: { type: 'purchase' }, grain: 'hour', dimensions: ['country'] });
    expect(views[1]!.metrics).toMatchObject({ avg_order: { fn: 'avg', field: 'amount' } });
  });
});

describe('GET /views/{name}', () => {
  it('before any batch: batch null, rows from the speed layer equal the truth', async () => {
    const r = await get('/views/revenue_by_country');
    expect(r.status).toBe(200);
    expect(r.body.batch).toBeNull();
    expect(r.body).toMatchObject({ view: 'revenue_by_country', grain: 'hour' });
    expect((r.body.rows as unknown[]).length).toBeGreaterThan(2);
    expectRows('revenue_by_country', r.body.rows);
  });

  it('with a published version: batch rows of N plus speed windows >= C, nothing twice, other versions ignored', async () => {
    await writeBatchVersion(1, cutoff - 10 * MIN, sent, true); // an older version, garbage values
    await writeBatchVersion(2, cutoff, sent);
    await writeBatchVersion(3, cutoff + 5 * MIN, sent, true); // a version still loading
    await publish(2, cutoff);
    const r = await get('/views/revenue_by_country');
    expect(r.status).toBe(200);
    expect(r.body.batch).toEqual({ version: 2, cutoff: new Date(cutoff).toISOString() });
    expect(r.body.from).toBe(new Date(defaultSpec(DEMO_VIEWS[1]!).from).toISOString());
    expectRows('revenue_by_country', r.body.rows);
    for (const v of DEMO_VIEWS) expectRows(v.name, (await get(`/views/${v.name}`)).body.rows);
  });

  it('rolls up, groups, filters and limits the range as asked', async () => {
    const pv = findView(DEMO_VIEWS, 'page_views')!;
    const to = Math.ceil(now / HOUR) * HOUR;
    const from = to - 6 * HOUR;
    const iso = (t: number) => new Date(t).toISOString();
    const cases: [string, Record<string, string>, Partial<OracleSpec>][] = [
      ['page_views', { grain: 'hour', groupBy: 'country' }, { grain: 'hour', groupBy: ['country'] }],
      ['page_views', { grain: 'all', groupBy: '' }, { grain: 'all', groupBy: [] }],
      ['page_views', { country: 'DE', groupBy: 'page' }, { groupBy: ['page'], filters: { country: 'DE' } }],
      ['page_views', { from: iso(from), to: iso(to), grain: 'day' }, { from, to, grain: 'day' }],
      ['events_by_type', { grain: 'all', from: iso(from), to: iso(to) }, { grain: 'all', from, to, groupBy: ['type'] }],
      ['revenue_by_country', { grain: 'day', groupBy: '' }, { grain: 'day', groupBy: [] }],
      ['revenue_by_country', { from: iso(from + 30 * MIN), to: iso(to) }, { from: from + 30 * MIN, to }],
    ];
    for (const [view, q, spec] of cases) {
      const r = await get(`/views/${view}`, q);
      expect(r.status, JSON.stringify(q)).toBe(200);
      expect(r.body.grain).toBe(spec.grain ?? findView(DEMO_VIEWS, view)!.grain);
      expectRows(view, r.body.rows, spec);
    }
    expect(pv.dimensions).toEqual(['page', 'country']);
  });

  it('follows every page of every Query (a wrapper forces one item a page)', async () => {
    let queries = 0;
    let continued = 0;
    const paged = {
      send: (cmd: unknown) => {
        if (cmd instanceof QueryCommand) {
          cmd.input.Limit = 1;
          queries++;
          if (cmd.input.ExclusiveStartKey) continued++;
        }
        return doc.send(cmd as never);
      },
    } as unknown as typeof doc;
    const r = await get('/views/page_views', {}, { doc: paged });
    expect(r.status).toBe(200);
    expectRows('page_views', r.body.rows);
    // Not blind: Queries did go past their first page (batch blocks and speed items alike).
    expect(continued).toBeGreaterThan(5);
    expect(queries).toBeGreaterThan(continued);
  });

  it('drops speed items that are expired but not yet deleted', async () => {
    const view = findView(DEMO_VIEWS, 'revenue_by_country')!;
    const window = cutoff + 2 * MIN;
    const bucket = Math.floor((now - HOUR) / HOUR) * HOUR;
    // A shard no sent event is on: a real item with the same key would be overwritten by the put
    // below (in the first 18 minutes of an hour the window's slot is the previous hour's).
    const shard = 'shardId-000000009999';
    expect(SHARDS).not.toContain(shard);
    const slot = speedSlot(bucket);
    const Key = { pk: speedPk(view.name, window, shard), sk: speedSk(window, slot, speedPart(window, slot, window), shard) };
    const item = (expiresAt: number) => ({
      ...Key,
      view: view.name,
      window,
      slot,
      shard,
      hw: '1'.padStart(64, '0'),
      ...Object.fromEntries(
        Object.entries({ records: 1, orders__count: 1, revenue__sum: 5, avg_order__sum: 5, avg_order__count: 1 }).map(([column, v]) => [
          cellAttribute(slot, bucket, ['ZZ'], column),
          v,
        ]),
      ),
      expiresAt,
    });
    const zz = async () => (await get('/views/revenue_by_country')).body.rows as { country: string; orders?: number }[];
    // The same item alive is read (so the check below can fail), then expired, dropped.
    await doc.send(new PutCommand({ TableName: tables.speed, Item: item(Math.floor(now / 1000) + 3600) }));
    expect((await zz()).find((x) => x.country === 'ZZ')).toMatchObject({ orders: 1 });
    await doc.send(new PutCommand({ TableName: tables.speed, Item: item(Math.floor(now / 1000) - 1) }));
    const rows = await zz();
    expect(rows.some((x) => x.country === 'ZZ')).toBe(false);
    expectRows('revenue_by_country', rows);
  });

  it('a batch that publishes between the pointer read and the speed reads does not change the answer', async () => {
    const c2 = cutoff + 10 * MIN;
    await writeBatchVersion(4, c2, sent);
    let flipped = false;
    const racing = {
      send: async (cmd: unknown) => {
        const out = await doc.send(cmd as never);
        if (!flipped && cmd instanceof GetCommand && (cmd.input.Key as { pk: string }).pk === 'pointer') {
          flipped = true;
          await publish(4, c2); // the flip lands right after our pointer read
        }
        return out;
      },
    } as unknown as typeof doc;
    const r = await get('/views/revenue_by_country', {}, { doc: racing });
    expect(flipped).toBe(true);
    expect(r.body.batch).toEqual({ version: 2, cutoff: new Date(cutoff).toISOString() });
    expectRows('revenue_by_country', r.body.rows);
    const after = await get('/views/revenue_by_country');
    expect(after.body.batch).toEqual({ version: 4, cutoff: new Date(c2).toISOString() });
    expect(after.body.rows).toEqual(r.body.rows);
  });

  it('refuses an answer too large for one response, naming what to coarsen', async () => {
    const small = { maxResponseBytes: 600 };
    const r = await get('/views/page_views', { grain: 'minute' }, small);
    expect(r.status).toBe(400);
    expect(r.body.field).toBe('grain');
    expect(String(r.body.error)).toMatch(/rows .* more than one response may carry/);
    expect((await get('/views/page_views', { grain: 'all', groupBy: 'page,country' }, small)).body.field).toBe('groupBy');
    expect((await get('/views/page_views', { grain: 'all', groupBy: '' }, small)).status).toBe(200);
  });

  it('404 for an unknown view, 400 naming the bad parameter', async () => {
    const nf = await get('/views/nope');
    expect(nf.status).toBe(404);
    expect(nf.body.error).toMatch(/nope/);
    const bad: [Record<string, string>, string][] = [
      [{ from: 'yesterday' }, 'from'],
      [{ to: '2025-13-01' }, 'to'],
      [{ from: '2025-01-02T00:00:00Z', to: '2025-01-01T00:00:00Z' }, 'to'],
      [{ grain: 'minute' }, 'grain'],
      [{ grain: 'week' }, 'grain'],
      [{ groupBy: 'city' }, 'groupBy'],
      [{ city: 'Berlin' }, 'city'],
      [{ from: '2020-01-01T00:00:00Z', to: '2025-01-01T00:00:00Z' }, 'from'],
    ];
    for (const [q, field] of bad) {
      const r = await get('/views/revenue_by_country', q);
      expect(r.status, JSON.stringify(q)).toBe(400);
      expect(r.body.field, JSON.stringify(q)).toBe(field);
      expect(String(r.body.error)).toContain(field);
    }
  });
});

describe('GET /status', () => {
  it('reports batch version and cutoff, the last run, speed progress, archive checkpoints and settings', async () => {
    const control = tables.control;
    await doc.send(
      new PutCommand({
        TableName: control,
        Item: {
          pk: 'run',
          sk: 'run-20250101T000000000Z-aaaaaa',
          runId: 'run-20250101T000000000Z-aaaaaa',
          state: 'SUCCEEDED',
          stage: 'done',
          startedAt: now - 9 * HOUR,
          finishedAt: now - 9 * HOUR + 1000,
          views: {},
        },
      }),
    );
    await doc.send(
      new PutCommand({
        TableName: control,
        Item: {
          pk: 'run',
          sk: 'run-20991231T000000000Z-bbbbbb',
          runId: 'run-20991231T000000000Z-bbbbbb',
          state: 'FAILED',
          stage: 'views',
          startedAt: now - 60_000,
          finishedAt: now - 57_500,
          error: 'boom',
          views: { page_views: { rows: 3, sqlMs: 12, loadMs: 30 } },
        },
      }),
    );
    await doc.send(
      new PutCommand({
        TableName: control,
        Item: {
          pk: 'checkpoint',
          sk: SHARDS[0],
          arrival: now - 5 * MIN,
          seq: '1'.padStart(64, '0'),
          records: 40,
          updatedAt: now - 4 * MIN,
        },
      }),
    );
    await doc.send(new PutCommand({ TableName: control, Item: { pk: 'stats', sk: 'poison', count: 3 } }));
    const r = await get('/status');
    expect(r.status).toBe(200);
    // biome-ignore lint/suspicious/noExplicitAny: a JSON response body, checked field by field below
    const b = r.body as Record<string, any>;
    expect(b.batch).toMatchObject({ version: 4, cutoff: new Date(cutoff + 10 * MIN).toISOString() });
    expect(b.lastRun).toMatchObject({ id: 'run-20991231T000000000Z-bbbbbb', state: 'FAILED', error: 'boom', durationMs: 2500 });
    expect(b.lastRun.views.page_views).toEqual({ rows: 3, sqlMs: 12, loadMs: 30 });
    expect(b.speed.shards.map((s: { shard: string }) => s.shard).sort()).toEqual(SHARDS);
    // progress is the arrival of the last record (highest sequence number) the shard applied
    const lastArrival = sent.filter((s) => s.shard === SHARDS[0]).sort((a, b) => (a.seq < b.seq ? 1 : -1))[0]!.arrival;
    expect(b.speed.shards[0]).toMatchObject({ shard: SHARDS[0], lagMs: now - lastArrival });
    expect(b.archive.shards).toEqual([
      expect.objectContaining({ shard: SHARDS[0], records: 40, arrival: new Date(now - 5 * MIN).toISOString() }),
    ]);
    expect(b).toMatchObject({ windowSeconds: 60, dedupHorizonSeconds: DEFAULT_SETTINGS.dedupHorizonSeconds, poison: { count: 3 } });
    const pointer = await doc.send(new GetCommand({ TableName: control, Key: { pk: 'pointer', sk: 'current' } }));
    expect(String(pointer.Item?.version)).toBe('4');
  });
});
