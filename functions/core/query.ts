/**
 * Query shaping of GET /views/{name} (docs/api.md): parameters,
 * the merge of the batch view with the speed cells it does not cover, and the
 * rows of the response. Pure: the query handler reads the rows and hands them here.
 */
import { combineAllViewStates, finalizeViewNumbers, type ViewState } from './metrics.ts';
import { GRAIN_MS, grainRank, iso, parseTime, QUERY_GRAINS, type QueryGrain, rollupBucket } from './time.ts';
import type { View } from './views.ts';

/** Longest range one query may cover. */
export const MAX_RANGE_DAYS = 366;
/** Range when `from` is not given: the 24 hours before `to`. */
export const DEFAULT_RANGE_MS = 24 * 3_600_000;
const DAY_MS = 86_400_000;

/** The parameters the contract names; any other parameter filters a dimension. */
export const QUERY_PARAMS = ['from', 'to', 'grain', 'groupBy', 'parts', 'orderBy', 'limit'] as const;
/** Largest `limit`: rows kept per bucket. */
export const MAX_LIMIT = 10_000;

export interface QuerySpec {
  /** Inclusive start, ms: a view bucket counts when its start is in [from, to). */
  readonly from: number;
  /** Exclusive end, ms. */
  readonly to: number;
  readonly grain: QueryGrain;
  /** Dimensions to group by, in the view's order (empty: totals). */
  readonly groupBy: readonly string[];
  /** Equality filters on dimensions (canonical text). */
  readonly filters: Readonly<Record<string, string>>;
  /** `parts=1`: each row also carries its batch and speed parts (the dashboard's split). */
  readonly parts?: boolean;
  /** `orderBy=<metric>` (`-<metric>`: descending): the order of the rows within each bucket. */
  readonly orderBy?: OrderBy;
  /** `limit=N`: the first N rows of each bucket (in `orderBy` order, else by dimension values). */
  readonly limit?: number;
}

export interface OrderBy {
  readonly metric: string;
  readonly descending: boolean;
}

export interface QueryError {
  /** `from`, `to`, `grain`, `groupBy`, `parts`, `orderBy`, `limit`, or the unknown parameter's name. */
  readonly field: string;
  readonly message: string;
}

export function isQueryError(r: QuerySpec | QueryError): r is QueryError {
  return 'field' in r;
}

/** One row of a view's state: a batch-view row, or (with `window`) a cell of a speed item. */
export interface Row {
  readonly bucket: number;
  readonly dims: readonly (string | null)[];
  readonly state: ViewState;
}
export interface SpeedRow extends Row {
  /** Arrival window start, ms. */
  readonly window: number;
}

/** A response row: `bucket` (ISO-8601), the grouped dimensions, then the metrics. */
export type ResponseRow = Record<string, string | number | null | RowParts>;

/** The batch and speed parts of one response row (`parts=1`): each side rolled up alone, then finalized. */
export interface RowParts {
  readonly batch: Record<string, number | null>;
  readonly speed: Record<string, number | null>;
}

/** Reads the query parameters of GET /views/{name}; `now` (ms) sets the default range. */
export function parseQuery(view: View, params: Readonly<Record<string, string | undefined>>, now: number): QuerySpec | QueryError {
  const given = (k: string) => {
    const v = params[k];
    return v === undefined || v === '' ? undefined : v;
  };
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || (QUERY_PARAMS as readonly string[]).includes(k) || view.dimensions.includes(k)) continue;
    const dims = view.dimensions.length > 0 ? `its dimensions are ${view.dimensions.join(', ')}` : 'it has no dimensions';
    return { field: k, message: `is not a parameter (${QUERY_PARAMS.join(', ')}) nor a dimension of view "${view.name}" (${dims})` };
  }

  const time = (k: 'from' | 'to'): number | QueryError | undefined => {
    const raw = given(k);
    if (raw === undefined) return undefined;
    try {
      return parseTime(raw);
    } catch (e) {
      return { field: k, message: (e as Error).message };
    }
  };
  const toGiven = time('to');
  if (typeof toGiven === 'object') return toGiven;
  const fromGiven = time('from');
  if (typeof fromGiven === 'object') return fromGiven;
  const step = GRAIN_MS[view.grain];
  const to = toGiven ?? Math.ceil(now / step) * step;
  const from = fromGiven ?? to - DEFAULT_RANGE_MS;
  if (from >= to) {
    return toGiven !== undefined
      ? { field: 'to', message: `must be after from (${iso(from)}), received ${iso(to)}` }
      : { field: 'from', message: `must be before to (${iso(to)}, the current ${view.grain} by default), received ${iso(from)}` };
  }
  if (to - from > MAX_RANGE_DAYS * DAY_MS) {
    return {
      field: 'from',
      message: `the range from..to may span at most ${MAX_RANGE_DAYS} days, received ${((to - from) / DAY_MS).toFixed(1)} days`,
    };
  }

  const grainText = given('grain') ?? view.grain;
  if (!(QUERY_GRAINS as readonly string[]).includes(grainText)) {
    return { field: 'grain', message: `must be one of ${QUERY_GRAINS.join(', ')}, received "${grainText}"` };
  }
  const grain = grainText as QueryGrain;
  if (grainRank(grain) < grainRank(view.grain)) {
    const allowed = QUERY_GRAINS.filter((g) => grainRank(g) >= grainRank(view.grain));
    return { field: 'grain', message: `must be the view's grain or coarser (${allowed.join(', ')}), received "${grain}"` };
  }

  let groupBy: string[] = [...view.dimensions];
  const groupByText = params.groupBy;
  if (groupByText !== undefined) {
    const asked = groupByText
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    const unknown = asked.find((d) => !view.dimensions.includes(d));
    if (unknown !== undefined) {
      return {
        field: 'groupBy',
        message: `"${unknown}" is not a dimension of view "${view.name}" (dimensions: ${view.dimensions.join(', ') || 'none'})`,
      };
    }
    groupBy = view.dimensions.filter((d) => asked.includes(d));
  }

  const filters: Record<string, string> = {};
  for (const d of view.dimensions) {
    const v = params[d];
    if (v !== undefined) filters[d] = v;
  }
  const partsText = given('parts');
  if (partsText !== undefined && !['0', '1', 'true', 'false'].includes(partsText)) {
    return { field: 'parts', message: `must be 1 or 0 (true or false), received "${partsText}"` };
  }

  // Unlike from/to/grain, an empty orderBy or limit is refused: it is a client bug, not a default asked for.
  let orderBy: OrderBy | undefined;
  const orderByText = params.orderBy;
  if (orderByText !== undefined) {
    const descending = orderByText.startsWith('-');
    const metric = descending ? orderByText.slice(1) : orderByText;
    if (!Object.hasOwn(view.metrics, metric)) {
      return {
        field: 'orderBy',
        message:
          `must be a metric of view "${view.name}" (${Object.keys(view.metrics).join(', ')}), ` +
          `with a leading - for descending, received "${orderByText}"`,
      };
    }
    orderBy = { metric, descending };
  }
  let limit: number | undefined;
  const limitText = params.limit;
  if (limitText !== undefined) {
    limit = /^\d{1,6}$/.test(limitText) ? Number(limitText) : Number.NaN;
    if (!(limit >= 1 && limit <= MAX_LIMIT)) {
      return { field: 'limit', message: `must be a whole number from 1 to ${MAX_LIMIT}, received "${limitText}"` };
    }
  }
  return {
    from,
    to,
    grain,
    groupBy,
    filters,
    ...(partsText === '1' || partsText === 'true' ? { parts: true } : {}),
    ...(orderBy ? { orderBy } : {}),
    ...(limit !== undefined ? { limit } : {}),
  };
}

const rowKey = (bucket: number, dims: readonly (string | null)[]) => JSON.stringify([bucket, dims]);

/** Orders dimension values: null first, then strings by UTF-16 code units. */
export function compareDims(a: readonly (string | null)[], b: readonly (string | null)[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i] ?? null;
    const y = b[i] ?? null;
    if (x === y) continue;
    if (x === null) return -1;
    if (y === null) return 1;
    return x < y ? -1 : 1;
  }
  return 0;
}

/** Rows sorted by bucket, then dimension values. */
export function sortRows<R extends Row>(rows: R[]): R[] {
  return rows.sort((a, b) => a.bucket - b.bucket || compareDims(a.dims, b.dims));
}

/** Rows gathered per (bucket, dims), combined once at the end (`combined`): one fold per key, not a copy per row. */
type Gathered = Map<string, { bucket: number; dims: readonly (string | null)[]; states: ViewState[] }>;

function gather(acc: Gathered, bucket: number, dims: readonly (string | null)[], state: ViewState): void {
  const key = rowKey(bucket, dims);
  const seen = acc.get(key);
  if (seen) seen.states.push(state);
  else acc.set(key, { bucket, dims, states: [state] });
}

const combined = (view: View, acc: Gathered): Row[] =>
  [...acc.values()].map((g) => ({ bucket: g.bucket, dims: g.dims, state: combineAllViewStates(view, g.states) }));

/**
 * The merged view: batch rows (arrival < cutoff) plus the speed cells of
 * windows >= cutoff, combined per (bucket, dimension values). With no published
 * batch (`cutoff` null) every speed cell counts.
 */
export function mergeRows(view: View, batchRows: readonly Row[], speedRows: readonly SpeedRow[], cutoff: number | null): Row[] {
  const acc: Gathered = new Map();
  for (const r of batchRows) gather(acc, r.bucket, r.dims, r.state);
  for (const d of speedRows) {
    if (cutoff === null || d.window >= cutoff) gather(acc, d.bucket, d.dims, d.state);
  }
  return sortRows(combined(view, acc));
}

/**
 * Rows gathered per (rolled-up bucket, `groupBy` values) in a tree of maps, one level per key part (the
 * values themselves as keys: no key text per row), read back in sortRows' order by sorting each level's
 * few keys instead of all the rows.
 */
interface Rolled {
  readonly spec: QuerySpec;
  readonly filters: readonly (readonly [number, string])[];
  readonly groupIdx: readonly number[];
  readonly root: Map<number, unknown>;
}

interface Group {
  readonly bucket: number;
  readonly dims: readonly (string | null)[];
  readonly states: ViewState[];
}

function rolled(view: View, spec: QuerySpec): Rolled {
  return {
    spec,
    filters: Object.entries(spec.filters).map(([d, v]) => [view.dimensions.indexOf(d), v] as const),
    groupIdx: spec.groupBy.map((d) => view.dimensions.indexOf(d)),
    root: new Map(),
  };
}

function rollInto(acc: Rolled, r: Row): void {
  const { spec, filters, groupIdx } = acc;
  if (r.bucket < spec.from || r.bucket >= spec.to) return;
  for (const [i, v] of filters) if ((r.dims[i] ?? null) !== v) return;
  const bucket = rollupBucket(r.bucket, spec.grain, spec.from);
  let level: Map<unknown, unknown> = acc.root;
  let key: unknown = bucket;
  for (const i of groupIdx) {
    let next = level.get(key) as Map<unknown, unknown> | undefined;
    if (!next) {
      next = new Map();
      level.set(key, next);
    }
    level = next;
    key = r.dims[i] ?? null;
  }
  const seen = level.get(key) as Group | undefined;
  if (seen) seen.states.push(r.state);
  else level.set(key, { bucket, dims: groupIdx.map((i) => r.dims[i] ?? null), states: [r.state] });
}

/** Dimension values as compareDims orders them: null first, then by UTF-16 code units. */
const compareDim = (x: unknown, y: unknown) => (x === y ? 0 : x === null ? -1 : y === null ? 1 : (x as string) < (y as string) ? -1 : 1);

function rolledRows(view: View, acc: Rolled): Row[] {
  const out: Row[] = [];
  const depth = acc.groupIdx.length;
  const walk = (level: Map<unknown, unknown>, d: number) => {
    const keys = [...level.keys()];
    keys.sort(d === 0 ? (a, b) => (a as number) - (b as number) : compareDim);
    for (const k of keys) {
      const v = level.get(k);
      if (d < depth) walk(v as Map<unknown, unknown>, d + 1);
      else {
        const g = v as Group;
        out.push({ bucket: g.bucket, dims: g.dims, state: combineAllViewStates(view, g.states) });
      }
    }
  };
  walk(acc.root, 0);
  return out;
}

/**
 * Keeps the rows that pass the dimension filters and whose bucket is in
 * [from, to), rolls their buckets up to `grain` and groups them by `groupBy`:
 * the returned rows' `dims` are the `groupBy` values.
 */
export function rollupRows(view: View, spec: QuerySpec, rows: readonly Row[]): Row[] {
  const acc = rolled(view, spec);
  for (const r of rows) rollInto(acc, r);
  return rolledRows(view, acc);
}

/**
 * `rollupRows` of `mergeRows(view, batchRows, speedRows, cutoff)` in one pass: combining per view
 * cell and then per rolled-up cell is one fold per rolled-up cell (the monoid is associative and
 * commutative), so the merge's own grouping and sort are skipped.
 */
function rollupMerged(
  view: View,
  spec: QuerySpec,
  batchRows: readonly Row[],
  speedRows: readonly SpeedRow[],
  cutoff: number | null,
): Row[] {
  const acc = rolled(view, spec);
  for (const r of batchRows) rollInto(acc, r);
  for (const d of speedRows) if (cutoff === null || d.window >= cutoff) rollInto(acc, d);
  return rolledRows(view, acc);
}

/** The response rows: rolled up and grouped, metrics finalized to JSON numbers (or null), then ordered and limited per bucket. */
export function shapeRows(view: View, spec: QuerySpec, rows: readonly Row[]): ResponseRow[] {
  return topRows(spec, finalizeRows(view, spec, rollupRows(view, spec, rows)));
}

/** Rolled-up rows as response rows: the bucket as ISO-8601, the `groupBy` values, the metrics as JSON numbers (or null). */
function finalizeRows(view: View, spec: QuerySpec, rows: readonly Row[]): ResponseRow[] {
  // Rows share few buckets (90 days at day grain: 90 for thousands of rows); formatting a date is not free.
  const buckets = new Map<number, string>();
  const bucketText = (ms: number) => {
    const known = buckets.get(ms);
    if (known !== undefined) return known;
    const text = iso(ms);
    buckets.set(ms, text);
    return text;
  };
  const groupBy = spec.groupBy;
  const out: ResponseRow[] = new Array(rows.length);
  for (let k = 0; k < rows.length; k++) {
    const r = rows[k]!;
    const row: ResponseRow = { bucket: bucketText(r.bucket) };
    for (let i = 0; i < groupBy.length; i++) row[groupBy[i]!] = r.dims[i] ?? null;
    finalizeViewNumbers(view, r.state, row);
    out[k] = row;
  }
  return out;
}

/**
 * The response rows with, when `spec.parts`, each row's batch part (from the
 * batch view's rows alone) and speed part (from the speed cells of windows >=
 * cutoff alone). For count and sum the parts add up to the row; for min, max
 * and avg they are each side's own value.
 */
export function shapeResponse(
  view: View,
  spec: QuerySpec,
  batchRows: readonly Row[],
  speedRows: readonly SpeedRow[],
  cutoff: number | null,
): ResponseRow[] {
  const rows = topRows(spec, finalizeRows(view, spec, rollupMerged(view, spec, batchRows, speedRows, cutoff)));
  if (!spec.parts) return rows;
  const metricsOnly = (r: ResponseRow | undefined): Record<string, number | null> =>
    Object.fromEntries(
      Object.keys(view.metrics).map((m) => {
        const v = r?.[m];
        return [m, typeof v === 'number' ? v : r === undefined ? emptyValue(view, m) : null];
      }),
    );
  const key = (r: ResponseRow) => JSON.stringify([r.bucket, ...spec.groupBy.map((d) => r[d] ?? null)]);
  const index = (side: ResponseRow[]) => new Map(side.map((r) => [key(r), r]));
  // Each side whole (finalizeRows neither orders nor limits): a row of the merged top N need not be in either side's.
  const batch = index(finalizeRows(view, spec, rollupMerged(view, spec, batchRows, [], cutoff)));
  const speed = index(finalizeRows(view, spec, rollupMerged(view, spec, [], speedRows, cutoff)));
  return rows.map((r) => ({ ...r, parts: { batch: metricsOnly(batch.get(key(r))), speed: metricsOnly(speed.get(key(r))) } }));
}

/**
 * `orderBy` and `limit` over response rows: buckets stay in time order; within
 * a bucket, rows go by the metric's value as answered (ascending, or descending
 * with `-`), null values last in both directions (SQL's NULLS LAST), ties by
 * the `groupBy` values as sortRows orders them (null first); then the first
 * `limit` rows of each bucket. Without `orderBy` the rows keep sortRows' order.
 */
export function topRows(spec: Pick<QuerySpec, 'groupBy' | 'orderBy' | 'limit'>, rows: readonly ResponseRow[]): ResponseRow[] {
  const { orderBy, limit } = spec;
  if (orderBy === undefined && limit === undefined) return [...rows];
  const dims = (r: ResponseRow) => spec.groupBy.map((d) => r[d] as string | null);
  const value = (r: ResponseRow) => {
    const v = orderBy ? r[orderBy.metric] : null;
    return typeof v === 'number' ? v : null;
  };
  const byValue = (a: ResponseRow, b: ResponseRow): number => {
    if (!orderBy) return 0;
    const x = value(a);
    const y = value(b);
    if (x === y) return 0;
    if (x === null) return 1;
    if (y === null) return -1;
    return (x < y ? -1 : 1) * (orderBy.descending ? -1 : 1);
  };
  // ISO-8601 buckets of one format sort as text in time order.
  const sorted = [...rows].sort(
    (a, b) => (a.bucket === b.bucket ? 0 : String(a.bucket) < String(b.bucket) ? -1 : 1) || byValue(a, b) || compareDims(dims(a), dims(b)),
  );
  if (limit === undefined) return sorted;
  const out: ResponseRow[] = [];
  let bucket: unknown;
  let kept = 0;
  for (const r of sorted) {
    if (r.bucket !== bucket) {
      bucket = r.bucket;
      kept = 0;
    }
    if (kept++ < limit) out.push(r);
  }
  return out;
}

/** A metric's value over no events: 0 for count, sum and distinct, null for the others. */
function emptyValue(view: View, metric: string): number | null {
  const fn = view.metrics[metric]?.fn;
  return fn === 'count' || fn === 'sum' || fn === 'distinct' ? 0 : null;
}
