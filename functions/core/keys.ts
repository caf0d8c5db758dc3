/**
 * DynamoDB key layout of the speed table and the batch-view table, in one
 * place: the writers (speed layer, batch loader) and the reader (query) use
 * these functions only. See docs/speed-layer.md for the costs.
 *
 * Speed table:  pk = <view>#<arrival hour start ms>#<write shard>
 *               sk = <window start ms, 13 digits>#<bucket ms, 13 digits>#<dims json>#<kinesis shard id>
 * One item per (view, window, bucket, dimension values, Kinesis shard): an item
 * is written by one Kinesis shard only, so its high-water sequence number is a
 * plain attribute. A query for windows >= C reads (arrival hours since C) x
 * SPEED_WRITE_SHARDS partitions, each with one key-range Query.
 *
 * Batch-view table: pk = <view>#<version, 10 digits>#<partition start ms>
 *                   sk = <bucket ms, 13 digits>#<dims json>
 * A partition spans a day for minute views, 30 days for hour views and 360
 * days for day views (a few thousand rows per partition per dimension value).
 */
import type { Grain } from './time.ts';

export const SPEED_WRITE_SHARDS = 4;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

export const BATCH_PARTITION_MS: Record<Grain, number> = { minute: DAY_MS, hour: 30 * DAY_MS, day: 360 * DAY_MS };

export const pad13 = (ms: number) => String(ms).padStart(13, '0');
export const padVersion = (v: number) => String(v).padStart(10, '0');

/** Dimension values in view order, encoded for a sort key (self-delimiting JSON). */
export const dimsKey = (dims: readonly (string | null)[]) => JSON.stringify(dims);

/** FNV-1a, 32-bit: a stable, dependency-free spread of shard ids over write shards. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

export function speedWriteShard(kinesisShardId: string): number {
  return fnv1a(kinesisShardId) % SPEED_WRITE_SHARDS;
}

export function speedPk(view: string, windowMs: number, kinesisShardId: string): string {
  return `${view}#${Math.floor(windowMs / HOUR_MS) * HOUR_MS}#${speedWriteShard(kinesisShardId)}`;
}

export function speedSk(windowMs: number, bucketMs: number, dims: readonly (string | null)[], kinesisShardId: string): string {
  return `${pad13(windowMs)}#${pad13(bucketMs)}#${dimsKey(dims)}#${kinesisShardId}`;
}

/** The speed partitions holding windows in [fromWindowMs, toMs): each with the sort-key lower bound to query from. */
export function speedPartitions(view: string, fromWindowMs: number, toMs: number): { pk: string; skFrom: string }[] {
  const out: { pk: string; skFrom: string }[] = [];
  for (let h = Math.floor(fromWindowMs / HOUR_MS) * HOUR_MS; h < toMs; h += HOUR_MS) {
    for (let w = 0; w < SPEED_WRITE_SHARDS; w++) out.push({ pk: `${view}#${h}#${w}`, skFrom: pad13(Math.max(h, fromWindowMs)) });
  }
  return out;
}

export function batchPartitionStart(bucketMs: number, grain: Grain): number {
  const span = BATCH_PARTITION_MS[grain];
  return Math.floor(bucketMs / span) * span;
}

export function batchPk(view: string, version: number, bucketMs: number, grain: Grain): string {
  return `${view}#${padVersion(version)}#${batchPartitionStart(bucketMs, grain)}`;
}

export function batchSk(bucketMs: number, dims: readonly (string | null)[]): string {
  return `${pad13(bucketMs)}#${dimsKey(dims)}`;
}

/** The batch-view partitions covering buckets in [fromMs, toMs). */
export function batchPartitions(view: string, version: number, grain: Grain, fromMs: number, toMs: number): string[] {
  const span = BATCH_PARTITION_MS[grain];
  const out: string[] = [];
  for (let p = batchPartitionStart(fromMs, grain); p < toMs; p += span) out.push(`${view}#${padVersion(version)}#${p}`);
  return out;
}
