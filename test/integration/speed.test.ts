/**
 * The speed layer against real dynalite and s3rver: each case ends with the
 * speed table equal to an oracle computed in the test over unique events.
 */
import { DeleteItemCommand, GetItemCommand, ScanCommand } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toStreamRecords } from '../../functions/adapters/kinesis-event.ts';
import { poisonKey } from '../../functions/adapters/poison.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { padSeq } from '../../functions/core/record.ts';
import { DEFAULT_SETTINGS, dedupExpiry, type Settings } from '../../functions/core/settings.ts';
import { count, max, min, sum, type View, view } from '../../functions/core/views.ts';
import { ItemCache } from '../../functions/speed/apply.ts';
import { createSpeedHandler } from '../../functions/speed/handler.ts';
import { processSpeedBatch } from '../../functions/speed/process.ts';
import { startTestCloud, type TestCloud } from '../support/cloud.ts';
import { countedCopies } from '../support/oracle.ts';
import {
  asObject,
  createSpeedTables,
  faultyClient,
  kinesisEvent,
  oracle,
  quietTelemetry,
  readSpeedTable,
  type ShardRecord,
  seqOf,
  shardId,
} from '../support/speed.ts';

const telemetry = quietTelemetry();
const WINDOW_MS = DEFAULT_SETTINGS.windowSeconds * 1000;
const T0 = Date.UTC(2025, 0, 15, 10, 0, 0);
const COUNTRIES = ['DE', 'FR', 'US'];
const PAGES = ['/', '/cart', '/docs'];

/** A demo-mix event: purchases, page views and signups, with arrival-like ts unless `lateMs` is given. */
function demoEvent(i: number, arrival: number, over: Record<string, unknown> = {}): Record<string, unknown> {
  const kind = i % 4;
  // user: page_views' distinct(user), so every exactly-once case also checks the sketches' read-modify-write.
  const base = { id: `ev-${i}`, ts: arrival - 800, country: COUNTRIES[i % 3], user: `u${(i * 7) % 11}` };
  if (kind === 0 || kind === 3) return { ...base, type: 'page_view', page: PAGES[(i >> 2) % 3], load_ms: 100 + ((i * 37) % 400), ...over };
  if (kind === 1) return { ...base, type: 'purchase', amount: [19.99, 5, 0.000000001, 1234.5][(i >> 2) % 4], ...over };
  return { ...base, type: 'signup', ...over };
}

/** n records of one shard, 1.5 s apart (40 to a window), starting at record `from`. */
function records(
  n: number,
  opts: { shard?: number; from?: number; event?: (i: number, arrival: number) => Record<string, unknown> } = {},
): ShardRecord[] {
  const shard = opts.shard ?? 0;
  const from = opts.from ?? 0;
  return Array.from({ length: n }, (_, k) => {
    const i = from + k;
    const arrival = T0 + i * 1500;
    return { shard: shardId(shard), seq: seqOf(shard, i), arrival, event: (opts.event ?? demoEvent)(i, arrival) };
  });
}

describe('speed layer against dynalite', () => {
  let cloud: TestCloud;
  let run = 0;
  beforeAll(async () => {
    cloud = await startTestCloud();
  });
  afterAll(async () => {
    await cloud?.stop();
  });

  /** Fresh tables and a handler over a fault-injecting wrapper of the real client. */
  async function setup(opts: { cache?: boolean; views?: View[]; settings?: Settings } = {}) {
    const views = opts.views ?? DEMO_VIEWS;
    const settings = opts.settings ?? DEFAULT_SETTINGS;
    const tables = await createSpeedTables(cloud.clients.dynamodb, `speed${++run}`);
    const faulty = faultyClient(cloud.clients.dynamodb);
    const deps = {
      ddb: faulty.client,
      s3: cloud.clients.s3,
      tables,
      failureBucket: cloud.names.TANDEM_FAILURE_BUCKET!,
      views,
      settings,
      cache: opts.cache === false ? undefined : new ItemCache(),
      ...telemetry,
    };
    const handler = createSpeedHandler(deps);
    const invoke = (recs: readonly ShardRecord[]) => handler(kinesisEvent(recs));
    const table = () => readSpeedTable(cloud.clients.dynamodb, tables.speed);
    const expectOracle = async (all: readonly ShardRecord[]) => {
      const want = oracle(views, all, WINDOW_MS, settings.dedupHorizonSeconds * 1000);
      expect(want.size).toBeGreaterThan(0);
      expect(asObject(await table())).toEqual(asObject(want));
    };
    return { tables, faulty, deps, handler, invoke, table, expectOracle };
  }

  it('counts a batch delivered 2 to 5 times exactly once', async () => {
    for (const times of [2, 3, 5]) {
      const s = await setup();
      const recs = records(30);
      const cold = createSpeedHandler({ ...s.deps, cache: new ItemCache() });
      for (let t = 0; t < times; t++) {
        // Alternate warm and cold containers: a redelivery may land anywhere.
        const res = t % 2 === 0 ? await s.invoke(recs) : await cold(kinesisEvent(recs));
        expect(res.batchItemFailures).toEqual([]);
      }
      await s.expectOracle(recs);
    }
  });

  it('recovers from a crash after k of n item writes on the retry', async () => {
    // Five arrival windows: an item per view, window and event hour, so more than ten items.
    const recs = records(200);
    const clean = await setup();
    expect((await clean.invoke(recs)).batchItemFailures).toEqual([]);
    const n = clean.faulty.counts.UpdateItemCommand! - 1; // less the progress write
    expect(n).toBeGreaterThan(10);
    for (const [k, kind] of [
      [0, 'throw'],
      [1, 'throw'],
      [Math.floor(n / 3), 'lost'],
      [Math.floor(n / 2), 'throw'],
      [n - 1, 'lost'],
    ] as const) {
      const s = await setup();
      s.faulty.arm({ after: k, kind, on: 'UpdateItemCommand' });
      const first = await s.invoke(recs);
      expect(s.faulty.armed).toBe(false);
      // The first record, never a later one: the whole batch is retried.
      expect(first.batchItemFailures).toEqual([{ itemIdentifier: recs[0]!.seq }]);
      const retry = await s.invoke(recs);
      expect(retry.batchItemFailures).toEqual([]);
      await s.expectOracle(recs);
    }
  });

  it('cuts the update of an item with many cells into runs under the 4 KB expression limit, exact across a crash between runs', async () => {
    const byUser = view({
      name: 'by_user',
      dimensions: ['user'],
      grain: 'minute',
      metrics: { n: count(), total: sum('amount'), lo: min('amount'), hi: max('amount') },
    });
    // 600 users in one arrival window and one event hour: one item of 600 cells.
    const recs: ShardRecord[] = Array.from({ length: 600 }, (_, i) => ({
      shard: shardId(0),
      seq: seqOf(0, i),
      arrival: T0 + i * 10,
      event: {
        id: `u-${i}`,
        type: 'purchase',
        ts: Math.floor(T0 / 3_600_000) * 3_600_000 + (i % 50) * 60_000,
        user: `user-${i}`,
        amount: (i % 7) + 0.5,
      },
    }));
    const clean = await setup({ views: [byUser] });
    expect((await clean.invoke(recs)).batchItemFailures).toEqual([]);
    await clean.expectOracle(recs);
    const scan = await cloud.clients.dynamodb.send(new ScanCommand({ TableName: clean.tables.speed }));
    expect(scan.Items).toHaveLength(1);
    const runs = clean.faulty.counts.UpdateItemCommand! - 1; // less the progress write
    expect(runs).toBeGreaterThan(3);
    for (const [after, kind] of [
      [1, 'throw'],
      [2, 'lost'],
      [runs - 1, 'lost'],
    ] as const) {
      const s = await setup({ views: [byUser] });
      s.faulty.arm({ after, kind, on: 'UpdateItemCommand' });
      expect((await s.invoke(recs)).batchItemFailures).toEqual([{ itemIdentifier: recs[0]!.seq }]);
      expect((await s.invoke(recs)).batchItemFailures).toEqual([]);
      await s.expectOracle(recs);
    }
  });

  it('fails the batch with a message naming the view when an item would pass the 400 KB item limit', async () => {
    const byUser = view({ name: 'by_user', dimensions: ['user'], grain: 'minute', metrics: { n: count(), total: sum('amount') } });
    const hour = Math.floor(T0 / 3_600_000) * 3_600_000;
    // 4,000 users in one arrival window of the current hour: one item of 4,000 cells of ~150 bytes.
    const recs: ShardRecord[] = Array.from({ length: 4000 }, (_, i) => ({
      shard: shardId(0),
      seq: seqOf(0, i),
      arrival: hour + 120_000 + i * 10,
      event: { id: `big-${i}`, type: 'purchase', ts: hour + 60_000, user: `customer-${String(i).padStart(5, '0')}@example.com`, amount: 1 },
    }));
    const s = await setup({ views: [byUser] });
    const errors: unknown[] = [];
    const log = { warn: () => {}, error: (_: string, attributes: Record<string, unknown>) => void errors.push(attributes.error) };
    const res = await processSpeedBatch(toStreamRecords(kinesisEvent(recs)), { ...s.deps, log });
    expect(res.failures).toEqual([recs[0]!.seq]);
    expect(JSON.stringify(errors)).toMatch(/of view by_user would pass DynamoDB's 400 KB item limit/);
  });

  it('recovers from a failed dedup write and from a crash before any write', async () => {
    for (const after of [0, 1, 2]) {
      const s = await setup();
      const recs = records(60);
      s.faulty.arm({ after, kind: after === 1 ? 'lost' : 'throw', on: 'any' });
      expect((await s.invoke(recs)).batchItemFailures).toEqual([{ itemIdentifier: recs[0]!.seq }]);
      expect((await s.invoke(recs)).batchItemFailures).toEqual([]);
      await s.expectOracle(recs);
    }
  });

  it('stays exact through bisected retries', async () => {
    const s = await setup();
    const recs = records(40);
    s.faulty.arm({ after: 5, kind: 'throw', on: 'UpdateItemCommand' });
    expect((await s.invoke(recs)).batchItemFailures).toHaveLength(1);
    // BisectBatchOnFunctionError: the halves, each failing once more, then their halves.
    const halves = [recs.slice(0, 20), recs.slice(20)];
    for (const half of halves) {
      // the half's claim read goes through; its next request lands but its answer is lost
      s.faulty.arm({ after: 1, kind: 'lost', on: 'any' });
      expect((await s.invoke(half)).batchItemFailures).toEqual([{ itemIdentifier: half[0]!.seq }]);
      expect(s.faulty.armed).toBe(false);
      for (const quarter of [half.slice(0, 10), half.slice(10)]) expect((await s.invoke(quarter)).batchItemFailures).toEqual([]);
    }
    await s.expectOracle(recs);
  });

  it('repairs a retry whose batch extends past the first attempt', async () => {
    const s = await setup();
    const recs = records(40);
    const deps = { ...s.deps, log: undefined };
    // Attempt 1 fully applies [0, 20) but its response is lost; the re-created mapping sends [0, 30).
    const a = await processSpeedBatch(toStreamRecords(kinesisEvent(recs.slice(0, 20))), deps);
    expect(a.failures).toEqual([]);
    // Every record is at or below the shard's progress mark: redelivered, no item request at all.
    const again = await processSpeedBatch(toStreamRecords(kinesisEvent(recs.slice(0, 20))), deps);
    expect(again.stats).toMatchObject({ redelivered: 20, counted: 0, duplicates: 0, claimsWritten: 0 });
    expect(again.stats.apply).toMatchObject({ requests: 0, written: 0 });
    // The re-created mapping's longer batch: only the records past the mark count.
    const b = await processSpeedBatch(toStreamRecords(kinesisEvent(recs.slice(0, 30))), { ...deps, cache: new ItemCache() });
    expect(b.failures).toEqual([]);
    expect(b.stats).toMatchObject({ redelivered: 20, counted: 10 });
    await s.expectOracle(recs.slice(0, 30));
    const c = await processSpeedBatch(toStreamRecords(kinesisEvent(recs.slice(10, 40))), deps);
    expect(c.failures).toEqual([]);
    expect(c.stats).toMatchObject({ redelivered: 20, counted: 10 });
    await s.expectOracle(recs);
    // A cold container repairs from the table, a warm one from what it knows: items half-applied by a crash.
    for (const cache of [new ItemCache(), undefined]) {
      const s1 = await setup();
      const d1 = { ...s1.deps, log: undefined };
      s1.faulty.arm({ after: 3, kind: 'lost', on: 'UpdateItemCommand' });
      expect((await processSpeedBatch(toStreamRecords(kinesisEvent(recs.slice(0, 30))), d1)).failures).toHaveLength(1);
      const r = await processSpeedBatch(toStreamRecords(kinesisEvent(recs)), { ...d1, ...(cache && { cache }) });
      expect(r.failures).toEqual([]);
      expect(r.stats.apply.repairs + r.stats.apply.skipped).toBeGreaterThan(0);
      await s1.expectOracle(recs);
    }
    // A crash half-way through an extended batch, then a still longer retry.
    const s2 = await setup();
    s2.faulty.arm({ after: 3, kind: 'lost', on: 'UpdateItemCommand' });
    expect((await s2.invoke(recs.slice(0, 25))).batchItemFailures).toHaveLength(1);
    expect((await s2.invoke(recs)).batchItemFailures).toEqual([]);
    await s2.expectOracle(recs);
  });

  it('counts an id once across two batches, two requests and within one batch', async () => {
    const s = await setup();
    const event = (i: number, arrival: number) => {
      // ids repeat: ev-0..ev-9 are sent again (another request, other values) 10 and 25 records later.
      const e = demoEvent(i, arrival);
      if (i >= 10 && i < 20) return { ...demoEvent(i - 10, arrival), amount: 999, load_ms: 1 };
      if (i >= 25 && i < 30) return { ...demoEvent(i - 25, arrival), country: 'XX' };
      return e;
    };
    const recs = records(40, { event });
    const core = { ...s.deps, log: undefined };
    const first = await processSpeedBatch(toStreamRecords(kinesisEvent(recs.slice(0, 15))), core);
    expect(first.stats.duplicates).toBe(5); // ev-0..ev-4 twice in one batch
    const second = await processSpeedBatch(toStreamRecords(kinesisEvent(recs.slice(15))), core);
    expect(second.stats.duplicates).toBe(10); // ev-5..ev-9 again, ev-0..ev-4 a third time
    await s.expectOracle(recs);
    // The first copy counted: no country XX anywhere.
    expect([...(await s.table()).keys()].some((k) => k.includes('"XX"'))).toBe(false);
  });

  describe('the dedup rule with a horizon (H = 60 s)', () => {
    const settings: Settings = { ...DEFAULT_SETTINGS, dedupHorizonSeconds: 60 };
    const H = 60_000;
    /**
     * Copies of a few ids among other events, on one shard, at these seconds after T0: x at 0, 30 (inside H),
     * 85 (beyond H of the counted copy, within H of the one at 30: does not count) and 150 (counts again);
     * y a chain every 50 s (only the first counts); z at 10 and 71 (beyond H: both count); w at 20 and 80
     * (exactly H: does not count). Later copies carry other values (country XX).
     */
    const plan: [string, number][] = [
      ['x', 0],
      ['y', 5],
      ['z', 10],
      ['w', 20],
      ['x', 30],
      ['y', 55],
      ['z', 71],
      ['w', 80],
      ['x', 85],
      ['y', 105],
      ['x', 150],
      ['y', 155],
      ['y', 205],
    ];
    const recs: ShardRecord[] = plan
      .flatMap(([id, at], k) => [
        [id, at * 1000],
        [`solo-${k}`, at * 1000 + 400],
      ])
      .map(([id, at], i) => {
        const arrival = T0 + Number(at);
        const seen = plan.findIndex(([x]) => x === id) < Math.floor(i / 2);
        return { shard: shardId(0), seq: seqOf(0, i), arrival, event: { ...demoEvent(i, arrival), id, ...(seen && { country: 'XX' }) } };
      });
    const copiesOf = (rs: readonly ShardRecord[]) => rs.map((r) => ({ ...r, id: String((r.event as { id: string }).id) }));

    it('counts a copy iff no copy of its id arrived within H before it, across batches and inside one', async () => {
      const counted = countedCopies(copiesOf(recs), H).map((c) => `${c.id}@${(c.arrival - T0) / 1000}`);
      expect(counted.filter((c) => !c.startsWith('solo'))).toEqual(['x@0', 'y@5', 'z@10', 'w@20', 'z@71', 'x@150']);
      for (const size of [1, 3, recs.length]) {
        const s = await setup({ settings });
        let duplicates = 0;
        for (let i = 0; i < recs.length; i += size) {
          const res = await processSpeedBatch(toStreamRecords(kinesisEvent(recs.slice(i, i + size))), { ...s.deps, log: undefined });
          expect(res.failures).toEqual([]);
          duplicates += res.stats.duplicates;
        }
        expect(duplicates).toBe(recs.length - counted.length);
        await s.expectOracle(recs);
        // The claim holds the latest copy (a duplicate refreshes it) and expires H plus the longest record age after it.
        const claim = await cloud.clients.dynamodb.send(new GetItemCommand({ TableName: s.tables.dedup, Key: { id: { S: 'y' } } }));
        const latest = recs.filter((r) => (r.event as { id: string }).id === 'y').at(-1)!;
        expect(claim.Item).toMatchObject({
          seq: { S: padSeq(latest.seq) },
          arrival: { N: String(latest.arrival) },
          expiresAt: { N: String(dedupExpiry(latest.arrival, settings)) },
        });
      }
    });

    it('reaches the same decisions when a batch is retried after its claims were written, whole, shorter or longer', async () => {
      // The first attempt holds copies more than H apart (several count in one batch), crashes after its claims.
      for (const [fault, retries] of [
        [
          { after: 2, kind: 'throw', on: 'UpdateItemCommand' },
          [
            [0, 16],
            [16, 26],
          ],
        ],
        [
          { after: 0, kind: 'throw', on: 'UpdateItemCommand' },
          [
            [0, 5],
            [5, 11],
            [11, 26],
          ],
        ],
        [{ after: 4, kind: 'lost', on: 'UpdateItemCommand' }, [[0, 26]]],
        [
          { after: 1, kind: 'lost', on: 'any' },
          [
            [0, 3],
            [3, 26],
          ],
        ],
      ] as const) {
        const s = await setup({ settings });
        s.faulty.arm(fault);
        expect((await s.invoke(recs.slice(0, 16))).batchItemFailures).toEqual([{ itemIdentifier: recs[0]!.seq }]);
        expect(s.faulty.armed).toBe(false);
        for (const [a, b] of retries) expect((await s.invoke(recs.slice(a, b))).batchItemFailures).toEqual([]);
        await s.expectOracle(recs);
      }
    });

    it('leaves redelivered records (at or below the progress mark) counted as they were', async () => {
      const s = await setup({ settings });
      const deps = { ...s.deps, log: undefined };
      for (const [a, b] of [
        [0, 9],
        [9, 20],
      ] as const)
        expect((await processSpeedBatch(toStreamRecords(kinesisEvent(recs.slice(a, b))), deps)).failures).toEqual([]);
      // A re-created mapping sends everything again, split otherwise, from a cold container; it overlaps new records.
      for (const [a, b] of [
        [4, 13],
        [13, 26],
      ] as const) {
        const res = await processSpeedBatch(toStreamRecords(kinesisEvent(recs.slice(a, b))), { ...deps, cache: new ItemCache() });
        expect(res.failures).toEqual([]);
        expect(res.stats.redelivered).toBe(Math.max(0, Math.min(b, 20) - a));
      }
      await s.expectOracle(recs);
    });
  });

  it('counts late events in their old bucket under their new arrival window', async () => {
    const s = await setup();
    const lateBy = [0, 3 * 3_600_000, 26 * 3_600_000, 90_000];
    const recs = records(24, { event: (i, arrival) => demoEvent(i, arrival, { ts: new Date(arrival - lateBy[i % 4]!).toISOString() }) });
    expect((await s.invoke(recs)).batchItemFailures).toEqual([]);
    await s.expectOracle(recs);
    const keys = [...(await s.table()).keys()].map((k) => k.split('|'));
    const late = keys.filter(([, window, bucket]) => Number(window) - Number(bucket) > 24 * 3_600_000);
    expect(late.length).toBeGreaterThan(0);
    expect(late.every(([, window]) => Number(window) >= T0)).toBe(true);
  });

  it('keeps decimal sums with 9 fractional digits exact', async () => {
    const s = await setup();
    const amounts = [0.000000001, 0.123456789, 99999.999999999, 123456.000000001, 0.1, 0.2, 7.000000003];
    const recs = records(70, {
      event: (i, arrival) => ({ id: `d-${i}`, type: 'purchase', ts: arrival, country: 'DE', amount: amounts[i % amounts.length] }),
    });
    for (const part of [recs.slice(0, 23), recs.slice(23, 51), recs.slice(51)])
      expect((await s.invoke(part)).batchItemFailures).toEqual([]);
    await s.expectOracle(recs);
    const items = [...(await s.table()).entries()].filter(([k]) => k.startsWith('revenue_by_country|'));
    const units = (text: string) => {
      const [int, frac = ''] = text.split('.');
      return BigInt(`${int}${frac.padEnd(9, '0')}`);
    };
    const sum = items.reduce((acc, [, v]) => acc + units(v.revenue__sum!), 0n);
    // 10 x the seven amounts (223463.423456793, added up by hand), in units of 1e-9.
    expect(sum).toBe(2_234_634_234_567_930n);
    expect(items.map(([, v]) => v.min_order__min).sort()[0]).toBe('0.000000001');
  });

  it('keeps min and max exact whether or not the writer knows the item', async () => {
    for (const cache of [true, false]) {
      const s = await setup({ cache });
      const amounts = [50, 10, 70, 10, 5, 80, 60, 90, 1, 100];
      const recs = records(40, {
        event: (i, arrival) => ({ id: `m-${i}`, type: 'purchase', ts: arrival, country: 'FR', amount: amounts[i % 10] }),
      });
      for (let i = 0; i < recs.length; i += 4) expect((await s.invoke(recs.slice(i, i + 4))).batchItemFailures).toEqual([]);
      // and a redelivery of everything, split differently
      for (let i = 0; i < recs.length; i += 7) expect((await s.invoke(recs.slice(i, i + 7))).batchItemFailures).toEqual([]);
      await s.expectOracle(recs);
    }
  });

  it('processes two shards in parallel, each with its own faults', async () => {
    const s = await setup();
    const a = records(36, { shard: 0 });
    const b = records(36, { shard: 1, from: 1000 });
    const other = faultyClient(cloud.clients.dynamodb);
    const hb = createSpeedHandler({ ...s.deps, ddb: other.client, cache: new ItemCache() });
    s.faulty.arm({ after: 2, kind: 'lost', on: 'UpdateItemCommand' });
    other.arm({ after: 1, kind: 'throw', on: 'any' });
    const [ra, rb] = await Promise.all([s.invoke(a), hb(kinesisEvent(b))]);
    expect(ra.batchItemFailures).toEqual([{ itemIdentifier: a[0]!.seq }]);
    expect(rb.batchItemFailures).toEqual([{ itemIdentifier: b[0]!.seq }]);
    const [ra2, rb2] = await Promise.all([s.invoke(a), hb(kinesisEvent(b))]);
    expect([...ra2.batchItemFailures, ...rb2.batchItemFailures]).toEqual([]);
    await s.expectOracle([...a, ...b]);
    const shards = new Set([...(await s.table()).keys()].map((k) => k.split('|').at(-1)));
    expect(shards).toEqual(new Set([shardId(0), shardId(1)]));
  });

  it('sends poison to the failures bucket, counts it once and counts the records after it', async () => {
    const s = await setup();
    const good = records(12);
    const recs: ShardRecord[] = [...good];
    const bad = [
      { at: 3, event: Buffer.from('{"id": "x", not json') },
      { at: 7, event: { type: 'purchase', ts: T0, amount: 5 } },
      { at: 9, event: { id: 'late', type: 'page_view', ts: 'yesterday' } },
    ];
    for (const [n, b] of bad.entries()) {
      recs.splice(b.at, 0, { shard: shardId(0), seq: seqOf(0, 500 + n), arrival: T0 + 1, event: b.event });
    }
    // keep sequence numbers increasing through the batch
    const ordered = recs.map((r, i) => ({ ...r, seq: seqOf(0, i) }));
    for (let t = 0; t < 2; t++) expect((await s.invoke(ordered)).batchItemFailures).toEqual([]);
    await s.expectOracle(ordered);
    const poisoned = bad.map((b) => ordered[b.at]!);
    expect(poisoned.map((p) => p.event)).toEqual(bad.map((b) => b.event));
    const reasons: string[] = [];
    for (const p of poisoned) {
      const obj = await cloud.clients.s3.send(
        new GetObjectCommand({ Bucket: cloud.names.TANDEM_FAILURE_BUCKET!, Key: poisonKey('speed', p.shard, padSeq(p.seq)) }),
      );
      const body = JSON.parse(await obj.Body!.transformToString());
      expect(body.shard).toBe(p.shard);
      expect(body.seq).toBe(padSeq(p.seq));
      reasons.push(body.field);
    }
    expect(reasons).toEqual(['data', 'id', 'ts']);
    const stats = await cloud.clients.dynamodb.send(
      new GetItemCommand({ TableName: s.tables.control, Key: { pk: { S: 'stats' }, sk: { S: 'poison' } } }),
    );
    expect(stats.Item?.count?.N).toBe('3');
  });

  it('writes an item whole again when it vanished under a warm cache', async () => {
    const s = await setup();
    const recs = records(30);
    expect((await s.invoke(recs.slice(0, 15))).batchItemFailures).toEqual([]);
    // As if TTL had deleted every item the warm container knows.
    const scan = await cloud.clients.dynamodb.send(new ScanCommand({ TableName: s.tables.speed }));
    for (const item of scan.Items ?? [])
      await cloud.clients.dynamodb.send(new DeleteItemCommand({ TableName: s.tables.speed, Key: { pk: item.pk!, sk: item.sk! } }));
    expect((await s.invoke(recs.slice(15))).batchItemFailures).toEqual([]);
    await s.expectOracle(recs.slice(15));
    const again = await cloud.clients.dynamodb.send(new ScanCommand({ TableName: s.tables.speed }));
    expect(again.Items?.every((i) => i.view?.S && i.window?.N && i.slot?.N && i.shard?.S && i.expiresAt?.N)).toBe(true);
  });

  it('records progress per shard and never moves it back', async () => {
    const s = await setup();
    const recs = records(20);
    await s.invoke(recs);
    await s.invoke(recs.slice(0, 10));
    const got = await cloud.clients.dynamodb.send(
      new GetItemCommand({ TableName: s.tables.control, Key: { pk: { S: 'speed' }, sk: { S: shardId(0) } } }),
    );
    expect(got.Item?.seq?.S).toBe(padSeq(recs[19]!.seq));
    expect(Number(got.Item?.arrival?.N)).toBe(recs[19]!.arrival);
  });

  it('rejects an event that is not a Kinesis batch', async () => {
    const s = await setup();
    await expect(s.handler({ Records: [{ eventSource: 'aws:sqs' }] })).rejects.toThrow(/not a Kinesis event: Records\.0/);
  });
});
