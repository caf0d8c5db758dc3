/** A backfill's id sets as stored in the control table (functions/core/backfill-ids.ts), for the tests to compare. */
import { type DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import type { Clients } from '../../functions/adapters/clients.ts';
import type { BackfillDeps } from '../../functions/archive/backfill.ts';
import type { Config } from '../../functions/config.ts';
import { decodeIdSet, idSetKey } from '../../functions/core/backfill-ids.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';

/** What every in-process backfill of the tests writes to: the running cloud's bucket and control table, the demo views. */
export const backfillDeps = (clients: Pick<Clients, 's3' | 'dynamodb'>, config: Config) =>
  ({
    s3: clients.s3,
    ddb: clients.dynamodb,
    rawBucket: config.buckets.raw,
    controlTable: config.tables.control,
    views: DEMO_VIEWS,
  }) satisfies BackfillDeps;

/** Bucket -> (id -> index of its first copy) for buckets 0..buckets-1 of the backfill `shard`; absent buckets left out. */
export async function readIdSets(
  ddb: DynamoDBClient,
  table: string,
  shard: string,
  buckets: number,
): Promise<Map<number, Map<string, number>>> {
  const out = new Map<number, Map<string, number>>();
  for (let bucket = 0; bucket < buckets; bucket++) {
    const key = idSetKey(shard, bucket);
    const got = await ddb.send(
      new GetItemCommand({ TableName: table, Key: { pk: { S: key.pk }, sk: { S: key.sk } }, ConsistentRead: true }),
    );
    if (got.Item?.ids?.S !== undefined) out.set(bucket, decodeIdSet(got.Item.ids.S));
  }
  return out;
}

/** Every id of the id sets, with its index. */
export const allIds = (sets: ReadonlyMap<number, ReadonlyMap<string, number>>) => new Map([...sets.values()].flatMap((set) => [...set]));
