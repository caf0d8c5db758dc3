/** A backfill's id sets (functions/core/backfill-ids.ts): buckets, keys and the stored form. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeIdSet, encodeIdSet, ID_SET_TARGET, idSetBucket, idSetBuckets, idSetKey } from '../../functions/core/backfill-ids.ts';

describe('id sets', () => {
  it('spread n ids over ceil(n / 100) buckets (at least one), each id always in the same one', () => {
    expect([0, 1, ID_SET_TARGET, ID_SET_TARGET + 1, 195_096].map(idSetBuckets)).toEqual([1, 1, 1, 2, 1951]);
    expect(() => idSetBuckets(-1)).toThrow(/received -1/);
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 128 }), fc.integer({ min: 1, max: 100_000 }), (id, buckets) => {
        const b = idSetBucket(id, buckets);
        expect(b).toBeGreaterThanOrEqual(0);
        expect(b).toBeLessThan(buckets);
        expect(idSetBucket(id, buckets)).toBe(b);
      }),
    );
  });

  it('fill buckets evenly enough that no item nears DynamoDB’s 400 KB (200,000 ids of 128 characters)', () => {
    const n = 200_000;
    const buckets = idSetBuckets(n);
    const sizes = new Array<number>(buckets).fill(0);
    for (let i = 0; i < n; i++) sizes[idSetBucket(`id-${i}`, buckets)]!++;
    const most = Math.max(...sizes);
    expect(most).toBeLessThan(2 * ID_SET_TARGET);
    // 128-character ids and 6-digit indexes as JSON: about 140 bytes each.
    expect(most * 140).toBeLessThan(400 * 1024);
  });

  it('name one control item per backfill and bucket', () => {
    expect(idSetKey('backfill-0123456789abcdef', 7)).toEqual({ pk: 'backfill-ids#backfill-0123456789abcdef#7', sk: 'ids' });
  });

  it('store any ids with their index, and refuse an index that is not one', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.oneof(fc.string({ minLength: 1 }), fc.constantFrom('__proto__', 'constructor', '"\\\n|')), { maxLength: 50 }),
        (ids) => {
          const set = new Map(ids.map((id, i) => [id, i * 3]));
          expect(decodeIdSet(encodeIdSet(set))).toEqual(set);
        },
      ),
    );
    expect(() => decodeIdSet('{"a":-1}')).toThrow(/index -1 for id "a"/);
    expect(() => decodeIdSet('{"a":"1"}')).toThrow(/index "1"/);
  });
});
