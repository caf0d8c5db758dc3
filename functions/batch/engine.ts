/**
 * The recompute engine: runs the core's compiled SQL of a view over every raw
 * object with arrival before the cutoff, and reports what it read per object
 * for the completeness check. Two implementations: DuckDB over objects staged
 * from S3 to a local cache (duckdb.ts; the local cloud, LocalStack) and Athena
 * over the Glue table (athena.ts; AWS). `TANDEM_BATCH_ENGINE` selects one.
 */
import { Decimal, decimalText } from '../core/decimal.ts';
import { stateColumns } from '../core/metrics.ts';
import { outputColumns } from '../core/sql.ts';
import type { View } from '../core/views.ts';

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
}

/** One run's view of the archive: opened for a cutoff, closed at the end of a step. */
export interface EngineSession {
  readonly engine: 'duckdb' | 'athena';
  readonly cutoff: number;
  readonly stats: EngineStats;
  /** Per raw object key of an arrival hour starting before the cutoff: what the engine reads of it. */
  objectReads(): Promise<Map<string, ObjectRead>>;
  /** The view's batch rows over arrival < cutoff (first copy per id). */
  runView(view: View): Promise<BatchRow[]>;
  close(): Promise<void>;
}

export interface BatchEngine {
  readonly name: 'duckdb' | 'athena';
  open(cutoff: number, runId: string): Promise<EngineSession>;
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
  return rows.map((r) => {
    if (r.length !== columns.length) throw new Error(`view ${view.name}: expected ${columns.length} result columns, received ${r.length}`);
    const bucket = Number(r[0]);
    if (!Number.isSafeInteger(bucket)) throw new Error(`view ${view.name}: bucket ${r[0]} is not whole epoch milliseconds`);
    const values: Record<string, string | null> = {};
    state.forEach((c, i) => {
      const v = r[1 + nd + i];
      values[c.column] = v === null || v === undefined ? null : decimalText(new Decimal(v));
    });
    return { bucket, dims: r.slice(1, 1 + nd).map((d) => d ?? null), values };
  });
}
