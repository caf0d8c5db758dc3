/**
 * KPL-aggregated records (produced with AWS Labs' aggregator, `kplAggregate`)
 * mixed with plain records, through the Kinesis emulator and the local event
 * source mapping, into both consumers, under the crash hooks of
 * speed.esm.test.ts. Duplicates sit inside one aggregate, across aggregates
 * and between aggregates and plain records; some aggregates are corrupt and
 * some user records are not events. Properties: the speed table equals the
 * oracle over the user records as positioned events (`<seq>.<subseq>`), under
 * the dedup rule with a one-second horizon; poison is counted once per
 * corrupt aggregate or bad user record, in both layers; the archive holds
 * every good user record exactly once, at its position, in objects keyed by
 * positions.
 */
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { gunzip as gunzipCb } from 'node:zlib';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import {
  CreateStreamCommand,
  DeleteStreamCommand,
  DescribeStreamSummaryCommand,
  ListShardsCommand,
  PutRecordsCommand,
  type PutRecordsRequestEntry,
} from '@aws-sdk/client-kinesis';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kplAggregate } from '../../functions/adapters/kinesis-records.ts';
import { createArchiveHandler } from '../../functions/archive/handler.ts';
import { parseRawObjectKey } from '../../functions/archive/layout.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { DEFAULT_SETTINGS } from '../../functions/core/settings.ts';
import { ItemCache } from '../../functions/speed/apply.ts';
import { createSpeedHandler } from '../../functions/speed/handler.ts';
import { startTestCloud, type TestCloud } from '../support/cloud.ts';
import { type Hook, hookArb, startHookedMapping } from '../support/esm.ts';
import { asObject, createSpeedTables, faultyClient, oracle, quietTelemetry, readSpeedTable, readStreamEvents } from '../support/speed.ts';

const gunzip = promisify(gunzipCb);
const telemetry = quietTelemetry();
const WINDOW_MS = DEFAULT_SETTINGS.windowSeconds * 1000;
const SETTINGS = { ...DEFAULT_SETTINGS, dedupHorizonSeconds: 1 };
const H = SETTINGS.dedupHorizonSeconds * 1000;

const eventArb = fc.record({
  id: fc.nat(7),
  type: fc.constantFrom('purchase', 'page_view', 'signup'),
  country: fc.constantFrom('DE', 'FR'),
  amount: fc.constantFrom(0.000000001, 12.5, 3),
  lateMs: fc.constantFrom(0, 0, 7_200_000),
  /** Not an event (a bad user record inside an aggregate, or a poison plain record). */
  bad: fc.constantFrom(false, false, false, false, false, false, false, false, false, true),
  /** Where it goes: a plain record, or the current aggregate of its shard. */
  aggregated: fc.boolean(),
});

/** Kinesis' routing: the MD5 of the partition key as a 128-bit number, in a shard's hash key range. */
function shardOf(shards: { id: string; start: bigint; end: bigint }[], partitionKey: string): string {
  const h = BigInt(`0x${createHash('md5').update(partitionKey).digest('hex')}`);
  return shards.find((s) => s.start <= h && h <= s.end)!.id;
}

describe('KPL-aggregated records through the local event source mapping', () => {
  let cloud: TestCloud;
  let run = 0;
  beforeAll(async () => {
    cloud = await startTestCloud();
  });
  afterAll(async () => {
    await cloud?.stop();
  });

  it('both consumers read every user record as an event of its own, exactly once, under random crashes', async () => {
    const seen = { insideOneAggregate: 0, acrossRecords: 0, corrupt: 0, badUserRecords: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.array(eventArb, { minLength: 1, maxLength: 30 }),
        fc.array(hookArb, { maxLength: 8 }),
        fc.array(hookArb, { maxLength: 8 }),
        fc.integer({ min: 1, max: 6 }),
        fc.constantFrom(0, 0, H + 200),
        fc.array(fc.boolean(), { maxLength: 4 }),
        async (events, speedHooks, archiveHooks, batchSize, pauseMs, corruptions) => {
          const n = ++run;
          const StreamName = `kpl-${n}`;
          await cloud.clients.kinesis.send(new CreateStreamCommand({ StreamName, ShardCount: 2 }));
          for (let i = 0; ; i++) {
            const d = await cloud.clients.kinesis.send(new DescribeStreamSummaryCommand({ StreamName }));
            if (d.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') break;
            if (i > 200) throw new Error('stream not ACTIVE');
            await new Promise((r) => setTimeout(r, 20));
          }
          const shards = ((await cloud.clients.kinesis.send(new ListShardsCommand({ StreamName }))).Shards ?? []).map((s) => ({
            id: s.ShardId!,
            start: BigInt(s.HashKeyRange!.StartingHashKey!),
            end: BigInt(s.HashKeyRange!.EndingHashKey!),
          }));
          const tables = await createSpeedTables(cloud.clients.dynamodb, `kpl${n}`);
          const now = Date.now();
          // Two requests (producers retrying); in each, per shard, an aggregate of the user records routed to it
          // (as the KPL packs only records of one shard together), between the plain records.
          const half = Math.ceil(events.length / 2);
          let corruptNext = 0;
          const requests = [events.slice(0, half), events.slice(half)].map((part, k) => {
            const entries: PutRecordsRequestEntry[] = [];
            const pending = new Map<string, { partitionKey: string; data: Buffer }[]>();
            part.forEach((e, j) => {
              const i = k * half + j;
              const data = e.bad
                ? Buffer.from(`not json ${i}`)
                : Buffer.from(
                    JSON.stringify({ id: `r${n}-e${e.id}`, type: e.type, ts: now - e.lateMs - i, country: e.country, amount: e.amount }),
                  );
              const partitionKey = `r${n}-e${e.id}`;
              if (!e.aggregated) entries.push({ PartitionKey: partitionKey, Data: data });
              else {
                const shard = shardOf(shards, partitionKey);
                pending.set(shard, [...(pending.get(shard) ?? []), { partitionKey, data }]);
              }
            });
            for (const users of pending.values()) {
              for (const agg of kplAggregate(users)) {
                const data = Buffer.from(agg.data);
                if (corruptions[corruptNext++]) {
                  data[data.length - 1]! ^= 0xff;
                  seen.corrupt++;
                }
                entries.splice(Math.floor(entries.length / 2), 0, { PartitionKey: agg.partitionKey, Data: data });
              }
            }
            return entries;
          });
          for (const [k, entries] of requests.entries()) {
            if (entries.length === 0) continue;
            if (k > 0 && pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
            const put = await cloud.clients.kinesis.send(new PutRecordsCommand({ StreamName, Records: entries }));
            expect(put.FailedRecordCount ?? 0).toBe(0);
          }

          const speedDdb = faultyClient(cloud.clients.dynamodb);
          const speed = createSpeedHandler({
            ddb: speedDdb.client,
            s3: cloud.clients.s3,
            tables,
            failureBucket: cloud.names.TANDEM_FAILURE_BUCKET!,
            views: DEMO_VIEWS,
            settings: SETTINGS,
            cache: new ItemCache(),
            ...telemetry,
          });
          const archiveDdb = faultyClient(cloud.clients.dynamodb);
          const archive = createArchiveHandler({
            s3: cloud.clients.s3,
            ddb: archiveDdb.client,
            rawBucket: cloud.names.TANDEM_RAW_BUCKET!,
            failureBucket: cloud.names.TANDEM_FAILURE_BUCKET!,
            controlTable: tables.control,
            ...telemetry,
          });
          const mapping = (name: string, handler: (event: unknown) => Promise<unknown>, hooks: Hook[], faulty: typeof speedDdb) =>
            startHookedMapping(cloud.clients, { name, streamName: StreamName, batchSize, handler, hooks, faulty });
          const mappings = [
            await mapping(`kpl-speed-${n}`, speed, [...speedHooks], speedDdb),
            await mapping(`kpl-archive-${n}`, archive, [...archiveHooks], archiveDdb),
          ];
          try {
            await Promise.all(mappings.map((m) => m.idle()));
          } finally {
            await Promise.all(mappings.map((m) => m.stop()));
          }

          const stored = await readStreamEvents(cloud, StreamName);
          const got = await readSpeedTable(cloud.clients.dynamodb, tables.speed);
          expect(asObject(got)).toEqual(asObject(oracle(DEMO_VIEWS, stored, WINDOW_MS, H)));

          const good = stored.filter((r) => !(r.event instanceof Uint8Array));
          const poison = stored.length - good.length;
          seen.badUserRecords += stored.filter((r) => r.event instanceof Uint8Array && r.seq.includes('.')).length;
          const byRecord = new Map<string, Set<string>>();
          for (const r of good) {
            const key = `${r.shard}/${r.seq.split('.')[0]}`;
            const ids = byRecord.get(key) ?? new Set();
            const id = String((r.event as Record<string, unknown>).id);
            if (ids.has(id)) seen.insideOneAggregate++;
            ids.add(id);
            byRecord.set(key, ids);
          }
          seen.acrossRecords += good.length - new Set(good.map((r) => String((r.event as Record<string, unknown>).id))).size;
          const stats = await cloud.clients.dynamodb.send(
            new GetItemCommand({ TableName: tables.control, Key: { pk: { S: 'stats' }, sk: { S: 'poison' } } }),
          );
          expect(Number(stats.Item?.count?.N ?? 0)).toBe(poison);
          expect(Number(stats.Item?.archive?.N ?? 0)).toBe(poison);

          // The archive: every good user record once (an overlapping retry may repeat lines in another object, never a position in one).
          const lines = new Map<string, Record<string, unknown>>();
          const listed = await cloud.clients.s3.send(new ListObjectsV2Command({ Bucket: cloud.names.TANDEM_RAW_BUCKET! }));
          for (const o of listed.Contents ?? []) {
            const name = parseRawObjectKey(o.Key!);
            if (!name) continue;
            const body = await cloud.clients.s3.send(new GetObjectCommand({ Bucket: cloud.names.TANDEM_RAW_BUCKET!, Key: o.Key! }));
            const text = (await gunzip(Buffer.from(await body.Body!.transformToByteArray()))).toString('utf8');
            const rows = text
              .trim()
              .split('\n')
              .map((l) => JSON.parse(l) as Record<string, unknown>);
            if (!String(rows[0]!.id).startsWith(`r${n}-`)) continue;
            expect(rows[0]!.seq).toBe(name.firstSeq);
            expect(rows[rows.length - 1]!.seq).toBe(name.lastSeq);
            for (const row of rows) lines.set(`${row.shard}/${row.seq}`, row);
          }
          expect([...lines.keys()].sort()).toEqual(good.map((g) => `${g.shard}/${g.seq.padStart(64, '0')}`).sort());
          await cloud.clients.kinesis.send(new DeleteStreamCommand({ StreamName, EnforceConsumerDeletion: true }));
        },
      ),
      // A fixed seed: the coverage checks below (a corrupt aggregate, a bad user record, ...) must not depend on the draw.
      { numRuns: 25, seed: 20261206 },
    );
    expect(seen.insideOneAggregate).toBeGreaterThan(0);
    expect(seen.acrossRecords).toBeGreaterThan(0);
    expect(seen.corrupt).toBeGreaterThan(0);
    expect(seen.badUserRecords).toBeGreaterThan(0);
  }, 600_000);
});
