/**
 * Compaction of covered arrival hours into Parquet, against real emulators (s3rver, dynalite)
 * and DuckDB: a run after compaction reads Parquet for the compacted hours and JSON for the
 * tail and gives the oracle's rows; a crash between the Parquet object and its item leaves no
 * item and the next run compacts the hour again; a raw object missing fails that hour's
 * compaction and not the published run; the completeness check of compacted hours catches a
 * deleted Parquet object and a count that does not add up.
 */
import { DeleteObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOUR_MS } from '../../functions/archive/layout.ts';
import { COMPACT_PREFIX, COMPACTED_PK, compactObjectKey, readCompacted } from '../../functions/batch/compact.ts';
import { runBatchToCompletion } from '../../functions/batch/pipeline.ts';
import { SimulatedCrash } from '../../functions/batch/steps.ts';
import { pad13 } from '../../functions/core/keys.ts';
import { archiveWorld, batchOptions, type Resources, removeStageDirs } from '../support/batch.ts';
import { startTestCloud, type TestCloud } from '../support/cloud.ts';

const MIN = 60_000;
const T0 = Date.UTC(2030, 6, 20, 10, 5, 0);

describe('compaction of covered hours into Parquet', () => {
  let cloud: TestCloud;
  beforeAll(async () => {
    cloud = await startTestCloud();
  });
  afterAll(async () => {
    await cloud?.stop();
    removeStageDirs();
  });

  /** A fresh archive with a helper to add records and to run the batch at "2 minutes after the last arrival". */
  async function setup(prefix: string) {
    const w = await archiveWorld(cloud, prefix, T0);
    const { r, config, records, expectOracle, now } = w;
    let seed = 1;
    const add = (start: number, span: number, events: number) => w.add(start, span, events, seed++);
    const run = (extra: Parameters<typeof batchOptions>[2] = {}) =>
      runBatchToCompletion(cloud.clients, config, batchOptions(cloud.clients, r, { now, ...extra }));
    const compacted = (cutoff: number) => readCompacted({ doc: cloud.clients.doc, table: r.tables.control }, cutoff);
    // New records start at the clock of the last run, never before its published cutoff (test/support/batch.ts archiveHandler).
    return { r, records, add, run, compacted, expectOracle, now };
  }

  const listKeys = async (r: Resources, prefix: string) =>
    ((await cloud.clients.s3.send(new ListObjectsV2Command({ Bucket: r.buckets.raw, Prefix: prefix }))).Contents ?? []).map((o) => o.Key!);

  it('reads compacted hours as Parquet and the tail as JSON, with the same rows', async () => {
    const t = await setup('cp');
    // Three arrival hours (10h, 11h, 12h), then a run: 10h and 11h are covered whole, 12h is not.
    await t.add(T0, 2 * HOUR_MS + 50 * MIN, 600);
    const v1 = await t.run();
    expect(v1).toMatchObject({ state: 'SUCCEEDED', version: 1 });
    expect(v1.timings?.compact).toBeTypeOf('number');
    const hour10 = Date.UTC(2030, 6, 20, 10);
    const covered = [...(await t.compacted(v1.cutoff!)).keys()].sort();
    expect(covered).toEqual([hour10, hour10 + HOUR_MS]);
    expect(v1.compaction).toEqual({ hours: 2, failed: 0 });
    expect((await listKeys(t.r, COMPACT_PREFIX)).sort()).toEqual([compactObjectKey(hour10), compactObjectKey(hour10 + HOUR_MS)]);
    const item = (await t.compacted(v1.cutoff!)).get(hour10)!;
    const lines = Object.values(item.shards).reduce((n, s) => n + s.lines, 0);
    expect(lines).toBe(t.records.filter((x) => x.arrival < hour10 + HOUR_MS).length);
    for (const s of Object.values(item.shards)) expect(s.recorded).toBe(s.lines);
    await t.expectOracle(1, v1.cutoff!);

    // More arrivals; a rebuild reads 10h-11h as Parquet, 12h on as JSON, and gives the oracle's rows.
    // (Rebuilds: the oracle compares the whole history read through both formats.)
    await t.add(t.now(), 70 * MIN, 200);
    const v2 = await t.run({ request: { rebuild: true } });
    expect(v2).toMatchObject({ state: 'SUCCEEDED', version: 2 });
    expect(v2.archive?.compactedHours).toBe(2);
    expect(v2.archive?.rawRowsRead).toBe(t.records.length);
    // Parquet bytes: the column chunks read (parquet_metadata), counted with the JSON objects read.
    expect(v2.archive?.rawBytesRead).toBeGreaterThan(0);
    await t.expectOracle(2, v2.cutoff!);
    // v2 compacted 12h and 13h (its cutoff covers them): the next rebuild reads 4 hours as Parquet.
    expect(v2.compaction).toEqual({ hours: 2, failed: 0 });
    await t.add(t.now(), 5 * MIN, 20);
    const v3 = await t.run({ request: { rebuild: true } });
    expect(v3).toMatchObject({ state: 'SUCCEEDED', version: 3 });
    expect(v3.archive?.compactedHours).toBe(4);
    await t.expectOracle(3, v3.cutoff!);
  });

  it('a crash between the Parquet object and its item leaves no item; the next run compacts again', async () => {
    const t = await setup('cc');
    await t.add(T0, HOUR_MS + 30 * MIN, 200);
    const hour10 = Date.UTC(2030, 6, 20, 10);
    const v1 = await t.run({
      hooks: {
        afterStage: (stage) => {
          if (stage === `compact:${hour10}`) throw new SimulatedCrash(stage);
        },
      },
    });
    expect(v1).toMatchObject({ state: 'SUCCEEDED', version: 1 });
    expect(v1.compaction).toMatchObject({ hours: 0, failed: 1 });
    expect((await t.compacted(v1.cutoff!)).size).toBe(0);
    // The object was written (then the crash): no item, so no run reads it.
    expect(await listKeys(t.r, COMPACT_PREFIX)).toEqual([compactObjectKey(hour10)]);
    await t.add(t.now(), 10 * MIN, 30);
    const v2 = await t.run();
    expect(v2).toMatchObject({ state: 'SUCCEEDED', version: 2 });
    expect(v2.archive?.compactedHours ?? 0).toBe(0);
    expect(v2.compaction).toMatchObject({ hours: 1, failed: 0 });
    expect([...(await t.compacted(v2.cutoff!)).keys()]).toEqual([hour10]);
    await t.add(t.now(), 10 * MIN, 30);
    const v3 = await t.run({ request: { rebuild: true } });
    expect(v3.archive?.compactedHours).toBe(1);
    await t.expectOracle(3, v3.cutoff!);
  });

  it('a raw object missing fails the compaction of its hour, not the published run', async () => {
    const t = await setup('cm');
    await t.add(T0, HOUR_MS + 30 * MIN, 200);
    const hour10 = Date.UTC(2030, 6, 20, 10);
    const v1 = await t.run({
      hooks: {
        // After the run read (and checked) everything, before it publishes: one object of 10h goes.
        afterStage: async (stage) => {
          if (stage !== 'publish') return;
          const key = (await listKeys(t.r, 'raw/dt=2030-07-20/hr=10/'))[0]!;
          await cloud.clients.s3.send(new DeleteObjectCommand({ Bucket: t.r.buckets.raw, Key: key }));
        },
      },
    });
    expect(v1).toMatchObject({ state: 'SUCCEEDED', version: 1 });
    expect(v1.compaction).toMatchObject({ hours: 0, failed: 1 });
    expect(v1.compaction?.error).toMatch(/2030-07-20T10h: the archive is incomplete: 1 raw object\(s\) missing/);
    expect((await t.compacted(v1.cutoff!)).has(hour10)).toBe(false);
    expect(await listKeys(t.r, COMPACT_PREFIX)).toEqual([]);
  });

  it('the completeness check of compacted hours catches a deleted Parquet object and a count mismatch', async () => {
    const t = await setup('cv');
    await t.add(T0, HOUR_MS + 30 * MIN, 200);
    const hour10 = Date.UTC(2030, 6, 20, 10);
    const v1 = await t.run();
    expect(v1.compaction).toMatchObject({ hours: 1, failed: 0 });

    // A count that does not add up: the item says one line more than the Parquet object holds.
    const item = (await t.compacted(v1.cutoff!)).get(hour10)!;
    const shard = Object.keys(item.shards)[0]!;
    await cloud.clients.doc.send(
      new UpdateCommand({
        TableName: t.r.tables.control,
        Key: { pk: COMPACTED_PK, sk: pad13(hour10) },
        UpdateExpression: 'SET shards.#s.#l = :n',
        ExpressionAttributeNames: { '#s': shard, '#l': 'lines' },
        ExpressionAttributeValues: { ':n': item.shards[shard]!.lines + 1 },
      }),
    );
    await t.add(t.now(), 10 * MIN, 30);
    const v2 = await t.run();
    expect(v2).toMatchObject({ state: 'FAILED' });
    expect(v2.error).toMatch(/compacted \(arrival hour, shard\) pair\(s\) that do not add up, e.g\. 2030-07-20T10h/);
    expect(v2.error).toMatch(/records read from its Parquet object/);

    // The item restored, the Parquet object deleted: the run fails naming it (a cached copy does not hide it).
    await cloud.clients.doc.send(
      new UpdateCommand({
        TableName: t.r.tables.control,
        Key: { pk: COMPACTED_PK, sk: pad13(hour10) },
        UpdateExpression: 'SET shards.#s.#l = :n',
        ExpressionAttributeNames: { '#s': shard, '#l': 'lines' },
        ExpressionAttributeValues: { ':n': item.shards[shard]!.lines },
      }),
    );
    await cloud.clients.s3.send(new DeleteObjectCommand({ Bucket: t.r.buckets.raw, Key: compactObjectKey(hour10) }));
    const v3 = await t.run();
    expect(v3).toMatchObject({ state: 'FAILED' });
    expect(v3.error).toContain(`its Parquet object ${compactObjectKey(hour10)} was not found`);
  });
});
