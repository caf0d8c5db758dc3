import { describe, expect, it } from 'vitest';
import { aggregate, type CellDelta, combineCellDeltas, mergeCellDeltas } from '../../functions/core/aggregate.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { stateToColumns } from '../../functions/core/metrics.ts';
import { padSeq, type RawRecord, toRawRecord } from '../../functions/core/record.ts';
import { findView, sum, view } from '../../functions/core/views.ts';

const H = Date.UTC(2024, 2, 15, 13); // 13:00
const MIN = 60_000;
const revenue = findView(DEMO_VIEWS, 'revenue_by_country')!;
const byType = findView(DEMO_VIEWS, 'events_by_type')!;

let seq = 0;
function rec(event: Record<string, unknown>, arrival: number, shard = 'shardId-000000000000'): RawRecord {
  seq += 1;
  return toRawRecord({ id: `e${seq}`, ...event }, arrival, shard, String(seq));
}

/** A delta in comparable form: state as column text. */
const plain = (d: CellDelta) => ({ ...d, state: stateToColumns(findView(DEMO_VIEWS, d.view)!, d.state) });

describe('aggregate', () => {
  it('keys deltas by view, dimensions, bucket, window and shard, with exact metrics', () => {
    const r1 = rec({ type: 'purchase', ts: H + 5 * MIN, country: 'DE', amount: 10.1 }, H + 10 * MIN);
    const r2 = rec({ type: 'purchase', ts: H + 50 * MIN, country: 'DE', amount: 0.2 }, H + 10 * MIN + 30_000);
    const r3 = rec({ type: 'purchase', ts: H + 5 * MIN, country: 'DE' }, H + 11 * MIN); // next window, no amount
    const deltas = aggregate([revenue], [r1, r2, r3], MIN);
    expect(deltas.map(plain)).toEqual([
      {
        view: 'revenue_by_country',
        dims: ['DE'],
        bucket: H,
        window: H + 10 * MIN,
        shard: 'shardId-000000000000',
        state: {
          orders__count: '2',
          revenue__sum: '10.3',
          min_order__min: '0.2',
          max_order__max: '10.1',
          avg_order__sum: '10.3',
          avg_order__count: '2',
        },
        records: 2,
        firstSeq: r1.seq,
        lastSeq: r2.seq,
      },
      {
        view: 'revenue_by_country',
        dims: ['DE'],
        bucket: H,
        window: H + 11 * MIN,
        shard: 'shardId-000000000000',
        state: {
          orders__count: '1',
          revenue__sum: '0',
          min_order__min: null,
          max_order__max: null,
          avg_order__sum: '0',
          avg_order__count: '0',
        },
        records: 1,
        firstSeq: r3.seq,
        lastSeq: r3.seq,
      },
    ]);
  });

  it('counts a late event in its old bucket under its new arrival window', () => {
    const late = rec({ type: 'purchase', ts: H - 5 * 3_600_000, country: 'FR', amount: 1 }, H + 30 * MIN);
    const [d] = aggregate([revenue], [late], MIN);
    expect(d).toMatchObject({ bucket: H - 5 * 3_600_000, window: H + 30 * MIN });
  });

  it('applies each view filter, and dimension values are canonical text or null', () => {
    const rs = [
      rec({ type: 'purchase', ts: H, amount: 5 }, H),
      rec({ type: 'click', ts: H, country: 'DE' }, H),
      rec({ type: 'purchase', ts: H, country: 'DE', amount: 1 }, H),
    ];
    const deltas = aggregate(DEMO_VIEWS, rs, MIN);
    expect(deltas.filter((d) => d.view === 'revenue_by_country').map((d) => d.dims)).toEqual([[null], ['DE']]);
    expect(deltas.filter((d) => d.view === 'events_by_type').map((d) => [d.dims, d.records])).toEqual([
      [['click'], 1],
      [['purchase'], 2],
    ]);
    expect(deltas.filter((d) => d.view === 'page_views')).toEqual([]);
    const numeric = view({ name: 'n', dimensions: ['level'], grain: 'day', metrics: { s: sum('v') } });
    expect(
      aggregate([numeric], [rec({ type: 't', ts: H, level: 2, v: 1 }, H), rec({ type: 't', ts: H, level: true }, H)], MIN).map(
        (d) => d.dims,
      ),
    ).toEqual([['2'], ['true']]);
  });

  it('keeps shards apart (each speed item belongs to one Kinesis shard)', () => {
    const rs = [rec({ type: 'click', ts: H }, H, 'shardId-000000000001'), rec({ type: 'click', ts: H }, H, 'shardId-000000000000')];
    expect(aggregate([byType], rs, MIN).map((d) => d.shard)).toEqual(['shardId-000000000000', 'shardId-000000000001']);
  });

  it('returns the same deltas in the same order whatever the record order', () => {
    const rs = Array.from({ length: 30 }, (_, i) =>
      rec({ type: ['a', 'b', 'c'][i % 3]!, ts: H + (i % 7) * MIN }, H + (i % 4) * MIN, `shardId-00000000000${i % 2}`),
    );
    const forward = aggregate(DEMO_VIEWS, rs, MIN).map(plain);
    expect(aggregate(DEMO_VIEWS, [...rs].reverse(), MIN).map(plain)).toEqual(forward);
    expect(forward.map((d) => d.window)).not.toEqual([...forward.map((d) => d.window)].sort()); // ordered by shard first
  });

  it('returns nothing for no records, and rejects a bad window length', () => {
    expect(aggregate(DEMO_VIEWS, [], MIN)).toEqual([]);
    expect(() => aggregate([byType], [rec({ type: 'a', ts: H }, H)], 0)).toThrow(RangeError);
  });
});

describe('mergeCellDeltas and combineCellDeltas', () => {
  it('combining the deltas of two batches equals aggregating both at once', () => {
    const rs = Array.from({ length: 12 }, (_, i) =>
      rec({ type: 'purchase', ts: H + i * MIN, country: i % 2 ? 'DE' : 'FR', amount: i }, H + (i % 3) * MIN),
    );
    const whole = aggregate(DEMO_VIEWS, rs, MIN).map(plain);
    const parts = mergeCellDeltas(DEMO_VIEWS, [
      ...aggregate(DEMO_VIEWS, rs.slice(0, 5), MIN),
      ...aggregate(DEMO_VIEWS, rs.slice(5), MIN),
    ]).map(plain);
    expect(parts).toEqual(whole);
  });

  it('takes the smallest first and largest last sequence number', () => {
    const a = aggregate([byType], [rec({ type: 'a', ts: H }, H)], MIN)[0]!;
    const b = { ...a, firstSeq: padSeq('1'), lastSeq: padSeq('99999') };
    const c = combineCellDeltas(byType, a, b);
    expect([c.firstSeq, c.lastSeq, c.records]).toEqual([padSeq('1'), padSeq('99999'), 2]);
    expect(stateToColumns(byType, c.state)).toEqual({ events__count: '2' });
  });
});

describe('retractions (a lagging shard takes a count back, functions/speed/dedup.ts)', () => {
  it('cancel the count and sums of the copy they retract; min, max and sketches are left as they are', () => {
    const pageViews = findView(DEMO_VIEWS, 'page_views')!;
    const order = rec({ type: 'purchase', ts: H + 5 * MIN, country: 'DE', amount: 10.1 }, H + 10 * MIN);
    const page = rec({ type: 'page_view', ts: H + 5 * MIN, page: '/', country: 'DE', load_ms: 30, user: 'u1' }, H + 10 * MIN);
    const back = (r: RawRecord): RawRecord => ({ ...r, seq: `${r.seq}~`, retract: true });
    const [o] = aggregate([revenue], [back(order)], MIN).map(plain);
    expect(o).toMatchObject({
      records: -1,
      state: {
        orders__count: '-1',
        revenue__sum: '-10.1',
        min_order__min: null,
        max_order__max: null,
        avg_order__sum: '-10.1',
        avg_order__count: '-1',
      },
    });
    const [p] = aggregate([pageViews], [back(page)], MIN).map(plain);
    expect(p).toMatchObject({ records: -1, state: { views__count: '-1', load_ms__sum: '-30', load_ms__count: '-1', users__hll: null } });
    // With the copy it retracts, the cell's count and sums are zero.
    const [both] = aggregate([revenue], [order, back(order)], MIN).map(plain);
    expect(both).toMatchObject({ records: 0, state: { orders__count: '0', revenue__sum: '0', min_order__min: '10.1' } });
  });
});
