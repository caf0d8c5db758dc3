/**
 * Property tests of the SQL compiler against a real SQL engine: DuckDB, in
 * process, running the `duckdb` dialect over random events written as gzip
 * NDJSON archive lines, compared with an oracle written here (scaled BigInt
 * arithmetic, no project code in the arithmetic).
 *
 * (1) SQL over the archive == oracle (first copy by (arrival, seq) per id,
 *     arrival < cutoff, optionally first copy arrived >= since).
 * (2) SQL before a window-aligned cutoff + `aggregate` after it, merged by
 *     `mergeRows` and shaped by `shapeRows` == oracle over all records.
 */

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { Decimal as DecimalJs } from 'decimal.js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aggregate } from '../../functions/core/aggregate.ts';
import { stateFromColumns, stateToColumns } from '../../functions/core/metrics.ts';
import { mergeRows, type QuerySpec, type Row, shapeRows } from '../../functions/core/query.ts';
import { type RawRecord, toRawRecord } from '../../functions/core/record.ts';
import { compileView, countSql, duckdbSource, outputColumns } from '../../functions/core/sql.ts';
import type { QueryGrain } from '../../functions/core/time.ts';
import { type Metric, type View, view } from '../../functions/core/views.ts';

const RUNS = 200;

// ---------------------------------------------------------------- generators

const T0 = Date.UTC(2024, 4, 1, 10, 0, 0);
const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

/** Ids with quotes and non-ASCII: event data never reaches the SQL text. */
const IDS = [...Array.from({ length: 24 }, (_, i) => `e${i}`), "it's", 'a"b', 'é', '; DROP TABLE x'];
/** Field names, including SQL reserved words and names differing only in case. */
const FIELDS = ['country', 'Country', 'page', 'order', 'amount', 'load_ms', 'flag'] as const;
const DIMENSIONS = ['type', ...FIELDS] as const;
const METRIC_FIELDS = ['amount', 'load_ms', 'country'] as const;
const METRIC_NAMES = ['n', 'total', 'lo', 'hi', 'mean', 'from', 'group'] as const;
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
  readonly fields: Record<string, string | number | boolean | null>;
}

const genEvent: fc.Arbitrary<GenEvent> = fc.record({
  id: fc.constantFrom(...IDS),
  type: fc.constantFrom('purchase', 'page_view', 'signup'),
  lateness: fc.oneof(fc.integer({ min: -3 * DAY, max: HOUR }), fc.integer({ min: -2 * MINUTE, max: 0 })),
  tsAsIso: fc.boolean(),
  step: fc.oneof(fc.constantFrom(0, 0, 1), fc.integer({ min: 0, max: 20 * MINUTE })),
  fields: fc.dictionary(fc.constantFrom(...FIELDS), fieldValue, { maxKeys: FIELDS.length, size: 'max' }),
});

/** Events -> RawRecords through the same path as both layers (toRawRecord), in arrival order. */
function toRecords(events: readonly GenEvent[]): RawRecord[] {
  let arrival = T0;
  return events.map((e, i) => {
    arrival += e.step;
    const ts = arrival + e.lateness;
    const data = { ...e.fields, id: e.id, type: e.type, ts: e.tsAsIso ? new Date(ts).toISOString() : ts };
    // Every copy of an id on one shard, sequence numbers increasing with arrival.
    const shard = `shardId-00000000000${IDS.indexOf(e.id) % 2}`;
    return toRawRecord(data, arrival, shard, String(49_000 + i));
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
        fn: fc.constantFrom('count' as const, 'sum' as const, 'min' as const, 'max' as const, 'avg' as const),
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

/** The events a batch over arrival < cutoff counts: first copy per id by (arrival, seq), first copy at or after `since`. */
function firstCopies(records: readonly RawRecord[], cutoff: number, since = Number.NEGATIVE_INFINITY): RawRecord[] {
  const first = new Map<string, RawRecord>();
  for (const r of records) {
    const seen = first.get(r.id);
    if (!seen || r.arrival < seen.arrival || (r.arrival === seen.arrival && r.seq < seen.seq)) first.set(r.id, r);
  }
  return [...first.values()].filter((r) => r.arrival < cutoff && r.arrival >= since);
}

function passes(v: View, r: RawRecord): boolean {
  return Object.entries(v.filter ?? {}).every(([k, want]) => r.fields[k] === (typeof want === 'string' ? want : String(want)));
}

/** Per group: the value of each state column, in 10^-9 units (null: empty min/max). */
type OracleState = Record<string, bigint | null>;
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
      }
      groups.set(key, g);
    }
    const s = g.state;
    for (const [name, m] of Object.entries(v.metrics)) {
      if (m.fn === 'count') {
        s[`${name}__count`]! += SCALE;
        continue;
      }
      const text = r.num[m.field];
      if (text === undefined) continue;
      const x = scaled(text);
      const col = `${name}__${m.fn}`;
      if (m.fn === 'sum') s[col]! += x;
      if (m.fn === 'min') s[col] = s[col] === null || x < s[col]! ? x : s[col]!;
      if (m.fn === 'max') s[col] = s[col] === null || x > s[col]! ? x : s[col]!;
      if (m.fn === 'avg') {
        s[`${name}__sum`]! += x;
        s[`${name}__count`]! += SCALE;
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
async function runView(v: View, files: readonly string[], cutoff: number, since?: number): Promise<Record<string, string | null>[]> {
  const sql = compileView(v, { dialect: 'duckdb', cutoff, source: duckdbSource(files), ...(since === undefined ? {} : { since }) });
  const reader = await db.runAndReadAll(sql);
  const columns = outputColumns(v);
  expect(reader.columnCount).toBe(columns.length);
  return reader.getRowsJson().map((row) => Object.fromEntries(columns.map((c, i) => [c, row[i] === null ? null : String(row[i])])));
}

/** SQL rows in the oracle's shape (values in 10^-9 units). */
function sqlAsOracle(v: View, rows: readonly Record<string, string | null>[]): OracleRow[] {
  return rows.map((row) => {
    const state: OracleState = {};
    for (const c of outputColumns(v).slice(1 + v.dimensions.length)) state[c] = row[c] == null ? null : scaled(row[c]!);
    return { bucket: Number(row.bucket), dims: v.dimensions.map((d) => row[d] ?? null), state };
  });
}

const archiveCase = fc.record({
  view: genView,
  events: fc.array(genEvent, { maxLength: 40, size: 'max' }),
  fileOf: fc.array(fc.nat(3), { minLength: 40, maxLength: 40 }),
  files: fc.integer({ min: 0, max: 4 }),
  /** Where the cutoff falls, as a fraction of the arrival span (> 1: after every record). */
  cutAt: fc.noBias(fc.integer({ min: 0, max: 120 })).map((p) => p / 100),
  sinceAt: fc.noBias(fc.integer({ min: 0, max: 100 })).map((p) => p / 100),
});

function span(records: readonly RawRecord[]): { first: number; last: number } {
  return { first: records[0]?.arrival ?? T0, last: records.at(-1)?.arrival ?? T0 };
}

describe('compileView (duckdb dialect) on DuckDB', () => {
  it('equals the oracle: first copy per id by (arrival, seq), arrival < cutoff, view filter, groups, exact decimals', async () => {
    await fc.assert(
      fc.asyncProperty(archiveCase, async (c) => {
        const records = toRecords(c.events);
        const { first, last } = span(records);
        const cutoff = Math.floor(first + c.cutAt * (last - first + 1));
        const since = Math.floor(first + c.sinceAt * (cutoff - first));
        const files = records.length === 0 && c.files === 0 ? [] : writeArchive(records, c.fileOf, Math.max(1, c.files));

        const all = firstCopies(records, cutoff);
        expect(sqlAsOracle(c.view, await runView(c.view, files, cutoff))).toEqual(
          oracleGroups(c.view, all, viewBucket(c.view), viewDims(c.view)),
        );

        const recent = firstCopies(records, cutoff, since);
        expect(sqlAsOracle(c.view, await runView(c.view, files, cutoff, since))).toEqual(
          oracleGroups(c.view, recent, viewBucket(c.view), viewDims(c.view)),
        );

        const counts = (await db.runAndReadAll(countSql('duckdb', duckdbSource(files), cutoff))).getRowObjectsJson()[0]!;
        const before = records.filter((r) => r.arrival < cutoff);
        expect({ records: Number(counts.records), ids: Number(counts.ids) }).toEqual({
          records: before.length,
          ids: new Set(before.map((r) => r.id)).size,
        });
      }),
      { numRuns: RUNS },
    );
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
        const records = toRecords(c.events);
        const { first, last } = span(records);
        const cutoff = Math.floor((first + c.cutAt * (last - first + 1)) / windowMs) * windowMs;
        const files = writeArchive(records, c.fileOf, Math.max(1, c.files));

        // Batch side: the SQL over the whole archive, cut at the cutoff.
        const batchRows: Row[] = (await runView(v, files, cutoff)).map((row) => ({
          bucket: Number(row.bucket),
          dims: v.dimensions.map((d) => row[d] ?? null),
          state: stateFromColumns(v, row),
        }));
        // Speed side: what the dedup table lets through after the cutoff.
        const claimed = new Set(records.filter((r) => r.arrival < cutoff).map((r) => r.id));
        const after = records
          .filter((r) => r.arrival >= cutoff)
          .sort((a, b) => a.arrival - b.arrival || (a.seq < b.seq ? -1 : 1))
          .filter((r) => !claimed.has(r.id) && claimed.add(r.id));
        const deltas = aggregate([v], after, windowMs);

        const merged = mergeRows(v, batchRows, deltas, cutoff);
        const everything = firstCopies(records, Number.POSITIVE_INFINITY);
        const asOracle = merged.map((r) => ({
          bucket: r.bucket,
          dims: [...r.dims],
          state: Object.fromEntries(
            Object.entries(stateToColumns(v, r.state)).map(([k, x]) => [k, x === null ? null : scaled(new DecimalJs(x).toFixed(9))]),
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
        const n = s[`${name}__count`]! / SCALE;
        out[name] = n === 0n ? null : new Exact(unscaled(s[`${name}__sum`]!)).div(n.toString()).toNumber();
      } else {
        const x = s[`${name}__${m.fn}`];
        out[name] = x === null || x === undefined ? null : number(x);
      }
    }
    return out;
  });
}
