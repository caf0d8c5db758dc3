/**
 * Query shaping of GET /views/{name} (docs/api.md): parameters,
 * the merge of the batch view with the speed cells it does not cover, and the
 * rows of the response. Pure: the query handler reads the rows and hands them here.
 */
import { decimalToNumber } from './decimal.ts';
import { combineViewStates, finalizeViewState, type ViewState } from './metrics.ts';
import { GRAIN_MS, grainRank, iso, parseTime, QUERY_GRAINS, type QueryGrain, rollupBucket } from './time.ts';
import type { View } from './views.ts';

/** Longest range one query may cover. */
export const MAX_RANGE_DAYS = 366;
/** Range when `from` is not given: the 24 hours before `to`. */
export const DEFAULT_RANGE_MS = 24 * 3_600_000;
const DAY_MS = 86_400_000;

/** The parameters the contract names; any other parameter filters a dimension. */
export const QUERY_PARAMS = ['from', 'to', 'grain', 'groupBy', 'parts'] as const;

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
}

export interface QueryError {
  /** `from`, `to`, `grain`, `groupBy`, or the unknown parameter's name. */
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
  return { from, to, grain, groupBy, filters, ...(partsText === '1' || partsText === 'true' ? { parts: true } : {}) };
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

function combineInto(view: View, acc: Map<string, Row>, bucket: number, dims: readonly (string | null)[], state: ViewState): void {
  const key = rowKey(bucket, dims);
  const seen = acc.get(key);
  acc.set(key, { bucket, dims, state: seen ? combineViewStates(view, seen.state, state) : state });
}

/**
 * The merged view: batch rows (arrival < cutoff) plus the speed cells of
 * windows >= cutoff, combined per (bucket, dimension values). With no published
 * batch (`cutoff` null) every speed cell counts.
 */
export function mergeRows(view: View, batchRows: readonly Row[], speedRows: readonly SpeedRow[], cutoff: number | null): Row[] {
  const acc = new Map<string, Row>();
  for (const r of batchRows) combineInto(view, acc, r.bucket, r.dims, r.state);
  for (const d of speedRows) {
    if (cutoff === null || d.window >= cutoff) combineInto(view, acc, d.bucket, d.dims, d.state);
  }
  return sortRows([...acc.values()]);
}

/**
 * Keeps the rows that pass the dimension filters and whose bucket is in
 * [from, to), rolls their buckets up to `grain` and groups them by `groupBy`:
 * the returned rows' `dims` are the `groupBy` values.
 */
export function rollupRows(view: View, spec: QuerySpec, rows: readonly Row[]): Row[] {
  const filters = Object.entries(spec.filters).map(([d, v]) => [view.dimensions.indexOf(d), v] as const);
  const groupIdx = spec.groupBy.map((d) => view.dimensions.indexOf(d));
  const acc = new Map<string, Row>();
  for (const r of rows) {
    if (r.bucket < spec.from || r.bucket >= spec.to) continue;
    if (!filters.every(([i, v]) => (r.dims[i] ?? null) === v)) continue;
    combineInto(
      view,
      acc,
      rollupBucket(r.bucket, spec.grain, spec.from),
      groupIdx.map((i) => r.dims[i] ?? null),
      r.state,
    );
  }
  return sortRows([...acc.values()]);
}

/** The response rows: rolled up and grouped, metrics finalized to JSON numbers (or null). */
export function shapeRows(view: View, spec: QuerySpec, rows: readonly Row[]): ResponseRow[] {
  return rollupRows(view, spec, rows).map((r) => {
    const out: ResponseRow = { bucket: iso(r.bucket) };
    spec.groupBy.forEach((d, i) => {
      out[d] = r.dims[i] ?? null;
    });
    for (const [metric, value] of Object.entries(finalizeViewState(view, r.state)))
      out[metric] = value === null ? null : decimalToNumber(value);
    return out;
  });
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
  const rows = shapeRows(view, spec, mergeRows(view, batchRows, speedRows, cutoff));
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
  const batch = index(shapeRows(view, spec, mergeRows(view, batchRows, [], cutoff)));
  const speed = index(shapeRows(view, spec, mergeRows(view, [], speedRows, cutoff)));
  return rows.map((r) => ({ ...r, parts: { batch: metricsOnly(batch.get(key(r))), speed: metricsOnly(speed.get(key(r))) } }));
}

/** A metric's value over no events: 0 for count and sum, null for the others. */
function emptyValue(view: View, metric: string): number | null {
  const fn = view.metrics[metric]?.fn;
  return fn === 'count' || fn === 'sum' ? 0 : null;
}
