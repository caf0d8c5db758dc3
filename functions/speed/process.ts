/**
 * The speed layer's batch logic, a function of its clients (handler.ts calls
 * it; the Lambda entry is functions/speed.ts). Per Kinesis shard of the batch, in this order:
 *   1. normalize each record (`toRawRecord`), each user record of a KPL
 *      aggregate as an event of its own at its (seq, subseq) position
 *      (`normalizeRecords`); rejects are poison: failures bucket +
 *      `stats / poison`, never reported as failed;
 *   2. dedup (dedup.ts): read the claims of the batch's ids and the shard's
 *      progress mark, and the backfilled copies they may meet (outside.ts),
 *      decide by the dedup rule, write the changed claims;
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
import { countPoison, lastPosition, type Normalized, normalizeRecords, type PoisonRecord, writePoison } from '../adapters/poison.ts';
import { batchAgeMs, errorAttribute, forEachShard } from '../adapters/shards.ts';
import { mapLimit } from '../core/limit.ts';
import type { RawRecord } from '../core/record.ts';
import type { Settings } from '../core/settings.ts';
import type { View } from '../core/views.ts';
import { type ApplyStats, applyItem, emptyApplyStats, groupByItem, type ItemCache } from './apply.ts';
import { claimChained, decide, keyedById, readClaims, writeClaims } from './dedup.ts';
import { OutsideCopies } from './outside.ts';

export interface SpeedDeps {
  readonly ddb: DynamoDBClient;
  readonly s3: S3Client;
  readonly tables: { readonly speed: string; readonly dedup: string; readonly control: string };
  readonly failureBucket: string;
  readonly views: readonly View[];
  readonly settings: Settings;
  /** Known speed items, kept across invocations of a warm container. */
  readonly cache?: ItemCache | undefined;
  /** The backfills and id sets read so far, kept across invocations of a warm container (outside.ts). */
  readonly outside?: OutsideCopies | undefined;
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
  /** Counts taken back from later copies of ids keyed otherwise, which another shard counted first. */
  retracted: number;
  /** Records at or below the shard's progress mark (a redelivery): already applied, skipped. */
  redelivered: number;
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
  retracted: 0,
  redelivered: 0,
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
  /** Ids with a copy in the batch routed by another key than the id: their claims are chained (dedup.ts, "Any partition key"). */
  const otherKeys = new Set<string>();
  let lastEvents: Normalized[] = [];
  for (const r of list) {
    lastEvents = normalizeRecords(r);
    for (const n of lastEvents) {
      if (!n.ok) poison.push(n.poison);
      else {
        good.push(n.record);
        if (!keyedById(n.record, n.partitionKey)) otherKeys.add(n.record.id);
      }
    }
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
  /** Counts taken back from later copies another shard counted first (dedup.ts, "Any partition key"). */
  let retractions: RawRecord[] = [];
  let started = performance.now();
  try {
    if (good.length > 0) {
      const ids = [...new Set(good.map((r) => r.id))];
      stats.claimsRead += ids.length;
      const horizonMs = deps.settings.dedupHorizonSeconds * 1000;
      const progress = { table: deps.tables.control, key: { pk: { S: SPEED_PROGRESS_PK }, sk: { S: shard } } };
      const [read, outside] = await Promise.all([
        readClaims(deps.ddb, deps.tables.dedup, ids, io, { horizonMs, progress }),
        (deps.outside ?? new OutsideCopies()).copiesOf(deps.ddb, deps.tables.control, good, { horizonMs, now: now() }, io),
      ]);
      // Ids keyed by id keep the batched path; an id with a copy keyed otherwise, here or before (a chained claim), does not.
      const chained = new Map<string, RawRecord[]>();
      for (const r of good) {
        if (!otherKeys.has(r.id) && !read.claims.get(r.id)?.chain) continue;
        const list = chained.get(r.id);
        if (list) list.push(r);
        else chained.set(r.id, [r]);
      }
      const batched = chained.size === 0 ? good : good.filter((r) => !chained.has(r.id));
      const decision = decide(batched, read.claims, horizonMs, read.progress, outside);
      const [, chain] = await Promise.all([
        writeClaims(deps.ddb, deps.tables.dedup, decision.newClaims, deps.settings, io),
        chained.size === 0
          ? undefined
          : claimChained(
              deps.ddb,
              deps.tables.dedup,
              chained,
              read.claims,
              { horizonMs, progress: read.progress, settings: deps.settings, outside },
              io,
            ),
      ]);
      stats.claimsWritten += decision.newClaims.length + (chain?.writes ?? 0);
      stats.duplicates += decision.duplicates.length + (chain?.duplicates.size ?? 0);
      stats.redelivered += decision.redelivered.length + (chain?.redelivered.size ?? 0);
      if (!chain) counted = decision.counted;
      else {
        const byBatch = new Set(decision.counted);
        counted = good.filter((r) => (chained.has(r.id) ? chain.counted : byBatch).has(r));
        retractions = chain.retractions;
      }
    }
  } finally {
    stats.dedupRequests += io.requests;
    stats.dedupMs += performance.now() - started;
  }
  stats.counted += counted.length;
  stats.retracted += retractions.length;

  started = performance.now();
  const items = groupByItem(deps.views, retractions.length === 0 ? counted : [...counted, ...retractions], windowMs);
  stats.speedItems += items.length;
  const ctx = { ddb: deps.ddb, table: deps.tables.speed, settings: deps.settings, cache: deps.cache, stats: stats.apply };
  await mapLimit(items, deps.concurrency ?? 16, (item) => applyItem(ctx, item.view, item.key, item.records, windowMs));
  stats.applyMs += performance.now() - started;

  // The position of the batch's last event: for a plain record its padded sequence number, for an
  // aggregate its last user record's, so that every user record of the batch is <= the mark (dedup.ts).
  const last = list[list.length - 1];
  if (last) await recordProgress(deps.ddb, deps.tables.control, shard, lastPosition(lastEvents, last), last.arrival, now());
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
