/**
 * The speed layer's batch logic, a function of its clients (handler.ts calls
 * it; the Lambda entry is functions/speed.ts). Per Kinesis shard of the batch, in this order:
 *   1. normalize each record (`toRawRecord`); rejects are poison: failures
 *      bucket + `stats / poison`, never reported as failed;
 *   2. dedup: read the claims of the batch's ids, decide, write the new claims;
 *   3. group the counted records by speed item (view, arrival window, event
 *      hour, shard) and aggregate each group into its cells' deltas;
 *   4. apply each item's deltas with one conditional UpdateItem (apply.ts);
 *   5. record progress in the control item `speed / <shard>`.
 * Any failure makes the shard's FIRST record the failed item, so the whole
 * batch is retried: a later record is never reported while an earlier one's
 * effects may be incomplete, and steps 2 and 4 make the retry exact.
 */

import { ConditionalCheckFailedException, type DynamoDBClient, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import type { StreamRecord } from '../adapters/kinesis-event.ts';
import type { LogSink } from '../adapters/log.ts';
import { countPoison, normalize, type PoisonRecord, writePoison } from '../adapters/poison.ts';
import { batchAgeMs, errorAttribute, forEachShard } from '../adapters/shards.ts';
import { mapLimit } from '../core/limit.ts';
import { padSeq, type RawRecord } from '../core/record.ts';
import { dedupExpiry, type Settings } from '../core/settings.ts';
import type { View } from '../core/views.ts';
import { type ApplyStats, applyItem, emptyApplyStats, groupByItem, type ItemCache } from './apply.ts';
import { decide, readClaims, writeClaims } from './dedup.ts';

export interface SpeedDeps {
  readonly ddb: DynamoDBClient;
  readonly s3: S3Client;
  readonly tables: { readonly speed: string; readonly dedup: string; readonly control: string };
  readonly failureBucket: string;
  readonly views: readonly View[];
  readonly settings: Settings;
  /** Known speed items, kept across invocations of a warm container. */
  readonly cache?: ItemCache | undefined;
  readonly now?: () => number;
  /** Warnings (poison) and errors (failed shards), with attributes (Powertools' Logger fits). */
  readonly log?: Pick<LogSink, 'warn' | 'error'> | undefined;
  /** Speed-item UpdateItems in flight (default 16). */
  readonly concurrency?: number;
}

export interface SpeedStats {
  records: number;
  poison: number;
  duplicates: number;
  counted: number;
  /** Speed items of the batch (items touched: one per view, arrival window, event-time hour). */
  speedItems: number;
  /** Ids looked up / claims written in the dedup table. */
  claimsRead: number;
  claimsWritten: number;
  /** BatchGetItem + BatchWriteItem requests. */
  dedupRequests: number;
  apply: ApplyStats;
  /** Age of the oldest record when the batch started, ms. */
  batchAgeMs: number;
  /** Time spent on claims (read, decide, write) and on applying deltas (aggregate, UpdateItems), ms. */
  dedupMs: number;
  applyMs: number;
  failedShards: number;
}

export interface SpeedResult {
  /** Sequence numbers to report as batchItemFailures (the first record of each failed shard). */
  readonly failures: string[];
  readonly stats: SpeedStats;
}

export const emptyStats = (): SpeedStats => ({
  records: 0,
  poison: 0,
  duplicates: 0,
  counted: 0,
  speedItems: 0,
  claimsRead: 0,
  claimsWritten: 0,
  dedupRequests: 0,
  apply: emptyApplyStats(),
  batchAgeMs: 0,
  dedupMs: 0,
  applyMs: 0,
  failedShards: 0,
});

export const SPEED_PROGRESS_PK = 'speed';

/** Processes one Lambda batch (normally one shard's; several shards are handled independently). */
export async function processSpeedBatch(records: readonly StreamRecord[], deps: SpeedDeps): Promise<SpeedResult> {
  const now = deps.now ?? Date.now;
  const stats = emptyStats();
  stats.records = records.length;
  stats.batchAgeMs = batchAgeMs(records, now());
  const failures = await forEachShard(
    records,
    (shard, sorted) => processShard(shard, sorted, deps, stats, now),
    ({ error, ...where }) => {
      stats.failedShards++;
      deps.log?.error('speed batch failed; the whole batch will be retried', { ...where, error: errorAttribute(error) });
    },
  );
  return { failures, stats };
}

async function processShard(
  shard: string,
  list: readonly StreamRecord[],
  deps: SpeedDeps,
  stats: SpeedStats,
  now: () => number,
): Promise<void> {
  const windowMs = deps.settings.windowSeconds * 1000;
  const good: RawRecord[] = [];
  const poison: PoisonRecord[] = [];
  for (const r of list) {
    const n = normalize(r);
    if (n.ok) good.push(n.record);
    else poison.push(n.poison);
  }

  if (poison.length > 0) {
    for (const p of poison)
      deps.log?.warn('poison record sent to the failures bucket', { shard: p.shard, seq: p.seq, field: p.field, reason: p.reason });
    await writePoison(deps.s3, deps.failureBucket, 'speed', poison);
    await countPoison(
      deps.ddb,
      deps.tables.control,
      'speed',
      shard,
      poison.map((p) => p.seq),
    );
    stats.poison += poison.length;
  }

  const io = { requests: 0 };
  let counted: RawRecord[] = [];
  let started = performance.now();
  try {
    if (good.length > 0) {
      const ids = [...new Set(good.map((r) => r.id))];
      stats.claimsRead += ids.length;
      const claims = await readClaims(deps.ddb, deps.tables.dedup, ids, now(), io);
      const decision = decide(good, claims);
      await writeClaims(deps.ddb, deps.tables.dedup, decision.newClaims, dedupExpiry(now(), deps.settings), io);
      stats.claimsWritten += decision.newClaims.length;
      stats.duplicates += decision.duplicates.length;
      counted = decision.counted;
    }
  } finally {
    stats.dedupRequests += io.requests;
    stats.dedupMs += performance.now() - started;
  }
  stats.counted += counted.length;

  started = performance.now();
  const items = groupByItem(deps.views, counted, windowMs);
  stats.speedItems += items.length;
  const ctx = { ddb: deps.ddb, table: deps.tables.speed, settings: deps.settings, cache: deps.cache, stats: stats.apply };
  await mapLimit(items, deps.concurrency ?? 16, (item) => applyItem(ctx, item.view, item.key, item.records, windowMs));
  stats.applyMs += performance.now() - started;

  const last = list[list.length - 1];
  if (last) await recordProgress(deps.ddb, deps.tables.control, shard, padSeq(last.seq), last.arrival, now());
}

/** `speed / <shard>`: how far the speed layer got (GET /status's speed lag). Never moves back. */
export async function recordProgress(
  ddb: DynamoDBClient,
  table: string,
  shard: string,
  seq: string,
  arrival: number,
  nowMs: number,
): Promise<void> {
  try {
    await ddb.send(
      new UpdateItemCommand({
        TableName: table,
        Key: { pk: { S: SPEED_PROGRESS_PK }, sk: { S: shard } },
        UpdateExpression: 'SET #seq = :seq, #arrival = :arrival, #updatedAt = :now',
        ConditionExpression: 'attribute_not_exists(#seq) OR #seq < :seq',
        ExpressionAttributeNames: { '#seq': 'seq', '#arrival': 'arrival', '#updatedAt': 'updatedAt' },
        ExpressionAttributeValues: { ':seq': { S: seq }, ':arrival': { N: String(arrival) }, ':now': { N: String(nowMs) } },
      }),
    );
  } catch (e) {
    // A redelivered batch: progress is already at or past it.
    if (!(e instanceof ConditionalCheckFailedException)) throw e;
  }
}
