/**
 * The raw archive (invariant 6, docs/design.md), a function of its clients
 * (handler.ts calls it; the Lambda entry is functions/archive.ts). Per Kinesis
 * shard of a batch, in this order:
 *
 *   1. normalize each record with `toRawRecord` (the one poison rule of both
 *      layers), each user record of a KPL aggregate as a record of its own at
 *      its (seq, subseq) position (`normalizeRecords`): lines and object keys
 *      carry positions; poison goes to the failures bucket and `stats / poison`, is not
 *      archived and is not reported as failed (it must not block the shard);
 *   2. write one gzip NDJSON object per arrival hour of the batch, keyed by
 *      shard and the sequence range it holds, with `If-None-Match: *` (a 412
 *      means a previous attempt wrote it: success);
 *   3. add each object, with its line count, to the shard-hour manifest (a
 *      string set: adding twice is adding once);
 *   4. advance `checkpoint / <shard>` to the batch's last record, with a
 *      condition that never moves it back.
 *
 * Idempotence: a retried batch has the same records, so the same keys and the
 * same bytes (s3rver ignores If-None-Match and overwrites: the same bytes, so
 * still harmless); a retry with other boundaries (bisect, a re-created
 * mapping) writes overlapping objects, which the batch's per-id dedup absorbs.
 * A crash anywhere before step 4 leaves the checkpoint behind, so the batch
 * planner never cuts past records whose object or manifest entry may be
 * missing. Any write failure reports the batch's first record as failed: the
 * event source mapping retries the whole batch with the same boundaries (no
 * bisect), which rewrites the same keys instead of overlapping ones.
 */

import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import { ConditionalCheckFailedException, type DynamoDBClient, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { PutObjectCommand, type S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import type { StreamRecord } from '../adapters/kinesis-event.ts';
import type { LogSink } from '../adapters/log.ts';
import { countPoison, normalizeRecords, type PoisonRecord, writePoison } from '../adapters/poison.ts';
import { batchAgeMs, errorAttribute, forEachShard } from '../adapters/shards.ts';
import { padSeq, type RawRecord } from '../core/record.ts';
import { CHECKPOINT_PK, HOUR_MS, OBJECT_MANIFEST_PK, objectManifestEntry, objectManifestSk, rawObjectKey } from './layout.ts';

const gzip = promisify(gzipCb);

/** Fault-injection points for tests (a crash is a thrown error). */
export interface ArchiveHooks {
  /** After the objects and manifest entries are written, before the checkpoint moves. */
  beforeCheckpoint?(shard: string): void | Promise<void>;
}

export interface ArchiveDeps {
  readonly s3: S3Client;
  readonly ddb: DynamoDBClient;
  readonly rawBucket: string;
  readonly failureBucket: string;
  readonly controlTable: string;
  readonly now?: () => number;
  /** Warnings (poison) and errors (failed shards), with attributes (Powertools' Logger fits). */
  readonly log?: Pick<LogSink, 'warn' | 'error'> | undefined;
  readonly hooks?: ArchiveHooks | undefined;
}

export interface ArchiveStats {
  records: number;
  archived: number;
  poison: number;
  objects: number;
  /** Compressed bytes written. */
  bytes: number;
  /** Objects a previous attempt had already written (412). */
  alreadyWritten: number;
  /** Age of the oldest record when the batch started, ms. */
  batchAgeMs: number;
  failedShards: number;
}

export interface ArchiveResult {
  /** Sequence numbers to report as batchItemFailures (the first record of each failed shard). */
  readonly failures: string[];
  readonly stats: ArchiveStats;
}

/** Archives one Lambda batch (normally one shard's; several shards are handled independently). */
export async function archiveBatch(records: readonly StreamRecord[], deps: ArchiveDeps): Promise<ArchiveResult> {
  const now = deps.now ?? Date.now;
  const stats: ArchiveStats = {
    records: records.length,
    archived: 0,
    poison: 0,
    objects: 0,
    bytes: 0,
    alreadyWritten: 0,
    batchAgeMs: 0,
    failedShards: 0,
  };
  stats.batchAgeMs = batchAgeMs(records, now());
  const failures = await forEachShard(
    records,
    (shard, sorted) => archiveShard(shard, sorted, deps, stats, now),
    ({ error, ...where }) => {
      stats.failedShards++;
      deps.log?.error('archive batch failed; the whole batch will be retried', { ...where, error: errorAttribute(error) });
    },
  );
  return { failures, stats };
}

async function archiveShard(
  shard: string,
  list: readonly StreamRecord[],
  deps: ArchiveDeps,
  stats: ArchiveStats,
  now: () => number,
): Promise<void> {
  const byHour = new Map<number, RawRecord[]>();
  const poison: PoisonRecord[] = [];
  let archived = 0;
  for (const r of list) {
    for (const n of normalizeRecords(r)) {
      if (!n.ok) {
        poison.push(n.poison);
        continue;
      }
      const hour = Math.floor(n.record.arrival / HOUR_MS) * HOUR_MS;
      const group = byHour.get(hour) ?? [];
      group.push(n.record);
      byHour.set(hour, group);
      archived++;
    }
  }

  await Promise.all(
    [...byHour.entries()].map(async ([hour, group]) => {
      const first = group[0]!.seq;
      const last = group[group.length - 1]!.seq;
      const { written, bytes } = await writeRawObject(
        deps,
        { key: rawObjectKey(shard, hour, first, last), hour, shard, entry: objectManifestEntry(first, last, group.length) },
        group,
      );
      if (!written) stats.alreadyWritten++;
      stats.objects++;
      stats.bytes += bytes;
      stats.archived += group.length;
    }),
  );

  if (poison.length > 0) {
    for (const p of poison)
      deps.log?.warn('poison record sent to the failures bucket', { shard, seq: p.seq, field: p.field, reason: p.reason });
    await writePoison(deps.s3, deps.failureBucket, 'archive', poison);
    await countPoison(
      deps.ddb,
      deps.controlTable,
      'archive',
      shard,
      poison.map((p) => p.seq),
    );
    stats.poison += poison.length;
  }

  await deps.hooks?.beforeCheckpoint?.(shard);
  const last = list[list.length - 1]!;
  await advanceCheckpoint(deps.ddb, deps.controlTable, {
    shard,
    seq: padSeq(last.seq),
    arrival: last.arrival,
    records: archived,
    now: now(),
  });
}

/**
 * One raw object: the records gzipped as NDJSON under `key`, then its entry in
 * the hour's object manifest (a set: a retried write adds nothing). The live
 * archiver and the backfill both write raw objects this way.
 */
export async function writeRawObject(
  deps: { readonly s3: S3Client; readonly ddb: DynamoDBClient; readonly rawBucket: string; readonly controlTable: string },
  object: { readonly key: string; readonly hour: number; readonly shard: string; readonly entry: string },
  records: readonly RawRecord[],
): Promise<{ written: boolean; bytes: number }> {
  const { key, hour, shard, entry } = object;
  const body = await gzip(Buffer.from(`${records.map((r) => JSON.stringify(r)).join('\n')}\n`));
  const written = await putOnce(deps.s3, deps.rawBucket, key, body);
  await deps.ddb.send(
    new UpdateItemCommand({
      TableName: deps.controlTable,
      Key: { pk: { S: OBJECT_MANIFEST_PK }, sk: { S: objectManifestSk(hour, shard) } },
      UpdateExpression: 'ADD #objects :entry SET #hour = :hour, #shard = :shard',
      ExpressionAttributeNames: { '#objects': 'objects', '#hour': 'hour', '#shard': 'shard' },
      ExpressionAttributeValues: { ':entry': { SS: [entry] }, ':hour': { N: String(hour) }, ':shard': { S: shard } },
    }),
  );
  return { written, bytes: body.length };
}

/**
 * PutObject that never replaces an existing object where the store supports
 * it. Returns false when the object was already there (412). Deterministic
 * keys make the overwrite that s3rver does instead just as harmless.
 */
async function putOnce(s3: S3Client, rawBucket: string, key: string, body: Buffer): Promise<boolean> {
  try {
    await s3.send(
      new PutObjectCommand({
        Bucket: rawBucket,
        Key: key,
        Body: body,
        IfNoneMatch: '*',
        ContentType: 'application/x-ndjson',
        ContentEncoding: 'gzip',
      }),
    );
    return true;
  } catch (e) {
    if (e instanceof S3ServiceException && e.$metadata.httpStatusCode === 412) return false;
    throw e;
  }
}

/**
 * Moves `checkpoint / <shard>` to (seq, arrival), never backwards: a
 * redelivered batch that ends at or before the checkpoint changes nothing.
 * `records` adds the batch's archived records (informational: an overlapping
 * retry adds its overlap again).
 */
export async function advanceCheckpoint(
  ddb: DynamoDBClient,
  table: string,
  c: { shard: string; seq: string; arrival: number; records: number; now: number },
): Promise<boolean> {
  try {
    await ddb.send(
      new UpdateItemCommand({
        TableName: table,
        Key: { pk: { S: CHECKPOINT_PK }, sk: { S: c.shard } },
        UpdateExpression: 'SET #seq = :seq, #arrival = :arrival, #updatedAt = :now ADD #records :records',
        ConditionExpression: 'attribute_not_exists(#seq) OR #seq < :seq',
        ExpressionAttributeNames: { '#seq': 'seq', '#arrival': 'arrival', '#updatedAt': 'updatedAt', '#records': 'records' },
        ExpressionAttributeValues: {
          ':seq': { S: c.seq },
          ':arrival': { N: String(c.arrival) },
          ':now': { N: String(c.now) },
          ':records': { N: String(c.records) },
        },
      }),
    );
    return true;
  } catch (e) {
    if (e instanceof ConditionalCheckFailedException) return false;
    throw e;
  }
}
