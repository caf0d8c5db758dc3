/**
 * The DuckDB engine reads a view's result as JSON text DuckDB builds (duckdb.ts `viewRows`): the rows must be what
 * the node API's row by row conversion gives (`toBatchRows` of `query`), for any dimension value (quotes,
 * backslashes, control characters, non-ASCII, empty, null) and any state value (exact decimals, a sketch's register
 * list, null), in whatever order the parts come; rows with equal dimension values share their dims array.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DuckDb, openDuckDb, viewRows } from '../../functions/batch/duckdb.ts';
import { toBatchRows } from '../../functions/batch/engine.ts';
import { literal } from '../../functions/core/sql.ts';
import { avg, count, distinct, max, view } from '../../functions/core/views.ts';

const v = view({
  name: 'rows',
  dimensions: ['a', 'b'],
  grain: 'minute',
  metrics: { n: count(), m: avg('x'), top: max('x'), u: distinct('y') },
});

let db: DuckDb;
beforeAll(async () => {
  db = await openDuckDb();
});
afterAll(() => db.close());

const dimArb = fc.option(
  fc.oneof(
    fc.string({ unit: 'grapheme', maxLength: 8 }),
    fc.constantFrom('', '"', '\\', 'a"b\\c', 'line\nbreak', 'tab\tz', '\u0001', 'São Paulo', '東京', '😀', 'null', '[1]'),
  ),
  { nil: null },
);
const decimalArb = fc.oneof(
  fc.bigInt({ min: -(10n ** 20n), max: 10n ** 20n }).map(String),
  fc
    .tuple(fc.bigInt({ min: -(10n ** 12n), max: 10n ** 12n }), fc.integer({ min: 0, max: 999_999_999 }))
    .map(([i, f]) => `${i}.${String(f).padStart(9, '0')}`),
);
/** A register list as the SQL writes it: `<index, 3 hex digits><rank, 2 digits>` in index order. */
const regsArb = fc
  .uniqueArray(fc.integer({ min: 0, max: 4095 }), { maxLength: 6 })
  .chain((ix) =>
    fc.tuple(
      fc.constant([...ix].sort((p, q) => p - q)),
      fc.array(fc.integer({ min: 1, max: 53 }), { minLength: ix.length, maxLength: ix.length }),
    ),
  )
  .map(([ix, ranks]) => ix.map((i, k) => `${i.toString(16).padStart(3, '0')}${String(ranks[k]).padStart(2, '0')}`).join(''));

const rowArb = fc.record({
  bucket: fc.integer({ min: 0, max: 3 * 24 * 60 }).map((m) => Date.UTC(2025, 0, 1) + m * 60_000),
  a: dimArb,
  b: dimArb,
  n: fc.integer({ min: 1, max: 1_000_000 }),
  sum: decimalArb,
  cnt: fc.integer({ min: 0, max: 1000 }),
  top: fc.option(decimalArb, { nil: null }),
  u: fc.option(regsArb, { nil: null }),
});

/** A statement with a compiled view's columns (c0 bucket, c1.. dimensions, then the state columns in order). */
type Row = typeof rowArb extends fc.Arbitrary<infer T> ? T : never;
function statement(rows: readonly Row[]): string {
  const lit = (x: string | null, type: string) => (x === null ? `CAST(NULL AS ${type})` : `CAST(${literal(x)} AS ${type})`);
  const values = rows.map(
    (r) =>
      `(${r.bucket}::BIGINT, ${lit(r.a, 'VARCHAR')}, ${lit(r.b, 'VARCHAR')}, ${r.n}::BIGINT, ${lit(r.sum, 'DECIMAL(38, 9)')}, ` +
      `${r.cnt}::BIGINT, ${lit(r.top, 'DECIMAL(38, 9)')}, ${lit(r.u === '' ? null : r.u, 'VARCHAR')})`,
  );
  return `SELECT * FROM (VALUES ${values.join(', ')}) AS t(c0, c1, c2, c3, c4, c5, c6, c7)`;
}

const byKey = (rows: readonly { bucket: number; dims: readonly (string | null)[] }[]) =>
  [...rows].sort((p, q) => p.bucket - q.bucket || (JSON.stringify(p.dims) < JSON.stringify(q.dims) ? -1 : 1));

describe('viewRows (the DuckDB engine reading a result as JSON text)', () => {
  it("gives toBatchRows of the node API's rows, for any dimension and state value", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(rowArb, { minLength: 1, maxLength: 30, selector: (r) => `${r.bucket}|${r.a}|${r.b}` }),
        async (rows) => {
          const sql = statement(rows);
          const want = toBatchRows(v, await db.query(sql));
          const got = await viewRows(db, sql, v);
          expect(byKey(got)).toEqual(byKey(want));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('rows with the same dimension values share one dims array, rows with other values never do', async () => {
    // Values that a naive joined key would confuse: separators and lengths inside the values, empty and null.
    const pool = fc.option(fc.constantFrom('', ':', '1:a', '0:', '2:ab', 'a', '\u0001', '1', '10'), { nil: null });
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(
          rowArb.chain((r) => fc.record({ a: pool, b: pool }).map((d) => ({ ...r, ...d }))),
          {
            minLength: 2,
            maxLength: 40,
            selector: (r) => `${r.bucket}|${r.a}|${r.b}`,
          },
        ),
        async (rows) => {
          const got = await viewRows(db, statement(rows), v);
          for (const p of got) for (const q of got) expect(p.dims === q.dims).toBe(JSON.stringify(p.dims) === JSON.stringify(q.dims));
        },
      ),
      { numRuns: 40 },
    );
  });

  it('an empty result is no rows', async () => {
    expect(
      await viewRows(db, `${statement([{ bucket: 0, a: null, b: null, n: 1, sum: '0', cnt: 0, top: null, u: null }])} WHERE false`, v),
    ).toEqual([]);
  });
});
