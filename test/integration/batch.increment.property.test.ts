/**
 * Incremental runs equal a rebuild (issue 19, docs/batch-layer.md "Increments"), through the
 * real archive handler, s3rver, DuckDB and dynalite: for random streams (duplicates inside and
 * beyond a small dedup horizon H = 120 s with 60 s windows, late events across day partitions)
 * and random sequences of steps (runs after a few minutes, runs with nothing new, rollbacks, a
 * changed view declaration, a requested rebuild of one view), every published version equals
 * the oracle at its cutoff; every version still kept stays readable (retention never deletes a
 * partition a kept version references) and no row outlives every version referencing it; and
 * at the end the incremental world equals one rebuild at the same cutoff in a fresh world, row
 * for row, read directly and through the query path (byte-identical answers, `parts=1` too).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryView } from '../../functions/api/query.ts';
import { exactDocClient } from '../../functions/api/read-view.ts';
import { type Control, getPointer, listManifests } from '../../functions/batch/control.ts';
import { partitionRefs } from '../../functions/batch/load.ts';
import { runBatchToCompletion } from '../../functions/batch/pipeline.ts';
import { rollbackTo } from '../../functions/batch/publish.ts';
import type { RunRequest } from '../../functions/batch/steps.ts';
import type { Config } from '../../functions/config.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { count, max, sum, type View, view } from '../../functions/core/views.ts';
import { silentLogger } from '../support/api.ts';
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

// Just before midnight: late events (event time hours before arrival) fall into the previous day's partition.
const T0 = Date.UTC(2030, 4, 10, 23, 50, 0);
const MIN = 60_000;
const HORIZON_S = 120;
const SETTINGS = { dedupHorizonSeconds: HORIZON_S, windowSeconds: 60, keepVersions: 2 };

/** A view whose declaration a step changes (the next run must rebuild it, and only it). */
const VARIANTS: readonly View[] = [
  view({ name: 'flex', dimensions: ['country'], grain: 'minute', metrics: { n: count(), amount: sum('amount') } }),
  view({ name: 'flex', dimensions: ['type'], grain: 'hour', metrics: { n: count(), top: max('load_ms') } }),
  view({ name: 'flex', filter: { type: 'purchase' }, dimensions: [], grain: 'minute', metrics: { amount: sum('amount') } }),
];

type Step =
  | { readonly kind: 'run'; readonly minutes: number }
  | { readonly kind: 'rollback' }
  | { readonly kind: 'change' }
  | { readonly kind: 'rebuild'; readonly view: string | null };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 7 }).map((minutes) => ({ kind: 'run' as const, minutes })) },
  { weight: 2, arbitrary: fc.constant({ kind: 'rollback' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'change' as const }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(null, 'page_views', 'flex').map((v) => ({ kind: 'rebuild' as const, view: v })),
  },
);

describe('incremental runs == one rebuild (property)', () => {
  let cloud: TestCloud;
  beforeAll(async () => {
    cloud = await startTestCloud();
  });
  afterAll(async () => {
    await cloud?.stop();
    removeStageDirs();
  });

  /** Fresh stores holding the records in the raw archive. */
  async function archived(records: readonly ShardRecord[]): Promise<Resources> {
    const r = await freshResources(cloud.clients, 'i');
    const archive = archiveHandler(cloud.clients, r);
    for (const b of batchesOf(records, 15)) expect((await archive(kinesisEvent(b))).batchItemFailures).toEqual([]);
    return r;
  }

  const control = (r: Resources): Control => ({ doc: cloud.clients.doc, table: r.tables.control });

  /** Every view of a version equals the oracle over the copies that count before its cutoff. */
  async function expectOracle(r: Resources, views: readonly View[], version: number, cutoff: number, records: readonly ShardRecord[]) {
    for (const v of views) {
      const got = await readBatchRows(cloud.clients.dynamodb, r.tables.batchViews, v, version);
      expect(sorted(got), `version ${version}, view ${v.name}, cutoff ${new Date(cutoff).toISOString()}`).toEqual(
        sorted(batchOracle(v, records, cutoff, HORIZON_S * 1000)),
      );
    }
  }

  /** Every row of the batch-view table is referenced by a version that is not retired (retention left nothing behind). */
  async function expectNoOrphans(r: Resources) {
    const referenced = new Set<string>();
    for (const m of await listManifests(control(r))) {
      if (m.state === 'retired') continue;
      for (const [name, v] of Object.entries(m.views ?? {})) for (const ref of partitionRefs(name, m.version, v)) referenced.add(ref.pk);
    }
    const orphans = (await scanAll(cloud.clients.dynamodb, r.tables.batchViews)).map((i) => i.pk!.S!).filter((pk) => !referenced.has(pk));
    expect([...new Set(orphans)]).toEqual([]);
  }

  /** The query answers of every view over the whole stream (parts=1, and all grains coarser too). */
  async function answers(r: Resources, views: readonly View[], now: number): Promise<string[]> {
    const deps = {
      doc: exactDocClient(cloud.clients.dynamodb),
      tables: { speed: r.tables.speed, batchViews: r.tables.batchViews, control: r.tables.control },
      views,
      settings: { ...testConfig(r, 'x', views, SETTINGS).settings },
      logger: silentLogger(),
      now: () => now,
    };
    const from = new Date(T0 - 2 * 86_400_000).toISOString();
    const to = new Date(T0 + 86_400_000).toISOString();
    const out: string[] = [];
    for (const v of views) {
      for (const params of [
        { from, to, parts: '1' },
        { from, to, grain: 'day' },
        { from, to, grain: 'all', groupBy: '' },
      ]) {
        const answer = await queryView(deps, v.name, params);
        // The version number differs between the worlds; the rows (and the cutoff) must not.
        out.push(JSON.stringify({ cutoff: answer.batch?.cutoff, rows: answer.rows }));
      }
    }
    return out;
  }

  it('any sequence of increments, empty runs, rollbacks and declaration changes equals one rebuild at the same cutoff', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          events: fc.integer({ min: 10, max: 60 }),
          shards: fc.integer({ min: 1, max: 2 }),
          duplicates: fc.constantFrom(0.1, 0.3),
          late: fc.constantFrom(0, 0.3),
          seed: fc.integer({ min: 1, max: 1_000_000 }),
          first: fc.integer({ min: 1, max: 6 }),
          steps: fc.array(stepArb, { minLength: 2, maxLength: 6 }),
        }),
        async (spec) => {
          // 24 minutes of arrivals, past midnight; duplicates resend ids from anywhere earlier: inside and beyond H.
          const records = generateStream({
            events: spec.events,
            shards: spec.shards,
            start: T0,
            span: 24 * MIN,
            duplicates: spec.duplicates,
            late: spec.late,
            seed: spec.seed,
          });
          const r = await archived(records);
          let views: View[] = [...DEMO_VIEWS, VARIANTS[0]!];
          let variant = 0;
          let config: Config = testConfig(r, cloud.names.TANDEM_STREAM_NAME!, views, SETTINGS);
          let now = T0 + spec.first * MIN;
          const versionViews = new Map<number, { views: View[]; cutoff: number }>();
          const flexOf = (vs: readonly View[]) => JSON.stringify(vs.find((v) => v.name === 'flex'));
          const run = async (request: RunRequest = {}) => {
            // The declaration the published version was computed for decides whether flex is rebuilt.
            const published = await getPointer(control(r));
            const changed = published !== undefined && flexOf(versionViews.get(published.version)!.views) !== flexOf(views);
            const got = await runBatchToCompletion(cloud.clients, config, batchOptions(cloud.clients, r, { now: () => now, request }));
            expect(got.error).toBeUndefined();
            if (got.state === 'SKIPPED') return got;
            expect(got.state).toBe('SUCCEEDED');
            versionViews.set(got.version!, { views, cutoff: got.cutoff! });
            await expectOracle(r, views, got.version!, got.cutoff!, records);
            const modes = Object.fromEntries(Object.entries(got.views).map(([n, v]) => [n, [v.mode, v.reason]]));
            if (got.version === 1) for (const v of views) expect(modes[v.name]).toEqual(['rebuild', 'new view']);
            else if (!request.rebuild) {
              for (const v of views) {
                if (v.name === request.view) expect(modes[v.name]).toEqual(['rebuild', 'requested']);
                else if (v.name === 'flex' && changed) expect(modes[v.name]).toEqual(['rebuild', 'declaration changed']);
                else expect(modes[v.name]).toEqual(['increment', undefined]);
              }
            } else for (const v of views) expect(modes[v.name]).toEqual(['rebuild', 'requested']);
            return got;
          };

          await run();
          for (const step of spec.steps) {
            if (step.kind === 'run') {
              now += step.minutes * MIN;
              await run();
            } else if (step.kind === 'rebuild') {
              now += 2 * MIN;
              await run(step.view === null ? { rebuild: true } : { view: step.view });
            } else if (step.kind === 'change') {
              variant = (variant + 1) % VARIANTS.length;
              views = [...DEMO_VIEWS, VARIANTS[variant]!];
              config = { ...config, views };
            } else {
              // Back to the newest kept version below the current one, if any.
              const current = (await getPointer(control(r)))?.version;
              const kept = (await listManifests(control(r)))
                .filter((m) => m.state === 'published' && m.version !== current)
                .map((m) => m.version)
                .sort((a, b) => b - a);
              if (kept[0] === undefined) continue;
              const back = await rollbackTo(
                {
                  control: control(r),
                  ddb: cloud.clients.dynamodb,
                  batchViewsTable: r.tables.batchViews,
                  settings: config.settings,
                  now: () => now,
                },
                kept[0],
              );
              expect(back.status).toBe('ok');
            }
            // Every kept version still reads as it was published; nothing is left that no kept version needs.
            for (const m of await listManifests(control(r))) {
              if (m.state === 'retired') continue;
              const at = versionViews.get(m.version)!;
              await expectOracle(r, at.views, m.version, at.cutoff, records);
            }
            await expectNoOrphans(r);
          }

          // One more increment (past any rollback), then the same cutoff as one rebuild in a fresh world.
          now += MIN;
          const last = await run();
          expect(last.state).toBe('SUCCEEDED');
          const pointer = (await getPointer(control(r)))!;
          const fresh = await archived(records);
          const rebuilt = await runBatchToCompletion(
            cloud.clients,
            testConfig(fresh, cloud.names.TANDEM_STREAM_NAME!, views, SETTINGS),
            batchOptions(cloud.clients, fresh, { now: () => now }),
          );
          expect(rebuilt).toMatchObject({ state: 'SUCCEEDED', version: 1, cutoff: pointer.cutoff });
          for (const v of views) {
            expect(sorted(await readBatchRows(cloud.clients.dynamodb, r.tables.batchViews, v, pointer.version)), v.name).toEqual(
              sorted(await readBatchRows(cloud.clients.dynamodb, fresh.tables.batchViews, v, 1)),
            );
          }
          expect(await answers(r, views, now)).toEqual(await answers(fresh, views, now));
        },
      ),
      // Each case is a handful of full runs: report the first counterexample without shrinking.
      { numRuns: 12, endOnFailure: true, seed: 20261206 },
    );
  }, 600_000);
});
