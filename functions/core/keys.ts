/**
 * DynamoDB key layout of the speed table and the batch-view table, in one
 * place: the writers (speed layer, batch loader) and the reader (query) use
 * these functions only. See docs/speed-layer.md for the costs.
 *
 * Speed table:  pk = <view>#<arrival hour start ms>#<write shard>
 *               sk = <window start ms, 13 digits>#<slot ms, 13 digits>#<part>#<kinesis shard id>
 * One item per (view, arrival window, slot, part, Kinesis shard), where the slot
 * is the event-time hour of the bucket and the part cuts a late slot by arrival
 * (`speedPart`): the item holds one *cell* per (bucket,
 * dimension values) of that hour, as attributes `<minute in the slot>|<dims
 * json>|<column>`. A batch then writes one item per view, window and hour it
 * touches, not one per bucket and dimension values (late events land in a few
 * hour slots, not in a new item each). An item is written by one Kinesis shard
 * only, so its high-water sequence number is a plain attribute. A query for
 * windows >= C reads (arrival hours since C) x WRITE_SHARDS partitions,
 * each with one key-range Query.
 *
 * Batch-view table: pk = <view>#<version, 10 digits>#<partition start ms>
 *                   sk = <block start ms, 13 digits>#<chunk, 3 digits>
 * A partition spans a day for minute views, 30 days for hour views and 360
 * days for day views (a few thousand rows per partition per dimension value).
 * An item is a *block*: every row of one pk whose bucket falls in one block span (`BLOCK_MS` by the
 * grain of the rows: minute rows 1 hour, hour rows 1 day, day rows 30 days; epoch-aligned), packed
 * into one text attribute (core/blocks.ts). Batch views are immutable per (partition, writer), so a
 * block is written once and read whole: a rebuild writes and a query reads ~16 rows per KB instead
 * of one item per row. A block whose text exceeds BLOCK_MAX_BYTES is cut into chunks 000, 001, ...
 * (rows sorted by bucket and dimension values, so chunks stay in order). A block never straddles a
 * partition (spans divide whole days / 30 days / 360 days), except that a day-rollup block of a
 * minute view's one-day partition starts at its 30-day boundary and holds that day only.
 *
 * Rollups:          pk = <view>@<grain>#<version, 10 digits>#<partition start ms>, sk as above
 * The rows of one base partition rolled up to a coarser grain (`rollupGrains`), written by the
 * partition's writer with the partition itself: one partition start and writer for every grain, so
 * a manifest's partition -> writer map names them all. Both partition spans are whole days, so a
 * rollup bucket never straddles two partitions.
 *
 * Day blocks:       pk = <view>@days#<version, 10 digits>#<30-day block start ms>, sk as above
 * For views whose partition is shorter than a day block (minute views: one day), the day rollup rows
 * of every partition in one 30-day block, so a long day-grain query reads one item per 30 days, not
 * one Query per day. Written by the run that last touched a partition of the block (copy-on-write);
 * a manifest maps block start -> writer (`ViewManifest.rollups.dayBlocks`). `@days` never equals a
 * rollup grain's tag.
 */
import { GRAIN_MS, type Grain } from './time.ts';

export const WRITE_SHARDS = 4;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

export const BATCH_PARTITION_MS: Record<Grain, number> = { minute: DAY_MS, hour: 30 * DAY_MS, day: 360 * DAY_MS };

/**
 * Control table: the published pointer `pointer / current` (version, cutoff), written by the batch
 * layer's publish and rollback (batch/control.ts), read first by every query (api/read-view.ts).
 */
export const POINTER_KEY = { pk: 'pointer', sk: 'current' } as const;

export const pad13 = (ms: number) => String(ms).padStart(13, '0');
export const padVersion = (v: number) => String(v).padStart(10, '0');

/**
 * Control table: the manifest of batch version N, `version / <N, 10 digits>`, written by the batch
 * layer (batch/control.ts), read by queries for the partition -> writer map of a view (api/read-view.ts).
 */
export const versionKey = (version: number) => ({ pk: 'version', sk: padVersion(version) }) as const;

/** Dimension values in view order, encoded for a sort key (self-delimiting JSON). */
export const dimsKey = (dims: readonly (string | null)[]) => JSON.stringify(dims);

const dimsKeys = new WeakMap<readonly (string | null)[], string>();
/**
 * `dimsKey`, kept per array: rows that share their dims array (a rebuild's, which viewRows makes one per distinct
 * dimension values) have it made once, not once per row at each step (rollups, then blocks, at every grain).
 */
export function sharedDimsKey(dims: readonly (string | null)[]): string {
  let key = dimsKeys.get(dims);
  if (key === undefined) {
    key = JSON.stringify(dims);
    dimsKeys.set(dims, key);
  }
  return key;
}

/** FNV-1a, 32-bit: a stable, dependency-free spread of shard ids over write shards. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

export function writeShard(shard: string): number {
  return fnv1a(shard) % WRITE_SHARDS;
}

export function speedPk(view: string, windowMs: number, shard: string): string {
  return `${view}#${Math.floor(windowMs / HOUR_MS) * HOUR_MS}#${writeShard(shard)}`;
}

export function speedSk(windowMs: number, slotMs: number, part: number, shard: string): string {
  return `${pad13(windowMs)}#${pad13(slotMs)}#${part}#${shard}`;
}

/** The slot of a bucket: the start of its event-time hour (hour and day buckets are their own slot). */
export const speedSlot = (bucketMs: number): number => Math.floor(bucketMs / HOUR_MS) * HOUR_MS;

/** Arrival span of one part of a late slot's item. */
export const LATE_PART_MS = 10_000;

/**
 * The part of a speed item a record goes to: 0 when its slot is the hour its arrival window
 * starts in (the item of the current hour, which every batch rewrites: its cells are the few
 * dimension values of the last minutes), else 1 + the record's 10-second span of the window.
 * A late slot's cells are many and scattered (late events), and DynamoDB charges a write by
 * the whole item's size: cut by arrival, such an item holds 10 s of late events, not a
 * window's. Measured on the demo mix (bench/speed.ts): write units per record 0.17 -> 0.06 at
 * batches of 1,000, for 3 % more items.
 */
export function speedPart(windowMs: number, slotMs: number, arrivalMs: number): number {
  return slotMs === speedSlot(windowMs) ? 0 : 1 + Math.floor((arrivalMs - windowMs) / LATE_PART_MS);
}

const MINUTE_MS = 60_000;

/**
 * The attribute of one column of one cell of a speed item: `<minute in the slot>|<dims json>|<column>`
 * (short: the item's size is what a write costs). Column names never hold `|` (views.ts NAME_RE).
 */
export function cellAttribute(slotMs: number, bucketMs: number, dims: readonly (string | null)[], column: string): string {
  return `${(bucketMs - slotMs) / MINUTE_MS}|${dimsKey(dims)}|${column}`;
}

/** The cell and column an attribute of a speed item holds; undefined for the item's other attributes. */
export function parseCellAttribute(
  slotMs: number,
  attribute: string,
): { bucket: number; dims: (string | null)[]; dimsKey: string; column: string } | undefined {
  const m = /^(\d+)\|(\[.*\])\|([^|]+)$/s.exec(attribute);
  if (!m) return undefined;
  return { bucket: slotMs + Number(m[1]) * MINUTE_MS, dims: JSON.parse(m[2]!) as (string | null)[], dimsKey: m[2]!, column: m[3]! };
}

/** The speed partitions holding windows in [fromWindowMs, toMs): each with the sort-key lower bound to query from. */
export function speedPartitions(view: string, fromWindowMs: number, toMs: number): { pk: string; skFrom: string }[] {
  const out: { pk: string; skFrom: string }[] = [];
  for (let h = Math.floor(fromWindowMs / HOUR_MS) * HOUR_MS; h < toMs; h += HOUR_MS) {
    for (let w = 0; w < WRITE_SHARDS; w++) out.push({ pk: `${view}#${h}#${w}`, skFrom: pad13(Math.max(h, fromWindowMs)) });
  }
  return out;
}

/** A cell of a speed item as the reader sees it: its bucket, dimension values and columns. */
export interface SpeedCell {
  readonly bucket: number;
  readonly dims: (string | null)[];
  readonly columns: Record<string, unknown>;
}

/** The cells of a stored speed item (`slot` is the item's); values stay as the item holds them. */
export function cellsOf(slot: number, item: Readonly<Record<string, unknown>>): SpeedCell[] {
  const cells = new Map<string, SpeedCell>();
  for (const [attribute, v] of Object.entries(item)) {
    const c = parseCellAttribute(slot, attribute);
    if (!c) continue;
    const id = `${c.bucket}|${c.dimsKey}`;
    let cell = cells.get(id);
    if (!cell) {
      cell = { bucket: c.bucket, dims: c.dims, columns: {} };
      cells.set(id, cell);
    }
    cell.columns[c.column] = v;
  }
  return [...cells.values()];
}

export function batchPartitionStart(bucketMs: number, grain: Grain): number {
  const span = BATCH_PARTITION_MS[grain];
  return Math.floor(bucketMs / span) * span;
}

export function batchPk(view: string, version: number, bucketMs: number, grain: Grain): string {
  return batchPartitionPk(view, version, batchPartitionStart(bucketMs, grain));
}

/** The key of the partition starting at `partitionStartMs` as `version` wrote it (a version manifest maps partitions to writers). */
export function batchPartitionPk(view: string, version: number, partitionStartMs: number): string {
  return `${view}#${padVersion(version)}#${partitionStartMs}`;
}

/** The grains a view's batch also keeps its rows at: each coarser one among hour and day. */
export function rollupGrains(grain: Grain): Grain[] {
  return (['hour', 'day'] as const).filter((g) => GRAIN_MS[g] > GRAIN_MS[grain]);
}

/** Whether a view of `grain` keeps day blocks: its partitions are shorter than a day block and it keeps day rollups. */
export function keepsDayBlocks(grain: Grain): boolean {
  return BATCH_PARTITION_MS[grain] < BLOCK_MS.day && rollupGrains(grain).includes('day');
}

/** The key of the day block starting at `blockStartMs` (30-day aligned) as `version` wrote it. */
export function batchDayBlockPk(view: string, version: number, blockStartMs: number): string {
  return `${view}@days#${padVersion(version)}#${blockStartMs}`;
}

/** The key of a partition's rollup rows at `grain` as `version` wrote them (the base grain keeps `batchPartitionPk`). */
export function batchRollupPk(view: string, grain: Grain, version: number, partitionStartMs: number): string {
  return `${view}@${grain}#${padVersion(version)}#${partitionStartMs}`;
}

/** The span of a block by the grain of its rows (see the header): a few dozen rows per block per dimension value. */
export const BLOCK_MS: Record<Grain, number> = { minute: HOUR_MS, hour: DAY_MS, day: 30 * DAY_MS };

/**
 * Text bytes of a block's rows above which it is cut into chunks (DynamoDB items are at most 400 KB), its sketch
 * attributes included when they are held apart (core/blocks.ts): the item's size, which is what the limit guards.
 */
export const BLOCK_MAX_BYTES = 300_000;

/** The start of the block holding a bucket of rows at `grain`. */
export function blockStart(bucketMs: number, grain: Grain): number {
  return Math.floor(bucketMs / BLOCK_MS[grain]) * BLOCK_MS[grain];
}

/** The sort key of one chunk of a block: `<block start 13d>#<chunk 3d>` (ordered by block, then chunk). */
export function blockSk(blockStartMs: number, chunk: number): string {
  return `${pad13(blockStartMs)}#${String(chunk).padStart(3, '0')}`;
}

/** The batch-view partitions covering buckets in [fromMs, toMs). */
export function batchPartitions(view: string, version: number, grain: Grain, fromMs: number, toMs: number): string[] {
  const span = BATCH_PARTITION_MS[grain];
  const out: string[] = [];
  for (let p = batchPartitionStart(fromMs, grain); p < toMs; p += span) out.push(`${view}#${padVersion(version)}#${p}`);
  return out;
}
