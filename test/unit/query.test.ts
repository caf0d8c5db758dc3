import { describe, expect, it } from 'vitest';
import { Decimal } from '../../functions/core/decimal.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import type { ViewState } from '../../functions/core/metrics.ts';
import {
  DEFAULT_RANGE_MS,
  isQueryError,
  mergeRows,
  parseQuery,
  type QuerySpec,
  type Row,
  rollupRows,
  type SpeedRow,
  shapeRows,
} from '../../functions/core/query.ts';
import { count, findView, view } from '../../functions/core/views.ts';

const DAY = 86_400_000;
const H = 3_600_000;
const M = 60_000;
const NOW = Date.UTC(2024, 2, 15, 13, 47, 21);
const revenue = findView(DEMO_VIEWS, 'revenue_by_country')!;
const pages = findView(DEMO_VIEWS, 'page_views')!;

function spec(v: Parameters<typeof parseQuery>[0], params: Record<string, string | undefined>): QuerySpec {
  const s = parseQuery(v, params, NOW);
  if (isQueryError(s)) throw new Error(`unexpected error on ${s.field}: ${s.message}`);
  return s;
}
function error(v: Parameters<typeof parseQuery>[0], params: Record<string, string | undefined>) {
  const s = parseQuery(v, params, NOW);
  if (!isQueryError(s)) throw new Error('expected a parameter error');
  return s;
}

/** A revenue state of `n` orders each of `amount`. */
function rev(n: number, amount: number): ViewState {
  const a = new Decimal(amount);
  const total = a.times(n);
  return {
    orders: { count: new Decimal(n) },
    revenue: { sum: total },
    min_order: { min: a },
    max_order: { max: a },
    avg_order: { sum: total, count: new Decimal(n) },
  };
}

describe('parseQuery', () => {
  it('defaults: to = now rounded up to the view grain, from = to - 24 h, the view grain, all dimensions', () => {
    expect(spec(revenue, {})).toEqual({
      from: Date.UTC(2024, 2, 15, 14) - DEFAULT_RANGE_MS,
      to: Date.UTC(2024, 2, 15, 14),
      grain: 'hour',
      groupBy: ['country'],
      filters: {},
    });
    expect(spec(pages, {}).to).toBe(Date.UTC(2024, 2, 15, 13, 48));
    expect(spec(pages, {}).groupBy).toEqual(['page', 'country']);
  });

  it('reads from (inclusive), to (exclusive), grain, groupBy and dimension filters', () => {
    expect(spec(pages, { from: '2024-03-01', to: '2024-03-02T00:00:00Z', grain: 'day', groupBy: 'country', country: 'DE' })).toEqual({
      from: Date.UTC(2024, 2, 1),
      to: Date.UTC(2024, 2, 2),
      grain: 'day',
      groupBy: ['country'],
      filters: { country: 'DE' },
    });
  });

  it('treats an empty groupBy as totals, and keeps groupBy in view order', () => {
    expect(spec(pages, { groupBy: '' }).groupBy).toEqual([]);
    expect(spec(pages, { groupBy: 'country,page' }).groupBy).toEqual(['page', 'country']);
    expect(spec(pages, { groupBy: ' page , page ' }).groupBy).toEqual(['page']);
  });

  it('takes only from, defaulting to; or only to, defaulting from', () => {
    expect(spec(revenue, { from: '2024-03-15T00:00:00Z' })).toMatchObject({ from: Date.UTC(2024, 2, 15), to: Date.UTC(2024, 2, 15, 14) });
    expect(spec(revenue, { to: '2024-03-10T00:00:00Z' })).toMatchObject({ from: Date.UTC(2024, 2, 9), to: Date.UTC(2024, 2, 10) });
    expect(spec(revenue, { from: '', to: '' }).to).toBe(Date.UTC(2024, 2, 15, 14));
  });

  it.each([
    [{ from: 'yesterday' }, 'from', 'must be an ISO-8601 time or epoch milliseconds'],
    [{ to: '2024-02-30' }, 'to', 'is not a valid date-time'],
    [{ from: '2024-03-02', to: '2024-03-01' }, 'to', 'must be after from (2024-03-02T00:00:00.000Z), received 2024-03-01T00:00:00.000Z'],
    [{ from: '2024-03-01', to: '2024-03-01' }, 'to', 'must be after from'],
    [{ from: '2024-03-16' }, 'from', 'must be before to (2024-03-15T14:00:00.000Z, the current hour by default)'],
    [{ from: '2023-01-01', to: '2024-03-01' }, 'from', 'the range from..to may span at most 366 days, received 425.0 days'],
    [{ grain: 'week' }, 'grain', 'must be one of minute, hour, day, all, received "week"'],
    [{ grain: 'minute' }, 'grain', 'must be the view\'s grain or coarser (hour, day, all), received "minute"'],
    [{ groupBy: 'country,city' }, 'groupBy', '"city" is not a dimension of view "revenue_by_country" (dimensions: country)'],
    [
      { city: 'Paris' },
      'city',
      'is not a parameter (from, to, grain, groupBy, parts, orderBy, limit) ' +
        'nor a dimension of view "revenue_by_country" (its dimensions are country)',
    ],
    [{ amount: '5' }, 'amount', 'nor a dimension'],
  ])('rejects %j naming %s', (params, field, message) => {
    const e = error(revenue, params);
    expect(e.field).toBe(field);
    expect(e.message).toContain(message);
  });

  it('takes exactly 366 days', () => {
    expect(spec(revenue, { from: '2023-03-01', to: '2024-03-01' }).to - spec(revenue, { from: '2023-03-01', to: '2024-03-01' }).from).toBe(
      366 * DAY,
    );
  });

  it('ignores parameters whose value is undefined', () => {
    expect(spec(revenue, { city: undefined, country: undefined }).filters).toEqual({});
  });

  it('says when a view has no dimensions', () => {
    const totals = view({ name: 't', dimensions: [], grain: 'day', metrics: { n: count() } });
    expect(error(totals, { x: '1' }).message).toContain('it has no dimensions');
    expect(error(totals, { groupBy: 'x' }).message).toContain('(dimensions: none)');
  });
});

describe('mergeRows', () => {
  const C = Date.UTC(2024, 2, 15, 12);
  const batch: Row[] = [{ bucket: Date.UTC(2024, 2, 15, 11), dims: ['DE'], state: rev(2, 10) }];
  const speed: SpeedRow[] = [
    { bucket: Date.UTC(2024, 2, 15, 11), dims: ['DE'], window: C - M, state: rev(2, 10) }, // covered by the batch
    { bucket: Date.UTC(2024, 2, 15, 11), dims: ['DE'], window: C, state: rev(1, 4) }, // late event after the cutoff
    { bucket: Date.UTC(2024, 2, 15, 12), dims: [null], window: C + M, state: rev(1, 1) },
    { bucket: Date.UTC(2024, 2, 15, 12), dims: [null], window: C + 2 * M, state: rev(1, 3) },
  ];

  it('adds only speed windows >= cutoff to the batch rows', () => {
    const rows = mergeRows(revenue, batch, speed, C);
    expect(
      rows.map((r) => [
        r.bucket,
        r.dims,
        r.state.orders!.count!.toNumber(),
        r.state.revenue!.sum!.toNumber(),
        r.state.min_order!.min!.toNumber(),
      ]),
    ).toEqual([
      [Date.UTC(2024, 2, 15, 11), ['DE'], 3, 24, 4],
      [Date.UTC(2024, 2, 15, 12), [null], 2, 4, 1],
    ]);
    expect(rows[0]).not.toHaveProperty('window');
  });

  it('takes every speed delta when no batch is published', () => {
    const rows = mergeRows(revenue, [], speed, null);
    expect(rows.map((r) => r.state.orders!.count!.toNumber())).toEqual([3, 2]);
  });

  it('is independent of input order', () => {
    const a = mergeRows(revenue, batch, speed, C);
    const b = mergeRows(revenue, batch, [...speed].reverse(), C);
    expect(shapeRows(revenue, spec(revenue, {}), b)).toEqual(shapeRows(revenue, spec(revenue, {}), a));
  });
});

describe('shapeRows', () => {
  const D = Date.UTC(2024, 2, 15);
  const rows: Row[] = [
    {
      bucket: D + 13 * H,
      dims: ['/b', 'DE'],
      state: { views: { count: new Decimal(1) }, load_ms: { sum: new Decimal(30), count: new Decimal(1) } },
    },
    {
      bucket: D + 13 * H,
      dims: ['/a', null],
      state: { views: { count: new Decimal(2) }, load_ms: { sum: new Decimal(0), count: new Decimal(0) } },
    },
    {
      bucket: D + 13 * H + M,
      dims: ['/a', 'DE'],
      state: { views: { count: new Decimal(3) }, load_ms: { sum: new Decimal(10), count: new Decimal(2) } },
    },
    {
      bucket: D + 14 * H,
      dims: ['/a', 'FR'],
      state: { views: { count: new Decimal(4) }, load_ms: { sum: new Decimal('0.3'), count: new Decimal(3) } },
    },
    {
      bucket: D - M,
      dims: ['/a', 'FR'],
      state: { views: { count: new Decimal(100) }, load_ms: { sum: new Decimal(1), count: new Decimal(1) } },
    },
  ];
  const q = (params: Record<string, string>) => spec(pages, { from: '2024-03-15T00:00:00Z', to: '2024-03-16T00:00:00Z', ...params });

  it('outputs rows at the view grain, sorted by bucket then dimensions (nulls first), with finalized metrics', () => {
    expect(shapeRows(pages, q({}), rows)).toEqual([
      { bucket: '2024-03-15T13:00:00.000Z', page: '/a', country: null, views: 2, load_ms: null, users: 0 },
      { bucket: '2024-03-15T13:00:00.000Z', page: '/b', country: 'DE', views: 1, load_ms: 30, users: 0 },
      { bucket: '2024-03-15T13:01:00.000Z', page: '/a', country: 'DE', views: 3, load_ms: 5, users: 0 },
      { bucket: '2024-03-15T14:00:00.000Z', page: '/a', country: 'FR', views: 4, load_ms: 0.1, users: 0 },
    ]);
  });

  it('rolls up to a coarser grain and groups by a subset of dimensions', () => {
    expect(shapeRows(pages, q({ grain: 'hour', groupBy: 'page' }), rows)).toEqual([
      { bucket: '2024-03-15T13:00:00.000Z', page: '/a', views: 5, load_ms: 5, users: 0 },
      { bucket: '2024-03-15T13:00:00.000Z', page: '/b', views: 1, load_ms: 30, users: 0 },
      { bucket: '2024-03-15T14:00:00.000Z', page: '/a', views: 4, load_ms: 0.1, users: 0 },
    ]);
  });

  it('gives totals with an empty groupBy, and one bucket (from) with grain=all', () => {
    // load_ms: the exact 40.3 / 6, rounded once to a double
    expect(shapeRows(pages, q({ grain: 'all', groupBy: '' }), rows)).toEqual([
      { bucket: '2024-03-15T00:00:00.000Z', views: 10, load_ms: 6.716666666666667, users: 0 },
    ]);
    expect(
      shapeRows(pages, spec(pages, { from: '2024-03-15T13:30:00Z', to: '2024-03-16T00:00:00Z', grain: 'all', groupBy: '' }), rows),
    ).toEqual([{ bucket: '2024-03-15T13:30:00.000Z', views: 4, load_ms: 0.1, users: 0 }]);
  });

  it('filters by dimension value (exact text) and by bucket range [from, to)', () => {
    expect(shapeRows(pages, q({ country: 'DE', groupBy: 'country', grain: 'day' }), rows)).toEqual([
      { bucket: '2024-03-15T00:00:00.000Z', country: 'DE', views: 4, load_ms: 40 / 3, users: 0 },
    ]);
    expect(shapeRows(pages, q({ country: 'de' }), rows)).toEqual([]);
    const range = spec(pages, { from: '2024-03-15T13:01:00Z', to: '2024-03-15T14:00:00Z' });
    expect(shapeRows(pages, range, rows).map((r) => r.bucket)).toEqual(['2024-03-15T13:01:00.000Z']);
  });

  it('leaves out buckets with no events and returns nothing for no rows', () => {
    expect(shapeRows(pages, q({}), [])).toEqual([]);
    expect(shapeRows(pages, q({ grain: 'hour' }), rows).map((r) => r.bucket)).not.toContain('2024-03-15T12:00:00.000Z');
  });

  it('returns exact decimals as JSON numbers', () => {
    const r = shapeRows(revenue, spec(revenue, { from: '2024-03-15', to: '2024-03-16', groupBy: '' }), [
      { bucket: D, dims: ['DE'], state: rev(3, 0.1) },
      { bucket: D + H, dims: ['FR'], state: rev(1, 0.2) },
    ]);
    expect(r.map((x) => x.revenue)).toEqual([0.3, 0.2]);
  });

  it('rollupRows returns grouped state rows', () => {
    const r = rollupRows(pages, q({ grain: 'day', groupBy: 'country' }), rows);
    expect(r.map((x) => [x.bucket, x.dims, x.state.views!.count!.toNumber()])).toEqual([
      [D, [null], 2],
      [D, ['DE'], 4],
      [D, ['FR'], 4],
    ]);
  });
});
