/** The dashboard's chart model (web/src/model.ts): pure, so tested without a browser. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { QueryAnswer, ViewInfo } from '../../functions/contract/api.ts';
import { buildModel, GRAIN_MS, grainsFor, MAX_GROUPS, rangeBounds } from '../../web/src/model.ts';

const events: ViewInfo = { name: 'events_by_type', dimensions: ['type'], grain: 'minute', metrics: { events: { fn: 'count' } } };
const revenue: ViewInfo = {
  name: 'revenue_by_country',
  dimensions: ['country'],
  grain: 'hour',
  metrics: { orders: { fn: 'count' }, revenue: { fn: 'sum', field: 'amount' }, max_order: { fn: 'max', field: 'amount' } },
};

const T0 = Date.UTC(2025, 0, 1, 12, 0);
const at = (minutes: number) => new Date(T0 + minutes * 60_000).toISOString();

function answer(rows: QueryAnswer['rows'], fromMin = 0, toMin = 10, cutoff?: number): QueryAnswer {
  return {
    view: 'v',
    grain: 'minute',
    from: at(fromMin),
    to: at(toMin),
    batch: cutoff === undefined ? null : { version: 3, cutoff: at(cutoff) },
    rows,
  };
}

describe('buildModel', () => {
  it('gives one x per bucket of the range, zero for empty buckets of a count', () => {
    const m = buildModel(
      events,
      answer([
        { bucket: at(2), events: 5 },
        { bucket: at(7), events: 2 },
      ]),
      'events',
      'minute',
    );
    expect(m.xs).toHaveLength(10);
    expect(m.xs[0]).toBe(T0 / 1000);
    expect(m.xRange).toEqual([T0 / 1000, T0 / 1000 + 600]);
    expect(m.series).toHaveLength(1);
    expect(m.series[0]!.values).toEqual([0, 0, 5, 0, 0, 0, 0, 2, 0, 0]);
    expect(m.totals.all).toBe(7);
    expect(m.split).toBe(false);
    expect(m.cutoff).toBeNull();
  });

  it('leaves empty buckets of a max as gaps and has no total', () => {
    const m = buildModel(revenue, answer([{ bucket: at(1), orders: 1, revenue: 9.5, max_order: 9.5 }], 0, 3), 'max_order', 'minute');
    expect(m.series[0]!.values).toEqual([null, 9.5, null]);
    expect(m.totals.all).toBeNull();
  });

  it('splits batch and speed when every row carries parts', () => {
    const rows = [
      { bucket: at(0), events: 5, parts: { batch: { events: 4 }, speed: { events: 1 } } },
      { bucket: at(1), events: 3, parts: { batch: { events: 0 }, speed: { events: 3 } } },
    ];
    const m = buildModel(events, answer(rows, 0, 2, 1), 'events', 'minute');
    expect(m.split).toBe(true);
    expect(m.series.map((s) => s.kind)).toEqual(['batch', 'speed']);
    expect(m.series[0]!.values).toEqual([4, 0]);
    expect(m.series[1]!.values).toEqual([1, 3]);
    expect(m.totals).toEqual({ all: 8, batch: 4, speed: 4 });
    expect(m.cutoff).toBe(T0 + 60_000);
  });

  it('draws one series per group, the largest MAX_GROUPS of them', () => {
    const rows = Array.from({ length: MAX_GROUPS + 2 }, (_, g) => ({
      bucket: at(0),
      type: `t${String(g).padStart(2, '0')}`,
      events: g + 1,
    }));
    const m = buildModel(events, answer(rows, 0, 1), 'events', 'minute');
    expect(m.series).toHaveLength(MAX_GROUPS);
    expect(m.hiddenGroups).toBe(2);
    expect(m.series.map((s) => s.label)).not.toContain('t00');
    expect(m.totals.all).toBe(((MAX_GROUPS + 2) * (MAX_GROUPS + 3)) / 2);
  });

  it('adds decimals without float drift in the total', () => {
    const rows = [0.1, 0.2, 0.3].map((v, i) => ({ bucket: at(i), orders: 1, revenue: v, max_order: v }));
    expect(buildModel(revenue, answer(rows, 0, 3), 'revenue', 'minute').totals.all).toBe(0.6);
  });

  it('keeps every row and every total (property, against a direct sum)', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: 119 }), { maxLength: 40 }),
        fc.array(fc.nat({ max: 1000 }), { minLength: 40, maxLength: 40 }),
        fc.array(fc.nat({ max: 1000 }), { minLength: 40, maxLength: 40 }),
        (minutes, batchValues, speedValues) => {
          const sorted = [...minutes].sort((a, b) => a - b);
          const rows = sorted.map((m, i) => ({
            bucket: at(m),
            events: batchValues[i]! + speedValues[i]!,
            parts: { batch: { events: batchValues[i]! }, speed: { events: speedValues[i]! } },
          }));
          const model = buildModel(events, answer(rows, 0, 120, 60), 'events', 'minute');
          // Oracle: every row's parts land at its bucket; everything else is zero.
          const want = new Map(sorted.map((m, i) => [T0 / 1000 + m * 60, [batchValues[i]!, speedValues[i]!]]));
          expect(model.xs).toHaveLength(120);
          model.xs.forEach((x, i) => {
            const [b, s] = want.get(x) ?? [0, 0];
            if (rows.length > 0) {
              expect(model.series[0]!.values[i]).toBe(b);
              expect(model.series[1]!.values[i]).toBe(s);
            }
          });
          const total = rows.reduce((s, r) => s + r.events, 0);
          expect(model.totals.all).toBe(total);
          if (rows.length > 0) expect((model.totals.batch ?? 0) + (model.totals.speed ?? 0)).toBe(total);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('ranges and grains', () => {
  it('offers the view grain and coarser ones', () => {
    expect(grainsFor(events)).toEqual(['minute', 'hour', 'day']);
    expect(grainsFor(revenue)).toEqual(['hour', 'day']);
  });

  it('ends a range with the current bucket and aligns its start', () => {
    const now = T0 + 90_500;
    const { from, to } = rangeBounds(3_600_000, 'minute', now);
    expect(to).toBe(T0 + 120_000);
    expect(from).toBe(to - 3_600_000);
    expect(from % GRAIN_MS.minute).toBe(0);
  });
});
