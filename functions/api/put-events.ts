/**
 * Writes accepted events to the stream: PutRecords with the event id as the
 * partition key (all copies of an id land on one shard, invariant 3 of docs/design.md), in
 * requests of at most 500 records and 5 MB, retrying only the entries that
 * failed. Answers which entries are stored, so ingest says 2xx only when all are.
 */
import { type KinesisClient, PutRecordsCommand, type PutRecordsRequestEntry } from '@aws-sdk/client-kinesis';
import type { IdentifiedEvent } from '../core/events.ts';

/** PutRecords limits (Kinesis service quotas). */
export const PUT_MAX_RECORDS = 500;
export const PUT_MAX_BYTES = 5 * 1024 * 1024;

/** The Kinesis client surface ingest uses: a wrapper around the real client may stand in (fault injection). */
export type KinesisPut = Pick<KinesisClient, 'send'>;

export interface PutEntry {
  /** Position in the request body (what the API reports). */
  readonly index: number;
  readonly data: Uint8Array;
  readonly partitionKey: string;
}

export function toEntry(index: number, event: IdentifiedEvent): PutEntry {
  return { index, data: Buffer.from(JSON.stringify(event), 'utf8'), partitionKey: event.id };
}

/** Bytes an entry counts against the 5 MB request limit (data plus partition key, as Kinesis counts them). */
export function entryBytes(e: PutEntry): number {
  return e.data.byteLength + Buffer.byteLength(e.partitionKey, 'utf8');
}

/** Splits entries, in order, into PutRecords requests within the record and byte limits. */
export function chunkEntries<E extends PutEntry>(entries: readonly E[], maxRecords = PUT_MAX_RECORDS, maxBytes = PUT_MAX_BYTES): E[][] {
  const chunks: E[][] = [];
  let current: E[] = [];
  let bytes = 0;
  for (const e of entries) {
    const size = entryBytes(e);
    if (current.length > 0 && (current.length >= maxRecords || bytes + size > maxBytes)) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(e);
    bytes += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

/** Time kept back from the invocation's deadline to answer after an aborted PutRecords. */
const REPLY_RESERVE_MS = 1500;
const MIN_REQUEST_MS = 500;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export interface PutOptions {
  /** Rounds of PutRecords for entries that keep failing (the first send included). @default 5 */
  readonly maxRounds?: number;
  /** Backoff before round 2; doubles each round, with full jitter. @default 50 */
  readonly baseDelayMs?: number;
  /** @default 1000 */
  readonly maxDelayMs?: number;
  /** Stop retrying when less than this much of the invocation remains. */
  readonly remainingMs?: () => number;
  readonly onRetry?: (info: { round: number; entries: number; codes: Record<string, number> }) => void;
}

export interface PutOutcome {
  /** Body indices whose records are stored, in input order. */
  readonly stored: number[];
  /** Body indices not stored after every round, with the last error seen. */
  readonly failed: { index: number; code: string; message: string }[];
  /** PutRecords requests sent. */
  readonly requests: number;
  /** Entries sent again after a failure (each resend counted). */
  readonly resent: number;
}

/**
 * Sends every entry, resending only those the stream reports failed
 * (FailedRecordCount / per-entry ErrorCode) with exponential backoff.
 *
 * A request that throws (after the SDK's own retries) is not resent: the
 * service may have stored some of its records, and the client's retry with the
 * same ids is safe where ours would only repeat the same failure sooner.
 */
export async function putEntries(
  kinesis: KinesisPut,
  streamName: string,
  entries: readonly PutEntry[],
  opts: PutOptions = {},
): Promise<PutOutcome> {
  const maxRounds = opts.maxRounds ?? 5;
  const base = opts.baseDelayMs ?? 50;
  const cap = opts.maxDelayMs ?? 1000;
  const stored = new Set<number>();
  const lastError = new Map<number, { code: string; message: string }>();
  let pending = [...entries];
  let requests = 0;
  let resent = 0;
  for (let round = 1; pending.length > 0 && round <= maxRounds; round++) {
    if (round > 1) {
      const delay = Math.random() * Math.min(cap, base * 2 ** (round - 2));
      if (opts.remainingMs && opts.remainingMs() < delay + 2_000) break;
      const codes: Record<string, number> = {};
      for (const e of pending) {
        const c = lastError.get(e.index)?.code ?? 'unknown';
        codes[c] = (codes[c] ?? 0) + 1;
      }
      opts.onRetry?.({ round, entries: pending.length, codes });
      await sleep(delay);
      resent += pending.length;
    }
    const retry: PutEntry[] = [];
    const chunks = chunkEntries(pending);
    await Promise.all(
      chunks.map(async (chunk) => {
        requests++;
        const Records: PutRecordsRequestEntry[] = chunk.map((e) => ({ Data: e.data, PartitionKey: e.partitionKey }));
        try {
          // Give up on a request before the invocation's deadline: the client then hears which events
          // are not confirmed (a 503 naming them) instead of a gateway timeout that names nothing.
          const budget = opts.remainingMs ? opts.remainingMs() - REPLY_RESERVE_MS : Number.POSITIVE_INFINITY;
          const out = await kinesis.send(
            new PutRecordsCommand({ StreamName: streamName, Records }),
            Number.isFinite(budget) ? { abortSignal: AbortSignal.timeout(Math.max(MIN_REQUEST_MS, budget)) } : {},
          );
          chunk.forEach((e, i) => {
            const r = out.Records?.[i];
            if (r && !r.ErrorCode && r.SequenceNumber) {
              stored.add(e.index);
              lastError.delete(e.index);
            } else {
              lastError.set(e.index, { code: r?.ErrorCode ?? 'MissingResult', message: r?.ErrorMessage ?? 'no result for this entry' });
              retry.push(e);
            }
          });
        } catch (err) {
          const error = err as Error;
          for (const e of chunk) lastError.set(e.index, { code: error.name || 'Error', message: error.message });
        }
      }),
    );
    pending = retry.sort((a, b) => a.index - b.index);
  }
  const order = entries.map((e) => e.index);
  return {
    stored: order.filter((i) => stored.has(i)),
    failed: order
      .filter((i) => !stored.has(i))
      .map((index) => ({ index, ...(lastError.get(index) ?? { code: 'NotSent', message: 'not sent' }) })),
    requests,
    resent,
  };
}
