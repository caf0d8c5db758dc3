/**
 * Poison records of the speed layer (DESIGN invariant 9): records that
 * `toRawRecord` rejects. Each goes to the failures bucket under a key derived
 * from its shard and sequence number (a retry overwrites, never duplicates) and
 * is counted once in the control item `stats / poison`; it is never reported
 * as a failed batch item, so it cannot block its shard.
 */
import { ConditionalCheckFailedException, type DynamoDBClient, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { FAILURE_PREFIX } from '../resources.ts';
import { mapLimit } from '../core/limit.ts';

export interface PoisonRecord {
  readonly shard: string;
  /** Padded sequence number. */
  readonly seq: string;
  readonly arrival: number;
  readonly data: Uint8Array;
  /** The field `toRawRecord` named (or `data` when the bytes are not JSON). */
  readonly field: string;
  readonly reason: string;
}

/** Object key of one poison record in the failures bucket. */
export function poisonKey(shard: string, seq: string): string {
  return `${FAILURE_PREFIX}speed/${shard}/${seq}.json`;
}

export const POISON_STATS_KEY = { pk: 'stats', sk: 'poison' } as const;
/** Map attribute of `stats / poison`: per shard, the last poison record the speed layer counted. */
const HW_MAP = 'speedHw';

export async function writePoison(s3: S3Client, bucket: string, records: readonly PoisonRecord[]): Promise<void> {
  await mapLimit(records, 8, async (p) => {
    const text = Buffer.from(p.data).toString('utf8');
    const body = {
      layer: 'speed',
      shard: p.shard,
      seq: p.seq,
      arrival: new Date(p.arrival).toISOString(),
      field: p.field,
      reason: p.reason,
      data: Buffer.from(p.data).toString('base64'),
      text,
    };
    await s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: poisonKey(p.shard, p.seq), Body: Buffer.from(JSON.stringify(body)), ContentType: 'application/json' }),
    );
  });
}

/**
 * Adds the shard's poison records to `stats / poison` exactly once, with the
 * same high-water technique as the speed items (a per-shard entry of a map
 * attribute: the item is shared by all shards and both consumers). Two writes
 * only for batches that hold poison, which are rare.
 */
export async function countPoison(ddb: DynamoDBClient, table: string, shard: string, seqs: readonly string[]): Promise<void> {
  if (seqs.length === 0) return;
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
          ExpressionAttributeNames: { '#m': HW_MAP, '#shard': shard, '#count': 'count' },
          ExpressionAttributeValues: { ':n': { N: String(pending.length) }, ':first': { S: pending[0]! }, ':last': { S: pending[pending.length - 1]! } },
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
