/**
 * Backfilled copies in chained claims (functions/speed/dedup.ts, `registerCopies`;
 * docs/batch-layer.md "Backfill", "Duplicates"): the decisions `decideChain` takes
 * when a backfill's copy (arrival T, pseudo-shard) meets live copies of its id,
 * and that registering the same copy again adds nothing.
 */
import { describe, expect, it } from 'vitest';
import type { RawRecord } from '../../functions/core/record.ts';
import { type Claim, decideChain, isSuperseded } from '../../functions/speed/dedup.ts';

const H = 10_000;
const T = 1_000_000;
const BF = 'backfill-0123456789abcdef';
const LIVE = 'shardId-000000000000';

const copy = (arrival: number, shard: string, seq: string): RawRecord => ({
  id: 'e1',
  type: 'purchase',
  ts: 0,
  arrival,
  shard,
  seq,
  fields: {},
  num: {},
});
/** A claim as the batched path writes it (no chain): its latest copy. */
const batched = (r: RawRecord): Claim => ({ shard: r.shard, seq: r.seq, arrival: r.arrival, fromSeq: r.seq, before: undefined });
/** The claim after writing a decision's chain. */
const chained = (chain: NonNullable<ReturnType<typeof decideChain>['chain']>, version: number): Claim => {
  const last = chain[chain.length - 1]!;
  return { shard: last.shard, seq: last.seq, arrival: last.arrival, fromSeq: undefined, before: undefined, chain, version };
};

describe('backfilled copies in chained claims', () => {
  it('a live copy within H after T does not count; one more than H after counts', () => {
    const b = decideChain([copy(T, BF, '7')], undefined, H);
    expect(b.counted).toHaveLength(1);
    const claim = chained(b.chain!, 1);
    const live = decideChain([copy(T + H, LIVE, '100')], claim, H, '050');
    expect(live.duplicates).toHaveLength(1);
    const later = decideChain([copy(T + 2 * H + 1, LIVE, '200')], chained(live.chain!, 2), H, '150');
    expect(later.counted).toHaveLength(1);
  });

  it('a live copy before T keeps its count: the backfilled copy goes after it and does not count within H', () => {
    const liveCopy = copy(T - 5_000, LIVE, '100');
    const b = decideChain([copy(T, BF, '7')], batched(liveCopy), H);
    expect(b.duplicates).toHaveLength(1);
    expect(b.chain!.map((c) => [c.shard, c.counted])).toEqual([
      [LIVE, true],
      [BF, false],
    ]);
    // Beyond H after the live copy, the backfilled copy counts (the batch counts it too).
    const far = decideChain([copy(T, BF, '7')], batched(copy(T - H - 1, LIVE, '100')), H);
    expect(far.counted).toHaveLength(1);
  });

  it('at equal arrivals the backfilled copy comes first, as in the batch: (arrival, shard, seq)', () => {
    const b = decideChain([copy(T, BF, '7')], undefined, H);
    const live = decideChain([copy(T, LIVE, '100')], chained(b.chain!, 1), H);
    expect(live.duplicates).toHaveLength(1);
    expect(live.chain!.map((c) => c.shard)).toEqual([BF, LIVE]);
  });

  it('registering the same copy again (a re-run) writes nothing and keeps its decision', () => {
    const b = decideChain([copy(T, BF, '7')], undefined, H);
    const again = decideChain([copy(T, BF, '7')], chained(b.chain!, 1), H);
    expect(again.chain).toBeUndefined();
    expect(again.counted).toHaveLength(1);
  });
});

describe('superseded backfilled copies', () => {
  it('a live copy counted within H after T before the registration: the backfilled copy goes in uncounted, nothing before it', () => {
    const live = copy(T + 3_000, LIVE, '100');
    const b = decideChain([copy(T, BF, '7')], batched(live), H);
    expect(b.duplicates).toHaveLength(1);
    // What registerCopies reads as superseded: the first backfilled copy uncounted, no copy within H before it.
    expect(b.chain!.map((c) => [c.shard, c.counted])).toEqual([
      [BF, false],
      [LIVE, true],
    ]);
    expect(isSuperseded(b.chain!, BF, H)).toBe(true);
  });

  it('not superseded: counted, or a duplicate of a copy within H before it, or not in the chain', () => {
    expect(isSuperseded(decideChain([copy(T, BF, '7')], undefined, H).chain!, BF, H)).toBe(false);
    expect(isSuperseded(decideChain([copy(T, BF, '7')], batched(copy(T - 5_000, LIVE, '100')), H).chain!, BF, H)).toBe(false);
    expect(isSuperseded(decideChain([copy(T, LIVE, '100')], undefined, H).chain!, BF, H)).toBe(false);
    // A second copy of the id in the same backfill follows the first: the id is superseded as a whole.
    const two = decideChain([copy(T, BF, '7'), copy(T, BF, '9')], batched(copy(T + 3_000, LIVE, '100')), H);
    expect(two.chain!.map((c) => c.counted)).toEqual([false, false, true]);
    expect(isSuperseded(two.chain!, BF, H)).toBe(true);
  });
});
