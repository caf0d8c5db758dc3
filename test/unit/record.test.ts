import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { numericValue, padSeq, RecordError, recordPosition, SEQ_WIDTH, SUBSEQ_WIDTH, toRawRecord } from '../../functions/core/record.ts';

const ARRIVAL = Date.UTC(2024, 2, 15, 13, 0, 5);
const SEQ = '49650000000000000000000000000000000000000000000000000001';

function recordError(data: unknown): RecordError {
  try {
    toRawRecord(data, ARRIVAL, 'shardId-000000000000', SEQ);
  } catch (e) {
    expect(e).toBeInstanceOf(RecordError);
    return e as RecordError;
  }
  throw new Error('expected toRawRecord to reject the record');
}

describe('record: toRawRecord', () => {
  it('normalizes an event: ts to ms, every scalar as canonical text, numbers as decimal text', () => {
    const r = toRawRecord(
      { id: 'e1', type: 'purchase', ts: '2024-03-15T12:59:00Z', country: 'DE', amount: 12.5, vip: true, note: null, qty: 3 },
      ARRIVAL,
      'shardId-000000000000',
      SEQ,
    );
    expect(r).toEqual({
      id: 'e1',
      type: 'purchase',
      ts: Date.UTC(2024, 2, 15, 12, 59),
      arrival: ARRIVAL,
      shard: 'shardId-000000000000',
      seq: SEQ.padStart(SEQ_WIDTH, '0'),
      fields: { id: 'e1', type: 'purchase', ts: '2024-03-15T12:59:00Z', country: 'DE', amount: '12.5', vip: 'true', note: null, qty: '3' },
      num: { amount: '12.5', qty: '3' },
    });
  });

  it('keeps numbers that do not fit DECIMAL(38,9) inputs as fields but not as metric values', () => {
    const r = toRawRecord({ id: 'e', type: 't', ts: 1_710_000_000_000, tiny: 1e-12, huge: 1234567890123456 }, ARRIVAL, 's', '1');
    expect(r.fields.tiny).toBe('1e-12');
    expect(r.num.tiny).toBeUndefined();
    expect(r.num.huge).toBeUndefined();
    expect(numericValue(r, 'tiny')).toBeNull();
  });

  it('ignores nested objects and arrays (ingest rejects them; a consumer must not crash)', () => {
    const r = toRawRecord({ id: 'e', type: 't', ts: 1_710_000_000_000, o: { a: 1 }, a: [1] }, ARRIVAL, 's', '1');
    expect(r.fields).not.toHaveProperty('o');
    expect(r.fields).not.toHaveProperty('a');
  });

  it.each([
    [null, 'event'],
    [[1], 'event'],
    ['text', 'event'],
    [{ type: 't', ts: 1_710_000_000_000 }, 'id'],
    [{ id: '', type: 't', ts: 1_710_000_000_000 }, 'id'],
    [{ id: 'x'.repeat(129), type: 't', ts: 1_710_000_000_000 }, 'id'],
    [{ id: 'e', ts: 1_710_000_000_000 }, 'type'],
    [{ id: 'e', type: 7, ts: 1_710_000_000_000 }, 'type'],
    [{ id: 'e', type: 't' }, 'ts'],
    [{ id: 'e', type: 't', ts: 'soon' }, 'ts'],
  ])('a record %j is poison, naming %s', (data, field) => {
    expect(recordError(data).field).toBe(field);
  });

  it('says what is wrong with the time', () => {
    expect(recordError({ id: 'e', type: 't', ts: '2024-02-30' }).message).toBe('ts is not a valid date-time, received "2024-02-30"');
  });
});

describe('record: numericValue and padSeq', () => {
  it('reads metric values exactly, null when absent', () => {
    const r = toRawRecord({ id: 'e', type: 't', ts: 1_710_000_000_000, amount: 0.1, label: 'x' }, ARRIVAL, 's', '1');
    expect(numericValue(r, 'amount')!.toFixed()).toBe('0.1');
    expect(numericValue(r, 'label')).toBeNull();
    expect(numericValue(r, 'missing')).toBeNull();
  });

  it('pads sequence numbers so they compare as strings', () => {
    expect(padSeq('9')).toHaveLength(SEQ_WIDTH);
    expect(padSeq('9') < padSeq('10')).toBe(true);
    expect(() => padSeq('')).toThrow(RangeError);
    expect(() => padSeq('12a')).toThrow(/sequence number must be 1..64 digits/);
    expect(() => padSeq('1'.repeat(65))).toThrow(RangeError);
  });
});

describe('record positions (plain records and user records of KPL aggregates)', () => {
  it('is the padded sequence number for a plain record, with the sub-sequence number for a user record', () => {
    expect(recordPosition('42')).toBe(padSeq('42'));
    expect(recordPosition('42', 7)).toBe(`${padSeq('42')}.000007`);
    expect(recordPosition(SEQ, 0)).toHaveLength(SEQ_WIDTH + 1 + SUBSEQ_WIDTH);
    expect(toRawRecord({ id: 'a', type: 't', ts: ARRIVAL }, ARRIVAL, 's', SEQ, 3).seq).toBe(`${padSeq(SEQ)}.000003`);
    expect(toRawRecord({ id: 'a', type: 't', ts: ARRIVAL }, ARRIVAL, 's', SEQ).seq).toBe(padSeq(SEQ));
    expect(() => recordPosition('1', -1)).toThrow(RangeError);
    expect(() => recordPosition('1', 10 ** SUBSEQ_WIDTH)).toThrow(RangeError);
    expect(() => recordPosition('1', 1.5)).toThrow(RangeError);
  });

  it('orders as strings exactly as (seq, subseq), a plain record before the user records of its sequence number', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.bigInt({ min: 0n, max: 10n ** 56n }), fc.option(fc.integer({ min: 0, max: 10 ** SUBSEQ_WIDTH - 1 }))), {
          minLength: 2,
          maxLength: 30,
        }),
        (list) => {
          const byTuple = [...list].sort(([a, x], [b, y]) => (a !== b ? (a < b ? -1 : 1) : (x ?? -1) - (y ?? -1)));
          const positions = list.map(([s, sub]) => recordPosition(String(s), sub ?? undefined));
          const byString = [...positions].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
          expect(byString).toEqual(byTuple.map(([s, sub]) => recordPosition(String(s), sub ?? undefined)));
        },
      ),
    );
  });
});
