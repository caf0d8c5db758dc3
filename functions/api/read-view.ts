/**
 * The reads behind GET /views/{name}: the published pointer (version N,
 * cutoff C), the batch rows of version N for the range, and the speed deltas
 * of arrival windows >= C. The merge itself is the core's (core/query.ts).
 *
 * Why reading the pointer first and the speed deltas after is safe, even when
 * a batch publishes N+1 (cutoff C' > C) in between: we still read version N's
 * rows (the last `keepVersions` versions stay readable, so N is not deleted
 * under an in-flight query) and every speed delta of windows >= C (the batch
 * never deletes speed items; they expire only by TTL, 3 x maxBatchLag after
 * their window, long after C). Version N covers exactly arrivals < C and the
 * speed windows >= C cover arrivals >= C, so the answer is the truth at some
 * instant between the reads; newer speed writes only add newer arrivals.
 * Every read is strongly consistent: an eventually consistent batch read
 * right after a flip could miss rows of N that were written before it.
 *
 * Version N's rows of a partition may have been written by an older version
 * (an increment rewrites only the partitions it touches): N's manifest maps
 * each partition to its writer, and retention keeps a writer's rows while any
 * kept version's manifest references them.
 *
 * Rollups: the writer of a partition also wrote its rows at each coarser grain (hour, day; core/keys.ts
 * `batchRollupPk`). A query rolled up to a coarser grain reads, per partition, the coarsest kept grain
 * that tiles its grain for the aligned middle of the range, and finer rows only for the unaligned
 * edges (`batchReads`): a 90-day query at day grain reads day rows, not 129,600 minutes per cell.
 *
 * Blocks: a batch item packs the rows of one key whose buckets fall in one block span (core/keys.ts,
 * core/blocks.ts), so a read fetches the blocks meeting its range and keeps the rows inside it.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, QueryCommand, type QueryCommandInput } from '@aws-sdk/lib-dynamodb';
import { decodeBlock, newestBlocks } from '../core/blocks.ts';
import {
  BATCH_PARTITION_MS,
  batchDayBlockPk,
  batchPartitionPk,
  batchPartitionStart,
  batchRollupPk,
  blockStart,
  cellsOf,
  POINTER_KEY,
  pad13,
  speedPartitions,
  speedSlot,
  versionKey,
} from '../core/keys.ts';
import { mapLimit } from '../core/limit.ts';
import { stateColumns, stateFromColumns } from '../core/metrics.ts';
import type { Row, SpeedRow } from '../core/query.ts';
import { type Settings, speedTtlSeconds } from '../core/settings.ts';
import { bucketStart, floorTo, GRAIN_MS, type Grain, type QueryGrain } from '../core/time.ts';
import type { View } from '../core/views.ts';

/**
 * A document client over the shared DynamoDB client that keeps numbers as
 * exact text (NumberValue): metric states are DECIMAL(38,9) and a JS number
 * would round them. Not a second client: the same configured DynamoDBClient.
 */
export function exactDocClient(dynamodb: DynamoDBClient): DynamoDBDocumentClient {
  // DynamoDBDocumentClient.from writes its translateConfig into the given client's *config
  // object*: wrapping the shared client would make every other document client over it (the
  // batch, the speed layer, in the local cloud's one process) return NumberValues too. So a
  // client of its own with the same settings, built as lib-dynamodb itself rebuilds one.
  const own = new DynamoDBClient({
    ...dynamodb.config,
    defaultUserAgentProvider: undefined,
    retryStrategy: undefined,
    extensions: undefined,
  } as never);
  return DynamoDBDocumentClient.from(own, {
    marshallOptions: { removeUndefinedValues: true },
    unmarshallOptions: { wrapNumbers: true },
  });
}

export interface ReadDeps {
  /** Use exactDocClient (numbers as text). */
  readonly doc: Pick<DynamoDBDocumentClient, 'send'>;
  readonly tables: { readonly speed: string; readonly batchViews: string; readonly control: string };
  readonly settings: Settings;
  /** Queries in flight at once. @default 8 */
  readonly concurrency?: number;
}

export interface Pointer {
  readonly version: number;
  readonly cutoff: number;
  readonly publishedAt?: string;
  readonly runId?: string;
}

/** What a read cost: DynamoDB Query requests (pages), partitions, and items returned. */
export interface ReadStats {
  partitions: number;
  requests: number;
  /** DynamoDB items returned (batch: blocks). */
  items: number;
  /** Items read but dropped by the filter (expired or outside the bucket range): they cost reads too. */
  scanned: number;
  /** Batch rows decoded from the blocks read (those outside the range included); 0 for the speed table. */
  rows: number;
}

export const emptyStats = (): ReadStats => ({ partitions: 0, requests: 0, items: 0, scanned: 0, rows: 0 });

/** A DynamoDB number (NumberValue, number or text) as a JS number: only for keys and times, never for metric values. */
export function num(v: unknown): number {
  return Number(String(v));
}

const str = (v: unknown): string | undefined => (v === undefined || v === null ? undefined : String(v));

export async function readPointer(deps: Pick<ReadDeps, 'doc' | 'tables'>): Promise<Pointer | null> {
  const out = await deps.doc.send(new GetCommand({ TableName: deps.tables.control, Key: POINTER_KEY, ConsistentRead: true }));
  const item = out.Item;
  if (!item || item.version === undefined || item.cutoff === undefined) return null;
  const publishedAt = str(item.publishedAt);
  const runId = str(item.runId);
  return { version: num(item.version), cutoff: num(item.cutoff), ...(publishedAt && { publishedAt }), ...(runId && { runId }) };
}

/** A view's partitions in version N as its manifest maps them: partition start -> writer, and which writers kept rollups. */
export interface PartitionWriters {
  readonly writers: ReadonlyMap<number, number>;
  /** Partitions whose writer is >= `from` also hold their rows at `grains`; absent: base rows only. */
  readonly rollups?: { readonly grains: readonly Grain[]; readonly from: number };
  /** Day blocks (minute views): 30-day block start -> writer; a block without an entry is read per partition. */
  readonly dayBlocks?: ReadonlyMap<number, number>;
  /** Partition start -> earlier writers (newest first) holding the base blocks its writer did not rewrite. */
  readonly inherits?: ReadonlyMap<number, readonly number[]>;
}

/**
 * Which version wrote each partition of a view in version N: N's manifest (control item
 * `version / <N>`), only this view's map and rollups entry. Undefined when the manifest holds no map
 * for the view (written before increments, or a view N does not have): then N's own keys, as before.
 */
export async function readPartitionWriters(
  deps: Pick<ReadDeps, 'doc' | 'tables'>,
  view: View,
  version: number,
): Promise<PartitionWriters | undefined> {
  const out = await deps.doc.send(
    new GetCommand({
      TableName: deps.tables.control,
      Key: versionKey(version),
      ProjectionExpression: '#views.#v.#parts, #views.#v.#rollups, #views.#v.#inh',
      ExpressionAttributeNames: { '#views': 'views', '#v': view.name, '#parts': 'partitions', '#rollups': 'rollups', '#inh': 'inherits' },
      ConsistentRead: true,
    }),
  );
  const entry = (out.Item?.views as Record<string, { partitions?: unknown; rollups?: unknown; inherits?: unknown }> | undefined)?.[
    view.name
  ];
  const parts = entry?.partitions;
  if (!parts || typeof parts !== 'object' || Array.isArray(parts)) return undefined;
  const writers = new Map(Object.entries(parts as Record<string, unknown>).map(([start, writer]) => [Number(start), num(writer)]));
  const inh = entry.inherits;
  const inherits =
    inh && typeof inh === 'object'
      ? new Map(
          Object.entries(inh as Record<string, unknown>)
            .filter(([, ws]) => Array.isArray(ws) && ws.length > 0)
            .map(([start, ws]) => [Number(start), (ws as unknown[]).map(num)]),
        )
      : undefined;
  const base = inherits && inherits.size > 0 ? { writers, inherits } : { writers };
  const r = entry.rollups as { grains?: unknown; from?: unknown; dayBlocks?: unknown } | undefined;
  if (!r || !Array.isArray(r.grains) || r.from === undefined) return base;
  const rollups = { grains: r.grains.map(String) as Grain[], from: num(r.from) };
  if (!r.dayBlocks || typeof r.dayBlocks !== 'object') return { ...base, rollups };
  const dayBlocks = new Map(Object.entries(r.dayBlocks as Record<string, unknown>).map(([start, w]) => [Number(start), num(w)]));
  return { ...base, rollups, dayBlocks };
}

/** Every item of a Query, following LastEvaluatedKey (or the first `maxItems`). */
export async function queryAll(
  doc: Pick<ReadDeps, 'doc'>['doc'],
  input: QueryCommandInput,
  stats: ReadStats,
  maxItems = Number.POSITIVE_INFINITY,
): Promise<Record<string, unknown>[]> {
  const items: Record<string, unknown>[] = [];
  let start: Record<string, unknown> | undefined;
  stats.partitions++;
  do {
    const out = await doc.send(new QueryCommand({ ...input, ...(start && { ExclusiveStartKey: start }) }));
    stats.requests++;
    stats.items += out.Count ?? out.Items?.length ?? 0;
    stats.scanned += out.ScannedCount ?? out.Items?.length ?? 0;
    for (const item of out.Items ?? []) items.push(item);
    start = out.LastEvaluatedKey;
  } while (start && items.length < maxItems);
  return items;
}

/** One key-range read of the batch: the rows of `pk` (at `grain`) whose buckets are in [from, to). */
export interface BatchRead {
  readonly pk: string;
  readonly grain: Grain;
  readonly from: number;
  readonly to: number;
  /**
   * Base rows of a partition whose writer inherits blocks: the earlier writers' keys (newest first), read over the same
   * range; a block is kept from the first key of [pk, ...inherited] that holds it (core/blocks.ts newestBlocks).
   */
  readonly inherited?: readonly string[];
}

const ceilTo = (ms: number, step: number) => Math.ceil(ms / step) * step;

/**
 * Covers the buckets [a, e) with rows of the coarsest of `tiers` (finest first) that fit: the part
 * aligned to it from the coarsest tier, the unaligned edges from the finer ones, recursively.
 */
function cover(a: number, e: number, tiers: readonly Grain[]): { grain: Grain; from: number; to: number }[] {
  if (a >= e) return [];
  const grain = tiers[tiers.length - 1]!;
  if (tiers.length === 1) return [{ grain, from: a, to: e }];
  const finer = tiers.slice(0, -1);
  const lo = ceilTo(a, GRAIN_MS[grain]);
  const hi = floorTo(e, GRAIN_MS[grain]);
  if (lo >= hi) return cover(a, e, finer);
  return [...cover(a, lo, finer), { grain, from: lo, to: hi }, ...cover(hi, e, finer)];
}

/**
 * What the batch part of a query over view buckets starting in [fromMs, toMs), rolled up to
 * `grain`, reads of version N: per partition in range (under its writer's keys, from `writers`, N's
 * manifest; without one, N's own keys and base rows only), the coarsest kept grain that tiles
 * `grain` (a rollup no coarser than it, any for `all`) for the part of the range aligned to it, and
 * finer rows for the unaligned edges. Every bucket read lies wholly in the range, so a rollup row
 * stands for exactly the base rows it sums.
 */
export function batchReads(
  view: View,
  version: number,
  grain: QueryGrain,
  fromMs: number,
  toMs: number,
  writers?: PartitionWriters,
): BatchRead[] {
  const base = GRAIN_MS[view.grain];
  // The view buckets a query counts: those whose start is in [fromMs, toMs).
  const a = ceilTo(fromMs, base);
  const e = ceilTo(toMs, base);
  const span = BATCH_PARTITION_MS[view.grain];
  const fits = (g: Grain) => grain === 'all' || GRAIN_MS[g] <= GRAIN_MS[grain as Grain];
  const out: BatchRead[] = [];
  for (let p = batchPartitionStart(a, view.grain); p < e; p += span) {
    const writer = writers ? writers.writers.get(p) : version;
    if (writer === undefined) continue;
    const r = writers?.rollups;
    const rollups = r && writer >= r.from ? r.grains.filter(fits) : [];
    const tiers = [view.grain, ...rollups].sort((x, y) => GRAIN_MS[x] - GRAIN_MS[y]);
    for (const piece of cover(Math.max(a, p), Math.min(e, p + span), tiers)) {
      // Day pieces of partitions in one day block with an entry: one read of the block (written from the same map, so
      // a partition the list skips has no rows there either). Pieces between them of another grain start a new read.
      const block = piece.grain === 'day' ? blockStart(piece.from, 'day') : undefined;
      const blockWriter = block === undefined ? undefined : writers?.dayBlocks?.get(block);
      if (block !== undefined && blockWriter !== undefined) {
        const pk = batchDayBlockPk(view.name, blockWriter, block);
        const last = out[out.length - 1];
        if (last?.pk === pk) out[out.length - 1] = { ...last, to: piece.to };
        else out.push({ pk, ...piece });
        continue;
      }
      if (piece.grain !== view.grain) {
        out.push({ pk: batchRollupPk(view.name, piece.grain, writer, p), ...piece });
        continue;
      }
      const inherited = writers?.inherits?.get(p)?.map((w) => batchPartitionPk(view.name, w, p));
      out.push({ pk: batchPartitionPk(view.name, writer, p), ...piece, ...(inherited && { inherited }) });
    }
  }
  return out;
}

/**
 * The reads of `batchReads` as key-range Queries of the blocks meeting [from, to) (per read: its key's, then each
 * inherited key's, whose items the caller keeps by core/blocks.ts newestBlocks), projected to the
 * packed rows (DynamoDB still charges by whole item size; less to transfer). The caller keeps the
 * decoded rows in [from, to) (`blockRowsIn`): the edge blocks may hold buckets outside.
 */
export function batchQueries(deps: Pick<ReadDeps, 'tables'>, view: View, reads: readonly BatchRead[]): QueryCommandInput[][] {
  // sk = <block start 13d>#<chunk 3d>: the block holding `from` starts at or before it, and a block starting at
  // `to` has sk "<to>#000" > pad13(to), so BETWEEN pad13(blockStart(from)) AND pad13(to) holds exactly the blocks meeting [from, to).
  // The projection also names the attributes of a row item of the layout before blocks (sk <bucket 13d>#<dims>, in the same
  // range): a version written before an upgrade stays readable until the next run rebuilds it (`storage changed`).
  const legacy = ['bucket', 'dims', ...stateColumns(view).map((c) => c.column)];
  const names: Record<string, string> = { '#b': 'block', '#r': 'rows', ...Object.fromEntries(legacy.map((a, i) => [`#l${i}`, a])) };
  return reads.map((r) =>
    [r.pk, ...(r.inherited ?? [])].map((pk) => ({
      TableName: deps.tables.batchViews,
      KeyConditionExpression: 'pk = :pk AND sk BETWEEN :lo AND :hi',
      ExpressionAttributeValues: { ':pk': pk, ':lo': pad13(blockStart(r.from, r.grain)), ':hi': pad13(r.to) },
      ExpressionAttributeNames: names,
      ProjectionExpression: Object.keys(names).join(', '),
      ConsistentRead: true,
    })),
  );
}

/** The rows of one batch-views item: a block's, or (a version written before blocks) the one row it is. */
function itemRows(
  view: View,
  item: Record<string, unknown>,
): { bucket: number; dims: readonly (string | null)[]; values: Readonly<Record<string, unknown>> }[] {
  if (item.rows === undefined && item.bucket !== undefined)
    return [
      {
        bucket: num(item.bucket),
        dims: Array.isArray(item.dims) ? item.dims.map((d) => (d == null ? null : String(d))) : [],
        values: item,
      },
    ];
  return decodeBlock(view, num(item.block), String(item.rows ?? '[]'));
}

/** The rows of a read's block items whose buckets are in its [from, to), counting the decoded rows in `stats.rows`. */
export function blockRowsIn(view: View, read: BatchRead, items: readonly Record<string, unknown>[], stats: ReadStats): Row[] {
  const out: Row[] = [];
  for (const item of items) {
    const rows = itemRows(view, item);
    stats.rows += rows.length;
    for (const r of rows) {
      if (r.bucket >= read.from && r.bucket < read.to)
        out.push({ bucket: r.bucket, dims: [...r.dims], state: stateFromColumns(view, r.values) });
    }
  }
  return out;
}

/**
 * The arrival windows a query must read from the speed table: from the cutoff
 * (or, with no batch yet, from the oldest window that can still be alive) to
 * now plus a little clock skew. Windows older than the TTL hold only
 * expired items, which the filter would drop anyway.
 */
export function speedWindowRange(settings: Settings, cutoff: number | null, now: number): { from: number; to: number } {
  const windowMs = settings.windowSeconds * 1000;
  const oldestLiveWindow = floorTo(now - windowMs - speedTtlSeconds(settings) * 1000 - 60_000, windowMs);
  return { from: cutoff === null ? oldestLiveWindow : Math.max(cutoff, oldestLiveWindow), to: now + 120_000 };
}

/**
 * The speed partitions holding windows >= `fromWindow`, filtered to live items whose slot (event
 * hour) meets [fromMs, toMs). Items hold many cells, so they are read whole; `readView` keeps the
 * cells with buckets in range.
 */
export function speedQueries(
  deps: Pick<ReadDeps, 'tables'>,
  view: View,
  fromWindow: number,
  toArrival: number,
  fromMs: number,
  toMs: number,
  now: number,
): QueryCommandInput[] {
  const lo = speedSlot(bucketStart(fromMs, view.grain));
  return speedPartitions(view.name, fromWindow, toArrival).map(({ pk, skFrom }) => ({
    TableName: deps.tables.speed,
    KeyConditionExpression: 'pk = :pk AND sk >= :from',
    // dynalite never deletes expired items and DynamoDB deletes them only within days: readers filter.
    FilterExpression: '#slot BETWEEN :slo AND :shi AND (attribute_not_exists(#exp) OR #exp > :now)',
    ExpressionAttributeNames: { '#slot': 'slot', '#exp': 'expiresAt' },
    ExpressionAttributeValues: { ':pk': pk, ':from': skFrom, ':slo': lo, ':shi': toMs - 1, ':now': Math.floor(now / 1000) },
    ConsistentRead: true,
  }));
}

export interface ViewRead {
  readonly pointer: Pointer | null;
  readonly batchRows: Row[];
  readonly speedRows: SpeedRow[];
  /** GetItem requests: the pointer, and the manifest of its version. */
  readonly stats: { pointer: number; manifest: number; batch: ReadStats; speed: ReadStats };
}

export interface ReadOptions {
  /** Skip the speed table (benchmarks: a batch-only read of the same range). */
  readonly batchOnly?: boolean;
  /**
   * The grain the answer is rolled up to: the batch part may then read rollups of that grain or
   * finer (`batchReads`). @default the view's grain (base rows only)
   */
  readonly grain?: QueryGrain;
}

/** Reads everything a merged query over buckets [fromMs, toMs) needs. */
export async function readView(
  deps: ReadDeps,
  view: View,
  fromMs: number,
  toMs: number,
  now: number,
  opts: ReadOptions = {},
): Promise<ViewRead> {
  const pointer = await readPointer(deps);
  const batchStats = emptyStats();
  const speedStats = emptyStats();
  // A batch read of a partition inheriting blocks is several Queries (layer 0: its writer's key, then older ones).
  const tasks: { input: QueryCommandInput; kind: 'batch' | 'speed'; read?: number; layer?: number }[] = [];
  const writers = pointer ? await readPartitionWriters(deps, view, pointer.version) : undefined;
  const reads = pointer ? batchReads(view, pointer.version, opts.grain ?? view.grain, fromMs, toMs, writers) : [];
  for (const [read, inputs] of batchQueries(deps, view, reads).entries())
    for (const [layer, input] of inputs.entries()) tasks.push({ input, kind: 'batch', read, layer });
  if (!opts.batchOnly) {
    const range = speedWindowRange(deps.settings, pointer?.cutoff ?? null, now);
    for (const input of speedQueries(deps, view, range.from, range.to, fromMs, toMs, now)) tasks.push({ input, kind: 'speed' });
  }
  const results = await mapLimit(tasks, deps.concurrency ?? 8, (t) =>
    queryAll(deps.doc, t.input, t.kind === 'batch' ? batchStats : speedStats),
  );
  const batchRows: Row[] = [];
  const speedRows: SpeedRow[] = [];
  const lo = bucketStart(fromMs, view.grain);
  const layers: Record<string, unknown>[][][] = reads.map(() => []);
  results.forEach((items, i) => {
    const { kind, read, layer } = tasks[i]!;
    if (kind === 'batch') {
      layers[read!]![layer!] = items;
      return;
    }
    for (const item of items) {
      const window = num(item.window);
      for (const cell of cellsOf(num(item.slot), item)) {
        if (cell.bucket >= lo && cell.bucket < toMs)
          speedRows.push({ bucket: cell.bucket, dims: cell.dims, state: stateFromColumns(view, cell.columns), window });
      }
    }
  });
  for (const [i, read] of reads.entries()) {
    const items = layers[i]!.length === 1 ? layers[i]![0]! : newestBlocks(layers[i]!);
    for (const r of blockRowsIn(view, read, items, batchStats)) batchRows.push(r);
  }
  return { pointer, batchRows, speedRows, stats: { pointer: 1, manifest: pointer ? 1 : 0, batch: batchStats, speed: speedStats } };
}
