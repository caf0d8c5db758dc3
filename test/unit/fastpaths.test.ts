/**
 * The per-row fast paths of the query and the batch loader (issues 19 and 21) give bit for bit what
 * the general code gives: decimals as doubles or text (decimal.ts), combining and finalizing states
 * (metrics.ts), sketches kept as their text (hll.ts: reading, merging, errors), the packed block rows
 * (blocks.ts) and the query's one-pass rollup (query.ts). Each is checked against the slow path,
 * written here from decimal.js and the definitions, on random inputs: small and huge values,
 * negatives, fractions and zeros.
 */
import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type BlockRow, decodeBlock, encodeBlocks } from '../../functions/core/blocks.ts';
import { Decimal, decimalFromText, decimalOfInteger, decimalText, decimalToNumber, smallInteger } from '../../functions/core/decimal.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import {
  HLL_MAX_RANK,
  HLL_REGISTERS,
  mergeAll,
  mergeSketches,
  parseSketch,
  parseSqlSketch,
  Sketch,
  sqlSketchText,
} from '../../functions/core/hll.ts';
import { BLOCK_MAX_BYTES, blockStart, dimsKey, pad13 } from '../../functions/core/keys.ts';
import {
  columnFromSql,
  combine,
  combineAllViewStates,
  combineColumnTexts,
  finalize,
  finalizeNumber,
  type MetricState,
  stateColumns,
  stateFromColumns,
  stateToColumns,
  type ViewState,
} from '../../functions/core/metrics.ts';
import {
  isQueryError,
  mergeRows,
  parseQuery,
  type QuerySpec,
  type Row,
  rollupRows,
  type SpeedRow,
  shapeResponse,
  shapeRows,
  sortRows,
} from '../../functions/core/query.ts';
import { rollupBucket } from '../../functions/core/time.ts';
import { avg, count, distinct, max, min, sum, view } from '../../functions/core/views.ts';

/** Decimal texts: integers of 1 to 38 digits (either sign, zeros), fractions up to 9 places, leading/trailing zeros. */
const decimalTextArb = fc.oneof(
  fc.integer({ min: -10_000_000, max: 10_000_000 }).map(String),
  fc.bigInt({ min: -(10n ** 38n) + 1n, max: 10n ** 38n - 1n }).map(String),
  fc.bigInt({ min: -(2n ** 54n), max: 2n ** 54n }).map(String),
  fc
    .tuple(
      fc.bigInt({ min: -(10n ** 29n) + 1n, max: 10n ** 29n - 1n }),
      fc.integer({ min: 0, max: 999_999_999 }),
      fc.integer({ min: 1, max: 9 }),
    )
    .map(
      ([i, f, places]) =>
        `${i < 0n || (i === 0n && f % 2 === 1) ? '-' : ''}${i < 0n ? -i : i}.${String(f).padStart(9, '0').slice(0, places)}`,
    ),
  fc.constantFrom(
    '0',
    '-0',
    '0.0',
    '-0.000000000',
    '007',
    '1e7',
    '1E+21',
    '10000000',
    '9999999',
    '100000000000000',
    '999999999999999',
    '1000000000000000',
  ),
);

describe('decimal fast paths', () => {
  it('columnFromSql reads an SQL decimal as decimalText(new Decimal(text)) does', () => {
    const sqlText = fc.oneof(
      decimalTextArb,
      fc.tuple(decimalTextArb, fc.integer({ min: 1, max: 9 })).map(([t, z]) => (t.includes('.') ? t : `${t}.${'0'.repeat(z)}`)),
      fc.constantFrom('0.000000000', '-0.000000000', '5.000000000', '-5.000000000', '10.000000000', '1.500000000', '00.0', '-00', '1.'),
    );
    fc.assert(
      fc.property(sqlText, (t) => {
        let want: string | Error;
        try {
          want = decimalText(new Decimal(t));
        } catch (e) {
          want = e as Error;
        }
        if (want instanceof Error) expect(() => columnFromSql('sum', t)).toThrow();
        else for (const c of ['count', 'sum', 'min', 'max'] as const) expect(columnFromSql(c, t)).toBe(want);
      }),
      { numRuns: 2000 },
    );
  });

  it('smallInteger is the value of an integer below 10^15, else undefined; decimalToNumber is toNumber', () => {
    fc.assert(
      fc.property(decimalTextArb, (t) => {
        const d = new Decimal(t);
        const n = smallInteger(d);
        const want = d.toNumber();
        if (d.isInteger() && d.abs().lt(1e15)) expect(Object.is(n, want)).toBe(true);
        else expect(n).toBeUndefined();
        expect(Object.is(decimalToNumber(d), want)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('decimalOfInteger is new Decimal(n), and the shared small ones stay what they are after arithmetic on them', () => {
    fc.assert(
      fc.property(fc.oneof(fc.integer({ min: -20, max: 12_000 }), fc.constant(-0), fc.integer()), (n) => {
        const d = decimalOfInteger(n);
        expect(d.toFixed()).toBe(new Decimal(n).toFixed());
        expect(Object.is(d.toNumber(), n)).toBe(true);
        d.plus(7).neg().abs().times(3).div(7).minus(d).toFixed();
        new Decimal(0).plus(d).toFixed();
        expect(Object.is(decimalOfInteger(n).toNumber(), n)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  it('decimalFromText is new Decimal(text) and decimalText is toFixed, digit for digit', () => {
    fc.assert(
      fc.property(decimalTextArb, (t) => {
        const slow = new Decimal(t);
        const fast = decimalFromText(t);
        expect(fast.eq(slow)).toBe(true);
        expect(fast.toFixed()).toBe(slow.toFixed());
        expect(decimalText(slow)).toBe(slow.toFixed());
        expect(decimalText(fast)).toBe(slow.toFixed());
      }),
      { numRuns: 2000 },
    );
  });
});

const v = view({
  name: 'fast',
  dimensions: ['k'],
  grain: 'minute',
  metrics: { n: count(), s: sum('x'), lo: min('x'), hi: max('x'), a: avg('x'), u: distinct('x') },
});
const sketchArb = fc.option(
  fc
    .array(fc.tuple(fc.integer({ min: 0, max: HLL_REGISTERS - 1 }), fc.integer({ min: 1, max: HLL_MAX_RANK })), { maxLength: 1600 })
    .map((regs) => Sketch.of(regs)),
  { nil: null },
);
/** A state as the batch and the query read it (from its columns), and as the speed layer builds it (Decimals, map sketches). */
const stateArb = fc
  .record({
    n: decimalTextArb,
    s: decimalTextArb,
    lo: fc.option(decimalTextArb),
    hi: fc.option(decimalTextArb),
    ac: decimalTextArb,
    u: sketchArb,
  })
  .chain((c) =>
    fc.boolean().map((fromText): ViewState => {
      const s: ViewState = {
        n: { count: new Decimal(c.n) },
        s: { sum: new Decimal(c.s) },
        lo: { min: c.lo === null ? null : new Decimal(c.lo) },
        hi: { max: c.hi === null ? null : new Decimal(c.hi) },
        a: { sum: new Decimal(c.s), count: new Decimal(c.ac) },
        u: { hll: c.u },
      };
      return fromText ? stateFromColumns(v, stateToColumns(v, s)) : s;
    }),
  );

/** The general path: decimal.js arithmetic, each partial sum checked, as combine did before its fast path. */
function slowCombine(fn: string, a: MetricState, b: MetricState): Record<string, string | null> {
  const add = (c: 'count' | 'sum') => (a[c] ?? new Decimal(0)).plus(b[c] ?? new Decimal(0));
  const text = (d: Decimal | null | undefined) => (d == null ? null : d.toFixed());
  if (fn === 'count') return { count: text(add('count')) };
  if (fn === 'sum') return { sum: text(add('sum')) };
  if (fn === 'avg') return { sum: text(add('sum')), count: text(add('count')) };
  throw new Error(fn);
}

describe('metric fast paths', () => {
  it('combine adds counts and sums as decimal.js does, and still refuses an overflow', () => {
    fc.assert(
      fc.property(stateArb, stateArb, (x, y) => {
        for (const [name, fn] of [
          ['n', 'count'],
          ['s', 'sum'],
          ['a', 'avg'],
        ] as const) {
          let want: Record<string, string | null> | 'overflow';
          try {
            want = slowCombine(fn, x[name]!, y[name]!);
            if (Object.values(want).some((t) => t !== null && new Decimal(t).abs().gte(new Decimal(10).pow(29)))) want = 'overflow';
          } catch {
            want = 'overflow';
          }
          if (want === 'overflow') expect(() => combine(v.metrics[name]!, x[name]!, y[name]!)).toThrow(/overflows/);
          else {
            const got = combine(v.metrics[name]!, x[name]!, y[name]!);
            expect(Object.fromEntries(Object.entries(got).map(([k, d]) => [k, d === null ? null : (d as Decimal).toFixed()]))).toEqual(
              want,
            );
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  it('combineAllViewStates equals the pairwise fold; finalizeNumber equals decimalToNumber(finalize)', () => {
    // States as they exist: every value within DECIMAL(38, 9) (each was made by checked arithmetic). An input out of
    // range alone is refused by the one and not by the other, as neither checks its inputs: not a case to compare.
    const limit = new Decimal('1e29');
    const valid = (s: ViewState) =>
      Object.values(s).every((m) => Object.values(m).every((x) => !(x instanceof Decimal) || x.abs().lt(limit)));
    fc.assert(
      fc.property(fc.array(stateArb.filter(valid), { minLength: 1, maxLength: 6 }), (states) => {
        let pairwise: ViewState | 'overflow';
        try {
          pairwise = states.reduce((a, b) =>
            Object.fromEntries(Object.entries(v.metrics).map(([n, m]) => [n, combine(m, a[n]!, b[n]!)] as const)),
          );
        } catch {
          pairwise = 'overflow';
        }
        if (pairwise === 'overflow') {
          expect(() => combineAllViewStates(v, states)).toThrow(/overflows/);
          return;
        }
        const all = combineAllViewStates(v, states);
        expect(stateToColumns(v, all)).toEqual(stateToColumns(v, pairwise));
        for (const [n, m] of Object.entries(v.metrics)) {
          const slow = finalize(m, all[n]!);
          expect(Object.is(finalizeNumber(m, all[n]!), slow === null ? null : slow.toNumber())).toBe(true);
        }
      }),
      { numRuns: 400 },
    );
  });

  it('combineColumnTexts equals the columns of combineAllViewStates over the rows read from their columns', () => {
    // Small whole numbers (the doubles path), huge ones and fractions (decimals), nulls, -0, and sums that pass 2^53.
    const wholeArb = fc.oneof(
      fc.integer({ min: -1_000_000, max: 1_000_000 }).map(String),
      fc.constantFrom('0', '999999999999999', '-999999999999999', '4503599627370496'),
    );
    const rowArb = fc.tuple(stateArb, fc.option(fc.tuple(wholeArb, wholeArb, wholeArb))).map(([state, whole]) => {
      const columns = stateToColumns(v, state);
      // Half the rows hold the whole numbers a rebuild's rows hold (counts, sums of integers).
      if (whole) [columns.n__count, columns.s__sum, columns.a__sum] = whole;
      return columns;
    });
    fc.assert(
      fc.property(fc.array(rowArb, { minLength: 1, maxLength: 12 }), (rows) => {
        let want: Record<string, string | null> | 'overflow';
        try {
          want = stateToColumns(
            v,
            combineAllViewStates(
              v,
              rows.map((r) => stateFromColumns(v, r)),
            ),
          );
        } catch {
          want = 'overflow';
        }
        if (want === 'overflow') expect(() => combineColumnTexts(v, rows)).toThrow(/overflows/);
        else expect(combineColumnTexts(v, rows)).toEqual(want);
      }),
      { numRuns: 400 },
    );
  });

  it('an avg of integers divides as doubles exactly as decimal.js rounds', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -(2 ** 53) + 1, max: 2 ** 53 - 1 }),
        fc.integer({ min: 1, max: 2 ** 53 - 1 }),
        fc.boolean(),
        (s, c, small) => {
          const [sum, cnt] = small ? [s % 1e15, c % 1e15 || 1] : [s, c];
          const state = { sum: new Decimal(sum), count: new Decimal(cnt) };
          expect(finalizeNumber(avg('x'), state)).toBe(new Decimal(sum).div(cnt).toNumber());
        },
      ),
      { numRuns: 3000 },
    );
  });
});

/** Sketches read from text (what the query and the batch hold) and built from registers, sparse and dense. */
const regsArb = fc.array(fc.tuple(fc.integer({ min: 0, max: HLL_REGISTERS - 1 }), fc.integer({ min: 1, max: HLL_MAX_RANK })), {
  maxLength: 2000,
});

describe('sketches kept as text', () => {
  it('merging texts equals merging registers, in either order, across the sparse/dense boundary', () => {
    fc.assert(
      fc.property(regsArb, regsArb, fc.boolean(), fc.boolean(), (a, b, textA, textB) => {
        const want = new Uint8Array(HLL_REGISTERS);
        for (const [i, r] of [...a, ...b]) if (r > want[i]!) want[i] = r;
        const wantText = Sketch.of([...want.entries()].filter(([, r]) => r > 0))?.toText() ?? '';
        const read = (s: Sketch | null, text: boolean) => (s !== null && text ? parseSketch(s.toText()) : s);
        const [x, y] = [read(Sketch.of(a), textA), read(Sketch.of(b), textB)];
        for (const m of [mergeSketches(x, y), mergeSketches(y, x), mergeAll([x, y]), mergeAll([y, null, x])]) {
          expect(m?.toText() ?? '').toBe(wantText);
          expect(m === null ? new Uint8Array(HLL_REGISTERS) : m.registers()).toEqual(want);
          if (m !== null) expect(parseSketch(m.toText())!.rankCounts()).toEqual(m.rankCounts());
        }
      }),
      { numRuns: 100 },
    );
  });

  it('a fold of many small sketches read from text ends where one merge of them all does', () => {
    fc.assert(
      fc.property(
        fc.array(
          regsArb.map((r) => r.slice(0, 40)),
          { minLength: 2, maxLength: 80 },
        ),
        (lists) => {
          const sketches = lists.map((l) => Sketch.of(l)).map((s) => (s ? parseSketch(s.toText()) : null));
          const folded = sketches.reduce((acc, s) => mergeSketches(acc, s), null as Sketch | null);
          expect(folded?.toText() ?? '').toBe(mergeAll(sketches)?.toText() ?? '');
          expect(folded?.toText() ?? '').toBe(Sketch.of(lists.flat())?.toText() ?? '');
        },
      ),
      { numRuns: 60 },
    );
  });

  it("sqlSketchText reads the SQL's register list as parseSqlSketch and toText do, and refuses what it refuses", () => {
    const group = (i: number, r: number, upper: boolean) => {
      const hex = i.toString(16).padStart(3, '0');
      return `${upper ? hex.toUpperCase() : hex}${String(r).padStart(2, '0')}`;
    };
    const listArb = fc.oneof(
      // As the SQL writes them: one group per register, in index order.
      regsArb.map((regs) => {
        const by = new Map<number, number>();
        for (const [i, r] of regs) by.set(i, Math.max(r, by.get(i) ?? 0));
        return [...by.entries()].sort(([a], [b]) => a - b);
      }),
      // Anything else: repeats, out of order, rank 0, ranks past 53.
      fc.array(fc.tuple(fc.integer({ min: 0, max: HLL_REGISTERS - 1 }), fc.integer({ min: 0, max: 99 })), { maxLength: 50 }),
    );
    fc.assert(
      fc.property(listArb, fc.boolean(), fc.option(fc.constantFrom('x', '0', '1234', 'g0001')), (regs, upper, junk) => {
        const text = regs.map(([i, r]) => group(i, r, upper)).join('') + (junk ?? '');
        let want: string | null | 'error';
        try {
          want = parseSqlSketch(text)?.toText() ?? null;
        } catch {
          want = 'error';
        }
        if (want === 'error') expect(() => sqlSketchText(text)).toThrow();
        else expect(sqlSketchText(text)).toBe(want);
      }),
      { numRuns: 300 },
    );
    expect(sqlSketchText(null)).toBeNull();
    expect(sqlSketchText('')).toBeNull();
  });

  it('reports the first bad character or rank of a text, sparse or dense', () => {
    expect(() => parseSketch('0!1')).toThrow('not an HLL sketch: character "!"');
    expect(() => parseSketch('00z')).toThrow('HLL rank 63 out of range');
    expect(() => parseSketch('00z0!1')).toThrow('HLL rank 63 out of range');
    expect(() => parseSketch('0!z00z')).toThrow('not an HLL sketch: character "!"');
    expect(() => parseSketch('00\u00e9')).toThrow('not an HLL sketch: character "\u00e9"');
    expect(() => parseSketch('\u{1F600}1')).toThrow(/not an HLL sketch: character/);
    expect(() => parseSketch('0011')).toThrow('not an HLL sketch: length 4');
    const dense = '1'.repeat(HLL_REGISTERS);
    expect(parseSketch(dense)!.toText()).toBe(dense);
    expect(() => parseSketch(`${dense.slice(0, 100)}z${dense.slice(101, 200)}!${dense.slice(201)}`)).toThrow('HLL rank 63 out of range');
    expect(() => parseSketch(`${dense.slice(0, 100)}!${dense.slice(101, 200)}z${dense.slice(201)}`)).toThrow('character "!"');
    // Not canonical (indices out of order, repeated, rank 0): normalized to the one text of its registers.
    expect(parseSketch('0020010010-5')!.toText()).toBe('0-5002');
  });
});

/** encodeBlocks as it was before its fast path: a sort by text key, each row one JSON.stringify. */
function slowEncode(view: typeof v, grain: 'minute' | 'hour' | 'day', rows: readonly BlockRow[], maxBytes = BLOCK_MAX_BYTES) {
  const columns = stateColumns(view);
  // A whole number of at most 15 digits, written as JSON writes that number, is stored bare; a sketch's text never is.
  const stored = (text: string | null, sketch: boolean) => {
    const n = Number(text);
    return text !== null && !sketch && Number.isSafeInteger(n) && String(n) === text && text.replace('-', '').length <= 15 ? n : text;
  };
  const byBlock = new Map<number, { key: string; row: BlockRow }[]>();
  for (const row of rows) {
    const start = blockStart(row.bucket, grain);
    const list = byBlock.get(start) ?? [];
    list.push({ key: `${pad13(row.bucket)}#${dimsKey(row.dims)}`, row });
    byBlock.set(start, list);
  }
  const out: { block: number; chunk: number; n: number; rows: string }[] = [];
  for (const start of [...byBlock.keys()].sort((a, b) => a - b)) {
    const entries = byBlock.get(start)!.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    let parts: string[] = [];
    let bytes = 2;
    let chunk = 0;
    const flush = () => {
      out.push({ block: start, chunk: chunk++, n: parts.length, rows: `[${parts.join(',')}]` });
      parts = [];
      bytes = 2;
    };
    for (const { row } of entries) {
      const text = JSON.stringify([
        row.bucket - start,
        row.dims,
        ...columns.map((c) => stored(row.values[c.column] ?? null, c.component === 'hll')),
      ]);
      const size = Buffer.byteLength(text, 'utf8');
      if (parts.length > 0 && bytes + 1 + size > maxBytes) flush();
      bytes += (parts.length > 0 ? 1 : 0) + size;
      parts.push(text);
    }
    if (parts.length > 0) flush();
  }
  return out;
}

describe('block encoding', () => {
  const dimArb = fc.option(fc.oneof(fc.constantFrom('a', 'b', 'B', '', 'é', '"q"', '\u0000', '\u{1F600}'), fc.string({ maxLength: 4 })), {
    nil: null,
  });
  const bucketArb = fc.oneof(
    fc.integer({ min: 0, max: 40 }).map((m) => Date.UTC(2025, 0, 1) + m * 1_800_000),
    fc.constantFrom(0, 60_000, 9_999_999_960_000, 10_000_000_020_000, -120_000),
  );
  it('writes the bytes the general encoder writes, whole blocks and blocks cut into chunks, and reads back the rows', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.record({ bucket: bucketArb, dims: fc.tuple(dimArb), state: stateArb }), {
          selector: (r) => JSON.stringify([r.bucket, r.dims]),
          maxLength: 30,
        }),
        fc.constantFrom('minute' as const, 'hour' as const, 'day' as const),
        // Small limits cut blocks (encodeBlocks then makes the text row by row); the real one leaves them whole (one stringify).
        fc.oneof(fc.integer({ min: 20, max: 600 }), fc.constant(BLOCK_MAX_BYTES)),
        (rows, grain, maxBytes) => {
          const blockRows: BlockRow[] = rows.map((r) => ({ bucket: r.bucket, dims: r.dims, values: stateToColumns(v, r.state) }));
          const got = encodeBlocks(v, grain, blockRows, maxBytes);
          expect(got).toEqual(slowEncode(v, grain, blockRows, maxBytes));
          for (const b of got) for (const r of decodeBlock(v, b.block, b.rows)) expect(blockRows).toContainEqual(r);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('the query in one pass', () => {
  const pages = DEMO_VIEWS.find((x) => x.name === 'page_views')!;
  const T = Date.UTC(2025, 5, 1);
  const rowArb = fc.record({
    bucket: fc.integer({ min: -30, max: 3 * 1440 }).map((m) => T + m * 60_000),
    dims: fc.tuple(fc.option(fc.constantFrom('/', '/a', '/b'), { nil: null }), fc.option(fc.constantFrom('US', 'DE'), { nil: null })),
    n: fc.integer({ min: 0, max: 50 }),
    load: fc.option(fc.integer({ min: 0, max: 100_000 }), { nil: null }),
    users: sketchArb,
    window: fc.integer({ min: 0, max: 3 * 1440 }).map((m) => T + m * 60_000),
  });
  const state = (r: { n: number; load: number | null; users: Sketch | null }): ViewState => ({
    views: { count: new Decimal(r.n) },
    load_ms: r.load === null ? { sum: new Decimal(0), count: new Decimal(0) } : { sum: new Decimal(r.load), count: new Decimal(r.n || 1) },
    users: { hll: r.users },
  });
  it('shapeResponse equals shapeRows of mergeRows, rows in sortRows order, for any grain, grouping and filter', () => {
    fc.assert(
      fc.property(
        fc.array(rowArb, { maxLength: 60 }),
        fc.array(rowArb, { maxLength: 30 }),
        fc.constantFrom('minute', 'hour', 'day', 'all'),
        fc.constantFrom(undefined, 'page', 'country', 'page,country', ''),
        fc.constantFrom({}, { country: 'US' }, { orderBy: '-views', limit: '2' }),
        fc.option(
          fc.integer({ min: 0, max: 3 * 1440 }).map((m) => T + m * 60_000),
          { nil: null },
        ),
        (batch, speed, grain, groupBy, extra, cutoff) => {
          const spec = parseQuery(
            pages,
            { from: new Date(T).toISOString(), to: new Date(T + 2 * 86_400_000).toISOString(), grain, groupBy, ...extra },
            T,
          );
          if (isQueryError(spec)) throw new Error(spec.message);
          const batchRows: Row[] = batch.map((r) => ({ bucket: r.bucket, dims: r.dims, state: state(r) }));
          const speedRows: SpeedRow[] = speed.map((r) => ({ bucket: r.bucket, dims: r.dims, state: state(r), window: r.window }));
          expect(shapeResponse(pages, spec, batchRows, speedRows, cutoff)).toEqual(
            shapeRows(pages, spec, mergeRows(pages, batchRows, speedRows, cutoff)),
          );
          expect(shapeResponse(pages, { ...spec, parts: true }, batchRows, speedRows, cutoff).length).toBe(
            shapeRows(pages, spec, mergeRows(pages, batchRows, speedRows, cutoff)).length,
          );
        },
      ),
      { numRuns: 300 },
    );
  });
  /** rollupRows as it was before its one pass: a map by JSON key, then sortRows, then one fold per key. */
  function slowRollup(spec: QuerySpec, rows: readonly Row[]) {
    const filters = Object.entries(spec.filters).map(([d, x]) => [pages.dimensions.indexOf(d), x] as const);
    const groupIdx = spec.groupBy.map((d) => pages.dimensions.indexOf(d));
    const acc = new Map<string, { bucket: number; dims: (string | null)[]; states: ViewState[] }>();
    for (const r of rows) {
      if (r.bucket < spec.from || r.bucket >= spec.to) continue;
      if (!filters.every(([i, x]) => (r.dims[i] ?? null) === x)) continue;
      const bucket = rollupBucket(r.bucket, spec.grain, spec.from);
      const dims = groupIdx.map((i) => r.dims[i] ?? null);
      const key = JSON.stringify([bucket, dims]);
      const seen = acc.get(key);
      if (seen) seen.states.push(r.state);
      else acc.set(key, { bucket, dims, states: [r.state] });
    }
    return sortRows([...acc.values()].map((g) => ({ bucket: g.bucket, dims: g.dims, state: combineAllViewStates(pages, g.states) })));
  }
  it('rollupRows equals the map-and-sort rollup, rows in sortRows order', () => {
    fc.assert(
      fc.property(
        fc.array(rowArb, { maxLength: 80 }),
        fc.constantFrom('minute', 'hour', 'day', 'all'),
        fc.constantFrom(undefined, 'page', 'country', ''),
        fc.constantFrom({}, { country: 'US' }, { page: '/a', country: 'DE' }),
        (raw, grain, groupBy, filters) => {
          const spec = parseQuery(
            pages,
            { from: new Date(T - 600_000).toISOString(), to: new Date(T + 2 * 86_400_000).toISOString(), grain, groupBy, ...filters },
            T,
          );
          if (isQueryError(spec)) throw new Error(spec.message);
          const rows = raw.map((r) => ({ bucket: r.bucket, dims: r.dims, state: state(r) }));
          const text = (rs: readonly Row[]) => rs.map((r) => [r.bucket, r.dims, stateToColumns(pages, r.state)]);
          expect(text(rollupRows(pages, spec, rows))).toEqual(text(slowRollup(spec, rows)));
        },
      ),
      { numRuns: 300 },
    );
  });
});
