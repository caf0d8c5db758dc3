/**
 * Bundled in place of `@duckdb/node-api` (an esbuild alias, lib/function.ts) in
 * every function that does not run the DuckDB batch engine: the module is
 * native (68 MB per platform) and only the batch-task function of a
 * `batchEngine: 'duckdb'` deployment ships it. Code paths that reach it there
 * are misconfigured, so it fails loudly instead of at import time.
 */
// biome-ignore lint/complexity/noStaticOnlyClass: mirrors the one API of @duckdb/node-api that functions/batch/duckdb.ts uses
export class DuckDBInstance {
  static create(): Promise<never> {
    return Promise.reject(
      new Error(
        'DuckDB is not deployed with this function: ' +
          'only the batch-task function of a stack with batchEngine "duckdb" ships @duckdb/node-api',
      ),
    );
  }
}
