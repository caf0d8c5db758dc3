/**
 * The test oracle of the dedup rule (test/support/oracle.ts `countedCopies`),
 * checked on hand-made cases: every property test of the SQL and of both
 * layers trusts it.
 */
import { describe, expect, it } from 'vitest';
import { countedCopies } from '../support/oracle.ts';

const MINUTE = 60_000;
const H = 5 * MINUTE;
const T0 = Date.UTC(2024, 4, 1, 10, 0);
const S0 = 'shardId-000000000000';
const S1 = 'shardId-000000000001';

let seqNo = 1000;
const copy = (id: string, minutes: number, extra: { shard?: string; seq?: string; tag?: string } = {}) => ({
  id,
  arrival: T0 + minutes * MINUTE,
  shard: extra.shard ?? S0,
  seq: extra.seq ?? String(seqNo++),
  tag: extra.tag ?? `${id}@${minutes}`,
});
const tags = (copies: readonly { tag: string }[]) => copies.map((c) => c.tag);

describe('countedCopies: the dedup rule with a horizon', () => {
  it('counts the first copy of each id; a copy within H of the previous one does not count', () => {
    const copies = [copy('a', 0), copy('b', 1), copy('a', 2), copy('b', 1 + 5)];
    // b's second copy is exactly H after the first: within H (<= H), not counted.
    expect(tags(countedCopies(copies, H))).toEqual(['a@0', 'b@1']);
  });

  it('a copy more than H after the previous copy counts again', () => {
    const copies = [copy('a', 0), { ...copy('a', 5), arrival: T0 + H + 1, tag: 'a@H+1ms' }, copy('a', 30)];
    expect(tags(countedCopies(copies, H))).toEqual(['a@0', 'a@H+1ms', 'a@30']);
  });

  it('a chain of copies each within H of the previous counts once, however long it spans', () => {
    const copies = [0, 4, 8, 12, 16, 20].map((m) => copy('a', m));
    expect(tags(countedCopies(copies, H))).toEqual(['a@0']);
    // A gap of more than H anywhere in the chain starts a new count.
    expect(tags(countedCopies([...copies, copy('a', 26), copy('a', 28)], H))).toEqual(['a@0', 'a@26']);
  });

  it('orders equal arrivals by sequence number (numerically, padded or not), whatever the input order', () => {
    const late = copy('a', 0, { seq: '900', tag: 'seq 900' });
    const early = copy('a', 0, { seq: '0000000000000000000000000000000000000000000000000000000000000090', tag: 'seq 90' });
    expect(tags(countedCopies([late, early], H))).toEqual(['seq 90']);
    expect(tags(countedCopies([early, late], H))).toEqual(['seq 90']);
    // 56-digit sequence numbers are compared exactly, not as doubles.
    const big = '4963' + '0'.repeat(50);
    const x = copy('b', 0, { seq: `${big}1`, tag: 'x' });
    const y = copy('b', 0, { seq: `${big}0`, tag: 'y' });
    expect(tags(countedCopies([x, y], H))).toEqual(['y']);
  });

  it('orders equal arrivals on different shards by shard, then sequence number', () => {
    const a1 = copy('a', 0, { shard: S1, seq: '1', tag: 'shard 1' });
    const a0 = copy('a', 0, { shard: S0, seq: '2', tag: 'shard 0' });
    expect(tags(countedCopies([a1, a0], H))).toEqual(['shard 0']);
  });

  it('is independent of the input order and of other ids; H = 0 drops only same-millisecond copies', () => {
    const copies = [copy('a', 0), copy('b', 0), copy('a', 3), copy('b', 10), copy('a', 9), copy('a', 9)];
    const counted = tags(countedCopies(copies, H));
    expect(counted).toEqual(['a@0', 'b@0', 'a@9', 'b@10']);
    expect(tags(countedCopies([...copies].reverse(), H))).toEqual(counted);
    expect(tags(countedCopies(copies, 0))).toEqual(['a@0', 'b@0', 'a@3', 'a@9', 'b@10']);
    expect(countedCopies([], H)).toEqual([]);
  });
});
