/**
 * Athena (AWS): the state machine runs every query (functions/contract/state-machine.ts: Start /
 * Poll / Stop states), so the Lambda only compiles their SQL over the Glue table of the raw archive
 * (partition projection on dt/hr, see core/sql.ts GLUE_*) and reads what they leave in S3: the
 * completeness query's CSV result and the views' UNLOAD parts (gzip JSON, every value as text:
 * decimals stay exact). What the Lambda still asks Athena goes through a port (AthenaQueries) whose
 * one adapter wraps the real client and retries throttling with backoff. Result encryption and the
 * bytes-scanned cutoff are properties of the workgroup.
 */

import {
  type AthenaClient,
  BatchGetQueryExecutionCommand,
  GetQueryExecutionCommand,
  ListQueryExecutionsCommand,
  StopQueryExecutionCommand,
} from '@aws-sdk/client-athena';
import { parseRawObjectKey } from '../archive/layout.ts';
import { BATCH_PARTITION_MS, pad13 } from '../core/keys.ts';
import { arrivalPartition, athenaSource, COMPACT_COLUMNS, compileView, hoursPredicate, literal, outputColumns } from '../core/sql.ts';
import type { View } from '../core/views.ts';
import { parseCompactKey } from './compact.ts';
import {
  type BatchEngine,
  type BatchRow,
  type CompactedRead,
  type ObjectRead,
  type RunViewOptions,
  readHours,
  toBatchRows,
} from './engine.ts';
import type { ExpectedObject } from './verify.ts';

const THROTTLED = new Set(['TooManyRequestsException', 'ThrottlingException']);
const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Retries a call while Athena throttles it: exponential backoff with full jitter, 8 attempts. */
export async function retryThrottled<T>(call: () => Promise<T>, sleep = defaultSleep, attempts = 8): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (e) {
      if (!THROTTLED.has((e as Error).name) || attempt + 1 >= attempts) throw e;
      await sleep(Math.random() * Math.min(10_000, 200 * 2 ** attempt));
    }
  }
}

/**
 * The Athena engine of the batch context: named so the steps take the state machine's path
 * (plan without the completeness query, compile / verify / parts / load / finish, stopping
 * queries on failure); never opened, since no query runs in the Lambda.
 */
export function athenaEngine(): BatchEngine {
  return {
    name: 'athena',
    open: () =>
      Promise.reject(
        new Error(
          'the Athena engine runs no query in the Lambda: the batch state machine runs them (compile, then its Start / Poll states)',
        ),
      ),
  };
}

/** A query of the workgroup still QUEUED or RUNNING, with its statement. */
export interface RunningQuery {
  readonly id: string;
  readonly sql: string;
}

/**
 * What the batch task Lambda asks Athena, the queries themselves being the state machine's: the
 * project's seam (tests implement it; athenaQueries adapts the real client).
 */
export interface AthenaQueries {
  /** A finished query's engine time, ms (0 when Athena gives none); no waiting. */
  statistics(id: string): Promise<{ engineMs: number }>;
  /** The queries still QUEUED or RUNNING among the workgroup's most recent ones. */
  running(workgroup: string): Promise<RunningQuery[]>;
  stop(id: string): Promise<void>;
}

export interface AthenaQueriesOptions {
  /** Pages of 50 of the workgroup's most recent queries that `running` looks at. @default 4 */
  readonly pages?: number;
  readonly sleep?: (ms: number) => Promise<void>;
}

/** The port over the real Athena client; every call retried while Athena throttles it. */
export function athenaQueries(athena: AthenaClient, opts: AthenaQueriesOptions = {}): AthenaQueries {
  const sleep = opts.sleep ?? defaultSleep;
  const pages = opts.pages ?? 4;
  return {
    async statistics(id) {
      const got = await retryThrottled(() => athena.send(new GetQueryExecutionCommand({ QueryExecutionId: id })), sleep);
      return { engineMs: got.QueryExecution?.Statistics?.EngineExecutionTimeInMillis ?? 0 };
    },
    async running(workgroup) {
      const out: RunningQuery[] = [];
      let token: string | undefined;
      for (let page = 0; page < pages; page++) {
        const listed = await retryThrottled(
          () => athena.send(new ListQueryExecutionsCommand({ WorkGroup: workgroup, MaxResults: 50, NextToken: token })),
          sleep,
        );
        const ids = listed.QueryExecutionIds ?? [];
        if (ids.length > 0) {
          const got = await retryThrottled(() => athena.send(new BatchGetQueryExecutionCommand({ QueryExecutionIds: ids })), sleep);
          for (const q of got.QueryExecutions ?? []) {
            const state = q.Status?.State;
            if ((state === 'QUEUED' || state === 'RUNNING') && q.QueryExecutionId) out.push({ id: q.QueryExecutionId, sql: q.Query ?? '' });
          }
        }
        token = listed.NextToken;
        if (!token) break;
      }
      return out;
    },
    async stop(id) {
      await retryThrottled(() => athena.send(new StopQueryExecutionCommand({ QueryExecutionId: id })), sleep);
    },
  };
}

/** The Glue table restricted to the partitions of the arrival hours first (null: the first there is) .. hour(cutoff - 1). */
function rangeSource(database: string, table: string, cutoff: number, first: number | null): string {
  const last = arrivalPartition(cutoff - 1);
  const upTo = `("dt" < ${literal(last.dt)} OR ("dt" = ${literal(last.dt)} AND "hr" <= ${literal(last.hr)}))`;
  const p = first === null ? undefined : arrivalPartition(first);
  const since = p && `("dt" > ${literal(p.dt)} OR ("dt" = ${literal(p.dt)} AND "hr" >= ${literal(p.hr)}))`;
  return `"${database}"."${table}"\n  WHERE ${since ? `${since} AND ${upTo}` : upTo}`;
}

/** The compacted hours a statement reads from the Parquet table (core/sql.ts athenaSource): its Glue name and the hours. */
export interface CompactedSource {
  readonly table: string;
  readonly hours: readonly number[];
}

/**
 * The completeness check's query: per raw object of the session's hours (hour(from) .. hour(cutoff - 1)),
 * its lines, the lines before the cutoff and its size. "$path" and "$file_size" are Athena's pseudo-columns.
 * With compacted hours, their raw objects are left out and a fifth column `shard` counts the lines of their
 * Parquet files per (file, shard) (verify.ts compares them with the `compacted` items, never object by object).
 */
export function objectsQuerySql(database: string, table: string, cutoff: number, from: number | null, compacted?: CompactedSource): string {
  athenaSource(database, table, cutoff); // checks the Glue names (lowercase, no quotes)
  const { first } = readHours(cutoff, from);
  if (compacted && compacted.hours.length > 0) {
    athenaSource(database, compacted.table, cutoff);
    const hours = hoursPredicate(compacted.hours);
    return [
      `SELECT "path", COUNT(*) AS "lines", COUNT_IF("arrival" < ${cutoff}) AS "covered", MAX("bytes") AS "bytes", "shard"`,
      'FROM (',
      '  SELECT "$path" AS "path", "$file_size" AS "bytes", arrival, CAST(NULL AS VARCHAR) AS "shard"',
      `  FROM ${rangeSource(database, table, cutoff, first)} AND NOT ${hours}`,
      '  UNION ALL',
      '  SELECT "$path" AS "path", "$file_size" AS "bytes", arrival, shard AS "shard"',
      `  FROM ${rangeSource(database, compacted.table, cutoff, first)} AND ${hours}`,
      ')',
      'GROUP BY 1, 5',
    ].join('\n');
  }
  return [
    `SELECT "path", COUNT(*) AS "lines", COUNT_IF("arrival" < ${cutoff}) AS "covered", MAX("bytes") AS "bytes"`,
    'FROM (',
    '  SELECT "$path" AS "path", "$file_size" AS "bytes", arrival',
    `  FROM ${rangeSource(database, table, cutoff, first)}`,
    ')',
    'GROUP BY 1',
  ].join('\n');
}

/** The object key of an s3:// path of the objects query (`prefix` = s3://<raw bucket>/). */
function keyOf(path: string | null | undefined, prefix: string): string {
  return prefix && path?.startsWith(prefix) ? path.slice(prefix.length) : String(path).replace(/^s3:\/\/[^/]+\//, '');
}

/**
 * Rows of the objects query (path, lines, covered, bytes[, shard]) as object reads keyed by object key
 * (`prefix` = s3://<raw bucket>/). Rows of compacted hours' Parquet files (a shard) are not object reads: compactedReadsOf.
 */
export function objectReadsOf(rows: readonly (readonly (string | null)[])[], prefix: string): Map<string, ObjectRead> {
  const out = new Map<string, ObjectRead>();
  for (const [path, lines, covered, bytes, shard] of rows) {
    if (shard !== undefined && shard !== null) continue;
    out.set(keyOf(path, prefix), { lines: Number(lines), covered: Number(covered), bytes: Number(bytes) });
  }
  return out;
}

/**
 * What the objects query read of the compacted hours' Parquet files, per hour: lines per shard summed over the
 * hour's files, and the files' bytes (their size: what Athena bills for them at most, the columns read being
 * all the file holds). Throws on a row whose path is no compacted object: the query reads `compact/` only there.
 */
export function compactedReadsOf(rows: readonly (readonly (string | null)[])[], prefix: string): Map<number, CompactedRead> {
  const out = new Map<number, { shards: Map<string, { lines: number; covered: number }>; bytes: number; files: Set<string> }>();
  for (const [path, lines, covered, bytes, shard] of rows) {
    if (shard === undefined || shard === null) continue;
    const key = keyOf(path, prefix);
    const name = parseCompactKey(key);
    if (!name) throw new Error(`the objects query read ${JSON.stringify(path)} as a compacted hour's file, which it is not`);
    const hour = out.get(name.hour) ?? { shards: new Map(), bytes: 0, files: new Set<string>() };
    out.set(name.hour, hour);
    if (!hour.files.has(key)) {
      hour.files.add(key);
      hour.bytes += Number(bytes);
    }
    const s = hour.shards.get(shard) ?? { lines: 0, covered: 0 };
    hour.shards.set(shard, { lines: s.lines + Number(lines), covered: s.covered + Number(covered) });
  }
  return new Map([...out].map(([hour, { shards, bytes }]) => [hour, { shards, bytes }]));
}

/** What a run's completeness check read of each raw arrival hour, per shard (the verify step keeps it in S3). */
export interface VerifiedHours {
  readonly cutoff: number;
  /** Hour start (13 digits) -> shard -> lines read (every object of the hour, listed or not), objects read, lines the manifest records. */
  readonly hours: Readonly<Record<string, Readonly<Record<string, { lines: number; objects: number; recorded: number }>>>>;
}

/**
 * Per (raw hour, shard) of a check that passed: what it read and what the archive's manifest records. The
 * compaction after the publish compacts only hours found here (their objects were just checked one by one) and
 * records these counts in the hour's `compacted` item; the next runs compare their Parquet reads with them.
 */
export function verifiedHours(cutoff: number, reads: ReadonlyMap<string, ObjectRead>, expected: readonly ExpectedObject[]): VerifiedHours {
  const hours: Record<string, Record<string, { lines: number; objects: number; recorded: number }>> = {};
  const at = (hour: number, shard: string) => {
    const h = hours[pad13(hour)] ?? {};
    hours[pad13(hour)] = h;
    const s = h[shard] ?? { lines: 0, objects: 0, recorded: 0 };
    h[shard] = s;
    return s;
  };
  for (const [key, r] of reads) {
    const name = parseRawObjectKey(key);
    if (!name) continue;
    const s = at(name.hour, name.shard);
    s.lines += r.lines;
    s.objects += 1;
  }
  for (const e of expected) if (hours[pad13(e.hour)]) at(e.hour, e.shard).recorded += e.lines;
  return { cutoff, hours };
}

/** A view's statement over the Glue table, reading the arrivals from `need` (core/sql.ts rawReadRange) on. */
export function viewQuerySql(
  database: string,
  table: string,
  view: View,
  cutoff: number,
  need: number | null,
  options: RunViewOptions,
  compacted?: CompactedSource,
): string {
  return compileView(view, {
    dialect: 'athena',
    cutoff,
    horizonMs: options.horizonMs,
    ...(options.since !== undefined && { since: options.since }),
    source: athenaSource(database, table, cutoff, need, compacted),
  });
}

/**
 * The compaction of one arrival hour on Athena (docs/batch-layer.md "Compaction"): an UNLOAD of the columns
 * the batch reads (core/sql.ts COMPACT_COLUMNS, the columns of the Glue table over compact/ and of DuckDB's
 * files: `fields` and `num` stay maps of text, so numbers stay exact) of that hour's raw lines, sorted by
 * (arrival, shard, seq) within each file (UNLOAD writes files in parallel, each sorted), as Parquet (ZSTD),
 * to `<location>a<attempt>/` (UNLOAD refuses a prefix holding data), as `head + attempt + tail`.
 */
export function compactUnloadSql(database: string, table: string, hour: number, location: string): { head: string; tail: string } {
  if (!/^s3:\/\/[a-z0-9.-]+\/[A-Za-z0-9_=./-]*\/$/.test(location))
    throw new Error(`an UNLOAD location must be s3://bucket/prefix/ (letters, digits, _ = . / -), received ${JSON.stringify(location)}`);
  athenaSource(database, table, hour + 1); // checks the Glue names
  const { dt, hr } = arrivalPartition(hour);
  const head = [
    'UNLOAD (',
    `  SELECT ${COMPACT_COLUMNS.map((c) => c.name).join(', ')}`,
    `  FROM "${database}"."${table}"`,
    `  WHERE dt = ${literal(dt)} AND hr = ${literal(hr)}`,
    '  ORDER BY arrival, shard, seq',
    `) TO '${location}a`,
  ].join('\n');
  return { head, tail: "/'\nWITH (format = 'PARQUET', compression = 'ZSTD')" };
}

/**
 * Load groups of an UNLOAD (at most Athena's 100 partitions of one UNLOAD): a batch-view partition
 * (core/keys.ts BATCH_PARTITION_MS) goes to group (partition index mod UNLOAD_GROUPS), so every
 * partition lies wholly in one group and an increment's merge (per partition) needs one group only.
 * Consecutive partitions land in different groups, so a rebuild spreads evenly.
 */
export const UNLOAD_GROUPS = 64;

/** The load group of the batch-view partition starting at `partitionStart` (ms). */
export function unloadGroupOf(view: Pick<View, 'grain'>, partitionStart: number): number {
  return Math.floor(partitionStart / BATCH_PARTITION_MS[view.grain]) % UNLOAD_GROUPS;
}

/**
 * The view's statement wrapped in an UNLOAD to `<location>a<attempt>/` (an empty S3 prefix per query
 * attempt: UNLOAD refuses a location holding data), as `head + attempt + tail` so the state machine
 * can form each attempt's statement (States.Format). Gzip JSON lines, every column as text (decimals
 * stay exact: a JSON number would pass through a double), partitioned by load group (`g=<n>/`), so
 * the load splits by partition groups without reading anything first. Columns by position `c0..cN`
 * (core/sql.ts outputColumns order).
 */
export function unloadSql(view: View, viewSql: string, location: string): { head: string; tail: string } {
  if (!/^s3:\/\/[a-z0-9.-]+\/[A-Za-z0-9_=./-]*\/$/.test(location))
    throw new Error(`an UNLOAD location must be s3://bucket/prefix/ (letters, digits, _ = . / -), received ${JSON.stringify(location)}`);
  const columns = outputColumns(view).map((_, i) => `c${i}`);
  const span = BATCH_PARTITION_MS[view.grain];
  const head = [
    'UNLOAD (',
    `  SELECT ${columns.map((c) => `CAST(${c} AS VARCHAR) AS ${c}`).join(', ')},`,
    `    CAST((CAST(c0 AS BIGINT) / ${span}) % ${UNLOAD_GROUPS} AS VARCHAR) AS g`,
    '  FROM (',
    viewSql,
    `  ) AS t (${columns.join(', ')})`,
    `) TO '${location}a`,
  ].join('\n');
  return { head, tail: "/'\nWITH (format = 'JSON', compression = 'GZIP', partitioned_by = ARRAY['g'])" };
}

/** Rows of UNLOAD JSON lines (unloadSql): `{"c0": "...", ...}`, an absent or null column is NULL. */
export function unloadRows(view: View, text: string): BatchRow[] {
  const n = outputColumns(view).length;
  const rows: (string | null)[][] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const o = JSON.parse(line) as Record<string, unknown>;
    const row: (string | null)[] = [];
    for (let i = 0; i < n; i++) {
      const v = o[`c${i}`];
      row.push(v === null || v === undefined ? null : String(v));
    }
    rows.push(row);
  }
  return toBatchRows(view, rows);
}

/**
 * Athena's CSV result file (`<QueryExecutionId>.csv`): RFC 4180, every value quoted, a NULL an
 * empty unquoted field; the header row is dropped.
 */
export function parseAthenaCsv(text: string): (string | null)[][] {
  const rows: (string | null)[][] = [];
  let row: (string | null)[] = [];
  let i = 0;
  const n = text.length;
  let fieldStart = true;
  while (i < n) {
    const ch = text[i];
    if (ch === '"') {
      let value = '';
      i++;
      for (;;) {
        const q = text.indexOf('"', i);
        if (q < 0) throw new Error('unterminated quoted field in an Athena CSV result');
        value += text.slice(i, q);
        if (text[q + 1] === '"') {
          value += '"';
          i = q + 2;
        } else {
          i = q + 1;
          break;
        }
      }
      row.push(value);
      fieldStart = false;
    } else if (ch === ',') {
      if (fieldStart) row.push(null);
      fieldStart = true;
      i++;
    } else if (ch === '\n' || ch === '\r') {
      if (fieldStart && row.length > 0) row.push(null);
      if (row.length > 0) rows.push(row);
      row = [];
      fieldStart = true;
      i += ch === '\r' && text[i + 1] === '\n' ? 2 : 1;
    } else {
      // An unquoted value (Athena quotes every one; kept for robustness).
      let j = i;
      while (j < n && text[j] !== ',' && text[j] !== '\n' && text[j] !== '\r') j++;
      row.push(text.slice(i, j));
      fieldStart = false;
      i = j;
    }
  }
  if (fieldStart && row.length > 0) row.push(null);
  if (row.length > 0) rows.push(row);
  return rows.slice(1);
}

/** Bucket and key of an s3:// URL. */
export function s3Location(url: string): { bucket: string; key: string } {
  const m = /^s3:\/\/([^/]+)\/(.*)$/.exec(url);
  if (!m) throw new Error(`not an s3:// location: ${JSON.stringify(url)}`);
  return { bucket: m[1]!, key: m[2]! };
}

/** What marks a run's statements (compile puts it in each): its UNLOAD prefix, or a comment in the completeness query. */
export const runMarkers = (runId: string): string[] => [`/unload/${runId}/`, `-- tandem-run:${runId} `];

/**
 * Stops the run's queries still QUEUED or RUNNING in the workgroup (among its most recent ones, see
 * athenaQueries): when one view's iteration fails, the Map cancels the others while their queries
 * run on, and the fail step stops them. Returns the ids stopped.
 */
export async function stopRunQueries(queries: AthenaQueries, workgroup: string, runId: string): Promise<string[]> {
  const markers = runMarkers(runId);
  const stopped: string[] = [];
  for (const q of await queries.running(workgroup)) {
    if (!markers.some((m) => q.sql.includes(m))) continue;
    await queries.stop(q.id);
    stopped.push(q.id);
  }
  return stopped;
}
