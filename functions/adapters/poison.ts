/**
 * Poison records of the stream consumers (invariant 9, docs/design.md): records that
 * `toRawRecord` rejects. Both consumers (speed and archive) see every poison
 * record; each writes it to the failures bucket under a key derived from its
 * layer, shard and position (a retry overwrites, never duplicates) and
 * counts it once in the control item `stats / poison` under its own
 * attributes. It is never reported as a failed batch item, so it cannot block
 * its shard.
 */
import { ConditionalCheckFailedException, type DynamoDBClient, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { mapLimit } from '../core/limit.ts';
import { type RawRecord, RecordError, recordPosition, toRawRecord } from '../core/record.ts';
import { FAILURE_PREFIX } from '../resources.ts';
import type { StreamRecord } from './kinesis-event.ts';
import { deaggregateRecord, isAggregated } from './kpl.ts';

/** The consumer that met a poison record. */
export type ConsumerLayer = 'speed' | 'archive';

export interface PoisonRecord {
  readonly shard: string;
  /** Position (`recordPosition`): the padded sequence number, plus the sub-sequence number for a user record of an aggregate. */
  readonly seq: string;
  readonly arrival: number;
  /** The bytes that could not be read: the record's, or the user record's in an aggregate. */
  readonly data: Uint8Array;
  /** The field `toRawRecord` named (or `data` when the bytes are not JSON). */
  readonly field: string;
  readonly reason: string;
}

/** A normalized record, or the poison it turned out to be. */
export type Normalized =
  | {
      ok: true;
      record: RawRecord;
      source: StreamRecord;
      /** The partition key that routed the event: its user record's in an aggregate, else the Kinesis record's (undefined: not known). */
      partitionKey: string | undefined;
    }
  | { ok: false; poison: PoisonRecord };

/** Decodes and normalizes one plain stream record with `toRawRecord`; what it rejects is poison in both layers. */
export function normalize(r: StreamRecord): Normalized {
  return normalizeEvent(r, r.data, r.partitionKey, undefined);
}

/**
 * Every event of one stream record, in position order: the record itself, or
 * each user record of a KPL aggregate (functions/adapters/kpl.ts). A corrupt
 * aggregate is one poison record at the Kinesis record's position; a bad user
 * record is poison at its own position, and the aggregate's other user records
 * are events as usual.
 */
export function normalizeRecords(r: StreamRecord): Normalized[] {
  if (!isAggregated(r.data)) return [normalize(r)];
  const agg = deaggregateRecord(r.data, r.seq, r.partitionKey ?? '');
  if (!agg.ok) return [poisonOf(r, recordPosition(r.seq), r.data, 'data', agg.reason)];
  return agg.records.map((u) =>
    u.ok ? normalizeEvent(r, u.data, u.partitionKey, u.sub) : poisonOf(r, recordPosition(r.seq, u.sub), r.data, 'data', u.reason),
  );
}

const poisonOf = (r: StreamRecord, seq: string, data: Uint8Array, field: string, reason: string): Normalized => ({
  ok: false,
  poison: { shard: r.shard, seq, arrival: r.arrival, data, field, reason },
});

function normalizeEvent(r: StreamRecord, bytes: Uint8Array, partitionKey: string | undefined, sub: number | undefined): Normalized {
  const poison = (field: string, reason: string) => poisonOf(r, recordPosition(r.seq, sub), bytes, field, reason);
  let data: unknown;
  try {
    data = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (e) {
    return poison('data', `is not JSON: ${(e as Error).message}`);
  }
  try {
    return { ok: true, record: toRawRecord(data, r.arrival, r.shard, r.seq, sub), source: r, partitionKey };
  } catch (e) {
    if (e instanceof RecordError) return poison(e.field, e.message);
    return poison('event', (e as Error).message);
  }
}

/** The position just past every event of `r`: the position of its last user record (a corrupt or empty aggregate: its own). */
export function lastPosition(events: readonly Normalized[], r: StreamRecord): string {
  const last = events[events.length - 1];
  if (!last) return recordPosition(r.seq);
  return last.ok ? last.record.seq : last.poison.seq;
}

/** Object key of one poison record in the failures bucket. */
export function poisonKey(layer: ConsumerLayer, shard: string, seq: string): string {
  return `${FAILURE_PREFIX}${layer}/${shard}/${seq}.json`;
}

export const POISON_STATS_KEY = { pk: 'stats', sk: 'poison' } as const;
/**
 * Attributes of `stats / poison` per layer: the count, and a map of the last
 * poison record counted per shard (so a redelivered batch does not count again).
 */
export const POISON_ATTRIBUTES: Record<ConsumerLayer, { readonly count: string; readonly hw: string }> = {
  speed: { count: 'count', hw: 'speedHw' },
  archive: { count: 'archive', hw: 'archiveHw' },
};

export async function writePoison(
  s3: S3Client,
  failureBucket: string,
  layer: ConsumerLayer,
  records: readonly PoisonRecord[],
): Promise<void> {
  await mapLimit(records, 8, async (p) => {
    const text = Buffer.from(p.data).toString('utf8');
    const body = {
      layer,
      shard: p.shard,
      seq: p.seq,
      arrival: new Date(p.arrival).toISOString(),
      field: p.field,
      reason: p.reason,
      data: Buffer.from(p.data).toString('base64'),
      text,
    };
    await s3.send(
      new PutObjectCommand({
        Bucket: failureBucket,
        Key: poisonKey(layer, p.shard, p.seq),
        Body: Buffer.from(JSON.stringify(body)),
        ContentType: 'application/json',
      }),
    );
  });
}

/**
 * Adds the shard's poison records to `stats / poison` exactly once, with the
 * same high-water technique as the speed items (a per-shard entry of a map
 * attribute: the item is shared by all shards and both consumers). Two writes
 * only for batches that hold poison, which are rare.
 */
export async function countPoison(
  ddb: DynamoDBClient,
  table: string,
  layer: ConsumerLayer,
  shard: string,
  seqs: readonly string[],
): Promise<void> {
  if (seqs.length === 0) return;
  const { count: COUNT, hw: HW_MAP } = POISON_ATTRIBUTES[layer];
  const sorted = [...seqs].sort();
  const Key = { pk: { S: POISON_STATS_KEY.pk }, sk: { S: POISON_STATS_KEY.sk } };
  // A nested path can be SET only once the map exists, and not in the same expression that creates it.
  await ddb.send(
    new UpdateItemCommand({
      TableName: table,
      Key,
      UpdateExpression: 'SET #m = if_not_exists(#m, :empty)',
      ExpressionAttributeNames: { '#m': HW_MAP },
      ExpressionAttributeValues: { ':empty': { M: {} } },
    }),
  );
  let pending = sorted;
  for (let attempt = 0; pending.length > 0; attempt++) {
    if (attempt >= 4) throw new Error(`stats / poison: condition still failing for shard ${shard}`);
    try {
      await ddb.send(
        new UpdateItemCommand({
          TableName: table,
          Key,
          UpdateExpression: 'ADD #count :n SET #m.#shard = :last',
          ConditionExpression: 'attribute_not_exists(#m.#shard) OR #m.#shard < :first',
          ExpressionAttributeNames: { '#m': HW_MAP, '#shard': shard, '#count': COUNT },
          ExpressionAttributeValues: {
            ':n': { N: String(pending.length) },
            ':first': { S: pending[0]! },
            ':last': { S: pending[pending.length - 1]! },
          },
        }),
      );
      return;
    } catch (e) {
      if (!(e instanceof ConditionalCheckFailedException)) throw e;
      const got = await ddb.send(new GetItemCommand({ TableName: table, Key, ConsistentRead: true }));
      const hw = got.Item?.[HW_MAP]?.M?.[shard]?.S ?? '';
      pending = sorted.filter((s) => s > hw);
    }
  }
}
