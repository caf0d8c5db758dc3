/**
 * The Athena engine (AWS): the core's compiled SQL over the Glue table of the
 * raw archive (partition projection on dt/hr, see core/sql.ts GLUE_*). Each
 * query carries a ClientRequestToken derived from the run, the purpose and
 * the SQL, so a retried step gets the same query execution instead of a second
 * scan; throttling (TooManyRequests: too many queries queued) is retried with
 * backoff; results are read page by page, as text (decimals stay exact).
 * Result encryption and the bytes-scanned cutoff are properties of the workgroup.
 */

import { createHash } from 'node:crypto';
import {
  type AthenaClient,
  GetQueryExecutionCommand,
  GetQueryResultsCommand,
  type ResultSet,
  StartQueryExecutionCommand,
} from '@aws-sdk/client-athena';
import { arrivalPartition, athenaSource, compileView, literal } from '../core/sql.ts';
import type { View } from '../core/views.ts';
import { type BatchEngine, type EngineSession, type ObjectRead, toBatchRows } from './engine.ts';

export interface AthenaEngineOptions {
  readonly athena: AthenaClient;
  readonly database: string;
  readonly table: string;
  readonly workgroup: string;
  /** The raw bucket (to turn `$path` back into object keys). */
  readonly rawBucket: string;
  /** Longest wait between polls of a running query, ms. @default 2000 */
  readonly maxPollMs?: number;
  readonly sleep?: (ms: number) => Promise<void>;
}

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

/** Athena's idempotency token (32..128 characters): the same run, purpose and SQL give the same token. */
export function requestToken(runId: string, purpose: string, sql: string): string {
  return createHash('sha256').update(`${runId}\n${purpose}\n${sql}`).digest('hex');
}

/** Rows of an Athena result set as text values, without the header row of the first page. */
export function resultRows(set: ResultSet | undefined, skipHeader: boolean): (string | null)[][] {
  const rows = (set?.Rows ?? []).map((r) => (r.Data ?? []).map((d) => d.VarCharValue ?? null));
  return skipHeader ? rows.slice(1) : rows;
}

export function athenaEngine(opts: AthenaEngineOptions): BatchEngine {
  // athenaSource checks the Glue names (lowercase, no quotes): the per-object query below uses them too.
  athenaSource(opts.database, opts.table, 1);
  const sleep = opts.sleep ?? defaultSleep;
  const maxPoll = opts.maxPollMs ?? 2000;

  async function run(runId: string, purpose: string, sql: string): Promise<(string | null)[][]> {
    const started = await retryThrottled(
      () =>
        opts.athena.send(
          new StartQueryExecutionCommand({
            QueryString: sql,
            ClientRequestToken: requestToken(runId, purpose, sql),
            WorkGroup: opts.workgroup,
            QueryExecutionContext: { Database: opts.database },
          }),
        ),
      sleep,
    );
    const id = started.QueryExecutionId;
    if (!id) throw new Error(`Athena returned no query execution id (${purpose})`);
    for (let wait = 250; ; wait = Math.min(maxPoll, wait * 2)) {
      const got = await retryThrottled(() => opts.athena.send(new GetQueryExecutionCommand({ QueryExecutionId: id })), sleep);
      const state = got.QueryExecution?.Status?.State;
      if (state === 'SUCCEEDED') break;
      if (state === 'FAILED' || state === 'CANCELLED') {
        throw new Error(`Athena query ${id} (${purpose}) ${state}: ${got.QueryExecution?.Status?.StateChangeReason ?? 'no reason given'}`);
      }
      await sleep(wait);
    }
    const rows: (string | null)[][] = [];
    let token: string | undefined;
    let first = true;
    do {
      const page = await retryThrottled(
        () => opts.athena.send(new GetQueryResultsCommand({ QueryExecutionId: id, NextToken: token, MaxResults: 1000 })),
        sleep,
      );
      rows.push(...resultRows(page.ResultSet, first));
      first = false;
      token = page.NextToken;
    } while (token);
    return rows;
  }

  return {
    name: 'athena',
    async open(cutoff: number, runId: string): Promise<EngineSession> {
      const prefix = `s3://${opts.rawBucket}/`;
      const stats = { objects: 0, downloaded: 0, downloadedBytes: 0, stageMs: 0 };
      return {
        engine: 'athena',
        cutoff,
        stats,
        async objectReads() {
          const last = arrivalPartition(cutoff - 1);
          // "$path" is Athena's pseudo-column naming the object each row came from.
          const sql = [
            `SELECT "$path" AS "path", COUNT(*) AS "lines", COUNT_IF("arrival" < ${cutoff}) AS "covered"`,
            `FROM "${opts.database}"."${opts.table}"`,
            `WHERE "dt" < ${literal(last.dt)} OR ("dt" = ${literal(last.dt)} AND "hr" <= ${literal(last.hr)})`,
            'GROUP BY 1',
          ].join('\n');
          const out = new Map<string, ObjectRead>();
          for (const [path, lines, covered] of await run(runId, 'objects', sql)) {
            const key = path?.startsWith(prefix) ? path.slice(prefix.length) : String(path);
            out.set(key, { lines: Number(lines), covered: Number(covered) });
          }
          stats.objects = out.size;
          return out;
        },
        async runView(view: View) {
          const sql = compileView(view, { dialect: 'athena', cutoff, source: athenaSource(opts.database, opts.table, cutoff) });
          return toBatchRows(view, await run(runId, `view:${view.name}`, sql));
        },
        async close() {},
      };
    },
  };
}
