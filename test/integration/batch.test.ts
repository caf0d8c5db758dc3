/**
 * The batch layer against real emulators and DuckDB: planning over
 * the Kinesis emulator, exact versions, skipped runs, crashes mid-load, a missing or
 * truncated raw object, an increment's arrival range (read and checked alone), a lost
 * publish race, retention, rollback, the lock,
 * and the HTTP routes of functions/batch-api.ts.
 */

import { gzipSync } from 'node:zlib';
import {
  DescribeStreamSummaryCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  ListShardsCommand,
  SplitShardCommand,
} from '@aws-sdk/client-kinesis';
import { DeleteObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { DeleteCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMPACTED_PK } from '../../functions/batch/compact.ts';
import { acquireLock, getManifest, getPointer, getRun, listManifests, releaseLock } from '../../functions/batch/control.ts';
import { duckDbEngine } from '../../functions/batch/duckdb.ts';
import type { BatchEngine } from '../../functions/batch/engine.ts';
import { partitionRefs } from '../../functions/batch/load.ts';
import { type BatchOptions, batchContext, runBatchToCompletion, startBatchRun } from '../../functions/batch/pipeline.ts';
import { computeCutoff, gatherArchiveProgress } from '../../functions/batch/planner.ts';
import { planStep, publishStep, SimulatedCrash, viewStep } from '../../functions/batch/steps.ts';
import { createBatchApiHandler } from '../../functions/batch-api.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { pad13 } from '../../functions/core/keys.ts';
import { apiEvent, lambdaContext, silentLogger } from '../support/api.ts';
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
  scanAll,
  sorted,
  testConfig,
} from '../support/batch.ts';
import { startTestCloud, type TestCloud } from '../support/cloud.ts';
import { createStream, put } from '../support/kinesis.ts';

const T0 = Date.UTC(2030, 0, 15, 10, 0, 0);
const MIN = 60_000;

describe('batch layer', () => {
  let cloud: TestCloud;
  beforeAll(async () => {
    cloud = await startTestCloud();
  });
  afterAll(async () => {
    await cloud?.stop();
    removeStageDirs();
  });

  /** A test world: fresh stores, the archive handler, a clock, and helpers to add events and run. */
  interface World {
    readonly r: Resources;
    readonly config: ReturnType<typeof testConfig>;
    readonly records: ShardRecord[];
    now: number;
    add(events?: number, at?: number): Promise<ShardRecord[]>;
    opts(extra?: BatchOptions): BatchOptions;
    run(extra?: BatchOptions): ReturnType<typeof runBatchToCompletion>;
    expectVersion(version: number, cutoff: number): Promise<void>;
    control(): { doc: TestCloud['clients']['doc']; table: string };
    api(extra?: BatchOptions): (method: string, path: string, body?: unknown) => Promise<{ status: number; body: Record<string, unknown> }>;
  }

  async function world(settings: { keepVersions?: number; dedupHorizonSeconds?: number } = {}): Promise<World> {
    const r = await freshResources(cloud.clients);
    const config = testConfig(r, cloud.names.TANDEM_STREAM_NAME!, DEMO_VIEWS, settings);
    const archive = archiveHandler(cloud.clients, r);
    const records: ShardRecord[] = [];
    let round = 0;
    const w: World = {
      r,
      config,
      records,
      now: T0,
      /** Archives a round of events arriving over the 5 minutes after `at`, and moves the clock past them. */
      async add(events = 120, at = w.now) {
        const batch = generateStream({ events, shards: 2, start: at, span: 5 * MIN, duplicates: 0.05, late: 0.1, seed: 100 + round++ });
        // Later rounds continue the shards' sequence numbers.
        const offset = records.length;
        const shifted = batch.map((x, i) => ({ ...x, seq: (BigInt(x.seq) + BigInt(offset + i) * 10n ** 20n).toString() }));
        for (const b of batchesOf(shifted, 50)) expect((await archive(kinesisEvent(b))).batchItemFailures).toEqual([]);
        records.push(...shifted);
        w.now = Math.max(w.now, ...shifted.map((x) => x.arrival)) + 2 * MIN;
        return shifted;
      },
      opts(extra: BatchOptions = {}): BatchOptions {
        return batchOptions(cloud.clients, r, { now: () => w.now, ...extra });
      },
      run(extra: BatchOptions = {}) {
        return runBatchToCompletion(cloud.clients, config, w.opts(extra));
      },
      async expectVersion(version: number, cutoff: number) {
        for (const view of DEMO_VIEWS) {
          const want = batchOracle(view, records, cutoff);
          expect(sorted(await readBatchRows(cloud.clients.dynamodb, r.tables.batchViews, view, version))).toEqual(sorted(want));
        }
      },
      control: () => ({ doc: cloud.clients.doc, table: r.tables.control }),
      api(extra: BatchOptions = {}) {
        const handler = createBatchApiHandler(() => ({ clients: cloud.clients, config, env: {}, batch: w.opts(extra) }), silentLogger());
        return async (method: string, path: string, body?: unknown) => {
          const res = await handler(
            apiEvent(method, path, {
              ...(body !== undefined && { body: typeof body === 'string' ? body : JSON.stringify(body) }),
              ...(path.startsWith('/batch/runs/') && { resource: '/batch/runs/{id}', pathParameters: { id: path.split('/')[3]! } }),
            }),
            lambdaContext(),
          );
          return { status: res.statusCode, body: JSON.parse(res.body) as Record<string, unknown> };
        };
      },
    };
    return w;
  }

  it('plans over the Kinesis emulator: a lagging shard holds C back, an idle one does not', async () => {
    const r = await freshResources(cloud.clients);
    const stream = await createStream(cloud.clients.kinesis, 2);
    const shards = (await cloud.clients.kinesis.send(new ListShardsCommand({ StreamName: stream }))).Shards!;
    const hashKeys = shards.map((s) => s.HashKeyRange!.StartingHashKey!);
    const ts = Date.now();
    await put(
      cloud.clients.kinesis,
      stream,
      [0, 1, 2].map((i) => ({ id: `a${i}`, type: 'signup', ts })),
      hashKeys[0],
    );
    await new Promise((res) => setTimeout(res, 50));
    await put(
      cloud.clients.kinesis,
      stream,
      [0, 1].map((i) => ({ id: `b${i}`, type: 'signup', ts })),
      hashKeys[1],
    );
    const read = async (shardId: string): Promise<ShardRecord[]> => {
      const it = await cloud.clients.kinesis.send(
        new GetShardIteratorCommand({ StreamName: stream, ShardId: shardId, ShardIteratorType: 'TRIM_HORIZON' }),
      );
      const got = await cloud.clients.kinesis.send(new GetRecordsCommand({ ShardIterator: it.ShardIterator! }));
      return (got.Records ?? []).map((x) => ({
        shard: shardId,
        seq: x.SequenceNumber!,
        arrival: x.ApproximateArrivalTimestamp!.getTime(),
        event: JSON.parse(Buffer.from(x.Data!).toString()) as Record<string, unknown>,
      }));
    };
    const [s0, s1] = [await read(shards[0]!.ShardId!), await read(shards[1]!.ShardId!)];
    expect([s0.length, s1.length]).toEqual([3, 2]);
    const archive = archiveHandler(cloud.clients, r);
    const settings = { windowSeconds: 1, cutoffMarginSeconds: 0 };
    const plan = async () => {
      const p = await gatherArchiveProgress({
        kinesis: cloud.clients.kinesis,
        doc: cloud.clients.doc,
        streamName: stream,
        controlTable: r.tables.control,
        now: Date.now,
      });
      return computeCutoff({ shards: p.shards, now: p.now, settings, published: null });
    };

    // Nothing archived: both shards lag, C is bounded by the first record of the stream.
    const none = await plan();
    expect(none.shards.map((s) => s.state)).toEqual(['lagging', 'lagging']);
    expect(none.cutoff).toBeLessThanOrEqual(s0[0]!.arrival);

    // Shard 0 archived (twice, then the first two again: the checkpoint stays), shard 1 not: shard 1 holds C back.
    await archive(kinesisEvent(s0));
    await archive(kinesisEvent(s0.slice(0, 2)));
    const one = await plan();
    expect(one.shards.map((s) => s.state)).toEqual(['idle', 'lagging']);
    expect(one.limitedBy).toBe(shards[1]!.ShardId);
    expect(one.cutoff).toBeLessThanOrEqual(s1[0]!.arrival);
    expect(one.cutoff).toBeGreaterThan(s1[0]!.arrival - 1000);

    // Everything archived: the checkpoints are old but nothing lies past them, so both shards are idle.
    await archive(kinesisEvent(s1));
    const before = Date.now();
    const all = await plan();
    expect(all.shards.map((s) => s.state)).toEqual(['idle', 'idle']);
    expect(all.cutoff).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 - 1000);
  });

  it('a closed parent shard holds C back until it is drained, then counts as idle', async () => {
    const r = await freshResources(cloud.clients);
    const stream = await createStream(cloud.clients.kinesis, 1);
    const ts = Date.now();
    await put(
      cloud.clients.kinesis,
      stream,
      [0, 1, 2].map((i) => ({ id: `p${i}`, type: 'signup', ts })),
    );
    const [parent] = (await cloud.clients.kinesis.send(new ListShardsCommand({ StreamName: stream }))).Shards!;
    const mid = ((BigInt(parent!.HashKeyRange!.EndingHashKey!) + 1n) / 2n).toString();
    await cloud.clients.kinesis.send(
      new SplitShardCommand({ StreamName: stream, ShardToSplit: parent!.ShardId!, NewStartingHashKey: mid }),
    );
    for (let i = 0; i < 100; i++) {
      const d = await cloud.clients.kinesis.send(new DescribeStreamSummaryCommand({ StreamName: stream }));
      if (d.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') break;
      await new Promise((res) => setTimeout(res, 50));
    }
    const plan = async () => {
      const p = await gatherArchiveProgress({
        kinesis: cloud.clients.kinesis,
        doc: cloud.clients.doc,
        streamName: stream,
        controlTable: r.tables.control,
        now: Date.now,
      });
      return {
        p,
        c: computeCutoff({ shards: p.shards, now: p.now, settings: { windowSeconds: 1, cutoffMarginSeconds: 0 }, published: null }),
      };
    };
    const before = await plan();
    const closed = before.p.shards.find((s) => s.shardId === parent!.ShardId)!;
    expect(closed.closed).toBe(true);
    expect(before.p.shards).toHaveLength(3);
    // The parent's records are not archived: it bounds C although no new record can arrive on it.
    expect(before.c.limitedBy).toBe(parent!.ShardId);
    const it = await cloud.clients.kinesis.send(
      new GetShardIteratorCommand({ StreamName: stream, ShardId: parent!.ShardId!, ShardIteratorType: 'TRIM_HORIZON' }),
    );
    const got = await cloud.clients.kinesis.send(new GetRecordsCommand({ ShardIterator: it.ShardIterator! }));
    expect(got.Records).toHaveLength(3);
    await archiveHandler(
      cloud.clients,
      r,
    )(
      kinesisEvent(
        got.Records!.map((x) => ({
          shard: parent!.ShardId!,
          seq: x.SequenceNumber!,
          arrival: x.ApproximateArrivalTimestamp!.getTime(),
          event: JSON.parse(Buffer.from(x.Data!).toString()) as Record<string, unknown>,
        })),
      ),
    );
    const after = await plan();
    expect(after.c.shards.map((s) => s.state)).toEqual(['idle', 'idle', 'idle']);
    expect(after.c.limitedBy).toBeUndefined();
  });

  it('publishes version 1 equal to the oracle; a run with nothing new is SKIPPED and publishes nothing', async () => {
    const w = await world();
    await w.add(200);
    const run = await w.run();
    expect(run).toMatchObject({ state: 'SUCCEEDED', stage: 'done', version: 1 });
    expect(run.cutoff).toBe(Math.floor((w.now - 5000) / MIN) * MIN);
    expect(Object.keys(run.views).sort()).toEqual(DEMO_VIEWS.map((v) => v.name).sort());
    expect(run.archive?.records).toBe(200);
    await w.expectVersion(1, run.cutoff!);
    const pointer = await getPointer(w.control());
    expect(pointer).toMatchObject({ version: 1, cutoff: run.cutoff, runId: run.runId });

    const again = await w.run();
    expect(again.state).toBe('SKIPPED');
    expect(again.note).toMatch(/has not advanced/);
    expect((await getPointer(w.control()))?.version).toBe(1);
  });

  it('a crash mid-load leaves the pointer and the reads on the old version; the next run retires the partial one', async () => {
    const w = await world();
    await w.add(150);
    const v1 = await w.run();
    expect(v1.version).toBe(1);
    await w.add(150);
    // A dead process: no cleanup, the run item stays RUNNING, the lock stays until it expires.
    const crashed = await w.run({
      hooks: {
        // After the first request of block items (a view's rows are a few blocks: one request may hold them all).
        afterItems: (view, written) => {
          if (view === 'page_views' && written >= 1) throw new SimulatedCrash('mid-load');
        },
      },
    });
    expect(crashed).toMatchObject({ state: 'RUNNING', version: 2 });
    expect((await getPointer(w.control()))?.version).toBe(1);
    await w.expectVersion(1, v1.cutoff!);
    expect((await getManifest(w.control(), 2))?.state).toBe('loading');

    // The lock blocks new runs until it expires...
    const blocked = await startBatchRun(cloud.clients, w.config, w.opts());
    expect(blocked).toMatchObject({ runId: crashed.runId, alreadyRunning: true });
    // ...then the next run takes over, publishes version 3 and retires the partial version 2 with its rows.
    w.now += 301_000;
    const v3 = await w.run();
    expect(v3).toMatchObject({ state: 'SUCCEEDED', version: 3 });
    await w.expectVersion(3, v3.cutoff!);
    expect((await getManifest(w.control(), 2))?.state).toBe('retired');
    const left = await scanAll(cloud.clients.dynamodb, w.r.tables.batchViews);
    expect(left.filter((i) => i.version?.N === '2')).toEqual([]);
  });

  it('a failing load marks the run FAILED, releases the lock and retires its rows at once', async () => {
    const w = await world();
    await w.add(120);
    await w.run();
    await w.add(120);
    const failed = await w.run({
      hooks: {
        afterItems: (view, written) => {
          if (view === 'events_by_type' && written >= 1) throw new Error('DynamoDB went away');
        },
      },
    });
    expect(failed).toMatchObject({ state: 'FAILED', version: 2 });
    expect(failed.error).toMatch(/DynamoDB went away/);
    expect((await getPointer(w.control()))?.version).toBe(1);
    expect((await scanAll(cloud.clients.dynamodb, w.r.tables.batchViews)).filter((i) => i.version?.N === '2')).toEqual([]);
    expect((await w.run()).state).toBe('SUCCEEDED');
  });

  it('a rebuild computed in parts equals the oracle; a crash between its parts leaves every row it wrote findable', async () => {
    const w = await world();
    // Over four days: a minute view's partitions are days, and parts hold whole partitions.
    for (let day = 0; day < 4; day++) await w.add(150, T0 + day * 86_400_000);
    let parts = 0;
    const engine = duckDbEngine({ s3: cloud.clients.s3, rawBucket: w.r.buckets.raw, stageDir: w.r.stageDir, partRows: 100 });
    const counting: BatchEngine = {
      ...engine,
      async open(...args) {
        const session = await engine.open(...args);
        const all = session.runViewParts!;
        return {
          ...session,
          async *runViewParts(view, options) {
            for await (const part of all(view, options)) {
              parts++;
              yield part;
            }
          },
        };
      },
    };
    const v1 = await w.run({ engine: counting });
    expect(v1).toMatchObject({ state: 'SUCCEEDED', version: 1 });
    expect(parts).toBeGreaterThan(2);
    await w.expectVersion(1, v1.cutoff!);

    await w.add(150);
    parts = 0;
    const crashed = await w.run({
      engine: counting,
      request: { rebuild: true },
      hooks: {
        afterItems: () => {
          if (parts >= 3) throw new SimulatedCrash('between parts');
        },
      },
    });
    expect(crashed).toMatchObject({ state: 'RUNNING', version: 2 });
    // Every row written so far belongs to a partition its manifest names (written before the rows).
    const manifest = await getManifest(w.control(), 2);
    const named = new Set(Object.entries(manifest?.views ?? {}).flatMap(([name, v]) => partitionRefs(name, 2, v).map((ref) => ref.pk)));
    const written = (await scanAll(cloud.clients.dynamodb, w.r.tables.batchViews)).filter((i) => i.version?.N === '2');
    expect(written.length).toBeGreaterThan(0);
    for (const item of written) expect(named).toContain(item.pk!.S);
    w.now += 301_000;
    const v3 = await w.run({ engine: counting, request: { rebuild: true } });
    expect(v3).toMatchObject({ state: 'SUCCEEDED', version: 3 });
    await w.expectVersion(3, v3.cutoff!);
    const left = await scanAll(cloud.clients.dynamodb, w.r.tables.batchViews);
    expect(left.filter((i) => i.version?.N === '2')).toEqual([]);
  });

  it('a missing raw object fails the run without flipping, even when the staging cache still holds it', async () => {
    const w = await world();
    await w.add(150);
    const v1 = await w.run();
    await w.add(150);
    const objects = (await cloud.clients.s3.send(new ListObjectsV2Command({ Bucket: w.r.buckets.raw, Prefix: 'raw/' }))).Contents!.map(
      (o) => o.Key!,
    );
    // An object run 1 staged (so it sits in the cache) disappears from S3.
    await cloud.clients.s3.send(new DeleteObjectCommand({ Bucket: w.r.buckets.raw, Key: objects.sort()[0]! }));
    const run = await w.run();
    expect(run.state).toBe('FAILED');
    expect(run.error).toMatch(/IncompleteArchiveError: the archive is incomplete: 1 raw object\(s\) missing/);
    expect(await getPointer(w.control())).toMatchObject({ version: v1.version, cutoff: v1.cutoff });
    await w.expectVersion(1, v1.cutoff!);
  });

  it('a truncated raw object fails the run without flipping', async () => {
    const w = await world();
    await w.add(100);
    const key = (await cloud.clients.s3.send(new ListObjectsV2Command({ Bucket: w.r.buckets.raw, Prefix: 'raw/' }))).Contents![0]!.Key!;
    await cloud.clients.s3.send(
      new PutObjectCommand({
        Bucket: w.r.buckets.raw,
        Key: key,
        Body: gzipSync('{"id":"x","type":"t","ts":1,"arrival":1,"shard":"s","seq":"1","fields":{},"num":{}}\n'),
      }),
    );
    const run = await w.run();
    expect(run.state).toBe('FAILED');
    expect(run.error).toMatch(/wrong number of records.*\(1 read, \d+ written\)/);
    expect(await getPointer(w.control())).toBeUndefined();
  });

  it('an increment reads and checks only its arrival range: an object before its look-back may go, a rebuild still needs it', async () => {
    const horizonMs = 60_000;
    const w = await world({ dedupHorizonSeconds: horizonMs / 1000 });
    const HOUR = 60 * MIN;
    const listRaw = async () =>
      (await cloud.clients.s3.send(new ListObjectsV2Command({ Bucket: w.r.buckets.raw, Prefix: 'raw/' }))).Contents!;
    const expectAt = async (version: number, cutoff: number) => {
      for (const view of DEMO_VIEWS) {
        const rows = await readBatchRows(cloud.clients.dynamodb, w.r.tables.batchViews, view, version);
        expect(sorted(rows)).toEqual(sorted(batchOracle(view, w.records, cutoff, horizonMs)));
      }
    };
    const archiveOf = async (runId: string) => (await getRun(w.control(), runId))?.archive;

    await w.add(120); // hour 10
    const v1 = await w.run();
    expect(v1).toMatchObject({ state: 'SUCCEEDED', version: 1 });
    const hour10 = await listRaw();
    const read1 = await archiveOf(v1.runId);
    expect(read1).toMatchObject({
      rawObjectsRead: hour10.length,
      rawRowsRead: read1!.records,
      rawBytesRead: hour10.reduce((n, o) => n + (o.Size ?? 0), 0),
    });

    w.now += 3 * HOUR;
    await w.add(120); // hour 13: the look-back of this increment (since C1 - H) is still in hour 10
    const v2 = await w.run();
    expect(v2).toMatchObject({ state: 'SUCCEEDED', version: 2 });
    expect((await archiveOf(v2.runId))?.rawObjectsRead).toBe((await listRaw()).length);

    w.now += 3 * HOUR;
    await w.add(120); // hour 16: this increment reads hours 13 to 16 only
    const before = await listRaw();
    // An object of hour 10 disappears: not this increment's to read or check.
    await cloud.clients.s3.send(new DeleteObjectCommand({ Bucket: w.r.buckets.raw, Key: hour10.map((o) => o.Key!).sort()[0]! }));
    const v3 = await w.run();
    expect(v3).toMatchObject({ state: 'SUCCEEDED', version: 3 });
    expect(Object.values((await getRun(w.control(), v3.runId))!.views).map((v) => v.mode)).toEqual(DEMO_VIEWS.map(() => 'increment'));
    const read3 = await archiveOf(v3.runId);
    const range = before.filter((o) => !o.Key!.includes('/hr=10/'));
    expect(read3).toMatchObject({ rawObjectsRead: range.length, rawBytesRead: range.reduce((n, o) => n + (o.Size ?? 0), 0) });
    await expectAt(3, v3.cutoff!);

    // A rebuild reads all history: the hole fails it, and version 3 keeps serving. Hour 10 was compacted
    // into Parquet meanwhile (docs/batch-layer.md "Compaction"): its item goes too, so the rebuild reads its JSON.
    const hour10Start = Date.parse(`${hour10[0]!.Key!.slice(7, 17)}T10:00:00Z`);
    await cloud.clients.doc.send(new DeleteCommand({ TableName: w.r.tables.control, Key: { pk: COMPACTED_PK, sk: pad13(hour10Start) } }));
    await w.add(60);
    const rebuild = await w.run({ request: { rebuild: true } });
    expect(rebuild.state).toBe('FAILED');
    expect(rebuild.error).toMatch(
      /IncompleteArchiveError: the archive is incomplete: 1 raw object\(s\) missing, e\.g\. raw\/dt=2030-01-15\/hr=10\//,
    );
    expect(rebuild.error).toMatch(/2030-01-15T10h shardId-\d+ \(\d+ of \d+ recorded records read from its listed objects\)/);
    expect((await getPointer(w.control()))?.version).toBe(3);
  });

  it('two runs racing to publish: the higher version wins and the other reports it lost', async () => {
    const w = await world();
    await w.add(120);
    const ctxA = batchContext(cloud.clients, w.config, w.opts());
    const a = await planStep(ctxA, 'run-a', { keepSession: true });
    for (const view of a.views) await viewStep(ctxA, { runId: 'run-a', version: a.version!, cutoff: a.cutoff!, view }, a.session);
    await a.session?.close();
    // Run B gets the lock (A's expired, say) and publishes a higher version first.
    await releaseLock(w.control(), 'run-a');
    await w.add(60);
    const b = await w.run({ runId: 'run-b' });
    expect(b).toMatchObject({ state: 'SUCCEEDED', version: a.version! + 1 });
    // A comes back and tries to publish its lower version.
    expect(await acquireLock(w.control(), 'run-a', w.now, 300)).toEqual({ acquired: true });
    const lost = await publishStep(ctxA, { runId: 'run-a', version: a.version!, cutoff: a.cutoff! });
    expect(lost).toMatchObject({ state: 'FAILED', published: false, current: b.version });
    expect((await getRun(w.control(), 'run-a'))?.error).toMatch(/lost the publish race: version 2/);
    expect((await getPointer(w.control()))?.version).toBe(b.version);
    expect((await getManifest(w.control(), a.version!))?.state).toBe('retired');
    expect((await scanAll(cloud.clients.dynamodb, w.r.tables.batchViews)).filter((i) => i.version?.N === String(a.version))).toEqual([]);
    await w.expectVersion(b.version!, b.cutoff!);
  });

  it('keeps the last K versions readable and deletes older ones', async () => {
    const w = await world({ keepVersions: 2 });
    const runs = [];
    for (let i = 0; i < 3; i++) {
      await w.add(80);
      runs.push(await w.run());
    }
    expect(runs.map((x) => x.version)).toEqual([1, 2, 3]);
    expect((await getManifest(w.control(), 1))?.state).toBe('retired');
    expect((await getManifest(w.control(), 2))?.state).toBe('published');
    // Version 1's rows are gone but for the keys 2 and 3 still reference (blocks they inherit: copy-on-write per block).
    const referenced = new Set<string>();
    for (const m of await listManifests(w.control()))
      if (m.state !== 'retired')
        for (const [name, v] of Object.entries(m.views)) for (const ref of partitionRefs(name, m.version, v)) referenced.add(ref.pk);
    const items = await scanAll(cloud.clients.dynamodb, w.r.tables.batchViews);
    expect(items.filter((i) => !referenced.has(i.pk!.S!)).map((i) => i.pk!.S)).toEqual([]);
    expect(new Set(items.map((i) => i.version?.N)).has('3')).toBe(true);
    await w.expectVersion(2, runs[1]!.cutoff!);
    const api = w.api();
    expect(await api('POST', '/batch/rollback', { version: 1 })).toMatchObject({
      status: 409,
      body: { field: 'version', error: expect.stringMatching(/retired/) },
    });
  });

  it('rollback serves the old version, refuses a cutoff the speed layer no longer covers, 404s an unknown version', async () => {
    const w = await world();
    await w.add(120);
    const v1 = await w.run();
    await w.add(120);
    const v2 = await w.run();
    expect(v2.version).toBe(2);
    const api = w.api();
    const back = await api('POST', '/batch/rollback', { version: 1 });
    expect(back).toMatchObject({ status: 200, body: { version: 1, cutoff: new Date(v1.cutoff!).toISOString(), rolledBackFrom: 2 } });
    expect(await getPointer(w.control())).toMatchObject({ version: 1, cutoff: v1.cutoff });
    await w.expectVersion(1, v1.cutoff!);
    // Forward again to 2 (kept), then time passes: version 1's speed windows are about to expire.
    expect((await api('POST', '/batch/rollback', { version: 2 })).status).toBe(200);
    w.now = v1.cutoff! + (2 * 6 * 3600 + 60) * 1000 + 1000;
    const late = await w.api()('POST', '/batch/rollback', { version: 1 });
    expect(late).toMatchObject({
      status: 409,
      body: { field: 'version', error: expect.stringMatching(/older than the speed layer's coverage/) },
    });
    expect((await getPointer(w.control()))?.version).toBe(2);
    expect(await api('POST', '/batch/rollback', { version: 99 })).toMatchObject({ status: 404, body: { field: 'version' } });
    expect(await api('POST', '/batch/rollback', { version: 'one' })).toMatchObject({ status: 400, body: { field: 'version' } });
    expect(await api('POST', '/batch/rollback', { version: 1.5 })).toMatchObject({ status: 400, body: { field: 'version' } });
    expect(await api('POST', '/batch/rollback', '{not json')).toMatchObject({ status: 400, body: { field: 'body' } });
    expect(await api('POST', '/batch/rollback', [])).toMatchObject({ status: 400, body: { field: 'version' } });
  });

  it('never two runs at once: a start while one runs answers with its id, over the API too', async () => {
    const w = await world();
    await w.add(100);
    let open!: () => void;
    const gate = new Promise<void>((res) => {
      open = res;
    });
    const first = await startBatchRun(cloud.clients, w.config, w.opts({ hooks: { afterStage: (s) => (s === 'plan' ? gate : undefined) } }));
    expect(first.alreadyRunning).toBe(false);
    const second = await startBatchRun(cloud.clients, w.config, w.opts());
    expect(second).toMatchObject({ runId: first.runId, alreadyRunning: true });
    const api = w.api();
    expect(await api('POST', '/batch/runs')).toMatchObject({ status: 202, body: { id: first.runId, state: 'RUNNING' } });
    const during = await api('GET', `/batch/runs/${first.runId}`);
    expect(during).toMatchObject({ status: 200, body: { id: first.runId, state: 'RUNNING' } });
    // A rollback would be undone by the running run's publish: refused while it runs.
    expect(await api('POST', '/batch/rollback', { version: 1 })).toMatchObject({
      status: 409,
      body: { error: expect.stringMatching(/is going/) },
    });
    open();
    const done = await first.done;
    expect(done?.state).toBe('SUCCEEDED');
  });

  it('POST /batch/runs runs in process and GET /batch/runs/{id} reports state, version, cutoff and per-view timings', async () => {
    const w = await world();
    await w.add(100);
    const api = w.api();
    const started = await api('POST', '/batch/runs');
    expect(started).toMatchObject({ status: 202, body: { state: 'RUNNING' } });
    const id = String(started.body.id);
    let got = await api('GET', `/batch/runs/${id}`);
    for (let i = 0; i < 200 && got.body.state === 'RUNNING'; i++) {
      await new Promise((res) => setTimeout(res, 50));
      got = await api('GET', `/batch/runs/${id}`);
    }
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({
      id,
      state: 'SUCCEEDED',
      stage: 'done',
      version: 1,
      cutoff: new Date(Math.floor((w.now - 5000) / MIN) * MIN).toISOString(),
    });
    const views = got.body.views as Record<string, { rows: number; sqlMs: number; loadMs: number; written?: number }>;
    expect(Object.keys(views).sort()).toEqual(DEMO_VIEWS.map((v) => v.name).sort());
    for (const v of Object.values(views))
      expect(v).toEqual({
        rows: expect.any(Number),
        sqlMs: expect.any(Number),
        loadMs: expect.any(Number),
        mode: 'rebuild',
        reason: 'new view',
        written: v.rows,
      });
    expect(got.body.timings).toMatchObject({ plan: expect.any(Number), publish: expect.any(Number), total: expect.any(Number) });
    expect(await api('GET', '/batch/runs/run-nope')).toMatchObject({ status: 404, body: { field: 'id' } });
    expect(await api('GET', '/batch/runs/bad%20id')).toMatchObject({ status: 400, body: { field: 'id' } });
  });
});
