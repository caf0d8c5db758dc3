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
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, QueryCommand, type QueryCommandInput } from '@aws-sdk/lib-dynamodb';
import { batchPartitions, cellsOf, POINTER_KEY, pad13, speedPartitions, speedSlot } from '../core/keys.ts';
import { mapLimit } from '../core/limit.ts';
import { stateColumns, stateFromColumns } from '../core/metrics.ts';
import type { Row, SpeedRow } from '../core/query.ts';
import { type Settings, speedTtlSeconds } from '../core/settings.ts';
import { bucketStart, floorTo } from '../core/time.ts';
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
  items: number;
  /** Items read but dropped by the filter (expired or outside the bucket range): they cost reads too. */
  scanned: number;
}

export const emptyStats = (): ReadStats => ({ partitions: 0, requests: 0, items: 0, scanned: 0 });

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

const dimsOf = (v: unknown): (string | null)[] =>
  Array.isArray(v) ? v.map((d) => (d === null || d === undefined ? null : String(d))) : [];

/**
 * Batch rows: read only what the merge uses (bucket, dims, the view's state columns): less to
 * transfer and unmarshal; DynamoDB still charges reads by whole item size. (Speed items are read
 * whole: their cell attributes are not known in advance.)
 */
function batchProjection(view: View): { names: Record<string, string>; projection: string } {
  const all = ['bucket', 'dims', ...stateColumns(view).map((c) => c.column)];
  const names = Object.fromEntries(all.map((a, i) => [`#a${i}`, a]));
  return { names, projection: Object.keys(names).join(', ') };
}

/** The batch partitions of version N that hold buckets in [fromMs, toMs), each one key-range Query. */
export function batchQueries(
  deps: Pick<ReadDeps, 'tables'>,
  view: View,
  version: number,
  fromMs: number,
  toMs: number,
): QueryCommandInput[] {
  const lo = bucketStart(fromMs, view.grain);
  // sk = <bucket 13d>#<dims>: BETWEEN pad13(lo) AND pad13(to) holds exactly the buckets in [lo, to),
  // since "<to>#..." sorts after "<to>".
  const { names, projection } = batchProjection(view);
  return batchPartitions(view.name, version, view.grain, lo, toMs).map((pk) => ({
    TableName: deps.tables.batchViews,
    KeyConditionExpression: 'pk = :pk AND sk BETWEEN :lo AND :hi',
    ExpressionAttributeValues: { ':pk': pk, ':lo': pad13(lo), ':hi': pad13(toMs) },
    ExpressionAttributeNames: names,
    ProjectionExpression: projection,
    ConsistentRead: true,
  }));
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
  readonly stats: { pointer: number; batch: ReadStats; speed: ReadStats };
}

export interface ReadOptions {
  /** Skip the speed table (benchmarks: a batch-only read of the same range). */
  readonly batchOnly?: boolean;
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
  const tasks: { input: QueryCommandInput; kind: 'batch' | 'speed' }[] = [];
  if (pointer) for (const input of batchQueries(deps, view, pointer.version, fromMs, toMs)) tasks.push({ input, kind: 'batch' });
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
  results.forEach((items, i) => {
    const kind = tasks[i]!.kind;
    for (const item of items) {
      if (kind === 'batch') {
        batchRows.push({ bucket: num(item.bucket), dims: dimsOf(item.dims), state: stateFromColumns(view, item) });
        continue;
      }
      const window = num(item.window);
      for (const cell of cellsOf(num(item.slot), item)) {
        if (cell.bucket >= lo && cell.bucket < toMs)
          speedRows.push({ bucket: cell.bucket, dims: cell.dims, state: stateFromColumns(view, cell.columns), window });
      }
    }
  });
  return { pointer, batchRows, speedRows, stats: { pointer: 1, batch: batchStats, speed: speedStats } };
}
