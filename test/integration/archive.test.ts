/**
 * The raw archive against real emulators (s3rver, dynalite): idempotent
 * objects, a checkpoint that only moves forward, crashes between the object
 * and the checkpoint, overlapping extents, poison records, hour boundaries.
 * The batch run at the end of several tests proves the archive's content is
 * exact (version rows == oracle over unique events).
 */

import { gunzipSync } from 'node:zlib';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type KinesisRecordInput, kinesisEventFactory, kinesisSource, kplAggregate } from '../../functions/adapters/kinesis-records.ts';
import { HOUR_MS, parseRawObjectKey } from '../../functions/archive/layout.ts';
import { runBatchToCompletion } from '../../functions/batch/pipeline.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { recordPosition } from '../../functions/core/record.ts';
import {
  archiveHandler,
  batchesOf,
  batchOptions,
  batchOracle,
  freshResources,
  generateStream,
  kinesisEvent,
  type Resources,
  readBatchRows,
  removeStageDirs,
  type ShardRecord,
  seqOf,
  shardId,
  sorted,
  testConfig,
} from '../support/batch.ts';
import { startTestCloud, type TestCloud } from '../support/cloud.ts';

const T0 = Date.UTC(2030, 0, 15, 10, 0, 0);

describe('archive', () => {
  let cloud: TestCloud;
  beforeAll(async () => {
    cloud = await startTestCloud();
  });
  afterAll(async () => {
    await cloud?.stop();
    removeStageDirs();
  });

  const stream = () => cloud.names.TANDEM_STREAM_NAME!;

  async function keys(r: Resources): Promise<string[]> {
    const out = await cloud.clients.s3.send(new ListObjectsV2Command({ Bucket: r.buckets.raw, Prefix: 'raw/' }));
    return (out.Contents ?? []).map((o) => o.Key!).sort();
  }

  async function lines(r: Resources, key: string): Promise<Record<string, unknown>[]> {
    const got = await cloud.clients.s3.send(new GetObjectCommand({ Bucket: r.buckets.raw, Key: key }));
    const text = gunzipSync(Buffer.from(await got.Body!.transformToByteArray())).toString('utf8');
    return text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  async function checkpoint(r: Resources, shard: string) {
    const got = await cloud.clients.dynamodb.send(
      new GetItemCommand({ TableName: r.tables.control, Key: { pk: { S: 'checkpoint' }, sk: { S: shard } }, ConsistentRead: true }),
    );
    return got.Item ? { seq: got.Item.seq!.S!, arrival: Number(got.Item.arrival!.N) } : undefined;
  }

  /** Runs a batch with the clock after every record, and checks every demo view against the oracle. */
  async function expectBatchMatches(r: Resources, records: readonly ShardRecord[]) {
    const now = Math.max(...records.map((x) => x.arrival)) + 120_000;
    const config = testConfig(r, stream(), DEMO_VIEWS);
    const run = await runBatchToCompletion(cloud.clients, config, batchOptions(cloud.clients, r, { now: () => now }));
    expect(run.error).toBeUndefined();
    expect(run.state).toBe('SUCCEEDED');
    for (const view of DEMO_VIEWS) {
      const want = batchOracle(view, records, run.cutoff!);
      expect(want.size).toBeGreaterThan(0);
      expect(sorted(await readBatchRows(cloud.clients.dynamodb, r.tables.batchViews, view, run.version!))).toEqual(sorted(want));
    }
  }

  it('writes one gzip NDJSON object per batch and hour, with every RawRecord field, then the checkpoint', async () => {
    const r = await freshResources(cloud.clients);
    const handler = archiveHandler(cloud.clients, r);
    const records = generateStream({ events: 40, shards: 1, start: T0, span: 60_000, seed: 3 });
    const out = await handler(kinesisEvent(records));
    expect(out.batchItemFailures).toEqual([]);
    const [key, ...rest] = await keys(r);
    expect(rest).toEqual([]);
    const name = parseRawObjectKey(key!)!;
    expect(key).toMatch(/^raw\/dt=2030-01-15\/hr=10\/shardId-000000000000\/\d{64}-\d{64}\.json\.gz$/);
    expect(name.firstSeq).toBe(seqOf(0, 0).padStart(64, '0'));
    expect(name.lastSeq).toBe(seqOf(0, 39).padStart(64, '0'));
    const got = await lines(r, key!);
    expect(got).toHaveLength(40);
    expect(Object.keys(got[0]!).sort()).toEqual(['arrival', 'fields', 'id', 'num', 'seq', 'shard', 'ts', 'type']);
    expect(got.map((l) => l.arrival)).toEqual(records.map((x) => x.arrival));
    expect(await checkpoint(r, shardId(0))).toEqual({ seq: seqOf(0, 39).padStart(64, '0'), arrival: records[39]!.arrival });
  });

  it('a batch delivered three times leaves one object, one manifest entry and the same checkpoint', async () => {
    const r = await freshResources(cloud.clients);
    const handler = archiveHandler(cloud.clients, r);
    const records = generateStream({ events: 60, shards: 2, start: T0, span: 120_000, seed: 4 });
    for (let i = 0; i < 3; i++)
      for (const b of batchesOf(records, 1000)) expect((await handler(kinesisEvent(b))).batchItemFailures).toEqual([]);
    expect(await keys(r)).toHaveLength(2);
    const manifest = await cloud.clients.dynamodb.send(
      new GetItemCommand({
        TableName: r.tables.control,
        Key: { pk: { S: 'archive' }, sk: { S: `${String(Math.floor(T0 / HOUR_MS) * HOUR_MS).padStart(13, '0')}#${shardId(0)}` } },
      }),
    );
    expect(manifest.Item?.objects?.SS).toHaveLength(1);
    await expectBatchMatches(r, records);
  });

  it('the checkpoint only moves forward: an older batch redelivered late changes nothing', async () => {
    const r = await freshResources(cloud.clients);
    const handler = archiveHandler(cloud.clients, r);
    const records = generateStream({ events: 30, shards: 1, start: T0, span: 60_000, seed: 5 });
    const [a, b] = [records.slice(0, 15), records.slice(15)];
    await handler(kinesisEvent(a));
    await handler(kinesisEvent(b));
    const after = await checkpoint(r, shardId(0));
    expect(after?.seq).toBe(seqOf(0, 29).padStart(64, '0'));
    expect((await handler(kinesisEvent(a))).batchItemFailures).toEqual([]);
    expect(await checkpoint(r, shardId(0))).toEqual(after);
  });

  it('a crash between the object write and the checkpoint is harmless: the retry rewrites the same key', async () => {
    const r = await freshResources(cloud.clients);
    let crash = true;
    const handler = archiveHandler(cloud.clients, r, {
      beforeCheckpoint: () => {
        if (crash) throw new Error('crash before the checkpoint');
      },
    });
    const records = generateStream({ events: 50, shards: 1, start: T0, span: 90_000, duplicates: 0.1, seed: 6 });
    const failed = await handler(kinesisEvent(records));
    // The first record is reported, so the event source mapping retries the whole batch.
    expect(failed.batchItemFailures).toEqual([{ itemIdentifier: records[0]!.seq }]);
    expect(await keys(r)).toHaveLength(1);
    expect(await checkpoint(r, shardId(0))).toBeUndefined();
    crash = false;
    expect((await handler(kinesisEvent(records))).batchItemFailures).toEqual([]);
    expect(await keys(r)).toHaveLength(1);
    expect((await checkpoint(r, shardId(0)))?.seq).toBe(seqOf(0, 49).padStart(64, '0'));
    await expectBatchMatches(r, records);
  });

  it('overlapping extents (a retry with other boundaries) are not counted twice by the batch', async () => {
    const r = await freshResources(cloud.clients);
    const handler = archiveHandler(cloud.clients, r);
    const records = generateStream({ events: 80, shards: 1, start: T0, span: 120_000, duplicates: 0.05, seed: 7 });
    // First attempt: records 0..59; then a re-created mapping resends 20..79 and a bisected retry 0..39.
    for (const b of [records.slice(0, 60), records.slice(20, 80), records.slice(0, 40)]) {
      expect((await handler(kinesisEvent(b))).batchItemFailures).toEqual([]);
    }
    expect(await keys(r)).toHaveLength(3);
    expect((await checkpoint(r, shardId(0)))?.seq).toBe(seqOf(0, 79).padStart(64, '0'));
    await expectBatchMatches(r, records);
  });

  it('splits a batch at arrival-hour boundaries into objects under each hour', async () => {
    const r = await freshResources(cloud.clients);
    const handler = archiveHandler(cloud.clients, r);
    const start = Math.floor(T0 / HOUR_MS) * HOUR_MS + HOUR_MS - 30_000;
    const records = generateStream({ events: 40, shards: 1, start, span: 60_000, seed: 8 });
    await handler(kinesisEvent(records));
    const got = await keys(r);
    expect(got.map((k) => k.split('/').slice(1, 3).join('/'))).toEqual(['dt=2030-01-15/hr=10', 'dt=2030-01-15/hr=11']);
    const all = (await Promise.all(got.map((k) => lines(r, k)))).flat();
    expect(all).toHaveLength(40);
    for (const k of got) {
      const hour = parseRawObjectKey(k)!.hour;
      for (const l of await lines(r, k)) expect(Math.floor(Number(l.arrival) / HOUR_MS) * HOUR_MS).toBe(hour);
    }
  });

  it('poison records go to the failures bucket and stats, are not archived, and do not fail the batch', async () => {
    const r = await freshResources(cloud.clients);
    const handler = archiveHandler(cloud.clients, r);
    const good = generateStream({ events: 10, shards: 1, start: T0, span: 10_000, seed: 9 });
    const records: ShardRecord[] = [
      ...good.slice(0, 4),
      { shard: shardId(0), seq: seqOf(0, 100), arrival: T0 + 5000, event: new TextEncoder().encode('not json {') },
      { shard: shardId(0), seq: seqOf(0, 101), arrival: T0 + 5001, event: { id: 'p1', type: 'purchase', ts: 'yesterday' } },
      ...good.slice(4).map((x, i) => ({ ...x, seq: seqOf(0, 200 + i), arrival: T0 + 6000 + i })),
    ];
    for (let i = 0; i < 2; i++) expect((await handler(kinesisEvent(records))).batchItemFailures).toEqual([]);
    const archived = (await Promise.all((await keys(r)).map((k) => lines(r, k)))).flat();
    expect(archived.map((l) => l.id)).toEqual(good.map((g) => (g.event as { id: string }).id));
    const failures = await cloud.clients.s3.send(new ListObjectsV2Command({ Bucket: r.buckets.failures }));
    expect((failures.Contents ?? []).map((o) => o.Key).sort()).toEqual([
      `failures/archive/${shardId(0)}/${seqOf(0, 100).padStart(64, '0')}.json`,
      `failures/archive/${shardId(0)}/${seqOf(0, 101).padStart(64, '0')}.json`,
    ]);
    const body = await cloud.clients.s3.send(new GetObjectCommand({ Bucket: r.buckets.failures, Key: (failures.Contents ?? [])[1]!.Key! }));
    expect(JSON.parse(await body.Body!.transformToString())).toMatchObject({ layer: 'archive', field: 'ts' });
    const stats = await cloud.clients.dynamodb.send(
      new GetItemCommand({ TableName: r.tables.control, Key: { pk: { S: 'stats' }, sk: { S: 'poison' } }, ConsistentRead: true }),
    );
    // Counted once although the batch came twice.
    expect(stats.Item?.archive?.N).toBe('2');
    expect((await checkpoint(r, shardId(0)))?.seq).toBe(seqOf(0, 205).padStart(64, '0'));
  });

  it('rejects an event that is not a Kinesis event', async () => {
    const r = await freshResources(cloud.clients);
    await expect(archiveHandler(cloud.clients, r)({ Records: [{ nope: true }] })).rejects.toThrow(/not a Kinesis event/);
  });

  it('archives each user record of a KPL aggregate as a line at its position, and the batch counts them by the rule', async () => {
    const r = await freshResources(cloud.clients);
    const handler = archiveHandler(cloud.clients, r);
    const records = generateStream({ events: 90, shards: 2, start: T0, span: 120_000, duplicates: 0.15, seed: 11 }).filter(
      (x) => !(x.event instanceof Uint8Array),
    );
    // Per shard, runs of 1 to 7 consecutive records: one alone stays a plain record, more become one aggregate
    // (the aggregator as producer) at the run's first sequence number and arrival. Duplicates fall inside and across them.
    const source = kinesisSource({ account: '000000000000', region: 'us-east-1', stream: stream(), role: 'archive' });
    const expanded: ShardRecord[] = [];
    const inputs: KinesisRecordInput[] = [];
    for (const shard of [...new Set(records.map((x) => x.shard))].sort()) {
      const list = records.filter((x) => x.shard === shard);
      for (let i = 0, k = 0; i < list.length; k++) {
        const run = list.slice(i, i + 1 + (k % 7));
        i += run.length;
        const head = run[0]!;
        if (run.length === 1) {
          inputs.push({ shard, seq: head.seq, arrival: head.arrival, data: Buffer.from(JSON.stringify(head.event)) });
          expanded.push(head);
          continue;
        }
        const [agg, more] = kplAggregate(
          run.map((x) => ({ partitionKey: String((x.event as { id: unknown }).id), data: JSON.stringify(x.event) })),
        );
        expect(more).toBeUndefined();
        inputs.push({ shard, seq: head.seq, arrival: head.arrival, data: agg!.data, partitionKey: agg!.partitionKey });
        for (const [sub, x] of run.entries()) expanded.push({ ...x, seq: recordPosition(head.seq, sub), arrival: head.arrival });
      }
    }
    // Delivered twice (a redelivery), 5 Kinesis records a batch.
    for (let pass = 0; pass < 2; pass++)
      for (let i = 0; i < inputs.length; i += 5)
        expect((await handler(kinesisEventFactory(inputs.slice(i, i + 5), source))).batchItemFailures).toEqual([]);
    const archived: string[] = [];
    for (const key of await keys(r)) {
      const name = parseRawObjectKey(key)!;
      const rows = await lines(r, key);
      expect([rows[0]!.seq, rows[rows.length - 1]!.seq]).toEqual([name.firstSeq, name.lastSeq]);
      archived.push(...rows.map((row) => `${row.shard}/${row.seq}`));
    }
    // Each user record once per object set: the second pass wrote the same keys.
    expect(archived.sort()).toEqual(expanded.map((x) => `${x.shard}/${x.seq.padStart(64, '0')}`).sort());
    expect(archived.some((a) => a.includes('.'))).toBe(true);
    await expectBatchMatches(r, expanded);
  });
});
