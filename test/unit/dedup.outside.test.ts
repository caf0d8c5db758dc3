/**
 * Copies from outside the stream (a backfill's: functions/speed/outside.ts;
 * docs/batch-layer.md "Backfill", "Duplicates"): the decisions `decide` (ids
 * keyed by id) and `decideChain` (chained claims) take when live copies meet a
 * backfilled copy (arrival T, pseudo-shard), against the dedup rule's oracle.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { padSeq, type RawRecord } from '../../functions/core/record.ts';
import { type ChainCopy, type Claim, decide, decideChain } from '../../functions/speed/dedup.ts';
import type { OutsideCopy } from '../../functions/speed/outside.ts';
import { countedCopies } from '../support/oracle.ts';

const H = 10_000;
const T = 1_000_000;
const BF = 'backfill-0123456789abcdef';
const LIVE = 'shardId-000000000000';
const OTHER = 'shardId-000000000001';

const copy = (arrival: number, seq: number, id = 'e1', shard = LIVE): RawRecord => ({
  id,
  type: 'purchase',
  ts: 0,
  arrival,
  shard,
  seq: padSeq(String(seq)),
  fields: {},
  num: {},
});
const outside = (arrival: number, index = 7, shard = BF): OutsideCopy => ({ arrival, shard, seq: padSeq(String(index)) });
const of = (id: string, ...copies: OutsideCopy[]) => new Map([[id, copies]]);
/** The claim after writing a chain decision. */
const chained = (chain: readonly ChainCopy[], version: number): Claim => {
  const last = chain[chain.length - 1]!;
  return { shard: last.shard, seq: last.seq, arrival: last.arrival, fromSeq: undefined, before: undefined, chain, version };
};

describe('a backfilled copy in the batched path (ids keyed by id)', () => {
  it('a live copy within H after T does not count; more than H after, it does; before T, the copy is not in the way', () => {
    expect(decide([copy(T + H, 100)], new Map(), H, undefined, of('e1', outside(T))).duplicates).toHaveLength(1);
    expect(decide([copy(T + H + 1, 100)], new Map(), H, undefined, of('e1', outside(T))).counted).toHaveLength(1);
    expect(decide([copy(T - 1, 100)], new Map(), H, undefined, of('e1', outside(T))).counted).toHaveLength(1);
    // At equal arrivals the pseudo-shard sorts first, as in the batch.
    expect(decide([copy(T, 100)], new Map(), H, undefined, of('e1', outside(T))).duplicates).toHaveLength(1);
  });

  it('takes the nearer of the claim and the backfilled copy, copy by copy through the batch', () => {
    const claim: Claim = { shard: LIVE, seq: padSeq('50'), arrival: T - 3 * H, fromSeq: padSeq('50'), before: undefined };
    // Copy 100 before T counts (the claim is far); copy 101 after T is within H of T but 2H after copy 100: a duplicate.
    const d = decide([copy(T - 2, 100), copy(T + H - 1, 101)], new Map([['e1', claim]]), H, padSeq('60'), of('e1', outside(T)));
    expect(d.counted.map((r) => r.seq)).toEqual([padSeq('100')]);
    expect(d.duplicates.map((r) => r.seq)).toEqual([padSeq('101')]);
    // A claim nearer than the backfilled copy decides.
    const near: Claim = { ...claim, arrival: T + 5 };
    expect(decide([copy(T + H + 1, 100)], new Map([['e1', near]]), H, padSeq('60'), of('e1', outside(T))).duplicates).toHaveLength(1);
  });

  it('a retry of an attempt that wrote its claim reaches the same decision (the claim remembers the copy before)', () => {
    const first = decide([copy(T + 5, 100), copy(T + H + 20, 101)], new Map(), H, undefined, of('e1', outside(T)));
    expect(first.duplicates.map((r) => r.seq)).toEqual([padSeq('100')]);
    expect(first.newClaims[0]).toMatchObject({ fromSeq: padSeq('100'), before: T });
    const claims = new Map(first.newClaims.map((c) => [c.id, c as Claim]));
    const retry = decide([copy(T + 5, 100)], claims, H, undefined, of('e1', outside(T)));
    expect(retry.duplicates.map((r) => r.seq)).toEqual([padSeq('100')]);
  });
});

describe('a backfilled copy in a chained claim (ids keyed otherwise)', () => {
  it('is placed in the chain where the rule puts it, kept once written, and never retracted from', () => {
    const live = decideChain([copy(T + 500, 200, 'e1', OTHER)], undefined, H, undefined, [outside(T)]);
    expect(live.duplicates).toHaveLength(1);
    expect(live.chain!.map((c) => [c.shard, c.counted, c.outside ?? false])).toEqual([
      [BF, true, true],
      [OTHER, false, false],
    ]);
    // A lagging live copy before T (on another shard) counts, takes the backfilled copy's count, and retracts nothing.
    const lag = decideChain([copy(T - 100, 100)], chained(live.chain!, 1), H);
    expect(lag.counted).toHaveLength(1);
    expect(lag.retractions).toEqual([]);
    expect(lag.chain!.map((c) => [c.shard, c.retractedBy])).toEqual([
      [LIVE, undefined],
      [BF, `${LIVE}|${padSeq('100')}`],
      [OTHER, undefined],
    ]);
  });

  it('given the copy again (the next batch), adds nothing for it; alone it writes nothing', () => {
    const d = decideChain([copy(T + 500, 200)], undefined, H, undefined, [outside(T)]);
    const again = decideChain([copy(T + 500, 200)], chained(d.chain!, 1), H, padSeq('100'), [outside(T)]);
    expect(again.redelivered).toHaveLength(0);
    expect(again.chain).toBeUndefined();
    expect(again.duplicates).toHaveLength(1);
    expect(decideChain([], undefined, H, undefined, [outside(T)]).chain).toBeUndefined();
  });
});

describe('the rule over live and backfilled copies, under any schedule of batches, crashes and retries', () => {
  /**
   * One shard's copies of a few ids, and backfills (each with its T and some of the ids).
   * Batches run in order with crashes after some claims and retries, as in the speed layer;
   * each batch gets, per id, the backfilled copies a copy of the batch arrived within [T, T + H]
   * of, as outside.ts gives them. Every live copy must be decided as the oracle decides it over
   * all copies, live and backfilled together.
   */
  const scenario = fc.record({
    live: fc.array(fc.record({ id: fc.constantFrom('a', 'b', 'c'), gap: fc.constantFrom(0, 1, H - 1, H, H + 1, 2 * H, 3) }), {
      minLength: 1,
      maxLength: 30,
    }),
    backfills: fc.array(fc.record({ at: fc.nat(40 * H), exact: fc.boolean(), ids: fc.subarray(['a', 'b', 'c'], { minLength: 1 }) }), {
      maxLength: 3,
    }),
    steps: fc.array(fc.record({ len: fc.integer({ min: 1, max: 8 }), crash: fc.nat(3), written: fc.nat(), chained: fc.boolean() }), {
      maxLength: 40,
    }),
  });

  it('decides every live copy as the oracle does', () => {
    fc.assert(
      fc.property(scenario, ({ live, backfills, steps }) => {
        let t = 1000;
        const records = live.map((r, i) => {
          t += r.gap;
          return copy(t, i + 1, r.id);
        });
        // A backfill's T: anywhere, or exactly at a live copy's arrival (ties).
        const sources = backfills.map((b, k) => ({
          shard: `${BF.slice(0, -1)}${k}`,
          arrival: b.exact ? records[b.at % records.length]!.arrival : 1000 + b.at,
          ids: new Set(b.ids),
        }));
        const outsideRecords = sources.flatMap((s) => [...s.ids].map((id, i) => ({ ...copy(s.arrival, i, id, s.shard) })));
        const want = new Set(countedCopies([...records, ...outsideRecords], H));
        const outsideOf = (batch: readonly RawRecord[]) => {
          const m = new Map<string, OutsideCopy[]>();
          for (const s of sources)
            for (const id of s.ids)
              if (batch.some((r) => r.id === id && r.arrival >= s.arrival && r.arrival - s.arrival <= H)) {
                const o = outsideRecords.find((x) => x.shard === s.shard && x.id === id)!;
                m.set(id, [...(m.get(id) ?? []), { arrival: o.arrival, shard: o.shard, seq: o.seq }]);
              }
          return m;
        };
        const claims = new Map<string, Claim>();
        let done = 0;
        let failedAt: number | undefined;
        // Which path an id takes is fixed per run (a chained claim stays chained).
        const chainedIds = new Set(steps[0]?.chained ? ['a', 'b'] : []);
        for (let i = 0; done < records.length; i++) {
          const step = steps[i] ?? { len: 8, crash: 0, written: 0, chained: false };
          const start = failedAt ?? done;
          const batch = records.slice(start, Math.min(records.length, start + step.len));
          const progress = done > 0 ? records[done - 1]!.seq : undefined;
          const o = outsideOf(batch);
          const plain = decide(
            batch.filter((r) => !chainedIds.has(r.id)),
            claims,
            H,
            progress,
            o,
          );
          const decided = [...plain.counted.map((r) => [r, true] as const), ...plain.duplicates.map((r) => [r, false] as const)];
          const writes: Claim[] = [...plain.newClaims];
          for (const id of chainedIds) {
            const own = batch.filter((r) => r.id === id);
            if (own.length === 0) continue;
            const d = decideChain(own, claims.get(id), H, progress, o.get(id));
            decided.push(...d.counted.map((r) => [r, true] as const), ...d.duplicates.map((r) => [r, false] as const));
            if (d.chain) writes.push({ ...chained(d.chain, (claims.get(id)?.version ?? 0) + 1), id } as Claim);
          }
          for (const [r, counted] of decided) expect(want.has(r), `${r.id} ${r.seq} at ${r.arrival}`).toBe(counted);
          const crashed = step.crash === 1 && i < 30;
          const kept = crashed ? writes.filter((_, k) => (step.written >> k) & 1) : writes;
          for (const c of kept) claims.set((c as Claim & { id: string }).id, c);
          if (crashed) failedAt = start;
          else {
            failedAt = undefined;
            done = Math.max(done, start + batch.length);
          }
        }
      }),
      { numRuns: 500 },
    );
  });
});
