/**
 * An independent oracle of GET /views/{name}: the response rows computed
 * straight from a list of unique events, with none of the code under test
 * (no monoids, merge, rollup or shaping from functions/core): a filter,
 * a bucket, a group, exact decimal sums (decimal.js), and the contract's order.
 */
import { Decimal as DecimalJs } from 'decimal.js';
import type { View } from '../../functions/core/views.ts';

// Enough digits that no sum or quotient rounds before the final conversion to a JSON number.
const Decimal = DecimalJs.clone({ precision: 80 });

export interface OracleSpec {
  readonly from: number;
  readonly to: number;
  readonly grain: 'minute' | 'hour' | 'day' | 'all';
  readonly groupBy: readonly string[];
  readonly filters?: Readonly<Record<string, string>>;
}

const STEP = { minute: 60_000, hour: 3_600_000, day: 86_400_000 } as const;
const text = (v: unknown): string | null => (v === undefined || v === null ? null : String(v));
const tsOf = (ts: unknown): number => (typeof ts === 'number' ? ts : /^\d+$/.test(String(ts)) ? Number(ts) : Date.parse(String(ts)));

type Row = { bucket: number; dims: (string | null)[]; events: Record<string, unknown>[] };

function cmp(a: Row, b: Row): number {
  if (a.bucket !== b.bucket) return a.bucket - b.bucket;
  for (let i = 0; i < a.dims.length; i++) {
    const x = a.dims[i] ?? null;
    const y = b.dims[i] ?? null;
    if (x === y) continue;
    if (x === null) return -1;
    if (y === null) return 1;
    return x < y ? -1 : 1;
  }
  return 0;
}

/** The rows the contract says GET /views/{view}?... answers, over these (already deduplicated) events. */
export function oracleRows(view: View, events: readonly Record<string, unknown>[], spec: OracleSpec): Record<string, unknown>[] {
  const groups = new Map<string, Row>();
  for (const e of events) {
    if (view.filter && !Object.entries(view.filter).every(([k, want]) => text(e[k]) === String(want))) continue;
    const bucket = Math.floor(tsOf(e.ts) / STEP[view.grain]) * STEP[view.grain];
    if (bucket < spec.from || bucket >= spec.to) continue;
    if (!Object.entries(spec.filters ?? {}).every(([d, v]) => text(e[d]) === v)) continue;
    const b = spec.grain === 'all' ? spec.from : Math.floor(bucket / STEP[spec.grain]) * STEP[spec.grain];
    const dims = spec.groupBy.map((d) => text(e[d]));
    const key = JSON.stringify([b, dims]);
    const row = groups.get(key) ?? { bucket: b, dims, events: [] };
    groups.set(key, row);
    row.events.push(e);
  }
  return [...groups.values()].sort(cmp).map((r) => {
    const out: Record<string, unknown> = { bucket: new Date(r.bucket).toISOString() };
    spec.groupBy.forEach((d, i) => {
      out[d] = r.dims[i];
    });
    for (const [name, m] of Object.entries(view.metrics)) {
      if (m.fn === 'count') {
        out[name] = r.events.length;
        continue;
      }
      const values = r.events
        .map((e) => e[m.field])
        .filter((v): v is number => typeof v === 'number')
        .map((v) => new Decimal(String(v)));
      const sum = values.reduce((a, v) => a.plus(v), new Decimal(0));
      out[name] =
        m.fn === 'sum'
          ? sum.toNumber()
          : values.length === 0
            ? null
            : m.fn === 'min'
              ? Decimal.min(...values).toNumber()
              : m.fn === 'max'
                ? Decimal.max(...values).toNumber()
                : sum.div(values.length).toNumber();
    }
    return out;
  });
}
