/**
 * Incremental runs against real emulators and DuckDB, by example (the property test
 * batch.increment.property.test.ts covers random sequences): a partition an increment does
 * not touch stays with its writer and survives that writer's retirement while a kept version
 * references it; POST /batch/runs with a rebuild request, in process (the Step Functions
 * execution input is unit-tested in test/unit/batch.increment.test.ts); the run item's per-view
 * mode, reason and rows written.
 */
import { type AttributeValue, DeleteItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryView } from '../../functions/api/query.ts';
import { exactDocClient, readView } from '../../functions/api/read-view.ts';
import { getManifest, getPointer, getRun } from '../../functions/batch/control.ts';
import { STORAGE_LAYOUT } from '../../functions/batch/load.ts';
import { runBatchToCompletion } from '../../functions/batch/pipeline.ts';
import { createBatchApiHandler } from '../../functions/batch-api.ts';
import { Decimal } from '../../functions/core/decimal.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { batchPartitionPk, batchPk, pad13, versionKey } from '../../functions/core/keys.ts';
import { stateToColumns } from '../../functions/core/metrics.ts';
import { apiEvent, lambdaContext, silentLogger } from '../support/api.ts';
import {
  archiveHandler,
  batchOptions,
  batchOracle,
  freshResources,
  kinesisEvent,
  readBatchRows,
  removeStageDirs,
  type ShardRecord,
  scanAll,
  seqOf,
  shardId,
  sorted,
  testConfig,
} from '../support/batch.ts';
import { startTestCloud, type TestCloud } from '../support/cloud.ts';

const DAY = 86_400_000;

/** Rows keyed as readBatchRows keys them, numbers in one text form (the query's state text vs the oracle's). */
const normalized = (m: ReadonlyMap<string, Record<string, string | null>>) =>
  new Map(
    [...m].map(([k, v]) => [
      k,
      Object.fromEntries(Object.entries(v).map(([c, x]) => [c, x === null || c.endsWith('__hll') ? x : new Decimal(x).toFixed()])),
    ]),
  );
const MIN = 60_000;
const HOUR = 3_600_000;
const T0 = Date.UTC(2030, 6, 20, 12, 0, 0);
const pageViews = DEMO_VIEWS.find((v) => v.name === 'page_views')!;

describe('incremental batch runs', () => {
  let cloud: TestCloud;
  beforeAll(async () => {
    cloud = await startTestCloud();
  });
  afterAll(async () => {
    await cloud?.stop();
    removeStageDirs();
  });

  let n = 0;
  /** Page views arriving at `at` (one a second), the first one with an event time `lateBy` ms before its arrival. */
  const pageViewsAt = (at: number, count: number, lateBy = 0): ShardRecord[] =>
    Array.from({ length: count }, (_, i) => {
      const k = n++;
      const arrival = at + i * 1000;
      return {
        shard: shardId(0),
        seq: seqOf(0, k),
        arrival,
        event: {
          id: `pv-${k}`,
          type: 'page_view',
          ts: i === 0 ? arrival - lateBy : arrival - 500,
          page: '/',
          country: 'DE',
          load_ms: 10 + k,
        },
      };
    });

  /** Fresh resources, an archive of the records `add` feeds (the clock then 2 minutes past the last), and a run at that clock. */
  async function world(prefix: string) {
    const r = await freshResources(cloud.clients, prefix);
    const config = testConfig(r, cloud.names.TANDEM_STREAM_NAME!, DEMO_VIEWS, { keepVersions: 2 });
    const archive = archiveHandler(cloud.clients, r);
    const records: ShardRecord[] = [];
    let clock = T0;
    const now = () => clock;
    const add = async (rs: ShardRecord[]) => {
      expect((await archive(kinesisEvent(rs))).batchItemFailures).toEqual([]);
      records.push(...rs);
      clock = Math.max(...rs.map((x) => x.arrival)) + 2 * MIN;
    };
    const run = () => runBatchToCompletion(cloud.clients, config, batchOptions(cloud.clients, r, { now }));
    return { r, config, records, add, run, now };
  }

  it('shares untouched partitions with their writer and keeps them while a kept version references them', async () => {
    const { r, config, records, add, run, now } = await world('n');

    // Run 1: one page view three days late (its own day partition), the rest today.
    await add(pageViewsAt(T0, 5, 3 * DAY));
    const v1 = await run();
    expect(v1).toMatchObject({ state: 'SUCCEEDED', version: 1 });
    expect(v1.views.page_views).toMatchObject({ mode: 'rebuild', reason: 'new view', written: v1.views.page_views!.rows });
    const today = pad13(Math.floor(T0 / DAY) * DAY);
    const old = pad13(Math.floor((T0 - 3 * DAY) / DAY) * DAY);

    // Runs 2 and 3 touch today's partition only: the late day stays with writer 1.
    await add(pageViewsAt(now(), 4));
    const v2 = await run();
    // Of its rows, the late day's one is shared, not written.
    expect(v2.views.page_views).toMatchObject({ mode: 'increment', written: v2.views.page_views!.rows - 1 });
    await add(pageViewsAt(now(), 3));
    const v3 = await run();
    expect(v3).toMatchObject({ state: 'SUCCEEDED', version: 3 });
    const m3 = (await getManifest({ doc: cloud.clients.doc, table: r.tables.control }, 3))?.views.page_views;
    expect(m3?.partitions).toEqual({ [old]: 1, [today]: 3 });
    // Copy-on-write per block: 2 and 3 rewrote only the hour blocks their arrivals touched; today's other blocks are
    // still read from the writers before them, newest first.
    expect(m3?.inherits).toEqual({ [today]: [2, 1] });
    // Version 1 retired (keepVersions 2): its keys stay while 2 and 3 reference them (the late day, today's blocks).
    expect((await getManifest({ doc: cloud.clients.doc, table: r.tables.control }, 1))?.state).toBe('retired');
    const pks = new Set((await scanAll(cloud.clients.dynamodb, r.tables.batchViews)).map((i) => i.pk!.S!));
    expect(pks.has(batchPartitionPk('page_views', 1, Number(old)))).toBe(true);
    expect(pks.has(batchPartitionPk('page_views', 1, Number(today)))).toBe(true);
    for (const [version, cutoff] of [
      [2, v2.cutoff!],
      [3, v3.cutoff!],
    ] as const) {
      expect(sorted(await readBatchRows(cloud.clients.dynamodb, r.tables.batchViews, pageViews, version))).toEqual(
        sorted(batchOracle(pageViews, records, cutoff)),
      );
    }

    // A requested rebuild of one view over the API (in process): written whole, the others increment.
    const handler = createBatchApiHandler(
      () => ({ clients: cloud.clients, config, env: {}, batch: batchOptions(cloud.clients, r, { now }) }),
      silentLogger(),
    );
    const post = async (body: unknown) => {
      const res = await handler(apiEvent('POST', '/batch/runs', { body: JSON.stringify(body) }), lambdaContext());
      return { status: res.statusCode, body: JSON.parse(res.body) as Record<string, unknown> };
    };
    expect(await post({ view: 'nope' })).toMatchObject({ status: 400, body: { field: 'view' } });
    await add(pageViewsAt(now(), 2));
    const started = await post({ view: 'page_views' });
    expect(started).toMatchObject({ status: 202, body: { state: 'RUNNING' } });
    let v4 = await getRun({ doc: cloud.clients.doc, table: r.tables.control }, String(started.body.id));
    for (let i = 0; i < 200 && v4?.state === 'RUNNING'; i++) {
      await new Promise((res) => setTimeout(res, 50));
      v4 = await getRun({ doc: cloud.clients.doc, table: r.tables.control }, String(started.body.id));
    }
    expect(v4).toMatchObject({ state: 'SUCCEEDED', version: 4 });
    expect(v4!.views.page_views).toMatchObject({ mode: 'rebuild', reason: 'requested', written: v4!.views.page_views!.rows });
    expect(v4!.views.events_by_type).toMatchObject({ mode: 'increment' });
    expect((await getManifest({ doc: cloud.clients.doc, table: r.tables.control }, 4))?.views.page_views?.partitions).toEqual({
      [old]: 4,
      [today]: 4,
    });
    expect((await getPointer({ doc: cloud.clients.doc, table: r.tables.control }))?.version).toBe(4);
    for (const v of DEMO_VIEWS) {
      expect(sorted(await readBatchRows(cloud.clients.dynamodb, r.tables.batchViews, v, 4))).toEqual(
        sorted(batchOracle(v, records, v4!.cutoff!)),
      );
    }
  });

  it('a version written before blocks stays readable, and the next run rebuilds it (storage changed) instead of merging into it', async () => {
    const { r, config, records, add, run, now } = await world('u');
    await add(pageViewsAt(T0, 6, 2 * DAY));
    const v1 = await run();
    expect(v1).toMatchObject({ state: 'SUCCEEDED', version: 1 });

    // Turn version 1's page_views into what the code before blocks wrote: one item per row, base grain only, and a
    // manifest entry without a layout (nor rollups).
    const want = await readBatchRows(cloud.clients.dynamodb, r.tables.batchViews, pageViews, 1);
    expect(want.size).toBeGreaterThan(1);
    for (const item of await scanAll(cloud.clients.dynamodb, r.tables.batchViews))
      if (item.pk!.S!.startsWith('page_views'))
        await cloud.clients.dynamodb.send(new DeleteItemCommand({ TableName: r.tables.batchViews, Key: { pk: item.pk!, sk: item.sk! } }));
    for (const [key, values] of want) {
      const bucket = Number(key.slice(0, key.indexOf('|')));
      const dims = JSON.parse(key.slice(key.indexOf('|') + 1)) as (string | null)[];
      const item: Record<string, AttributeValue> = {
        pk: { S: batchPk('page_views', 1, bucket, 'minute') },
        sk: { S: `${pad13(bucket)}#${JSON.stringify(dims)}` },
        view: { S: 'page_views' },
        version: { N: '1' },
        bucket: { N: String(bucket) },
        dims: { L: dims.map((d) => (d === null ? { NULL: true } : { S: d })) },
      };
      for (const [c, v] of Object.entries(values)) if (v !== null) item[c] = c.endsWith('__hll') ? { S: v } : { N: v };
      await cloud.clients.dynamodb.send(new PutItemCommand({ TableName: r.tables.batchViews, Item: item }));
    }
    await cloud.clients.doc.send(
      new UpdateCommand({
        TableName: r.tables.control,
        Key: versionKey(1),
        UpdateExpression: 'REMOVE #views.#v.#layout, #views.#v.#rollups',
        ExpressionAttributeNames: { '#views': 'views', '#v': 'page_views', '#layout': 'layout', '#rollups': 'rollups' },
      }),
    );

    // Queries still read it (the old rows, at every grain: no rollups to take).
    const deps = {
      doc: exactDocClient(cloud.clients.dynamodb),
      tables: { speed: r.tables.speed, batchViews: r.tables.batchViews, control: r.tables.control },
      settings: config.settings,
    };
    for (const grain of ['minute', 'day'] as const) {
      const read = await readView(deps, pageViews, T0 - 3 * DAY, T0 + DAY, now(), { batchOnly: true, grain });
      const got = new Map(read.batchRows.map((x) => [`${x.bucket}|${JSON.stringify(x.dims)}`, stateToColumns(pageViews, x.state)]));
      expect(sorted(normalized(got)), grain).toEqual(sorted(normalized(want)));
    }

    // The next run rebuilds page_views (merging into rows it cannot read would lose them) and increments the others.
    await add(pageViewsAt(now(), 3));
    const v2 = await run();
    expect(v2.views.page_views).toMatchObject({ mode: 'rebuild', reason: 'storage changed' });
    expect(v2.views.events_by_type).toMatchObject({ mode: 'increment' });
    expect(sorted(await readBatchRows(cloud.clients.dynamodb, r.tables.batchViews, pageViews, 2))).toEqual(
      sorted(batchOracle(pageViews, records, v2.cutoff!)),
    );
    expect((await getManifest({ doc: cloud.clients.doc, table: r.tables.control }, 2))?.views.page_views?.layout).toBe(STORAGE_LAYOUT);
  });

  it('rewrites only the blocks an increment touches, reads the rest from earlier writers, and squashes a long chain', async () => {
    const { r, config, records, add, run, now } = await world('b');
    const control = { doc: cloud.clients.doc, table: r.tables.control };
    const today = pad13(Math.floor(T0 / DAY) * DAY);
    const entry = async (v: number) => (await getManifest(control, v))?.views.page_views;
    await add(pageViewsAt(T0, 3));
    expect(await run()).toMatchObject({ state: 'SUCCEEDED', version: 1 });
    // Runs 2..4: one hour block each (13:00, 14:00, 15:00); each writer keeps the ones before it.
    const chains: (number[] | undefined)[] = [];
    for (let k = 1; k <= 3; k++) {
      await add(pageViewsAt(T0 + k * HOUR, 2));
      const v = await run();
      expect(v).toMatchObject({ state: 'SUCCEEDED', version: k + 1 });
      chains.push((await entry(k + 1))?.inherits?.[today]?.map(Number));
      expect(sorted(await readBatchRows(cloud.clients.dynamodb, r.tables.batchViews, pageViews, k + 1))).toEqual(
        sorted(batchOracle(pageViews, records, v.cutoff!)),
      );
    }
    expect(chains).toEqual([[1], [2, 1], [3, 2, 1]]);
    // Run 5 (17:00, and one page view late into 12:00, a block only the base holds) would inherit from 4 writers: it
    // carries the blocks of 4, 3 and 2 (13:00-15:00) into its own write and inherits from the base alone.
    await add(pageViewsAt(T0 + 5 * HOUR, 2, 5 * HOUR));
    const v5 = await run();
    expect(v5).toMatchObject({ state: 'SUCCEEDED', version: 5 });
    expect((await entry(5))?.inherits).toEqual({ [today]: [1] });
    const rows5 = batchOracle(pageViews, records, v5.cutoff!);
    const inBlocks = (hours: readonly number[]) =>
      [...rows5.keys()].filter((k) => hours.includes(Math.floor((Number(k.slice(0, k.indexOf('|'))) - T0) / HOUR))).length;
    // Written: the touched blocks (12:00 merged, 17:00 new) and the carried ones, nothing else of the day.
    expect(v5.views.page_views!.written).toBe(inBlocks([0, 1, 2, 3, 5]));
    expect(sorted(await readBatchRows(cloud.clients.dynamodb, r.tables.batchViews, pageViews, 5))).toEqual(sorted(rows5));
    await add(pageViewsAt(T0 + 6 * HOUR, 2));
    const v6 = await run();
    expect((await entry(6))?.inherits).toEqual({ [today]: [5, 1] });
    expect(v6.views.page_views!.written).toBe(1);
    // keepVersions 2 (5 and 6): the keys only 2..4 referenced are gone; the base's stays.
    const pks = new Set((await scanAll(cloud.clients.dynamodb, r.tables.batchViews)).map((i) => i.pk!.S!));
    for (const w of [2, 3, 4]) expect(pks.has(batchPartitionPk('page_views', w, Number(today))), `writer ${w}`).toBe(false);
    expect(pks.has(batchPartitionPk('page_views', 1, Number(today)))).toBe(true);

    // The query path (blocks from each writer, rollups merged per increment) answers as one rebuild of the same records.
    const other = await world('c');
    await other.add(records.map((x) => ({ ...x })));
    expect(await other.run()).toMatchObject({ state: 'SUCCEEDED', cutoff: v6.cutoff });
    const answers = async (res: typeof r) => {
      const deps = {
        doc: exactDocClient(cloud.clients.dynamodb),
        tables: { speed: res.tables.speed, batchViews: res.tables.batchViews, control: res.tables.control },
        views: DEMO_VIEWS,
        settings: config.settings,
        logger: silentLogger(),
        now,
      };
      const range = { from: new Date(T0 - DAY).toISOString(), to: new Date(T0 + DAY).toISOString() };
      const out: unknown[] = [];
      for (const grain of ['minute', 'hour', 'day', 'all'])
        out.push((await queryView(deps, 'page_views', { ...range, grain, ...(grain === 'minute' && { parts: '1' }) })).rows);
      return out;
    };
    const got = await answers(r);
    expect((got[0] as unknown[]).length).toBeGreaterThan(5);
    expect(got).toEqual(await answers(other.r));
  });
});
