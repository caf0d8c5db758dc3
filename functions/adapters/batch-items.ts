/**
 * DynamoDB's batch calls over any number of keys or writes: BatchGetItem 100
 * keys a call and BatchWriteItem 25 requests a call, several calls in flight,
 * unprocessed keys and items sent again with backoff. The SDK leaves the
 * splitting and the retry of unprocessed parts to the caller; every caller
 * here wants the same: all of it done, or an error that fails the caller's
 * unit of work (which is then retried whole).
 */
import {
  type AttributeValue,
  BatchGetItemCommand,
  BatchWriteItemCommand,
  type DynamoDBClient,
  type KeysAndAttributes,
  type WriteRequest,
} from '@aws-sdk/client-dynamodb';
import { backoff, chunks, mapLimit } from '../core/limit.ts';

/** DynamoDB's per-request limits. */
export const BATCH_GET_MAX = 100;
export const BATCH_WRITE_MAX = 25;
/** Attempts at unprocessed keys or items before giving up. */
const MAX_ATTEMPTS = 8;

export interface BatchOptions {
  /** Names the work in the error thrown when some of it stays unprocessed (`dedup: claim writes`). */
  readonly what: string;
  /** Calls in flight. @default 8 */
  readonly concurrency?: number;
  /** Counts every call sent, retries of unprocessed parts included. */
  readonly io?: { requests: number };
}

/** Reads `keys` (strongly consistent; keys of several tables may mix), handing each call's items to `onItems`. */
export async function batchGetAll(
  ddb: DynamoDBClient,
  keys: readonly { readonly table: string; readonly key: Record<string, AttributeValue> }[],
  opts: BatchOptions & { readonly onItems: (table: string, items: readonly Record<string, AttributeValue>[]) => void },
): Promise<void> {
  await mapLimit(chunks(keys, BATCH_GET_MAX), opts.concurrency ?? 8, async (chunk) => {
    let pending: Record<string, KeysAndAttributes> = {};
    for (const k of chunk) {
      pending[k.table] ??= { Keys: [], ConsistentRead: true };
      pending[k.table]!.Keys!.push(k.key);
    }
    for (let attempt = 0; Object.keys(pending).length > 0; attempt++) {
      if (attempt >= MAX_ATTEMPTS) throw new Error(`${opts.what} still unprocessed after ${MAX_ATTEMPTS} attempts`);
      if (attempt > 0) await backoff(attempt);
      if (opts.io) opts.io.requests++;
      const res = await ddb.send(new BatchGetItemCommand({ RequestItems: pending }));
      for (const [table, items] of Object.entries(res.Responses ?? {})) opts.onItems(table, items);
      pending = Object.fromEntries(Object.entries(res.UnprocessedKeys ?? {}).filter(([, k]) => (k.Keys?.length ?? 0) > 0));
    }
  });
}

/** Sends `requests` (puts or deletes) to `table`. */
export async function batchWriteAll(
  ddb: DynamoDBClient,
  table: string,
  requests: readonly WriteRequest[],
  opts: BatchOptions,
): Promise<void> {
  await mapLimit(chunks(requests, BATCH_WRITE_MAX), opts.concurrency ?? 8, async (chunk) => {
    let pending: WriteRequest[] = chunk;
    for (let attempt = 0; pending.length > 0; attempt++) {
      if (attempt >= MAX_ATTEMPTS) throw new Error(`${opts.what}: ${pending.length} still unprocessed after ${MAX_ATTEMPTS} attempts`);
      if (attempt > 0) await backoff(attempt);
      if (opts.io) opts.io.requests++;
      const res = await ddb.send(new BatchWriteItemCommand({ RequestItems: { [table]: pending } }));
      pending = res.UnprocessedItems?.[table] ?? [];
    }
  });
}
