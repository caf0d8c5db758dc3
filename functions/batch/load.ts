/**
 * Loading a view's rows as version N into the batch-view table (keys from
 * core/keys.ts), and deleting a retired version's rows. Rows are packed into
 * block items (core/blocks.ts: a block of a partition's rows per hour, day or
 * 30 days by grain). BatchWriteItem, 25 items a request, a bounded number of
 * requests in flight; unprocessed items are resent with backoff until none is
 * left. State columns travel as decimal text, so nothing passes through a double.
 */
import { type AttributeValue, BatchWriteItemCommand, type DynamoDBClient, QueryCommand, type WriteRequest } from '@aws-sdk/client-dynamodb';
import { decodeBlock, type EncodedBlock, encodeBlocks, newestBlocks } from '../core/blocks.ts';
import {
  BLOCK_MAX_BYTES,
  batchDayBlockPk,
  batchPartitionPk,
  batchPartitionStart,
  batchPk,
  batchRollupPk,
  blockSk,
  blockStart,
  dimsKey,
  keepsDayBlocks,
  pad13,
  rollupGrains,
  sharedDimsKey,
} from '../core/keys.ts';
import { backoff, mapLimit } from '../core/limit.ts';
import { combineColumnTexts, combineViewStates, stateFromColumns, stateToColumns } from '../core/metrics.ts';
import { bucketStart, type Grain } from '../core/time.ts';
import type { View } from '../core/views.ts';
import type { ViewManifest } from './control.ts';
import type { BatchRow } from './engine.ts';

export const BATCH_WRITE_MAX = 25;

/**
 * The layout this code writes and reads batch views in, recorded in each version's manifest: rows packed in blocks
 * (core/blocks.ts) with their sketches apart (form `apart`), day blocks of minute views. A published version in a
 * layout not in MERGEABLE_LAYOUTS is rebuilt, not incremented.
 */
export const STORAGE_LAYOUT = 'blocks-3';
/** The block form this code writes (core/blocks.ts): `blocks-3` holds sketches apart from `rows`; the layouts before, inline. */
const BLOCK_FORM = 'apart';
/**
 * Layouts an increment can merge into: `blocks-1` is `blocks-2` without inherited blocks (every partition whole under
 * its writer), which this code reads as a partition with nothing inherited; `blocks-2` is `blocks-3` with every
 * sketch inline (core/blocks.ts decodes both forms, and a block keeps one form: an increment rewrites it whole, in this
 * code's). Code that knew only `blocks-1` rebuilds a `blocks-2` version (it would not read inherited blocks), and code
 * that knew only `blocks-2` a `blocks-3` one (it would not read sketches apart).
 */
export const MERGEABLE_LAYOUTS: readonly string[] = ['blocks-1', 'blocks-2', STORAGE_LAYOUT];
/**
 * Earlier writers a partition may inherit blocks from; an increment that would make it more carries the blocks of all
 * but the oldest into its write (mergePartition). Bounds the Queries a base-grain read of a partition makes (one per
 * writer) and the manifest's size.
 */
export const MAX_INHERITED_WRITERS = 3;
/** Rounds of unprocessed items before a load gives up (the step is retried whole). */
const MAX_ATTEMPTS = 16;

/**
 * The block items of rows of ONE key: a partition's base rows (`grain` undefined) or its rollup rows
 * at `grain`, keyed under the partition holding them (see core/keys.ts). `rows` must be every row of
 * the key: an item replaces the whole block.
 */
export function blockItems(view: View, version: number, rows: readonly BatchRow[], grain?: Grain): Record<string, AttributeValue>[] {
  if (rows.length === 0) return [];
  const start = batchPartitionStart(rows[0]!.bucket, view.grain);
  const pk = grain === undefined ? batchPartitionPk(view.name, version, start) : batchRollupPk(view.name, grain, version, start);
  return encodeBlocks(view, grain ?? view.grain, rows, BLOCK_MAX_BYTES, BLOCK_FORM).map((b) => ({
    pk: { S: pk },
    sk: { S: blockSk(b.block, b.chunk) },
    view: { S: view.name },
    version: { N: String(version) },
    ...(grain !== undefined && { grain: { S: grain } }),
    block: { N: String(b.block) },
    n: { N: String(b.n) },
    rows: { S: b.rows },
    ...sketchAttributes(b),
  }));
}

/** A block's sketch attributes (form `apart`) as DynamoDB attributes. */
function sketchAttributes(b: EncodedBlock): Record<string, AttributeValue> {
  return b.sketches ? Object.fromEntries(Object.entries(b.sketches).map(([name, text]) => [name, { S: text }])) : {};
}

/** The rows of block items as `blockItems` wrote them (the items of one key, any order of chunks), in either block form. */
export function rowsOfItems(view: View, items: readonly Record<string, AttributeValue>[]): BatchRow[] {
  return items.flatMap((item) => decodeBlock(view, Number(item.block?.N), item.rows?.S ?? '[]', { sketches: (a) => item[a]?.S }));
}

/** The batch-view partitions a version's rows of a view occupy. */
export function rowPartitions(view: View, version: number, rows: readonly BatchRow[]): string[] {
  return [...new Set(rows.map((r) => batchPk(view.name, version, r.bucket, view.grain)))].sort();
}

/** Rows grouped by batch-view partition (key: its start ms, 13 digits, as a manifest names it), keys in order. */
export function rowsByPartition(view: View, rows: readonly BatchRow[]): Map<string, BatchRow[]> {
  const out = new Map<string, BatchRow[]>();
  for (const r of rows) {
    const p = pad13(batchPartitionStart(r.bucket, view.grain));
    const list = out.get(p);
    if (list) list.push(r);
    else out.set(p, [r]);
  }
  return new Map([...out.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * A view's rows rolled up to a coarser grain: one row per (bucket at `grain`, dimension values),
 * combined with the metric monoids (core/metrics.ts, so every metric, sketches too, merges as
 * everywhere else). In no particular order (encodeBlocks orders a block's rows).
 */
export function rollupRows(view: View, grain: Grain, rows: readonly BatchRow[]): BatchRow[] {
  // Grouped by bucket, then by dimension values (a rebuild rolls up every base row: a number and a small map per row
  // instead of a key text per row), then each cell combined once on its texts (combineColumnTexts).
  const buckets = new Map<number, Map<string, BatchRow[]>>();
  for (const r of rows) {
    const b = bucketStart(r.bucket, grain);
    let cells = buckets.get(b);
    if (!cells) {
      cells = new Map();
      buckets.set(b, cells);
    }
    const key = sharedDimsKey(r.dims);
    const list = cells.get(key);
    if (list) list.push(r);
    else cells.set(key, [r]);
  }
  const out: BatchRow[] = [];
  for (const [bucket, cells] of buckets) {
    for (const list of cells.values()) {
      const first = list[0]!;
      const values =
        list.length === 1
          ? first.values
          : combineColumnTexts(
              view,
              list.map((r) => r.values),
            );
      out.push({ bucket, dims: first.dims, values });
    }
  }
  return out;
}

/**
 * The rows at every rollup grain of a view, finest first, each rolled up from the one before it (a day's hour rows,
 * not its minutes): grains nest, and combining is associative, so this equals rolling every grain up from `rows`.
 */
export function rollupAll(view: View, rows: readonly BatchRow[]): Map<Grain, readonly BatchRow[]> {
  const out = new Map<Grain, readonly BatchRow[]>();
  let finer: readonly BatchRow[] = rows;
  for (const g of rollupGrains(view.grain)) {
    finer = rollupRows(view, g, finer);
    out.set(g, finer);
  }
  return out;
}

/**
 * Which partitions of a view carry rollups, as its manifest entry records it: the grains, and the
 * lowest writer version that wrote them (partitions of older writers were written before rollups
 * existed and hold base rows only; writers only grow, so one number says which).
 */
export type RollupsEntry = NonNullable<ViewManifest['rollups']>;

/** The rollups entry of a view's manifest in version `version`: kept from the base of an increment, else starting at `version`. */
export function rollupsEntry(view: View, version: number, base?: RollupsEntry): RollupsEntry | undefined {
  const grains = rollupGrains(view.grain);
  if (grains.length === 0) return undefined;
  const same = base !== undefined && base.grains.join() === grains.join();
  // The base's day blocks stay shared like its partitions; a run that touches a block's partition rewrites the block (planDayBlocks).
  const dayBlocks = same && base.dayBlocks ? { dayBlocks: numbers(base.dayBlocks) } : {};
  return { grains, from: same ? Number(base.from) : version, ...dayBlocks };
}

const numbers = (m: Readonly<Record<string, unknown>>): Record<string, number> =>
  Object.fromEntries(Object.entries(m).map(([k, v]) => [k, Number(v)]));

/** One day block to write: its start, and the partitions of the block in the new version's map with their writers. */
export interface DayBlockBuild {
  readonly start: number;
  readonly partitions: readonly (readonly [string, number])[];
}

/**
 * The day blocks of a view in `version` (core/keys.ts batchDayBlockPk), for views that keep them:
 * every block holding a partition `version` wrote (a rebuild: all) is rewritten by `version` from
 * the day rollups of the new partition map; a block with a partition written before rollups
 * (writer < rollups.from: no day rows to read) gets no entry, and readers fall back to the
 * partitions. Other blocks keep their entry (copy-on-write). Returns the new map and what to build.
 */
export function planDayBlocks(
  view: View,
  version: number,
  partitions: Readonly<Record<string, number>>,
  rollups: RollupsEntry | undefined,
): { rollups: RollupsEntry | undefined; build: DayBlockBuild[] } {
  if (!rollups || !keepsDayBlocks(view.grain)) return { rollups, build: [] };
  const from = Number(rollups.from);
  const blocks = new Map<number, [string, number][]>();
  for (const [p, w] of Object.entries(partitions)) {
    const start = blockStart(Number(p), 'day');
    const list = blocks.get(start);
    if (list) list.push([p, Number(w)]);
    else blocks.set(start, [[p, Number(w)]]);
  }
  const dayBlocks = numbers(rollups.dayBlocks ?? {});
  const build: DayBlockBuild[] = [];
  for (const [start, parts] of [...blocks.entries()].sort(([a], [b]) => a - b)) {
    if (!parts.some(([, w]) => w === version)) continue;
    if (parts.some(([, w]) => w < from)) {
      delete dayBlocks[pad13(start)];
      continue;
    }
    dayBlocks[pad13(start)] = version;
    build.push({ start, partitions: parts.sort(([a], [b]) => (a < b ? -1 : 1)) });
  }
  return { rollups: { ...rollups, dayBlocks }, build };
}

/**
 * Writes the day blocks `planDayBlocks` asked for as `version`: the day rows of each partition of a
 * block from `fresh` (the day rollups this step just wrote, by partition start) or else read from the
 * partition's day rollup under its writer (strongly consistent: the loads may have just written it).
 */
export async function writeDayBlocks(
  opts: WriteOptions,
  view: View,
  version: number,
  build: readonly DayBlockBuild[],
  fresh?: ReadonlyMap<string, readonly BatchRow[]>,
): Promise<WriteStats> {
  const items: Record<string, AttributeValue>[] = [];
  let rows = 0;
  for (const b of build) {
    const parts = await mapLimit(b.partitions, opts.concurrency ?? 8, async ([p, writer]) => {
      const own = fresh?.get(p);
      if (own) return own;
      return readPartitionRows(opts.ddb, opts.table, view, batchRollupPk(view.name, 'day', writer, Number(p)));
    });
    const dayRows = parts.flat();
    rows += dayRows.length;
    const pk = batchDayBlockPk(view.name, version, b.start);
    for (const e of encodeBlocks(view, 'day', dayRows, BLOCK_MAX_BYTES, BLOCK_FORM)) {
      items.push({
        pk: { S: pk },
        sk: { S: blockSk(e.block, e.chunk) },
        view: { S: view.name },
        version: { N: String(version) },
        grain: { S: 'day' },
        block: { N: String(e.block) },
        n: { N: String(e.n) },
        rows: { S: e.rows },
        ...sketchAttributes(e),
      });
    }
  }
  return putItems(opts, items, rows);
}

/** One partition of a view as a version's manifest references it: its start, the version that wrote it, its key. */
export interface PartitionRef {
  readonly view: string;
  readonly start: string;
  readonly writer: number;
  readonly pk: string;
  /** A rollup's grain; absent for the base grain's rows. */
  readonly grain?: Grain;
}

/**
 * The partitions a manifest's view references. A map (partition -> writer) since increments; a
 * list of the version's own partition keys in manifests written before. With rollups, each
 * partition written since `rollups.from` also references its rollup rows, one key per grain.
 */
export function partitionRefs(
  viewName: string,
  version: number,
  v: Pick<ViewManifest, 'partitions' | 'rollups' | 'inherits'> | undefined,
): PartitionRef[] {
  const parts = v?.partitions;
  if (!parts) return [];
  if (Array.isArray(parts)) {
    return (parts as readonly string[]).map((pk) => ({
      view: viewName,
      start: pad13(Number(pk.slice(pk.lastIndexOf('#') + 1))),
      writer: version,
      pk,
    }));
  }
  const rollups = v.rollups;
  const refs = Object.entries(parts as Readonly<Record<string, number>>).flatMap(([start, w]): PartitionRef[] => {
    const writer = Number(w);
    const base: PartitionRef = { view: viewName, start, writer, pk: batchPartitionPk(viewName, writer, Number(start)) };
    // Blocks the writer did not rewrite are still read from earlier writers' keys (copy-on-write per block).
    const inherited = (v.inherits?.[start] ?? []).map((w) => ({
      ...base,
      writer: Number(w),
      pk: batchPartitionPk(viewName, Number(w), Number(start)),
    }));
    if (!rollups || writer < Number(rollups.from)) return [base, ...inherited];
    return [
      base,
      ...inherited,
      ...rollups.grains.map((grain) => ({ ...base, grain, pk: batchRollupPk(viewName, grain, writer, Number(start)) })),
    ];
  });
  // Day blocks: one key per (block start, writer), named by the manifest's `rollups.dayBlocks` map.
  const blocks = Object.entries(rollups?.dayBlocks ?? {}).map(([start, w]) => ({
    view: viewName,
    start,
    writer: Number(w),
    pk: batchDayBlockPk(viewName, Number(w), Number(start)),
    grain: 'day' as const,
  }));
  return [...refs, ...blocks];
}

/** Every item of one batch-view partition as rows (strongly consistent: it may have been written just now). */
export async function readPartitionRows(ddb: DynamoDBClient, table: string, view: View, pk: string): Promise<BatchRow[]> {
  return rowsOfItems(view, await queryItems(ddb, table, pk));
}

/**
 * The items of one Query (all pages): a whole key, or the blocks in `sk` range [lo, hi]; `keysOnly` projects them to
 * `pk, sk`. Strongly consistent.
 */
async function queryItems(
  ddb: DynamoDBClient,
  table: string,
  pk: string,
  opts: { readonly range?: readonly [string, string]; readonly keysOnly?: boolean } = {},
): Promise<Record<string, AttributeValue>[]> {
  const { range, keysOnly } = opts;
  const items: Record<string, AttributeValue>[] = [];
  let start: Record<string, AttributeValue> | undefined;
  do {
    const page = await ddb.send(
      new QueryCommand({
        TableName: table,
        KeyConditionExpression: range ? 'pk = :pk AND sk BETWEEN :lo AND :hi' : 'pk = :pk',
        ExpressionAttributeValues: { ':pk': { S: pk }, ...(range && { ':lo': { S: range[0] }, ':hi': { S: range[1] } }) },
        ...(keysOnly && { ProjectionExpression: 'pk, sk' }),
        ConsistentRead: true,
        ExclusiveStartKey: start,
      }),
    );
    for (const item of page.Items ?? []) items.push(item);
    start = page.LastEvaluatedKey;
  } while (start);
  return items;
}

/**
 * The writers a partition's base rows are read from, newest first: its writer, then the earlier writers it inherits
 * blocks from (ViewManifest.inherits). A block is read from the first that holds it.
 */
export function partitionChain(entry: Pick<ViewManifest, 'partitions' | 'inherits'>, start: string): number[] {
  const parts = entry.partitions as Readonly<Record<string, number>>;
  if (parts[start] === undefined) return [];
  return [Number(parts[start]), ...(entry.inherits?.[start] ?? []).map(Number)];
}

/**
 * Every base row of a partition as a version's manifest references it: each block from the first writer of `chain`
 * (newest first) that holds it.
 */
export async function readPartitionChain(
  ddb: DynamoDBClient,
  table: string,
  view: View,
  start: string,
  chain: readonly number[],
): Promise<BatchRow[]> {
  const layers = await Promise.all(chain.map((w) => queryItems(ddb, table, batchPartitionPk(view.name, w, Number(start)))));
  return rowsOfItems(view, newestBlocks(layers));
}

/** The rows of one block of a partition: from the first writer of `chain` (newest first) that holds it. */
async function readBlock(
  ddb: DynamoDBClient,
  table: string,
  view: View,
  start: string,
  chain: readonly number[],
  block: number,
): Promise<BatchRow[]> {
  for (const w of chain) {
    const items = await queryItems(ddb, table, batchPartitionPk(view.name, w, Number(start)), {
      range: [blockSk(block, 0), blockSk(block, 999)],
    });
    if (items.length > 0) return rowsOfItems(view, items);
  }
  return [];
}

/**
 * What a load writes of one partition as a version: base rows (the whole partition, or only the blocks an increment
 * touched), and the partition's whole rollup at each coarser grain.
 */
export interface PartitionWrite {
  /** Partition start, 13 digits. */
  readonly start: string;
  /** Base rows to write: every row of each block they fall in (a block item replaces its block). */
  readonly rows: readonly BatchRow[];
  /** The partition's rows at each rollup grain (rollupGrains), whole. */
  readonly rollups: ReadonlyMap<Grain, readonly BatchRow[]>;
  /** Base rows the write replaces (the view's row count changes by rows.length - replaced). */
  readonly replaced: number;
  /** Earlier writers the partition keeps inheriting blocks from (the manifest's `inherits`); absent: written whole. */
  readonly inherits?: readonly number[];
}

/** The writes of a rebuild: every partition whole, its rollups from its rows. */
export function rebuildWrites(view: View, rows: readonly BatchRow[]): PartitionWrite[] {
  return [...rowsByPartition(view, rows).entries()].map(([start, prows]) => wholeWrite(view, start, prows, 0));
}

function wholeWrite(view: View, start: string, rows: readonly BatchRow[], replaced: number): PartitionWrite {
  let rollups: ReadonlyMap<Grain, readonly BatchRow[]> | undefined;
  // Rolled up on first use: loadPartitions asks when its requests reach the partition, so a rebuild computes one
  // partition's rollups while the writes of the ones before it are in flight.
  return {
    start,
    rows,
    replaced,
    get rollups() {
      rollups ??= rollupAll(view, rows);
      return rollups;
    },
  };
}

/**
 * One partition of an increment merged into the base version's (`base`: its manifest entry of the view): only the
 * blocks the increment touches are read and rewritten, each merged cell by cell with the metric monoids; the other
 * blocks stay with the writers that hold them (inherited). The rollups are merged the same way: a rollup row sums its
 * base rows, and merging is a commutative monoid, so rollup(base ⊕ increment) = rollup(base) ⊕ rollup(increment).
 *
 * The partition's writers, newest first, end with its base: the writer that last wrote it whole. When the partition
 * would inherit from more than MAX_INHERITED_WRITERS writers, the blocks held by the writers above its base (each
 * wrote only the few blocks its increment touched: the current day's latest hours, say) are carried into this write,
 * so it inherits from the base alone, like an LSM tree merging its small recent runs into one, never the big base.
 * Rewritten whole instead: a partition new in the increment, and one whose writer kept no rollups to merge into.
 */
export async function mergePartition(
  deps: Pick<WriteOptions, 'ddb' | 'table' | 'concurrency'>,
  view: View,
  base: Pick<ViewManifest, 'partitions' | 'inherits' | 'rollups'>,
  start: string,
  increment: readonly BatchRow[],
): Promise<PartitionWrite> {
  const chain = partitionChain(base, start);
  if (chain.length === 0) return wholeWrite(view, start, increment, 0);
  const writer = chain[0]!;
  const grains = rollupGrains(view.grain);
  const r = base.rollups;
  const mergeable = r !== undefined && writer >= Number(r.from) && r.grains.join() === grains.join();
  if (!mergeable) {
    const old = await readPartitionChain(deps.ddb, deps.table, view, start, chain);
    return wholeWrite(view, start, mergeRows(view, old, increment), old.length);
  }
  const squash = chain.length > MAX_INHERITED_WRITERS;
  // Squashing: the blocks of the writers above the base, carried into this write (each from the newest that holds it).
  const carried = new Map<number, BatchRow[]>();
  if (squash) {
    const layers = await Promise.all(
      chain.slice(0, -1).map((w) => queryItems(deps.ddb, deps.table, batchPartitionPk(view.name, w, Number(start)))),
    );
    for (const row of rowsOfItems(view, newestBlocks(layers))) pushTo(carried, blockStart(row.bucket, view.grain), row);
  }
  const lookup = squash ? chain.slice(-1) : chain;
  const touched = new Map<number, BatchRow[]>();
  for (const row of increment) pushTo(touched, blockStart(row.bucket, view.grain), row);
  const blocks = await mapLimit([...new Set([...touched.keys(), ...carried.keys()])], deps.concurrency ?? 8, async (b) => {
    const old = carried.get(b) ?? (await readBlock(deps.ddb, deps.table, view, start, lookup, b));
    const rows = touched.get(b);
    return { old: old.length, rows: rows ? mergeRows(view, old, rows) : old };
  });
  const rollups = new Map<Grain, readonly BatchRow[]>();
  for (const g of grains) {
    const old = await readPartitionRows(deps.ddb, deps.table, view, batchRollupPk(view.name, g, writer, Number(start)));
    rollups.set(g, mergeRows(view, old, rollupRows(view, g, increment)));
  }
  return {
    start,
    rows: blocks.flatMap((b) => b.rows),
    rollups,
    replaced: blocks.reduce((n, b) => n + b.old, 0),
    inherits: squash ? chain.slice(-1) : chain,
  };
}

function pushTo<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

/**
 * A partition's rows merged with the increment's rows of it, cell by cell with the metric
 * monoids (core/metrics.ts combine, the merge every layer uses); cells only one side has are
 * kept as they are. Ordered by bucket and dimension values.
 */
export function mergeRows(view: View, base: readonly BatchRow[], increment: readonly BatchRow[]): BatchRow[] {
  const cells = new Map<string, BatchRow>();
  const key = (r: BatchRow) => `${pad13(r.bucket)}#${dimsKey(r.dims)}`;
  for (const r of base) cells.set(key(r), r);
  for (const r of increment) {
    const k = key(r);
    const old = cells.get(k);
    if (!old) {
      cells.set(k, r);
      continue;
    }
    const merged = combineViewStates(view, stateFromColumns(view, old.values), stateFromColumns(view, r.values));
    cells.set(k, { bucket: r.bucket, dims: r.dims, values: stateToColumns(view, merged) });
  }
  return [...cells.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, r]) => r);
}

export interface WriteOptions {
  readonly ddb: DynamoDBClient;
  readonly table: string;
  /** BatchWriteItem requests in flight. @default 8 */
  readonly concurrency?: number;
  /** Called after each request with the items written so far (fault injection, progress). */
  readonly onProgress?: (written: number) => void | Promise<void>;
}

export interface WriteStats {
  /** Rows written (a load: base and rollup rows; a delete: items deleted). */
  written: number;
  /** DynamoDB items written (a load: blocks; a delete: items deleted). */
  items: number;
  requests: number;
  /** Requests that resent unprocessed items. */
  retries: number;
}

/**
 * Writes (puts or deletes) every request, resending unprocessed ones until done. `requests` is read 25 at a time as
 * requests go out, so a lazy one (loadPartitions: a partition's blocks encoded when the requests reach them) has its
 * next items made here while the requests before them are in flight.
 */
export async function writeAll(opts: WriteOptions, requests: Iterable<WriteRequest> | AsyncIterable<WriteRequest>): Promise<WriteStats> {
  const stats: WriteStats = { written: 0, items: 0, requests: 0, retries: 0 };
  // An async source (loadPartitionGroups) may wait for its next requests; the workers then wait with it.
  const source: Iterator<WriteRequest> | AsyncIterator<WriteRequest> =
    Symbol.iterator in requests ? requests[Symbol.iterator]() : requests[Symbol.asyncIterator]();
  const fill = async (): Promise<WriteRequest[]> => {
    const chunk: WriteRequest[] = [];
    while (chunk.length < BATCH_WRITE_MAX) {
      const r = await source.next();
      if (r.done) break;
      chunk.push(r.value);
    }
    return chunk;
  };
  // One worker fills its chunk at a time: workers pulling at once would deal the requests out one each, and with a
  // lazy source none of their chunks would fill (and go out) before the source had made nearly all of them.
  let filling: Promise<unknown> = Promise.resolve();
  const take = (): Promise<WriteRequest[]> => {
    const chunk = filling.then(fill);
    filling = chunk.catch(() => undefined);
    return chunk;
  };
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    try {
      for (let chunk = await take(); chunk.length > 0 && !failure; chunk = await take()) {
        let pending: WriteRequest[] = chunk;
        for (let attempt = 0; pending.length > 0; attempt++) {
          if (attempt >= MAX_ATTEMPTS)
            throw new Error(`BatchWriteItem on ${opts.table}: ${pending.length} items still unprocessed after ${MAX_ATTEMPTS} attempts`);
          if (attempt > 0) {
            stats.retries++;
            await backoff(attempt);
          }
          const out = await opts.ddb.send(new BatchWriteItemCommand({ RequestItems: { [opts.table]: pending } }));
          stats.requests++;
          const left = out.UnprocessedItems?.[opts.table] ?? [];
          stats.written += pending.length - left.length;
          stats.items += pending.length - left.length;
          pending = left;
        }
        await opts.onProgress?.(stats.written);
      }
    } catch (error) {
      failure ??= { error };
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 8) }, worker));
  if (failure) throw failure.error;
  return stats;
}

/** The block items of rows, grouped by partition (each group every row of its partition, as `blockItems` needs). */
function partitionItems(view: View, version: number, rows: readonly BatchRow[], grain?: Grain): Record<string, AttributeValue>[] {
  return [...rowsByPartition(view, rows).values()].flatMap((prows) => blockItems(view, version, prows, grain));
}

/** Puts items, reporting `written` as the rows they hold (the figure runs report) and `items` as the items. */
async function putItems(opts: WriteOptions, items: readonly Record<string, AttributeValue>[], rows: number): Promise<WriteStats> {
  const stats = await writeAll(
    opts,
    items.map((Item) => ({ PutRequest: { Item } })),
  );
  return { ...stats, written: rows };
}

/** Writes rows (whole partitions: a block item replaces its block) as `version`, without rollups. */
export async function loadRows(opts: WriteOptions, view: View, version: number, rows: readonly BatchRow[]): Promise<WriteStats> {
  return putItems(opts, partitionItems(view, version, rows), rows.length);
}

/**
 * Writes partitions of a view as `version` (PartitionWrite: a rebuild's whole partitions, or an increment's touched
 * blocks) with their rollups, in one load. `written` counts every row, rollups included; `rollups` those alone; `items`
 * the block items that hold them.
 */
export async function loadPartitions(
  opts: WriteOptions,
  view: View,
  version: number,
  writes: readonly PartitionWrite[],
): Promise<WriteStats & { rollups: number }> {
  const n = { rows: 0, rollups: 0 };
  // One partition at a time, as the requests reach it: its rollups (PartitionWrite.rollups may be computed on first
  // use) and blocks are made while the requests of the partitions before it are in flight.
  function* requests(): Generator<WriteRequest> {
    for (const w of writes) yield* partitionRequests(view, version, w, n);
  }
  const stats = await writeAll(opts, requests());
  return { ...stats, written: n.rows + n.rollups, rollups: n.rollups };
}

/** The put requests of one partition write, its blocks then each rollup's, counting its rows and rollup rows into `n`. */
function* partitionRequests(view: View, version: number, w: PartitionWrite, n: { rows: number; rollups: number }): Generator<WriteRequest> {
  n.rows += w.rows.length;
  for (const Item of blockItems(view, version, w.rows)) yield { PutRequest: { Item } };
  for (const [grain, rolled] of w.rollups) {
    n.rollups += rolled.length;
    for (const Item of blockItems(view, version, rolled, grain)) yield { PutRequest: { Item } };
  }
}

/**
 * `loadPartitions` over writes that arrive in groups (a rebuild computed in parts): one stream of requests, so a
 * group's first requests go out while the last ones of the group before are still in flight. `before(group)` runs
 * before the group's first request (the manifest names its partitions first), `written(w)` once a partition's
 * requests are all made (its rollups computed).
 */
export async function loadPartitionGroups(
  opts: WriteOptions,
  view: View,
  version: number,
  groups: AsyncIterable<readonly PartitionWrite[]>,
  hooks: { before?: (writes: readonly PartitionWrite[]) => Promise<void>; written?: (w: PartitionWrite) => void } = {},
): Promise<WriteStats & { rollups: number }> {
  const n = { rows: 0, rollups: 0 };
  async function* requests(): AsyncGenerator<WriteRequest> {
    for await (const writes of groups) {
      await hooks.before?.(writes);
      for (const w of writes) {
        yield* partitionRequests(view, version, w, n);
        hooks.written?.(w);
      }
    }
  }
  const stats = await writeAll(opts, requests());
  return { ...stats, written: n.rows + n.rollups, rollups: n.rollups };
}

/** Deletes every item of the given batch-view partitions. Returns the number deleted. */
export async function deletePartitions(opts: WriteOptions, partitions: readonly string[]): Promise<number> {
  let deleted = 0;
  for (const pk of partitions) {
    // Its keys listed whole (a partition's blocks; tens of thousands of small keys for a layout of one item per row), then deleted.
    const keys = await queryItems(opts.ddb, opts.table, pk, { keysOnly: true });
    if (keys.length > 0)
      deleted += (
        await writeAll(
          opts,
          keys.map((Key) => ({ DeleteRequest: { Key } })),
        )
      ).written;
  }
  return deleted;
}
