/**
 * The DuckDB engine: stages the raw objects of the session's arrival hours
 * from S3 to a local cache (stage.ts), parses their lines once per session into
 * an in-memory table while the listing goes on (only the columns the compiled
 * SQL reads, plus the object each line came from), decides which copies count
 * once per dedup horizon and since (the row ids of those that do not), and runs
 * every view's compiled SQL over the rest, a rebuild's first view in parts
 * loaded as they come, with @duckdb/node-api. Extensions are never downloaded (json is built in; a
 * missing one fails at once instead of reaching for the network).
 */

import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { DuckDBInstance } from '@duckdb/node-api';
import { HOUR_MS } from '../archive/layout.ts';
import { BATCH_PARTITION_MS } from '../core/keys.ts';
import { columnFromSql, stateColumns } from '../core/metrics.ts';
import {
  COMPACT_COLUMNS,
  compileDropped,
  compileView,
  countedSource,
  duckdbParquetSource,
  duckdbSource,
  flatColumnItems,
  flatColumns,
  literal,
} from '../core/sql.ts';
import type { View } from '../core/views.ts';
import { type CompactedShard, type CompactResult, compactObjectKey } from './compact.ts';
import {
  type BatchEngine,
  type BatchRow,
  type CompactedRead,
  type EngineSession,
  type EngineStats,
  type ObjectRead,
  type OpenOptions,
  type RunViewOptions,
  type ViewPart,
  viewReadFrom,
} from './engine.ts';
import { type StagedObject, stageObjects } from './stage.ts';
import { checkCompleteness, type ExpectedObject, IncompleteArchiveError } from './verify.ts';

export interface DuckDbEngineOptions {
  readonly s3: S3Client;
  readonly rawBucket: string;
  /** Staging cache directory (kept between runs). */
  readonly stageDir: string;
  /** Downloads in flight. @default 16 */
  readonly concurrency?: number;
  /** Counted copies per part when a view is computed in parts (runViewParts; tests make it small). @default 60,000 */
  readonly partRows?: number;
}

export interface DuckDb {
  /** Runs one statement; rows as text values (BIGINT and DECIMAL as exact text, never doubles). */
  query(sql: string): Promise<(string | null)[][]>;
  close(): void;
}

/** A fresh in-memory DuckDB that never downloads extensions. */
export async function openDuckDb(): Promise<DuckDb> {
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  await connection.run('SET autoinstall_known_extensions = false');
  return {
    async query(sql) {
      const reader = await connection.runAndReadAll(sql);
      return reader.getRowsJson().map((r) => r.map((v) => (v === null ? null : String(v))));
    },
    close() {
      connection.closeSync();
      instance.closeSync();
    },
  };
}

/** The bucket span of a part when a view's rows are read as JSON text (`viewRows`): a day. */
const ROWS_PART_MS = 86_400_000;

/**
 * The batch rows of a compiled view statement (columns c0 = bucket, c1..c<dims> = dimension values, then the state
 * columns in stateColumns order), in no particular order. DuckDB hands them over as one JSON text per day of buckets:
 * the day's columns, each a JSON array (values as text, the dimension values escaped by to_json), which JSON.parse
 * reads in one native pass. The node API's conversion value by value, then a row object made from each array, took
 * longer than the view's SQL on a rebuild's million rows, and a JSON text per row built in SQL by concatenation took
 * DuckDB longer than aggregating each column into one list (measured: 2x on page_views over 7 days).
 */
export async function viewRows(db: DuckDb, sql: string, view: View): Promise<BatchRow[]> {
  const state = stateColumns(view);
  const nd = view.dimensions.length;
  const width = 1 + nd + state.length;
  const lists = Array.from({ length: width }, (_, i) => `list(CAST(c${i} AS VARCHAR))`);
  // Parts by day of bucket: a parallel hash aggregate (numbering rows for even parts was a serial window, 1 s more).
  const parts = await db.query(`SELECT CAST(to_json([${lists.join(', ')}]) AS VARCHAR)\nFROM (\n${sql}\n)\nGROUP BY c0 // ${ROWS_PART_MS}`);
  const out: BatchRow[] = [];
  // One dims array per distinct dimension values, shared by their rows: a rebuild's rows repeat a few thousand
  // combinations at most, and the steps after this one key rows by their dims' JSON (keys.ts sharedDimsKey), made
  // once per array. The key: each value as its length, a colon and itself, null as a NUL (no two lists share one).
  const shared = new Map<string, (string | null)[]>();
  for (const [part] of parts) {
    if (part === null || part === undefined) continue;
    const columns = JSON.parse(part) as unknown;
    if (!Array.isArray(columns) || columns.length !== width || !columns.every((c) => Array.isArray(c) && c.length === columns[0].length))
      throw new Error(`view ${view.name}: a result part is not ${width} columns of equal length`);
    const [buckets, ...rest] = columns as (string | null)[][];
    const dims = rest.slice(0, nd);
    const values = rest.slice(nd);
    for (let i = 0; i < buckets!.length; i++) {
      const text = buckets![i];
      const bucket = text === null || text === undefined ? Number.NaN : Number(text);
      if (!Number.isSafeInteger(bucket)) throw new Error(`view ${view.name}: a result row's bucket is ${JSON.stringify(text)}`);
      let key = '';
      for (let k = 0; k < nd; k++) {
        const x = dims[k]![i] ?? null;
        key += x === null ? '\u0000' : `${x.length}:${x}`;
      }
      let d = shared.get(key);
      if (!d) {
        d = new Array<string | null>(nd);
        for (let k = 0; k < nd; k++) d[k] = dims[k]![i] ?? null;
        shared.set(key, d);
      }
      const v: Record<string, string | null> = {};
      // Decimals to plain text; a sketch's register list to its canonical text (core/hll.ts).
      for (let k = 0; k < state.length; k++) v[state[k]!.column] = columnFromSql(state[k]!.component, values[k]![i]);
      out.push({ bucket, dims: d, values: v });
    }
  }
  return out;
}

/** Counted copies per part of a view computed in parts (runViewParts), and the most parts. */
export const PART_ROWS = 60_000;
const MAX_PARTS = 8;

/**
 * Row filters on `ts` splitting a view's counted copies into parts of whole batch-view partitions (each bound a
 * partition start of the view's grain, so a bucket, hence a partition, never straddles two parts), of about equal
 * counts. Every row falls in exactly one part: the first has no lower bound, the last no upper one and takes a null
 * ts too (the one statement would fail on it, so the parts do). One part (no filter) for small inputs.
 */
export async function partFilters(db: DuckDb, table: string, grain: View['grain'], partRows = PART_ROWS): Promise<(string | undefined)[]> {
  const span = BATCH_PARTITION_MS[grain];
  // ts >= 0: there `ts - ts % span` is the partition's start; an earlier ts (none in practice) falls in the first part.
  const counts = (await db.query(`SELECT ts - ts % ${span} AS p, COUNT(*) FROM ${table} WHERE ts >= 0 GROUP BY 1 ORDER BY 1`)).map(
    ([p, n]) => [Number(p), Number(n)] as const,
  );
  const total = counts.reduce((a, [, n]) => a + n, 0);
  const parts = Math.min(MAX_PARTS, Math.ceil(total / partRows), counts.length);
  if (parts <= 1) return [undefined];
  const bounds: number[] = [];
  let seen = 0;
  for (const [p, n] of counts) {
    if (seen >= (total * (bounds.length + 1)) / parts && bounds.length < parts - 1) bounds.push(p);
    seen += n;
  }
  if (bounds.length === 0) return [undefined];
  return [
    `ts < ${bounds[0]}`,
    ...bounds.slice(1).map((b, i) => `ts >= ${bounds[i]} AND ts < ${b}`),
    `(ts >= ${bounds[bounds.length - 1]} OR ts IS NULL)`,
  ];
}

/** file_index of a session's Parquet lines: this plus the file's position (raw objects count from 0, far below). */
const PARQUET_INDEX = 1 << 30;

/** The session's table of parsed archive lines. */
const LINES_TABLE = 'raw_lines';

/**
 * The archive columns the compiled SQL reads (core/sql.ts compileView: the
 * dedup order id/arrival/shard/seq, the bucket ts, the maps). `type` is never
 * read by a view. A column the compiler starts to use fails every query at
 * once ("column not found"), never silently.
 */
const LINE_COLUMNS = COMPACT_COLUMNS.map((c) => c.name);

/**
 * The session's lines: the raw objects' JSON (file_index = position in `json`)
 * and the compacted hours' Parquet (file_index = json.length + position in
 * `parquet`). file_index is DuckDB's virtual column: small, unlike a path.
 */
function linesSelect(json: readonly string[], parquet: readonly string[]): string {
  const parts: string[] = [];
  const columns = LINE_COLUMNS.join(', ');
  if (json.length > 0) parts.push(`SELECT CAST(file_index AS INTEGER) AS file_index, ${columns} FROM ${duckdbSource(json)}`);
  if (parquet.length > 0)
    parts.push(`SELECT CAST(file_index AS INTEGER) + ${json.length} AS file_index, ${columns} FROM ${duckdbParquetSource(parquet)}`);
  if (parts.length === 0) parts.push(`SELECT CAST(NULL AS INTEGER) AS file_index, ${columns} FROM ${duckdbSource([])}`);
  return parts.join('\nUNION ALL\n');
}

/**
 * Bytes of the column chunks of `columns` in each Parquet file (parquet_metadata's
 * total_compressed_size, nested leaves such as `num, key_value, key` counted under their
 * top-level column): what Athena bills for reading those columns of the file.
 */
async function columnChunkBytes(db: DuckDb, files: readonly string[], columns: readonly string[]): Promise<number[]> {
  if (files.length === 0) return [];
  const rows = await db.query(
    `SELECT file_name, SUM(total_compressed_size) FROM parquet_metadata([${files.map(literal).join(', ')}])\n` +
      `WHERE split_part(path_in_schema, ', ', 1) IN (${columns.map(literal).join(', ')}) GROUP BY 1`,
  );
  const by = new Map(rows.map(([f, n]) => [f, Number(n)]));
  return files.map((f) => by.get(f) ?? 0);
}

/**
 * Compacts one arrival hour: stages its raw objects, checks them object by object against the
 * archive's manifest (the completeness check, for this hour only: the last time these objects
 * are checked one by one), writes the lines as Parquet sorted by (arrival, shard, seq) and puts
 * the object at compact.ts compactObjectKey(hour). Throws IncompleteArchiveError on a hole.
 */
async function compactHour(opts: DuckDbEngineOptions, hour: number, expected: readonly ExpectedObject[]): Promise<CompactResult> {
  const end = hour + HOUR_MS;
  const staged = await stageObjects(opts.s3, opts.rawBucket, opts.stageDir, end, {
    from: hour,
    ...(opts.concurrency !== undefined && { concurrency: opts.concurrency }),
  });
  const objects = staged.objects;
  const db = await openDuckDb();
  const out = join(opts.stageDir, 'compact-out', `${hour}-${randomBytes(4).toString('hex')}.parquet`);
  try {
    await db.query(
      `CREATE TEMP TABLE ${LINES_TABLE} AS ${linesSelect(
        objects.map((o) => o.path),
        [],
      )}`,
    );
    const counts = objects.map(() => ({ lines: 0, covered: 0 }));
    const rows = await db.query(`SELECT file_index, COUNT(*), COUNT(*) FILTER (WHERE arrival < ${end}) FROM ${LINES_TABLE} GROUP BY 1`);
    for (const [index, lines, covered] of rows)
      if (index !== null) counts[Number(index)] = { lines: Number(lines), covered: Number(covered) };
    const reads = new Map<string, ObjectRead>(objects.map((o, i) => [o.key, { ...counts[i]!, bytes: o.size }]));
    const result = checkCompleteness(expected, reads);
    if (!result.complete) throw new IncompleteArchiveError(result);
    await mkdir(join(opts.stageDir, 'compact-out'), { recursive: true });
    // Arrival order: every view's window sorts by id over many hours anyway, while arrival-sorted row
    // groups carry tight arrival min/max statistics, so a look-back bound inside the hour skips row groups.
    await db.query(
      `COPY (SELECT ${LINE_COLUMNS.join(', ')} FROM ${LINES_TABLE} ORDER BY arrival, shard, seq) TO ${literal(out)} ` +
        '(FORMAT PARQUET, COMPRESSION ZSTD)',
    );
    const body = await readFile(out);
    await opts.s3.send(new PutObjectCommand({ Bucket: opts.rawBucket, Key: compactObjectKey(hour), Body: body }));
    const shards: Record<string, CompactedShard> = {};
    const lineCounts = new Map(
      (await db.query(`SELECT shard, COUNT(*) FROM ${LINES_TABLE} GROUP BY 1`)).map(([s, n]) => [String(s), Number(n)] as const),
    );
    const recorded = new Map<string, number>();
    for (const e of expected) recorded.set(e.shard, (recorded.get(e.shard) ?? 0) + e.lines);
    const objectCounts = new Map<string, number>();
    for (const o of objects) {
      const shard = o.key.split('/')[3]!;
      objectCounts.set(shard, (objectCounts.get(shard) ?? 0) + 1);
    }
    for (const shard of new Set([...lineCounts.keys(), ...recorded.keys(), ...objectCounts.keys()])) {
      shards[shard] = { lines: lineCounts.get(shard) ?? 0, recorded: recorded.get(shard) ?? 0, objects: objectCounts.get(shard) ?? 0 };
    }
    return { shards, bytes: body.length };
  } finally {
    db.close();
    await rm(out, { force: true });
  }
}

export function duckDbEngine(opts: DuckDbEngineOptions): BatchEngine {
  return {
    name: 'duckdb',
    compactor: { compactHour: (hour, expected) => compactHour(opts, hour, expected) },
    async open(cutoff: number, _runId: string, options: OpenOptions = {}): Promise<EngineSession> {
      const from = options.from ?? null;
      const t0 = performance.now();
      const own = await openDuckDb();
      // One statement at a time on the connection: the staging's parses, a view's next part and the next view's SQL
      // may be asked for at once.
      let queue: Promise<unknown> = Promise.resolve();
      const db: DuckDb = {
        query(sql) {
          const run = queue.then(() => own.query(sql));
          queue = run.catch(() => undefined);
          return run;
        },
        close: () => own.close(),
      };
      // The lines are parsed while the rest is listed and staged: each batch of staged objects (stage.ts onStaged)
      // is appended to the session's table at once, file_index counted on across batches; the objects of the table
      // are exactly the objects the listing returned, as before.
      const objects: StagedObject[] = [];
      let parquet: readonly StagedObject[] = [];
      const parses: Promise<unknown>[] = [];
      const parse = (sql: string) => {
        const p = db.query(sql);
        p.catch(() => undefined);
        parses.push(p);
      };
      // With the run's views known, the table keeps only the map entries they read, as columns of their own: building
      // and storing two maps per line was most of the parse of a compacted hour's Parquet.
      const flat = options.views ? flatColumns(options.views) : undefined;
      const kept = flat ? COMPACT_COLUMNS.filter((c) => c.name !== 'fields' && c.name !== 'num') : COMPACT_COLUMNS;
      const columns = [...kept.map((c) => c.name), ...(flat ? flatColumnItems(flat) : [])].join(', ');
      const flatTypes = flat ? [...flat.fields.values(), ...flat.num.values()].map((c) => `${c} VARCHAR`) : [];
      parse(
        `CREATE TEMP TABLE ${LINES_TABLE} (${['file_index INTEGER', ...kept.map((c) => `${c.name} ${c.duckdb}`), ...flatTypes].join(', ')})`,
      );
      let staged: Awaited<ReturnType<typeof stageObjects>>;
      try {
        staged = await stageObjects(opts.s3, opts.rawBucket, opts.stageDir, cutoff, {
          from,
          compacted: new Set(options.compacted?.keys() ?? []),
          ...(options.recorded && { recorded: options.recorded }),
          ...(opts.concurrency !== undefined && { concurrency: opts.concurrency }),
          onStaged: (batch) => {
            const offset = objects.length;
            objects.push(...batch);
            parse(
              `INSERT INTO ${LINES_TABLE} SELECT CAST(file_index AS INTEGER) + ${offset}, ${columns} ` +
                `FROM ${duckdbSource(batch.map((o) => o.path))}`,
            );
          },
          onStagedParquet: (files) => {
            parquet = files;
            parse(
              `INSERT INTO ${LINES_TABLE} SELECT CAST(file_index AS INTEGER) + ${PARQUET_INDEX}, ${columns} ` +
                `FROM ${duckdbParquetSource(files.map((o) => o.path))}`,
            );
          },
        });
      } catch (e) {
        await Promise.allSettled(parses);
        own.close();
        throw e;
      }
      const stats: EngineStats = {
        objects: objects.length + parquet.length,
        downloaded: staged.downloaded,
        downloadedBytes: staged.downloadedBytes,
        stageMs: performance.now() - t0,
        parseMs: 0,
      };
      let loaded: Promise<void> | undefined;
      const counted = new Map<string, Promise<string>>();
      // Which copies count is the same for every view with the same horizon and since: decided once (the window
      // over every copy of every id is most of a view's cost), then each view aggregates the counted copies.
      const countedOf = async (view: View, options: RunViewOptions) => {
        viewReadFrom({ cutoff, from }, view, options);
        await load();
        const compile = {
          dialect: 'duckdb',
          cutoff,
          horizonMs: options.horizonMs,
          ...(options.since !== undefined && { since: options.since }),
          ...(flat && { columns: flat }),
        } as const;
        const key = `${options.horizonMs}|${options.since ?? ''}`;
        let table = counted.get(key);
        if (!table) {
          // Only the copies the rule drops are kept (row ids: a few per cent of the lines); the counted copies are
          // the session's lines less those, so no line is copied with its maps into a second table.
          table = (async () => {
            const name = `dropped_${counted.size}`;
            const of = { ...compile, source: LINES_TABLE };
            await db.query(`CREATE TEMP TABLE ${name} AS ${compileDropped(of)}`);
            return countedSource(of, name, flat);
          })();
          counted.set(key, table);
        }
        return { compile, table: await table };
      };
      // Parsing the lines is most of a view's cost: done once, for all the views of the session (started while staging).
      const load = () => {
        loaded ??= (async () => {
          await Promise.all(parses);
          stats.parseMs = performance.now() - t0;
        })();
        return loaded;
      };
      return {
        engine: 'duckdb',
        cutoff,
        from,
        stats,
        async objectReads() {
          await load();
          // Every staged object is reported, an empty one with 0 lines (then a mismatch, not a missing object).
          const counts = objects.map(() => ({ lines: 0, covered: 0 }));
          const rows = await db.query(
            `SELECT file_index, COUNT(*), COUNT(*) FILTER (WHERE arrival < ${cutoff}) FROM ${LINES_TABLE} ` +
              `WHERE file_index < ${PARQUET_INDEX} GROUP BY 1`,
          );
          for (const [index, lines, covered] of rows) counts[Number(index)] = { lines: Number(lines), covered: Number(covered) };
          return new Map<string, ObjectRead>(objects.map((o, i) => [o.key, { ...counts[i]!, bytes: o.size }]));
        },
        async compactedReads() {
          await load();
          const bytes = await columnChunkBytes(
            db,
            parquet.map((o) => o.path),
            LINE_COLUMNS,
          );
          // An hour may have several files (an Athena UNLOAD writes them in parallel): sums per hour.
          const out = new Map<number, { shards: Map<string, { lines: number; covered: number }>; bytes: number }>();
          parquet.forEach((o, i) => {
            const h = out.get(o.hour) ?? { shards: new Map(), bytes: 0 };
            out.set(o.hour, { ...h, bytes: h.bytes + bytes[i]! });
          });
          const rows = await db.query(
            `SELECT file_index, shard, COUNT(*), COUNT(*) FILTER (WHERE arrival < ${cutoff}) FROM ${LINES_TABLE} ` +
              `WHERE file_index >= ${PARQUET_INDEX} GROUP BY 1, 2`,
          );
          for (const [index, shard, lines, covered] of rows) {
            const o = parquet[Number(index) - PARQUET_INDEX]!;
            const shards = out.get(o.hour)!.shards;
            const s = shards.get(String(shard)) ?? { lines: 0, covered: 0 };
            shards.set(String(shard), { lines: s.lines + Number(lines), covered: s.covered + Number(covered) });
          }
          return out as Map<number, CompactedRead>;
        },
        async runView(view: View, options: RunViewOptions) {
          const { compile, table } = await countedOf(view, options);
          return viewRows(db, compileView(view, { ...compile, source: table, counted: true, ordered: false }), view);
        },
        async *runViewParts(view: View, options: RunViewOptions): AsyncGenerator<ViewPart> {
          const { compile, table } = await countedOf(view, options);
          const filters = await partFilters(db, table, view.grain, opts.partRows);
          const part = async (filter: string | undefined): Promise<ViewPart> => {
            const t = performance.now();
            const source = filter === undefined ? table : `(SELECT * FROM ${table} WHERE ${filter})`;
            const rows = await viewRows(db, compileView(view, { ...compile, source, counted: true, ordered: false }), view);
            return { rows, ms: performance.now() - t };
          };
          let next: Promise<ViewPart> | undefined = part(filters[0]);
          try {
            for (let i = 0; i < filters.length; i++) {
              const done = await next!;
              // The next part is computed while the caller works on this one.
              next = i + 1 < filters.length ? part(filters[i + 1]) : undefined;
              next?.catch(() => undefined);
              yield done;
            }
          } finally {
            // A caller that stops early (a failed load) must not leave a statement running on a session it closes next.
            await next?.catch(() => undefined);
          }
        },
        release() {
          // Dropped on DuckDB's threads (queued after every statement asked for so far), not by close on this one.
          for (const name of [LINES_TABLE, ...[...counted.keys()].map((_, i) => `dropped_${i}`)])
            db.query(`DROP TABLE IF EXISTS ${name}`).catch(() => undefined);
        },
        async close() {
          // A statement still queued or running (a part computed ahead) ends first.
          await queue;
          db.close();
        },
      };
    },
  };
}
