/**
 * The recompute engine: runs the core's compiled SQL of a view over the raw
 * objects of an arrival range, and reports what it read per object for the
 * completeness check. A session is opened for a cutoff C and the lowest
 * arrival `from` the run must read (core/sql.ts `rawReadRange`: since - H for an
 * increment, null for a rebuild); it reads the objects of the arrival hours
 * [hour(from), hour(C - 1)] and nothing else. Two implementations: DuckDB over
 * objects staged from S3 to a local cache, parsed once per session (duckdb.ts;
 * the local cloud, LocalStack) and Athena over the Glue table (athena.ts; AWS).
 * `TANDEM_BATCH_ENGINE` selects one.
 */
import { HOUR_MS } from '../archive/layout.ts';
import { columnFromSql, stateColumns } from '../core/metrics.ts';
import { outputColumns, rawReadRange } from '../core/sql.ts';
import { iso } from '../core/time.ts';
import type { View } from '../core/views.ts';
import type { CompactedHour, Compactor } from './compact.ts';

/** One row of a batch view: bucket, dimension values in view order, state columns as decimal text. */
export interface BatchRow {
  readonly bucket: number;
  readonly dims: readonly (string | null)[];
  readonly values: Readonly<Record<string, string | null>>;
}

/** What the engine read of one raw object. */
export interface ObjectRead {
  /** Lines (records) in the object. */
  readonly lines: number;
  /** Of them, records with arrival < cutoff. */
  readonly covered: number;
  /** Size of the object, bytes (what S3 stores: gzip). */
  readonly bytes: number;
}

export interface EngineStats {
  /** Objects the session reads. */
  objects: number;
  /** Objects downloaded to the stage this session (DuckDB). */
  downloaded: number;
  /** Bytes downloaded this session (DuckDB). */
  downloadedBytes: number;
  /** Time spent listing and staging objects, ms (DuckDB). */
  stageMs: number;
  /** From the session's start until its lines were all parsed into its table, ms (DuckDB, where parsing overlaps the staging; 0 until the first query). */
  parseMs: number;
}

export interface OpenOptions {
  /**
   * The lowest arrival (epoch ms) the run must read: the session reads the
   * objects of the arrival hours from hour(from) to hour(cutoff - 1).
   * null or absent: every hour before the cutoff (a rebuild, all history).
   */
  readonly from?: number | null;
  /**
   * The compacted hours (compact.ts readCompacted) of the range: the session
   * reads their Parquet object instead of their raw objects. @default none
   */
  readonly compacted?: ReadonlyMap<number, CompactedHour>;
  /**
   * The arrival hours of the range the archive's manifest records objects in (verify.ts readArchiveManifest): an
   * engine that lists objects lists only these hours (stage.ts StageOptions.recorded). @default every hour of the range
   */
  readonly recorded?: ReadonlySet<number>;
  /**
   * Every view the session will be asked for: an engine may then read only what they need of each line (DuckDB keeps
   * the map entries they read as columns). @default any view (the whole lines)
   */
  readonly views?: readonly View[];
}

/** What the engine read of one compacted hour's Parquet object. */
export interface CompactedRead {
  /** Lines per shard (the `shard` column), and of them with arrival < cutoff. */
  readonly shards: ReadonlyMap<string, { readonly lines: number; readonly covered: number }>;
  /** Bytes read: the column chunks of the columns read (what Athena bills for Parquet). */
  readonly bytes: number;
}

export interface RunViewOptions {
  /** The dedup horizon H, ms (settings.dedupHorizonSeconds * 1000). */
  readonly horizonMs: number;
  /** Count only the copies that arrived in [since, cutoff) (an increment). @default - every copy before the cutoff (a rebuild) */
  readonly since?: number;
}

/** One part of a view's rows (EngineSession.runViewParts), with the time the engine spent computing it. */
export interface ViewPart {
  readonly rows: BatchRow[];
  readonly ms: number;
}

/** One run's view of the archive: opened for a cutoff and an arrival range, closed at the end of a step. */
export interface EngineSession {
  readonly engine: 'duckdb' | 'athena';
  readonly cutoff: number;
  /** The lowest arrival the session reads (null: all history). */
  readonly from: number | null;
  readonly stats: EngineStats;
  /** Per raw object key of an arrival hour the session reads (hour(from) .. hour(cutoff - 1)): what the engine reads of it. */
  objectReads(): Promise<Map<string, ObjectRead>>;
  /** Per compacted hour of the range whose Parquet object the session found: what it read of it. */
  compactedReads?(): Promise<Map<number, CompactedRead>>;
  /**
   * The view's batch rows: the copies that count under the dedup rule with
   * horizon H, with arrival < cutoff (and >= since for an increment). Fails when
   * the statement would need arrivals the session does not read.
   */
  runView(view: View, options: RunViewOptions): Promise<BatchRow[]>;
  /**
   * The rows `runView` returns, in parts of whole batch-view partitions (every row of a partition in one part, in
   * partition order), each part computed while the one before it is consumed: a run loads a rebuild's first
   * partitions while the engine computes the next ones. Optional (runView is the contract).
   */
  runViewParts?(view: View, options: RunViewOptions): AsyncIterable<ViewPart>;
  /**
   * No more views will be asked for: what the session holds may be freed in the background (DuckDB drops its tables
   * while the run's loads go on, so closing it is quick). Optional; runView must not be called after it.
   */
  release?(): void;
  close(): Promise<void>;
}

export interface BatchEngine {
  readonly name: 'duckdb' | 'athena';
  open(cutoff: number, runId: string, options?: OpenOptions): Promise<EngineSession>;
  /** Compacts one covered arrival hour into Parquet (compact.ts); absent: this engine compacts elsewhere (Athena: the state machine). */
  readonly compactor?: Compactor;
}

/** Start of the arrival hour holding `ms`. */
export const hourStart = (ms: number): number => ms - (((ms % HOUR_MS) + HOUR_MS) % HOUR_MS);

/**
 * The arrival hours a session reads, as hour starts: `first` (null: from the
 * beginning) through `last` = the hour of cutoff - 1 ms, inclusive. Empty
 * (first > last) only when from >= cutoff.
 */
export function readHours(cutoff: number, from: number | null): { first: number | null; last: number } {
  return { first: from === null ? null : hourStart(from), last: hourStart(cutoff - 1) };
}

/**
 * The lowest arrival a view's statement reads (core/sql.ts rawReadRange), checked
 * against the session's range: an increment compiled against a session that
 * does not hold its look-back would silently count copies whose previous copy
 * it never saw, so that is an error, never a smaller read.
 */
export function viewReadFrom(
  session: { readonly cutoff: number; readonly from: number | null },
  view: View,
  options: RunViewOptions,
): number | null {
  const need = rawReadRange(session.cutoff, options.horizonMs, options.since).from;
  const first = readHours(session.cutoff, session.from).first;
  if (first !== null && (need === null || need < first)) {
    throw new Error(
      `view ${view.name} needs the arrivals from ${need === null ? 'the beginning' : iso(need)}, ` +
        `but the session reads only from ${iso(first)} (open it with a lower from)`,
    );
  }
  return need;
}

/**
 * Converts result rows (by position, in `outputColumns(view)` order: Athena
 * lowercases names) of text values into BatchRows. Decimals come as text from
 * both engines and are normalized to the plain form the rest of Tandem writes.
 */
export function toBatchRows(view: View, rows: readonly (readonly (string | null)[])[]): BatchRow[] {
  const columns = outputColumns(view);
  const state = stateColumns(view);
  const nd = view.dimensions.length;
  // Plain loops: a rebuild turns a million rows and more.
  const out: BatchRow[] = new Array(rows.length);
  for (let k = 0; k < rows.length; k++) {
    const r = rows[k]!;
    if (r.length !== columns.length) throw new Error(`view ${view.name}: expected ${columns.length} result columns, received ${r.length}`);
    const bucket = Number(r[0]);
    if (!Number.isSafeInteger(bucket)) throw new Error(`view ${view.name}: bucket ${r[0]} is not whole epoch milliseconds`);
    const values: Record<string, string | null> = {};
    // Decimals to plain text; a sketch's register list to its canonical text (core/hll.ts).
    for (let i = 0; i < state.length; i++) values[state[i]!.column] = columnFromSql(state[i]!.component, r[1 + nd + i]);
    const dims: (string | null)[] = new Array(nd);
    for (let i = 0; i < nd; i++) dims[i] = r[1 + i] ?? null;
    out[k] = { bucket, dims, values };
  }
  return out;
}
