/**
 * The speed handler driven by the local event source mapping (local/esm.ts)
 * from records put into the Kinesis emulator, with a crash hook around each
 * invocation: a function error before the handler runs, a function error
 * after it ran (a timeout after the writes landed: Lambda bisects and
 * retries), and DynamoDB faults inside it (the handler reports the batch's
 * first record). Property: the speed table ends equal to the oracle over the
 * records as Kinesis stored them (their real sequence numbers and arrival
 * times) under the dedup rule with a one-second horizon (the second request
 * sometimes comes after a pause longer than H), and poison is counted once.
 */
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import {
  CreateStreamCommand,
  DeleteStreamCommand,
  DescribeStreamSummaryCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  ListShardsCommand,
  PutRecordsCommand,
} from '@aws-sdk/client-kinesis';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { DEFAULT_SETTINGS } from '../../functions/core/settings.ts';
import { startTestCloud, type TestCloud } from '../support/cloud.ts';
import { drainWithHooks, hookArb } from '../support/esm.ts';
import { countedCopies } from '../support/oracle.ts';
import { asObject, createSpeedTables, oracle, readSpeedTable, type ShardRecord } from '../support/speed.ts';

const WINDOW_MS = DEFAULT_SETTINGS.windowSeconds * 1000;
/** A one-second horizon: copies in one request arrive within H, a second request after a pause beyond it. */
const SETTINGS = { ...DEFAULT_SETTINGS, dedupHorizonSeconds: 1 };
const H = SETTINGS.dedupHorizonSeconds * 1000;

const eventArb = fc.record({
  id: fc.nat(9),
  type: fc.constantFrom('purchase', 'page_view', 'signup'),
  country: fc.constantFrom('DE', 'FR'),
  amount: fc.constantFrom(0.000000001, 12.5, 3),
  lateMs: fc.constantFrom(0, 0, 7_200_000),
  poison: fc.constantFrom(false, false, false, false, false, false, false, false, false, true),
});

async function readStream(cloud: TestCloud, StreamName: string): Promise<ShardRecord[]> {
  const shards = (await cloud.clients.kinesis.send(new ListShardsCommand({ StreamName }))).Shards ?? [];
  const out: ShardRecord[] = [];
  for (const s of shards) {
    const it = await cloud.clients.kinesis.send(
      new GetShardIteratorCommand({ StreamName, ShardId: s.ShardId!, ShardIteratorType: 'TRIM_HORIZON' }),
    );
    const got = await cloud.clients.kinesis.send(new GetRecordsCommand({ ShardIterator: it.ShardIterator!, Limit: 10_000 }));
    for (const r of got.Records ?? []) {
      const bytes = Buffer.from(r.Data ?? new Uint8Array());
      let event: ShardRecord['event'];
      try {
        event = JSON.parse(bytes.toString('utf8'));
      } catch {
        event = bytes;
      }
      out.push({ shard: s.ShardId!, seq: r.SequenceNumber!, arrival: r.ApproximateArrivalTimestamp!.getTime(), event });
    }
  }
  return out;
}

describe('speed layer through the local event source mapping', () => {
  let cloud: TestCloud;
  let run = 0;
  beforeAll(async () => {
    cloud = await startTestCloud();
  });
  afterAll(async () => {
    await cloud?.stop();
  });

  it('ends equal to the oracle under random crashes, with Lambda retrying and bisecting', async () => {
    // Copies dropped for a copy within H before them, and copies that count again beyond H.
    const seen = { within: 0, beyond: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.array(eventArb, { minLength: 1, maxLength: 24 }),
        fc.array(hookArb, { maxLength: 10 }),
        fc.integer({ min: 1, max: 8 }),
        fc.constantFrom(0, 0, 0, H + 200),
        async (events, hooks, batchSize, pauseMs) => {
          const n = ++run;
          const StreamName = `speed-esm-${n}`;
          await cloud.clients.kinesis.send(new CreateStreamCommand({ StreamName, ShardCount: 2 }));
          for (let i = 0; ; i++) {
            const d = await cloud.clients.kinesis.send(new DescribeStreamSummaryCommand({ StreamName }));
            if (d.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') break;
            if (i > 200) throw new Error('stream not ACTIVE');
            await new Promise((r) => setTimeout(r, 20));
          }
          const tables = await createSpeedTables(cloud.clients.dynamodb, `esm${n}`);
          // Two requests, as producers retrying would send them: the second repeats some ids.
          const now = Date.now();
          const entries = events.map((e, i) => ({
            PartitionKey: `e${e.id}`,
            Data: e.poison
              ? Buffer.from(`not json ${i}`)
              : Buffer.from(JSON.stringify({ id: `e${e.id}`, type: e.type, ts: now - e.lateMs - i, country: e.country, amount: e.amount })),
          }));
          const half = Math.ceil(entries.length / 2);
          for (const [k, part] of [entries.slice(0, half), entries.slice(half)].entries()) {
            if (part.length === 0) continue;
            if (k > 0 && pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
            const put = await cloud.clients.kinesis.send(new PutRecordsCommand({ StreamName, Records: part }));
            expect(put.FailedRecordCount ?? 0).toBe(0);
          }

          await drainWithHooks(cloud.clients, {
            name: `speed-esm-${n}`,
            streamName: StreamName,
            tables,
            failureBucket: cloud.names.TANDEM_FAILURE_BUCKET!,
            settings: SETTINGS,
            batchSize,
            hooks,
          });
          const stored = await readStream(cloud, StreamName);
          expect(stored).toHaveLength(events.length);
          const got = await readSpeedTable(cloud.clients.dynamodb, tables.speed);
          expect(asObject(got)).toEqual(asObject(oracle(DEMO_VIEWS, stored, WINDOW_MS, H)));
          const valid = stored.flatMap((r) => (r.event instanceof Uint8Array ? [] : [{ ...r, id: String(r.event.id) }]));
          const counted = countedCopies(valid, H);
          seen.within += valid.length - counted.length;
          seen.beyond += counted.length - new Set(valid.map((c) => c.id)).size;
          const poison = stored.filter((r) => r.event instanceof Uint8Array).length;
          const stats = await cloud.clients.dynamodb.send(
            new GetItemCommand({ TableName: tables.control, Key: { pk: { S: 'stats' }, sk: { S: 'poison' } } }),
          );
          expect(Number(stats.Item?.count?.N ?? 0)).toBe(poison);
          await cloud.clients.kinesis.send(new DeleteStreamCommand({ StreamName, EnforceConsumerDeletion: true }));
        },
      ),
      { numRuns: 100 },
    );
    expect(seen.within).toBeGreaterThan(0);
    expect(seen.beyond).toBeGreaterThan(0);
    // 100 runs against real emulators: about a minute on a busy 2-core machine.
  }, 600_000);
});
