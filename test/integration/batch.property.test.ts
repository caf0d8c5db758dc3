/**
 * The batch layer's exactness property (invariant 2 of docs/design.md, batch side), through the
 * real archive handler, s3rver, DuckDB and dynalite: for random streams
 * (demo mix, duplicate ids with the same or other values, late events, odd
 * metric values), random archive batching with redelivered and overlapping
 * batches, random views besides the demo ones, and random cut times, every
 * view of the published version equals an independent oracle over the unique
 * events (first arrival wins) that arrived before the cutoff.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBatchToCompletion } from '../../functions/batch/pipeline.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { avg, count, type Metric, max, min, sum, type View, view } from '../../functions/core/views.ts';
import {
  archiveHandler,
  batchOptions,
  batchOracle,
  freshResources,
  generateStream,
  kinesisEvent,
  readBatchRows,
  removeStageDirs,
  type ShardRecord,
  sorted,
  testConfig,
} from '../support/batch.ts';
import { startTestCloud, type TestCloud } from '../support/cloud.ts';

const T0 = Date.UTC(2030, 2, 1, 23, 30, 0);
const FIELDS = ['type', 'country', 'page', 'plan'] as const;

const metricArb: fc.Arbitrary<Metric> = fc.oneof(
  fc.constant(count()),
  fc.constantFrom('amount', 'load_ms').chain((f) => fc.constantFrom(sum(f), min(f), max(f), avg(f))),
);

const viewArb = (name: string): fc.Arbitrary<View> =>
  fc
    .record({
      dimensions: fc.subarray([...FIELDS], { maxLength: 3 }),
      grain: fc.constantFrom('minute' as const, 'hour' as const, 'day' as const),
      filter: fc.option(
        fc.oneof(
          fc.record({ type: fc.constantFrom('purchase', 'page_view', 'signup') }),
          fc.record({ country: fc.constantFrom('DE', 'US') }),
        ),
        {
          nil: undefined,
        },
      ),
      metrics: fc.uniqueArray(metricArb, { minLength: 1, maxLength: 4, selector: (m) => JSON.stringify(m) }),
    })
    .map((v) =>
      view({
        name,
        dimensions: v.dimensions,
        grain: v.grain,
        ...(v.filter && { filter: v.filter }),
        metrics: Object.fromEntries(v.metrics.map((m, i) => [`m${i}`, m])),
      }),
    );

describe('batch recompute == oracle (property)', () => {
  let cloud: TestCloud;
  beforeAll(async () => {
    cloud = await startTestCloud();
  });
  afterAll(async () => {
    await cloud?.stop();
    removeStageDirs();
  });

  it('every view of every published version equals the oracle over unique events before the cutoff', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          events: fc.integer({ min: 1, max: 50 }),
          shards: fc.integer({ min: 1, max: 3 }),
          duplicates: fc.constantFrom(0, 0.1, 0.3),
          late: fc.constantFrom(0, 0.2),
          seed: fc.integer({ min: 1, max: 1_000_000 }),
          batchSize: fc.integer({ min: 4, max: 40 }),
          // Per archive batch: delivered once, twice, or again with other boundaries.
          redeliver: fc.array(fc.constantFrom('once', 'twice', 'overlap'), { minLength: 1, maxLength: 8 }),
          // Cut times as fractions of the arrival span (several runs: versions 1, 2, ...).
          cuts: fc.oneof(
            { weight: 3, arbitrary: fc.tuple(fc.double({ min: 0.1, max: 1.3, noNaN: true })) },
            {
              weight: 1,
              arbitrary: fc.tuple(fc.double({ min: 0.1, max: 1.3, noNaN: true }), fc.double({ min: 0.1, max: 1.3, noNaN: true })),
            },
          ),
          randomViews: fc.integer({ min: 0, max: 2 }),
        }),
        fc.tuple(viewArb('random_a'), viewArb('random_b')),
        async (spec, randomViews) => {
          const views = [...DEMO_VIEWS, ...randomViews.slice(0, spec.randomViews)];
          const span = 20 * 60_000;
          const records = generateStream({
            events: spec.events,
            shards: spec.shards,
            start: T0,
            span,
            duplicates: spec.duplicates,
            late: spec.late,
            seed: spec.seed,
          });
          const r = await freshResources(cloud.clients, 'p');
          const archive = archiveHandler(cloud.clients, r);
          const config = testConfig(r, cloud.names.TANDEM_STREAM_NAME!, views);
          // Archive in stream order per shard; the clock moves along, runs happen at the cut times.
          const byShard = new Map<string, ShardRecord[]>();
          for (const x of records) byShard.set(x.shard, [...(byShard.get(x.shard) ?? []), x]);
          const batches: ShardRecord[][] = [];
          for (const list of byShard.values())
            for (let i = 0; i < list.length; i += spec.batchSize) batches.push(list.slice(i, i + spec.batchSize));
          for (const [i, b] of batches.entries()) {
            const how = spec.redeliver[i % spec.redeliver.length];
            const sends = how === 'twice' ? [b, b] : how === 'overlap' ? [b, b.slice(Math.floor(b.length / 2))] : [b];
            for (const s of sends) expect((await archive(kinesisEvent(s))).batchItemFailures).toEqual([]);
          }
          const cutTimes = [...spec.cuts].sort((a, b) => a - b).map((f) => T0 + Math.floor(f * span));
          let lastCutoff: number | null = null;
          for (const now of cutTimes) {
            const run = await runBatchToCompletion(cloud.clients, config, batchOptions(cloud.clients, r, { now: () => now }));
            if (run.state === 'SKIPPED') {
              // Only when the clock did not pass another window.
              expect(lastCutoff).not.toBeNull();
              expect(run.cutoff).toBe(lastCutoff);
              continue;
            }
            expect(run.error).toBeUndefined();
            expect(run.state).toBe('SUCCEEDED');
            lastCutoff = run.cutoff!;
            for (const v of views) {
              const got = await readBatchRows(cloud.clients.dynamodb, r.tables.batchViews, v, run.version!);
              expect(sorted(got), `view ${v.name} ${JSON.stringify(v)} at cutoff ${new Date(run.cutoff!).toISOString()}`).toEqual(
                sorted(batchOracle(v, records, run.cutoff!)),
              );
            }
          }
        },
      ),
      // Each case is a full run (about a second): report the first counterexample without shrinking.
      { numRuns: 50, endOnFailure: true },
    );
    // 50 full runs (archive, plan over the Kinesis emulator, DuckDB, load, publish): about a second each.
  }, 600_000);
});
