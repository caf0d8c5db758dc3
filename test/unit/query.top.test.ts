/** Top-N of GET /views/{name}: `orderBy` and `limit` (core/query.ts parseQuery, topRows, shapeResponse). */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Decimal } from '../../functions/core/decimal.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import type { ViewState } from '../../functions/core/metrics.ts';
import {
  isQueryError,
  MAX_LIMIT,
  parseQuery,
  type QuerySpec,
  type ResponseRow,
  type Row,
  type SpeedRow,
  shapeResponse,
  topRows,
} from '../../functions/core/query.ts';
import { findView } from '../../functions/core/views.ts';

const H = 3_600_000;
const NOW = Date.UTC(2024, 2, 15, 13, 47, 21);
const D = Date.UTC(2024, 2, 15);
const revenue = findView(DEMO_VIEWS, 'revenue_by_country')!;
const pages = findView(DEMO_VIEWS, 'page_views')!;

function spec(params: Record<string, string | undefined>, v = revenue): QuerySpec {
  const s = parseQuery(v, { from: '2024-03-15', to: '2024-03-16', ...params }, NOW);
  if (isQueryError(s)) throw new Error(`unexpected error on ${s.field}: ${s.message}`);
  return s;
}

/** `n` orders of `amount` each; n = 0 is a row whose min, max and avg are null (nothing measured). */
function rev(n: number, amount: number): ViewState {
  const a = new Decimal(amount);
  const measured = n > 0;
  return {
    orders: { count: new Decimal(n) },
    revenue: { sum: a.times(n) },
    min_order: { min: measured ? a : null },
    max_order: { max: measured ? a : null },
    avg_order: { sum: a.times(n), count: new Decimal(n) },
  };
}

const row = (hour: number, country: string | null, n: number, amount: number): Row => ({
  bucket: D + hour * H,
  dims: [country],
  state: rev(n, amount),
});

/** What shapeResponse answers for these batch rows (no speed part). */
const answer = (params: Record<string, string | undefined>, rows: readonly Row[]) => shapeResponse(revenue, spec(params), rows, [], null);
const pick = (rows: ResponseRow[], ...cols: string[]) => rows.map((r) => cols.map((c) => r[c]));

describe('parseQuery: orderBy and limit', () => {
  it('reads a metric, ascending or with - descending, and a whole number limit', () => {
    expect(spec({ orderBy: 'revenue' }).orderBy).toEqual({ metric: 'revenue', descending: false });
    expect(spec({ orderBy: '-revenue', limit: '10' })).toMatchObject({ orderBy: { metric: 'revenue', descending: true }, limit: 10 });
    expect(spec({ limit: '1' }).limit).toBe(1);
    expect(spec({ limit: String(MAX_LIMIT) }).limit).toBe(MAX_LIMIT);
  });

  it('leaves the spec as before when neither is given', () => {
    const s = spec({});
    expect('orderBy' in s || 'limit' in s).toBe(false);
  });

  it.each([
    [{ orderBy: 'nope' }, 'orderBy', 'must be a metric of view "revenue_by_country" (orders, revenue, min_order, max_order, avg_order)'],
    [{ orderBy: '' }, 'orderBy', 'received ""'],
    [{ orderBy: '-' }, 'orderBy', 'received "-"'],
    [{ orderBy: 'country' }, 'orderBy', 'must be a metric'],
    [{ orderBy: '--revenue' }, 'orderBy', 'must be a metric'],
    [{ orderBy: 'toString' }, 'orderBy', 'must be a metric'],
    [{ limit: '0' }, 'limit', `must be a whole number from 1 to ${MAX_LIMIT}, received "0"`],
    [{ limit: String(MAX_LIMIT + 1) }, 'limit', 'must be a whole number'],
    [{ limit: '' }, 'limit', 'received ""'],
    [{ limit: '2.5' }, 'limit', 'must be a whole number'],
    [{ limit: '-3' }, 'limit', 'must be a whole number'],
    [{ limit: '1e3' }, 'limit', 'must be a whole number'],
    [{ limit: ' 5' }, 'limit', 'must be a whole number'],
    [{ limit: 'ten' }, 'limit', 'must be a whole number'],
    [{ limit: '99999999999999999999' }, 'limit', 'must be a whole number'],
  ])('rejects %j naming %s', (params, field, message) => {
    const e = parseQuery(revenue, params, NOW);
    if (!isQueryError(e)) throw new Error('expected a parameter error');
    expect(e.field).toBe(field);
    expect(e.message).toContain(message);
  });
});

describe('orderBy and limit: the rows', () => {
  const rows = [
    row(1, 'DE', 3, 10),
    row(1, 'FR', 1, 50),
    row(1, 'NL', 3, 10),
    row(1, null, 2, 5),
    row(1, 'IT', 0, 0),
    row(2, 'FR', 4, 1),
    row(2, 'DE', 1, 2),
  ];

  it('orders within each bucket, buckets still in time order; ties by dimension values', () => {
    expect(pick(answer({ orderBy: '-orders' }, rows), 'bucket', 'country', 'orders')).toEqual([
      ['2024-03-15T01:00:00.000Z', 'DE', 3],
      ['2024-03-15T01:00:00.000Z', 'NL', 3],
      ['2024-03-15T01:00:00.000Z', null, 2],
      ['2024-03-15T01:00:00.000Z', 'FR', 1],
      ['2024-03-15T01:00:00.000Z', 'IT', 0],
      ['2024-03-15T02:00:00.000Z', 'FR', 4],
      ['2024-03-15T02:00:00.000Z', 'DE', 1],
    ]);
    expect(pick(answer({ orderBy: 'orders' }, rows), 'country')).toEqual([['IT'], ['FR'], [null], ['DE'], ['NL'], ['DE'], ['FR']]);
  });

  it('sorts null values (min, max, avg of nothing) last, ascending and descending', () => {
    expect(pick(answer({ orderBy: 'min_order', grain: 'all' }, rows), 'country', 'min_order')).toEqual([
      ['FR', 1],
      ['DE', 2],
      [null, 5],
      ['NL', 10],
      ['IT', null],
    ]);
    expect(pick(answer({ orderBy: '-avg_order', grain: 'all' }, rows), 'country', 'avg_order')).toEqual([
      ['FR', 10.8],
      ['NL', 10],
      ['DE', 8],
      [null, 5],
      ['IT', null],
    ]);
  });

  it('keeps the first N rows of each bucket; with grain=all, overall', () => {
    expect(pick(answer({ orderBy: '-revenue', limit: '2' }, rows), 'bucket', 'country', 'revenue')).toEqual([
      ['2024-03-15T01:00:00.000Z', 'FR', 50],
      ['2024-03-15T01:00:00.000Z', 'DE', 30],
      ['2024-03-15T02:00:00.000Z', 'FR', 4],
      ['2024-03-15T02:00:00.000Z', 'DE', 2],
    ]);
    expect(pick(answer({ orderBy: '-revenue', limit: '2', grain: 'all' }, rows), 'bucket', 'country', 'revenue')).toEqual([
      ['2024-03-15T00:00:00.000Z', 'FR', 54],
      ['2024-03-15T00:00:00.000Z', 'DE', 32],
    ]);
  });

  it('without orderBy, limit keeps the first N rows of each bucket in the default order (dimension values, null first)', () => {
    expect(pick(answer({ limit: '2' }, rows), 'bucket', 'country')).toEqual([
      ['2024-03-15T01:00:00.000Z', null],
      ['2024-03-15T01:00:00.000Z', 'DE'],
      ['2024-03-15T02:00:00.000Z', 'DE'],
      ['2024-03-15T02:00:00.000Z', 'FR'],
    ]);
  });

  it('breaks ties by every grouped dimension in the view order', () => {
    const p = (hour: number, page: string, country: string | null, n: number): Row => ({
      bucket: D + hour * H,
      dims: [page, country],
      state: { views: { count: new Decimal(n) }, load_ms: { sum: new Decimal(0), count: new Decimal(0) } },
    });
    const rs = [p(1, '/b', 'DE', 2), p(1, '/a', 'FR', 2), p(1, '/a', null, 2), p(1, '/a', 'DE', 1), p(1, '/c', 'DE', 5)];
    const s = spec({ grain: 'all', orderBy: '-views', limit: '4', groupBy: 'country,page' }, pages);
    expect(pick(shapeResponse(pages, s, rs, [], null), 'page', 'country', 'views')).toEqual([
      ['/c', 'DE', 5],
      ['/a', null, 2],
      ['/a', 'FR', 2],
      ['/b', 'DE', 2],
    ]);
  });

  it('with parts=1, each kept row carries the parts it has without a limit', () => {
    const speed: SpeedRow[] = [{ ...row(1, 'NL', 5, 10), window: D + 3 * H }];
    const cutoff = D + 2 * H;
    const all = shapeResponse(revenue, spec({ parts: '1' }), rows, speed, cutoff);
    const top = shapeResponse(revenue, spec({ parts: '1', orderBy: '-orders', limit: '1' }), rows, speed, cutoff);
    expect(pick(top, 'bucket', 'country', 'orders')).toEqual([
      ['2024-03-15T01:00:00.000Z', 'NL', 8],
      ['2024-03-15T02:00:00.000Z', 'FR', 4],
    ]);
    for (const r of top) expect(r).toEqual(all.find((x) => x.bucket === r.bucket && x.country === r.country));
  });
});

// ---- against an independent oracle --------------------------------------------------------------

/**
 * The oracle: a row's rank in its bucket is the number of rows of that bucket that come
 * before it (a smaller value; descending: a larger one; a number before null; on equal
 * values, smaller dimension values, null first); a row is kept when its rank < limit, and
 * rows are listed by bucket, then rank.
 */
function oracle(rows: readonly ResponseRow[], groupBy: readonly string[], metric: string | undefined, desc: boolean, limit: number) {
  const dimKey = (r: ResponseRow) => groupBy.map((d) => (r[d] === null ? '0' : `1${r[d]}`)).join('\u0001');
  const val = (r: ResponseRow) => (metric === undefined ? 0 : (r[metric] as number | null));
  const before = (a: ResponseRow, b: ResponseRow) => {
    const x = val(a);
    const y = val(b);
    if (x !== y) return y === null ? true : x === null ? false : desc ? x > y : x < y;
    return dimKey(a) < dimKey(b);
  };
  const ranked = rows.map((r) => ({ r, rank: rows.filter((o) => o.bucket === r.bucket && before(o, r)).length }));
  return ranked
    .filter((x) => x.rank < limit)
    .sort((a, b) => Date.parse(String(a.r.bucket)) - Date.parse(String(b.r.bucket)) || a.rank - b.rank)
    .map((x) => x.r);
}

describe('topRows and shapeResponse against the oracle (property)', () => {
  const letters = fc.constantFrom('a', 'b', 'c', null);
  const responseRows = fc.uniqueArray(
    fc.record({
      hour: fc.integer({ min: 0, max: 3 }),
      x: letters,
      y: letters,
      m: fc.option(fc.integer({ min: -3, max: 3 }), { nil: null }),
    }),
    { selector: (r) => JSON.stringify([r.hour, r.x, r.y]), maxLength: 40 },
  );

  it('topRows orders and slices as the oracle does, whatever the input order (without either, it leaves the rows as they are)', () => {
    fc.assert(
      fc.property(
        responseRows,
        fc.option(fc.boolean(), { nil: undefined }),
        fc.option(fc.integer({ min: 1, max: 6 }), { nil: undefined }),
        (rs, desc, limit) => {
          const rows: ResponseRow[] = rs.map((r) => ({ bucket: new Date(D + r.hour * H).toISOString(), x: r.x, y: r.y, m: r.m }));
          const s = { groupBy: ['x', 'y'], ...(desc !== undefined && { orderBy: { metric: 'm', descending: desc } }), limit };
          const want =
            desc === undefined && limit === undefined
              ? rows
              : oracle(rows, ['x', 'y'], desc === undefined ? undefined : 'm', desc ?? false, limit ?? Infinity);
          expect(topRows(s, rows)).toEqual(want);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('shapeResponse with orderBy and limit is the oracle over the answer without them', () => {
    const rowArb = fc.record({
      hour: fc.integer({ min: 0, max: 3 }),
      c: fc.constantFrom('DE', 'FR', 'NL', null),
      n: fc.integer({ min: 0, max: 4 }),
      amount: fc.integer({ min: 1, max: 3 }),
      speed: fc.boolean(),
    });
    fc.assert(
      fc.property(
        fc.array(rowArb, { maxLength: 20 }),
        fc.constantFrom(...Object.keys(revenue.metrics)),
        fc.boolean(),
        fc.integer({ min: 1, max: 4 }),
        fc.constantFrom('hour', 'all'),
        fc.boolean(),
        (rs, metric, desc, limit, grain, parts) => {
          const batch = rs.filter((r) => !r.speed).map((r) => row(r.hour, r.c, r.n, r.amount));
          const speed = rs.filter((r) => r.speed).map((r) => ({ ...row(r.hour, r.c, r.n, r.amount), window: D + 5 * H }));
          const base = { grain, ...(parts && { parts: '1' }) };
          const whole = shapeResponse(revenue, spec(base), batch, speed, D + 4 * H);
          const top = shapeResponse(
            revenue,
            spec({ ...base, orderBy: `${desc ? '-' : ''}${metric}`, limit: String(limit) }),
            batch,
            speed,
            D + 4 * H,
          );
          expect(top).toEqual(oracle(whole, ['country'], metric, desc, limit));
        },
      ),
      { numRuns: 300 },
    );
  });
});
