/**
 * Incremental runs against real emulators and DuckDB, by example (the property test
 * batch.increment.property.test.ts covers random sequences): a partition an increment does
 * not touch stays with its writer and survives that writer's retirement while a kept version
 * references it; POST /batch/runs with a rebuild request, in process (the Step Functions
 * execution input is unit-tested in test/unit/batch.increment.test.ts); the run item's per-view
 * mode, reason and rows written.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getManifest, getPointer, getRun } from '../../functions/batch/control.ts';
import { runBatchToCompletion } from '../../functions/batch/pipeline.ts';
import { createBatchApiHandler } from '../../functions/batch-api.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { batchPartitionPk, pad13 } from '../../functions/core/keys.ts';
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
const MIN = 60_000;
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

  it('shares untouched partitions with their writer and keeps them while a kept version references them', async () => {
    const r = await freshResources(cloud.clients, 'n');
    const config = testConfig(r, cloud.names.TANDEM_STREAM_NAME!, DEMO_VIEWS, { keepVersions: 2 });
    const archive = archiveHandler(cloud.clients, r);
    const records: ShardRecord[] = [];
    let now = T0;
    const add = async (rs: ShardRecord[]) => {
      expect((await archive(kinesisEvent(rs))).batchItemFailures).toEqual([]);
      records.push(...rs);
      now = Math.max(...rs.map((x) => x.arrival)) + 2 * MIN;
    };
    const run = () => runBatchToCompletion(cloud.clients, config, batchOptions(cloud.clients, r, { now: () => now }));

    // Run 1: one page view three days late (its own day partition), the rest today.
    await add(pageViewsAt(T0, 5, 3 * DAY));
    const v1 = await run();
    expect(v1).toMatchObject({ state: 'SUCCEEDED', version: 1 });
    expect(v1.views.page_views).toMatchObject({ mode: 'rebuild', reason: 'new view', written: v1.views.page_views!.rows });
    const today = pad13(Math.floor(T0 / DAY) * DAY);
    const old = pad13(Math.floor((T0 - 3 * DAY) / DAY) * DAY);

    // Runs 2 and 3 touch today's partition only: the late day stays with writer 1.
    await add(pageViewsAt(now, 4));
    const v2 = await run();
    // Of its rows, the late day's one is shared, not written.
    expect(v2.views.page_views).toMatchObject({ mode: 'increment', written: v2.views.page_views!.rows - 1 });
    await add(pageViewsAt(now, 3));
    const v3 = await run();
    expect(v3).toMatchObject({ state: 'SUCCEEDED', version: 3 });
    expect((await getManifest({ doc: cloud.clients.doc, table: r.tables.control }, 3))?.views.page_views?.partitions).toEqual({
      [old]: 1,
      [today]: 3,
    });
    // Version 1 retired (keepVersions 2): its today rows are gone, its late day stays (2 and 3 reference it).
    expect((await getManifest({ doc: cloud.clients.doc, table: r.tables.control }, 1))?.state).toBe('retired');
    const pks = new Set((await scanAll(cloud.clients.dynamodb, r.tables.batchViews)).map((i) => i.pk!.S!));
    expect(pks.has(batchPartitionPk('page_views', 1, Number(old)))).toBe(true);
    expect(pks.has(batchPartitionPk('page_views', 1, Number(today)))).toBe(false);
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
      () => ({ clients: cloud.clients, config, env: {}, batch: batchOptions(cloud.clients, r, { now: () => now }) }),
      silentLogger(),
    );
    const post = async (body: unknown) => {
      const res = await handler(apiEvent('POST', '/batch/runs', { body: JSON.stringify(body) }), lambdaContext());
      return { status: res.statusCode, body: JSON.parse(res.body) as Record<string, unknown> };
    };
    expect(await post({ view: 'nope' })).toMatchObject({ status: 400, body: { field: 'view' } });
    await add(pageViewsAt(now, 2));
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
});
