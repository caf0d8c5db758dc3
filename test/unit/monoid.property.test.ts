/**
 * Property tests of the view algebra (issue 3, properties 2 and 3, the pure
 * variant): the monoids, rollup, aggregate over split batches, and the merge of
 * a batch view with speed deltas at a window-aligned cutoff, against an oracle
 * written here from the events alone (scaled BigInt arithmetic, no decimal.js,
 * no code of the core; `distinct`: the registers from MD5 with BigInt, the
 * estimate by hll.ts's formula over them, so the sketches must match register
 * for register).
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { aggregate, type CellDelta, mergeCellDeltas } from '../../functions/core/aggregate.ts';
import { Decimal } from '../../functions/core/decimal.ts';
import { isBodyError, validateEvents } from '../../functions/core/events.ts';
import { estimate, Sketch, sketchOf } from '../../functions/core/hll.ts';
import { combine, identity, lift, type MetricState, stateToColumns } from '../../functions/core/metrics.ts';
import { isQueryError, mergeRows, parseQuery, type QuerySpec, type Row, rollupRows, shapeRows } from '../../functions/core/query.ts';
import { type RawRecord, toRawRecord } from '../../functions/core/record.ts';
import type { Grain, QueryGrain } from '../../functions/core/time.ts';
import { avg, count, distinct, type Metric, max, min, sum, type View, view } from '../../functions/core/views.ts';

const RUNS = { numRuns: 200 };
const MS: Record<Grain, number> = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };
const T0 = Date.UTC(2024, 2, 10);
const SCALE = 10n ** 9n;

// ---------- generators ----------

/** An exact decimal input: mantissa x 10^-scale, at most 15 significant digits and 9 fractional digits. */
interface Amount {
  readonly m: bigint;
  readonly s: number;
}
const amountArb: fc.Arbitrary<Amount> = fc.record({
  m: fc.oneof(fc.bigInt({ min: -999n, max: 999n }), fc.bigInt({ min: -(10n ** 15n) + 1n, max: 10n ** 15n - 1n })),
  s: fc.integer({ min: 0, max: 9 }),
});
const amountNumber = (a: Amount) => Number(`${a.m}e-${a.s}`);
const amountScaled = (a: Amount) => a.m * 10n ** BigInt(9 - a.s);

const metricArb = (field: fc.Arbitrary<string>): fc.Arbitrary<Metric> =>
  fc.oneof(
    fc.constant(count()),
    field.map(sum),
    field.map(min),
    field.map(max),
    field.map(avg),
    // distinct reads any field's canonical text: numbers, strings, null
    fc.constantFrom('amount', 'country', 'page').map(distinct),
  );

const viewArb: fc.Arbitrary<View> = fc
  .record({
    filter: fc.constantFrom(undefined, { type: 'purchase' }, { type: 'page_view' }),
    dimensions: fc.shuffledSubarray(['type', 'country', 'page']),
    grain: fc.constantFrom<Grain>('minute', 'hour', 'day'),
    metrics: fc.uniqueArray(fc.tuple(fc.constantFrom('n', 's', 'lo', 'hi', 'mean', 'x'), metricArb(fc.constantFrom('amount', 'load'))), {
      minLength: 1,
      maxLength: 5,
      selector: ([name]) => name,
    }),
  })
  .map(({ filter, dimensions, grain, metrics }) =>
    view({ name: 'v', ...(filter && { filter }), dimensions, grain, metrics: Object.fromEntries(metrics) }),
  );

interface GenEvent {
  readonly idIndex: number;
  readonly type: string;
  readonly country: string | null | undefined;
  readonly page: string | undefined;
  readonly amount: Amount | null | undefined;
  readonly load: Amount | undefined;
  /** Event time, ms after T0 (up to 3 days: many events arrive late). */
  readonly tsOffset: number;
  readonly tsAsText: boolean;
  /** Gap to the previous arrival, ms (0: the same PutRecords). */
  readonly gap: number;
}
const eventArb: fc.Arbitrary<GenEvent> = fc.record({
  idIndex: fc.integer({ min: 0, max: 25 }),
  type: fc.constantFrom('purchase', 'page_view', 'click'),
  country: fc.constantFrom('DE', 'FR', 'ü', null, undefined),
  page: fc.constantFrom('/a', '/b', undefined),
  amount: fc.option(fc.option(amountArb, { nil: null }), { nil: undefined }),
  load: fc.option(amountArb, { nil: undefined }),
  // half the events at a few hot times, so buckets (and delta keys) collide often
  tsOffset: fc.oneof(
    fc.integer({ min: 0, max: 3 * 86_400_000 - 1 }),
    fc.integer({ min: 0, max: 5 }).map((i) => i * 7_200_000 + 1234),
  ),
  tsAsText: fc.boolean(),
  gap: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 10 * 60_000 })),
});

/** An event as a producer sends it, and the record each copy becomes on the stream. */
interface Arrived {
  readonly event: Record<string, unknown>;
  readonly gen: GenEvent;
  readonly ts: number;
  readonly arrival: number;
  readonly record: RawRecord;
}

/** Puts events on a two-shard stream in order: partition key = id, so all copies of an id share a shard. */
function stream(events: readonly GenEvent[]): Arrived[] {
  const seqs = [0n, 0n];
  let arrival = T0 + 3 * 86_400_000;
  return events.map((gen) => {
    arrival += gen.gap;
    const id = `id-${gen.idIndex}`;
    const shard = gen.idIndex % 2;
    seqs[shard]! += 1n + BigInt(gen.idIndex); // strictly increasing per shard, with gaps
    const ts = T0 + gen.tsOffset;
    const event: Record<string, unknown> = { id, type: gen.type, ts: gen.tsAsText ? new Date(ts).toISOString() : ts };
    if (gen.country !== undefined) event.country = gen.country;
    if (gen.page !== undefined) event.page = gen.page;
    if (gen.amount !== undefined) event.amount = gen.amount === null ? null : amountNumber(gen.amount);
    if (gen.load !== undefined) event.load = amountNumber(gen.load);
    const wire = JSON.parse(JSON.stringify(event)) as unknown;
    return {
      event,
      gen,
      ts,
      arrival,
      record: toRawRecord(wire, arrival, `shardId-00000000000${shard}`, String(4960n * 10n ** 50n + seqs[shard]!)),
    };
  });
}

/** What the speed layer's dedup table does: the first arrival of each id wins. */
function firstArrivals(all: readonly Arrived[]): Arrived[] {
  const seen = new Set<string>();
  return all.filter((a) => !seen.has(a.record.id) && seen.add(a.record.id) !== undefined);
}

/** Splits a list into consecutive chunks at the given cut points. */
function chunks<T>(list: readonly T[], cuts: readonly number[]): T[][] {
  const points = [...new Set(cuts.map((c) => Math.min(c, list.length)))].sort((a, b) => a - b);
  const out: T[][] = [];
  let start = 0;
  for (const p of [...points, list.length]) {
    out.push(list.slice(start, p));
    start = p;
  }
  return out;
}

const plainRows = (v: View, rows: readonly Row[]) =>
  rows.map((r) => ({ bucket: r.bucket, dims: r.dims, state: stateToColumns(v, r.state) }));
const plainDeltas = (v: View, deltas: readonly CellDelta[]) => deltas.map((d) => ({ ...d, state: stateToColumns(v, d.state) }));
/** Batch-view rows: deltas with their windows and shards combined away. */
const asRows = (v: View, deltas: readonly CellDelta[]): Row[] => mergeRows(v, [], deltas, null);

// ---------- the oracle ----------

/** A value's HLL register: the top 12 of the first 64 bits of MD5 (big-endian), 1 + leading zeros of the other 52. */
function oracleRegister(text: string): [number, number] {
  const h = BigInt(`0x${createHash('md5').update(Buffer.from(text, 'utf8')).digest('hex').slice(0, 16)}`);
  const tail = h & ((1n << 52n) - 1n);
  let rank = 1;
  for (let bit = 51n; bit >= 0n && ((tail >> bit) & 1n) === 0n; bit--) rank++;
  return [Number(h >> 52n), rank];
}

type OracleValue = number | null;
const scaledText = (x: bigint) => {
  const neg = x < 0n;
  const a = neg ? -x : x;
  const frac = (a % SCALE).toString().padStart(9, '0').replace(/0+$/, '');
  return `${neg ? '-' : ''}${a / SCALE}${frac ? `.${frac}` : ''}`;
};

/** Response rows computed straight from the unique events (first arrival wins). */
function oracle(v: View, spec: QuerySpec, all: readonly Arrived[]): Record<string, OracleValue | string>[] {
  const seen = new Set<string>();
  const groups = new Map<string, { bucket: number; dims: (string | null)[]; events: GenEvent[]; arrived: Arrived[] }>();
  for (const a of all) {
    const id = a.event.id as string;
    if (seen.has(id)) continue;
    seen.add(id);
    const text = (f: string): string | null => {
      const x = a.event[f];
      return x === undefined || x === null ? null : String(x);
    };
    if (Object.entries(v.filter ?? {}).some(([f, want]) => text(f) !== String(want))) continue;
    const b = a.ts - (a.ts % MS[v.grain]);
    if (b < spec.from || b >= spec.to) continue;
    if (Object.entries(spec.filters).some(([d, want]) => text(d) !== want)) continue;
    const bucket = spec.grain === 'all' ? spec.from : b - (b % MS[spec.grain as Grain]);
    const dims = spec.groupBy.map(text);
    const key = JSON.stringify([bucket, dims]);
    const g = groups.get(key) ?? { bucket, dims, events: [], arrived: [] };
    g.events.push(a.gen);
    g.arrived.push(a);
    groups.set(key, g);
  }
  const out = [...groups.values()].map((g) => {
    const row: Record<string, OracleValue | string> = { bucket: new Date(g.bucket).toISOString() };
    spec.groupBy.forEach((d, i) => {
      row[d] = g.dims[i]!;
    });
    for (const [name, m] of Object.entries(v.metrics)) {
      if (m.fn === 'count') {
        row[name] = g.events.length;
        continue;
      }
      if (m.fn === 'distinct') {
        // The registers of the distinct texts, from MD5 with BigInt; the estimate is hll.ts's formula over them.
        const texts = new Set(g.arrived.flatMap((a) => (a.event[m.field] == null ? [] : [String(a.event[m.field])])));
        const regs = new Map<number, number>();
        for (const t of texts) {
          const [i, r] = oracleRegister(t);
          if (r > (regs.get(i) ?? 0)) regs.set(i, r);
        }
        row[name] = estimate(Sketch.of(regs));
        continue;
      }
      const values = g.events
        .map((e) => (m.field === 'amount' ? e.amount : e.load))
        .filter((x): x is Amount => x != null)
        .map(amountScaled);
      const total = values.reduce((s, x) => s + x, 0n);
      const sorted = [...values].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
      if (m.fn === 'sum') row[name] = Number(scaledText(total));
      if (m.fn === 'min') row[name] = sorted.length ? Number(scaledText(sorted[0]!)) : null;
      if (m.fn === 'max') row[name] = sorted.length ? Number(scaledText(sorted[sorted.length - 1]!)) : null;
      if (m.fn === 'avg') row[name] = values.length ? Number(scaledText(total)) / values.length : null;
    }
    return { row, bucket: g.bucket, dims: g.dims };
  });
  const cmpDim = (x: string | null, y: string | null) => (x === y ? 0 : x === null ? -1 : y === null ? 1 : x < y ? -1 : 1);
  out.sort((p, q) => p.bucket - q.bucket || p.dims.reduce((c, x, i) => c || cmpDim(x, q.dims[i]!), 0));
  return out.map((o) => o.row);
}

/** Rows equal, with avg compared to 12 digits (the oracle divides rounded doubles, the core exact decimals). */
function expectSameRows(v: View, actual: readonly Record<string, unknown>[], expected: readonly Record<string, unknown>[]) {
  const avgs = Object.entries(v.metrics)
    .filter(([, m]) => m.fn === 'avg')
    .map(([n]) => n);
  const strip = (rows: readonly Record<string, unknown>[]) =>
    rows.map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => !avgs.includes(k))));
  expect(strip(actual)).toEqual(strip(expected));
  actual.forEach((r, i) => {
    for (const n of avgs) {
      const a = r[n] as number | null;
      const e = expected[i]![n] as number | null;
      if (e === null) expect(a).toBeNull();
      else expect(Math.abs((a as number) - e)).toBeLessThanOrEqual(1e-12 * Math.max(1, Math.abs(e)));
    }
  });
}

// ---------- properties ----------

describe('metric monoids', () => {
  const stateArb = (m: Metric): fc.Arbitrary<MetricState> =>
    fc
      .array(fc.option(amountArb, { nil: null }), { maxLength: m.fn === 'distinct' ? 40 : 4 })
      .map((xs) =>
        xs
          .map((x) =>
            m.fn === 'distinct'
              ? lift(m, null, sketchOf(x === null ? null : `${x.m}e-${x.s}`))
              : lift(m, x === null ? null : new Decimal(`${x.m}e-${x.s}`)),
          )
          .reduce((a, b) => combine(m, a, b), identity(m)),
      );
  const text = (s: MetricState) =>
    Object.fromEntries(Object.entries(s).map(([k, x]) => [k, x == null ? null : x instanceof Sketch ? x.toText() : x.toFixed()]));

  for (const m of [count(), sum('a'), min('a'), max('a'), avg('a'), distinct('a')]) {
    it(`${m.fn}: associative, commutative, identity is a unit`, () => {
      fc.assert(
        fc.property(stateArb(m), stateArb(m), stateArb(m), (a, b, c) => {
          expect(text(combine(m, combine(m, a, b), c))).toEqual(text(combine(m, a, combine(m, b, c))));
          expect(text(combine(m, a, b))).toEqual(text(combine(m, b, a)));
          expect(text(combine(m, identity(m), a))).toEqual(text(a));
          expect(text(combine(m, a, identity(m)))).toEqual(text(a));
        }),
        RUNS,
      );
    });
  }
});

describe('merge and rollup of rows', () => {
  const rowsArb = fc.record({
    v: viewArb,
    a: fc.array(eventArb, { maxLength: 30 }),
    b: fc.array(eventArb, { maxLength: 30 }),
    seed: fc.integer(),
  });
  const rowsOf = (v: View, events: readonly GenEvent[]) =>
    asRows(
      v,
      aggregate(
        [v],
        stream(events).map((x) => x.record),
        60_000,
      ),
    );
  const specAt = (v: View, grain: QueryGrain, groupBy = v.dimensions.join(',')): QuerySpec => {
    const s = parseQuery(v, { from: '2024-03-09T00:00:00Z', to: '2024-03-14T00:00:00Z', grain, groupBy }, T0);
    if (isQueryError(s)) throw new Error(s.message);
    return s;
  };

  it('merge is associative and commutative', () => {
    fc.assert(
      fc.property(rowsArb, ({ v, a, b, seed }) => {
        const A = rowsOf(v, a);
        const B = rowsOf(v, b);
        const whole = plainRows(v, mergeRows(v, [...A, ...B], [], null));
        expect(plainRows(v, mergeRows(v, [...mergeRows(v, A, [], null), ...B], [], null))).toEqual(whole);
        expect(plainRows(v, mergeRows(v, [...B, ...A], [], null))).toEqual(whole);
        const shuffled = [...A, ...B].map((r, i) => ({ r, k: (i * 7919 + seed) % 101 })).sort((x, y) => x.k - y.k);
        expect(
          plainRows(
            v,
            mergeRows(
              v,
              shuffled.map((x) => x.r),
              [],
              null,
            ),
          ),
        ).toEqual(whole);
      }),
      RUNS,
    );
  });

  it('rollup composes (minute -> hour -> day = minute -> day) and distributes over merge', () => {
    fc.assert(
      fc.property(rowsArb, fc.constantFrom<QueryGrain>('hour', 'day', 'all'), ({ v, a, b }, coarse) => {
        const A = rowsOf(v, a);
        const B = rowsOf(v, b);
        const all = mergeRows(v, [...A, ...B], [], null);
        const direct = plainRows(v, rollupRows(v, specAt(v, 'day'), all));
        const viaHour = v.grain === 'day' ? direct : plainRows(v, rollupRows(v, specAt(v, 'day'), rollupRows(v, specAt(v, 'hour'), all)));
        expect(viaHour).toEqual(direct);
        const grain = coarse === 'hour' && v.grain === 'day' ? 'day' : coarse;
        const s = specAt(v, grain);
        expect(plainRows(v, mergeRows(v, [...rollupRows(v, s, A), ...rollupRows(v, s, B)], [], null))).toEqual(
          plainRows(v, rollupRows(v, s, all)),
        );
      }),
      RUNS,
    );
  });
});

describe('aggregate', () => {
  it('over a concatenation equals the combined aggregates of the parts, split anywhere, in any order', () => {
    fc.assert(
      fc.property(
        fc.array(viewArb, { minLength: 1, maxLength: 3 }),
        fc.array(eventArb, { maxLength: 50 }),
        fc.array(fc.nat(50), { maxLength: 4 }),
        (vs, events, cuts) => {
          const views = vs.map((v, i) => ({ ...v, name: `v${i}` }));
          const records = firstArrivals(stream(events)).map((a) => a.record);
          const whole = aggregate(views, records, 60_000);
          const parts = chunks(records, cuts)
            .reverse()
            .flatMap((c) => aggregate(views, c, 60_000));
          for (const v of views) {
            expect(plainDeltas(v, mergeCellDeltas([v], parts))).toEqual(
              plainDeltas(
                v,
                whole.filter((d) => d.view === v.name),
              ),
            );
          }
        },
      ),
      RUNS,
    );
  });
});

describe('batch view + speed deltas at a window-aligned cutoff = the oracle', () => {
  // from and to often on minute, hour or day boundaries, so bucket starts meet both edges of [from, to)
  const unitArb = fc.constantFrom(1, 60_000, 3_600_000, 86_400_000);
  const queryArb = fc.record({
    fromOffset: fc.tuple(fc.integer({ min: -86_400_000, max: 3 * 86_400_000 }), unitArb).map(([x, u]) => Math.floor(x / u) * u),
    span: fc.tuple(fc.integer({ min: 1, max: 5 * 86_400_000 }), unitArb).map(([x, u]) => Math.max(u, Math.floor(x / u) * u)),
    grain: fc.constantFrom<QueryGrain>('minute', 'hour', 'day', 'all'),
    groupBy: fc.option(fc.subarray(['type', 'country', 'page']), { nil: undefined }),
    filter: fc.option(fc.tuple(fc.constantFrom('type', 'country', 'page'), fc.constantFrom('purchase', 'click', 'DE', 'ü', '/a')), {
      nil: undefined,
    }),
  });

  it('for random views, events with duplicate ids, late events, missing fields, and speed batches', () => {
    fc.assert(
      fc.property(
        viewArb,
        fc.array(eventArb, { maxLength: 60 }),
        fc.constantFrom(60_000, 300_000),
        fc.option(fc.nat(60), { nil: undefined }),
        fc.array(fc.nat(60), { maxLength: 5 }),
        queryArb,
        (v, events, windowMs, cutAt, batchCuts, q) => {
          const all = stream(events);
          // ingest accepts every generated event
          const checked = validateEvents(
            all.map((a) => a.event),
            [v],
          );
          if (events.length > 0) expect(!isBodyError(checked) && checked.rejected).toEqual([]);

          // the cutoff: none published, or a window boundary at or before some arrival (or past them all)
          const cutoff =
            cutAt === undefined
              ? null
              : Math.floor((all[Math.min(cutAt, all.length - 1)]?.arrival ?? T0 + 3 * 86_400_000) / windowMs) * windowMs +
                (cutAt > 55 ? windowMs : 0);
          const unique = firstArrivals(all);
          const batchRows =
            cutoff === null
              ? []
              : asRows(
                  v,
                  aggregate(
                    [v],
                    unique.filter((a) => a.arrival < cutoff).map((a) => a.record),
                    windowMs,
                  ),
                );
          // the speed layer has seen every record, in batches; the merge must take only windows >= cutoff
          const deltas = chunks(unique, batchCuts).flatMap((c) =>
            aggregate(
              [v],
              c.map((a) => a.record),
              windowMs,
            ),
          );
          const merged = mergeRows(v, batchRows, deltas, cutoff);

          const from = T0 + q.fromOffset;
          const params: Record<string, string | undefined> = {
            from: new Date(from).toISOString(),
            to: new Date(from + q.span).toISOString(),
            grain: q.grain === 'minute' || (q.grain === 'hour' && v.grain === 'day') ? v.grain : q.grain,
            groupBy: q.groupBy?.filter((d) => v.dimensions.includes(d)).join(','),
          };
          if (q.filter && v.dimensions.includes(q.filter[0])) params[q.filter[0]] = q.filter[1];
          const spec = parseQuery(v, params, T0);
          if (isQueryError(spec)) throw new Error(`${spec.field}: ${spec.message}`);

          expectSameRows(v, shapeRows(v, spec, merged), oracle(v, spec, all));
        },
      ),
      RUNS,
    );
  });
});
