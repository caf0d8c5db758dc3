import { describe, expect, it } from 'vitest';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import {
  avg,
  canonicalValue,
  count,
  findView,
  formatPath,
  matchesFilter,
  max,
  metricFields,
  min,
  parseViews,
  parseViewsJson,
  sum,
  type View,
  ViewValidationError,
  view,
  viewFingerprint,
} from '../../functions/core/views.ts';

const base = { name: 'v', dimensions: ['country'], grain: 'hour', metrics: { n: { fn: 'count' } } };

/** The issues parseViews reports for a list of views (fails the test when it accepts them). */
function issues(input: unknown): { path: string; message: string }[] {
  try {
    parseViews(input);
  } catch (e) {
    expect(e).toBeInstanceOf(ViewValidationError);
    return [...(e as ViewValidationError).issues];
  }
  throw new Error('expected parseViews to reject the input');
}

describe('views: typed declarations', () => {
  it('builds a view with the metric helpers', () => {
    const v = view({
      name: 'revenue',
      filter: { type: 'purchase' },
      dimensions: ['country'],
      grain: 'hour',
      metrics: { orders: count(), revenue: sum('amount'), lo: min('amount'), hi: max('amount'), mean: avg('price') },
    });
    expect(v.metrics.revenue).toEqual({ fn: 'sum', field: 'amount' });
    expect(v.metrics.orders).toEqual({ fn: 'count' });
    expect(metricFields(v)).toEqual(['amount', 'price']);
  });

  it('names the path of a bad field in a typed declaration', () => {
    expect(() => view({ ...base, grain: 'week' } as never)).toThrow(/view\.grain: grain must be one of minute, hour, day, received "week"/);
  });

  it('accepts the demo views', () => {
    expect(DEMO_VIEWS.map((v) => v.name)).toEqual(['events_by_type', 'revenue_by_country', 'page_views']);
    expect(parseViews(JSON.parse(JSON.stringify(DEMO_VIEWS)))).toEqual(DEMO_VIEWS);
  });
});

describe('views: JSON loading through the same schema', () => {
  it('loads an array or {"views": [...]}', () => {
    expect(parseViews([base])[0]!.name).toBe('v');
    expect(parseViews({ views: [base] })[0]!.name).toBe('v');
    expect(parseViewsJson(JSON.stringify({ views: [base] }))[0]!.grain).toBe('hour');
  });

  it('rejects text that is not JSON', () => {
    expect(() => parseViewsJson('{"views": [')).toThrow(/views: is not valid JSON/);
  });

  it('rejects duplicate view names, naming both places', () => {
    expect(issues([base, { ...base, name: 'w' }, base])).toEqual([
      { path: 'views[2].name', message: 'duplicate view name "v" (also views[0])' },
    ]);
  });

  it('rejects a dimension that is also a metric name', () => {
    expect(issues([{ ...base, metrics: { country: { fn: 'count' } } }])).toEqual([
      { path: 'views[0].metrics.country', message: 'metric "country" has the name of a dimension' },
    ]);
  });

  it('rejects an unknown grain', () => {
    expect(issues([{ ...base, grain: 'week' }])).toEqual([
      { path: 'views[0].grain', message: 'grain must be one of minute, hour, day, received "week"' },
    ]);
  });

  it('rejects a metric without its field, naming the path', () => {
    expect(issues([base, { ...base, name: 'w', metrics: { revenue: { fn: 'sum' } } }])).toEqual([
      { path: 'views[1].metrics.revenue.field', message: 'field is required' },
    ]);
  });

  it('rejects a metric whose field is not a field name', () => {
    const [issue] = issues([{ ...base, metrics: { revenue: { fn: 'sum', field: '' } } }]);
    expect(issue!.path).toBe('views[0].metrics.revenue.field');
    expect(issue!.message).toMatch(/field must be a letter or _/);
  });

  it('rejects an unknown metric function', () => {
    expect(issues([{ ...base, metrics: { m: { fn: 'median', field: 'x' } } }])).toEqual([
      { path: 'views[0].metrics.m.fn', message: 'fn must be one of count, sum, min, max, avg, distinct, received "median"' },
    ]);
  });

  it('rejects extra keys of a metric and of a view', () => {
    expect(issues([{ ...base, metrics: { n: { fn: 'count', field: 'x' } } }])[0]!.path).toBe('views[0].metrics.n');
    expect(issues([{ ...base, dimension: ['x'] }])[0]!.path).toBe('views[0]');
  });

  it('rejects the reserved name bucket as a dimension and as a metric', () => {
    expect(issues([{ ...base, dimensions: ['bucket'] }])).toEqual([{ path: 'views[0].dimensions[0]', message: '"bucket" is reserved' }]);
    expect(issues([{ ...base, metrics: { bucket: { fn: 'count' } } }])).toEqual([
      { path: 'views[0].metrics.bucket', message: '"bucket" is reserved' },
    ]);
  });

  it('rejects a dimension listed twice', () => {
    expect(issues([{ ...base, dimensions: ['a', 'a'] }])).toEqual([
      { path: 'views[0].dimensions[1]', message: 'dimension "a" is listed twice' },
    ]);
  });

  it('rejects a view without metrics', () => {
    expect(issues([{ ...base, metrics: {} }])).toEqual([{ path: 'views[0].metrics', message: 'a view needs at least one metric' }]);
  });

  it('rejects names that are not identifiers, with the key schema message', () => {
    const [m] = issues([{ ...base, metrics: { 'bad-name': { fn: 'count' } } }]);
    expect(m).toEqual({
      path: 'views[0].metrics.bad-name',
      message: expect.stringMatching(/^metric name must be a letter or _ .*received "bad-name"$/),
    });
    const [f] = issues([{ ...base, filter: { 'a b': 'x' } }]);
    expect(f).toEqual({ path: 'views[0].filter.a b', message: expect.stringMatching(/^field must be a letter or _/) });
    expect(issues([{ ...base, name: '1abc' }])[0]!.path).toBe('views[0].name');
    expect(issues([{ ...base, dimensions: ['x'.repeat(65)] }])[0]!.path).toBe('views[0].dimensions[0]');
  });

  it('rejects filter values that are not scalars', () => {
    expect(issues([{ ...base, filter: { type: { eq: 'x' } } }])).toEqual([
      { path: 'views[0].filter.type', message: 'filter values must be strings, finite numbers or booleans' },
    ]);
  });

  it('rejects more than 8 dimensions', () => {
    expect(issues([{ ...base, dimensions: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'] }])).toEqual([
      { path: 'views[0].dimensions', message: 'at most 8 dimensions' },
    ]);
  });

  it('reports every bad view, not only the first', () => {
    expect(issues([{ ...base, grain: 'x' }, base, { ...base, name: 'w', dimensions: ['bucket'] }]).map((i) => i.path)).toEqual([
      'views[0].grain',
      'views[2].dimensions[0]',
    ]);
  });
});

describe('views: helpers', () => {
  it('formats zod paths', () => {
    expect(formatPath('views', [1, 'metrics', 'revenue', 'field'])).toBe('views[1].metrics.revenue.field');
    expect(formatPath('', ['a', 0])).toBe('a[0]');
  });

  it('gives canonical text of values', () => {
    expect(canonicalValue('x')).toBe('x');
    expect(canonicalValue(12.5)).toBe('12.5');
    expect(canonicalValue(true)).toBe('true');
    expect(canonicalValue(null)).toBeNull();
    expect(canonicalValue(undefined)).toBeNull();
  });

  it('matches filters on canonical text', () => {
    const v = view({ ...base, grain: 'hour', metrics: { n: count() }, filter: { type: 'purchase', vip: true, tier: 2 } });
    expect(matchesFilter(v, { type: 'purchase', vip: 'true', tier: '2' })).toBe(true);
    expect(matchesFilter(v, { type: 'purchase', vip: 'true', tier: '3' })).toBe(false);
    expect(matchesFilter(v, { type: 'purchase', vip: 'true' })).toBe(false);
    expect(matchesFilter(view({ ...base, grain: 'hour', metrics: { n: count() } }), {})).toBe(true);
  });

  it('finds views by name', () => {
    expect(findView(DEMO_VIEWS, 'page_views')?.dimensions).toEqual(['page', 'country']);
    expect(findView(DEMO_VIEWS, 'nope')).toBeUndefined();
  });
});

describe('viewFingerprint', () => {
  const declared = view({
    name: 'revenue',
    description: 'Revenue per country',
    filter: { type: 'purchase', vip: true },
    dimensions: ['country', 'page'],
    grain: 'hour',
    metrics: { orders: count(), revenue: sum('amount'), mean: avg('amount') },
  });

  it('is a sha-256 hex, stable for the same declaration', () => {
    expect(viewFingerprint(declared)).toMatch(/^[0-9a-f]{64}$/);
    expect(viewFingerprint(declared)).toBe(viewFingerprint(parseViews(JSON.parse(JSON.stringify([declared])))[0]!));
  });

  it('ignores the order of keys and the description; no filter is an empty filter', () => {
    const reordered: View = {
      metrics: { mean: { field: 'amount', fn: 'avg' }, revenue: { field: 'amount', fn: 'sum' }, orders: { fn: 'count' } },
      grain: 'hour',
      dimensions: ['country', 'page'],
      filter: { vip: true, type: 'purchase' },
      name: 'revenue',
    };
    expect(viewFingerprint(reordered)).toBe(viewFingerprint(declared));
    expect(viewFingerprint({ ...declared, description: 'another text' })).toBe(viewFingerprint(declared));
    const { filter: _, ...unfiltered } = declared;
    expect(viewFingerprint({ ...unfiltered, filter: {} })).toBe(viewFingerprint(unfiltered));
  });

  it('changes with anything that changes the rows', () => {
    const variants: View[] = [
      { ...declared, name: 'revenue2' },
      { ...declared, filter: { type: 'purchase' } },
      { ...declared, filter: { type: 'purchase', vip: 'true' } },
      { ...declared, filter: { type: 'refund', vip: true } },
      { ...declared, filter: undefined },
      { ...declared, dimensions: ['page', 'country'] },
      { ...declared, dimensions: ['country'] },
      { ...declared, dimensions: ['country', 'Page'] },
      { ...declared, grain: 'minute' },
      { ...declared, grain: 'day' },
      { ...declared, metrics: { ...declared.metrics, revenue: sum('Amount') } },
      { ...declared, metrics: { ...declared.metrics, revenue: max('amount') } },
      { ...declared, metrics: { ...declared.metrics, extra: count() } },
      { ...declared, metrics: { orders: count(), revenue: sum('amount') } },
      { ...declared, metrics: { orders: count(), Revenue: sum('amount'), mean: avg('amount') } },
    ];
    const prints = new Set([declared, ...variants].map(viewFingerprint));
    expect(prints.size).toBe(variants.length + 1);
  });
});
