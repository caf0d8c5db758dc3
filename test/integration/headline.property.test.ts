/**
 * THE HEADLINE PROPERTY: a merged query equals the truth over the copies
 * that count at every instant — before any batch, while batches run (some
 * crash mid-load or before publishing), right after a publish.
 *
 * One local cloud (emulators, both pollers, the real handlers behind the HTTP
 * server) for the file; fast-check draws schedules of operations:
 *   send  — POST /events with new events, client retries of accepted ones
 *           (same id; identical, or a different body), copies in the same
 *           request, late events (hours to days back), bad events;
 *   batch — a batch run to completion, or one that crashes after k loaded
 *           items or right before publishing (the lock is then released as
 *           its expiry would);
 *   query — after the speed poller is idle, GET /views/{name} with a random
 *           range, grain, groupBy and filter; the rows must equal an oracle
 *           (test/support/oracle.ts) over the copies the dedup rule counts
 *           (`countedCopies`) with a 3-second horizon H: a copy resent within H
 *           of the previous copy of its id does not count, one resent later
 *           does. The client knows each accepted copy's body; its arrival
 *           time and sequence number are read from the stream, as Kinesis
 *           stamped them (the k-th copy of an id there is the k-th accepted).
 * The state accumulates across schedules, as a long-running system's would.
 * `npm test` runs 30 schedules; TANDEM_LONG=1 runs 200.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetRecordsCommand, GetShardIteratorCommand, ListShardsCommand } from '@aws-sdk/client-kinesis';
import { DeleteCommand } from '@aws-sdk/lib-dynamodb';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Clients, createClients } from '../../functions/adapters/clients.ts';
import { LOCK_KEY, type RunItem } from '../../functions/batch/control.ts';
import { runBatchToCompletion } from '../../functions/batch/pipeline.ts';
import { SimulatedCrash } from '../../functions/batch/steps.ts';
import { type Config, loadConfig } from '../../functions/config.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { grainRank, QUERY_GRAINS } from '../../functions/core/time.ts';
import { type LocalCloud, startLocalCloud } from '../../local/cloud.ts';
import { countedCopies, oracleRows } from '../support/oracle.ts';

const LONG = process.env.TANDEM_LONG === '1';
const SCHEDULES = Number(process.env.TANDEM_HEADLINE_RUNS ?? (LONG ? 200 : 30));
const KEY = 'headline-key-0123456789';
const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
/** The dedup horizon of this cloud: short, so that resends land both within H of the previous copy and beyond it. */
const H_SECONDS = 3;
const H = H_SECONDS * 1000;

let cloud: LocalCloud;
let clients: Clients;
let config: Config;
let dataDir: string;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'tandem-headline-'));
  // Read by every handler's configuration (and loadConfig below), as a deployment's setting would be.
  process.env.TANDEM_DEDUP_HORIZON_SECONDS = String(H_SECONDS);
  // One-second windows: cutoffs advance within a schedule, so batches cover fresh data too. The
  // cutoff margin stays at its default (5 s): a PutRecords still in flight when the planner probes
  // an idle shard may carry arrival times just below the probe time.
  cloud = await startLocalCloud({
    port: 0,
    demo: false,
    batchEverySeconds: null,
    windowSeconds: 1,
    dataDir,
    apiKey: KEY,
    // No batching windows: idle() returns as soon as what was sent is processed.
    mappings: { speed: { maxBatchingWindowMs: 0, pollIntervalMs: 100 }, archive: { maxBatchingWindowMs: 200, pollIntervalMs: 250 } },
    logger: { info: () => undefined, warn: () => undefined, error: (m, ...x) => console.error(m, ...x) },
  });
  clients = createClients(process.env);
  config = loadConfig(process.env);
  expect(config.settings.dedupHorizonSeconds).toBe(H_SECONDS);
});
afterAll(async () => {
  for (const c of Object.values(clients ?? {})) c.destroy();
  await cloud?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  delete process.env.TANDEM_DEDUP_HORIZON_SECONDS;
});

// ---- the truth ----
/** Every accepted copy of every id, in acceptance order (what the client sent). */
const truth = new Map<string, Record<string, unknown>[]>();
const acceptedIds: string[] = [];
/** What the stream holds, per shard: the copies read so far (arrival, sequence number, id). */
type StreamCopy = { id: string; arrival: number; shard: string; seq: string; stored: Record<string, unknown> };
const stream = new Map<string, { lastSeq?: string; copies: StreamCopy[] }>();

/** Reads the stream's new records (each shard after the last one read). */
async function readStream(): Promise<void> {
  const StreamName = config.streamName;
  for (const shard of (await clients.kinesis.send(new ListShardsCommand({ StreamName }))).Shards ?? []) {
    const s = stream.get(shard.ShardId!) ?? { copies: [] };
    stream.set(shard.ShardId!, s);
    let iterator = (
      await clients.kinesis.send(
        new GetShardIteratorCommand({
          StreamName,
          ShardId: shard.ShardId!,
          ...(s.lastSeq
            ? { ShardIteratorType: 'AFTER_SEQUENCE_NUMBER', StartingSequenceNumber: s.lastSeq }
            : { ShardIteratorType: 'TRIM_HORIZON' }),
        }),
      )
    ).ShardIterator;
    while (iterator) {
      const got = await clients.kinesis.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 10_000 }));
      for (const r of got.Records ?? []) {
        const stored = JSON.parse(Buffer.from(r.Data!).toString('utf8')) as Record<string, unknown>;
        const copy = {
          id: String(stored.id),
          arrival: r.ApproximateArrivalTimestamp!.getTime(),
          shard: shard.ShardId!,
          seq: r.SequenceNumber!,
        };
        s.copies.push({ ...copy, stored });
        s.lastSeq = r.SequenceNumber!;
      }
      if ((got.Records ?? []).length === 0) break;
      iterator = got.NextShardIterator;
    }
  }
}

/**
 * The events that count: every stored copy, in order per id, carries the body of the accepted copy of the
 * same rank; the dedup rule (`countedCopies`, H) picks the copies that count.
 */
async function countedEvents(): Promise<Record<string, unknown>[]> {
  await readStream();
  const copies = [...stream.values()].flatMap((s) => s.copies);
  const rank = new Map<string, number>();
  const bodies = new Map<StreamCopy, Record<string, unknown>>();
  const bySeq = [...copies].sort((a, b) => (BigInt(a.seq) < BigInt(b.seq) ? -1 : BigInt(a.seq) > BigInt(b.seq) ? 1 : 0));
  for (const c of bySeq) {
    const k = rank.get(c.id) ?? 0;
    rank.set(c.id, k + 1);
    const body = truth.get(c.id)?.[k];
    expect(body, `copy ${k + 1} of ${c.id} in the stream was never accepted`).toBeDefined();
    // The rank pairs them; the values that tell a conflicting copy apart must agree.
    expect([c.stored.country, c.stored.amount], `copy ${k + 1} of ${c.id}`).toEqual([body!.country, body!.amount]);
    bodies.set(c, body!);
  }
  for (const [id, sent] of truth) expect(rank.get(id) ?? 0, `accepted copies of ${id} in the stream`).toBe(sent.length);
  const counted = countedCopies(copies, H);
  stats.countedAgain = counted.length - truth.size;
  stats.withinH = copies.length - counted.length;
  return counted.map((c) => bodies.get(c)!);
}
const timing: Record<string, number> = {};
const stats = {
  sent: 0,
  accepted: 0,
  rejected: 0,
  duplicates: 0,
  conflicting: 0,
  late: 0,
  batches: 0,
  published: 0,
  crashed: 0,
  skipped: 0,
  queries: 0,
  rows: 0,
  /** Copies that count again (more than H after the previous copy), and copies that do not (within H). */
  countedAgain: 0,
  withinH: 0,
};

// ---- generators ----
const COUNTRIES = ['DE', 'FR', 'US', null] as const;
const PAGES = ['/', '/pricing', '/docs'] as const;
type EventSpec = {
  type: 'page_view' | 'purchase' | 'signup' | 'custom';
  /** Minutes before now of `ts`; late events go back days. */
  ageMin: number;
  late: boolean;
  country: (typeof COUNTRIES)[number];
  page: (typeof PAGES)[number];
  cents: number | null;
  loadMs: number;
  tsAsNumber: boolean;
  bad: boolean;
};
const eventSpec: fc.Arbitrary<EventSpec> = fc.record({
  type: fc.constantFrom('page_view', 'page_view', 'purchase', 'signup', 'custom'),
  ageMin: fc.integer({ min: 0, max: 90 }),
  late: fc.boolean().map((b) => b && Math.random() < 0.4),
  country: fc.constantFrom(...COUNTRIES),
  page: fc.constantFrom(...PAGES),
  cents: fc.option(fc.integer({ min: -500, max: 99_999 }), { nil: null, freq: 8 }),
  loadMs: fc.integer({ min: 0, max: 5000 }),
  tsAsNumber: fc.boolean(),
  bad: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
});
/** A copy of an accepted id (`fresh`: of an event of this very request, within H of it). */
type Resend = { pick: number; conflicting: boolean; fresh: boolean };
type Op =
  | { kind: 'send'; events: EventSpec[]; resends: Resend[] }
  | { kind: 'batch'; crash: 'none' | 'load' | 'publish'; afterItems: number; waitArchive: boolean }
  | {
      kind: 'query';
      view: number;
      grainUp: number;
      groupBy: 'all' | 'none' | number;
      filter: number | null;
      range: 'default' | 'wide' | 'narrow' | 'late';
    };
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('send' as const),
      events: fc.array(eventSpec, { minLength: 1, maxLength: 8 }),
      resends: fc.array(
        fc.record({ pick: fc.nat(), conflicting: fc.boolean().map((b) => b && Math.random() < 0.5), fresh: fc.boolean() }),
        { maxLength: 3 },
      ),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('batch' as const),
      crash: fc.constantFrom('none', 'none', 'none', 'load', 'publish'),
      afterItems: fc.integer({ min: 1, max: 40 }),
      waitArchive: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('query' as const),
      view: fc.nat({ max: DEMO_VIEWS.length - 1 }),
      grainUp: fc.nat({ max: 3 }),
      groupBy: fc.oneof(fc.constant('all' as const), fc.constant('none' as const), fc.nat({ max: 1 })),
      filter: fc.option(fc.nat({ max: 20 }), { nil: null }),
      range: fc.constantFrom('default', 'wide', 'narrow', 'late'),
    }),
  },
);
const schedule = fc.array(op, { minLength: 2, maxLength: 6 });

// ---- operations ----
async function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(`${cloud.url}${path}`, {
    method,
    headers: { 'x-api-key': KEY, ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

let idCounter = 0;
function buildEvent(s: EventSpec, now: number): Record<string, unknown> {
  const ts = now - s.ageMin * MIN - (s.late ? HOUR + Math.floor(((s.ageMin * 7919) % 2880) * MIN) : 0);
  const e: Record<string, unknown> = { id: `h${++idCounter}`, type: s.type, ts: s.tsAsNumber ? ts : new Date(ts).toISOString() };
  if (s.country !== null) e.country = s.country;
  // user: page_views' distinct(user) (a few users, so the sketches of batch and speed overlap).
  if (s.type === 'page_view') Object.assign(e, { page: s.page, load_ms: s.loadMs, user: `u${s.loadMs % 13}` });
  if (s.type === 'purchase' && s.cents !== null) e.amount = s.cents / 100;
  if (s.bad) e.ts = 'not a time';
  return e;
}

async function send(o: Extract<Op, { kind: 'send' }>): Promise<void> {
  const now = Date.now();
  const events = o.events.map((s) => buildEvent(s, now));
  const own = events.filter((e) => e.ts !== 'not a time');
  for (const r of o.resends) {
    if (acceptedIds.length === 0 && (!r.fresh || own.length === 0)) continue;
    const first = r.fresh && own.length > 0 ? own[r.pick % own.length]! : truth.get(acceptedIds[r.pick % acceptedIds.length]!)![0]!;
    // A conflicting copy (same id, another body): it counts, with its own values, only if it comes more than H after the previous copy.
    events.push(
      r.conflicting
        ? {
            ...first,
            country: 'XX',
            ...(first.type === 'purchase' ? { amount: 12345.67 } : {}),
            ...(first.user ? { user: 'u-other' } : {}),
          }
        : { ...first },
    );
    stats.duplicates++;
    if (r.conflicting) stats.conflicting++;
  }
  const res = await api('POST', '/events', events);
  stats.sent += events.length;
  expect([200, 207, 400], JSON.stringify(res.body)).toContain(res.status);
  const rejected = new Set(((res.body.rejected as { index: number }[] | undefined) ?? []).map((x) => x.index));
  stats.rejected += rejected.size;
  events.forEach((e, i) => {
    const isBad = e.ts === 'not a time';
    expect(rejected.has(i), JSON.stringify(e)).toBe(isBad);
    if (isBad) return;
    stats.accepted++;
    const id = String(e.id);
    const copies = truth.get(id);
    if (copies) copies.push(e);
    else {
      truth.set(id, [e]);
      acceptedIds.push(id);
      if (o.events[i]?.late) stats.late++;
    }
  });
}

async function batch(o: Extract<Op, { kind: 'batch' }>): Promise<void> {
  const t = performance.now();
  if (o.waitArchive) await cloud.idle(['archive']);
  timing.archiveIdle = (timing.archiveIdle ?? 0) + performance.now() - t;
  let crashed = false;
  const run: RunItem = await runBatchToCompletion(clients, config, {
    lockTtlSeconds: 30,
    hooks: {
      afterItems: (_view, written) => {
        if (o.crash === 'load' && written >= o.afterItems) {
          crashed = true;
          throw new SimulatedCrash(`after ${written} loaded items`);
        }
      },
      afterStage: (stage) => {
        if (o.crash === 'publish' && stage === 'publish') {
          crashed = true;
          throw new SimulatedCrash('before publish');
        }
      },
    },
  });
  stats.batches++;
  if (crashed) {
    stats.crashed++;
    expect(run.state).toBe('RUNNING');
    // The crashed process holds the lock until it expires; expire it now.
    await clients.doc.send(new DeleteCommand({ TableName: config.tables.control, Key: LOCK_KEY }));
  } else if (run.state === 'SKIPPED') stats.skipped++;
  else {
    expect(run.state, run.error).toBe('SUCCEEDED');
    stats.published++;
  }
}

function dimValues(d: string): (string | null)[] {
  if (d === 'country') return [...COUNTRIES, 'XX'];
  if (d === 'page') return [...PAGES];
  if (d === 'type') return ['page_view', 'purchase', 'signup', 'custom'];
  return [];
}

async function query(o: Extract<Op, { kind: 'query' }>): Promise<void> {
  const view = DEMO_VIEWS[o.view]!;
  const grains = QUERY_GRAINS.filter((g) => grainRank(g) >= grainRank(view.grain));
  const grain = grains[o.grainUp % grains.length]!;
  const params = new URLSearchParams();
  if (grain !== view.grain || o.grainUp % 2 === 1) params.set('grain', grain);
  if (o.groupBy === 'none') params.set('groupBy', '');
  else if (typeof o.groupBy === 'number') params.set('groupBy', view.dimensions[o.groupBy % view.dimensions.length]!);
  if (o.filter !== null && view.dimensions.length > 0) {
    const d = view.dimensions[o.filter % view.dimensions.length]!;
    const value = dimValues(d)[o.filter % dimValues(d).length];
    if (value !== null && value !== undefined) params.set(d, value);
  }
  const now = Date.now();
  const iso = (t: number) => new Date(t).toISOString();
  const range =
    o.range === 'wide'
      ? [iso(Math.floor((now - 4 * DAY) / DAY) * DAY), iso(Math.ceil((now + HOUR) / DAY) * DAY)]
      : o.range === 'narrow'
        ? [iso(Math.floor((now - 2 * HOUR) / HOUR) * HOUR), iso(now + HOUR)]
        : o.range === 'late'
          ? [String(now - 3 * DAY), String(now - HOUR)]
          : undefined;
  if (range) {
    params.set('from', range[0]!);
    params.set('to', range[1]!);
  }
  const t = performance.now();
  await cloud.idle(['speed']);
  timing.idle = (timing.idle ?? 0) + performance.now() - t;
  const res = await api('GET', `/views/${view.name}?${params}`);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  const groupBy = params.has('groupBy') ? view.dimensions.filter((d) => params.get('groupBy')!.split(',').includes(d)) : view.dimensions;
  const filters = Object.fromEntries(view.dimensions.filter((d) => params.has(d)).map((d) => [d, params.get(d)!]));
  // The response says which range it answered (the defaults depend on the server's clock).
  const spec = { from: Date.parse(String(res.body.from)), to: Date.parse(String(res.body.to)), grain, groupBy, filters };
  expect(res.body.grain).toBe(grain);
  const expected = oracleRows(view, await countedEvents(), spec);
  expect(res.body.rows, `${view.name}?${params} batch=${JSON.stringify(res.body.batch)}`).toEqual(expected);
  stats.queries++;
  stats.rows += expected.length;
}

describe('headline property: merged queries equal the truth over the copies that count', () => {
  it(`holds over ${SCHEDULES} random schedules of sends, batch runs (some crashing) and queries`, async () => {
    await fc.assert(
      fc.asyncProperty(schedule, async (ops) => {
        for (const o of ops) {
          const t = performance.now();
          if (o.kind === 'send') await send(o);
          else if (o.kind === 'batch') await batch(o);
          else await query(o);
          timing[o.kind] = (timing[o.kind] ?? 0) + performance.now() - t;
        }
      }),
      // The cloud's state carries over between schedules, so a failing one cannot be replayed alone: no shrinking.
      { numRuns: SCHEDULES, endOnFailure: true },
    );
    // Finally: everything archived, one more batch, and every view agrees with the truth in full.
    await cloud.idle();
    await batch({ kind: 'batch', crash: 'none', afterItems: 0, waitArchive: true });
    for (let v = 0; v < DEMO_VIEWS.length; v++)
      await query({ kind: 'query', view: v, grainUp: 0, groupBy: 'all', filter: null, range: 'wide' });
    console.log(
      'headline schedules',
      SCHEDULES,
      JSON.stringify(stats),
      JSON.stringify(Object.fromEntries(Object.entries(timing).map(([k, v]) => [k, Math.round(v)]))),
    );
    expect(stats.published).toBeGreaterThan(0);
    expect(stats.queries).toBeGreaterThan(SCHEDULES / 2);
    expect(stats.duplicates).toBeGreaterThan(0);
    expect(stats.withinH).toBeGreaterThan(0);
    expect(stats.countedAgain).toBeGreaterThan(0);
  }, 900_000);
});
