/**
 * An increment gives the oracle's rows, compaction off (a report: "an increment after a first run
 * gave 479 rows of events_by_type where the oracle has 480"). The difference came from the test's
 * world, not the product: the second stream started at "the last arrival + 1 min" while the first
 * run had planned at "the last arrival + 2 min" and published a cutoff past that start, so a record
 * arriving before the published cutoff was archived after the publish. The cutoff vouches for the
 * opposite (invariant 4, docs/design.md), and an increment [C, C') rightly never counts it; a
 * rebuild and the oracle do. The test support's archive handler now refuses such a record.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOUR_MS } from '../../functions/archive/layout.ts';
import { runBatchToCompletion } from '../../functions/batch/pipeline.ts';
import { archiveWorld, batchesOf, batchOptions, kinesisEvent, removeStageDirs } from '../support/batch.ts';
import { startTestCloud, type TestCloud } from '../support/cloud.ts';

const MIN = 60_000;
const T0 = Date.UTC(2030, 6, 20, 10, 5, 0);

describe('an increment after a first run, compaction off', () => {
  let cloud: TestCloud;
  beforeAll(async () => {
    cloud = await startTestCloud();
  });
  afterAll(async () => {
    await cloud?.stop();
    removeStageDirs();
  });

  /** The reported world: 600 events over 2 h 50 min (seed 1), a run at "2 minutes after the last arrival". */
  async function firstRun(prefix: string, compaction = false) {
    const { r, config, archive, records, add, expectOracle, now } = await archiveWorld(cloud, prefix, T0);
    const base = batchOptions(cloud.clients, r);
    // No compactor (as reported): every run reads the JSON objects.
    const engine = compaction ? base.engine! : { ...base.engine!, compactor: undefined };
    const run = (request: { rebuild?: boolean } = {}) => runBatchToCompletion(cloud.clients, config, { engine, now, request });
    await add(T0, 2 * HOUR_MS + 50 * MIN, 600, 1);
    const v1 = await run();
    expect(v1).toMatchObject({ state: 'SUCCEEDED', version: 1 });
    await expectOracle(1, v1.cutoff!);
    return { records, archive, add, run, expectOracle, v1, now };
  }

  it('refuses to archive a record that arrived before the published cutoff (no increment would count it)', async () => {
    const t = await firstRun('ie');
    // The reported start: 1 min after the last arrival, while v1's cutoff is 1 min 17 s after it.
    const start = t.records.at(-1)!.arrival + MIN;
    expect(start).toBeLessThan(t.v1.cutoff!);
    await expect(t.add(start, 70 * MIN, 200, 2)).rejects.toThrow(/before the published cutoff .*: archived now it is in no increment/);
    // A redelivery (a Lambda retry of records archived before the publish) is no new arrival.
    expect((await t.archive(kinesisEvent(batchesOf(t.records, 40)[0]!))).batchItemFailures).toEqual([]);
  });

  it('gives the oracle rows when the new records arrive after the published cutoff, as a rebuild does', async () => {
    const t = await firstRun('ix');
    await t.add(t.now(), 70 * MIN, 200, 2);
    const v2 = await t.run();
    expect(v2).toMatchObject({ state: 'SUCCEEDED', version: 2 });
    expect(Object.values(v2.views).map((v) => v.mode)).toEqual(['increment', 'increment', 'increment']);
    await t.expectOracle(2, v2.cutoff!);
    await t.add(t.now(), 5 * MIN, 20, 3);
    const v3 = await t.run();
    expect(v3).toMatchObject({ state: 'SUCCEEDED', version: 3 });
    await t.expectOracle(3, v3.cutoff!);
  });

  it('gives the oracle rows with compaction on too (the increment reads compacted hours as Parquet)', async () => {
    const t = await firstRun('ic', true);
    await t.add(t.now(), 70 * MIN, 200, 2);
    const v2 = await t.run();
    expect(v2).toMatchObject({ state: 'SUCCEEDED', version: 2 });
    expect(v2.archive?.compactedHours).toBe(2);
    await t.expectOracle(2, v2.cutoff!);
  });
});
