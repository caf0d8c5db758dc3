/**
 * Copies from outside the stream, as the speed layer decides against them: a
 * backfill's records never pass through Kinesis, but the dedup rule orders
 * them with the live copies (arrival T, pseudo-shard `backfill-<hex>`, the
 * index of the backfill's first copy of the id; docs/batch-layer.md
 * "Backfill"). A backfill announces its ids in id sets (core/backfill-ids.ts)
 * before it takes T, and takes T = max(now + BACKFILL_LEAD_MS, published
 * cutoff) after they are all written, in the control item `backfill / <S>`
 * { arrival, buckets }. A live copy arriving at or after T reaches a batch that
 * starts at or after its arrival; this module's list of backfills is at most
 * BACKFILL_LIST_TTL_MS old when used, and BACKFILL_LEAD_MS exceeds that by
 * the clock slack allowed between the backfill's machine, Kinesis and Lambda.
 * So every live copy at or after T is decided with T's id sets in view, and
 * a copy before T needs none (the backfilled copy comes after it). A copy
 * more than H after T needs none either: the backfilled copy cannot be within
 * H before it, and whatever copy came between is in the claim.
 *
 * Only ids with a copy in [T, T + H] are looked up: one strongly consistent
 * read of a few KB per bucket, sent beside the claims' reads, and cached for
 * the container's life (id sets never change once T is taken).
 */
import { type AttributeValue, type DynamoDBClient, QueryCommand } from '@aws-sdk/client-dynamodb';
import { batchGetAll } from '../adapters/batch-items.ts';
import { BACKFILL_LIST_TTL_MS, decodeIdSet, ID_SET_SK, idSetBucket, idSetKey } from '../core/backfill-ids.ts';
import { padSeq, type RawRecord } from '../core/record.ts';
import type { DedupIo } from './dedup.ts';

/** Id sets a container keeps (a few KB each). */
const MAX_CACHED_SETS = 8192;

/** The control-table partition key of backfill items (functions/archive/layout.ts BACKFILL_PK: speed may not import archive). */
const BACKFILL_PK = 'backfill';

/** A backfill whose ids are in id sets, with its arrival time taken. */
export interface OutsideSource {
  /** Its pseudo-shard, `backfill-<hex>`. */
  readonly shard: string;
  /** T, epoch ms. */
  readonly arrival: number;
  readonly buckets: number;
}

/** A copy of an id from outside the stream: where the dedup rule places it. */
export interface OutsideCopy {
  readonly arrival: number;
  readonly shard: string;
  /** Its position in the pseudo-shard: the padded index of the backfill's first copy of the id. */
  readonly seq: string;
}

/**
 * The backfills and id sets one container has read. Share one across the
 * invocations of a container (functions/speed.ts); a fresh one per batch is
 * just as exact and reads more.
 */
export class OutsideCopies {
  private list: { readonly table: string; readonly at: number; readonly sources: readonly OutsideSource[] } | undefined;
  private readonly sets = new Map<string, ReadonlyMap<string, number>>();
  /** What this container read: lists of backfills, id-set items, and the read units those items cost (strongly consistent). */
  readonly stats = { lists: 0, sets: 0, readUnits: 0 };

  constructor(private readonly ttlMs = BACKFILL_LIST_TTL_MS) {}

  /** The registered backfills (state `writing` or `complete`, with id sets), read again when older than the TTL. */
  async sources(ddb: DynamoDBClient, table: string, now: number, io: DedupIo): Promise<readonly OutsideSource[]> {
    const l = this.list;
    if (l && l.table === table && now - l.at < this.ttlMs && now >= l.at) return l.sources;
    const sources: OutsideSource[] = [];
    let start: Record<string, AttributeValue> | undefined;
    do {
      io.requests++;
      const page = await ddb.send(
        new QueryCommand({
          TableName: table,
          KeyConditionExpression: 'pk = :pk',
          ExpressionAttributeValues: { ':pk': { S: BACKFILL_PK } },
          ConsistentRead: true,
          ExclusiveStartKey: start,
        }),
      );
      for (const item of page.Items ?? []) {
        const shard = item.sk?.S;
        const arrival = Number(item.arrival?.N);
        const buckets = Number(item.buckets?.N);
        // A backfill still registering has no T yet; one registered in chained claims (before id sets) has no buckets.
        if (shard === undefined || item.state?.S === 'registering' || !Number.isFinite(arrival) || !(buckets >= 1)) continue;
        sources.push({ shard, arrival, buckets });
      }
      start = page.LastEvaluatedKey;
    } while (start);
    this.stats.lists++;
    this.list = { table, at: now, sources };
    return sources;
  }

  /**
   * The outside copies of the ids of `records` that some copy of the batch may be
   * decided against: per id, the backfills with T <= one of its copies' arrival <= T + H
   * that hold it, in (arrival, shard) order.
   */
  async copiesOf(
    ddb: DynamoDBClient,
    table: string,
    records: readonly RawRecord[],
    opts: { readonly horizonMs: number; readonly now: number },
    io: DedupIo,
  ): Promise<Map<string, OutsideCopy[]>> {
    const out = new Map<string, OutsideCopy[]>();
    if (records.length === 0) return out;
    const sources = await this.sources(ddb, table, opts.now, io);
    if (sources.length === 0) return out;
    const wanted: { id: string; source: OutsideSource; key: string }[] = [];
    for (const r of records)
      for (const s of sources)
        if (r.arrival >= s.arrival && r.arrival - s.arrival <= opts.horizonMs)
          wanted.push({ id: r.id, source: s, key: idSetKey(s.shard, idSetBucket(r.id, s.buckets)).pk });
    // Cached by table and T too: one process may serve several deployments (the tests' local clouds),
    // where the same content may be backfilled at another T.
    const cacheKey = (w: { source: OutsideSource; key: string }) => `${table}\u0000${w.source.arrival}\u0000${w.key}`;
    if (wanted.length === 0) return out;
    const sets = await this.load(ddb, table, [...new Map(wanted.map((w) => [cacheKey(w), w.key])).entries()], io);
    const seen = new Set<string>();
    for (const w of wanted) {
      const index = sets.get(cacheKey(w))?.get(w.id);
      if (index === undefined || seen.has(`${w.source.shard}\u0000${w.id}`)) continue;
      seen.add(`${w.source.shard}\u0000${w.id}`);
      const copy = { arrival: w.source.arrival, shard: w.source.shard, seq: padSeq(String(index)) };
      const list = out.get(w.id);
      if (list) list.push(copy);
      else out.set(w.id, [copy]);
    }
    for (const list of out.values()) list.sort((a, b) => a.arrival - b.arrival || (a.shard < b.shard ? -1 : a.shard > b.shard ? 1 : 0));
    return out;
  }

  /**
   * The id sets of `keys` ([cache key, pk]), by cache key, read when not cached (an absent item is
   * an empty bucket). Returned whole: the cache may evict some while a large batch loads the rest.
   */
  private async load(
    ddb: DynamoDBClient,
    table: string,
    keys: readonly (readonly [string, string])[],
    io: DedupIo,
  ): Promise<Map<string, ReadonlyMap<string, number>>> {
    const sets = new Map<string, ReadonlyMap<string, number>>();
    const missing: (readonly [string, string])[] = [];
    for (const k of keys) {
      const set = this.sets.get(k[0]);
      if (set) sets.set(k[0], set);
      else missing.push(k);
    }
    const found = new Map<string, ReadonlyMap<string, number>>();
    await batchGetAll(
      ddb,
      missing.map(([, pk]) => ({ table, key: { pk: { S: pk }, sk: { S: ID_SET_SK } } })),
      {
        what: 'dedup: id-set reads',
        io,
        onItems: (_, items) => {
          for (const item of items) {
            const pk = item.pk?.S;
            if (pk === undefined) continue;
            const text = item.ids?.S ?? '{}';
            found.set(pk, decodeIdSet(text));
            this.stats.sets++;
            // DynamoDB's item size: attribute names and values (UTF-8), one read unit per 4 KB.
            this.stats.readUnits += Math.ceil((Buffer.byteLength(pk) + Buffer.byteLength(text) + 16) / 4096);
          }
        },
      },
    );
    for (const [key, pk] of missing) {
      const set = found.get(pk) ?? new Map<string, number>();
      sets.set(key, set);
      this.remember(key, set);
    }
    return sets;
  }

  private remember(key: string, set: ReadonlyMap<string, number>): void {
    if (this.sets.size >= MAX_CACHED_SETS) this.sets.delete(this.sets.keys().next().value!);
    this.sets.set(key, set);
  }
}
