/**
 * Property tests of the SQL compiler against a real SQL engine: DuckDB, in
 * process, running the `duckdb` dialect over random events written as gzip
 * NDJSON archive lines, compared with an oracle: the dedup rule from
 * test/support/oracle.ts (`countedCopies`), the groups and sums written here
 * (scaled BigInt arithmetic, no project code in the arithmetic).
 *
 * Copies of an id arrive both within and beyond a small dedup horizon H (a few
 * minutes, over hours of arrivals), sometimes exactly H apart.
 * (1) SQL over the archive == oracle (the copies that count under the rule
 *     with horizon H, arrival < cutoff, optionally arrival >= since), and
 *     rebuild(since) (+) increment(since, cutoff) == rebuild(cutoff), the
 *     increment reading only the records that arrived from since - H.
 * (2) SQL before a window-aligned cutoff + `aggregate` after it, merged by
 *     `mergeRows` and shaped by `shapeRows` == oracle over all records.
 */

import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { Decimal as DecimalJs } from 'decimal.js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aggregate } from '../../functions/core/aggregate.ts';
import { estimate, parseSketch, Sketch } from '../../functions/core/hll.ts';
import { columnFromSql, stateFromColumns, stateToColumns } from '../../functions/core/metrics.ts';
import { mergeRows, type QuerySpec, type Row, shapeRows } from '../../functions/core/query.ts';
import { type RawRecord, toRawRecord } from '../../functions/core/record.ts';
import {
  compileCounted,
  compileDropped,
  compileView,
  countedSource,
  countSql,
  duckdbSource,
  flatColumnItems,
  flatColumns,
  outputColumns,
  rawReadRange,
} from '../../functions/core/sql.ts';
import type { QueryGrain } from '../../functions/core/time.ts';
import { type Metric, sum, type View, view } from '../../functions/core/views.ts';
import { countedCopies } from '../support/oracle.ts';

const RUNS = 200;

// ---------------------------------------------------------------- generators

const T0 = Date.UTC(2024, 4, 1, 10, 0, 0);
const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

/** Ids with quotes and non-ASCII: event data never reaches the SQL text. */
const IDS = [...Array.from({ length: 24 }, (_, i) => `e${i}`), "it's", 'a"b', 'é', '; DROP TABLE x'];
/** Field names, including SQL reserved words and names differing only in case. */
const FIELDS = ['country', 'Country', 'page', 'order', 'amount', 'Amount', 'load_ms', 'flag'] as const;
const DIMENSIONS = ['type', ...FIELDS] as const;
const METRIC_FIELDS = ['amount', 'Amount', 'load_ms', 'country'] as const;
const METRIC_NAMES = ['n', 'total', 'Total', 'lo', 'hi', 'mean', 'from', 'group'] as const;
/** Dedup horizons: a few minutes (steps below hit them exactly), 0 (only same-millisecond copies are duplicates). */
const genHorizon = fc.oneof(fc.constantFrom(0, MINUTE, 5 * MINUTE, 10 * MINUTE), fc.integer({ min: 1, max: 30 * MINUTE }));
/** Texts and numbers shared by field values and filter values, so filters match. */
const SHARED_VALUES = ['purchase', 'page_view', 'US', 'FR', "O'Hare", 'a"b', 'é', '', ' x ', '1.5', 1.5, 7, true, false] as const;

/**
 * A decimal with up to 9 fractional digits and at most 15 significant digits,
 * made the way ingest sees it: a JS number (an integer scaled by 10^-k). Mostly
 * unbiased, so sums of large and small values show any float accumulation.
 */
const decimalNumber = fc
  .tuple(
    fc.oneof(fc.noBias(fc.bigInt({ min: -(10n ** 14n), max: 10n ** 14n })), fc.bigInt({ min: -1000n, max: 1000n })),
    fc.integer({ min: 0, max: 9 }),
  )
  .map(([n, k]) => Number(n) / 10 ** k);

const fieldValue = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...SHARED_VALUES) },
  { weight: 4, arbitrary: decimalNumber },
  { weight: 1, arbitrary: fc.constantFrom(0.1, 0.2, 0.3, -0.000000001, 99999999999999.9) },
  { weight: 1, arbitrary: fc.constant(null) },
  // Not usable as metric values: too many fractional or significant digits (skipped by both layers).
  { weight: 1, arbitrary: fc.constantFrom(0.1234567891, 1.2345678901234567, -0) },
);

interface GenEvent {
  readonly id: string;
  readonly type: string;
  /** ts - arrival, ms: mostly late (negative), sometimes ahead. */
  readonly lateness: number;
  readonly tsAsIso: boolean;
  /** Arrival after the previous event, ms (0: the same PutRecords). */
  readonly step: number;
  /** On the other shard than the id's usual one (ingest keeps an id on one shard; the rule orders by shard anyway). */
  readonly otherShard: boolean;
  readonly fields: Record<string, string | number | boolean | null>;
}

const genEvent: fc.Arbitrary<GenEvent> = fc.record({
  id: fc.constantFrom(...IDS),
  type: fc.constantFrom('purchase', 'page_view', 'signup'),
  lateness: fc.oneof(fc.integer({ min: -3 * DAY, max: HOUR }), fc.integer({ min: -2 * MINUTE, max: 0 })),
  tsAsIso: fc.boolean(),
  step: fc.oneof(fc.constantFrom(0, 0, 1, MINUTE, 5 * MINUTE), fc.integer({ min: 0, max: 20 * MINUTE })),
  otherShard: fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  fields: fc.dictionary(fc.constantFrom(...FIELDS), fieldValue, { maxKeys: FIELDS.length, size: 'max' }),
});

/** Events -> RawRecords through the same path as both layers (toRawRecord), in arrival order. */
function toRecords(events: readonly GenEvent[]): RawRecord[] {
  let arrival = T0;
  return events.map((e, i) => {
    arrival += e.step;
    const ts = arrival + e.lateness;
    const data = { ...e.fields, id: e.id, type: e.type, ts: e.tsAsIso ? new Date(ts).toISOString() : ts };
    // Copies of an id on one shard (rarely the other), sequence numbers increasing with arrival within a shard;
    // shard 1's are lower than shard 0's, so equal arrivals on two shards are ordered by shard, not by sequence number.
    const n = (IDS.indexOf(e.id) + (e.otherShard ? 1 : 0)) % 2;
    return toRawRecord(data, arrival, `shardId-00000000000${n}`, String((n === 0 ? 50_000 : 10_000) + i));
  });
}

const genView: fc.Arbitrary<View> = fc
  .record({
    dimensions: fc.shuffledSubarray([...DIMENSIONS], { maxLength: 3 }),
    grain: fc.constantFrom('minute' as const, 'hour' as const, 'day' as const),
    filter: fc.oneof(
      fc.constant(undefined),
      fc.record({ type: fc.constantFrom('purchase', 'page_view') }),
      fc.dictionary(fc.constantFrom('type', ...FIELDS), fc.constantFrom(...SHARED_VALUES), { minKeys: 1, maxKeys: 2 }),
    ),
    metrics: fc.uniqueArray(
      fc.record({
        name: fc.constantFrom(...METRIC_NAMES),
        fn: fc.constantFrom('count' as const, 'sum' as const, 'min' as const, 'max' as const, 'avg' as const, 'distinct' as const),
        field: fc.constantFrom(...METRIC_FIELDS),
      }),
      { minLength: 1, maxLength: 4, selector: (m) => m.name },
    ),
  })
  .map(({ dimensions, grain, filter, metrics }) =>
    view({
      name: 'random_view',
      dimensions,
      grain,
      ...(filter ? { filter } : {}),
      metrics: Object.fromEntries(
        metrics.map((m): [string, Metric] => [m.name, m.fn === 'count' ? { fn: 'count' } : { fn: m.fn, field: m.field }]),
      ),
    }),
  );

/** A second view of a run, reading other entries: the session's columns are those of all the run's views. */
const OTHER_VIEW = view({
  name: 'other',
  dimensions: ['flag', 'Country'],
  grain: 'hour',
  filter: { order: '7' },
  metrics: { s: sum('load_ms'), m: sum('Amount') },
});

// ------------------------------------------------------------------- oracle

const SCALE = 10n ** 9n;
const GRAIN: Record<string, number> = { minute: MINUTE, hour: HOUR, day: DAY };

/** Plain decimal text -> integer count of 10^-9 units. */
function scaled(text: string): bigint {
  const m = /^(-?)(\d+)(?:\.(\d{1,9}))?$/.exec(text);
  if (!m) throw new Error(`not a plain decimal with at most 9 fractional digits: ${text}`);
  const v = BigInt(m[2]! + (m[3] ?? '').padEnd(9, '0'));
  return m[1] ? -v : v;
}

function unscaled(v: bigint): string {
  const sign = v < 0n ? '-' : '';
  const abs = v < 0n ? -v : v;
  return `${sign}${abs / SCALE}.${String(abs % SCALE).padStart(9, '0')}`;
}

/** The copies a batch over arrival < cutoff counts under the dedup rule with horizon H, those arrived at or after `since`. */
function counted(records: readonly RawRecord[], horizonMs: number, cutoff: number, since = Number.NEGATIVE_INFINITY): RawRecord[] {
  return countedCopies(
    records.filter((r) => r.arrival < cutoff),
    horizonMs,
  ).filter((r) => r.arrival >= since);
}

function passes(v: View, r: RawRecord): boolean {
  return Object.entries(v.filter ?? {}).every(([k, want]) => r.fields[k] === (typeof want === 'string' ? want : String(want)));
}

/**
 * Per group: the value of each state column, in 10^-9 units (null: empty min/max); a sketch as its
 * registers `index:rank,...` in index order (null: empty).
 */
type OracleState = Record<string, bigint | string | null>;

/** The register of a value: the top 12 of the first 64 bits of MD5 (big-endian), 1 + leading zeros of the other 52. */
function oracleRegister(text: string): [number, number] {
  const h = BigInt(`0x${createHash('md5').update(Buffer.from(text, 'utf8')).digest('hex').slice(0, 16)}`);
  const tail = h & ((1n << 52n) - 1n);
  let rank = 1;
  for (let bit = 51n; bit >= 0n && ((tail >> bit) & 1n) === 0n; bit--) rank++;
  return [Number(h >> 52n), rank];
}

/** Register lists merged by register-wise max, as `index:rank,...` in index order (null: none). */
function maxRegisters(...lists: (readonly [number, number][] | string | null)[]): string | null {
  const regs = new Map<number, number>();
  for (const l of lists) {
    const pairs = typeof l === 'string' ? l.split(',').map((p) => p.split(':').map(Number) as [number, number]) : (l ?? []);
    for (const [i, r] of pairs) if (r > (regs.get(i) ?? 0)) regs.set(i, r);
  }
  return regs.size === 0
    ? null
    : [...regs]
        .sort((a, b) => a[0] - b[0])
        .map(([i, r]) => `${i}:${r}`)
        .join(',');
}

/** The SQL's register list (`<index hex 3><rank 2 digits>...`) as the oracle writes registers. */
const sqlRegisters = (text: string) =>
  maxRegisters(
    Array.from(
      { length: text.length / 5 },
      (_, k) => [Number.parseInt(text.slice(5 * k, 5 * k + 3), 16), Number(text.slice(5 * k + 3, 5 * k + 5))] as [number, number],
    ),
  );
interface OracleRow {
  bucket: number;
  dims: (string | null)[];
  state: OracleState;
}

function oracleGroups(
  v: View,
  events: readonly RawRecord[],
  bucketOf: (r: RawRecord) => number,
  dimsOf: (r: RawRecord) => (string | null)[],
): OracleRow[] {
  const groups = new Map<string, OracleRow>();
  for (const r of events) {
    if (!passes(v, r)) continue;
    const bucket = bucketOf(r);
    const dims = dimsOf(r);
    const key = JSON.stringify([bucket, dims]);
    let g = groups.get(key);
    if (!g) {
      g = { bucket, dims, state: {} };
      for (const [name, m] of Object.entries(v.metrics)) {
        if (m.fn === 'count') g.state[`${name}__count`] = 0n;
        if (m.fn === 'sum') g.state[`${name}__sum`] = 0n;
        if (m.fn === 'min') g.state[`${name}__min`] = null;
        if (m.fn === 'max') g.state[`${name}__max`] = null;
        if (m.fn === 'avg') Object.assign(g.state, { [`${name}__sum`]: 0n, [`${name}__count`]: 0n });
        if (m.fn === 'distinct') g.state[`${name}__hll`] = null;
      }
      groups.set(key, g);
    }
    const s = g.state;
    for (const [name, m] of Object.entries(v.metrics)) {
      if (m.fn === 'count') {
        (s[`${name}__count`] as bigint) += SCALE;
        continue;
      }
      if (m.fn === 'distinct') {
        // The field's canonical text, whatever its type; absent or null counts nowhere.
        const value = r.fields[m.field];
        if (value !== null && value !== undefined)
          s[`${name}__hll`] = maxRegisters(s[`${name}__hll`] as string | null, [oracleRegister(value)]);
        continue;
      }
      const text = r.num[m.field];
      if (text === undefined) continue;
      const x = scaled(text);
      const col = `${name}__${m.fn}`;
      const had = s[col] as bigint | null;
      if (m.fn === 'sum') s[col] = had! + x;
      if (m.fn === 'min') s[col] = had === null || x < had ? x : had;
      if (m.fn === 'max') s[col] = had === null || x > had ? x : had;
      if (m.fn === 'avg') {
        (s[`${name}__sum`] as bigint) += x;
        (s[`${name}__count`] as bigint) += SCALE;
      }
    }
  }
  return sortOracle([...groups.values()]);
}

/** Rows of a batch and of an increment, combined group by group: counts and sums add, min and max pick. */
function mergeOracle(v: View, a: readonly OracleRow[], b: readonly OracleRow[]): OracleRow[] {
  const groups = new Map<string, OracleRow>();
  for (const r of [...a, ...b]) {
    const key = JSON.stringify([r.bucket, r.dims]);
    const g = groups.get(key);
    if (!g) {
      groups.set(key, { bucket: r.bucket, dims: [...r.dims], state: { ...r.state } });
      continue;
    }
    for (const [name, m] of Object.entries(v.metrics)) {
      if (m.fn === 'distinct') {
        const col = `${name}__hll`;
        g.state[col] = maxRegisters(g.state[col] as string | null, r.state[col] as string | null);
        continue;
      }
      for (const part of m.fn === 'avg' ? ['sum', 'count'] : [m.fn]) {
        const col = `${name}__${part}`;
        const x = (g.state[col] ?? null) as bigint | null;
        const y = (r.state[col] ?? null) as bigint | null;
        g.state[col] =
          part === 'min' || part === 'max' ? (x === null ? y : y === null ? x : (part === 'min' ? y < x : y > x) ? y : x) : x! + y!;
      }
    }
  }
  return sortOracle([...groups.values()]);
}

/** By bucket, then dimensions: null first, then by code units. */
function sortOracle<T extends { bucket: number; dims: (string | null)[] }>(rows: T[]): T[] {
  const cmp = (a: string | null, b: string | null) => (a === b ? 0 : a === null ? -1 : b === null ? 1 : a < b ? -1 : 1);
  return rows.sort((a, b) => a.bucket - b.bucket || a.dims.reduce((acc, x, i) => acc || cmp(x, b.dims[i] ?? null), 0));
}

const viewBucket = (v: View) => (r: RawRecord) => Math.floor(r.ts / GRAIN[v.grain]!) * GRAIN[v.grain]!;
const viewDims = (v: View) => (r: RawRecord) => v.dimensions.map((d) => r.fields[d] ?? null);

// ------------------------------------------------------------------- DuckDB

let instance: DuckDBInstance;
let db: DuckDBConnection;
let dir: string;
let runNo = 0;

beforeAll(async () => {
  instance = await DuckDBInstance.create(':memory:', {
    autoinstall_known_extensions: 'false',
    autoload_known_extensions: 'false',
    threads: '1',
  });
  db = await instance.connect();
  dir = mkdtempSync(join(tmpdir(), 'tandem-sql-'));
});

afterAll(() => {
  db?.closeSync();
  instance?.closeSync();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Writes records as gzip NDJSON archive objects, spread over `fileOf` (some files may be empty). */
function writeArchive(records: readonly RawRecord[], fileOf: readonly number[], files: number): string[] {
  const runDir = join(dir, `run-${++runNo}`);
  mkdirSync(runDir);
  const lines: string[][] = Array.from({ length: files }, () => []);
  for (const [i, r] of records.entries()) lines[(fileOf[i] ?? 0) % files]!.push(JSON.stringify(r));
  return lines.map((ls, f) => {
    const path = join(runDir, `shard-${f}.json.gz`);
    writeFileSync(path, gzipSync(ls.map((l) => `${l}\n`).join('')));
    return path;
  });
}

/** Runs the compiled view; rows zipped with `outputColumns` (by position, as a batch loader reads them). */
async function runView(
  v: View,
  files: readonly string[],
  cutoff: number,
  horizonMs: number,
  since?: number,
): Promise<Record<string, string | null>[]> {
  const options = { dialect: 'duckdb', cutoff, horizonMs, source: duckdbSource(files), ...(since === undefined ? {} : { since }) } as const;
  const rowsOf = async (sql: string) => {
    const reader = await db.runAndReadAll(sql);
    const columns = outputColumns(v);
    expect(reader.columnCount).toBe(columns.length);
    return reader.getRowsJson().map((row) => Object.fromEntries(columns.map((c, i) => [c, row[i] === null ? null : String(row[i])])));
  };
  const rows = await rowsOf(compileView(v, options));
  // The same rows when the copies that count are selected first into a table and the view aggregates that (duckdb.ts).
  await db.run(`CREATE OR REPLACE TEMP TABLE counted_lines AS ${compileCounted(options)}`);
  expect(await rowsOf(compileView(v, { ...options, source: 'counted_lines', counted: true }))).toEqual(rows);
  // And when the lines are a table, less the row ids of the copies the rule drops (duckdb.ts does that).
  const table = { ...options, source: 'lines_table' };
  await db.run(`CREATE OR REPLACE TEMP TABLE lines_table AS SELECT * FROM ${options.source}`);
  await db.run(`CREATE OR REPLACE TEMP TABLE dropped_lines AS ${compileDropped(table)}`);
  expect(await rowsOf(compileView(v, { ...options, source: countedSource(table, 'dropped_lines'), counted: true }))).toEqual(rows);
  // And when the table keeps only the map entries the view reads, as columns of their own (duckdb.ts, knowing the
  // run's views): here of this view and another, so the columns are not the view's alone.
  const flat = flatColumns([v, OTHER_VIEW]);
  await db.run(
    `CREATE OR REPLACE TEMP TABLE flat_lines AS SELECT id, ts, arrival, shard, seq, ${flatColumnItems(flat).join(', ')} FROM lines_table`,
  );
  const flatTable = { ...options, source: 'flat_lines' };
  await db.run(`CREATE OR REPLACE TEMP TABLE flat_dropped AS ${compileDropped(flatTable)}`);
  const source = countedSource(flatTable, 'flat_dropped', flat);
  expect(await rowsOf(compileView(v, { ...options, source, counted: true, columns: flat }))).toEqual(rows);
  return rows;
}

/** SQL rows in the oracle's shape (values in 10^-9 units). */
function sqlAsOracle(v: View, rows: readonly Record<string, string | null>[]): OracleRow[] {
  return rows.map((row) => {
    const state: OracleState = {};
    for (const c of outputColumns(v).slice(1 + v.dimensions.length))
      state[c] = row[c] == null ? null : c.endsWith('__hll') ? sqlRegisters(row[c]!) : scaled(row[c]!);
    return { bucket: Number(row.bucket), dims: v.dimensions.map((d) => row[d] ?? null), state };
  });
}

const archiveCase = fc.record({
  view: genView,
  horizonMs: genHorizon,
  events: fc.array(genEvent, { maxLength: 40, size: 'max' }),
  fileOf: fc.array(fc.nat(3), { minLength: 40, maxLength: 40 }),
  files: fc.integer({ min: 0, max: 4 }),
  /** Where the cutoff falls, as a fraction of the arrival span (> 1: after every record). */
  cutAt: fc.noBias(fc.integer({ min: 0, max: 120 })).map((p) => p / 100),
  sinceAt: fc.noBias(fc.integer({ min: 0, max: 100 })).map((p) => p / 100),
  /** Or `since` exactly on a record's arrival, or H after it: the bounds of the increment's read range. */
  sinceOn: fc.option(fc.record({ record: fc.nat(40), plusH: fc.boolean() })),
});

function span(records: readonly RawRecord[]): { first: number; last: number } {
  return { first: records[0]?.arrival ?? T0, last: records.at(-1)?.arrival ?? T0 };
}

describe('compileView (duckdb dialect) on DuckDB', () => {
  it(
    'equals the oracle: the dedup rule with horizon H, arrival < cutoff, ' + 'view filter, groups, exact decimals; increments compose',
    async () => {
      await fc.assert(
        fc.asyncProperty(archiveCase, async (c) => {
          const v = c.view;
          const H = c.horizonMs;
          const records = toRecords(c.events);
          const { first, last } = span(records);
          const cutoff = Math.floor(first + c.cutAt * (last - first + 1));
          const on =
            c.sinceOn && records.length > 0 ? records[c.sinceOn.record % records.length]!.arrival + (c.sinceOn.plusH ? H : 0) : null;
          const since = on === null ? Math.floor(first + c.sinceAt * (cutoff - first)) : Math.min(on, cutoff);
          const files = records.length === 0 && c.files === 0 ? [] : writeArchive(records, c.fileOf, Math.max(1, c.files));
          const groups = (events: readonly RawRecord[]) => oracleGroups(v, events, viewBucket(v), viewDims(v));

          const rebuild = sqlAsOracle(v, await runView(v, files, cutoff, H));
          expect(rebuild).toEqual(groups(counted(records, H, cutoff)));

          const increment = sqlAsOracle(v, await runView(v, files, cutoff, H, since));
          expect(increment).toEqual(groups(counted(records, H, cutoff, since)));

          // rebuild(since) (+) increment(since, cutoff) == rebuild(cutoff), the increment over only
          // the records that arrived from rawReadRange's lower bound (what an engine reads of the archive).
          const { from } = rawReadRange(cutoff, H, since);
          const tail = records.filter((r) => r.arrival >= from!);
          const tailFiles = writeArchive(tail, c.fileOf, Math.max(1, c.files));
          const atSince = sqlAsOracle(v, await runView(v, files, since, H));
          const incrementOfTail = sqlAsOracle(v, await runView(v, tailFiles, cutoff, H, since));
          expect(incrementOfTail).toEqual(increment);
          expect(mergeOracle(v, atSince, incrementOfTail)).toEqual(rebuild);

          const counts = (await db.runAndReadAll(countSql('duckdb', duckdbSource(files), cutoff))).getRowObjectsJson()[0]!;
          const before = records.filter((r) => r.arrival < cutoff);
          expect({ records: Number(counts.records), ids: Number(counts.ids) }).toEqual({
            records: before.length,
            ids: new Set(before.map((r) => r.id)).size,
          });
        }),
        { numRuns: RUNS },
      );
    },
  );

  it('fields and dimensions whose names differ only in case keep their own values (issue 19, item 6)', async () => {
    const v = view({
      name: 'cased',
      grain: 'day',
      dimensions: ['country', 'Country'],
      metrics: { total: sum('amount'), Total: sum('Amount') },
    });
    const records = [0, 1].map((i) =>
      toRawRecord(
        { id: `e${i}`, type: 't', ts: T0, amount: 1, Amount: 100, country: 'FR', Country: 'US' },
        T0 + i,
        'shardId-0',
        String(i + 1),
      ),
    );
    const files = writeArchive(records, [0, 0], 1);
    expect(await runView(v, files, T0 + 10, DAY)).toEqual([
      {
        bucket: String(Math.floor(T0 / DAY) * DAY),
        country: 'FR',
        Country: 'US',
        total__sum: '2.000000000',
        Total__sum: '200.000000000',
      },
    ]);
  });

  it('batch before a window-aligned cutoff + aggregate after it, merged and shaped, equals the oracle over all records', async () => {
    const splitCase = fc.record({
      base: archiveCase,
      windowMs: fc.constantFrom(1_000, 60_000, 5 * MINUTE),
      queryGrain: fc.constantFrom<QueryGrain>('minute', 'hour', 'day', 'all'),
      groupByPick: fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
    });
    await fc.assert(
      fc.asyncProperty(splitCase, async ({ base: c, windowMs, queryGrain, groupByPick }) => {
        const v = c.view;
        const H = c.horizonMs;
        const records = toRecords(c.events);
        const { first, last } = span(records);
        const cutoff = Math.floor((first + c.cutAt * (last - first + 1)) / windowMs) * windowMs;
        const files = writeArchive(records, c.fileOf, Math.max(1, c.files));

        // Batch side: the SQL over the whole archive, cut at the cutoff.
        const batchRows: Row[] = (await runView(v, files, cutoff, H)).map((row) => ({
          bucket: Number(row.bucket),
          dims: v.dimensions.map((d) => row[d] ?? null),
          // As the batch engine reads them (engine.ts toBatchRows): a sketch's register list to its canonical text.
          state: stateFromColumns(
            v,
            Object.fromEntries(Object.entries(row).map(([k, x]) => [k, k.endsWith('__hll') ? columnFromSql('hll', x) : x])),
          ),
        }));
        // Speed side: the copies after the cutoff that count under the same rule (the contract of the speed layer's dedup).
        const everything = counted(records, H, Number.POSITIVE_INFINITY);
        const after = everything.filter((r) => r.arrival >= cutoff);
        const deltas = aggregate([v], after, windowMs);

        const merged = mergeRows(v, batchRows, deltas, cutoff);
        const asOracle = merged.map((r) => ({
          bucket: r.bucket,
          dims: [...r.dims],
          state: Object.fromEntries(
            Object.entries(stateToColumns(v, r.state)).map(([k, x]) => [
              k,
              // A sketch's canonical text, decoded to its registers; decimals in 10^-9 units.
              x === null
                ? null
                : k.endsWith('__hll')
                  ? maxRegisters(parseSketch(x)?.entries() ?? null)
                  : scaled(new DecimalJs(x).toFixed(9)),
            ]),
          ),
        }));
        expect(asOracle).toEqual(oracleGroups(v, everything, viewBucket(v), viewDims(v)));

        // Shaped as GET /views/{name} answers, at a random grain and grouping.
        const events = everything.filter((r) => passes(v, r));
        const buckets = events.map(viewBucket(v));
        const from = Math.floor(Math.min(T0 - 4 * DAY, ...buckets) / DAY) * DAY;
        const grain = queryGrain === 'all' || GRAIN[queryGrain]! >= GRAIN[v.grain]! ? queryGrain : v.grain;
        const spec: QuerySpec = { from, to: T0 + 2 * DAY, grain, groupBy: v.dimensions.filter((_, i) => groupByPick[i]), filters: {} };
        expect(shapeRows(v, spec, merged)).toEqual(oracleShape(v, spec, events));
      }),
      { numRuns: RUNS },
    );
  });
});

const Exact = DecimalJs.clone({ precision: 60, rounding: DecimalJs.ROUND_HALF_EVEN });

/** The response rows of the contract, computed straight from the counted events. */
function oracleShape(v: View, spec: QuerySpec, events: readonly RawRecord[]): Record<string, string | number | null>[] {
  const rollup = (r: RawRecord) => (spec.grain === 'all' ? spec.from : Math.floor(r.ts / GRAIN[spec.grain]!) * GRAIN[spec.grain]!);
  const groups = oracleGroups(v, events, rollup, (r) => spec.groupBy.map((d) => r.fields[d] ?? null));
  const number = (x: bigint) => Number(unscaled(x));
  return groups.map((g) => {
    const out: Record<string, string | number | null> = { bucket: new Date(g.bucket).toISOString() };
    spec.groupBy.forEach((d, i) => {
      out[d] = g.dims[i] ?? null;
    });
    for (const [name, m] of Object.entries(v.metrics)) {
      const s = g.state;
      if (m.fn === 'avg') {
        const n = (s[`${name}__count`] as bigint) / SCALE;
        out[name] = n === 0n ? null : new Exact(unscaled(s[`${name}__sum`] as bigint)).div(n.toString()).toNumber();
      } else if (m.fn === 'distinct') {
        // The estimate is hll.ts's formula over the oracle's registers (what is under test is the registers).
        const regs = s[`${name}__hll`] as string | null;
        out[name] = estimate(regs === null ? null : Sketch.of(regs.split(',').map((p) => p.split(':').map(Number) as [number, number])));
      } else {
        const x = s[`${name}__${m.fn}`] as bigint | null | undefined;
        out[name] = x === null || x === undefined ? null : number(x);
      }
    }
    return out;
  });
}
