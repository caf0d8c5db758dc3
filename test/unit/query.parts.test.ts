import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Decimal } from '../../functions/core/decimal.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import {
  isQueryError,
  mergeRows,
  parseQuery,
  type Row,
  type RowParts,
  type SpeedRow,
  shapeResponse,
  shapeRows,
} from '../../functions/core/query.ts';
import { findView } from '../../functions/core/views.ts';

const H = 3_600_000;
const NOW = Date.UTC(2024, 2, 15, 13, 47, 21);
const revenue = findView(DEMO_VIEWS, 'revenue_by_country')!;
const countries = ['DE', 'FR', null] as const;

function state(n: number, amount: number) {
  const a = new Decimal(amount);
  return {
    orders: { count: new Decimal(n) },
    revenue: { sum: a.times(n) },
    min_order: { min: a },
    max_order: { max: a },
    avg_order: { sum: a.times(n), count: new Decimal(n) },
  };
}

const rowArb = fc.record({
  hour: fc.integer({ min: 0, max: 5 }),
  c: fc.integer({ min: 0, max: 2 }),
  n: fc.integer({ min: 1, max: 9 }),
  cents: fc.integer({ min: 1, max: 99_999 }),
});

describe('parts=1: the batch and speed split of each row', () => {
  it('is off unless asked, and a bad value names `parts`', () => {
    const s = parseQuery(revenue, {}, NOW);
    expect(isQueryError(s) ? s : s.parts).toBeUndefined();
    const bad = parseQuery(revenue, { parts: 'yes' }, NOW);
    expect(isQueryError(bad) && bad.field).toBe('parts');
  });

  it('parts are each side rolled up alone; counts and sums add up to the merged row', () => {
    fc.assert(
      fc.property(
        fc.array(rowArb, { maxLength: 12 }),
        fc.array(rowArb, { maxLength: 12 }),
        fc.integer({ min: 0, max: 6 }),
        fc.boolean(),
        (b, sp, cutHour, totals) => {
          const base = Date.UTC(2024, 2, 15, 6);
          const cutoff = base + cutHour * H;
          const batchRows: Row[] = b.map((r) => ({ bucket: base + r.hour * H, dims: [countries[r.c]!], state: state(r.n, r.cents / 100) }));
          const speedRows: SpeedRow[] = sp.map((r) => ({
            bucket: base + r.hour * H,
            dims: [countries[r.c]!],
            state: state(r.n, r.cents / 100),
            window: base + r.hour * H + 60_000,
          }));
          const spec = parseQuery(
            revenue,
            {
              from: new Date(base).toISOString(),
              to: new Date(base + 6 * H).toISOString(),
              parts: '1',
              ...(totals ? { groupBy: '' } : {}),
            },
            NOW,
          );
          if (isQueryError(spec)) throw new Error(spec.message);
          const rows = shapeResponse(revenue, spec, batchRows, speedRows, cutoff);
          const merged = shapeRows(revenue, spec, mergeRows(revenue, batchRows, speedRows, cutoff));
          expect(rows.map(({ parts, ...r }) => r)).toEqual(merged);
          const batchOnly = shapeRows(revenue, spec, mergeRows(revenue, batchRows, [], cutoff));
          for (const r of rows) {
            const p = r.parts as RowParts;
            expect(p.batch.orders! + p.speed.orders!).toBe(r.orders);
            expect(new Decimal(p.batch.revenue!).plus(p.speed.revenue!).toNumber()).toBeCloseTo(r.revenue as number, 6);
            const b1 = batchOnly.find((x) => x.bucket === r.bucket && (totals || x.country === r.country));
            expect(p.batch.orders).toBe(b1 ? b1.orders : 0);
            expect(p.batch.min_order).toBe(b1 ? b1.min_order : null);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
