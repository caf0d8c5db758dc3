/**
 * HyperLogLog sketches of `distinct(field)` (functions/core/hll.ts):
 * (a) the registers TypeScript computes equal those of the duckdb dialect's SQL, run for real in
 *     DuckDB, for random values (the athena dialect: sql.golden.test.ts and the Trino docs);
 *     both equal an oracle written here (BigInt over node:crypto's MD5, no project code);
 * (c) estimates stay within 3 standard errors of the true count at 10, 1,000, 10,000 and 100,000
 *     distinct values (deterministic values);
 * and the canonical text: sparse up to 1,365 registers, dense from 1,366, one text per register array.
 * (b), the merged sketch across the cut, is in sql.duckdb.property.test.ts and monoid.property.test.ts.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordState } from '../../functions/core/aggregate.ts';
import {
  estimate,
  HLL_MAX_RANK,
  HLL_REGISTERS,
  HLL_STANDARD_ERROR,
  hashValue,
  mergeAll,
  mergeSketches,
  parseSketch,
  parseSqlSketch,
  registerOf,
  Sketch,
  sketchOf,
} from '../../functions/core/hll.ts';
import { columnFromSql } from '../../functions/core/metrics.ts';
import { type RawRecord, toRawRecord } from '../../functions/core/record.ts';
import { compileView, duckdbSource } from '../../functions/core/sql.ts';
import { count, distinct, view } from '../../functions/core/views.ts';

/** The oracle: index = the top 12 of the first 64 bits of MD5 (big-endian), rank = 1 + leading zeros of the other 52. */
function oracleRegister(text: string): [number, number] {
  const h = BigInt(`0x${createHash('md5').update(Buffer.from(text, 'utf8')).digest('hex').slice(0, 16)}`);
  const tail = h & ((1n << 52n) - 1n);
  let rank = 1;
  for (let bit = 51n; bit >= 0n && ((tail >> bit) & 1n) === 0n; bit--) rank++;
  return [Number(h >> 52n), rank];
}

function oracleRegisters(texts: readonly string[]): [number, number][] {
  const regs = new Map<number, number>();
  for (const t of texts) {
    const [i, r] = oracleRegister(t);
    if (r > (regs.get(i) ?? 0)) regs.set(i, r);
  }
  return [...regs].sort((a, b) => a[0] - b[0]);
}

const sketchOfAll = (texts: readonly string[]) =>
  Sketch.of(
    texts.map((t) => {
      const { index, rank } = hashValue(t);
      return [index, rank] as const;
    }),
  );

describe('registers', () => {
  it('index = top 12 bits, rank = leading zeros of the next 52 + 1, 53 when all are zero', () => {
    expect(registerOf('0008000000000000')).toEqual({ index: 0, rank: 1 });
    expect(registerOf('fff0000000000001')).toEqual({ index: 4095, rank: 52 });
    expect(registerOf('abc0000000000000')).toEqual({ index: 0xabc, rank: HLL_MAX_RANK });
    expect(registerOf('1231000000000000')).toEqual({ index: 0x123, rank: 4 });
    expect(registerOf('1230000100000000')).toEqual({ index: 0x123, rank: 20 });
    expect(registerOf('12300000ffffffff')).toEqual({ index: 0x123, rank: 21 });
    expect(registerOf('1230000000000000ffff')).toEqual({ index: 0x123, rank: 53 });
  });

  it('TypeScript equals the oracle for any text (UTF-8, as the SQL engines hash it)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 20 }), (t) => {
        const { index, rank } = registerOf(createHash('md5').update(t, 'utf8').digest('hex'));
        expect([index, rank]).toEqual(oracleRegister(t));
        expect(sketchOf(t)!.entries()).toEqual([oracleRegister(t)]);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('canonical text', () => {
  const regsArb = fc.array(fc.tuple(fc.integer({ min: 0, max: HLL_REGISTERS - 1 }), fc.integer({ min: 1, max: HLL_MAX_RANK })), {
    minLength: 1,
    maxLength: 3000,
  });
  it('round-trips, sparse below 1,366 set registers and dense from there, one text per register array', () => {
    fc.assert(
      fc.property(regsArb, (regs) => {
        const s = Sketch.of(regs)!;
        const text = s.toText();
        const set = s.entries().length;
        expect(text.length).toBe(set <= 1365 ? 3 * set : HLL_REGISTERS);
        expect(parseSketch(text)!.toText()).toBe(text);
        expect(Sketch.of([...regs].reverse())!.toText()).toBe(text);
        expect([...s.registers()].filter((r) => r > 0).length).toBe(set);
      }),
      { numRuns: 200 },
    );
    const at = (n: number) => Sketch.of(Array.from({ length: n }, (_, i) => [i, 1] as const))!.toText().length;
    expect([at(1365), at(1366)]).toEqual([4095, 4096]);
    expect(parseSketch('')).toBeNull();
    expect(() => parseSketch('ab')).toThrow(/length/);
    expect(() => parseSketch('a!b')).toThrow(/character/);
  });

  it('merge is register-wise max: associative, commutative, idempotent, null the identity', () => {
    const arb = fc.option(regsArb.map((r) => Sketch.of(r)));
    const text = (s: Sketch | null) => s?.toText() ?? null;
    fc.assert(
      fc.property(arb, arb, arb, (a, b, c) => {
        expect(text(mergeSketches(mergeSketches(a, b), c))).toBe(text(mergeSketches(a, mergeSketches(b, c))));
        expect(text(mergeSketches(a, b))).toBe(text(mergeSketches(b, a)));
        expect(text(mergeSketches(a, a))).toBe(text(a));
        expect(text(mergeSketches(null, a))).toBe(text(a));
        const both = mergeSketches(a, b);
        if (both) {
          const max = new Uint8Array(HLL_REGISTERS);
          for (const s of [a, b])
            s?.registers().forEach((r, i) => {
              max[i] = Math.max(max[i]!, r);
            });
          expect([...both.registers()]).toEqual([...max]);
        }
      }),
      { numRuns: 200 },
    );
  });

  it("reads the SQL's register lists (either case) into the canonical text", () => {
    expect(parseSqlSketch('00a01fff53')!.entries()).toEqual([
      [10, 1],
      [4095, 53],
    ]);
    expect(parseSqlSketch('00A01')!.toText()).toBe(parseSqlSketch('00a01')!.toText());
    expect(parseSqlSketch(null)).toBeNull();
    expect(() => parseSqlSketch('00a1')).toThrow(/register list/);
    expect(columnFromSql('hll', '00a01')).toBe(Sketch.of([[10, 1]])!.toText());
  });
});

describe('estimates (c)', () => {
  for (const n of [10, 1_000, 10_000, 100_000]) {
    it(`within 3 standard errors of ${n.toLocaleString('en-US')} distinct values`, () => {
      for (const seed of ['a', 'b', 'c']) {
        const values = Array.from({ length: n }, (_, i) => `user-${seed}-${i}`);
        // Each value several times: duplicates never move a register.
        const sketch = sketchOfAll([...values, ...values.slice(0, n >> 1)]);
        const e = estimate(sketch);
        expect(Math.abs(e - n)).toBeLessThanOrEqual(Math.max(1, 3 * HLL_STANDARD_ERROR * n));
      }
    });
  }
  it('the empty sketch estimates 0, one value 1', () => {
    expect(estimate(null)).toBe(0);
    expect(estimate(sketchOf('x'))).toBe(1);
  });
});

describe('TypeScript == DuckDB SQL == oracle (a)', () => {
  let instance: DuckDBInstance;
  let db: DuckDBConnection;
  let dir: string;
  let n = 0;
  beforeAll(async () => {
    instance = await DuckDBInstance.create(':memory:', {
      autoinstall_known_extensions: 'false',
      autoload_known_extensions: 'false',
      threads: '1',
    });
    db = await instance.connect();
    dir = mkdtempSync(join(tmpdir(), 'tandem-hll-'));
  });
  afterAll(() => {
    db?.closeSync();
    instance?.closeSync();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const T0 = Date.UTC(2024, 4, 1, 10, 0, 0);
  const v = view({ name: 'uniques', dimensions: ['g'], grain: 'day', metrics: { n: count(), users: distinct('user') } });

  /** Records with `user` = each value (or absent / null), in groups g = 0..2; the SQL's sketch per group. */
  async function sqlSketches(users: readonly (string | number | boolean | null | undefined)[]): Promise<{
    records: RawRecord[];
    sql: Map<string, string | null>;
  }> {
    const records = users.map((u, i) =>
      toRawRecord(
        { id: `e${i}`, type: 't', ts: T0, g: String(i % 3), ...(u === undefined ? {} : { user: u }) },
        T0 + i,
        'shardId-0',
        String(i + 1),
      ),
    );
    const file = join(dir, `run-${++n}.json.gz`);
    writeFileSync(file, gzipSync(records.map((r) => `${JSON.stringify(r)}\n`).join('')));
    const sql = compileView(v, { dialect: 'duckdb', cutoff: T0 + users.length + 1, horizonMs: 0, source: duckdbSource([file]) });
    const rows = (await db.runAndReadAll(sql)).getRowsJson();
    return { records, sql: new Map(rows.map((r) => [String(r[1]), columnFromSql('hll', r[3] === null ? null : String(r[3]))])) };
  }

  const value = fc.oneof(
    { weight: 6, arbitrary: fc.string({ unit: 'grapheme', maxLength: 12 }) },
    { weight: 2, arbitrary: fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean()) },
    { weight: 1, arbitrary: fc.constantFrom(null, undefined, '', "it's", '0', '-0') },
  );

  it('random values: the SQL sketch of every group equals the TypeScript sketch and the oracle', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(value, { maxLength: 200 }), async (users) => {
        const { records, sql } = await sqlSketches(users);
        for (const g of ['0', '1', '2']) {
          const mine = records.filter((r) => r.fields.g === g);
          if (mine.length === 0) {
            expect(sql.has(g)).toBe(false);
            continue;
          }
          const ts = mine.map((r) => recordState(v, r).users!.hll ?? null).reduce(mergeSketches, null);
          expect(sql.get(g) ?? null).toBe(ts?.toText() ?? null);
          const texts = mine.flatMap((r) => (r.fields.user == null ? [] : [r.fields.user]));
          expect(ts?.entries() ?? []).toEqual(oracleRegisters(texts));
        }
      }),
      { numRuns: 60 },
    );
  });

  it('many values (dense sketches, ranks past 20) agree too', async () => {
    const users = Array.from({ length: 30_000 }, (_, i) => `u${i}`);
    const { records, sql } = await sqlSketches(users);
    for (const g of ['0', '1', '2']) {
      const texts = records.filter((r) => r.fields.g === g).map((r) => r.fields.user!);
      const ts = sketchOfAll(texts)!;
      expect(ts.toText()).toHaveLength(HLL_REGISTERS);
      expect(sql.get(g)).toBe(ts.toText());
      expect(ts.entries()).toEqual(oracleRegisters(texts));
    }
  });
});

describe('merge across the two forms', () => {
  it('register-wise max whether either side is sparse or dense, in either order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: HLL_REGISTERS - 1 }), fc.integer({ min: 1, max: HLL_MAX_RANK })), { maxLength: 3000 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: HLL_REGISTERS - 1 }), fc.integer({ min: 1, max: HLL_MAX_RANK })), { maxLength: 3000 }),
        (a, b) => {
          const want = new Uint8Array(HLL_REGISTERS);
          for (const [i, r] of [...a, ...b]) if (r > want[i]!) want[i] = r;
          const [x, y] = [Sketch.of(a), Sketch.of(b)];
          for (const m of [mergeSketches(x, y), mergeSketches(y, x), mergeAll([x, null, y]), mergeAll([y, x, x])]) {
            expect(m === null ? new Uint8Array(HLL_REGISTERS) : m.registers()).toEqual(want);
            // Canonical whatever the inputs' forms: the text equals the one built from the registers.
            expect(m?.toText() ?? '').toBe(Sketch.of([...want.entries()].filter(([, r]) => r > 0))?.toText() ?? '');
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('a sketch read from its text', () => {
  it('a small sketch read from text estimates as the same registers built anew (estimates kept by ranks)', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: HLL_REGISTERS - 1 }), { minLength: 1, maxLength: 6 }),
        fc.array(fc.integer({ min: 1, max: HLL_MAX_RANK }), { minLength: 6, maxLength: 6 }),
        (indices, ranks) => {
          const regs = indices.map((i, k) => [i, ranks[k]!] as [number, number]);
          const built = Sketch.of(regs)!;
          // The same ranks at other registers: the same estimate, kept or computed.
          const moved = parseSketch(Sketch.of(regs.map(([i, r]) => [(i + 977) % HLL_REGISTERS, r] as [number, number]))!.toText())!;
          expect(estimate(parseSketch(built.toText()))).toBe(estimate(built));
          expect(estimate(moved)).toBe(estimate(built));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('answers as the sketch it was written from: registers, rank counts, estimate, text, merges', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: HLL_REGISTERS - 1 }), fc.integer({ min: 1, max: HLL_MAX_RANK })), {
          minLength: 1,
          maxLength: 3000,
        }),
        (regs) => {
          const built = Sketch.of(regs)!;
          const read = parseSketch(built.toText())!;
          expect(read.rankCounts()).toEqual(built.rankCounts());
          expect(estimate(read)).toBe(estimate(built));
          expect(read.registers()).toEqual(built.registers());
          expect(read.toText()).toBe(built.toText());
          const other = Sketch.of([[regs[0]![0], HLL_MAX_RANK]])!;
          expect(read.merge(other).toText()).toBe(built.merge(other).toText());
        },
      ),
      { numRuns: 60 },
    );
  });
});
