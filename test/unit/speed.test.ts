/** Pure parts of the speed layer: dedup decisions, update building, the item cache, the event parser, mapLimit. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Delta } from '../../functions/core/aggregate.ts';
import { Decimal } from '../../functions/core/decimal.ts';
import { padSeq, type RawRecord } from '../../functions/core/record.ts';
import { count, max, min, sum, view } from '../../functions/core/views.ts';
import { SpeedEventError, toStreamRecords } from '../../functions/speed.ts';
import { buildUpdate, ItemCache } from '../../functions/speed/apply.ts';
import { type Claim, decide } from '../../functions/speed/dedup.ts';
import { mapLimit } from '../../functions/core/limit.ts';
import { normalize } from '../../functions/speed/process.ts';

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
      .uniqueArray(fc.record({ id: fc.constantFrom('a', 'b', 'c', 'd'), seq: fc.integer({ min: 1, max: 60 }) }), { selector: (r) => r.seq, maxLength: 20 })
      .map((rs) => rs.sort((x, y) => x.seq - y.seq).map((r) => rec(r.id, 'shard-1', r.seq)));
    const claimArb = fc.dictionary(
      fc.constantFrom('a', 'b', 'c', 'd'),
      fc.record({ shard: fc.constantFrom('shard-1', 'shard-0'), seq: fc.integer({ min: 1, max: 60 }) }),
    );
    fc.assert(
      fc.property(recordsArb, claimArb, (records, rawClaims) => {
        const claims = new Map<string, Claim>(Object.entries(rawClaims).map(([id, c]) => [id, { shard: c.shard, seq: padSeq(String(c.seq)), expiresAt: 1 }]));
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

describe('the conditional update of a delta', () => {
  const v = view({ name: 'orders', dimensions: ['country'], grain: 'hour', metrics: { n: count(), total: sum('amount'), lo: min('amount'), hi: max('amount') } });
  const delta: Delta = {
    view: 'orders',
    dims: ['DE'],
    bucket: 3_600_000,
    window: 3_660_000,
    shard: 'shard-1',
    state: { n: { count: new Decimal(2) }, total: { sum: new Decimal('10.000000001') }, lo: { min: new Decimal(3) }, hi: { max: new Decimal('7.000000001') } },
    records: 2,
    firstSeq: padSeq('10'),
    lastSeq: padSeq('20'),
  };

  it('adds counts and sums, sets hw, min and max under the hw and min/max conditions for an unknown item', () => {
    const u = buildUpdate(v, delta, 'pk', 'sk', 99);
    const name = (n: string) => Object.entries(u.ExpressionAttributeNames).find(([, x]) => x === n)?.[0];
    expect(u.UpdateExpression).toMatch(/^ADD .* SET #hw = :last, /);
    expect(u.ConditionExpression).toContain('(attribute_not_exists(#hw) OR #hw < :first)');
    expect(u.ConditionExpression).toContain(`(attribute_not_exists(${name('lo__min')}) OR ${name('lo__min')} > `);
    expect(u.ConditionExpression).toContain(`(attribute_not_exists(${name('hi__max')}) OR ${name('hi__max')} < `);
    expect(Object.values(u.ExpressionAttributeValues)).toContainEqual({ N: '10.000000001' });
    expect(u.ExpressionAttributeValues[':first']).toEqual({ S: padSeq('10') });
    expect(u.ExpressionAttributeValues[':last']).toEqual({ S: padSeq('20') });
    expect(Object.values(u.ExpressionAttributeNames)).toEqual(expect.arrayContaining(['view', 'window', 'bucket', 'dims', 'shard', 'expiresAt']));
  });

  it('leaves out a min or max the known item already beats, and the constant attributes of a known item', () => {
    const u = buildUpdate(v, delta, 'pk', 'sk', 99, { exists: true, hw: padSeq('5'), extremes: { lo__min: '1', hi__max: '7' } });
    const names = Object.values(u.ExpressionAttributeNames);
    expect(names).not.toContain('lo__min');
    expect(names).toContain('hi__max');
    expect(names).not.toContain('view');
    expect(u.ConditionExpression.startsWith('#hw < :first')).toBe(true);
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
  const record = (data: string, eventID = 'shardId-000000000003:4959') => ({
    kinesis: { kinesisSchemaVersion: '1.0', partitionKey: 'k', sequenceNumber: '4959', data, approximateArrivalTimestamp: 1_607_497_475.123 },
    eventSource: 'aws:kinesis',
    eventVersion: '1.0',
    eventID,
    eventName: 'aws:kinesis:record',
    invokeIdentityArn: 'arn:aws:iam::1:role/r',
    awsRegion: 'us-east-1',
    eventSourceARN: 'arn:aws:kinesis:us-east-1:1:stream/s',
  });

  it('takes the shard from eventID, the arrival in whole ms, and the decoded bytes', () => {
    const [r] = toStreamRecords({ Records: [record(Buffer.from('{"a":1}').toString('base64'))] });
    expect(r).toMatchObject({ shard: 'shardId-000000000003', seq: '4959', arrival: 1_607_497_475_123 });
    expect(Buffer.from(r!.data).toString()).toBe('{"a":1}');
  });

  it('names the field of a malformed envelope', () => {
    expect(() => toStreamRecords({ Records: [{ ...record('e30='), eventSource: 'aws:sqs' }] })).toThrow(SpeedEventError);
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
