/**
 * Chained claims when a shard lags (functions/speed/dedup.ts, "Any partition key"): an older copy
 * claimed after a later one another shard counted takes that count back by a retraction its own
 * shard applies, the later copy's shard keeps its own decision (so every retry of either shard applies
 * the same), and the stored text of a chain keeps what a retraction needs.
 */
import { describe, expect, it } from 'vitest';
import type { RawRecord } from '../../functions/core/record.ts';
import { type ChainCopy, type Claim, chainCopyText, decideChain, parseChainCopy } from '../../functions/speed/dedup.ts';

const H = 1_000;
const T = 5_000_000;
const [A, B, C] = ['shardId-000000000000', 'shardId-000000000001', 'shardId-000000000002'];
const BF = 'backfill-0123456789abcdef';

const copy = (arrival: number, shard: string, seq: string): RawRecord => ({
  id: 'e1',
  type: 'purchase',
  ts: 42,
  arrival,
  shard,
  seq,
  fields: { type: 'purchase', country: 'DE|FR' },
  num: { amount: '12.5' },
});
const stored = (chain: readonly ChainCopy[], version: number): Claim => {
  const last = chain[chain.length - 1]!;
  return { shard: last.shard, seq: last.seq, arrival: last.arrival, fromSeq: undefined, before: undefined, chain, version };
};

describe('a shard that lags', () => {
  const b = copy(T + 500, B, '200');
  const a = copy(T, A, '100');

  it('takes the later copy’s count back: the older copy counts, and its shard applies the retraction', () => {
    const first = decideChain([b], undefined, H);
    expect(first.counted).toEqual([b]);
    expect(first.chain![0]!.event).toEqual({ type: 'purchase', ts: 42, fields: b.fields, num: b.num });
    const lag = decideChain([a], stored(first.chain!, 1), H);
    expect(lag.counted).toEqual([a]);
    expect(lag.retractions).toEqual([{ ...b, shard: A, seq: '100~', retract: true }]);
    // B's decision stands (its retries apply it), marked as taken back by A's copy.
    expect(lag.chain!.map((c) => [c.shard, c.counted, c.retractedBy])).toEqual([
      [A, true, undefined],
      [B, true, `${A}|100`],
    ]);
    // A retry of either shard decides the same; A's re-emits the same retraction, B's none.
    const again = stored(lag.chain!, 2);
    expect(decideChain([a], again, H)).toMatchObject({ counted: [a], retractions: lag.retractions, chain: undefined });
    expect(decideChain([b], again, H)).toMatchObject({ counted: [b], retractions: [], chain: undefined });
    // Redelivered (at or below A's progress mark): already applied, retraction included.
    expect(decideChain([a], again, H, '100')).toMatchObject({ redelivered: [a], retractions: [] });
  });

  it('also when the older copy does not count itself: the later one was within H of it', () => {
    const x = copy(T - 600, C, '300');
    const s1 = decideChain([x], undefined, H);
    const s2 = decideChain([b], stored(s1.chain!, 1), H); // 1,100 ms after x: counts
    expect(s2.counted).toEqual([b]);
    const lag = decideChain([a], stored(s2.chain!, 2), H); // 600 ms after x, 500 before b
    expect(lag.duplicates).toEqual([a]);
    expect(lag.retractions.map((r) => [r.shard, r.seq, r.arrival])).toEqual([[A, '100~', b.arrival]]);
  });

  it('a copy later than H after the older one keeps its count', () => {
    const far = copy(T + H + 1, B, '200');
    const lag = decideChain([a], stored(decideChain([far], undefined, H).chain!, 1), H);
    expect(lag.counted).toEqual([a]);
    expect(lag.retractions).toEqual([]);
  });

  it('cannot take back a count whose event it does not have (a claim of the batched path): the later copy keeps it', () => {
    const batched: Claim = { shard: B, seq: '200', arrival: T + 500, fromSeq: '200', before: undefined };
    const lag = decideChain([a], batched, H);
    expect(lag.duplicates).toEqual([a]);
    expect(lag.retractions).toEqual([]);
  });
});

describe('copies from outside the stream registered in chains (before id sets) and retractions', () => {
  it('a lagging live copy before a counted outside copy counts; nothing to retract (the speed layer never applied it)', () => {
    // A chain as a backfill registered it before id sets existed: its copy, outside, counted.
    const bf: ChainCopy = { arrival: T + 500, shard: BF, seq: '7', counted: true, outside: true };
    const live = decideChain([copy(T, A, '100')], stored([bf], 1), H);
    expect(live.counted).toHaveLength(1);
    expect(live.retractions).toEqual([]);
    expect(live.chain!.map((c) => [c.shard, c.retractedBy])).toEqual([
      [A, undefined],
      [BF, `${A}|100`],
    ]);
  });
});

describe('a chain copy as stored text', () => {
  it('round-trips every field, an event holding `|` included, and reads the form written before retractions', () => {
    const c: ChainCopy = {
      arrival: T,
      shard: B,
      seq: `${'0'.repeat(63)}7.000002`,
      counted: true,
      retractedBy: `${A}|${'0'.repeat(63)}5`,
      event: { type: 'purchase', ts: 42, fields: { country: 'DE|FR', note: '|e=x', empty: null }, num: { amount: '12.5' } },
    };
    expect(parseChainCopy(chainCopyText(c))).toEqual(c);
    const outside: ChainCopy = { arrival: T, shard: BF, seq: '7', counted: false, outside: true };
    expect(parseChainCopy(chainCopyText(outside))).toEqual(outside);
    expect(parseChainCopy(`${T}|${A}|100|1`)).toEqual({ arrival: T, shard: A, seq: '100', counted: true });
  });
});
