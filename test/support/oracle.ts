/**
 * An independent oracle of GET /views/{name}: the response rows computed
 * straight from a list of unique events, with none of the code under test
 * (no monoids, merge, rollup or shaping from functions/core): a filter,
 * a bucket, a group, exact decimal sums (decimal.js), and the contract's order.
 * And of the dedup rule (`countedCopies`): which copies of an event count.
 */
import { createHash } from 'node:crypto';
import { Decimal as DecimalJs } from 'decimal.js';
import { estimate, Sketch } from '../../functions/core/hll.ts';
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

/**
 * A `distinct` metric's answer: the HyperLogLog registers of the texts written from the definition
 * (MD5 of the UTF-8 text, its first 64 bits big-endian: index = the top 12, rank = 1 + leading zeros
 * of the other 52), estimated by core/hll.ts's formula.
 */
export function distinctEstimate(texts: readonly (string | null)[]): number {
  const regs = new Map<number, number>();
  for (const t of texts) {
    if (t === null) continue;
    const h = BigInt(`0x${createHash('md5').update(Buffer.from(t, 'utf8')).digest('hex').slice(0, 16)}`);
    const tail = h & ((1n << 52n) - 1n);
    let rank = 1;
    for (let bit = 51n; bit >= 0n && ((tail >> bit) & 1n) === 0n; bit--) rank++;
    const index = Number(h >> 52n);
    if (rank > (regs.get(index) ?? 0)) regs.set(index, rank);
  }
  return estimate(Sketch.of(regs));
}
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
      if (m.fn === 'distinct') {
        out[name] = distinctEstimate(r.events.map((e) => text(e[m.field])));
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

/** One copy of an event as the archive holds it: its id, where and when it arrived, and anything else. */
export interface Copy {
  readonly id: string;
  /** Arrival, epoch ms. */
  readonly arrival: number;
  readonly shard: string;
  /** Sequence number within the shard (digits; padded or not). */
  readonly seq: string;
}

/**
 * Sequence numbers as numbers: padded or not, 56 digits or more, compared exactly; a user
 * record of a KPL aggregate (`<seq>.<subseq>`) after its sequence number, in subseq order.
 */
function seqNumber(seq: string): bigint {
  const m = /^(\d+)(?:\.(\d+))?$/.exec(seq);
  if (!m) throw new Error(`a sequence number is digits, received ${JSON.stringify(seq)}`);
  return BigInt(m[1]!) * 10_000_000n + (m[2] === undefined ? 0n : BigInt(m[2]) + 1n);
}

/**
 * The copies that count under the dedup rule with horizon H (ms), written
 * straight from the contract, independently of the SQL and of the speed
 * layer: sort all copies by (arrival, shard, seq); a copy counts iff it is the
 * first of its id, or the previous copy of its id (counted or not) arrived
 * more than H before it. Returned in that order.
 */
export function countedCopies<T extends Copy>(copies: readonly T[], horizonMs: number): T[] {
  const ordered = [...copies].sort((a, b) => {
    if (a.arrival !== b.arrival) return a.arrival - b.arrival;
    if (a.shard !== b.shard) return a.shard < b.shard ? -1 : 1;
    const x = seqNumber(a.seq);
    const y = seqNumber(b.seq);
    return x < y ? -1 : x > y ? 1 : 0;
  });
  const previous = new Map<string, number>();
  const counted: T[] = [];
  for (const c of ordered) {
    const before = previous.get(c.id);
    if (before === undefined || c.arrival - before > horizonMs) counted.push(c);
    previous.set(c.id, c.arrival);
  }
  return counted;
}
