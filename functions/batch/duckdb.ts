/**
 * The DuckDB engine: stages the raw objects of the covered hours from S3 to a
 * local cache (stage.ts) and runs the core's compiled SQL over them with
 * @duckdb/node-api, in an in-memory database per session. Extensions are never
 * downloaded (json is built in; a missing one fails at once instead of
 * reaching for the network).
 */

import { relative, sep } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { DuckDBInstance } from '@duckdb/node-api';
import { compileView, duckdbSource, literal } from '../core/sql.ts';
import type { View } from '../core/views.ts';
import { type BatchEngine, type EngineSession, type EngineStats, type ObjectRead, toBatchRows } from './engine.ts';
import { stageObjects } from './stage.ts';

export interface DuckDbEngineOptions {
  readonly s3: S3Client;
  readonly rawBucket: string;
  /** Staging cache directory (kept between runs). */
  readonly stageDir: string;
  /** Downloads in flight. @default 16 */
  readonly concurrency?: number;
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

export function duckDbEngine(opts: DuckDbEngineOptions): BatchEngine {
  return {
    name: 'duckdb',
    async open(cutoff: number): Promise<EngineSession> {
      const t0 = performance.now();
      const staged = await stageObjects(opts.s3, opts.rawBucket, opts.stageDir, cutoff, opts.concurrency);
      const files = [...staged.files.values()].sort();
      const stats: EngineStats = {
        objects: files.length,
        downloaded: staged.downloaded,
        downloadedBytes: staged.downloadedBytes,
        stageMs: performance.now() - t0,
      };
      const db = await openDuckDb();
      const query = (sql: string) => db.query(sql);
      return {
        engine: 'duckdb',
        cutoff,
        stats,
        async objectReads() {
          const out = new Map<string, ObjectRead>();
          if (files.length === 0) return out;
          // Only `arrival` is declared: DuckDB still reads and counts every line of every file.
          const rows = await query(
            [
              `SELECT "filename", COUNT(*) AS "lines", COUNT(*) FILTER (WHERE "arrival" < ${cutoff}) AS "covered"`,
              `FROM read_json([${files.map(literal).join(', ')}], format = 'newline_delimited', compression = 'gzip',`,
              `  filename = true, columns = {'arrival': 'BIGINT'})`,
              'GROUP BY 1',
            ].join('\n'),
          );
          for (const [path, lines, covered] of rows) {
            out.set(relative(opts.stageDir, String(path)).split(sep).join('/'), { lines: Number(lines), covered: Number(covered) });
          }
          return out;
        },
        async runView(view: View) {
          return toBatchRows(view, await query(compileView(view, { dialect: 'duckdb', cutoff, source: duckdbSource(files) })));
        },
        async close() {
          db.close();
        },
      };
    },
  };
}
