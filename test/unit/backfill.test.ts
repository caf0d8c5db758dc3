/**
 * The pure core of a backfill (functions/archive/backfill.ts): validation as
 * ingest does it, the content-derived pseudo-shard and ids, object ranges and
 * keys; and the demo's day of history (local/demo.ts), deterministic for a seed.
 */
import { describe, expect, it } from 'vitest';
import { BackfillValidator, backfillObject, backfillRecord, objectRanges } from '../../functions/archive/backfill.ts';
import { parseRawObjectKey } from '../../functions/archive/layout.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { validateEvent } from '../../functions/core/events.ts';
import { demoHistory } from '../../local/demo.ts';

const T = Date.UTC(2030, 0, 15, 10, 30, 0);
const events = [
  { id: 'a', type: 'purchase', ts: '2029-06-01T10:00:00Z', country: 'DE', amount: 12.5 },
  { type: 'page_view', ts: 1_900_000_000_000, page: '/' },
  { id: 'b', type: 'purchase', ts: '2029-06-01T10:00:00Z', amount: '12.50' },
  { id: 'c', ts: '2029-06-01T10:00:00Z' },
];

function validate(list: readonly unknown[]) {
  const v = new BackfillValidator(DEMO_VIEWS);
  const results = list.map((event, index) => v.check({ position: { index }, event }));
  return { v, results, shard: v.shard() };
}

describe('BackfillValidator', () => {
  it('accepts and rejects exactly as ingest does, naming the field', () => {
    const { results } = validate(events);
    results.forEach((r, i) => {
      const ingest = validateEvent(events[i], DEMO_VIEWS);
      if ('event' in ingest) expect(r).toEqual({ line: JSON.stringify(events[i]) });
      else expect(r).toEqual({ rejection: { position: { index: i }, field: ingest.field, message: ingest.message, event: events[i] } });
    });
    expect(results.map((r) => ('line' in r ? null : r.rejection.field))).toEqual([null, null, 'amount', 'type']);
  });

  it('names the backfill by the accepted content only: rejected events and order of rejections do not change it', () => {
    const a = validate(events).shard;
    expect(a).toMatch(/^backfill-[0-9a-f]{16}$/);
    expect(validate([events[0], events[1]]).shard).toBe(a);
    expect(validate([events[2], events[0], events[3], events[1]]).shard).toBe(a);
    expect(validate([events[1], events[0]]).shard).not.toBe(a);
  });

  it('a line that is not JSON is rejected with a null field', () => {
    const v = new BackfillValidator(DEMO_VIEWS);
    expect(v.check({ position: { file: 'x', line: 3 }, event: '{nope', invalid: 'line 3 is not valid JSON' })).toEqual({
      rejection: { position: { file: 'x', line: 3 }, field: null, message: 'line 3 is not valid JSON', event: '{nope' },
    });
    expect(v.rejected).toBe(1);
  });
});

describe('backfill records and objects', () => {
  it('records carry T, the pseudo-shard, the padded index and a derived id when the event had none', () => {
    const shard = validate(events).shard;
    const r0 = backfillRecord(JSON.stringify(events[0]), 0, shard, T);
    expect(r0).toMatchObject({ id: 'a', arrival: T, shard, seq: '0'.repeat(64) });
    const r1 = backfillRecord(JSON.stringify(events[1]), 1, shard, T);
    expect(r1.id).toBe(`bf-${shard.slice('backfill-'.length)}-1`);
    expect(r1.seq).toBe(`${'0'.repeat(63)}1`);
    expect(backfillRecord(JSON.stringify(events[1]), 1, shard, T)).toEqual(r1);
  });

  it('splits records into object ranges and keys them under the archive layout', () => {
    expect(objectRanges(0, 10)).toEqual([]);
    expect(objectRanges(25, 10)).toEqual([
      { first: 0, last: 9 },
      { first: 10, last: 19 },
      { first: 20, last: 24 },
    ]);
    const o = backfillObject('backfill-0123456789abcdef', T, 10, 19);
    expect(parseRawObjectKey(o.key)).toMatchObject({ hour: Date.UTC(2030, 0, 15, 10), shard: 'backfill-0123456789abcdef' });
    expect(o.entry).toBe(`${'0'.repeat(62)}10-${'0'.repeat(62)}19=10`);
  });
});

describe('demoHistory', () => {
  it('is a deterministic day of valid demo events before now', () => {
    const now = Date.UTC(2030, 0, 15, 10, 30, 12);
    const a = demoHistory({ nowMs: now, perMinute: 2 });
    expect(demoHistory({ nowMs: now, perMinute: 2 })).toEqual(a);
    expect(a.length).toBeGreaterThan(24 * 60);
    for (const e of a) {
      expect('event' in validateEvent(e, DEMO_VIEWS)).toBe(true);
      expect(Date.parse(e.ts)).toBeLessThan(now);
      expect(Date.parse(e.ts)).toBeGreaterThan(now - 28 * 3_600_000);
    }
    // Resent copies (same id) are part of the history, as a client's retries would be.
    expect(new Set(a.map((e) => e.id)).size).toBeLessThan(a.length);
  });
});
