/**
 * Any partition key (issue 22): copies of one event id put with partition
 * keys other than the id (a user id, a random key), plain and inside KPL
 * aggregates, land on both shards of the Kinesis emulator; ids keyed by
 * their id run alongside them. Through the local event source mapping, under
 * the crash hooks of speed.esm.test.ts (Lambda retrying and bisecting), the
 * speed layer's answer summed over shards (what every query reads) equals the
 * oracle's under the dedup rule with a one-second horizon, ties by (arrival,
 * shard, seq): no copy counts twice across shards, none is lost. Copies of an
 * id are identical, as a producer's retries are (see docs/design.md,
 * invariant 3, for what a lagging shard changes when they are not).
 */
import {
  CreateStreamCommand,
  DeleteStreamCommand,
  DescribeStreamSummaryCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  ListShardsCommand,
  PutRecordsCommand,
  type PutRecordsRequestEntry,
} from '@aws-sdk/client-kinesis';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kplAggregate } from '../../functions/adapters/kinesis-records.ts';
import { deaggregateRecord, isAggregated } from '../../functions/adapters/kpl.ts';
import { Decimal } from '../../functions/core/decimal.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { recordPosition } from '../../functions/core/record.ts';
import { DEFAULT_SETTINGS } from '../../functions/core/settings.ts';
import { ItemCache } from '../../functions/speed/apply.ts';
import { createSpeedHandler } from '../../functions/speed/handler.ts';
import { startEventSourceMapping } from '../../local/esm.ts';
import { startTestCloud, type TestCloud } from '../support/cloud.ts';
import { countedCopies } from '../support/oracle.ts';
import {
  asObject,
  createSpeedTables,
  type Fault,
  faultyClient,
  type ItemValues,
  oracle,
  quietTelemetry,
  readSpeedTable,
  type ShardRecord,
} from '../support/speed.ts';

const telemetry = quietTelemetry();
const WINDOW_MS = DEFAULT_SETTINGS.windowSeconds * 1000;
const SETTINGS = { ...DEFAULT_SETTINGS, dedupHorizonSeconds: 1 };
const H = SETTINGS.dedupHorizonSeconds * 1000;
const quiet = { info: () => {}, warn: () => {}, error: () => {} };

type Hook = { kind: 'none' } | { kind: 'before' } | { kind: 'after' } | { kind: 'dynamo'; fault: Fault };
const hookArb: fc.Arbitrary<Hook> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ kind: 'none' } as Hook) },
  { weight: 1, arbitrary: fc.constant({ kind: 'before' } as Hook) },
  { weight: 1, arbitrary: fc.constant({ kind: 'after' } as Hook) },
  {
    weight: 2,
    arbitrary: fc
      .record({ after: fc.nat(5), kind: fc.constantFrom('throw', 'lost'), on: fc.constantFrom('UpdateItemCommand', 'any') })
      .map((fault) => ({ kind: 'dynamo', fault: fault as Fault }) as Hook),
  },
);

/** The stream's records as the consumers must see them: each user record of an aggregate as an event at its position. */
async function readEvents(cloud: TestCloud, StreamName: string): Promise<ShardRecord[]> {
  const shards = (await cloud.clients.kinesis.send(new ListShardsCommand({ StreamName }))).Shards ?? [];
  const out: ShardRecord[] = [];
  const event = (bytes: Buffer): ShardRecord['event'] => {
    try {
      return JSON.parse(bytes.toString('utf8'));
    } catch {
      return bytes;
    }
  };
  for (const s of shards) {
    const it = await cloud.clients.kinesis.send(
      new GetShardIteratorCommand({ StreamName, ShardId: s.ShardId!, ShardIteratorType: 'TRIM_HORIZON' }),
    );
    const got = await cloud.clients.kinesis.send(new GetRecordsCommand({ ShardIterator: it.ShardIterator!, Limit: 10_000 }));
    for (const r of got.Records ?? []) {
      const bytes = Buffer.from(r.Data ?? new Uint8Array());
      const base = { shard: s.ShardId!, arrival: r.ApproximateArrivalTimestamp!.getTime() };
      if (!isAggregated(bytes)) {
        out.push({ ...base, seq: r.SequenceNumber!, event: event(bytes) });
        continue;
      }
      const agg = deaggregateRecord(bytes, r.SequenceNumber!, r.PartitionKey!);
      if (!agg.ok) out.push({ ...base, seq: r.SequenceNumber!, event: bytes });
      else
        for (const u of agg.records)
          out.push({ ...base, seq: recordPosition(r.SequenceNumber!, u.sub), event: u.ok ? event(u.data) : Buffer.from('bad') });
    }
  }
  return out;
}

const eventArb = fc.record({
  id: fc.nat(9),
  /** Ids 0 to 2 are keyed by their id (the batched path); the others by a key drawn here. */
  key: fc.constantFrom('user-1', 'user-2', 'user-3', 'rand-a', 'rand-b', 'rand-c', 'rand-d'),
  aggregated: fc.boolean(),
});

/** Cells summed over shards (what a query reads); items' hw dropped (they are per shard). */
function acrossShards(m: Map<string, ItemValues>): Map<string, ItemValues> {
  const out = new Map<string, ItemValues>();
  for (const [key, values] of m) {
    if (key.startsWith('hw|')) continue;
    const cell = key.slice(0, key.lastIndexOf('|'));
    const have = out.get(cell) ?? {};
    for (const [k, v] of Object.entries(values)) {
      const x = new Decimal(v);
      const h = have[k];
      have[k] = (
        h === undefined ? x : k.endsWith('__min') ? Decimal.min(h, x) : k.endsWith('__max') ? Decimal.max(h, x) : x.plus(h)
      ).toFixed();
    }
    out.set(cell, have);
  }
  return out;
}

describe('copies of an id on several shards (partition keys other than the id)', () => {
  let cloud: TestCloud;
  let run = 0;
  beforeAll(async () => {
    cloud = await startTestCloud();
  });
  afterAll(async () => {
    await cloud?.stop();
  });

  it('counts each copy by the rule across shards, under random crashes, retries and bisects', async () => {
    const seen = { acrossShards: 0, beyond: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.array(eventArb, { minLength: 2, maxLength: 30 }),
        fc.array(hookArb, { maxLength: 10 }),
        fc.integer({ min: 1, max: 6 }),
        fc.constantFrom(0, 0, H + 200),
        async (events, hooks, batchSize, pauseMs) => {
          const n = ++run;
          const StreamName = `keys-${n}`;
          await cloud.clients.kinesis.send(new CreateStreamCommand({ StreamName, ShardCount: 2 }));
          for (let i = 0; ; i++) {
            const d = await cloud.clients.kinesis.send(new DescribeStreamSummaryCommand({ StreamName }));
            if (d.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') break;
            if (i > 200) throw new Error('stream not ACTIVE');
            await new Promise((r) => setTimeout(r, 20));
          }
          const tables = await createSpeedTables(cloud.clients.dynamodb, `keys${n}`);
          const now = Date.now();
          // One content per id: copies are a producer's retries.
          const content = (id: number) =>
            Buffer.from(
              JSON.stringify({
                id: `e${id}`,
                type: ['purchase', 'page_view', 'signup'][id % 3],
                ts: now - (id % 4 === 0 ? 7_200_000 : 0) - id,
                country: id % 2 ? 'DE' : 'FR',
                amount: [0.000000001, 12.5, 3][id % 3],
              }),
            );
          const half = Math.ceil(events.length / 2);
          const requests = [events.slice(0, half), events.slice(half)].map((part) => {
            const entries: PutRecordsRequestEntry[] = [];
            const users: { partitionKey: string; data: Buffer }[] = [];
            for (const e of part) {
              const partitionKey = e.id < 3 ? `e${e.id}` : e.key;
              if (e.aggregated && e.id >= 3) users.push({ partitionKey, data: content(e.id) });
              else entries.push({ PartitionKey: partitionKey, Data: content(e.id) });
            }
            // Aggregates of non-id keys only: an aggregate routes all its user records by its own key.
            for (const agg of users.length > 0 ? kplAggregate(users) : []) entries.push({ PartitionKey: agg.partitionKey, Data: agg.data });
            return entries;
          });
          for (const [k, entries] of requests.entries()) {
            if (entries.length === 0) continue;
            if (k > 0 && pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
            const put = await cloud.clients.kinesis.send(new PutRecordsCommand({ StreamName, Records: entries }));
            expect(put.FailedRecordCount ?? 0).toBe(0);
          }

          const faulty = faultyClient(cloud.clients.dynamodb);
          const handler = createSpeedHandler({
            ddb: faulty.client,
            s3: cloud.clients.s3,
            tables,
            failureBucket: cloud.names.TANDEM_FAILURE_BUCKET!,
            views: DEMO_VIEWS,
            settings: SETTINGS,
            cache: new ItemCache(),
            ...telemetry,
          });
          const pending = [...hooks];
          const esm = await startEventSourceMapping({
            name: `keys-${n}`,
            kinesis: cloud.clients.kinesis,
            streamName: StreamName,
            batchSize,
            bisectBatchOnError: true,
            reportBatchItemFailures: true,
            retryAttempts: -1,
            maxRecordAgeSeconds: -1,
            pollIntervalMs: 20,
            retryBackoffMs: 1,
            shardRefreshMs: 60_000,
            logger: quiet,
            invoke: async (event) => {
              const hook = pending.shift() ?? { kind: 'none' };
              if (hook.kind === 'before') throw new Error('crash hook: before the handler');
              faulty.arm(hook.kind === 'dynamo' ? hook.fault : undefined);
              try {
                const res = await handler(event);
                if (hook.kind === 'after') throw new Error('crash hook: after the handler (a timeout)');
                return res;
              } finally {
                faulty.arm(undefined);
              }
            },
          });
          try {
            await esm.idle();
          } finally {
            await esm.stop();
          }
          const stored = await readEvents(cloud, StreamName);
          const got = await readSpeedTable(cloud.clients.dynamodb, tables.speed);
          expect(asObject(acrossShards(got))).toEqual(asObject(acrossShards(oracle(DEMO_VIEWS, stored, WINDOW_MS, H))));
          const copies = stored.map((r) => ({ ...r, id: String((r.event as Record<string, unknown>).id) }));
          for (const id of new Set(copies.map((c) => c.id)))
            if (new Set(copies.filter((c) => c.id === id).map((c) => c.shard)).size > 1) seen.acrossShards++;
          seen.beyond += countedCopies(copies, H).length - new Set(copies.map((c) => c.id)).size;
          await cloud.clients.kinesis.send(new DeleteStreamCommand({ StreamName, EnforceConsumerDeletion: true }));
        },
      ),
      { numRuns: 30, seed: 20261206 }, // fixed: the coverage checks below must not depend on the draw
    );
    expect(seen.acrossShards).toBeGreaterThan(0);
    expect(seen.beyond).toBeGreaterThan(0);
  }, 600_000);
});
