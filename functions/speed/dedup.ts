/**
 * Event-id deduplication of the speed layer (invariant 3, docs/design.md).
 *
 * A claim `id -> (shard, seq, expiresAt)` names the one copy of an event that
 * counts. All copies of an id share a partition key, hence a shard, and a shard
 * runs one batch at a time, so nobody else writes a batch's claims while it
 * runs: the claims are read in bulk (BatchGetItem, 100 ids a request) and the
 * new ones written in bulk (BatchWriteItem, 25 a request) instead of one
 * conditional put per record. A retried batch finds its own claims, recognizes
 * them by (shard, seq) and counts those records again; the speed items' hw
 * attribute then keeps them from being applied twice (see apply.ts).
 */
import {
  type AttributeValue,
  BatchGetItemCommand,
  BatchWriteItemCommand,
  type DynamoDBClient,
  type WriteRequest,
} from '@aws-sdk/client-dynamodb';
import { backoff, chunks, mapLimit } from '../core/limit.ts';
import type { RawRecord } from '../core/record.ts';
import { TTL_ATTRIBUTE } from '../resources.ts';

/** DynamoDB's per-request limits. */
export const BATCH_GET_MAX = 100;
export const BATCH_WRITE_MAX = 25;
/** Attempts at unprocessed keys/items before the batch fails (and is retried whole). */
const MAX_ATTEMPTS = 8;

export interface Claim {
  readonly shard: string;
  /** Padded sequence number of the claiming record. */
  readonly seq: string;
  /** Epoch seconds. */
  readonly expiresAt: number;
}

export interface DedupIo {
  /** BatchGetItem / BatchWriteItem requests sent, retries of unprocessed parts included. */
  requests: number;
}

/**
 * Reads the live claims of `ids` (strongly consistent: a claim written by the
 * previous batch of the shard must be seen). Claims past their expiry are
 * treated as absent, as DynamoDB deletes expired items only within days and
 * dynalite never does.
 */
export async function readClaims(
  ddb: DynamoDBClient,
  table: string,
  ids: readonly string[],
  nowMs: number,
  io: DedupIo,
  concurrency = 8,
): Promise<Map<string, Claim>> {
  const claims = new Map<string, Claim>();
  const nowSec = Math.floor(nowMs / 1000);
  await mapLimit(chunks([...new Set(ids)], BATCH_GET_MAX), concurrency, async (chunk) => {
    let keys: Record<string, AttributeValue>[] = chunk.map((id) => ({ id: { S: id } }));
    for (let attempt = 0; keys.length > 0; attempt++) {
      if (attempt >= MAX_ATTEMPTS) throw new Error(`dedup: ${keys.length} claim reads still unprocessed after ${MAX_ATTEMPTS} attempts`);
      if (attempt > 0) await backoff(attempt);
      io.requests++;
      const res = await ddb.send(
        new BatchGetItemCommand({
          RequestItems: {
            // The whole item: a claim holds nothing else, so a projection reads no less
            // (nor fewer read units) and only costs the emulator its evaluation per key.
            [table]: { Keys: keys, ConsistentRead: true },
          },
        }),
      );
      for (const item of res.Responses?.[table] ?? []) {
        const id = item.id?.S;
        const shard = item.shard?.S;
        const seq = item.seq?.S;
        const expiresAt = Number(item[TTL_ATTRIBUTE]?.N ?? Number.POSITIVE_INFINITY);
        if (id === undefined || shard === undefined || seq === undefined) continue;
        if (expiresAt <= nowSec) continue;
        claims.set(id, { shard, seq, expiresAt });
      }
      keys = res.UnprocessedKeys?.[table]?.Keys ?? [];
    }
  });
  return claims;
}

export interface Decision {
  /** Records that count: the first copy of each id (in batch order). */
  readonly counted: RawRecord[];
  /** Copies whose id is claimed by another (shard, seq), or a later copy in this batch. */
  readonly duplicates: RawRecord[];
  /** Counted records whose claim is not stored yet. */
  readonly newClaims: RawRecord[];
}

/**
 * Decides per record, given the live claims of the batch's ids:
 * - claimed by (this record's shard, this record's seq): our own claim from an
 *   earlier attempt at this batch -> counts;
 * - claimed by any other (shard, seq): a duplicate, counts nowhere;
 * - unclaimed: the copy with the lowest sequence number in the batch counts and
 *   is claimed; the other copies are duplicates.
 * Pure: the same claims give the same decision, which is what makes a retried
 * batch count exactly the records its first attempt counted.
 */
export function decide(records: readonly RawRecord[], claims: ReadonlyMap<string, Claim>): Decision {
  const first = new Map<string, RawRecord>();
  for (const r of records) {
    const seen = first.get(r.id);
    if (!seen || r.seq < seen.seq) first.set(r.id, r);
  }
  const counted: RawRecord[] = [];
  const duplicates: RawRecord[] = [];
  const newClaims: RawRecord[] = [];
  // An id counts at most once per batch, even if a batch held one record twice.
  const done = new Set<string>();
  for (const r of records) {
    const claim = claims.get(r.id);
    if (done.has(r.id)) {
      duplicates.push(r);
    } else if (claim) {
      if (claim.shard === r.shard && claim.seq === r.seq) {
        counted.push(r);
        done.add(r.id);
      } else duplicates.push(r);
    } else if (first.get(r.id) === r) {
      done.add(r.id);
      counted.push(r);
      newClaims.push(r);
    } else {
      duplicates.push(r);
    }
  }
  return { counted, duplicates, newClaims };
}

/**
 * Stores claims for `records` (plain puts: no other writer can race for these
 * ids, see the module comment). Throws when some stay unprocessed, so the batch
 * fails before any delta is applied and is retried whole.
 */
export async function writeClaims(
  ddb: DynamoDBClient,
  table: string,
  records: readonly RawRecord[],
  expiresAt: number,
  io: DedupIo,
  concurrency = 8,
): Promise<void> {
  await mapLimit(chunks(records, BATCH_WRITE_MAX), concurrency, async (chunk) => {
    let requests: WriteRequest[] = chunk.map((r) => ({
      PutRequest: { Item: { id: { S: r.id }, shard: { S: r.shard }, seq: { S: r.seq }, [TTL_ATTRIBUTE]: { N: String(expiresAt) } } },
    }));
    for (let attempt = 0; requests.length > 0; attempt++) {
      if (attempt >= MAX_ATTEMPTS)
        throw new Error(`dedup: ${requests.length} claim writes still unprocessed after ${MAX_ATTEMPTS} attempts`);
      if (attempt > 0) await backoff(attempt);
      io.requests++;
      const res = await ddb.send(new BatchWriteItemCommand({ RequestItems: { [table]: requests } }));
      requests = res.UnprocessedItems?.[table] ?? [];
    }
  });
}
