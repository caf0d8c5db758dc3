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
 *
 * Sketches: a block of layout blocks-3 holds its rows' sketch texts apart from the rows, per bucket, beside each
 * row's estimate (core/blocks.ts form `apart`), and sketches are most of a block's bytes. A query whose answer cells
 * are the rows it reads (every dimension, at the grain of the rows) needs a row's sketch only when something else
 * falls in its cell, so it reads the sketches of the buckets the speed part may reach and, in a second read, those of
 * the few other rows a speed cell does meet (`ReadOptions.groupBy`, `readSharedSketches`).
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, QueryCommand, type QueryCommandInput } from '@aws-sdk/lib-dynamodb';
import { type BlockRow, decodeBlock, hasSketches, newestBlocks, sketchAttribute } from '../core/blocks.ts';
import { Sketch } from '../core/hll.ts';
import {
  BATCH_PARTITION_MS,
  BLOCK_MS,
  batchDayBlockPk,
  batchPartitionPk,
  batchPartitionStart,
  batchRollupPk,
  blockStart,
  cellsOf,
  dimsKey,
  POINTER_KEY,
  pad13,
  speedPartitions,
  speedSlot,
  versionKey,
} from '../core/keys.ts';
import { mapLimit } from '../core/limit.ts';
import { type MetricState, stateColumns, stateFromColumns } from '../core/metrics.ts';
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
  /**
   * Rows of buckets before this may be read without their sketches, as their estimates (core/blocks.ts form `apart`;
   * readView sets it when no such row shares its answer cell with another). Absent: every sketch is read.
   */
  readonly sketchesFrom?: number;
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
  const base: Record<string, string> = {
    '#b': 'block',
    '#r': 'rows',
    '#k': 'sk',
    ...Object.fromEntries(legacy.map((a, i) => [`#l${i}`, a])),
  };
  return reads.map((r) => {
    // Blocks with sketches apart (core/blocks.ts): the sketch attributes of the buckets in range from `sketchesFrom` on.
    const names = { ...base };
    if (hasSketches(view)) {
      const step = GRAIN_MS[r.grain];
      const offsets = new Set<number>();
      // Every offset of a block is named once a block span of buckets is (60 at most: core/keys.ts BLOCK_MS).
      const end = Math.min(r.to, bucketStart(Math.max(r.from, r.sketchesFrom ?? r.from), r.grain) + BLOCK_MS[r.grain]);
      for (let b = bucketStart(Math.max(r.from, r.sketchesFrom ?? r.from), r.grain); b < end; b += step) {
        offsets.add(b - blockStart(b, r.grain));
      }
      let k = 0;
      for (const o of offsets) names[`#h${k++}`] = sketchAttribute(o);
    }
    return [r.pk, ...(r.inherited ?? [])].map((pk) => ({
      TableName: deps.tables.batchViews,
      KeyConditionExpression: 'pk = :pk AND sk BETWEEN :lo AND :hi',
      ExpressionAttributeValues: { ':pk': pk, ':lo': pad13(blockStart(r.from, r.grain)), ':hi': pad13(r.to) },
      ExpressionAttributeNames: names,
      ProjectionExpression: Object.keys(names).join(', '),
      ConsistentRead: true,
    }));
  });
}

/** The rows of one batch-views item: a block's, or (a version written before blocks) the one row it is. */
function itemRows(
  view: View,
  item: Record<string, unknown>,
): { bucket: number; dims: readonly (string | null)[]; values: Readonly<Record<string, unknown>>; estimates?: BlockRow['estimates'] }[] {
  if (item.rows === undefined && item.bucket !== undefined)
    return [
      {
        bucket: num(item.bucket),
        dims: Array.isArray(item.dims) ? item.dims.map((d) => (d == null ? null : String(d))) : [],
        values: item,
      },
    ];
  // Rows outside the read's range may lack their sketches (batchQueries names those of the range): kept as estimates.
  return decodeBlock(view, num(item.block), String(item.rows ?? '[]'), {
    sketches: (a) => (item[a] === undefined ? undefined : String(item[a])),
    estimates: true,
  });
}

/** Sketch column -> its metric, per view. */
const sketchMetrics = new WeakMap<View, ReadonlyMap<string, string>>();
function sketchMetricOf(view: View, column: string): string {
  let m = sketchMetrics.get(view);
  if (!m) {
    m = new Map(
      stateColumns(view)
        .filter((c) => c.component === 'hll')
        .map((c) => [c.column, c.metric]),
    );
    sketchMetrics.set(view, m);
  }
  return m.get(column)!;
}

/**
 * The rows of a read's block items whose buckets are in its [from, to), counting the decoded rows in `stats.rows`. With
 * `estimates`, a row read without its sketches (BatchRead.sketchesFrom) holds sketches known by their estimate alone
 * (hll.ts Sketch.ofEstimate), and `estimated`, when given, gets the indexes in the result of those rows.
 */
export function blockRowsIn(
  view: View,
  read: BatchRead,
  items: readonly Record<string, unknown>[],
  stats: ReadStats,
  estimates = false,
  estimated?: number[],
): Row[] {
  const out: Row[] = [];
  for (const item of items) {
    const rows = itemRows(view, item);
    stats.rows += rows.length;
    for (const r of rows) {
      if (r.bucket < read.from || r.bucket >= read.to) continue;
      const state = stateFromColumns(view, r.values);
      if (r.estimates) {
        if (!estimates) throw new Error(`batch rows of ${read.pk} at ${r.bucket} were read without their sketches`);
        for (const column in r.estimates)
          (state[sketchMetricOf(view, column)] as MetricState).hll = Sketch.ofEstimate(r.estimates[column]!);
        estimated?.push(out.length);
      }
      // decodeBlock's dims are fresh arrays: kept, not copied.
      out.push({ bucket: r.bucket, dims: r.dims, state });
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
  /**
   * The dimensions the answer is grouped by (QuerySpec.groupBy). When they are all the view's, a batch row read at the
   * answer's grain is an answer cell of its own unless a speed cell (or another batch row) falls in it: such rows are
   * read without their sketches, as estimates (`SKETCH_MARGIN_MS`), and the few that do share a cell get their
   * sketches in a second read. Every `Row` returned is then only good for that answer: a sketch known by its
   * estimate alone cannot be merged. @default undefined (every sketch read)
   */
  readonly groupBy?: readonly string[];
}

/**
 * Sketches of the batch buckets ending after cutoff - this are read up front (the others, when `groupBy` allows, as
 * estimates): the speed part holds arrivals >= cutoff, whose events are mostly on time or a few hours late (the demo's:
 * up to 3 hours), so its cells fall there; one further back costs a second read of the sketches it meets.
 */
export const SKETCH_MARGIN_MS = 6 * 3_600_000;

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
  const grain = opts.grain ?? view.grain;
  const planned = pointer ? batchReads(view, pointer.version, grain, fromMs, toMs, writers) : [];
  // Rows at the answer's grain and dimensions are answer cells of their own (the reads' buckets are disjoint), so
  // their sketches are needed only where the speed part may add to them (ReadOptions.groupBy).
  const alone = pointer !== null && hasSketches(view) && opts.groupBy?.length === view.dimensions.length && grain !== 'all';
  const reads = planned.map((r) =>
    alone && r.grain === grain ? { ...r, sketchesFrom: bucketStart(pointer.cutoff - SKETCH_MARGIN_MS, r.grain) } : r,
  );
  for (const [read, inputs] of batchQueries(deps, view, reads).entries())
    for (const [layer, input] of inputs.entries()) tasks.push({ input, kind: 'batch', read, layer });
  if (!opts.batchOnly) {
    const range = speedWindowRange(deps.settings, pointer?.cutoff ?? null, now);
    for (const input of speedQueries(deps, view, range.from, range.to, fromMs, toMs, now)) tasks.push({ input, kind: 'speed' });
  }
  // Each answer is decoded as it comes (a read of one key at once; one inheriting blocks once all its keys are in):
  // the local cloud's DynamoDB serves the next Queries meanwhile. Kept per task and read, put together in their order.
  const lo = bucketStart(fromMs, view.grain);
  const layers: Record<string, unknown>[][][] = reads.map(() => []);
  const pending = reads.map((r) => 1 + (r.inherited?.length ?? 0));
  const decoded: { rows: Row[]; partial: EstimatedItem[] }[] = reads.map(() => ({ rows: [], partial: [] }));
  const speedParts: SpeedRow[][] = tasks.map(() => []);
  await mapLimit([...tasks.keys()], deps.concurrency ?? 8, async (i) => {
    const t = tasks[i]!;
    const items = await queryAll(deps.doc, t.input, t.kind === 'batch' ? batchStats : speedStats);
    if (t.kind === 'batch') {
      layers[t.read!]![t.layer!] = items;
      if (--pending[t.read!]! === 0) decoded[t.read!] = decodeRead(view, reads[t.read!]!, layers[t.read!]!, batchStats);
      return;
    }
    const out = speedParts[i]!;
    for (const item of items) {
      const window = num(item.window);
      for (const cell of cellsOf(num(item.slot), item)) {
        if (cell.bucket >= lo && cell.bucket < toMs)
          out.push({ bucket: cell.bucket, dims: cell.dims, state: stateFromColumns(view, cell.columns), window });
      }
    }
  });
  const speedRows = speedParts.flat();
  const batchRows: Row[] = [];
  // Items with rows read as estimates: their key, and where their rows in range are in batchRows.
  const partial: EstimatedItem[] = [];
  for (const d of decoded) {
    for (const p of d.partial) partial.push({ ...p, at: p.at + batchRows.length });
    for (const r of d.rows) batchRows.push(r);
  }
  if (partial.length > 0) await readSharedSketches(deps, view, grain as Grain, partial, batchRows, speedRows, batchStats);
  return { pointer, batchRows, speedRows, stats: { pointer: 1, manifest: pointer ? 1 : 0, batch: batchStats, speed: speedStats } };
}

/** An item with rows read as estimates: its key, and where its rows in range are (`at`: the first; `rows`: those). */
interface EstimatedItem {
  readonly pk: string;
  readonly item: Record<string, unknown>;
  readonly read: BatchRead;
  readonly at: number;
  readonly rows: number[];
}

/** The rows in range of one read's items (`layers`: per key of the read, newest writer first), and its items read as estimates. */
function decodeRead(
  view: View,
  read: BatchRead,
  layers: readonly Record<string, unknown>[][],
  stats: ReadStats,
): { rows: Row[]; partial: EstimatedItem[] } {
  const items = layers.length === 1 ? layers[0]! : newestBlocks(layers);
  if (read.sketchesFrom === undefined) return { rows: blockRowsIn(view, read, items, stats), partial: [] };
  const pkOf = new Map(layers.flatMap((l, layer) => l.map((item) => [item, layer === 0 ? read.pk : read.inherited![layer - 1]!])));
  const rows: Row[] = [];
  const partial: EstimatedItem[] = [];
  for (const item of items) {
    const estimated: number[] = [];
    const at = rows.length;
    for (const r of blockRowsIn(view, read, [item], stats, true, estimated)) rows.push(r);
    if (estimated.length > 0) partial.push({ pk: pkOf.get(item)!, item, read, at, rows: estimated });
  }
  return { rows, partial };
}

/**
 * The second read of `readView` with `groupBy`: rows read as estimates whose answer cell (bucket at `grain`, every
 * dimension) holds another row, a speed cell or a batch row with its sketches, are read again with their sketches
 * (the bucket's sketch attributes of their item, strongly consistent) and replace their estimates in `batchRows`.
 * Two rows read as estimates never share a cell: they come from reads at `grain`, each row its own bucket and
 * dimensions, and the reads' buckets are disjoint (`batchReads`).
 */
async function readSharedSketches(
  deps: ReadDeps,
  view: View,
  grain: Grain,
  partial: readonly EstimatedItem[],
  batchRows: Row[],
  speedRows: readonly SpeedRow[],
  stats: ReadStats,
): Promise<void> {
  const estimated = new Uint8Array(batchRows.length);
  for (const p of partial) for (const k of p.rows) estimated[p.at + k] = 1;
  // Cells holding a row with its sketches: bucket at `grain` -> the rows' dimensions (dimsKey).
  const cells = new Map<number, Set<string>>();
  const note = (r: Row) => {
    const b = bucketStart(r.bucket, grain);
    const set = cells.get(b);
    if (set) set.add(dimsKey(r.dims));
    else cells.set(b, new Set([dimsKey(r.dims)]));
  };
  for (const r of speedRows) note(r);
  for (let k = 0; k < batchRows.length; k++) if (estimated[k] === 0) note(batchRows[k]!);
  const again: { p: (typeof partial)[number]; offsets: Set<number> }[] = [];
  for (const p of partial) {
    const offsets = new Set<number>();
    const block = num(p.item.block);
    for (const k of p.rows) {
      const r = batchRows[p.at + k]!;
      if (cells.get(bucketStart(r.bucket, grain))?.has(dimsKey(r.dims))) offsets.add(r.bucket - block);
    }
    if (offsets.size > 0) again.push({ p, offsets });
  }
  await mapLimit(again, deps.concurrency ?? 8, async ({ p, offsets }) => {
    const names = Object.fromEntries([...offsets].map((o, i) => [`#h${i}`, sketchAttribute(o)]));
    const out = await deps.doc.send(
      new GetCommand({
        TableName: deps.tables.batchViews,
        Key: { pk: p.pk, sk: p.item.sk },
        ExpressionAttributeNames: names,
        ProjectionExpression: Object.keys(names).join(', '),
        ConsistentRead: true,
      }),
    );
    stats.requests++;
    if (!out.Item) throw new Error(`batch item ${p.pk} ${String(p.item.sk)} is gone (read it again)`);
    stats.items++;
    // Every row of the item again (in the same order), those of the buckets now read with their sketches.
    const rows = blockRowsIn(view, p.read, [{ ...p.item, ...out.Item }], stats, true);
    for (let k = 0; k < rows.length; k++) batchRows[p.at + k] = rows[k]!;
  });
}
