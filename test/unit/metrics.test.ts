import { describe, expect, it } from 'vitest';
import { Decimal, DecimalRangeError, MAX_ABS } from '../../functions/core/decimal.ts';
import { Sketch } from '../../functions/core/hll.ts';
import {
  combine,
  combineAllViewStates,
  combineViewStates,
  emptyViewState,
  finalize,
  finalizeViewState,
  identity,
  lift,
  type MetricState,
  stateColumns,
  stateFromColumns,
  stateToColumns,
} from '../../functions/core/metrics.ts';
import { avg, count, distinct, max, min, sum, view } from '../../functions/core/views.ts';

const d = (x: string | number) => new Decimal(x);
const text = (s: MetricState) =>
  Object.fromEntries(Object.entries(s).map(([k, v]) => [k, v == null ? null : v instanceof Sketch ? v.toText() : v.toFixed()]));
const fold = (m: ReturnType<typeof count>, values: (number | null)[]) =>
  values.map((v) => lift(m, v === null ? null : d(v))).reduce((a, b) => combine(m, a, b), identity(m));

describe('metrics: each monoid', () => {
  it('count counts every event, with or without the field', () => {
    expect(text(fold(count(), [1, null, 3]))).toEqual({ count: '3' });
    expect(finalize(count(), identity(count()))!.toFixed()).toBe('0');
  });

  it('sum adds exactly and skips missing values; empty sum is 0', () => {
    expect(text(fold(sum('a'), [0.1, null, 0.2]))).toEqual({ sum: '0.3' });
    expect(finalize(sum('a'), identity(sum('a')))!.toFixed()).toBe('0');
  });

  it('min and max ignore missing values and are null when empty', () => {
    expect(text(fold(min('a'), [3, null, -2.5, 7]))).toEqual({ min: '-2.5' });
    expect(text(fold(max('a'), [3, null, -2.5, 7]))).toEqual({ max: '7' });
    expect(finalize(min('a'), fold(min('a'), [null, null]))).toBeNull();
    expect(finalize(max('a'), identity(max('a')))).toBeNull();
  });

  it('avg keeps sum and count of the field, divides at the end, null when count is 0', () => {
    const s = fold(avg('a'), [1, null, 2]);
    expect(text(s)).toEqual({ sum: '3', count: '2' });
    expect(finalize(avg('a'), s)!.toFixed()).toBe('1.5');
    expect(finalize(avg('a'), fold(avg('a'), [null]))).toBeNull();
    expect(finalize(avg('a'), fold(avg('a'), [1, 1, 2]))!.toNumber()).toBeCloseTo(4 / 3, 15);
  });

  it('identity is a unit on both sides', () => {
    for (const m of [count(), sum('a'), min('a'), max('a'), avg('a')]) {
      const s = fold(m, [4, -1]);
      expect(text(combine(m, identity(m), s))).toEqual(text(s));
      expect(text(combine(m, s, identity(m)))).toEqual(text(s));
    }
  });

  it('a sum that overflows DECIMAL(38, 9) is an error, not a rounded value', () => {
    const half = { sum: MAX_ABS.div(2) };
    expect(() => combine(sum('a'), half, half)).toThrow(DecimalRangeError);
    expect(() => combine(sum('a'), half, half)).toThrow(/sum sum overflows/);
  });
});

describe('metrics: view states and columns', () => {
  const v = view({
    name: 'r',
    dimensions: ['country'],
    grain: 'hour',
    metrics: { orders: count(), revenue: sum('amount'), lo: min('amount'), hi: max('amount'), mean: avg('amount') },
  });

  it('names the state columns <metric>__<component> in declaration order', () => {
    expect(stateColumns(v).map((c) => c.column)).toEqual([
      'orders__count',
      'revenue__sum',
      'lo__min',
      'hi__max',
      'mean__sum',
      'mean__count',
    ]);
  });

  it('writes state as decimal text and reads it back from text, numbers and bigints', () => {
    const s = combineViewStates(v, emptyViewState(v), {
      orders: { count: d(2) },
      revenue: { sum: d('10.25') },
      lo: { min: d('-1.5') },
      hi: { max: d(9) },
      mean: { sum: d('10.25'), count: d(2) },
    });
    const cols = stateToColumns(v, s);
    expect(cols).toEqual({
      orders__count: '2',
      revenue__sum: '10.25',
      lo__min: '-1.5',
      hi__max: '9',
      mean__sum: '10.25',
      mean__count: '2',
    });
    expect(stateToColumns(v, stateFromColumns(v, cols))).toEqual(cols);
    const fromEngine = stateFromColumns(v, {
      orders__count: 2n,
      revenue__sum: 10.25,
      lo__min: null,
      hi__max: undefined,
      mean__sum: '10.25',
      mean__count: 2n,
    });
    expect(stateToColumns(v, fromEngine)).toEqual({ ...cols, lo__min: null, hi__max: null });
  });

  it('finalizes a whole view state; an empty one has 0 counts and sums, null min/max/avg', () => {
    const f = finalizeViewState(v, emptyViewState(v));
    expect(Object.fromEntries(Object.entries(f).map(([k, x]) => [k, x?.toFixed() ?? null]))).toEqual({
      orders: '0',
      revenue: '0',
      lo: null,
      hi: null,
      mean: null,
    });
  });

  it('treats a missing metric in a state as its identity', () => {
    const s = combineViewStates(v, { orders: { count: d(1) } }, { revenue: { sum: d(5) } });
    expect(stateToColumns(v, s)).toEqual({
      orders__count: '1',
      revenue__sum: '5',
      lo__min: null,
      hi__max: null,
      mean__sum: '0',
      mean__count: '0',
    });
  });
});

describe('metrics: the fold of many states at once', () => {
  it('combineAllViewStates equals combining pairwise, sketches included', () => {
    const v = view({
      name: 'f',
      dimensions: ['page'],
      grain: 'minute',
      metrics: { n: count(), total: sum('x'), lo: min('x'), hi: max('x'), mean: avg('x'), users: distinct('user') },
    });
    const states = [
      { x: '1.5', user: 'a' },
      { x: null, user: null },
      { x: '-2', user: 'b' },
      { x: '7.25', user: 'a' },
    ].map((e) =>
      stateFromColumns(v, {
        n__count: '1',
        total__sum: e.x ?? '0',
        lo__min: e.x,
        hi__max: e.x,
        mean__sum: e.x ?? '0',
        mean__count: e.x === null ? '0' : '1',
        users__hll: e.user === null ? null : Sketch.of([[e.user === 'a' ? 7 : 4000, e.user === 'a' ? 3 : 9]])!.toText(),
      }),
    );
    const pairwise = states.reduce((a, b) => combineViewStates(v, a, b), emptyViewState(v));
    expect(stateToColumns(v, combineAllViewStates(v, states))).toEqual(stateToColumns(v, pairwise));
    expect(stateToColumns(v, combineAllViewStates(v, [states[2]!]))).toEqual(stateToColumns(v, states[2]!));
  });
});
