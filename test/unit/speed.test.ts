/** Pure parts of the speed layer: dedup decisions, update building, the item cache, the event parser, mapLimit. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KinesisEventError, toStreamRecords } from '../../functions/adapters/kinesis-event.ts';
import { kinesisRecordFactory, kinesisSource } from '../../functions/adapters/kinesis-records.ts';
import { normalize } from '../../functions/adapters/poison.ts';
import { batchAgeMs } from '../../functions/adapters/shards.ts';
import type { CellDelta } from '../../functions/core/aggregate.ts';
import { Decimal } from '../../functions/core/decimal.ts';
import { mapLimit } from '../../functions/core/limit.ts';
import { padSeq, type RawRecord } from '../../functions/core/record.ts';
import { count, max, min, sum, view } from '../../functions/core/views.ts';
import { buildUpdate, groupByItem, ItemCache, knowledge } from '../../functions/speed/apply.ts';
import { CHAIN_MAX, type ChainCopy, type Claim, decide, decideChain } from '../../functions/speed/dedup.ts';
import { countedCopies } from '../support/oracle.ts';

const rec = (id: string, shard: string, seq: number, arrival = 0): RawRecord => ({
  id,
  type: 't',
  ts: 0,
  arrival,
  shard,
  seq: padSeq(String(seq)),
  fields: {},
  num: {},
});

describe('dedup decisions (the dedup rule with a horizon)', () => {
  const H = 10;
  const S = 'shard-1';
  /** The pure decision over one batch with no stored claim and no progress: which seqs count. */
  const countedSeqs = (records: RawRecord[], claims = new Map<string, Claim>(), progress?: string) =>
    decide(records, claims, H, progress).counted.map((r) => Number(r.seq));

  it('counts a copy when no copy of its id arrived within H before it, comparing arrivals exactly in ms', () => {
    // inside H (5 ms after), at H exactly (within), beyond H (H + 1 ms)
    expect(countedSeqs([rec('a', S, 1, 100), rec('a', S, 2, 105)])).toEqual([1]);
    expect(countedSeqs([rec('a', S, 1, 100), rec('a', S, 2, 110)])).toEqual([1]);
    expect(countedSeqs([rec('a', S, 1, 100), rec('a', S, 2, 111)])).toEqual([1, 2]);
    // a chain, each copy within H of the previous one: only the first counts, however long the chain
    expect(countedSeqs([1, 2, 3, 4, 5].map((i) => rec('a', S, i, 100 + 9 * i)))).toEqual([1]);
    // beyond H of the counted copy but within H of an uncounted one: does not count
    expect(countedSeqs([rec('a', S, 1, 100), rec('a', S, 2, 108), rec('a', S, 3, 115)])).toEqual([1]);
    // ... and the next copy beyond H of that one counts again
    expect(countedSeqs([rec('a', S, 1, 100), rec('a', S, 2, 108), rec('a', S, 3, 115), rec('a', S, 4, 126)])).toEqual([1, 4]);
  });

  it('orders the copies of an id by (arrival, seq) and counts a batch holding the very same record twice once', () => {
    expect(countedSeqs([rec('a', S, 2, 100), rec('a', S, 1, 100)])).toEqual([1]);
    const r = rec('a', S, 5, 100);
    const got = decide([r, { ...r }], new Map(), H);
    expect(got.counted).toHaveLength(1);
    expect(got.duplicates).toHaveLength(1);
  });

  it("compares a batch's first copy with the claim's latest copy, and the claim remembers the latest copy", () => {
    const claim: Claim = { shard: S, seq: padSeq('3'), arrival: 100, fromSeq: padSeq('1'), before: undefined };
    const claims = new Map([['a', claim]]);
    const progress = padSeq('3');
    expect(countedSeqs([rec('a', S, 7, 110)], claims, progress)).toEqual([]);
    expect(countedSeqs([rec('a', S, 7, 111)], claims, progress)).toEqual([7]);
    // a duplicate refreshes the claim: its arrival is the one the next copy is compared with
    const d = decide([rec('a', S, 7, 105), rec('b', S, 8, 106)], claims, H, progress);
    expect(d.duplicates.map((r) => r.id)).toEqual(['a']);
    expect(d.newClaims).toEqual([
      { id: 'a', shard: S, seq: padSeq('7'), arrival: 105, fromSeq: padSeq('7'), before: 100 },
      { id: 'b', shard: S, seq: padSeq('8'), arrival: 106, fromSeq: padSeq('8'), before: undefined },
    ]);
    // a claim from another (parent) shard, or from before the rule: its latest copy
    expect(countedSeqs([rec('a', 'shard-2', 1, 110)], claims)).toEqual([]);
    expect(countedSeqs([rec('a', S, 9, 111)], new Map([['a', { ...claim, fromSeq: undefined }]]), undefined)).toEqual([9]);
  });

  it('replays an attempt that wrote its claims but did not complete from the state before it', () => {
    // The attempt added copies 5 (arrival 120) and 6 (125) after a copy that arrived at 100: 5 counted, 6 did not.
    const claims = new Map([['a', { shard: S, seq: padSeq('6'), arrival: 125, fromSeq: padSeq('5'), before: 100 } satisfies Claim]]);
    const progress = padSeq('4');
    expect(countedSeqs([rec('a', S, 5, 120), rec('a', S, 6, 125)], claims, progress)).toEqual([5]);
    // a shorter retry: the same decision, and the claim falls back to what it completed
    const shorter = decide([rec('a', S, 5, 120)], claims, H, progress);
    expect(shorter.counted.map((r) => r.seq)).toEqual([padSeq('5')]);
    expect(shorter.newClaims).toEqual([{ id: 'a', shard: S, seq: padSeq('5'), arrival: 120, fromSeq: padSeq('5'), before: 100 }]);
    // an identical retry writes nothing
    expect(decide([rec('a', S, 5, 120), rec('a', S, 6, 125)], claims, H, progress).newClaims).toEqual([]);
    // records at or below the progress mark are redelivered: neither counted nor claimed again
    const again = decide([rec('a', S, 3, 100), rec('a', S, 5, 120)], claims, H, padSeq('4'));
    expect(again.redelivered.map((r) => r.seq)).toEqual([padSeq('3')]);
    expect(again.counted.map((r) => r.seq)).toEqual([padSeq('5')]);
  });

  it(
    'decides every record as the rule does over the whole shard, ' +
      'under any schedule of crashes after the claims, retries and redeliveries',
    () => {
      const recordsArb = fc
        .array(fc.record({ id: fc.constantFrom('a', 'b', 'c'), gap: fc.constantFrom(0, 1, H - 1, H, H + 1, 2 * H, 3) }), {
          minLength: 1,
          maxLength: 30,
        })
        .map((rs) => {
          let t = 1000;
          return rs.map((r, i) => {
            t += r.gap;
            return rec(r.id, S, i + 1, t);
          });
        });
      const stepArb = fc.record({ len: fc.integer({ min: 1, max: 8 }), crash: fc.nat(3), written: fc.nat(), back: fc.option(fc.nat(10)) });
      fc.assert(
        fc.property(recordsArb, fc.array(stepArb, { maxLength: 40 }), (records, steps) => {
          const want = new Set(countedCopies(records, H));
          const claims = new Map<string, Claim>();
          let done = 0; // records [0, done) belong to completed batches: the progress mark is records[done - 1]
          let failedAt: number | undefined; // the first record of a batch that failed (retried from there)
          for (let i = 0; done < records.length; i++) {
            const step = steps[i] ?? { len: 8, crash: 0, written: 0, back: null };
            const start = failedAt ?? (step.back !== null ? Math.max(0, done - step.back) : done);
            const batch = records.slice(start, Math.min(records.length, start + step.len));
            const progress = done > 0 ? records[done - 1]!.seq : undefined;
            const d = decide(batch, claims, H, progress);
            for (const r of d.counted) expect(want.has(r), `record ${r.seq} counted`).toBe(true);
            for (const r of d.duplicates) expect(want.has(r), `record ${r.seq} dropped`).toBe(false);
            for (const r of d.redelivered) expect(r.seq <= (progress ?? '')).toBe(true);
            expect(d.counted.length + d.duplicates.length + d.redelivered.length).toBe(batch.length);
            // A crash while the claims are written leaves some of them; one after leaves all.
            const crashed = step.crash === 1 && i < 30;
            const kept = crashed ? d.newClaims.filter((_, k) => (step.written >> k) & 1) : d.newClaims;
            for (const c of kept) claims.set(c.id, c);
            if (crashed) failedAt = start;
            else {
              failedAt = undefined;
              done = Math.max(done, start + batch.length);
            }
          }
        }),
        { numRuns: 500 },
      );
    },
  );
});

describe('the conditional update of a speed item', () => {
  const v = view({
    name: 'orders',
    dimensions: ['country'],
    grain: 'minute',
    metrics: { n: count(), total: sum('amount'), lo: min('amount'), hi: max('amount') },
  });
  const HOUR = 3_600_000;
  const key = { view: 'orders', window: 2 * HOUR + 60_000, slot: HOUR, part: 1, shard: 'shard-1' };
  const cell = (bucket: number, country: string, first: string, last: string): CellDelta => ({
    view: 'orders',
    dims: [country],
    bucket,
    window: key.window,
    shard: 'shard-1',
    state: {
      n: { count: new Decimal(2) },
      total: { sum: new Decimal('10.000000001') },
      lo: { min: new Decimal(3) },
      hi: { max: new Decimal('7.000000001') },
    },
    records: 2,
    firstSeq: padSeq(first),
    lastSeq: padSeq(last),
  });
  const cells = [cell(HOUR + 5 * 60_000, 'DE', '10', '20'), cell(HOUR + 59 * 60_000, 'FR', '12', '30')];
  const nameOf = (u: ReturnType<typeof buildUpdate>, n: string) => Object.entries(u.ExpressionAttributeNames).find(([, x]) => x === n)?.[0];

  it("adds every cell's counts and sums, sets hw, min and max under the hw and min/max conditions for an unknown item", () => {
    const u = buildUpdate(v, key, cells, 99);
    expect(u.UpdateExpression).toMatch(/^ADD .* SET #hw = :last, /);
    expect(u.ConditionExpression).toContain('(attribute_not_exists(#hw) OR #hw < :first)');
    for (const [minute, country] of [
      [5, 'DE'],
      [59, 'FR'],
    ] as const) {
      const lo = nameOf(u, `${minute}|["${country}"]|lo__min`);
      const hi = nameOf(u, `${minute}|["${country}"]|hi__max`);
      expect(u.ConditionExpression).toContain(`(attribute_not_exists(${lo}) OR ${lo} > `);
      expect(u.ConditionExpression).toContain(`(attribute_not_exists(${hi}) OR ${hi} < `);
      expect(u.UpdateExpression).toContain(`${nameOf(u, `${minute}|["${country}"]|records`)} `);
    }
    expect(Object.values(u.ExpressionAttributeValues)).toContainEqual({ N: '10.000000001' });
    // The run spans both cells: first of the first, last of the last.
    expect(u.ExpressionAttributeValues[':first']).toEqual({ S: padSeq('10') });
    expect(u.ExpressionAttributeValues[':last']).toEqual({ S: padSeq('30') });
    expect(Object.values(u.ExpressionAttributeNames)).toEqual(
      expect.arrayContaining(['view', 'window', 'slot', 'part', 'shard', 'expiresAt']),
    );
  });

  it('leaves out a min or max the known item already beats, and the constant attributes of a known item', () => {
    const u = buildUpdate(v, key, cells.slice(0, 1), 99, {
      exists: true,
      hw: padSeq('5'),
      extremes: { '5|["DE"]|lo__min': '1', '5|["DE"]|hi__max': '7' },
    });
    const names = Object.values(u.ExpressionAttributeNames);
    expect(names).not.toContain('5|["DE"]|lo__min');
    expect(names).toContain('5|["DE"]|hi__max');
    expect(names).not.toContain('view');
    expect(u.ConditionExpression.startsWith('#hw < :first')).toBe(true);
  });

  it('never lets a generated placeholder spell a fixed one, however many cells (a bare base-36 counter reaches #hw at 644)', () => {
    const many = Array.from({ length: 600 }, (_, i) =>
      cell(HOUR + (i % 60) * 60_000, `C${Math.floor(i / 60)}`, String(10 + i), String(10 + i)),
    );
    const u = buildUpdate(v, key, many, 99);
    expect(u.ExpressionAttributeNames['#hw']).toBe('hw');
    expect(u.ExpressionAttributeValues[':first']).toEqual({ S: padSeq('10') });
    const names = Object.values(u.ExpressionAttributeNames);
    expect(new Set(names).size).toBe(names.length);
    expect(names.length).toBeGreaterThan(644);
  });

  it('refuses a cell of another item', () => {
    expect(() => buildUpdate(v, key, [cell(2 * HOUR, 'DE', '1', '2')], 99)).toThrow(/not in item/);
  });

  it("learns hw and the cells' min/max from an item", () => {
    expect(
      knowledge({ hw: { S: padSeq('7') }, '5|["DE"]|lo__min': { N: '1' }, '5|["DE"]|n__count': { N: '4' }, slot: { N: String(HOUR) } }),
    ).toEqual({
      exists: true,
      hw: padSeq('7'),
      extremes: { '5|["DE"]|lo__min': '1' },
    });
    expect(knowledge(undefined)).toEqual({ exists: false, hw: undefined, extremes: {} });
  });

  it('groups counted records by item (view, window, event hour, shard), each group in sequence order', () => {
    const at = (ts: number, seq: number, country: string): RawRecord => ({
      ...rec(`id${seq}`, 'shard-1', seq),
      ts,
      arrival: key.window + 1,
      fields: { country },
    });
    const records = [at(HOUR + 60_000, 9, 'DE'), at(HOUR + 120_000, 3, 'FR'), at(3 * HOUR, 5, 'DE'), at(HOUR, 4, 'DE')];
    const groups = groupByItem([v], records, 60_000);
    expect(groups.map((g) => [g.key, g.records.map((r) => Number(r.seq))])).toEqual([
      [key, [3, 4, 9]],
      [{ ...key, slot: 3 * HOUR }, [5]],
    ]);
    // The hour of the window is one part; a late hour's records split by 10-second arrival spans.
    const now = (ts: number, seq: number, arrival: number): RawRecord => ({ ...at(ts, seq, 'DE'), arrival });
    const split = groupByItem(
      [v],
      [now(2 * HOUR + 5, 20, key.window + 15_000), now(HOUR, 21, key.window + 15_000), now(HOUR, 22, key.window + 25_000)],
      60_000,
    );
    expect(split.map((g) => [g.key.slot, g.key.part, g.records.length])).toEqual([
      [2 * HOUR, 0, 1],
      [HOUR, 2, 1],
      [HOUR, 3, 1],
    ]);
  });
});

describe('ItemCache', () => {
  it('evicts the least recently used item', () => {
    const c = new ItemCache(2);
    const k = { exists: true, hw: '1', extremes: {} };
    c.set('a', k);
    c.set('b', k);
    c.get('a');
    c.set('c', k);
    expect([c.get('a'), c.get('b'), c.get('c')].map(Boolean)).toEqual([true, false, true]);
  });
});

describe('the Kinesis event', () => {
  const source = kinesisSource({ account: '1', region: 'us-east-1', stream: 's', role: 'r' });
  const record = (data: string) =>
    kinesisRecordFactory({ shard: 'shardId-000000000003', seq: '4959', arrival: 1_607_497_475_123, data }, source);

  it('takes the shard from eventID, the arrival in whole ms, and the decoded bytes', () => {
    const [r] = toStreamRecords({ Records: [record(Buffer.from('{"a":1}').toString('base64'))] });
    expect(r).toMatchObject({ shard: 'shardId-000000000003', seq: '4959', arrival: 1_607_497_475_123 });
    expect(Buffer.from(r!.data).toString()).toBe('{"a":1}');
  });

  it('names the field of a malformed envelope', () => {
    expect(() => toStreamRecords({ Records: [{ ...record('e30='), eventSource: 'aws:sqs' }] })).toThrow(KinesisEventError);
    expect(() => toStreamRecords({ Records: [] })).toThrow(/Records/);
  });

  it('turns undecodable or invalid data into poison naming the field, not into a failed batch', () => {
    const at = (data: string) => normalize({ shard: 's', seq: '7', arrival: 1, data: Buffer.from(data) });
    expect(at('{"id":')).toMatchObject({ ok: false, poison: { field: 'data', seq: padSeq('7') } });
    expect(at('[1]')).toMatchObject({ ok: false, poison: { field: 'event' } });
    expect(at('{"id":"a","type":"t"}')).toMatchObject({ ok: false, poison: { field: 'ts' } });
    expect(at('{"id":"a","type":"t","ts":1700000000000}')).toMatchObject({ ok: true });
  });
});

describe('mapLimit', () => {
  it('keeps at most `limit` calls in flight and returns results in order', async () => {
    let inFlight = 0;
    let most = 0;
    const out = await mapLimit([5, 1, 4, 2, 3, 0], 2, async (x) => {
      most = Math.max(most, ++inFlight);
      await new Promise((r) => setTimeout(r, x));
      inFlight--;
      return x * 10;
    });
    expect(out).toEqual([50, 10, 40, 20, 30, 0]);
    expect(most).toBe(2);
  });

  it('starts nothing after a failure and settles only when the calls in flight have', async () => {
    const started: number[] = [];
    let finished = 0;
    const run = mapLimit([0, 1, 2, 3, 4, 5], 2, async (i) => {
      started.push(i);
      if (i === 1) throw new Error('boom');
      await new Promise((r) => setTimeout(r, 20));
      finished++;
    });
    await expect(run).rejects.toThrow('boom');
    expect(started).toEqual([0, 1]);
    expect(finished).toBe(1);
  });
});

describe('batch age (the BatchAge metric of both consumers)', () => {
  it('is the age of the oldest record, never negative, 0 for an empty batch', () => {
    const at = (arrival: number) => ({ arrival });
    expect(batchAgeMs([at(5_000), at(2_000), at(9_000)], 10_000)).toBe(8_000);
    expect(batchAgeMs([at(12_000)], 10_000)).toBe(0);
    expect(batchAgeMs([], 10_000)).toBe(0);
    expect(
      batchAgeMs(
        Array.from({ length: 200_000 }, (_, i) => at(i + 1)),
        300_000,
      ),
    ).toBe(299_999);
  });
});

describe('chained claims (ids keyed otherwise than by their id)', () => {
  const H = 10;
  const claimOf = (chain: ChainCopy[]): Claim => {
    const last = chain[chain.length - 1]!;
    return { shard: last.shard, seq: last.seq, arrival: last.arrival, fromSeq: undefined, before: undefined, chain, version: 1 };
  };
  const copy = (r: RawRecord, counted: boolean): ChainCopy => ({ arrival: r.arrival, shard: r.shard, seq: r.seq, counted });

  it('decides copies on other shards in (arrival, shard, seq) order, as the rule over all shards', () => {
    const a1 = rec('a', 'shard-0', 1, 100);
    const b1 = rec('a', 'shard-1', 1, 105);
    const b2 = rec('a', 'shard-1', 2, 111);
    // shard-0 claimed a1 first; shard-1 then decides its copies against it
    const first = decideChain([a1], undefined, H);
    expect(first.counted).toEqual([a1]);
    const second = decideChain([b1, b2], claimOf(first.chain!), H);
    expect(second.counted).toEqual([]);
    expect(second.duplicates).toEqual([b1, b2]);
    // a tie on arrival goes to the lower shard id
    const tie = decideChain([rec('a', 'shard-0', 9, 200)], claimOf([copy(rec('a', 'shard-1', 9, 200), false)]), H);
    expect(tie.chain!.map((c) => c.shard)).toEqual(['shard-0', 'shard-1']);
    // beyond H of the latest copy: counts again
    expect(decideChain([rec('a', 'shard-1', 3, 200)], claimOf(second.chain!), H).counted).toHaveLength(1);
  });

  it('keeps a decision once taken: a retry finds its copies in the chain, a redelivery is skipped, nothing is written again', () => {
    const a1 = rec('a', 'shard-0', 1, 100);
    const b1 = rec('a', 'shard-1', 1, 200);
    const claimed = decideChain([a1], undefined, H).chain!;
    // another shard added a later copy after this attempt failed; the retry reaches the same decision
    const later = decideChain([b1], claimOf(claimed), H).chain!;
    const retry = decideChain([a1], claimOf(later), H);
    expect(retry.counted).toEqual([a1]);
    expect(retry.chain).toBeUndefined();
    const redelivered = decideChain([a1], claimOf(later), H, a1.seq);
    expect(redelivered.redelivered).toEqual([a1]);
  });

  it('does not count a copy twice when a lagging shard brings an earlier copy after a later one counted', () => {
    const late = rec('a', 'shard-0', 1, 100);
    const counted = rec('a', 'shard-1', 1, 105);
    const d = decideChain([late], claimOf([copy(counted, true)]), H);
    expect(d.counted).toEqual([]);
    // more than H before it: both count, as the rule says
    expect(decideChain([rec('a', 'shard-0', 1, 90)], claimOf([copy(counted, true)]), H).counted).toHaveLength(1);
  });

  it('keeps the latest CHAIN_MAX copies', () => {
    const copies = Array.from({ length: CHAIN_MAX + 5 }, (_, i) => rec('a', 'shard-0', i + 1, 100 + i));
    expect(decideChain(copies, undefined, H).chain).toHaveLength(CHAIN_MAX);
  });

  it('takes a claim of the batched path as its latest copy, counted', () => {
    const batched: Claim = { shard: 'shard-1', seq: padSeq('4'), arrival: 100, fromSeq: padSeq('4'), before: undefined };
    expect(decideChain([rec('a', 'shard-0', 1, 105)], batched, H).duplicates).toHaveLength(1);
    expect(decideChain([rec('a', 'shard-0', 1, 111)], batched, H).counted).toHaveLength(1);
  });
});
