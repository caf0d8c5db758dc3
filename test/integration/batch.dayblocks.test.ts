/**
 * Day blocks (docs/batch-layer.md "Blocks"): a minute view's partition is one day, so its day
 * rollups are one key per day; the batch also writes the day rows of each 30-day block under one
 * key, and a 90-day query at day grain reads a handful of Queries instead of 90. Through the real
 * archive handler, s3rver, DuckDB and dynalite: a rebuild over 92 days, then an increment that
 * touches the last day (its block is rewritten, the others stay shared); answers equal the
 * oracle and the answer from base rows, and no key is left unreferenced after retention.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryView } from '../../functions/api/query.ts';
import { exactDocClient, readView } from '../../functions/api/read-view.ts';
import { type Control, getManifest, getPointer, listManifests } from '../../functions/batch/control.ts';
import { partitionRefs } from '../../functions/batch/load.ts';
import { runBatchToCompletion } from '../../functions/batch/pipeline.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { isQueryError, parseQuery, shapeResponse } from '../../functions/core/query.ts';
import { silentLogger } from '../support/api.ts';
import {
  archiveHandler,
  batchesOf,
  batchOptions,
  freshResources,
  generateStream,
  kinesisEvent,
  removeStageDirs,
  type ShardRecord,
  scanAll,
  testConfig,
} from '../support/batch.ts';
import { startTestCloud, type TestCloud } from '../support/cloud.ts';
import { countedCopies, oracleRows } from '../support/oracle.ts';

const DAY = 86_400_000;
const T0 = Date.UTC(2030, 0, 3, 0, 0, 0);
const SETTINGS = { dedupHorizonSeconds: 3600, windowSeconds: 60, keepVersions: 2 };
const pageViews = DEMO_VIEWS.find((v) => v.name === 'page_views')!;

describe('day blocks', () => {
  let cloud: TestCloud;
  beforeAll(async () => {
    cloud = await startTestCloud();
  });
  afterAll(async () => {
    await cloud?.stop();
    removeStageDirs();
  });

  it('a 90-day day-grain query reads a few block Queries, exactly, through a rebuild and an increment', async () => {
    const records = generateStream({ events: 400, shards: 1, start: T0, span: 92 * DAY, duplicates: 0.05, late: 0.2, seed: 21 });
    const r = await freshResources(cloud.clients, 'd');
    const archive = archiveHandler(cloud.clients, r);
    const config = testConfig(r, cloud.names.TANDEM_STREAM_NAME!, DEMO_VIEWS, SETTINGS);
    const control: Control = { doc: cloud.clients.doc, table: r.tables.control };
    const deps = {
      doc: exactDocClient(cloud.clients.dynamodb),
      tables: { speed: r.tables.speed, batchViews: r.tables.batchViews, control: r.tables.control },
      views: DEMO_VIEWS,
      settings: config.settings,
      logger: silentLogger(),
      now: () => now,
    };
    let now = T0;
    // The rebuild covers the first 91.5 days; the increment adds the rest (the last day's partition and block).
    for (const at of [91.5 * DAY, 92 * DAY + 5 * 60_000]) {
      for (const b of batchesOf(
        records.filter((x) => x.arrival >= now && x.arrival < T0 + at),
        25,
      ))
        expect((await archive(kinesisEvent(b))).batchItemFailures).toEqual([]);
      now = T0 + at;
      const got = await runBatchToCompletion(cloud.clients, config, batchOptions(cloud.clients, r, { now: () => now }));
      expect(got.error).toBeUndefined();
      expect(got.state).toBe('SUCCEEDED');
      const pointer = (await getPointer(control))!;
      const entry = (await getManifest(control, pointer.version))!.views.page_views!;
      const blocks = Object.entries(entry.rollups?.dayBlocks ?? {});
      expect(blocks.length).toBeGreaterThanOrEqual(4);

      const copies = records.map((x: ShardRecord) => {
        const event = x.event as Record<string, unknown>;
        return { ...x, event, id: String(event.id) };
      });
      const events = countedCopies(
        copies.filter((c) => c.arrival < pointer.cutoff),
        SETTINGS.dedupHorizonSeconds * 1000,
      ).map((c) => c.event);
      const from = T0 + DAY;
      const to = from + 90 * DAY;
      for (const params of [
        { from: new Date(from).toISOString(), to: new Date(to).toISOString(), grain: 'day', groupBy: 'country' },
        { from: new Date(from).toISOString(), to: new Date(to).toISOString(), grain: 'all', groupBy: 'page' },
        { from: new Date(from + 5 * 3_600_000).toISOString(), to: new Date(to).toISOString(), grain: 'day', groupBy: 'page' },
      ]) {
        const spec = parseQuery(pageViews, params, now);
        if (isQueryError(spec)) throw new Error(spec.message);
        const answer = await queryView(deps, 'page_views', params);
        expect(answer.rows, JSON.stringify(params)).toEqual(oracleRows(pageViews, events, spec));
        const rolled = await readView(deps, pageViews, spec.from, spec.to, now, { grain: spec.grain, batchOnly: true });
        const base = await readView(deps, pageViews, spec.from, spec.to, now, { batchOnly: true });
        expect(shapeResponse(pageViews, spec, rolled.batchRows, [], pointer.cutoff)).toEqual(
          shapeResponse(pageViews, spec, base.batchRows, [], pointer.cutoff),
        );
        // 90 days = 4 day blocks at most (+ the unaligned edge's hour and minute rows), not 90 partitions.
        expect(rolled.stats.batch.requests, JSON.stringify(params)).toBeLessThanOrEqual(params.from.endsWith('00:00:00.000Z') ? 5 : 7);
        expect(base.stats.batch.requests).toBeGreaterThan(80);
      }
    }
    // Retention deleted the retired version's own day blocks; every key left is referenced by a kept version.
    const referenced = new Set<string>();
    for (const m of await listManifests(control)) {
      if (m.state === 'retired') continue;
      for (const [name, v] of Object.entries(m.views ?? {})) for (const ref of partitionRefs(name, m.version, v)) referenced.add(ref.pk);
    }
    const pks = new Set((await scanAll(cloud.clients.dynamodb, r.tables.batchViews)).map((i) => i.pk!.S!));
    expect([...pks].filter((pk) => !referenced.has(pk))).toEqual([]);
    const dayBlockPks = [...pks].filter((pk) => pk.startsWith('page_views@days#'));
    // The increment rewrote the last block only: the others are still the rebuild's (writer 1).
    expect(dayBlockPks.filter((pk) => pk.includes('#0000000002#'))).toHaveLength(1);
    expect(dayBlockPks.filter((pk) => pk.includes('#0000000001#')).length).toBeGreaterThanOrEqual(3);
  }, 300_000);
});
