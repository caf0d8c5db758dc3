/**
 * Property: whatever the schedule of deliveries — batch sizes, crashes after
 * k requests (before sending or with the answer lost), retries, bisections,
 * retries that extend past the first attempt, redeliveries of processed
 * ranges that overlap new records, cold containers — on two shards at once,
 * the speed table ends equal to an oracle of the dedup rule with a small
 * horizon (copies within and beyond H), and poison is counted once. Drives the real handler against dynalite; one emulator
 * set, fresh tables per run.
 */
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { DEFAULT_SETTINGS } from '../../functions/core/settings.ts';
import { ItemCache } from '../../functions/speed/apply.ts';
import { createSpeedHandler, type SpeedHandler } from '../../functions/speed/handler.ts';
import { startTestCloud, type TestCloud } from '../support/cloud.ts';
import { countedCopies } from '../support/oracle.ts';
import {
  asObject,
  createSpeedTables,
  type Fault,
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
/** A small horizon: with gaps of up to 45 s, copies of an id land both within H of the previous copy and beyond it. */
const SETTINGS = { ...DEFAULT_SETTINGS, dedupHorizonSeconds: 60 };
const T0 = Date.UTC(2025, 5, 1, 23, 58, 0);
const SHARDS = 2;

const eventArb = fc.record({
  id: fc.nat(13),
  type: fc.constantFrom('purchase', 'purchase', 'page_view', 'signup'),
  country: fc.constantFrom('DE', 'FR', null),
  page: fc.constantFrom('/', '/docs'),
  amount: fc.option(fc.constantFrom(0.000000001, 19.99, 5, 123456.000000001, -2.5, 0.3), { nil: undefined }),
  load_ms: fc.option(fc.nat(2000), { nil: undefined }),
  lateMs: fc.constantFrom(0, 0, 90_000, 5 * 3_600_000),
  gapMs: fc.nat(45_000),
  poison: fc.constantFrom(false, false, false, false, false, false, false, false, false, true),
});

const faultArb: fc.Arbitrary<Fault | undefined> = fc.option(
  fc.record({ after: fc.nat(6), kind: fc.constantFrom('throw', 'lost'), on: fc.constantFrom('UpdateItemCommand', 'any') }),
  { nil: undefined, freq: 2 },
) as fc.Arbitrary<Fault | undefined>;

const stepArb = fc.record({
  size: fc.integer({ min: 1, max: 10 }),
  fault: faultArb,
  onFail: fc.constantFrom('retry', 'bisect', 'extend'),
  extra: fc.integer({ min: 1, max: 6 }),
  redeliver: fc.option(fc.record({ back: fc.integer({ min: 1, max: 8 }), ahead: fc.nat(4) }), { nil: undefined, freq: 3 }),
  cold: fc.boolean(),
});
type Step = typeof stepArb extends fc.Arbitrary<infer T> ? T : never;

/** The records of each shard, in order: ids live on shard id % SHARDS, as a partition key would place them. */
function toShards(events: readonly (typeof eventArb extends fc.Arbitrary<infer T> ? T : never)[]): ShardRecord[][] {
  const shards: ShardRecord[][] = Array.from({ length: SHARDS }, () => []);
  const clock = Array.from({ length: SHARDS }, () => T0);
  for (const e of events) {
    const s = e.id % SHARDS;
    const list = shards[s]!;
    clock[s]! += e.gapMs;
    const arrival = clock[s]!;
    const event = e.poison
      ? Buffer.from(`{"id":"e${e.id}",`)
      : {
          id: `e${e.id}`,
          type: e.type,
          ts: arrival - e.lateMs,
          country: e.country,
          page: e.page,
          ...(e.amount !== undefined && { amount: e.amount }),
          ...(e.load_ms !== undefined && { load_ms: e.load_ms }),
        };
    list.push({ shard: shardId(s), seq: seqOf(s, list.length), arrival, event });
  }
  return shards;
}

/**
 * An event source mapping with Lambda's semantics and an adversarial
 * schedule: returns once every record was delivered in a successful batch.
 */
async function drive(
  records: readonly ShardRecord[],
  steps: readonly Step[],
  make: (cache: ItemCache) => SpeedHandler,
  arm: (f: Fault | undefined) => void,
) {
  let handler = make(new ItemCache());
  const n = records.length;
  const queue: [number, number][] = [];
  let pos = 0;
  for (let i = 0; pos < n || queue.length > 0; i++) {
    if (i > 1000) throw new Error('schedule did not finish');
    const step: Step = steps[i] ?? { size: 8, fault: undefined, onFail: 'retry', extra: 1, redeliver: undefined, cold: false };
    if (step.cold) handler = make(new ItemCache());
    const [a, b] = queue.shift() ?? [pos, Math.min(n, pos + step.size)];
    arm(step.fault);
    const res = await handler(kinesisEvent(records.slice(a, b)));
    arm(undefined);
    if (res.batchItemFailures.length === 0) {
      pos = Math.max(pos, b);
      if (step.redeliver) queue.push([Math.max(0, b - step.redeliver.back), Math.min(n, b + step.redeliver.ahead)]);
      continue;
    }
    // Only ever the batch's first record.
    expect(res.batchItemFailures).toEqual([{ itemIdentifier: records[a]!.seq }]);
    if (step.onFail === 'bisect' && b - a > 1) {
      const mid = a + Math.floor((b - a) / 2);
      queue.unshift([a, mid], [mid, b]);
    } else if (step.onFail === 'extend') queue.unshift([a, Math.min(n, b + step.extra)]);
    else queue.unshift([a, b]);
  }
}

describe('speed layer property', () => {
  let cloud: TestCloud;
  let run = 0;
  beforeAll(async () => {
    cloud = await startTestCloud();
  });
  afterAll(async () => {
    await cloud?.stop();
  });

  it('ends equal to the oracle under any schedule of redeliveries, crashes and splits', async () => {
    // Copies dropped for a copy within H before them, and copies that count again beyond H.
    const seen = { within: 0, beyond: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.array(eventArb, { minLength: 1, maxLength: 28 }),
        fc.array(fc.array(stepArb, { maxLength: 12 }), { minLength: SHARDS, maxLength: SHARDS }),
        async (events, schedules) => {
          const tables = await createSpeedTables(cloud.clients.dynamodb, `prop${++run}`);
          const shards = toShards(events);
          await Promise.all(
            shards.map((records, s) => {
              const faulty = faultyClient(cloud.clients.dynamodb);
              const make = (cache: ItemCache) =>
                createSpeedHandler({
                  ddb: faulty.client,
                  s3: cloud.clients.s3,
                  tables,
                  failureBucket: cloud.names.TANDEM_FAILURE_BUCKET!,
                  views: DEMO_VIEWS,
                  settings: SETTINGS,
                  cache,
                  ...telemetry,
                });
              return drive(records, schedules[s]!, make, (f) => faulty.arm(f));
            }),
          );
          const all = shards.flat();
          const valid = all.flatMap((r) => (r.event instanceof Uint8Array ? [] : [{ ...r, id: String(r.event.id) }]));
          const counted = countedCopies(valid, SETTINGS.dedupHorizonSeconds * 1000);
          seen.within += valid.length - counted.length;
          seen.beyond += counted.length - new Set(valid.map((c) => c.id)).size;
          const got = await readSpeedTable(cloud.clients.dynamodb, tables.speed);
          expect(asObject(got)).toEqual(asObject(oracle(DEMO_VIEWS, all, WINDOW_MS, SETTINGS.dedupHorizonSeconds * 1000)));
          const poison = all.filter((r) => r.event instanceof Uint8Array).length;
          const stats = await cloud.clients.dynamodb.send(
            new GetItemCommand({ TableName: tables.control, Key: { pk: { S: 'stats' }, sk: { S: 'poison' } } }),
          );
          expect(Number(stats.Item?.count?.N ?? 0)).toBe(poison);
        },
      ),
      { numRuns: 100 },
    );
    expect(seen.within).toBeGreaterThan(0);
    expect(seen.beyond).toBeGreaterThan(0);
    // 100 runs against real emulators: about a minute on a busy 2-core machine.
  }, 600_000);
});
