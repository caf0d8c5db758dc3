import { describe, expect, it } from 'vitest';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import {
  assignId,
  type EventsResult,
  isBodyError,
  MAX_EVENT_BYTES,
  validateEvent,
  validateEvents,
  withId,
} from '../../functions/core/events.ts';
import { avg, count, sum, view } from '../../functions/core/views.ts';

const TS = '2024-03-15T13:47:21Z';
const ok = { id: 'e1', type: 'click', ts: TS };

function results(body: unknown, views = DEMO_VIEWS): EventsResult {
  const r = validateEvents(body, views);
  if (isBodyError(r)) throw new Error(`unexpected body error: ${r.error.message}`);
  return r;
}

/** The one rejection of a single event. */
function rejection(event: unknown, views = DEMO_VIEWS) {
  const r = results([event], views);
  expect(r.accepted).toEqual([]);
  expect(r.rejected).toHaveLength(1);
  return r.rejected[0]!;
}

describe('events: accepted events', () => {
  it('accepts an event with ISO-8601 or epoch-ms ts, keeping the value sent', () => {
    const r = results([ok, { ...ok, id: 'e2', ts: 1_710_510_441_000 }]);
    expect(r.rejected).toEqual([]);
    expect(r.accepted).toEqual([
      { index: 0, event: ok },
      { index: 1, event: { ...ok, id: 'e2', ts: 1_710_510_441_000 } },
    ]);
  });

  it('accepts string, finite number, boolean and null fields', () => {
    const e = { ...ok, page: '/', load_ms: 12.5, vip: false, note: null, n: -3 };
    expect(results(e).accepted).toEqual([{ index: 0, event: e }]);
  });

  it('accepts an event without id (ingest assigns one)', () => {
    const e = { type: 'click', ts: TS };
    expect(results(e).accepted).toEqual([{ index: 0, event: e }]);
    const a = withId(e);
    expect(a.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(withId(ok).id).toBe('e1');
    expect(assignId()).not.toBe(assignId());
  });

  it('accepts a metric field that is absent or null', () => {
    expect(
      results([
        { ...ok, type: 'purchase' },
        { ...ok, type: 'purchase', amount: null },
      ]).rejected,
    ).toEqual([]);
  });

  it('checks metric fields only for views whose filter matches the event', () => {
    // `amount` is read by revenue_by_country (type = purchase) only
    expect(results({ ...ok, type: 'refund', amount: 'all of it' }).rejected).toEqual([]);
    expect(rejection({ ...ok, type: 'purchase', amount: 'all of it' }).field).toBe('amount');
  });
});

describe('events: body forms and body-level errors', () => {
  it('takes one event, an array, or {"events": [...]}', () => {
    expect(results(ok).accepted).toHaveLength(1);
    expect(results([ok, ok]).accepted.map((a) => a.index)).toEqual([0, 1]);
    expect(results({ events: [ok, ok, ok] }).accepted).toHaveLength(3);
  });

  it('reads an event that has its own `events` field as an event', () => {
    expect(results({ ...ok, events: 3 }).accepted).toEqual([{ index: 0, event: { ...ok, events: 3 } }]);
  });

  it.each([
    [5, undefined, 'the body must be a JSON object'],
    ['text', undefined, 'the body must be a JSON object'],
    [null, undefined, 'the body must be a JSON object'],
    [[], undefined, 'contains no events'],
    [{ events: [] }, 'events', 'contains no events'],
    [{ events: 'x' }, 'events', 'must be an array of events, received string'],
  ])('rejects the body %j', (body, field, message) => {
    const r = validateEvents(body, DEMO_VIEWS);
    expect(isBodyError(r)).toBe(true);
    if (!isBodyError(r)) return;
    expect(r.error.field).toBe(field);
    expect(r.error.message).toContain(message);
  });

  it('rejects more than 500 events as a whole, and takes 500', () => {
    const r = validateEvents(Array(501).fill(ok), DEMO_VIEWS);
    expect(r).toEqual({ error: { message: 'at most 500 events per request, received 501' } });
    expect(validateEvents({ events: Array(501).fill(ok) }, DEMO_VIEWS)).toEqual({
      error: { field: 'events', message: 'at most 500 events per request, received 501' },
    });
    expect(results(Array(500).fill(ok)).accepted).toHaveLength(500);
    expect(validateEvents([ok, ok, ok], DEMO_VIEWS, { maxEvents: 2 })).toHaveProperty('error');
  });

  it('accepts the good events beside a bad one, with their indexes', () => {
    const r = results([ok, { ...ok, ts: 'later' }, ok]);
    expect(r.accepted.map((a) => a.index)).toEqual([0, 2]);
    expect(r.rejected).toEqual([{ index: 1, field: 'ts', message: 'must be an ISO-8601 time or epoch milliseconds, received "later"' }]);
  });
});

describe('events: every rejection names one field', () => {
  it.each([
    ['not an object', 42, 'event', 'must be a JSON object, received 42'],
    ['an array event', [ok], 'event', 'must be a JSON object, received an array'],
    ['null event', null, 'event', 'must be a JSON object, received null'],
    ['missing type', { id: 'e', ts: TS }, 'type', 'is required'],
    ['empty type', { ...ok, type: '' }, 'type', 'must not be empty'],
    ['long type', { ...ok, type: 't'.repeat(129) }, 'type', 'must be at most 128 characters, received 129'],
    ['numeric type', { ...ok, type: 3 }, 'type', 'must be a string, received 3'],
    ['empty id', { ...ok, id: '' }, 'id', 'must not be empty'],
    ['long id', { ...ok, id: 'i'.repeat(129) }, 'id', 'must be at most 128 characters, received 129'],
    ['numeric id', { ...ok, id: 7 }, 'id', 'must be a string, received 7'],
    ['null id', { ...ok, id: null }, 'id', 'must be a string, received null'],
    ['missing ts', { id: 'e', type: 't' }, 'ts', 'is required'],
    ['bad ts text', { ...ok, ts: 'yesterday' }, 'ts', 'must be an ISO-8601 time or epoch milliseconds, received "yesterday"'],
    ['impossible date', { ...ok, ts: '2024-02-30T00:00:00Z' }, 'ts', 'is not a valid date-time, received "2024-02-30T00:00:00Z"'],
    ['fractional epoch', { ...ok, ts: 1.5 }, 'ts', 'must be whole epoch milliseconds, received 1.5'],
    ['epoch seconds', { ...ok, ts: 1_710_510_441 }, 'ts', 'must be between 2000-01-01T00:00:00.000Z and 2999-12-31T23:59:59.999Z'],
    ['null ts', { ...ok, ts: null }, 'ts', 'received null'],
    ['nested object', { ...ok, user: { id: 1 } }, 'user', 'nested objects are not accepted'],
    ['array field', { ...ok, tags: ['a', 'b'] }, 'tags', 'arrays are not accepted'],
    ['infinite number', { ...ok, score: Number.POSITIVE_INFINITY }, 'score', 'must be a finite number, received Infinity'],
    ['NaN', { ...ok, score: Number.NaN }, 'score', 'must be a finite number, received NaN'],
    ['bad field name', { ...ok, 'user-id': 'x' }, 'user-id', 'is not a valid field name'],
    ['field name with a space', { ...ok, 'a b': 1 }, 'a b', 'is not a valid field name'],
    ['too long field name', { ...ok, ['f'.repeat(65)]: 1 }, 'f'.repeat(65), 'is not a valid field name'],
    [
      'metric field as text',
      { ...ok, type: 'purchase', amount: '12.50' },
      'amount',
      'must be a number (view "revenue_by_country" aggregates it), received string "12.50"',
    ],
    [
      'metric field as boolean',
      { ...ok, type: 'page_view', load_ms: true },
      'load_ms',
      'must be a number (view "page_views" aggregates it)',
    ],
    ['too many decimals', { ...ok, type: 'purchase', amount: 0.1234567891 }, 'amount', 'has more than 9 digits after the decimal point'],
    ['too many digits', { ...ok, type: 'purchase', amount: 1234567890123456 }, 'amount', 'has more than 15 significant digits'],
    ['float noise', { ...ok, type: 'purchase', amount: 0.1 + 0.2 }, 'amount', 'more than view "revenue_by_country" can aggregate exactly'],
  ])('%s', (_what, event, field, message) => {
    const r = rejection(event);
    expect(r.index).toBe(0);
    expect(r.field).toBe(field);
    expect(r.message).toContain(message);
  });

  it('rejects a __proto__ field instead of silently dropping it', () => {
    expect(rejection(JSON.parse(`{"type":"t","ts":"${TS}","__proto__":"x"}`))).toEqual({
      index: 0,
      field: '__proto__',
      message: 'is a reserved name',
    });
  });

  it('caps the serialized size of an event, naming `event`', () => {
    const r = rejection({ ...ok, blob: 'x'.repeat(MAX_EVENT_BYTES) });
    expect(r.field).toBe('event');
    expect(r.message).toMatch(/^is \d+ bytes as JSON, more than the 65536 allowed$/);
    expect(results({ ...ok, blob: 'x'.repeat(MAX_EVENT_BYTES - 100) }).accepted).toHaveLength(1);
  });

  it('names the first bad field when several are bad', () => {
    expect(validateEvent({ id: 5, type: '', ts: 'x' }, DEMO_VIEWS)).toEqual({ field: 'id', message: 'must be a string, received 5' });
  });

  it('checks the metric fields of every matching view, for any metric function', () => {
    const views = [
      view({ name: 'a', dimensions: [], grain: 'hour', metrics: { n: count() } }),
      view({ name: 'b', filter: { type: 'x' }, dimensions: [], grain: 'hour', metrics: { s: sum('price') } }),
      view({ name: 'c', dimensions: [], grain: 'hour', metrics: { m: avg('weight') } }),
    ];
    expect(rejection({ ...ok, type: 'x', price: 'free' }, views).message).toContain('view "b"');
    expect(rejection({ ...ok, weight: '3kg' }, views)).toMatchObject({ field: 'weight' });
    expect(results({ ...ok, type: 'y', price: 'free' }, views).rejected).toEqual([]);
    // a filter on a number field matches on canonical text, as in both layers
    const numeric = [view({ name: 'd', filter: { level: 2 }, dimensions: [], grain: 'hour', metrics: { s: sum('v') } })];
    expect(rejection({ ...ok, level: 2, v: 'x' }, numeric).field).toBe('v');
    expect(results({ ...ok, level: 3, v: 'x' }, numeric).rejected).toEqual([]);
  });
});
