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
import { type Claim, decide } from '../../functions/speed/dedup.ts';

const rec = (id: string, shard: string, seq: number): RawRecord => ({
  id,
  type: 't',
  ts: 0,
  arrival: 0,
  shard,
  seq: padSeq(String(seq)),
  fields: {},
  num: {},
});

describe('dedup decisions', () => {
  it('counts the claimed copy, or else the lowest sequence number, exactly once per id', () => {
    const recordsArb = fc
      .uniqueArray(fc.record({ id: fc.constantFrom('a', 'b', 'c', 'd'), seq: fc.integer({ min: 1, max: 60 }) }), {
        selector: (r) => r.seq,
        maxLength: 20,
      })
      .map((rs) => rs.sort((x, y) => x.seq - y.seq).map((r) => rec(r.id, 'shard-1', r.seq)));
    const claimArb = fc.dictionary(
      fc.constantFrom('a', 'b', 'c', 'd'),
      fc.record({ shard: fc.constantFrom('shard-1', 'shard-0'), seq: fc.integer({ min: 1, max: 60 }) }),
    );
    fc.assert(
      fc.property(recordsArb, claimArb, (records, rawClaims) => {
        const claims = new Map<string, Claim>(
          Object.entries(rawClaims).map(([id, c]) => [id, { shard: c.shard, seq: padSeq(String(c.seq)), expiresAt: 1 }]),
        );
        const got = decide(records, claims);
        // Oracle, per id.
        const wantCounted: RawRecord[] = [];
        const wantNew: RawRecord[] = [];
        for (const id of new Set(records.map((r) => r.id))) {
          const copies = records.filter((r) => r.id === id);
          const claim = claims.get(id);
          if (claim) {
            const own = copies.find((r) => r.shard === claim.shard && r.seq === claim.seq);
            if (own) wantCounted.push(own);
          } else {
            const lowest = copies.reduce((a, b) => (BigInt(b.seq) < BigInt(a.seq) ? b : a));
            wantCounted.push(lowest);
            wantNew.push(lowest);
          }
        }
        const bySeq = (a: RawRecord, b: RawRecord) => (a.seq < b.seq ? -1 : 1);
        expect([...got.counted].sort(bySeq)).toEqual(wantCounted.sort(bySeq));
        expect([...got.newClaims].sort(bySeq)).toEqual(wantNew.sort(bySeq));
        expect(got.counted.length + got.duplicates.length).toBe(records.length);
      }),
      { numRuns: 300 },
    );
  });

  it('counts an id once even when a batch holds the very same record twice', () => {
    const r = rec('a', 's', 5);
    const got = decide([r, { ...r }], new Map([['a', { shard: 's', seq: r.seq, expiresAt: 1 }]]));
    expect(got.counted).toHaveLength(1);
    expect(got.duplicates).toHaveLength(1);
  });
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
