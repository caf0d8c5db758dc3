import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { toStreamRecords } from '../../functions/adapters/kinesis-event.ts';
import { kinesisRecordFactory, kinesisSource, kplAggregate } from '../../functions/adapters/kinesis-records.ts';
import { isAggregated, KPL_MAGIC } from '../../functions/adapters/kpl.ts';
import { lastPosition, normalize, normalizeRecords, poisonKey } from '../../functions/adapters/poison.ts';
import { objectManifestEntries, objectManifestEntry, parseRawObjectKey, rawObjectKey } from '../../functions/archive/layout.ts';
import { padSeq, recordPosition } from '../../functions/core/record.ts';

const SEQ = '49590338271490256608559692538361571095921575989136588898';
const T = Date.UTC(2030, 0, 2, 3, 4, 5);
const ev = (id: string, extra: Record<string, unknown> = {}) => JSON.stringify({ id, type: 'click', ts: T - 1000, ...extra });
const record = (data: Uint8Array, partitionKey = 'k') => ({ shard: 'shardId-000000000001', seq: SEQ, arrival: T, data, partitionKey });

describe('KPL aggregates (functions/adapters/kpl.ts, normalizeRecords)', () => {
  it('reads every user record as an event of its own, at (seq, subseq), with its own partition key', () => {
    const [agg, more] = kplAggregate([
      { partitionKey: 'a', data: ev('a') },
      { partitionKey: 'user-7', data: ev('b') },
      { partitionKey: 'a', data: ev('a') },
    ]);
    expect(more).toBeUndefined();
    expect(isAggregated(agg!.data)).toBe(true);
    expect(agg!.partitionKey).toBe('a');
    const out = normalizeRecords(record(agg!.data, agg!.partitionKey));
    expect(out.map((n) => (n.ok ? [n.record.id, n.record.seq, n.partitionKey] : n.poison.reason))).toEqual([
      ['a', recordPosition(SEQ, 0), 'a'],
      ['b', recordPosition(SEQ, 1), 'user-7'],
      ['a', recordPosition(SEQ, 2), 'a'],
    ]);
    expect(lastPosition(out, record(agg!.data))).toBe(recordPosition(SEQ, 2));
  });

  it('leaves a plain record exactly as before: its padded sequence number, its Kinesis partition key', () => {
    const plain = record(Buffer.from(ev('x')), 'x');
    expect(normalizeRecords(plain)).toEqual([normalize(plain)]);
    const [n] = normalizeRecords(plain);
    expect(n).toMatchObject({ ok: true, record: { seq: padSeq(SEQ) }, partitionKey: 'x' });
    expect(lastPosition([n!], plain)).toBe(padSeq(SEQ));
  });

  it('makes a corrupt aggregate (checksum, protobuf, too short) one poison record at the record position', () => {
    const [agg] = kplAggregate([
      { partitionKey: 'a', data: ev('a') },
      { partitionKey: 'b', data: ev('b') },
    ]);
    const flipped = Buffer.from(agg!.data);
    flipped[flipped.length - 1]! ^= 0xff;
    const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]);
    const badProtobuf = Buffer.concat([KPL_MAGIC, garbage, createHash('md5').update(garbage).digest()]);
    for (const [data, reason] of [
      [flipped, /corrupt KPL aggregate: Invalid record checksum/],
      [badProtobuf, /corrupt KPL aggregate/],
      [KPL_MAGIC, /too short/],
    ] as const) {
      const out = normalizeRecords(record(data));
      expect(out).toHaveLength(1);
      expect(out[0]).toMatchObject({ ok: false, poison: { seq: padSeq(SEQ), field: 'data', reason: expect.stringMatching(reason) } });
      expect(lastPosition(out, record(data))).toBe(padSeq(SEQ));
    }
  });

  it('makes one bad user record poison at its own position, and keeps the others', () => {
    const [agg] = kplAggregate([
      { partitionKey: 'a', data: ev('a') },
      { partitionKey: 'b', data: '{"id":' },
      { partitionKey: 'c', data: JSON.stringify({ id: 'c', type: 'click' }) },
      { partitionKey: 'd', data: ev('d') },
    ]);
    const out = normalizeRecords(record(agg!.data));
    expect(out.map((n) => (n.ok ? n.record.id : `${n.poison.field}@${n.poison.seq.slice(-6)}`))).toEqual([
      'a',
      'data@000001',
      'ts@000002',
      'd',
    ]);
    const bad = out[1]!;
    if (bad.ok) throw new Error('expected poison');
    expect(Buffer.from(bad.poison.data).toString()).toBe('{"id":');
    expect(poisonKey('speed', 's', bad.poison.seq)).toBe(`failures/speed/s/${recordPosition(SEQ, 1)}.json`);
  });

  it('takes the partition key from the Lambda event', () => {
    const source = kinesisSource({ account: '1', region: 'us-east-1', stream: 's', role: 'r' });
    const [agg] = kplAggregate([{ partitionKey: 'u1', data: ev('a') }]);
    const [r] = toStreamRecords({
      Records: [kinesisRecordFactory({ shard: 'shardId-000000000001', seq: SEQ, arrival: T, data: agg!.data, partitionKey: 'u1' }, source)],
    });
    expect(r).toMatchObject({ partitionKey: 'u1' });
    expect(normalizeRecords(r!)).toMatchObject([{ ok: true, partitionKey: 'u1', record: { seq: recordPosition(SEQ, 0) } }]);
  });

  it('keys raw objects and manifest entries by positions, and parses them back', () => {
    const first = recordPosition(SEQ, 0);
    const last = recordPosition(SEQ, 12);
    const key = rawObjectKey('shardId-000000000001', T, first, last);
    expect(parseRawObjectKey(key)).toMatchObject({ firstSeq: first, lastSeq: last, shard: 'shardId-000000000001' });
    expect(parseRawObjectKey(rawObjectKey('s', T, padSeq('5'), last))).toMatchObject({ firstSeq: padSeq('5'), lastSeq: last });
    const hour = Math.floor(T / 3_600_000) * 3_600_000;
    expect(objectManifestEntries(hour, 's', [objectManifestEntry(first, last, 13)])).toEqual([
      { key: rawObjectKey('s', hour, first, last), lines: 13 },
    ]);
  });
});
