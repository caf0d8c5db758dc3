/**
 * Loading a view's rows as version N into the batch-view table (keys from
 * core/keys.ts), and deleting a retired version's rows. BatchWriteItem, 25
 * items a request, a bounded number of requests in flight; unprocessed items
 * are resent with backoff until none is left. State columns are written as
 * DynamoDB numbers from their decimal text, so nothing passes through a double.
 */
import { type AttributeValue, BatchWriteItemCommand, type DynamoDBClient, QueryCommand, type WriteRequest } from '@aws-sdk/client-dynamodb';
import { batchPk, batchSk } from '../core/keys.ts';
import { backoff, chunks, mapLimit } from '../core/limit.ts';
import { stateColumns } from '../core/metrics.ts';
import type { View } from '../core/views.ts';
import type { BatchRow } from './engine.ts';

export const BATCH_WRITE_MAX = 25;
/** Rounds of unprocessed items before a load gives up (the step is retried whole). */
const MAX_ATTEMPTS = 16;

export function rowItem(view: View, version: number, row: BatchRow): Record<string, AttributeValue> {
  const item: Record<string, AttributeValue> = {
    pk: { S: batchPk(view.name, version, row.bucket, view.grain) },
    sk: { S: batchSk(row.bucket, row.dims) },
    view: { S: view.name },
    version: { N: String(version) },
    bucket: { N: String(row.bucket) },
    dims: { L: row.dims.map((d) => (d === null ? { NULL: true } : { S: d })) },
  };
  for (const c of stateColumns(view)) {
    const v = row.values[c.column];
    // An empty min/max is an absent attribute (docs/architecture.md).
    if (v !== null && v !== undefined) item[c.column] = { N: v };
  }
  return item;
}

/** The batch-view partitions a version's rows of a view occupy. */
export function rowPartitions(view: View, version: number, rows: readonly BatchRow[]): string[] {
  return [...new Set(rows.map((r) => batchPk(view.name, version, r.bucket, view.grain)))].sort();
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
