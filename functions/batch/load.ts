/**
 * Loading a view's rows as version N into the batch-view table (keys from
 * core/keys.ts), and deleting a retired version's rows. BatchWriteItem, 25
 * items a request, a bounded number of requests in flight; unprocessed items
 * are resent with backoff until none is left. State columns are written as
 * DynamoDB numbers from their decimal text, so nothing passes through a double.
 */
import { type AttributeValue, BatchWriteItemCommand, type DynamoDBClient, QueryCommand, type WriteRequest } from '@aws-sdk/client-dynamodb';
import { batchPartitionPk, batchPartitionStart, batchPk, batchRollupPk, batchSk, dimsKey, pad13, rollupGrains } from '../core/keys.ts';
import { backoff, chunks, mapLimit } from '../core/limit.ts';
import { combineViewStates, stateColumns, stateFromColumns, stateToColumns } from '../core/metrics.ts';
import { bucketStart, type Grain } from '../core/time.ts';
import type { View } from '../core/views.ts';
import type { ViewManifest } from './control.ts';
import type { BatchRow } from './engine.ts';

export const BATCH_WRITE_MAX = 25;
/** Rounds of unprocessed items before a load gives up (the step is retried whole). */
const MAX_ATTEMPTS = 16;

/** The item of a row; with `grain`, a rollup row of that grain (keyed under its base partition, see core/keys.ts). */
export function rowItem(view: View, version: number, row: BatchRow, grain?: Grain): Record<string, AttributeValue> {
  const pk =
    grain === undefined
      ? batchPk(view.name, version, row.bucket, view.grain)
      : batchRollupPk(view.name, grain, version, batchPartitionStart(row.bucket, view.grain));
  const item: Record<string, AttributeValue> = {
    pk: { S: pk },
    sk: { S: batchSk(row.bucket, row.dims) },
    view: { S: view.name },
    version: { N: String(version) },
    ...(grain !== undefined && { grain: { S: grain } }),
    bucket: { N: String(row.bucket) },
    dims: { L: row.dims.map((d) => (d === null ? { NULL: true } : { S: d })) },
  };
  for (const c of stateColumns(view)) {
    const v = row.values[c.column];
    // An empty min/max/sketch is an absent attribute (docs/architecture.md); a sketch is its canonical text.
    if (v !== null && v !== undefined) item[c.column] = c.component === 'hll' ? { S: v } : { N: v };
  }
  return item;
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
 * everywhere else). Ordered by bucket and dimension values.
 */
export function rollupRows(view: View, grain: Grain, rows: readonly BatchRow[]): BatchRow[] {
  const cells = new Map<string, { bucket: number; dims: readonly (string | null)[]; state: ReturnType<typeof stateFromColumns> }>();
  for (const r of rows) {
    const bucket = bucketStart(r.bucket, grain);
    const k = `${pad13(bucket)}#${dimsKey(r.dims)}`;
    const state = stateFromColumns(view, r.values);
    const old = cells.get(k);
    cells.set(k, { bucket, dims: r.dims, state: old ? combineViewStates(view, old.state, state) : state });
  }
  return [...cells.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, c]) => ({ bucket: c.bucket, dims: c.dims, values: stateToColumns(view, c.state) }));
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
  return { grains, from: base && base.grains.join() === grains.join() ? Number(base.from) : version };
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
  v: Pick<ViewManifest, 'partitions' | 'rollups'> | undefined,
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
  return Object.entries(parts as Readonly<Record<string, number>>).flatMap(([start, w]) => {
    const writer = Number(w);
    const base: PartitionRef = { view: viewName, start, writer, pk: batchPartitionPk(viewName, writer, Number(start)) };
    if (!rollups || writer < Number(rollups.from)) return [base];
    return [base, ...rollups.grains.map((grain) => ({ ...base, grain, pk: batchRollupPk(viewName, grain, writer, Number(start)) }))];
  });
}

/** Every item of one batch-view partition as rows (strongly consistent: it may have been written just now). */
export async function readPartitionRows(ddb: DynamoDBClient, table: string, view: View, pk: string): Promise<BatchRow[]> {
  const rows: BatchRow[] = [];
  const columns = stateColumns(view);
  let start: Record<string, AttributeValue> | undefined;
  do {
    const page = await ddb.send(
      new QueryCommand({
        TableName: table,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': { S: pk } },
        ConsistentRead: true,
        ExclusiveStartKey: start,
      }),
    );
    for (const item of page.Items ?? []) {
      const values: Record<string, string | null> = {};
      for (const c of columns) values[c.column] = (c.component === 'hll' ? item[c.column]?.S : item[c.column]?.N) ?? null;
      rows.push({
        bucket: Number(item.bucket?.N),
        dims: (item.dims?.L ?? []).map((d) => (d.NULL ? null : (d.S ?? null))),
        values,
      });
    }
    start = page.LastEvaluatedKey;
  } while (start);
  return rows;
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
  written: number;
  requests: number;
  /** Requests that resent unprocessed items. */
  retries: number;
}

/** Writes (puts or deletes) every request, resending unprocessed ones until done. */
export async function writeAll(opts: WriteOptions, requests: readonly WriteRequest[]): Promise<WriteStats> {
  const stats: WriteStats = { written: 0, requests: 0, retries: 0 };
  await mapLimit(chunks(requests, BATCH_WRITE_MAX), opts.concurrency ?? 8, async (chunk) => {
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
      pending = left;
    }
    await opts.onProgress?.(stats.written);
  });
  return stats;
}

export async function loadRows(opts: WriteOptions, view: View, version: number, rows: readonly BatchRow[]): Promise<WriteStats> {
  return writeAll(
    opts,
    rows.map((r) => ({ PutRequest: { Item: rowItem(view, version, r) } })),
  );
}

/**
 * Writes whole partitions of a view as `version`: their rows and, computed from exactly those rows,
 * their rollups at each coarser grain (`rollupGrains`), in one load. `rows` must hold every row of
 * each partition it touches (a rebuild's, or an increment's merged partition): a rollup row sums
 * its partition's rows. `written` counts every item, rollups included; `rollups` those alone.
 */
export async function loadPartitions(
  opts: WriteOptions,
  view: View,
  version: number,
  rows: readonly BatchRow[],
): Promise<WriteStats & { rollups: number }> {
  const requests: WriteRequest[] = rows.map((r) => ({ PutRequest: { Item: rowItem(view, version, r) } }));
  const base = requests.length;
  const grains = rollupGrains(view.grain);
  if (grains.length > 0) {
    for (const prows of rowsByPartition(view, rows).values()) {
      for (const grain of grains) {
        for (const r of rollupRows(view, grain, prows)) requests.push({ PutRequest: { Item: rowItem(view, version, r, grain) } });
      }
    }
  }
  return { ...(await writeAll(opts, requests)), rollups: requests.length - base };
}

/** Deletes every item of the given batch-view partitions. Returns the number deleted. */
export async function deletePartitions(opts: WriteOptions, partitions: readonly string[]): Promise<number> {
  let deleted = 0;
  for (const pk of partitions) {
    let start: Record<string, AttributeValue> | undefined;
    do {
      const page = await opts.ddb.send(
        new QueryCommand({
          TableName: opts.table,
          KeyConditionExpression: 'pk = :pk',
          ExpressionAttributeValues: { ':pk': { S: pk } },
          ProjectionExpression: 'pk, sk',
          ExclusiveStartKey: start,
        }),
      );
      const keys = page.Items ?? [];
      if (keys.length > 0)
        deleted += (
          await writeAll(
            opts,
            keys.map((Key) => ({ DeleteRequest: { Key } })),
          )
        ).written;
      start = page.LastEvaluatedKey;
    } while (start);
  }
  return deleted;
}
