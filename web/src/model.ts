/**
 * From a query answer to what the chart draws: one x per bucket of the range,
 * and either a batch/speed split (when the API sends per-row parts), one
 * total series, or one series per group. Pure, so it is unit-tested without a
 * browser.
 */
import type { QueryAnswer, ViewInfo } from '../../functions/contract/api.ts';

export const GRAIN_MS = { minute: 60_000, hour: 3_600_000, day: 86_400_000 } as const;
export type ChartGrain = keyof typeof GRAIN_MS;

/** Most groups drawn as their own series; the rest are named in the caption. */
export const MAX_GROUPS = 8;
/** Beyond this many buckets the x axis holds only buckets that have rows. */
const MAX_DENSE_BUCKETS = 20_000;

export interface ChartSeries {
  readonly label: string;
  readonly kind: 'total' | 'batch' | 'speed' | 'group';
  /** One value per x; null where nothing is known (min/max/avg of an empty bucket). */
  readonly values: (number | null)[];
}

export interface ChartModel {
  /** Bucket starts, epoch seconds (uPlot's time unit). */
  readonly xs: number[];
  /** The x range drawn, epoch seconds: the query's [from, to), so "now" and the cutoff are on the axis. */
  readonly xRange: readonly [number, number];
  readonly series: ChartSeries[];
  /** True when the batch and speed parts of each bucket are known (stacked). */
  readonly split: boolean;
  /** Sum over the range per series kind, for count/sum metrics; null for min/max/avg. */
  readonly totals: { readonly all: number | null; readonly batch: number | null; readonly speed: number | null };
  /** Groups left out of the chart (more than MAX_GROUPS). */
  readonly hiddenGroups: number;
  /** The published cutoff, epoch ms (batch covers arrivals before it); null before the first batch. */
  readonly cutoff: number | null;
  readonly metric: string;
}

/** Can the metric's values of several buckets (or of batch and speed) be added up? */
export function additive(view: ViewInfo, metric: string): boolean {
  const fn = view.metrics[metric]?.fn;
  return fn === 'count' || fn === 'sum';
}

/** Dimension columns of a response row: everything but the bucket, the metrics and the parts. */
export function groupColumns(view: ViewInfo, answer: QueryAnswer): string[] {
  const cols: string[] = [];
  for (const r of answer.rows) {
    for (const k of Object.keys(r)) if (k !== 'bucket' && k !== 'parts' && !(k in view.metrics) && !cols.includes(k)) cols.push(k);
  }
  return cols;
}

const label = (v: unknown) => (v === null || v === undefined ? '(none)' : String(v));

// Adds money-like decimals without drifting in the last digit for display (the API's values are exact).
const add = (a: number, b: number) => Number((a + b).toPrecision(15));

export function buildModel(view: ViewInfo, answer: QueryAnswer, metric: string, grain: ChartGrain): ChartModel {
  const step = GRAIN_MS[grain];
  const canAdd = additive(view, metric);
  const from = Math.floor(Date.parse(answer.from) / step) * step;
  const to = Date.parse(answer.to);
  const rowBuckets = [...new Set(answer.rows.map((r) => Date.parse(String(r.bucket))))].sort((a, b) => a - b);
  let buckets: number[];
  if ((to - from) / step <= MAX_DENSE_BUCKETS) {
    buckets = [];
    for (let b = from; b < to; b += step) buckets.push(b);
    // Rows always fall in [from, to); keep any that would not (a server with other alignment) visible anyway.
    const dense = new Set(buckets);
    for (const b of rowBuckets) if (!dense.has(b)) buckets.push(b);
    buckets.sort((a, b) => a - b);
  } else {
    buckets = rowBuckets;
  }
  const index = new Map(buckets.map((b, i) => [b, i]));
  const xRange = [Math.min(from, buckets[0] ?? from) / 1000, Math.max(to, (buckets.at(-1) ?? from) + step) / 1000] as const;
  const empty = () => buckets.map(() => (canAdd ? 0 : null)) as (number | null)[];
  const numberOr = (v: unknown) => (typeof v === 'number' ? v : null);
  const cutoff = answer.batch ? Date.parse(answer.batch.cutoff) : null;
  const groups = groupColumns(view, answer);
  const sumOf = (values: readonly (number | null)[]) => (canAdd ? values.reduce<number>((s, v) => add(s, v ?? 0), 0) : null);

  if (groups.length === 0) {
    const split = canAdd && answer.rows.length > 0 && answer.rows.every((r) => r.parts !== undefined);
    const total = empty();
    const batch = empty();
    const speed = empty();
    for (const r of answer.rows) {
      const i = index.get(Date.parse(String(r.bucket)));
      if (i === undefined) continue;
      total[i] = numberOr(r[metric]);
      if (split && r.parts) {
        batch[i] = numberOr(r.parts.batch[metric]) ?? 0;
        speed[i] = numberOr(r.parts.speed[metric]) ?? 0;
      }
    }
    const series: ChartSeries[] = split
      ? [
          { label: 'batch view', kind: 'batch', values: batch },
          { label: 'speed deltas', kind: 'speed', values: speed },
        ]
      : [{ label: metric, kind: 'total', values: total }];
    return {
      xs: buckets.map((b) => b / 1000),
      xRange,
      series,
      split,
      totals: { all: sumOf(total), batch: split ? sumOf(batch) : null, speed: split ? sumOf(speed) : null },
      hiddenGroups: 0,
      cutoff,
      metric,
    };
  }

  const byGroup = new Map<string, (number | null)[]>();
  const weight = new Map<string, number>();
  for (const r of answer.rows) {
    const i = index.get(Date.parse(String(r.bucket)));
    if (i === undefined) continue;
    const key = groups.map((g) => label(r[g])).join(' · ');
    const values = byGroup.get(key) ?? empty();
    byGroup.set(key, values);
    const v = numberOr(r[metric]);
    values[i] = v;
    weight.set(key, (weight.get(key) ?? 0) + (canAdd ? Math.abs(v ?? 0) : 1));
  }
  const ranked = [...byGroup.keys()].sort((a, b) => (weight.get(b) ?? 0) - (weight.get(a) ?? 0) || (a < b ? -1 : 1));
  const shown = ranked.slice(0, MAX_GROUPS).sort();
  const all = canAdd ? [...byGroup.values()].reduce<number>((s, vs) => add(s, sumOf(vs) ?? 0), 0) : null;
  return {
    xs: buckets.map((b) => b / 1000),
    xRange,
    series: shown.map((g) => ({ label: g, kind: 'group' as const, values: byGroup.get(g)! })),
    split: false,
    totals: { all, batch: null, speed: null },
    hiddenGroups: ranked.length - shown.length,
    cutoff,
    metric,
  };
}

/** Grains the dashboard offers for a view: its own and the coarser ones. */
export function grainsFor(view: ViewInfo): ChartGrain[] {
  const order: ChartGrain[] = ['minute', 'hour', 'day'];
  return order.slice(order.indexOf(view.grain));
}

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

/** The range choices. */
export const RANGES = [
  { id: '15m', label: 'last 15 minutes', ms: 15 * 60_000 },
  { id: '1h', label: 'last hour', ms: HOUR_MS },
  { id: '6h', label: 'last 6 hours', ms: 6 * HOUR_MS },
  { id: '24h', label: 'last 24 hours', ms: 24 * HOUR_MS },
  { id: '7d', label: 'last 7 days', ms: 7 * DAY_MS },
  { id: '30d', label: 'last 30 days', ms: 30 * DAY_MS },
  { id: '90d', label: 'last 90 days', ms: 90 * DAY_MS },
] as const;
export type RangeId = (typeof RANGES)[number]['id'];

/** Most buckets a chart may hold: finer grains are not offered for the range. */
export const MAX_CHART_BUCKETS = 1_500;

/** The coarser of two grains. */
const coarser = (a: ChartGrain, b: ChartGrain): ChartGrain => (GRAIN_MS[a] >= GRAIN_MS[b] ? a : b);

/**
 * The grain a range opens with: day beyond 7 days, hour beyond 6 hours, minute
 * otherwise; never finer than the view's own grain.
 */
export function defaultGrain(view: ViewInfo, rangeMs: number): ChartGrain {
  const wanted: ChartGrain = rangeMs > 7 * DAY_MS ? 'day' : rangeMs > 6 * HOUR_MS ? 'hour' : 'minute';
  return coarser(wanted, view.grain);
}

/**
 * The grains offered for a range: the view's and the coarser ones that keep the
 * chart within MAX_CHART_BUCKETS buckets (a 90-day minute chart would also be
 * more than one answer may carry), and always the range's default.
 */
export function grainsForRange(view: ViewInfo, rangeMs: number): ChartGrain[] {
  const fallback = defaultGrain(view, rangeMs);
  return grainsFor(view).filter((g) => g === fallback || rangeMs / GRAIN_MS[g] <= MAX_CHART_BUCKETS);
}

/** [from, to) of "the last <range>" at a grain: `to` is the end of the current bucket. */
export function rangeBounds(rangeMs: number, grain: ChartGrain, now: number): { from: number; to: number } {
  const step = GRAIN_MS[grain];
  const to = Math.floor(now / step) * step + step;
  return { from: Math.floor((to - rangeMs) / step) * step, to };
}

// ---- top N --------------------------------------------------------------------------------------

/** Rows of the "top N" table. */
export const TOP_N = 10;

/** The dimensions the top-N table ranks: the chosen group-by, or all of the view's when none is chosen. */
export function topGroupBy(view: ViewInfo, groupBy: readonly string[]): string[] {
  return groupBy.length > 0 ? [...groupBy] : [...view.dimensions];
}

/**
 * The query of the top-N table: the whole range as one bucket (`grain=all`), the
 * rows with the largest `metric` first, the first TOP_N of them. Undefined for a
 * view without dimensions (there is nothing to rank).
 */
export function topQuery(
  view: ViewInfo,
  sel: { readonly metric: string; readonly groupBy: readonly string[]; readonly filters: Readonly<Record<string, string>> },
  from: number,
  to: number,
): Record<string, string> | undefined {
  const groupBy = topGroupBy(view, sel.groupBy);
  if (groupBy.length === 0) return undefined;
  return {
    ...sel.filters,
    from: new Date(from).toISOString(),
    to: new Date(to).toISOString(),
    grain: 'all',
    groupBy: groupBy.join(','),
    orderBy: `-${sel.metric}`,
    limit: String(TOP_N),
  };
}

export interface TopRow {
  /** 1-based. */
  readonly rank: number;
  /** The ranked dimensions' values, in the order of `columns`. */
  readonly labels: string[];
  /** Every metric of the row, the ranked one included. */
  readonly values: Record<string, number | null>;
}

export interface TopModel {
  /** The ranked dimensions. */
  readonly columns: string[];
  readonly rows: TopRow[];
  /** The metric ranked by, largest first. */
  readonly metric: string;
}

/** The top-N table from the answer of topQuery, in the API's order (ties and nulls placed by the API). */
export function buildTop(view: ViewInfo, groupBy: readonly string[], answer: QueryAnswer, metric: string): TopModel {
  const columns = topGroupBy(view, groupBy);
  const rows = answer.rows.slice(0, TOP_N).map((r, i) => ({
    rank: i + 1,
    labels: columns.map((c) => label(r[c])),
    values: Object.fromEntries(Object.keys(view.metrics).map((m) => [m, typeof r[m] === 'number' ? (r[m] as number) : null])),
  }));
  return { columns, rows, metric };
}
