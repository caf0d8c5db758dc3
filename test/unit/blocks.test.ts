/**
 * The packed form of batch-view rows (core/blocks.ts) and the block items the loader writes
 * (batch/load.ts): round trips, exact decimals, nulls, sketches, and chunks at the size limit.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type BatchRead, batchQueries, batchReads } from '../../functions/api/read-view.ts';
import { blockItems, partitionRefs, planDayBlocks, rollupsEntry, rowsOfItems } from '../../functions/batch/load.ts';
import { type BlockRow, decodeBlock, encodeBlocks, sketchAttribute } from '../../functions/core/blocks.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { estimate, mergeAll, mergeSketches, parseSketch, Sketch, sketchOf } from '../../functions/core/hll.ts';
import { BLOCK_MAX_BYTES, batchDayBlockPk, batchRollupPk, blockSk, pad13 } from '../../functions/core/keys.ts';
import type { Grain } from '../../functions/core/time.ts';
import { count, view } from '../../functions/core/views.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const D = Date.UTC(2024, 2, 15);
const revenue = DEMO_VIEWS.find((v) => v.name === 'revenue_by_country')!;
const pageViews = DEMO_VIEWS.find((v) => v.name === 'page_views')!;

const revenueRow = (bucket: number, country: string | null, sum: string, min: string | null = null): BlockRow => ({
  bucket,
  dims: [country],
  values: {
    orders__count: '3',
    revenue__sum: sum,
    min_order__min: min,
    max_order__max: min,
    avg_order__sum: sum,
    avg_order__count: '3',
  },
});

const byKey = (rows: readonly BlockRow[]) =>
  [...rows].sort((a, b) => a.bucket - b.bucket || JSON.stringify(a.dims).localeCompare(JSON.stringify(b.dims)));

describe('blocks', () => {
  it('round-trips rows: exact decimals, null values and dimensions, one block per span of the grain', () => {
    const rows = [
      revenueRow(D + 2 * HOUR + 5 * 60_000, 'DE', '12345678901234567890.123456789', '-0.000000001'),
      revenueRow(D + 2 * HOUR, null, '0'),
      revenueRow(D + 3 * HOUR, 'Ünïcode "quoted"', '99999999999999999999999999999.999999999', '1'),
    ];
    const blocks = encodeBlocks(revenue, 'minute', rows);
    expect(blocks.map((b) => [b.block, b.chunk, b.n])).toEqual([
      [D + 2 * HOUR, 0, 2],
      [D + 3 * HOUR, 0, 1],
    ]);
    // Ordered by bucket inside a block; the offset from the block start is the row's first element.
    expect(JSON.parse(blocks[0]!.rows)[0].slice(0, 2)).toEqual([0, [null]]);
    const back = blocks.flatMap((b) => decodeBlock(revenue, b.block, b.rows));
    expect(back).toEqual(byKey(rows));
    expect(back[1]!.values.revenue__sum).toBe('12345678901234567890.123456789');
    expect(back[0]!.values.min_order__min).toBeNull();
  });

  it('writes any value text as JSON.stringify would (quotes, backslashes, control characters, surrogates), whole numbers bare', () => {
    // Values are decimal texts in practice: a whole number of up to 15 digits in canonical form is a bare JSON number,
    // other text quoted as it is; anything else is escaped, so a block is JSON whatever it holds, and reads back as written.
    const stored = (t: string | null) => {
      const n = Number(t);
      return t !== null && Number.isSafeInteger(n) && String(n) === t && t.replace('-', '').length <= 15 ? n : t;
    };
    const whole = fc.oneof(
      fc.integer().map(String),
      fc.bigInt({ min: -(10n ** 17n), max: 10n ** 17n }).map(String),
      fc.constantFrom('0', '-0', '007', '1e3', '1.0', '999999999999999', '-999999999999999', '1000000000000000', ' 1', '+1'),
    );
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.string({ unit: 'binary' }),
            whole,
            fc.constantFrom('"', '\\', '\n', '\u0001', '\ud800', '\udc00x', '😀', '1.5', '-0.5'),
          ),
          {
            minLength: 1,
            maxLength: 6,
          },
        ),
        (texts) => {
          const rows = texts.map((t, i) => revenueRow(D + i * 60_000, 'DE', t, t));
          for (const b of encodeBlocks(revenue, 'minute', rows)) {
            const parsed = JSON.parse(b.rows) as unknown[][];
            const expected = rows.slice(0, b.n).map((r) => [r.bucket - b.block, r.dims, ...Object.values(r.values).map(stored)]);
            expect(b.rows).toBe(JSON.stringify(expected));
            expect(parsed).toEqual(expected);
            expect(decodeBlock(revenue, b.block, b.rows)).toEqual(rows.slice(0, b.n));
          }
        },
      ),
    );
  });

  it('never writes a sketch text bare, whatever its characters (a number in a sketch column is an estimate)', () => {
    const row: BlockRow = {
      bucket: D,
      dims: ['/', 'DE'],
      values: { views__count: '12', load_ms__sum: '7', load_ms__count: '1', users__hll: '12' },
    };
    const [b] = encodeBlocks(pageViews, 'minute', [row], BLOCK_MAX_BYTES, 'inline');
    expect(JSON.parse(b!.rows)).toEqual([[0, ['/', 'DE'], 12, 7, 1, '12']]);
    expect(decodeBlock(pageViews, b!.block, b!.rows)).toEqual([row]);
  });

  it('keeps sketches as their canonical text', () => {
    const sketch = mergeSketches(sketchOf('alice'), sketchOf('bob'))!.toText();
    const row: BlockRow = {
      bucket: D,
      dims: ['/home'],
      values: { views__count: '2', load_ms__sum: '1.5', load_ms__count: '2', users__hll: sketch },
    };
    const empty: BlockRow = {
      bucket: D + 60_000,
      dims: ['/home'],
      values: { views__count: '1', load_ms__sum: '0', load_ms__count: '0', users__hll: null },
    };
    const [b] = encodeBlocks(pageViews, 'minute', [empty, row]);
    expect(decodeBlock(pageViews, b!.block, b!.rows)).toEqual([row, empty]);
  });

  it('cuts a block into ordered chunks under the size limit', () => {
    const rows = Array.from({ length: 500 }, (_, i) => revenueRow(D + (i % 24) * HOUR, `country-${String(i).padStart(4, '0')}`, `${i}.5`));
    const whole = encodeBlocks(revenue, 'hour', rows);
    expect(whole).toHaveLength(1);
    const max = 2_000;
    const chunks = encodeBlocks(revenue, 'hour', rows, max);
    expect(chunks.length).toBeGreaterThan(10);
    expect(chunks.map((c) => c.chunk)).toEqual(chunks.map((_, i) => i));
    for (const c of chunks) {
      expect(c.block).toBe(D);
      expect(Buffer.byteLength(c.rows)).toBeLessThanOrEqual(max);
      expect(JSON.parse(c.rows)).toHaveLength(c.n);
    }
    // One full chunk is as full as it can be: the next row would not have fit.
    const back = chunks.flatMap((c) => decodeBlock(revenue, c.block, c.rows));
    expect(back).toEqual(byKey(rows));
    expect(whole[0]!.rows).toBe(`[${chunks.map((c) => c.rows.slice(1, -1)).join(',')}]`);
    // A lone row larger than the limit still gets its own chunk.
    expect(encodeBlocks(revenue, 'hour', rows.slice(0, 2), 10)).toHaveLength(2);
    expect(BLOCK_MAX_BYTES).toBeLessThan(400_000);
  });

  it('refuses text that is not a block', () => {
    expect(() => decodeBlock(revenue, D, '{}')).toThrow(/JSON array/);
    expect(() => decodeBlock(revenue, D, '[[0,["DE"],"1"]]')).toThrow(/8 values|6 values/);
  });
});

describe('blocks with sketches apart (blocks-3)', () => {
  const sketchText = (...values: string[]) =>
    values
      .map(sketchOf)
      .reduce((a, b) => mergeSketches(a, b))!
      .toText();
  const pv = (bucket: number, page: string, users: string | null, views = '1'): BlockRow => ({
    bucket,
    dims: [page, 'DE'],
    values: { views__count: views, load_ms__sum: '1.5', load_ms__count: views, users__hll: users },
  });
  const rows = [
    pv(D, '/a', sketchText('alice', 'bob')),
    pv(D, '/b', null),
    pv(D, '/c', sketchText('carol')),
    pv(D + DAY, '/a', null),
    pv(D + 2 * DAY, '/a', sketchText('dave', 'erin', 'frank')),
  ];
  const sketchesOf = (b: { sketches?: Readonly<Record<string, string>> }) => (a: string) => b.sketches?.[a];

  it('holds estimates in rows and the texts per bucket beside them, and reads back what the inline form reads', () => {
    const [b, more] = encodeBlocks(pageViews, 'day', rows, BLOCK_MAX_BYTES, 'apart');
    expect(more).toBeUndefined();
    const inline = encodeBlocks(pageViews, 'day', rows)[0]!;
    const start = b!.block;
    // A bucket whose sketches are all empty (D + 1 day) has no attribute; the others one, a place per row, nulls included.
    expect(Object.keys(b!.sketches!).sort()).toEqual([sketchAttribute(D - start), sketchAttribute(D + 2 * DAY - start)].sort());
    expect(JSON.parse(b!.sketches![sketchAttribute(D - start)]!)).toEqual([rows[0]!.values.users__hll, null, rows[2]!.values.users__hll]);
    const packed = JSON.parse(b!.rows) as unknown[][];
    expect(packed.map((r) => r[5])).toEqual([2, null, 1, null, 3]);
    expect(packed.map((r) => r.slice(0, 5))).toEqual((JSON.parse(inline.rows) as unknown[][]).map((r) => r.slice(0, 5)));
    expect(decodeBlock(pageViews, start, b!.rows, { sketches: sketchesOf(b!) })).toEqual(byKey(rows));
    expect(decodeBlock(pageViews, start, inline.rows)).toEqual(byKey(rows));
    // A view without sketches: both forms are the one form.
    const r = [revenueRow(D, 'DE', '1')];
    expect(encodeBlocks(revenue, 'hour', r, BLOCK_MAX_BYTES, 'apart')).toEqual(encodeBlocks(revenue, 'hour', r));
  });

  it('reads a row whose bucket attribute was not read as its estimates only when asked to', () => {
    const [b] = encodeBlocks(pageViews, 'day', rows, BLOCK_MAX_BYTES, 'apart');
    const start = b!.block;
    expect(() => decodeBlock(pageViews, start, b!.rows)).toThrow(/without its sketches/);
    const only = sketchAttribute(D + 2 * DAY - start);
    const got = decodeBlock(pageViews, start, b!.rows, { sketches: (a) => (a === only ? b!.sketches![a] : undefined), estimates: true });
    expect(got[0]).toEqual({ ...rows[0], values: { ...rows[0]!.values, users__hll: null }, estimates: { users__hll: 2 } });
    // Empty sketches need no attribute; the bucket read has its texts.
    expect(got[1]).toEqual(rows[1]);
    expect(got[3]).toEqual(rows[3]);
    expect(got[4]).toEqual(rows[4]);
    expect(estimate(parseSketch(rows[4]!.values.users__hll!))).toBe(3);
  });

  it('cuts chunks counting the sketch attributes, and a bucket cut across chunks reads back', () => {
    const many = Array.from({ length: 300 }, (_, i) =>
      pv(D + (i % 3) * DAY, `/p${String(i).padStart(3, '0')}`, sketchText(`u${i}`, `v${i}`, `w${i}`), String(i + 1)),
    );
    const max = 3_000;
    const chunks = encodeBlocks(pageViews, 'day', many, max, 'apart');
    expect(chunks.length).toBeGreaterThan(5);
    for (const c of chunks) {
      const size =
        Buffer.byteLength(c.rows) + Object.entries(c.sketches ?? {}).reduce((n, [a, t]) => n + a.length + Buffer.byteLength(t), 0);
      expect(size).toBeLessThanOrEqual(max);
    }
    expect(chunks.flatMap((c) => decodeBlock(pageViews, c.block, c.rows, { sketches: sketchesOf(c) }))).toEqual(byKey(many));
  });

  it('leaves a block whole exactly when its rows and sketches fit, as the row-by-row cut counts them', () => {
    // A block that fits is written by one stringify, one that does not is cut row by row: the limit where one turns into
    // the other must be the same for both (every bucket here has a sketch, so each counts its attribute).
    fc.assert(
      fc.property(
        fc.uniqueArray(
          fc.record({
            minute: fc.integer({ min: 0, max: 5 }),
            page: fc.constantFrom('/a', '/b', '/c', '/d', '/"q"'),
            users: fc.array(fc.string(), { minLength: 1, maxLength: 4 }),
            views: fc.oneof(fc.integer({ min: 0, max: 10 ** 6 }).map(String), fc.constantFrom('0.5', '12345678901234567')),
          }),
          { selector: (r) => `${r.minute}#${r.page}`, minLength: 2, maxLength: 12 },
        ),
        (cells) => {
          const rows = cells.map((c) => pv(D + c.minute * 60_000, c.page, sketchText(...c.users), c.views));
          const whole = encodeBlocks(pageViews, 'minute', rows, BLOCK_MAX_BYTES, 'apart');
          expect(whole).toHaveLength(1);
          const b = whole[0]!;
          // What the cut counts: the rows' text, and per bucket its attribute's name, brackets and slack, each text and a comma.
          const need =
            Buffer.byteLength(b.rows) + Object.entries(b.sketches ?? {}).reduce((n, [name, text]) => n + name.length + text.length + 3, 0);
          expect(encodeBlocks(pageViews, 'minute', rows, need, 'apart')).toEqual(whole);
          const cut = encodeBlocks(pageViews, 'minute', rows, need - 1, 'apart');
          expect(cut.length).toBeGreaterThan(1);
          expect(cut.flatMap((c) => decodeBlock(pageViews, c.block, c.rows, { sketches: sketchesOf(c) }))).toEqual(byKey(rows));
        },
      ),
    );
  });

  it('block items carry the sketch attributes, and rowsOfItems reads both forms', () => {
    const items = blockItems(pageViews, 3, rows, 'day');
    expect(items).toHaveLength(1);
    const names = Object.keys(items[0]!).filter((a) => /^h\d+$/.test(a));
    expect(names).toHaveLength(2);
    for (const a of names) expect(items[0]![a]).toEqual({ S: expect.any(String) });
    expect(rowsOfItems(pageViews, items)).toEqual(byKey(rows));
    const [inline] = encodeBlocks(pageViews, 'day', rows);
    const legacy = { ...Object.fromEntries(Object.entries(items[0]!).filter(([a]) => !names.includes(a))), rows: { S: inline!.rows } };
    expect(rowsOfItems(pageViews, [legacy])).toEqual(byKey(rows));
  });

  it('a sketch known by its estimate alone answers its estimate and refuses to merge or be written', () => {
    const s = Sketch.ofEstimate(42);
    expect(estimate(s)).toBe(42);
    expect(s.knownEstimate).toBe(42);
    expect(parseSketch(rows[0]!.values.users__hll!)!.knownEstimate).toBeNull();
    expect(() => s.toText()).toThrow(/estimate alone/);
    expect(() => mergeSketches(s, sketchOf('x'))).toThrow(/estimate alone/);
    expect(() => mergeSketches(sketchOf('x'), s)).toThrow(/estimate alone/);
    expect(() => mergeAll([s, sketchOf('x'), sketchOf('y')])).toThrow(/estimate alone/);
    expect(mergeAll([s, null])).toBe(s);
  });
});

describe('batch queries of sketches apart', () => {
  const read: BatchRead = { pk: 'page_views@day#0000000003#0', grain: 'day', from: D - 10 * DAY, to: D + 3 * DAY };
  const tables = { tables: { speed: 's', batchViews: 'b', control: 'c' } };
  const sketchNames = (r: BatchRead, v = pageViews) =>
    Object.values(batchQueries(tables, v, [r])[0]![0]!.ExpressionAttributeNames ?? {}).filter((a) => /^h\d+$/.test(a));

  it('names the sketch attributes of the buckets from sketchesFrom on, every one without it, none for a view without sketches', () => {
    // 13 days of buckets in range: 13 offsets into their 30-day blocks.
    expect(sketchNames(read)).toHaveLength(13);
    const from = D + 2 * DAY;
    expect(sketchNames({ ...read, sketchesFrom: from })).toEqual([sketchAttribute(from - Math.floor(from / (30 * DAY)) * 30 * DAY)]);
    expect(batchQueries(tables, pageViews, [read])[0]![0]!.ExpressionAttributeNames).toMatchObject({
      '#b': 'block',
      '#r': 'rows',
      '#k': 'sk',
    });
    expect(sketchNames({ ...read, pk: 'revenue_by_country@day#0000000003#0' }, revenue)).toEqual([]);
    // Reads longer than a block name each offset once.
    expect(sketchNames({ ...read, from: D - 90 * DAY })).toHaveLength(30);
  });
});

describe('block items', () => {
  it('key a partition by block start and chunk, with the rows packed, and read back', () => {
    const rows = [revenueRow(D + 30 * DAY + HOUR, 'DE', '1.25'), revenueRow(D + 30 * DAY + 3 * DAY, 'FR', '2')];
    const items = blockItems(revenue, 7, rows);
    const start = Math.floor((D + 30 * DAY) / (30 * DAY)) * 30 * DAY;
    expect(items).toHaveLength(2);
    expect(items[0]).toMatchObject({
      pk: { S: `revenue_by_country#0000000007#${start}` },
      sk: { S: blockSk(Math.floor((D + 30 * DAY) / DAY) * DAY, 0) },
      view: { S: 'revenue_by_country' },
      version: { N: '7' },
      n: { N: '1' },
    });
    expect(items[0]!.grain).toBeUndefined();
    expect(rowsOfItems(revenue, items)).toEqual(rows);
    const rolled = blockItems(revenue, 7, [{ ...rows[0]!, bucket: D + 30 * DAY }], 'day');
    expect(rolled[0]).toMatchObject({ pk: { S: `revenue_by_country@day#0000000007#${start}` }, grain: { S: 'day' } });
    expect(rolled[0]!.sk!.S).toBe(`${pad13(start)}#000`);
  });
});

describe('day blocks', () => {
  const v = view({ name: 'v', dimensions: ['k'], grain: 'minute', metrics: { n: count() } });
  const B0 = Math.floor(Date.UTC(2030, 0, 1) / (30 * DAY)) * 30 * DAY;
  const B1 = B0 + 30 * DAY;
  const days = (start: number, n: number, writer: number) =>
    Object.fromEntries(Array.from({ length: n }, (_, i) => [pad13(start + i * DAY), writer]));

  it('plans the blocks holding a partition the version wrote; a block with a partition older than rollups gets no entry', () => {
    const rebuild = planDayBlocks(v, 4, { ...days(B0, 30, 4), ...days(B1, 2, 4) }, rollupsEntry(v, 4));
    expect(rebuild.rollups?.dayBlocks).toEqual({ [pad13(B0)]: 4, [pad13(B1)]: 4 });
    expect(rebuild.build.map((b) => [b.start, b.partitions.length])).toEqual([
      [B0, 30],
      [B1, 2],
    ]);
    // An increment touching B1's last day: B1 rewritten, B0 kept from the base.
    const inc = planDayBlocks(
      v,
      5,
      { ...days(B0, 30, 4), ...days(B1, 1, 4), ...days(B1 + DAY, 1, 5) },
      rollupsEntry(v, 5, rebuild.rollups),
    );
    expect(inc.rollups?.dayBlocks).toEqual({ [pad13(B0)]: 4, [pad13(B1)]: 5 });
    expect(inc.build.map((b) => b.partitions)).toEqual([
      [
        [pad13(B1), 4],
        [pad13(B1 + DAY), 5],
      ],
    ]);
    // Rollups from version 5 on (the base predates them): B1 holds a writer-4 partition without day rows.
    const legacy = planDayBlocks(v, 5, { ...days(B1, 1, 4), ...days(B1 + DAY, 1, 5) }, { grains: ['hour', 'day'], from: 5 });
    expect(legacy).toEqual({ rollups: { grains: ['hour', 'day'], from: 5, dayBlocks: {} }, build: [] });
    // Views whose partitions are a day block or longer keep none.
    const hourly = view({ name: 'h', dimensions: [], grain: 'hour', metrics: { n: count() } });
    expect(planDayBlocks(hourly, 4, days(B0, 1, 4), rollupsEntry(hourly, 4)).build).toEqual([]);
  });

  it('are referenced by the manifest, and a long day-grain read is one read per block', () => {
    const refs = partitionRefs('v', 5, {
      partitions: days(B0, 2, 5),
      rollups: { grains: ['hour', 'day'], from: 5, dayBlocks: { [pad13(B0)]: 5 } },
    });
    expect(refs.map((r) => r.pk)).toContain(batchDayBlockPk('v', 5, B0));
    const writers = {
      writers: new Map(Object.entries({ ...days(B0, 30, 4), ...days(B1, 30, 5) }).map(([p, w]) => [Number(p), w])),
      rollups: { grains: ['hour', 'day'] as Grain[], from: 4 },
      dayBlocks: new Map([
        [B0, 4],
        [B1, 5],
      ]),
    };
    expect(batchReads(v, 5, 'day', B0 + 10 * DAY, B1 + 20 * DAY, writers)).toEqual([
      { pk: batchDayBlockPk('v', 4, B0), grain: 'day', from: B0 + 10 * DAY, to: B1 },
      { pk: batchDayBlockPk('v', 5, B1), grain: 'day', from: B1, to: B1 + 20 * DAY },
    ]);
    // An unaligned start reads its first day's finer rows from the partition, then the block.
    const reads = batchReads(v, 5, 'day', B0 + 10 * DAY + HOUR, B0 + 20 * DAY, writers);
    expect(reads.map((r) => r.grain)).toEqual(['hour', 'day']);
    expect(reads[1]).toEqual({ pk: batchDayBlockPk('v', 4, B0), grain: 'day', from: B0 + 11 * DAY, to: B0 + 20 * DAY });
    // Without an entry for a block, its days are read per partition.
    const some = { ...writers, dayBlocks: new Map([[B1, 5]]) };
    expect(batchReads(v, 5, 'day', B0 + 28 * DAY, B1 + 2 * DAY, some).map((r) => r.pk)).toEqual([
      batchRollupPk('v', 'day', 4, B0 + 28 * DAY),
      batchRollupPk('v', 'day', 4, B0 + 29 * DAY),
      batchDayBlockPk('v', 5, B1),
    ]);
  });
});
