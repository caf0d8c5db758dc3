/**
 * The speed layer's writes of `distinct` sketches (functions/speed/apply.ts): a read-modify-write
 * of each touched cell's sketch, allowed only on the exact item state it merged into (the item's hw,
 * or no item), and items of such views cut by 10 s of arrival. Exactly-once against dynalite, with
 * warm and cold containers, crashes and retries: test/integration/speed.test.ts (its events carry
 * `user`, page_views' distinct field).
 */
import { describe, expect, it } from 'vitest';
import type { CellDelta } from '../../functions/core/aggregate.ts';
import { Decimal } from '../../functions/core/decimal.ts';
import { mergeSketches, parseSketch, sketchOf } from '../../functions/core/hll.ts';
import { LATE_PART_MS } from '../../functions/core/keys.ts';
import { padSeq, toRawRecord } from '../../functions/core/record.ts';
import { count, distinct, view } from '../../functions/core/views.ts';
import { buildUpdate, hasSketches, knowledge, recordItem, type SpeedItemKey } from '../../functions/speed/apply.ts';

const HOUR = 3_600_000;
const v = view({ name: 'u', dimensions: ['country'], grain: 'minute', metrics: { n: count(), users: distinct('user') } });
const key: SpeedItemKey = { view: 'u', window: HOUR, slot: HOUR, part: 1, shard: 'shard-1' };
const cell = (minute: number, country: string, users: string[], first: string, last: string): CellDelta => ({
  view: 'u',
  dims: [country],
  bucket: HOUR + minute * 60_000,
  window: key.window,
  shard: 'shard-1',
  state: { n: { count: new Decimal(users.length) }, users: { hll: users.map(sketchOf).reduce(mergeSketches, null) } },
  records: users.length,
  firstSeq: padSeq(first),
  lastSeq: padSeq(last),
});
const setValue = (u: ReturnType<typeof buildUpdate>, attribute: string) => {
  const name = Object.entries(u.ExpressionAttributeNames).find(([, x]) => x === attribute)?.[0];
  const m = name && new RegExp(`${name} = (:c[0-9a-z]+)`).exec(u.UpdateExpression);
  return m ? u.ExpressionAttributeValues[m[1]!] : undefined;
};

describe('speed writes of sketches', () => {
  it('without complete knowledge: writes as to a new item, the delta as the sketch, under attribute_not_exists(hw)', () => {
    const u = buildUpdate(v, key, [cell(5, 'DE', ['a', 'b'], '1', '2')], 99);
    expect(u.ConditionExpression).toBe('attribute_not_exists(#hw)');
    expect(u.ExpressionAttributeValues[':first']).toBeUndefined();
    expect(setValue(u, '5|["DE"]|users__hll')).toEqual({ S: mergeSketches(sketchOf('a'), sketchOf('b'))!.toText() });
    expect(Object.values(u.ExpressionAttributeNames)).toEqual(expect.arrayContaining(['view', 'window', 'slot', 'part', 'shard']));
    // Knowledge of an existing item that is not complete (a partial UPDATED_NEW) is not merged from.
    const partial = buildUpdate(v, key, [cell(5, 'DE', ['a'], '3', '3')], 99, {
      exists: true,
      hw: padSeq('2'),
      extremes: {},
      sketches: { '5|["DE"]|users__hll': sketchOf('zzz')!.toText() },
    });
    expect(partial.ConditionExpression).toBe('attribute_not_exists(#hw)');
    expect(setValue(partial, '5|["DE"]|users__hll')).toEqual({ S: sketchOf('a')!.toText() });
  });

  it('with complete knowledge: SETs stored ⊕ delta under hw = the known hw; a cell the delta does not raise is not rewritten', () => {
    const stored = mergeSketches(sketchOf('a'), sketchOf('c'))!.toText();
    const known = { ...knowledge(undefined), exists: true, hw: padSeq('2'), sketches: { '5|["DE"]|users__hll': stored }, complete: true };
    const u = buildUpdate(v, key, [cell(5, 'DE', ['b'], '3', '3'), cell(6, 'FR', ['a'], '4', '4')], 99, known);
    expect(u.ConditionExpression).toBe('#hw = :hw');
    expect(u.ExpressionAttributeValues[':hw']).toEqual({ S: padSeq('2') });
    const merged = mergeSketches(parseSketch(stored), sketchOf('b'))!.toText();
    expect(setValue(u, '5|["DE"]|users__hll')).toEqual({ S: merged });
    expect(setValue(u, '6|["FR"]|users__hll')).toEqual({ S: sketchOf('a')!.toText() });
    expect(Object.values(u.ExpressionAttributeNames)).not.toContain('view');

    const same = buildUpdate(v, key, [cell(5, 'DE', ['a'], '3', '3')], 99, known);
    expect(Object.values(same.ExpressionAttributeNames)).not.toContain('5|["DE"]|users__hll');
    expect(same.UpdateExpression).toContain('ADD');
  });

  it('knowledge of a whole item reads its sketches; only views with distinct metrics merge', () => {
    const k = knowledge({ hw: { S: padSeq('7') }, '5|["DE"]|users__hll': { S: 'abc' }, '5|["DE"]|n__count': { N: '4' } });
    expect(k.sketches).toEqual({ '5|["DE"]|users__hll': 'abc' });
    expect(hasSketches(v)).toBe(true);
    expect(hasSketches(view({ name: 'c', dimensions: [], grain: 'hour', metrics: { n: count() } }))).toBe(false);
  });

  it("cuts even the current hour's item of a view with sketches by 10 s of arrival", () => {
    const plain = view({ name: 'p', dimensions: [], grain: 'minute', metrics: { n: count() } });
    const at = (arrival: number) => toRawRecord({ id: 'x', type: 't', ts: arrival - 1000, user: 'a' }, arrival, 'shard-1', '1');
    const w = Date.UTC(2025, 0, 15, 10);
    expect(recordItem(plain, at(w + 25_000), 60_000)?.part).toBe(0);
    expect(recordItem(v, at(w + 25_000), 60_000)?.part).toBe(1 + Math.floor(25_000 / LATE_PART_MS));
    expect(recordItem(v, at(w + 1), 60_000)?.part).toBe(1);
  });
});
