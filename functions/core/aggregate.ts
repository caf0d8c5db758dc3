/**
 * The speed layer's aggregation of one batch of already-deduplicated records
 * into cell deltas, one per (view, dimension values, event-time bucket, arrival
 * window, shard). The arrival window keys each cell delta so the query can
 * take exactly the windows the published batch does not cover (invariant 2, docs/design.md).
 */
import { sketchOf } from './hll.ts';
import { combineViewStates, identity, lift, type MetricState, type ViewState } from './metrics.ts';
import { compareDims } from './query.ts';
import { numericValue, type RawRecord } from './record.ts';
import { bucketStart, windowStart } from './time.ts';
import { matchesFilter, type View } from './views.ts';

export interface CellDelta {
  readonly view: string;
  /** Dimension values in the view's `dimensions` order (canonical text, null when absent). */
  readonly dims: readonly (string | null)[];
  /** Event-time bucket start, ms. */
  readonly bucket: number;
  /** Arrival window start, ms. */
  readonly window: number;
  /** Kinesis shard id the records came from. */
  readonly shard: string;
  readonly state: ViewState;
  /** Records counted in this cell delta. */
  readonly records: number;
  /** Smallest and largest (padded) sequence number of those records. */
  readonly firstSeq: string;
  readonly lastSeq: string;
}

/** Dimension values of a record for a view, in the view's order. */
export function dimensionValues(view: View, r: RawRecord): (string | null)[] {
  return view.dimensions.map((d) => r.fields[d] ?? null);
}

/** The state one record contributes to a view. */
export function recordState(view: View, r: RawRecord): ViewState {
  return Object.fromEntries(
    Object.entries(view.metrics).map(([n, m]) => {
      if (m.fn === 'count') return [n, lift(m, null)];
      // distinct hashes the field's canonical text, as the SQL does (hll.ts).
      if (m.fn === 'distinct') return [n, lift(m, null, sketchOf(r.fields[m.field]))];
      return [n, lift(m, numericValue(r, m.field))];
    }),
  );
}

/**
 * What a retraction contributes (RawRecord.retract): the record's state with count and sum
 * negated, so that it cancels the copy's earlier contribution; min, max and sketches have no
 * inverse and are left out (identity): the copy it retracts carried the same event as the one that
 * counts instead (copies of an id are resends), so they already hold its values.
 */
export function retractionState(view: View, r: RawRecord): ViewState {
  const s = recordState(view, r);
  return Object.fromEntries(
    Object.entries(view.metrics).map(([n, m]) => {
      const neg: MetricState = { ...identity(m) };
      if (s[n]?.count != null) neg.count = s[n].count.neg();
      if (s[n]?.sum != null) neg.sum = s[n].sum.neg();
      return [n, neg];
    }),
  );
}

const cellDeltaKey = (d: Pick<CellDelta, 'view' | 'dims' | 'bucket' | 'window' | 'shard'>) =>
  JSON.stringify([d.view, d.dims, d.bucket, d.window, d.shard]);

/** Combines two cell deltas of the same key (as a retried or split batch would produce). */
export function combineCellDeltas(view: View, a: CellDelta, b: CellDelta): CellDelta {
  return {
    ...a,
    state: combineViewStates(view, a.state, b.state),
    records: a.records + b.records,
    // biome-ignore lint/complexity/useMathMinMax: padded sequence numbers are strings; Math.min would make them imprecise floats
    firstSeq: a.firstSeq < b.firstSeq ? a.firstSeq : b.firstSeq,
    // biome-ignore lint/complexity/useMathMinMax: as above
    lastSeq: a.lastSeq > b.lastSeq ? a.lastSeq : b.lastSeq,
  };
}

/**
 * Aggregates records for every view. The caller has removed duplicate ids;
 * records a view's filter does not match count nowhere for that view.
 * Output is sorted by view (declaration order), shard, window, bucket, dimensions.
 */
export function aggregate(views: readonly View[], records: readonly RawRecord[], windowMs: number): CellDelta[] {
  const out: CellDelta[] = [];
  for (const view of views) {
    const byKey = new Map<string, CellDelta>();
    for (const r of records) {
      if (!matchesFilter(view, r.fields)) continue;
      const one: CellDelta = {
        view: view.name,
        dims: dimensionValues(view, r),
        bucket: bucketStart(r.ts, view.grain),
        window: windowStart(r.arrival, windowMs),
        shard: r.shard,
        state: r.retract ? retractionState(view, r) : recordState(view, r),
        records: r.retract ? -1 : 1,
        firstSeq: r.seq,
        lastSeq: r.seq,
      };
      const key = cellDeltaKey(one);
      const seen = byKey.get(key);
      byKey.set(key, seen ? combineCellDeltas(view, seen, one) : one);
    }
    out.push(...sortCellDeltas([...byKey.values()]));
  }
  return out;
}

/**
 * Combines cell deltas with equal keys (e.g. of several batches) into one per key,
 * in the order `aggregate` returns. Cell deltas of views not in `views` are dropped.
 */
export function mergeCellDeltas(views: readonly View[], deltas: readonly CellDelta[]): CellDelta[] {
  const out: CellDelta[] = [];
  for (const view of views) {
    const byKey = new Map<string, CellDelta>();
    for (const d of deltas) {
      if (d.view !== view.name) continue;
      const key = cellDeltaKey(d);
      const seen = byKey.get(key);
      byKey.set(key, seen ? combineCellDeltas(view, seen, d) : d);
    }
    out.push(...sortCellDeltas([...byKey.values()]));
  }
  return out;
}

function sortCellDeltas(deltas: CellDelta[]): CellDelta[] {
  const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return deltas.sort((a, b) => cmp(a.shard, b.shard) || a.window - b.window || a.bucket - b.bucket || compareDims(a.dims, b.dims));
}
