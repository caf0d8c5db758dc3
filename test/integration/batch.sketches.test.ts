/**
 * Sketches apart (layout blocks-3, core/blocks.ts form `apart`): a block item holds its rows' estimates in `rows` and
 * the sketch texts per bucket beside them, and a query reads the sketches only of the rows it merges. Through the real
 * archive handler, s3rver, DuckDB, dynalite and the real speed layer: answers read with estimates equal the answers
 * read with every sketch and the oracle, a speed cell days behind the cutoff (a second read of its sketches) included;
 * and a version written in blocks-2 (every sketch inline) is still read, and incremented rather than rebuilt.
 */
import { type AttributeValue, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryView } from '../../functions/api/query.ts';
import { exactDocClient, readView, SKETCH_MARGIN_MS } from '../../functions/api/read-view.ts';
import { getManifest } from '../../functions/batch/control.ts';
import { rowsOfItems, STORAGE_LAYOUT } from '../../functions/batch/load.ts';
import { runBatchToCompletion } from '../../functions/batch/pipeline.ts';
import { encodeBlocks } from '../../functions/core/blocks.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { versionKey } from '../../functions/core/keys.ts';
import { isQueryError, parseQuery, type QuerySpec, shapeResponse } from '../../functions/core/query.ts';
import type { Grain } from '../../functions/core/time.ts';
import { processSpeedBatch } from '../../functions/speed/process.ts';
import { silentLogger } from '../support/api.ts';
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
import { oracleRows } from '../support/oracle.ts';

const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const T0 = Date.UTC(2030, 6, 20, 12, 0, 0);
const pageViews = DEMO_VIEWS.find((v) => v.name === 'page_views')!;

describe('sketches apart', () => {
  let cloud: TestCloud;
  beforeAll(async () => {
    cloud = await startTestCloud();
  });
  afterAll(async () => {
    await cloud?.stop();
    removeStageDirs();
  });

  let n = 0;
  /** `count` page views arriving from `at` on, `every` ms apart, each `lateBy` ms late, of a few pages, countries and users. */
  const pageViewsAt = (at: number, count: number, every: number, lateBy = 500): ShardRecord[] =>
    Array.from({ length: count }, (_, i) => {
      const k = n++;
      const arrival = at + i * every;
      return {
        shard: shardId(0),
        seq: seqOf(0, k),
        arrival,
        event: {
          id: `pv-${k}`,
          type: 'page_view',
          ts: arrival - lateBy,
          page: ['/', '/a', '/b'][k % 3],
          country: ['DE', 'US'][k % 2],
          user: `u-${k % 41}`,
          load_ms: 10 + (k % 7),
        },
      };
    });

  /**
   * Fresh resources, the archive and the speed layer fed what `add` feeds (as the stream feeds both: answers then count
   * every event, the batch's arrivals before its cutoff and the speed layer's after); the clock 2 minutes past it.
   */
  async function world(prefix: string) {
    const r = await freshResources(cloud.clients, prefix);
    const config = testConfig(r, cloud.names.TANDEM_STREAM_NAME!, DEMO_VIEWS, { keepVersions: 2 });
    const archive = archiveHandler(cloud.clients, r);
    const records: ShardRecord[] = [];
    let clock = T0;
    const now = () => clock;
    const add = async (rs: ShardRecord[]) => {
      expect((await archive(kinesisEvent(rs))).batchItemFailures).toEqual([]);
      for (let i = 0; i < rs.length; i += 100) {
        const res = await processSpeedBatch(
          rs.slice(i, i + 100).map((s) => ({ shard: s.shard, seq: s.seq, arrival: s.arrival, data: Buffer.from(JSON.stringify(s.event)) })),
          {
            ddb: cloud.clients.dynamodb,
            s3: cloud.clients.s3,
            tables: { speed: r.tables.speed, dedup: r.tables.dedup, control: r.tables.control },
            failureBucket: r.buckets.failures,
            views: DEMO_VIEWS,
            settings: config.settings,
            now,
          },
        );
        expect(res.failures).toEqual([]);
      }
      records.push(...rs);
      clock = Math.max(...rs.map((x) => x.arrival)) + 2 * MIN;
    };
    const run = () => runBatchToCompletion(cloud.clients, config, batchOptions(cloud.clients, r, { now }));
    const deps = {
      doc: exactDocClient(cloud.clients.dynamodb),
      tables: { speed: r.tables.speed, batchViews: r.tables.batchViews, control: r.tables.control },
      views: DEMO_VIEWS,
      settings: config.settings,
      logger: silentLogger(),
      now,
    };
    return { r, config, records, add, run, now, deps };
  }

  const spec = (params: Record<string, string>, now: number): QuerySpec => {
    const s = parseQuery(pageViews, params, now);
    if (isQueryError(s)) throw new Error(`${s.field} ${s.message}`);
    return s;
  };
  const unique = (records: readonly ShardRecord[]) => [
    ...new Map(records.map((x) => [(x.event as Record<string, unknown>).id, x.event as Record<string, unknown>])).values(),
  ];

  it('reads the sketches of the rows it merges only, and answers as with every sketch and as the oracle', async () => {
    const w = await world('s');
    // Six days of history, then a rebuild.
    await w.add(pageViewsAt(T0 - 6 * DAY, 600, (6 * DAY) / 600));
    const v1 = await w.run();
    expect(v1).toMatchObject({ state: 'SUCCEEDED', version: 1 });
    expect((await getManifest({ doc: cloud.clients.doc, table: w.r.tables.control }, 1))?.views.page_views?.layout).toBe('blocks-3');
    const cutoff = v1.cutoff!;
    // Past the cutoff, through the speed layer: on time, and some two days late (far behind the cutoff's margin).
    await w.add(pageViewsAt(w.now(), 20, 1000));
    await w.add(pageViewsAt(w.now(), 5, 1000, 2 * DAY));
    expect(2 * DAY).toBeGreaterThan(SKETCH_MARGIN_MS);

    const now = w.now();
    const events = unique(w.records);
    let estimated = 0;
    for (const [grain, range] of [
      ['day', 7 * DAY],
      ['hour', 3 * DAY],
      ['minute', 2 * HOUR],
    ] as const) {
      const step = grain === 'day' ? DAY : grain === 'hour' ? HOUR : MIN;
      const to = Math.ceil(now / step) * step;
      for (const groupBy of [undefined, 'page']) {
        const params = { from: new Date(to - range).toISOString(), to: new Date(to).toISOString(), grain, ...(groupBy && { groupBy }) };
        const s = spec(params, now);
        const answer = await queryView(w.deps, 'page_views', params);
        // Every sketch read: the answer the rows read with estimates must equal.
        const full = await readView(w.deps, pageViews, s.from, s.to, now, { grain: s.grain });
        expect(answer.rows, `${grain} ${groupBy}`).toEqual(shapeResponse(pageViews, s, full.batchRows, full.speedRows, cutoff));
        expect(answer.rows, `${grain} ${groupBy}`).toEqual(oracleRows(pageViews, events, s));
        const read = await readView(w.deps, pageViews, s.from, s.to, now, { grain: s.grain, groupBy: s.groupBy });
        const alone = read.batchRows.filter((x) => x.state.users?.hll?.knownEstimate != null).length;
        if (groupBy !== undefined) expect(alone).toBe(0);
        estimated += alone;
        // The late speed cells fall in buckets read as estimates: their sketches are read again (one more request).
        if (grain !== 'minute' && groupBy === undefined) {
          expect(alone).toBeGreaterThan(0);
          expect(read.stats.batch.requests).toBeGreaterThan(full.stats.batch.requests);
        }
      }
    }
    expect(estimated).toBeGreaterThan(0);
  });

  it('reads a blocks-2 version (every sketch inline) and increments it, writing blocks-3', async () => {
    const w = await world('l');
    await w.add(pageViewsAt(T0 - 3 * DAY, 300, (3 * DAY) / 300));
    const v1 = await w.run();
    expect(v1).toMatchObject({ state: 'SUCCEEDED', version: 1 });
    const now = w.now();
    const asked = (['minute', 'hour', 'day'] as const).map((grain) => {
      const step = grain === 'day' ? DAY : grain === 'hour' ? HOUR : MIN;
      const to = Math.ceil(now / step) * step;
      return { from: new Date(to - 4 * DAY).toISOString(), to: new Date(to).toISOString(), grain };
    });
    const before = await Promise.all(asked.map((p) => queryView(w.deps, 'page_views', p)));

    // Version 1's page_views as blocks-2 wrote it: each block's sketches inline in `rows`, no sketch attributes.
    let rewritten = 0;
    for (const item of await scanAll(cloud.clients.dynamodb, w.r.tables.batchViews)) {
      if (!item.pk!.S!.startsWith('page_views') || item.rows === undefined) continue;
      const grain = (item.grain?.S ?? pageViews.grain) as Grain;
      const [block, more] = encodeBlocks(pageViews, grain, rowsOfItems(pageViews, [item]), Number.POSITIVE_INFINITY, 'inline');
      expect(more).toBeUndefined();
      const inline: Record<string, AttributeValue> = Object.fromEntries(Object.entries(item).filter(([a]) => !/^h\d+$/.test(a)));
      expect(Object.keys(inline).length).toBeLessThan(Object.keys(item).length);
      await cloud.clients.dynamodb.send(
        new PutItemCommand({ TableName: w.r.tables.batchViews, Item: { ...inline, rows: { S: block!.rows } } }),
      );
      rewritten++;
    }
    expect(rewritten).toBeGreaterThan(0);
    await cloud.clients.doc.send(
      new UpdateCommand({
        TableName: w.r.tables.control,
        Key: versionKey(1),
        UpdateExpression: 'SET #views.#v.#layout = :l',
        ExpressionAttributeNames: { '#views': 'views', '#v': 'page_views', '#layout': 'layout' },
        ExpressionAttributeValues: { ':l': 'blocks-2' },
      }),
    );
    // Read as before (the sketches now inline), at every grain.
    expect(await Promise.all(asked.map((p) => queryView(w.deps, 'page_views', p)))).toEqual(before);

    // The next run merges into it (a block it touches is rewritten in blocks-3; the others stay inline, shared).
    await w.add(pageViewsAt(w.now(), 10, 1000));
    await w.add(pageViewsAt(w.now(), 5, 1000, DAY));
    const v2 = await w.run();
    expect(v2.views.page_views).toMatchObject({ mode: 'increment' });
    expect((await getManifest({ doc: cloud.clients.doc, table: w.r.tables.control }, 2))?.views.page_views?.layout).toBe(STORAGE_LAYOUT);
    expect(sorted(await readBatchRows(cloud.clients.dynamodb, w.r.tables.batchViews, pageViews, 2))).toEqual(
      sorted(batchOracle(pageViews, w.records, v2.cutoff!)),
    );
    const events = unique(w.records);
    for (const p of asked) {
      const answer = await queryView(w.deps, 'page_views', p);
      expect(answer.rows, p.grain).toEqual(oracleRows(pageViews, events, spec(p, w.now())));
    }
  });
});
