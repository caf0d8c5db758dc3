/**
 * The per-shard loop shared by the stream consumers (speed, archive). Lambda may
 * hand one invocation records of several shards (never in our mappings, but a
 * consumer must not depend on it): each shard's records are handled in sequence
 * order, shards in parallel, and a shard that fails reports its *first* record,
 * so Lambda retries that shard's whole batch and never skips an earlier record
 * whose effects are incomplete (invariant 9, docs/design.md).
 */
import { padSeq } from '../core/record.ts';
import type { StreamRecord } from './kinesis-event.ts';

export interface ShardFailure {
  readonly shard: string;
  readonly firstSeq: string;
  readonly lastSeq: string;
  readonly records: number;
  readonly error: unknown;
}

/** Runs `perShard` for each shard's records in sequence order; returns the failed shards' first sequence numbers. */
export async function forEachShard<R extends Pick<StreamRecord, 'shard' | 'seq'>>(
  records: readonly R[],
  perShard: (shard: string, sorted: readonly R[]) => Promise<void>,
  onFailure: (f: ShardFailure) => void,
): Promise<string[]> {
  const byShard = new Map<string, { r: R; seq: string }[]>();
  for (const r of records) {
    const list = byShard.get(r.shard);
    const x = { r, seq: padSeq(r.seq) };
    if (list) list.push(x);
    else byShard.set(r.shard, [x]);
  }
  const failures: string[] = [];
  await Promise.all(
    [...byShard.entries()].map(async ([shard, list]) => {
      const sorted = list.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0)).map((x) => x.r);
      try {
        await perShard(shard, sorted);
      } catch (error) {
        failures.push(sorted[0]!.seq);
        onFailure({ shard, firstSeq: sorted[0]!.seq, lastSeq: sorted[sorted.length - 1]!.seq, records: sorted.length, error });
      }
    }),
  );
  return failures;
}

/** An error as a log attribute: name and message, never a stack. */
export const errorAttribute = (e: unknown) => (e instanceof Error ? { name: e.name, message: e.message } : String(e));

/** Age of a batch's oldest record at `nowMs` (the BatchAge metric of both consumers); 0 for none. */
export function batchAgeMs(records: readonly Pick<StreamRecord, 'arrival'>[], nowMs: number): number {
  if (records.length === 0) return 0;
  // A loop, not Math.min(...records): a spread of a large batch can pass the engine's argument limit.
  return Math.max(0, nowMs - records.reduce((m, r) => Math.min(m, r.arrival), Number.POSITIVE_INFINITY));
}
