/**
 * A backfill's id sets: how a backfill tells the speed layer which ids it
 * brings (docs/batch-layer.md "Backfill", functions/speed/outside.ts). The
 * writer (functions/archive/backfill.ts) and the reader (the speed layer) share
 * only this module, so they cannot disagree on a bucket or a key.
 *
 * The ids of a backfill with pseudo-shard S and `buckets` buckets are spread
 * over control items `backfill-ids#<S>#<bucket>` / `ids` by the first 32 bits
 * of each id's MD5, each holding `{ id: index of its first copy }` as JSON.
 * About ID_SET_TARGET ids an item (a few KB: one read unit for a lookup, and
 * one write unit per ~25 ids instead of one conditional write per id).
 * Written once, before the backfill's arrival time T is chosen, and never
 * changed: readers may cache them for as long as they like.
 */
import { createHash } from 'node:crypto';

/** How long a speed container trusts its list of backfills (functions/speed/outside.ts). */
export const BACKFILL_LIST_TTL_MS = 5_000;
/**
 * How far past the end of its registration a backfill puts its arrival time T: more than
 * BACKFILL_LIST_TTL_MS, by the clock slack allowed between the backfill's machine, Kinesis
 * and Lambda (10 s: twice the batch's margin for the cut, which assumes the same clocks), so
 * every live copy at or after T is decided with the id sets in view.
 */
export const BACKFILL_LEAD_MS = 15_000;

/** Ids per id-set item, on average. */
export const ID_SET_TARGET = 100;

/** The control-table partition key prefix of id-set items; their sort key is `ids`. */
export const ID_SET_PK_PREFIX = 'backfill-ids#';
export const ID_SET_SK = 'ids';

/** How many buckets a backfill of `ids` distinct ids spreads them over. */
export function idSetBuckets(ids: number): number {
  if (!Number.isInteger(ids) || ids < 0) throw new RangeError(`the number of ids must be a whole number >= 0, received ${ids}`);
  return Math.max(1, Math.ceil(ids / ID_SET_TARGET));
}

/** The bucket of `id` among `buckets`: the first 32 bits of its MD5 (node:crypto is the one hash both sides have). */
export function idSetBucket(id: string, buckets: number): number {
  return createHash('md5').update(id, 'utf8').digest().readUInt32BE(0) % buckets;
}

/** The control-table key of one bucket of the backfill `shard`. */
export function idSetKey(shard: string, bucket: number): { pk: string; sk: string } {
  return { pk: `${ID_SET_PK_PREFIX}${shard}#${bucket}`, sk: ID_SET_SK };
}

/** An id set as stored (`ids` attribute): JSON of id -> index of the backfill's first copy of it. */
export function encodeIdSet(ids: ReadonlyMap<string, number>): string {
  return JSON.stringify(Object.fromEntries(ids));
}

export function decodeIdSet(text: string): Map<string, number> {
  const parsed = JSON.parse(text) as Record<string, unknown>;
  const out = new Map<string, number>();
  for (const [id, index] of Object.entries(parsed)) {
    if (typeof index !== 'number' || !Number.isInteger(index) || index < 0)
      throw new RangeError(`an id set holds index ${JSON.stringify(index)} for id ${JSON.stringify(id)}`);
    out.set(id, index);
  }
  return out;
}
