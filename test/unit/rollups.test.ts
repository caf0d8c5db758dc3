/**
 * Rollups, pure parts: which grains a view keeps, the rollup rows of a partition (metric monoids),
 * the keys a manifest references, and which rows a query reads (`batchReads`: the coarsest kept grain
 * that tiles the query's grain for the aligned part of each partition, finer rows only at the edges).
 * The end-to-end exactness is test/integration/batch.rollup.property.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { batchReads } from '../../functions/api/read-view.ts';
import { partitionRefs, rollupAll, rollupRows, rollupsEntry } from '../../functions/batch/load.ts';
import { batchPartitionPk, batchRollupPk, pad13, rollupGrains } from '../../functions/core/keys.ts';
import { count, max, view } from '../../functions/core/views.ts';

const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const D0 = Date.UTC(2030, 0, 1);
const D1 = D0 + DAY;
const v = view({ name: 'v', dimensions: ['k'], grain: 'minute', metrics: { n: count(), top: max('x') } });

describe('rollups', () => {
  it('keeps each coarser grain among hour and day', () => {
    expect(rollupGrains('minute')).toEqual(['hour', 'day']);
    expect(rollupGrains('hour')).toEqual(['day']);
    expect(rollupGrains('day')).toEqual([]);
    expect(rollupsEntry(v, 7)).toEqual({ grains: ['hour', 'day'], from: 7 });
    expect(rollupsEntry(v, 8, { grains: ['hour', 'day'], from: 7 })).toEqual({ grains: ['hour', 'day'], from: 7 });
  });

  it('rolls a partition up with the metric monoids', () => {
    const rows = [
      { bucket: D0 + 5 * MIN, dims: ['a'], values: { n__count: '2', top__max: '3.5' } },
      { bucket: D0 + 59 * MIN, dims: ['a'], values: { n__count: '1', top__max: null } },
      { bucket: D0 + HOUR, dims: ['a'], values: { n__count: '4', top__max: '9' } },
      { bucket: D0 + 5 * MIN, dims: ['b'], values: { n__count: '1', top__max: '1' } },
    ];
    // In no particular order: encodeBlocks orders a block's rows.
    const sorted = (rs: readonly { bucket: number; dims: readonly (string | null)[] }[]) =>
      [...rs].sort((a, b) => a.bucket - b.bucket || JSON.stringify(a.dims).localeCompare(JSON.stringify(b.dims)));
    const hour = [
      { bucket: D0, dims: ['a'], values: { n__count: '3', top__max: '3.5' } },
      { bucket: D0, dims: ['b'], values: { n__count: '1', top__max: '1' } },
      { bucket: D0 + HOUR, dims: ['a'], values: { n__count: '4', top__max: '9' } },
    ];
    const day = [
      { bucket: D0, dims: ['a'], values: { n__count: '7', top__max: '9' } },
      { bucket: D0, dims: ['b'], values: { n__count: '1', top__max: '1' } },
    ];
    expect(sorted(rollupRows(v, 'hour', rows))).toEqual(hour);
    expect(sorted(rollupRows(v, 'day', rows))).toEqual(day);
    // Every grain at once, each from the one before it (the day from the hours): the same rows.
    const all = rollupAll(v, rows);
    expect([...all.keys()]).toEqual(['hour', 'day']);
    expect(sorted(all.get('hour')!)).toEqual(hour);
    expect(sorted(all.get('day')!)).toEqual(day);
  });

  it('references the rollup keys of the partitions written since rollups', () => {
    const refs = partitionRefs('v', 6, { partitions: { [pad13(D0)]: 5, [pad13(D1)]: 6 }, rollups: { grains: ['hour', 'day'], from: 6 } });
    expect(refs.map((r) => r.pk)).toEqual([
      batchPartitionPk('v', 5, D0),
      batchPartitionPk('v', 6, D1),
      batchRollupPk('v', 'hour', 6, D1),
      batchRollupPk('v', 'day', 6, D1),
    ]);
    expect(batchRollupPk('v', 'day', 6, D1)).toBe(`v@day#0000000006#${D1}`);
  });

  describe('batchReads', () => {
    const writers = {
      writers: new Map([
        [D0, 5],
        [D1, 6],
      ]),
      rollups: { grains: ['hour', 'day'] as const, from: 6 },
    };
    const read = (pk: string, grain: string, from: number, to: number) => ({ pk, grain, from, to });

    it('reads day rows for whole days, base rows where the writer predates rollups', () => {
      expect(batchReads(v, 6, 'day', D0 + 10 * HOUR + 30 * MIN, D1 + DAY, writers)).toEqual([
        read(batchPartitionPk('v', 5, D0), 'minute', D0 + 10 * HOUR + 30 * MIN, D1),
        read(batchRollupPk('v', 'day', 6, D1), 'day', D1, D1 + DAY),
      ]);
    });

    it('reads finer rows only for unaligned edges', () => {
      expect(batchReads(v, 6, 'hour', D1 + 10 * HOUR + 30 * MIN, D1 + 13 * HOUR + 1, writers)).toEqual([
        read(batchPartitionPk('v', 6, D1), 'minute', D1 + 10 * HOUR + 30 * MIN, D1 + 11 * HOUR),
        read(batchRollupPk('v', 'hour', 6, D1), 'hour', D1 + 11 * HOUR, D1 + 13 * HOUR),
        // The minute bucket starting at 13:00 starts before `to`: it counts.
        read(batchPartitionPk('v', 6, D1), 'minute', D1 + 13 * HOUR, D1 + 13 * HOUR + MIN),
      ]);
      // grain=all: a bucket starting 30 s into the day does not count; then minutes to the hour, then hours.
      expect(batchReads(v, 6, 'all', D1 + 30_000, D1 + DAY, writers)).toEqual([
        read(batchPartitionPk('v', 6, D1), 'minute', D1 + MIN, D1 + HOUR),
        read(batchRollupPk('v', 'hour', 6, D1), 'hour', D1 + HOUR, D1 + DAY),
      ]);
    });

    it('never reads a grain coarser than asked, and only base rows at the view grain or without a manifest', () => {
      expect(batchReads(v, 6, 'minute', D1, D1 + DAY, writers)).toEqual([read(batchPartitionPk('v', 6, D1), 'minute', D1, D1 + DAY)]);
      expect(batchReads(v, 6, 'day', D1, D1 + DAY)).toEqual([read(batchPartitionPk('v', 6, D1), 'minute', D1, D1 + DAY)]);
    });
  });
});
