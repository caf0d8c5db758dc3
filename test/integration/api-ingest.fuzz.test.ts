/**
 * Fuzzing POST /events (fast-check) against the real Kinesis emulator: bodies of
 * valid events, events with exactly one fault, junk items, arbitrary JSON and
 * arbitrary text. Never a 5xx; never an invalid event accepted; every
 * rejection names the faulty field; every valid neighbour accepted, finally
 * found in the stream exactly once, as sent, and counted once by the real
 * speed layer.
 */

import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { cellsOf } from '../../functions/core/keys.ts';
import { DEFAULT_SETTINGS } from '../../functions/core/settings.ts';
import { createIngestHandler } from '../../functions/ingest.ts';
import { processSpeedBatch } from '../../functions/speed/process.ts';
import { lambdaContext, parse, postEvents, readStream, silentLogger } from '../support/api.ts';
import { startTestCloud, type TestCloud } from '../support/cloud.ts';

const RUNS = Number(process.env.TANDEM_FUZZ_RUNS ?? 500);

let cloud: TestCloud;
beforeAll(async () => {
  cloud = await startTestCloud({ shards: 1 });
});
afterAll(async () => {
  await cloud?.stop();
});

// ---- an independent oracle of the event contract (docs/api.md, POST /events), written for the test ----
const NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const METRIC_FIELDS: Record<string, string[]> = { purchase: ['amount'], page_view: ['load_ms'] };
const Y2000 = Date.UTC(2000, 0, 1);
const Y3000 = Date.UTC(3000, 0, 1);
function exactEnough(n: number): boolean {
  if (!Number.isFinite(n)) return false;
  const [mant = '', exp = '0'] = n.toExponential().split('e');
  const digits = mant.replace('-', '').replace('.', '').replace(/0+$/, '');
  const fraction = Math.max(0, digits.length - 1 - Number(exp));
  return digits.length <= 15 && fraction <= 9;
}
function validTs(ts: unknown): boolean {
  if (typeof ts === 'number') return Number.isInteger(ts) && ts >= Y2000 && ts < Y3000;
  if (typeof ts !== 'string') return false;
  if (/^\d{1,16}$/.test(ts)) return Number(ts) >= Y2000 && Number(ts) < Y3000;
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,3})?Z$/.exec(ts);
  if (!m) return false;
  const t = Date.parse(ts);
  return Number.isFinite(t) && new Date(t).getUTCDate() === Number(m[3]) && t >= Y2000 && t < Y3000;
}
/** Is `e` an acceptable event? Only decides the shapes this test generates (ISO with Z, epoch ms). */
function oracleValid(e: unknown): boolean {
  if (e === null || typeof e !== 'object' || Array.isArray(e)) return false;
  const o = e as Record<string, unknown>;
  if (Object.keys(o).some((k) => !NAME.test(k))) return false;
  if (JSON.stringify(o).length > 64 * 1024) return false;
  if (o.id !== undefined && !(typeof o.id === 'string' && o.id.length >= 1 && o.id.length <= 128)) return false;
  if (!(typeof o.type === 'string' && o.type.length >= 1 && o.type.length <= 128)) return false;
  if (!validTs(o.ts)) return false;
  for (const [k, v] of Object.entries(o)) {
    if (k === 'ts') continue;
    if (!(v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v)))) return false;
  }
  // Own keys only: a type such as "__proto__" must not reach Object.prototype.
  for (const f of Object.hasOwn(METRIC_FIELDS, o.type as string) ? (METRIC_FIELDS[o.type as string] ?? []) : []) {
    const v = o[f];
    if (v !== undefined && v !== null && !(typeof v === 'number' && exactEnough(v))) return false;
  }
  return true;
}

// ---- generators ----
const scalar = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);
const extraName = fc
  .stringMatching(/^[a-z_][a-z0-9_]{0,10}$/)
  .filter((n) => !['id', 'type', 'ts', 'events', 'amount', 'load_ms', '__proto__'].includes(n));
const goodTs = fc.oneof(
  fc.integer({ min: Y2000, max: Y3000 - 1 }),
  fc.integer({ min: Y2000, max: Date.UTC(2100, 0, 1) }).map((t) => new Date(t).toISOString()),
  fc.integer({ min: Y2000, max: Date.UTC(2100, 0, 1) }).map((t) => String(t)),
);
const money = fc.integer({ min: -1_000_000_00, max: 1_000_000_00 }).map((c) => c / 100);
const baseEvent = fc
  .record({
    type: fc.oneof(fc.constantFrom('page_view', 'purchase', 'signup'), fc.string({ minLength: 1, maxLength: 20 })),
    ts: goodTs,
    extras: fc.dictionary(extraName, scalar, { maxKeys: 4 }),
    amount: fc.option(money, { nil: undefined }),
    load_ms: fc.option(fc.integer({ min: 0, max: 100_000 }), { nil: undefined }),
    withId: fc.boolean(),
  })
  .map(({ type, ts, extras, amount, load_ms, withId }) => {
    const e: Record<string, unknown> = { type, ts, ...extras };
    if (amount !== undefined) e.amount = amount;
    if (load_ms !== undefined) e.load_ms = load_ms;
    return { event: e, withId };
  });

type Fault = { field: string; set?: Record<string, unknown>; drop?: string };
const fault: fc.Arbitrary<Fault> = fc.oneof(
  fc.constantFrom<Fault>(
    { field: 'ts', drop: 'ts' },
    { field: 'ts', set: { ts: 'yesterday' } },
    { field: 'ts', set: { ts: '2024-02-30T00:00:00Z' } },
    { field: 'ts', set: { ts: 1.5 } },
    { field: 'ts', set: { ts: -5 } },
    { field: 'ts', set: { ts: true } },
    { field: 'ts', set: { ts: null } },
    { field: 'ts', set: { ts: 1e20 } },
    { field: 'type', drop: 'type' },
    { field: 'type', set: { type: '' } },
    { field: 'type', set: { type: 7 } },
    { field: 'type', set: { type: 't'.repeat(129) } },
    { field: 'id', set: { id: '' } },
    { field: 'id', set: { id: 12 } },
    { field: 'id', set: { id: 'i'.repeat(129) } },
    { field: 'amount', set: { type: 'purchase', amount: 'ten' } },
    { field: 'amount', set: { type: 'purchase', amount: 0.1234567891 } },
    { field: 'amount', set: { type: 'purchase', amount: 1234567890.123456 } },
    { field: 'amount', set: { type: 'purchase', amount: true } },
    { field: 'load_ms', set: { type: 'page_view', load_ms: '120ms' } },
    { field: 'event', set: { blob: 'x'.repeat(70_000) } },
  ),
  fc.tuple(extraName, fc.constantFrom<unknown>({ a: 1 }, [1, 2], [], {})).map(([name, value]) => ({ field: name, set: { [name]: value } })),
  fc.constantFrom('bad-name', '1abc', 'a b', 'é', '', 'x'.repeat(65)).map((name) => ({ field: name || 'event', set: { [name]: 1 } })),
);
const junk = fc.oneof(fc.integer(), fc.string({ maxLength: 8 }), fc.constant(null), fc.array(fc.integer(), { maxLength: 2 }), fc.boolean());

type Item =
  | { kind: 'valid'; event: Record<string, unknown>; withId: boolean }
  | { kind: 'invalid'; event: Record<string, unknown>; withId: boolean; fault: Fault }
  | { kind: 'junk'; value: unknown };
const item: fc.Arbitrary<Item> = fc.oneof(
  { weight: 5, arbitrary: baseEvent.map((b) => ({ kind: 'valid' as const, ...b })) },
  { weight: 3, arbitrary: fc.tuple(baseEvent, fault).map(([b, f]) => ({ kind: 'invalid' as const, ...b, fault: f })) },
  { weight: 1, arbitrary: junk.map((value) => ({ kind: 'junk' as const, value })) },
);
const body = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({ shape: fc.constantFrom('array', 'wrapped', 'single'), items: fc.array(item, { minLength: 1, maxLength: 8 }) }),
  },
  { weight: 1, arbitrary: fc.record({ shape: fc.constant('json' as const), value: fc.jsonValue({ maxDepth: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ shape: fc.constant('text' as const), value: fc.string({ maxLength: 40 }) }) },
);

describe('POST /events fuzzing', () => {
  it(`never 5xx, never accepts an invalid event, names every rejected field (${RUNS} bodies)`, async () => {
    const handler = createIngestHandler({
      kinesis: cloud.clients.kinesis,
      streamName: cloud.names.TANDEM_STREAM_NAME!,
      views: DEMO_VIEWS,
      logger: silentLogger(),
    });
    const expected = new Map<string, Record<string, unknown>>();
    let n = 0;
    const statuses: Record<number, number> = {};
    await fc.assert(
      fc.asyncProperty(body, async (b) => {
        n++;
        if (b.shape === 'json' || b.shape === 'text') {
          const raw = b.shape === 'json' ? JSON.stringify(b.value) : b.value;
          const r = parse(await handler(postEvents(raw), lambdaContext()));
          statuses[r.status] = (statuses[r.status] ?? 0) + 1;
          expect([200, 207, 400, 413]).toContain(r.status);
          if (r.status >= 400) expect(typeof r.body.error).toBe('string');
          for (const x of (r.body.rejected as { field: string }[] | undefined) ?? []) expect(x.field).toMatch(/./);
          if (r.status < 300) {
            const parsed = JSON.parse(raw) as unknown;
            const list = Array.isArray(parsed) ? parsed : ((parsed as { events?: unknown[] }).events ?? [parsed]);
            const rejected = new Set((r.body.rejected as { index: number }[]).map((x) => x.index));
            list.forEach((e, i) => {
              expect(oracleValid(e) ? !rejected.has(i) : rejected.has(i)).toBe(true);
            });
            (r.body.ids as string[]).forEach((id, k) => {
              const accepted = list.filter((_, i) => !rejected.has(i))[k] as Record<string, unknown>;
              expected.set(id, { ...accepted, id });
            });
          }
          return;
        }
        // Events with ids get unique ones; faults are applied after, so a bad id stays bad.
        const values = b.items.map((it, i) => {
          if (it.kind === 'junk') return it.value;
          const e: Record<string, unknown> = { ...it.event };
          if (it.withId) e.id = `f${n}-${i}`;
          if (it.kind === 'invalid') {
            if (it.fault.drop) delete e[it.fault.drop];
            Object.assign(e, it.fault.set ?? {});
          }
          return e;
        });
        const payload = b.shape === 'single' ? values[0] : b.shape === 'wrapped' ? { events: values } : values;
        const list = b.shape === 'single' ? values.slice(0, 1) : values;
        const items = b.shape === 'single' ? b.items.slice(0, 1) : b.items;
        const r = parse(await handler(postEvents(JSON.stringify(payload)), lambdaContext()));
        statuses[r.status] = (statuses[r.status] ?? 0) + 1;
        expect([200, 207, 400]).toContain(r.status);
        if (b.shape === 'single' && r.status === 400 && r.body.rejected === undefined) {
          // a single non-object body is a body-level error: it must still name no 5xx and carry an error
          expect(items[0]!.kind).toBe('junk');
          return;
        }
        const rejected = new Map((r.body.rejected as { index: number; field: string; message: string }[]).map((x) => [x.index, x]));
        items.forEach((it, i) => {
          const rej = rejected.get(i);
          if (it.kind === 'valid') expect(rej, `item ${i} is valid: ${JSON.stringify(list[i])}`).toBeUndefined();
          else if (it.kind === 'junk') expect(rej?.field).toBe('event');
          else expect(rej?.field, JSON.stringify(list[i]).slice(0, 200)).toBe(it.fault.field);
          if (rej) expect(rej.message.length).toBeGreaterThan(3);
          expect(oracleValid(list[i])).toBe(rej === undefined);
        });
        const acceptedIdx = items.map((_, i) => i).filter((i) => !rejected.has(i));
        expect(r.body.accepted ?? 0).toBe(acceptedIdx.length);
        expect(r.status).toBe(acceptedIdx.length === 0 ? 400 : rejected.size > 0 ? 207 : 200);
        if (acceptedIdx.length > 0) {
          const ids = r.body.ids as string[];
          expect(ids).toHaveLength(acceptedIdx.length);
          acceptedIdx.forEach((i, k) => {
            const e = list[i] as Record<string, unknown>;
            if (e.id !== undefined) expect(ids[k]).toBe(e.id);
            expected.set(ids[k]!, { ...e, id: ids[k] });
          });
        }
      }),
      { numRuns: RUNS },
    );
    // Every accepted event is in the stream exactly once, as sent (with its id), under its id as partition key.
    const recs = await readStream(cloud.clients.kinesis, cloud.names.TANDEM_STREAM_NAME!);
    expect(recs.length).toBe(expected.size);
    for (const r of recs) {
      expect(r.partitionKey).toBe((r.data as { id: string }).id);
      // As JSON carries it: -0 is sent as 0 (JSON has no negative zero).
      expect(r.data).toEqual(JSON.parse(JSON.stringify(expected.get(r.partitionKey))));
    }
    expect(Object.keys(statuses).sort()).toEqual(expect.arrayContaining(['200', '207', '400']));

    // ...and later counted: the real speed layer over what the stream holds counts every accepted event once.
    const res = await processSpeedBatch(
      recs.map((r) => ({ shard: r.shard, seq: r.seq, arrival: r.arrival, data: Buffer.from(JSON.stringify(r.data)) })),
      {
        ddb: cloud.clients.dynamodb,
        s3: cloud.clients.s3,
        tables: {
          speed: cloud.names.TANDEM_SPEED_TABLE!,
          dedup: cloud.names.TANDEM_DEDUP_TABLE!,
          control: cloud.names.TANDEM_CONTROL_TABLE!,
        },
        failureBucket: cloud.names.TANDEM_FAILURE_BUCKET!,
        views: DEMO_VIEWS,
        settings: DEFAULT_SETTINGS,
      },
    );
    expect(res.failures).toEqual([]);
    expect(res.stats.poison).toBe(0);
    const counted = new Map<string, number>();
    let start: Record<string, unknown> | undefined;
    do {
      const page = await cloud.clients.doc.send(
        new ScanCommand({ TableName: cloud.names.TANDEM_SPEED_TABLE!, ...(start && { ExclusiveStartKey: start }) }),
      );
      for (const item of page.Items ?? []) {
        if (item.view !== 'events_by_type') continue;
        for (const cell of cellsOf(Number(item.slot), item)) {
          const type = String(cell.dims[0]);
          counted.set(type, (counted.get(type) ?? 0) + Number(cell.columns.events__count));
        }
      }
      start = page.LastEvaluatedKey;
    } while (start);
    const truth = new Map<string, number>();
    for (const e of expected.values()) truth.set(String(e.type), (truth.get(String(e.type)) ?? 0) + 1);
    expect(counted).toEqual(truth);
  });
});
