/** The dashboard's chart model (web/src/model.ts): pure, so tested without a browser. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { QueryAnswer, ViewInfo } from '../../functions/contract/api.ts';
import {
  buildModel,
  buildTop,
  defaultGrain,
  GRAIN_MS,
  grainsFor,
  grainsForRange,
  MAX_CHART_BUCKETS,
  MAX_GROUPS,
  RANGES,
  rangeBounds,
  TOP_N,
  topQuery,
} from '../../web/src/model.ts';

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

const H = 3_600_000;
const DAY = 24 * H;
const daily: ViewInfo = { name: 'daily', dimensions: [], grain: 'day', metrics: { n: { fn: 'count' } } };

describe('long ranges: the default grain and the grains offered', () => {
  it('opens a range at day beyond 7 days, hour beyond 6 hours, minute otherwise', () => {
    expect(defaultGrain(events, 15 * 60_000)).toBe('minute');
    expect(defaultGrain(events, 6 * H)).toBe('minute');
    expect(defaultGrain(events, 6 * H + 1)).toBe('hour');
    expect(defaultGrain(events, 24 * H)).toBe('hour');
    expect(defaultGrain(events, 7 * DAY)).toBe('hour');
    expect(defaultGrain(events, 7 * DAY + 1)).toBe('day');
    expect(defaultGrain(events, 90 * DAY)).toBe('day');
  });

  it("never opens finer than the view's grain", () => {
    expect(defaultGrain(revenue, 15 * 60_000)).toBe('hour');
    expect(defaultGrain(revenue, 30 * DAY)).toBe('day');
    expect(defaultGrain(daily, 60 * 60_000)).toBe('day');
  });

  it('offers up to 90 days', () => {
    expect(RANGES.at(-1)).toMatchObject({ id: '90d', ms: 90 * DAY });
  });

  it('offers the grains that keep a chart within MAX_CHART_BUCKETS, and always the default', () => {
    expect(grainsForRange(events, H)).toEqual(['minute', 'hour', 'day']);
    expect(grainsForRange(events, 24 * H)).toEqual(['minute', 'hour', 'day']);
    expect(grainsForRange(events, 7 * DAY)).toEqual(['hour', 'day']);
    expect(grainsForRange(events, 30 * DAY)).toEqual(['hour', 'day']);
    expect(grainsForRange(events, 90 * DAY)).toEqual(['day']);
    expect(grainsForRange(revenue, 15 * 60_000)).toEqual(['hour', 'day']);
    expect(grainsForRange(daily, 90 * DAY)).toEqual(['day']);
  });

  it('every range of every view has its default among the grains offered, none over the bucket bound but the default (property)', () => {
    fc.assert(
      fc.property(fc.constantFrom(events, revenue, daily), fc.integer({ min: 60_000, max: 366 * DAY }), (view, ms) => {
        const offered = grainsForRange(view, ms);
        const d = defaultGrain(view, ms);
        expect(offered).toContain(d);
        expect(grainsFor(view)).toEqual(expect.arrayContaining(offered));
        for (const g of offered) if (g !== d) expect(ms / GRAIN_MS[g]).toBeLessThanOrEqual(MAX_CHART_BUCKETS);
        // The default chart fits too, for every range the page offers.
        if (RANGES.some((r) => r.ms === ms)) expect(ms / GRAIN_MS[d]).toBeLessThanOrEqual(MAX_CHART_BUCKETS);
      }),
    );
    for (const r of RANGES)
      for (const v of [events, revenue, daily]) expect(r.ms / GRAIN_MS[defaultGrain(v, r.ms)]).toBeLessThanOrEqual(MAX_CHART_BUCKETS);
  });

  it('aligns a 90-day range to whole days, ending with today', () => {
    const now = Date.UTC(2025, 2, 10, 15, 30);
    expect(rangeBounds(90 * DAY, 'day', now)).toEqual({ from: Date.UTC(2024, 11, 11), to: Date.UTC(2025, 2, 11) });
  });
});

describe('the top-N table', () => {
  const pages: ViewInfo = {
    name: 'page_views',
    dimensions: ['page', 'country'],
    grain: 'minute',
    metrics: { views: { fn: 'count' }, load_ms: { fn: 'avg', field: 'load_ms' } },
  };
  const sel = { metric: 'views', groupBy: ['page'], filters: { country: 'DE' } };

  it('asks for the whole range as one bucket, the largest first, TOP_N rows, with the filters', () => {
    expect(topQuery(pages, sel, T0, T0 + DAY)).toEqual({
      from: at(0),
      to: new Date(T0 + DAY).toISOString(),
      grain: 'all',
      groupBy: 'page',
      orderBy: '-views',
      limit: String(TOP_N),
      country: 'DE',
    });
    expect(TOP_N).toBe(10);
  });

  it("ranks all of the view's dimensions when none is chosen, and nothing for a view without dimensions", () => {
    expect(topQuery(pages, { ...sel, groupBy: [] }, T0, T0 + H)?.groupBy).toBe('page,country');
    expect(topQuery(daily, { metric: 'n', groupBy: [], filters: {} }, T0, T0 + H)).toBeUndefined();
  });

  it('numbers the rows in the order the API sent them, nulls as (none) and null metrics kept', () => {
    const a: QueryAnswer = {
      ...answer([]),
      grain: 'all',
      rows: [
        { bucket: at(0), page: '/', country: 'DE', views: 9, load_ms: 120.5 },
        { bucket: at(0), page: '/docs', country: null, views: 4, load_ms: null },
      ],
    };
    const top = buildTop(pages, [], a, 'views');
    expect(top.columns).toEqual(['page', 'country']);
    expect(top.rows).toEqual([
      { rank: 1, labels: ['/', 'DE'], values: { views: 9, load_ms: 120.5 } },
      { rank: 2, labels: ['/docs', '(none)'], values: { views: 4, load_ms: null } },
    ]);
    expect(buildTop(pages, ['country'], { ...a, rows: [] }, 'views')).toEqual({ columns: ['country'], rows: [], metric: 'views' });
  });
});
