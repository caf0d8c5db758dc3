/**
 * Metrics as commutative monoids. `combine` is the one merge function used by
 * the speed layer, the batch loader, the query merge and the tests.
 *
 * State components per metric fn (also the SQL/DynamoDB column suffixes):
 *   count -> count;  sum -> sum;  min -> min;  max -> max;  avg -> sum, count;
 *   distinct -> hll (a HyperLogLog sketch, hll.ts)
 * A missing (or non-numeric) field leaves sum/min/max/avg untouched; count()
 * counts every matching event; a missing field leaves distinct untouched.
 */
import { checkRange, Decimal, decimalFromText, decimalOfInteger, decimalText, decimalToNumber, smallInteger } from './decimal.ts';
import { estimate, mergeAll, mergeSketches, parseSketch, type Sketch, sqlSketchText } from './hll.ts';
import type { Metric, MetricFn, View } from './views.ts';

/** The components held as exact decimals (DynamoDB `N`). */
export type NumericComponent = 'count' | 'sum' | 'min' | 'max';
/** `hll`: a sketch, held as its canonical text (DynamoDB `S`). */
export type Component = NumericComponent | 'hll';

export const COMPONENTS: Record<MetricFn, readonly Component[]> = {
  count: ['count'],
  sum: ['sum'],
  min: ['min'],
  max: ['max'],
  avg: ['sum', 'count'],
  distinct: ['hll'],
};

/** One metric's state: a value per component (min/max are null until a value is seen, hll while empty). */
export type MetricState = Partial<Record<NumericComponent, Decimal | null>> & { hll?: Sketch | null };
/** A view row's state: one MetricState per metric name. */
export type ViewState = Record<string, MetricState>;

const ZERO = new Decimal(0);
const ONE = new Decimal(1);

export function identity(metric: Metric): MetricState {
  switch (metric.fn) {
    case 'count':
      return { count: ZERO };
    case 'sum':
      return { sum: ZERO };
    case 'min':
      return { min: null };
    case 'max':
      return { max: null };
    case 'avg':
      return { sum: ZERO, count: ZERO };
    case 'distinct':
      return { hll: null };
  }
}

const pick = (a: Decimal | null | undefined, b: Decimal | null | undefined, take: (x: Decimal, y: Decimal) => Decimal) =>
  a == null ? (b ?? null) : b == null ? a : take(a, b);

/**
 * a[c] + b[c] (a missing value is zero), checked against DECIMAL(38, 9). Two integers below 2^53
 * with a non-zero sum below it add as doubles, exactly and within range; anything else in decimals.
 */
function addComponent(fn: MetricFn, c: 'count' | 'sum', a: MetricState, b: MetricState): Decimal {
  const x = a[c] ?? ZERO;
  const y = b[c] ?? ZERO;
  const p = smallInteger(x);
  const q = p === undefined ? undefined : smallInteger(y);
  if (q !== undefined) {
    const n = p! + q;
    if (n !== 0 && Number.isSafeInteger(n)) return decimalOfInteger(n);
  }
  return checkRange(x.plus(y), `${fn} ${c}`);
}

/** The monoid operation: associative, commutative, with `identity` as unit. */
export function combine(metric: Metric, a: MetricState, b: MetricState): MetricState {
  switch (metric.fn) {
    case 'count':
      return { count: addComponent('count', 'count', a, b) };
    case 'sum':
      return { sum: addComponent('sum', 'sum', a, b) };
    // not Decimal.min/max: decimal.js statics read their constructor from `this` and fail unbound
    case 'min':
      return { min: pick(a.min, b.min, (x, y) => (y.lt(x) ? y : x)) };
    case 'max':
      return { max: pick(a.max, b.max, (x, y) => (y.gt(x) ? y : x)) };
    case 'avg':
      return { sum: addComponent('avg', 'sum', a, b), count: addComponent('avg', 'count', a, b) };
    case 'distinct':
      return { hll: mergeSketches(a.hll, b.hll) };
  }
}

/**
 * The state one event contributes; `value` is the metric field's exact value, null when absent
 * (`distinct`: the sketch of the field's canonical text, `sketchOf`).
 */
export function lift(metric: Metric, value: Decimal | null, sketch: Sketch | null = null): MetricState {
  switch (metric.fn) {
    case 'count':
      return { count: ONE };
    case 'sum':
      return { sum: value ?? ZERO };
    case 'min':
      return { min: value };
    case 'max':
      return { max: value };
    case 'avg':
      return value === null ? { sum: ZERO, count: ZERO } : { sum: value, count: ONE };
    case 'distinct':
      return { hll: sketch };
  }
}

/** The value a user sees: avg = sum / count (null when count is 0), min/max null when empty, distinct the sketch's estimate. */
export function finalize(metric: Metric, s: MetricState): Decimal | null {
  switch (metric.fn) {
    case 'count':
      return s.count ?? ZERO;
    case 'sum':
      return s.sum ?? ZERO;
    case 'min':
      return s.min ?? null;
    case 'max':
      return s.max ?? null;
    case 'avg':
      return s.count && !s.count.isZero() ? (s.sum ?? ZERO).div(s.count) : null;
    case 'distinct':
      return new Decimal(estimate(s.hll ?? null));
  }
}

/**
 * `finalize` as the JSON number an answer shows (`decimalToNumber`, null stays null), without the
 * detours a query pays per row otherwise: an avg of integers below 10^15 divides as doubles (the
 * correctly rounded quotient of two integers below 2^53 is never near enough a halfway point between
 * two doubles for decimal.js's 60 digits to round differently: the same number), and an estimate
 * is already a number.
 */
export function finalizeNumber(metric: Metric, s: MetricState): number | null {
  switch (metric.fn) {
    case 'count':
      return decimalToNumber(s.count ?? ZERO);
    case 'sum':
      return decimalToNumber(s.sum ?? ZERO);
    case 'min':
      return s.min == null ? null : decimalToNumber(s.min);
    case 'max':
      return s.max == null ? null : decimalToNumber(s.max);
    case 'avg': {
      const count = s.count;
      if (!count || count.isZero()) return null;
      const sum = s.sum ?? ZERO;
      const p = smallInteger(sum);
      const q = p === undefined ? undefined : smallInteger(count);
      return q === undefined ? decimalToNumber(sum.div(count)) : p! / q;
    }
    case 'distinct':
      return estimate(s.hll ?? null);
  }
}

/**
 * A view's metrics with their state columns, computed once per view: a query turns thousands of
 * rows into states and back, and building these names per row was a good part of its time.
 */
interface MetricLayout {
  readonly name: string;
  readonly metric: Metric;
  readonly columns: readonly { readonly component: Component; readonly column: string }[];
}
const layouts = new WeakMap<View, readonly MetricLayout[]>();
function layoutOf(view: View): readonly MetricLayout[] {
  let l = layouts.get(view);
  if (!l) {
    l = Object.entries(view.metrics).map(([name, metric]) => ({
      name,
      metric,
      columns: COMPONENTS[metric.fn].map((component) => ({ component, column: stateColumn(name, component) })),
    }));
    layouts.set(view, l);
  }
  return l;
}

export function emptyViewState(view: View): ViewState {
  const out: ViewState = {};
  for (const { name, metric } of layoutOf(view)) out[name] = identity(metric);
  return out;
}

export function combineViewStates(view: View, a: ViewState, b: ViewState): ViewState {
  const out: ViewState = {};
  for (const { name, metric } of layoutOf(view)) out[name] = combine(metric, a[name] ?? identity(metric), b[name] ?? identity(metric));
  return out;
}

/**
 * The fold of `combineViewStates` over `states` (equal to combining them pairwise, in any order), in one
 * pass per metric: a rollup of many rows into one would otherwise copy a growing sketch at every step.
 */
export function combineAllViewStates(view: View, states: readonly ViewState[]): ViewState {
  if (states.length === 1) return states[0]!;
  const out: ViewState = {};
  for (const { name, metric, columns } of layoutOf(view)) {
    const parts = states.map((s) => s[name] ?? identity(metric));
    if (metric.fn === 'distinct') out[name] = { hll: mergeAll(parts.map((p) => p.hll)) };
    else if (metric.fn === 'min' || metric.fn === 'max') out[name] = parts.reduce((a, b) => combine(metric, a, b), identity(metric));
    else {
      const ms: MetricState = {};
      for (const { component } of columns) ms[component as 'count' | 'sum'] = sumAll(parts, component as 'count' | 'sum', metric.fn);
      out[name] = ms;
    }
  }
  return out;
}

/**
 * The state columns of several rows combined, as text: `stateToColumns(view, combineAllViewStates(view,
 * rows.map((r) => stateFromColumns(view, r))))`. A rebuild rolls millions of base rows up to its hour and day
 * rows: counts and sums of whole numbers below 10^15 are added as doubles (exact while every partial sum is below
 * 2^53, checked at each step) and sketches merged on their text, instead of a Decimal or a sketch object per value;
 * any other metric, or a value the fast path does not take, goes through the states.
 */
export function combineColumnTexts(view: View, rows: readonly Readonly<Record<string, string | null>>[]): Record<string, string | null> {
  if (rows.length === 1) return stateToColumns(view, stateFromColumns(view, rows[0]!));
  const out: Record<string, string | null> = {};
  // The rows read as states, once, only if a metric needs the general path.
  let parsed: ViewState[] | undefined;
  for (const layout of layoutOf(view)) {
    const { metric, columns } = layout;
    if (metric.fn === 'count' || metric.fn === 'sum' || metric.fn === 'avg') {
      let fast = true;
      const sums: string[] = [];
      for (const { column } of columns) {
        let n = 0;
        for (const r of rows) {
          const t = r[column];
          if (t === null || t === undefined) continue;
          if (!SMALL_WHOLE.test(t)) {
            fast = false;
            break;
          }
          n += Number(t);
          if (!Number.isSafeInteger(n)) {
            fast = false;
            break;
          }
        }
        if (!fast) break;
        sums.push(String(n));
      }
      if (fast) {
        columns.forEach(({ column }, i) => {
          out[column] = sums[i]!;
        });
        continue;
      }
    } else if (metric.fn === 'distinct') {
      const column = columns[0]!.column;
      out[column] = mergeAll(rows.map((r) => parseSketch(r[column] ?? '')))?.toText() ?? null;
      continue;
    }
    parsed ??= rows.map((r) => stateFromColumns(view, r));
    const states = parsed.map((x) => x[layout.name]!);
    const combined = states.reduce((a, b) => combine(metric, a, b), identity(metric));
    for (const { component, column } of columns) {
      if (component === 'hll') continue;
      const v = combined[component];
      out[column] = v == null ? null : decimalText(v);
    }
  }
  return out;
}

/** A whole number in plain form below 10^15 in magnitude: adds exactly as a double. */
const SMALL_WHOLE = /^(?:0|-?[1-9]\d{0,14})$/;

/** `finalizeNumber` of every metric, set on `out` in declaration order (a response row being built). */
export function finalizeViewNumbers(view: View, s: ViewState, out: Record<string, unknown>): void {
  for (const { name, metric } of layoutOf(view)) out[name] = finalizeNumber(metric, s[name] ?? identity(metric));
}

/**
 * The sum of one count/sum component over `parts`, as `combine` folds it from zero (a missing value
 * counts as zero, each partial sum checked against DECIMAL(38, 9)). While every value and partial
 * sum is an integer below 2^53 the fold runs on doubles, exactly, and cannot overflow; the first
 * other value carries it on in decimals.
 */
function sumAll(parts: readonly MetricState[], c: 'count' | 'sum', fn: MetricFn): Decimal {
  let n = 0;
  let k = 0;
  for (; k < parts.length; k++) {
    const v = parts[k]![c];
    if (v == null) continue;
    const x = smallInteger(v);
    if (x === undefined || !Number.isSafeInteger(n + x)) break;
    n += x;
  }
  let d = decimalOfInteger(n);
  for (; k < parts.length; k++) d = checkRange(d.plus(parts[k]![c] ?? ZERO), `${fn} ${c}`);
  return d;
}

export function finalizeViewState(view: View, s: ViewState): Record<string, Decimal | null> {
  const out: Record<string, Decimal | null> = {};
  for (const { name, metric } of layoutOf(view)) out[name] = finalize(metric, s[name] ?? identity(metric));
  return out;
}

/** Column name of one state component: `<metric>__<component>` (SQL output, DynamoDB attribute). */
export function stateColumn(metricName: string, component: Component): string {
  return `${metricName}__${component}`;
}

export interface StateColumn {
  readonly metric: string;
  readonly component: Component;
  readonly column: string;
}

/** Every state column of a view, in declaration order. */
export function stateColumns(view: View): StateColumn[] {
  return Object.entries(view.metrics).flatMap(([metric, m]) =>
    COMPONENTS[m.fn].map((component) => ({ metric, component, column: stateColumn(metric, component) })),
  );
}

/**
 * State as text per column: plain decimal text, a sketch's canonical text (hll.ts); null for an
 * empty min/max/sketch. For JSON, DynamoDB and SQL rows.
 */
export function stateToColumns(view: View, s: ViewState): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  for (const { name, columns } of layoutOf(view)) {
    const ms = s[name];
    for (const { component, column } of columns) {
      if (component === 'hll') {
        out[column] = ms?.hll?.toText() ?? null;
        continue;
      }
      const v = ms?.[component];
      out[column] = v == null ? null : decimalText(v);
    }
  }
  return out;
}

/**
 * A state column's text as an SQL engine returns it, in the form the rest of Tandem writes:
 * plain decimal text, or a sketch's canonical text from the SQL's register list (hll.ts).
 */
export function columnFromSql(component: Component, text: string | null | undefined): string | null {
  if (text === null || text === undefined) return null;
  if (component === 'hll') return sqlSketchText(text);
  // Counts (BIGINT) come already plain, and sums of whole values as `<integer>.000000000`: that integer is the plain text.
  const whole = SQL_WHOLE.exec(text);
  if (whole) return whole[1]!;
  return decimalText(new Decimal(text));
}

/** An integer in plain form (no sign on zero, no leading zeros), maybe with a fraction of zeros. */
const SQL_WHOLE = /^(0|-?[1-9]\d{0,37})(?:\.0+)?$/;

/** Reads a state back from columns (strings, numbers or bigints as SQL engines and DynamoDB return them). */
export function stateFromColumns(view: View, row: Readonly<Record<string, unknown>>): ViewState {
  const s: ViewState = {};
  for (const { name, metric, columns } of layoutOf(view)) {
    const ms: MetricState = identity(metric);
    for (const { component, column } of columns) {
      const raw = row[column];
      if (raw === null || raw === undefined) continue;
      if (component === 'hll') ms.hll = parseSketch(String(raw));
      else ms[component] = decimalFromText(typeof raw === 'string' ? raw : String(raw));
    }
    s[name] = ms;
  }
  return s;
}
