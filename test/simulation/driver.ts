/**
 * Runs one schedule against a World and checks Tandem after every query.
 *
 * The oracle is the client's own ledger, written independently of the
 * product: the events ingest acknowledged, the first acknowledged copy per id
 * (a client sends a changed copy of an id only after the first was
 * acknowledged, so the first acknowledged copy is the first arrival; copies
 * that were never acknowledged are resent unchanged until they are). The
 * expected rows are test/support/oracle.ts `oracleRows` over those events
 * (shared with the headline property test; it uses none of functions/core).
 *
 * Before every query the driver waits until both event source mappings have
 * applied everything the stream holds (World.idle): the answer is compared
 * with the truth of all acknowledged events, not with "what has been applied".
 *
 * Checks after every query: (1) rows equal the oracle's; (2) per event type,
 * the totals equal the number of acknowledged ids (nothing lost, nothing
 * counted twice); (3) the published batch version and cutoff never go back
 * except by a rollback; (4) every poison record is in the failures bucket,
 * counted once by each consumer, and nothing else is in that bucket. At the
 * end of a schedule, with the faults off: a batch run must publish a cutoff
 * past every arrival, the same checks run on every view, and the raw archive
 * must hold every acknowledged id and no poison record.
 */

import { isDeepStrictEqual } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { DeleteItemCommand, ScanCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { newRunId, type RunItem } from '../../functions/batch/control.ts';
import { batchContext, errorText } from '../../functions/batch/pipeline.ts';
import { failStep, planStep, publishStep, viewStep } from '../../functions/batch/steps.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { padSeq } from '../../functions/core/record.ts';
import type { View } from '../../functions/core/views.ts';
import { rng } from '../support/batch.ts';
import { type OracleSpec, oracleRows } from '../support/oracle.ts';
import { diagnose, streamEntries } from './diagnose.ts';
import type { PutFault } from './faults.ts';
import { LOCK_TTL_S, type Logger, SIM_SETTINGS, type SimCloud, SimError, World } from './harness.ts';
import { describeStep, type EventDraw, type EventType, type QueryDraw, type Step } from './schedule.ts';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const isoOf = (ms: unknown) => (typeof ms === 'number' && Number.isFinite(ms) ? new Date(ms).toISOString() : String(ms));

export type Ev = Record<string, unknown> & { id: string; type: string; ts: string | number };

/** A check that failed: which one, at which step, and what differed. */
export class CheckFailure extends Error {
  constructor(
    readonly check: string,
    message: string,
  ) {
    super(`${check}: ${message}`);
    this.name = 'CheckFailure';
  }
}

export interface SeedResult {
  readonly seed: number;
  readonly steps: number;
  readonly ms: number;
  /** Faults injected (that fired), by kind. */
  readonly faults: Record<string, number>;
  readonly queries: number;
  readonly checks: number;
  readonly batches: Record<string, number>;
  readonly events: { sent: number; acknowledged: number; rejected: number; late: number; retried: number; poison: number };
  readonly failure?: { readonly step: number; readonly what: string; readonly message: string };
  readonly notes: readonly string[];
}

export interface RunOptions {
  readonly log?: Logger;
  /** Log every step (else only a failing seed's log is printed by the caller). */
  readonly verbose?: boolean;
}

const COUNTRIES = ['DE', 'FR', 'US', 'JP', 'BR', 'IN'];
const PAGES = ['/', '/pricing', '/docs', '/signup'];
const TYPES = ['page_view', 'purchase', 'signup', 'click'];
/** Values a query filter may ask for, per dimension (the last one matches nothing). */
const FILTER_VALUES: Record<string, readonly string[]> = {
  country: [...COUNTRIES, 'XX'],
  page: [...PAGES, '/none'],
  type: [...TYPES, 'none'],
};
const GRAINS = ['minute', 'hour', 'day', 'all'] as const;
const GRAIN_MS = { minute: 60_000, hour: 3_600_000, day: 86_400_000 } as const;

/** The client's ledger: the oracle's input. */
class Ledger {
  /** id -> the first acknowledged copy. */
  readonly acked = new Map<string, Ev>();
  /** Ids sent with a valid event, in order (what a client may resend). */
  readonly sent: string[] = [];
  /** Valid events sent but not acknowledged yet: resent unchanged until they are. */
  readonly unacked = new Map<string, Ev>();
  readonly poison: { shard: string; seq: string; variant: number }[] = [];
  events(): Ev[] {
    return [...this.acked.values()];
  }
}

interface Expected {
  /** Valid: the event; bad: the field ingest must name. */
  readonly event?: Ev;
  readonly badField?: string;
  readonly payload: unknown;
}

/** Runs one schedule on a fresh World; never throws (a failure is in the result). */
export async function runSeed(
  cloud: SimCloud,
  seed: number,
  steps: readonly Step[],
  opts: RunOptions = {},
): Promise<SeedResult & { log: string[] }> {
  const lines: string[] = [];
  const log = (line: string) => {
    lines.push(line);
    if (opts.verbose) opts.log?.(line);
  };
  const t0 = Date.now();
  const r = rng(seed ^ 0x5eed);
  const choose = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const world = new World(cloud, {
    seed,
    shards: choose([1, 2, 2, 3]),
    speedBatchSize: choose([3, 10, 50, 100]),
    archiveBatchSize: choose([7, 100, 1000]),
    log,
  });
  log(
    `seed ${seed}: ${steps.length} steps, ${world.o.shards} shard(s), speed batch ${world.o.speedBatchSize}, archive batch ${world.o.archiveBatchSize}, prefix ${world.prefix}`,
  );
  const d = new Driver(world, seed, log);
  let failure: SeedResult['failure'];
  let stepIndex = -1;
  try {
    await cloud.ensureUp();
    await world.start();
    for (stepIndex = 0; stepIndex < steps.length; stepIndex++) {
      const s = steps[stepIndex]!;
      const t = Date.now();
      await d.step(s);
      log(`#${stepIndex} ${describeStep(s)} (${Date.now() - t} ms)`);
    }
    stepIndex = steps.length;
    log(`#${stepIndex} final checks`);
    await d.final();
  } catch (e) {
    const what = e instanceof CheckFailure ? e.check : e instanceof SimError ? 'harness' : 'error';
    failure = { step: stepIndex, what, message: e instanceof Error ? `${e.message}${what === 'error' ? `\n${e.stack}` : ''}` : String(e) };
    log(`FAILED at step #${stepIndex} (${what}): ${failure.message}`);
    log(`mapping stats: ${JSON.stringify(world.stats())}`);
    for (const w of world.warnings.slice(-40)) log(`  warn ${w}`);
    if (e instanceof CheckFailure) {
      try {
        for (const line of await diagnose(world, [...d.ledger.acked.keys()])) log(`  diag ${line}`);
      } catch (err) {
        log(`  diagnosis failed: ${errorText(err)}`);
      }
    }
  } finally {
    await world.close().catch((e) => log(`close failed: ${errorText(e)}`));
  }
  return {
    seed,
    steps: steps.length,
    ms: Date.now() - t0,
    faults: d.faults(),
    queries: d.queries,
    checks: d.checks,
    batches: d.batches,
    events: d.eventStats(),
    notes: d.notes,
    ...(failure ? { failure } : {}),
    log: lines,
  };
}

class Driver {
  readonly ledger = new Ledger();
  queries = 0;
  checks = 0;
  readonly batches: Record<string, number> = { succeeded: 0, skipped: 0, failed: 0, crashed: 0, refused: 0 };
  private readonly counts: Record<string, number> = {};
  /** Things worth a look that are not failures (e.g. a batch run that failed on its own). */
  readonly notes: string[] = [];
  private n = 0;
  private rejectedEvents = 0;
  private lateEvents = 0;
  private retriedEvents = 0;
  /** The last published pointer seen, and whether a rollback may have moved it back since. */
  private lastPointer: { version: number; cutoff: number } | null = null;
  /** Versions seen published, for rollback targets. */
  private readonly published = new Set<number>();
  private readonly random: () => number;

  constructor(
    readonly world: World,
    readonly seed: number,
    readonly log: Logger,
  ) {
    this.random = rng(seed * 7919 + 1);
  }

  private count(kind: string, by = 1): void {
    this.counts[kind] = (this.counts[kind] ?? 0) + by;
  }

  faults(): Record<string, number> {
    const w = this.world;
    const out: Record<string, number> = { ...this.counts };
    const add = (prefix: string, fired: Record<string, number>) => {
      for (const [k, v] of Object.entries(fired)) if (v > 0) out[`${prefix}.${k}`] = (out[`${prefix}.${k}`] ?? 0) + v;
    };
    add('putRecords', w.ingest.fired);
    add('speed.write', w.speedSeam.fired);
    add('archive.write', w.archiveSeam.fired);
    add('speed.delivery', w.speedHook.fired);
    add('archive.delivery', w.archiveHook.fired);
    for (const [stage, v] of Object.entries(w.batch.fired)) if (v > 0) out[`batch.${stage}`] = (out[`batch.${stage}`] ?? 0) + v;
    return out;
  }

  eventStats(): SeedResult['events'] {
    return {
      sent: this.ledger.sent.length,
      acknowledged: this.ledger.acked.size,
      rejected: this.rejectedEvents,
      late: this.lateEvents,
      retried: this.retriedEvents,
      poison: this.ledger.poison.length,
    };
  }

  async step(s: Step): Promise<void> {
    const w = this.world;
    switch (s.kind) {
      case 'send':
        return this.send(s.shape, s.events, s.fault);
      case 'poison':
        return this.poison(s.variant, s.count);
      case 'writeFault':
        (s.consumer === 'speed' ? w.speedSeam : w.archiveSeam).arm(s.fault);
        return;
      case 'deliveryFault':
        (s.consumer === 'speed' ? w.speedHook : w.archiveHook).arm(s.fault);
        return;
      case 'batch':
        return this.batch(s.via, s.fault);
      case 'concurrentBatch':
        return this.concurrentBatch();
      case 'rollback':
        return this.rollback(s.back);
      case 'restartWorkers':
        this.count('restart.workers');
        return w.restartWorkers();
      case 'restartCloud': {
        this.count(s.hard ? 'restart.cloud.sigkill' : 'restart.cloud.sigterm');
        await w.restartCloud(s.hard);
        // The stream must still hold every acknowledged event, even after a SIGKILL at any moment.
        await this.checkStreamKeptAcknowledged();
        return;
      }
      case 'reshard': {
        const what = await w.reshard(s.how, s.pick);
        this.log(`   ${what}`);
        if (!what.startsWith('not')) this.count(`reshard.${s.how}`);
        return;
      }
      case 'query':
        return this.query(s.q);
      case 'queryDuringBatch':
        return this.queryDuringBatch(s.q, s.hold);
      case 'burst':
        return this.burst(s.requests, s.perRequest, s.copies);
      case 'pause':
        return sleep(s.ms);
      case 'sabotage':
        return this.sabotage(s.what);
    }
  }

  // ---- sends ----------------------------------------------------------------------------------

  private newEvent(d: Extract<EventDraw, { kind: 'new' }>, now: number): Ev {
    const id = `s${this.seed}-e${this.n++}`;
    const tsMs = d.lateMin === 0 ? now - Math.floor(this.random() * 3000) : now - d.lateMin * 60_000 - Math.floor(this.random() * 60_000);
    if (d.lateMin > 0) this.lateEvents++;
    const ts = d.isoTs ? new Date(tsMs).toISOString() : tsMs;
    const country = COUNTRIES[d.country % COUNTRIES.length]!;
    const e: Ev = { id, type: d.type, ts };
    if (d.type === 'page_view') Object.assign(e, { page: PAGES[d.page % PAGES.length], country, load_ms: d.loadMs });
    else if (d.type === 'purchase') Object.assign(e, { country, amount: d.amount / 100 });
    else if (d.type === 'signup') Object.assign(e, { country, plan: d.page % 2 === 0 ? 'free' : 'team' });
    else Object.assign(e, { target: `button-${d.page}` });
    if (d.odd === 'noAmount') delete e.amount;
    if (d.odd === 'nullCountry' && 'country' in e) e.country = null;
    if (d.odd === 'noCountry') delete e.country;
    return e;
  }

  /** Events ingest must reject, and the field it must name. */
  private badEvent(variant: number, now: number): { payload: unknown; field: string } {
    const id = `s${this.seed}-bad${this.n++}`;
    switch (variant % 8) {
      case 0:
        return { payload: { id, ts: now }, field: 'type' };
      case 1:
        return { payload: { id, type: 'click', ts: 'not a time' }, field: 'ts' };
      case 2:
        return { payload: { id, type: 'purchase', ts: now, country: 'DE', amount: '12.50' }, field: 'amount' };
      case 3:
        return { payload: { id, type: 'click', ts: now, meta: { a: 1 } }, field: 'meta' };
      case 4:
        return { payload: { id: '', type: 'click', ts: now }, field: 'id' };
      case 5:
        return { payload: { id, type: 'click', ts: now, 'bad-name': 1 }, field: 'bad-name' };
      case 6:
        return { payload: 'just a string', field: 'event' };
      default:
        return { payload: { id: 'x'.repeat(129), type: 'click', ts: now }, field: 'id' };
    }
  }

  private async send(shape: 'single' | 'array' | 'wrapped', draws: readonly EventDraw[], fault: PutFault | null): Promise<void> {
    const now = Date.now();
    const expected: Expected[] = [];
    for (const d of draws) {
      if (d.kind === 'bad') {
        const b = this.badEvent(d.variant, now);
        expected.push({ payload: b.payload, badField: b.field });
        continue;
      }
      if (d.kind === 'retry' && this.ledger.sent.length > 0) {
        const id = this.ledger.sent[d.pick % this.ledger.sent.length]!;
        const acked = this.ledger.acked.get(id);
        const base = acked ?? this.ledger.unacked.get(id)!;
        // A changed copy only of an acknowledged event: the acknowledged copy arrived first, so it wins.
        // Other values, sometimes another type: a later copy must not count, not even in a view the first copy's type is not in.
        const e: Ev =
          acked && d.changed
            ? {
                ...base,
                amount: d.amount / 100,
                country: COUNTRIES[d.country % COUNTRIES.length]!,
                ...(d.amount % 3 === 0 && { type: TYPES[d.amount % TYPES.length]! }),
              }
            : { ...base };
        if (acked && d.changed) this.count('client.retry.changed');
        else this.count('client.retry.same');
        this.retriedEvents++;
        expected.push({ payload: e, event: e });
        continue;
      }
      const e = this.newEvent(
        d.kind === 'new'
          ? d
          : { kind: 'new', type: 'click', lateMin: 0, isoTs: false, country: 0, page: 0, amount: 1, loadMs: 1, odd: 'none' },
        now,
      );
      this.ledger.sent.push(e.id);
      this.ledger.unacked.set(e.id, e);
      expected.push({ payload: e, event: e });
    }
    if (fault) this.world.ingest.arm(fault, this.random);
    try {
      const payloads = expected.map((x) => x.payload);
      const body = shape === 'single' && payloads.length === 1 ? payloads[0] : shape === 'wrapped' ? { events: payloads } : payloads;
      await this.post(body, expected);
      // The client resends what was not acknowledged, unchanged, until it is (faults off after 3 rounds).
      for (let round = 1; this.pendingOf(expected).length > 0; round++) {
        if (round > 8) throw new SimError(`events still not acknowledged after ${round - 1} resends`);
        if (round > 3) this.world.ingest.arm(undefined, this.random);
        const pending = this.pendingOf(expected);
        this.count('client.resend503', pending.length);
        await sleep(20 * round);
        await this.post(
          pending.map((e) => e),
          pending.map((e) => ({ payload: e, event: e })),
        );
      }
    } finally {
      this.world.ingest.arm(undefined, this.random);
    }
  }

  private pendingOf(expected: readonly Expected[]): Ev[] {
    const ids = new Set(expected.flatMap((x) => (x.event && this.ledger.unacked.has(x.event.id) ? [x.event.id] : [])));
    return [...ids].map((id) => this.ledger.unacked.get(id)!);
  }

  /** The first acknowledged copy of an id is the one that counts. */
  private ack(e: Ev): void {
    if (!this.ledger.acked.has(e.id)) this.ledger.acked.set(e.id, this.ledger.unacked.get(e.id) ?? e);
    this.ledger.unacked.delete(e.id);
  }

  /** One POST /events and the checks of its answer. */
  private async post(body: unknown, expected: readonly Expected[]): Promise<void> {
    this.world.lastPutAt = Date.now();
    const res = await this.world.api('POST', '/events', body);
    this.world.lastPutAt = Date.now();
    const bad = expected.map((x, i) => ({ i, field: x.badField })).filter((x) => x.field !== undefined);
    const valid = expected.length - bad.length;
    this.rejectedEvents += bad.length;
    if (!Array.isArray(body) && (body === null || typeof body !== 'object')) {
      // One bare JSON value that is not an object: the body itself is at fault (400 with an error, no per-event list).
      this.checks++;
      if (res.status !== 400 || typeof res.body.error !== 'string' || res.body.error === '') {
        throw new CheckFailure(
          'ingest status',
          `a body that is a bare ${typeof body}: expected 400 with an error, received ${res.status} ${JSON.stringify(res.body)}`,
        );
      }
      return;
    }
    const rejected = (res.body.rejected ?? []) as { index: number; field: string; message: string }[];
    this.checks++;
    const gotRejected = rejected.map((x) => `${x.index}:${x.field}`).sort();
    const wantRejected = bad.map((x) => `${x.i}:${x.field}`).sort();
    if (!isDeepStrictEqual(gotRejected, wantRejected) || rejected.some((x) => typeof x.message !== 'string' || x.message === '')) {
      throw new CheckFailure(
        'ingest rejections',
        `POST /events answered ${res.status} rejecting ${JSON.stringify(rejected)}; expected rejections ${JSON.stringify(wantRejected)}`,
      );
    }
    if (valid === 0) {
      if (res.status !== 400)
        throw new CheckFailure('ingest status', `no valid event: expected 400, received ${res.status} ${JSON.stringify(res.body)}`);
      return;
    }
    if (res.status === 503) {
      const notStored = new Set((res.body.notStored ?? []) as number[]);
      if (notStored.size === 0) throw new CheckFailure('ingest status', `503 without notStored: ${JSON.stringify(res.body)}`);
      expected.forEach((x, i) => {
        if (x.event && !notStored.has(i)) this.ack(x.event);
      });
      return;
    }
    const want = bad.length > 0 ? 207 : 200;
    if (res.status !== want || res.body.accepted !== valid) {
      throw new CheckFailure(
        'ingest status',
        `expected ${want} with ${valid} accepted, received ${res.status} ${JSON.stringify(res.body).slice(0, 500)}`,
      );
    }
    for (const x of expected) if (x.event) this.ack(x.event);
  }

  /**
   * Concurrent requests; some events are sent again, unchanged, in another
   * request at the same time (which copy arrives first is unknown, so copies
   * in flight together are always identical).
   */
  private async burst(requests: number, perRequest: number, copies: number): Promise<void> {
    const now = Date.now();
    const groups: Ev[][] = Array.from({ length: requests }, () => []);
    const fresh: Ev[] = [];
    for (let g = 0; g < requests; g++) {
      for (let i = 0; i < perRequest; i++) {
        const type = TYPES[Math.floor(this.random() * TYPES.length)] as EventType;
        const e = this.newEvent(
          {
            kind: 'new',
            type,
            lateMin: 0,
            isoTs: this.random() < 0.5,
            country: Math.floor(this.random() * 6),
            page: i,
            amount: 1 + Math.floor(this.random() * 99_999),
            loadMs: 1 + i,
            odd: 'none',
          },
          now,
        );
        this.ledger.sent.push(e.id);
        this.ledger.unacked.set(e.id, e);
        groups[g]!.push(e);
        fresh.push(e);
      }
    }
    for (let c = 0; c < copies; c++) {
      const e = fresh[Math.floor(this.random() * fresh.length)]!;
      groups[Math.floor(this.random() * requests)]!.push({ ...e });
      this.retriedEvents++;
    }
    this.count('client.burst');
    this.count('client.retry.inFlight', copies);
    await Promise.all(
      groups.map((g) =>
        this.post(
          g,
          g.map((e) => ({ payload: e, event: e })),
        ),
      ),
    );
    for (let round = 1; this.pendingOf(fresh.map((e) => ({ payload: e, event: e }))).length > 0; round++) {
      if (round > 8) throw new SimError(`events still not acknowledged after ${round - 1} resends`);
      const pending = this.pendingOf(fresh.map((e) => ({ payload: e, event: e })));
      await this.post(
        pending,
        pending.map((e) => ({ payload: e, event: e })),
      );
    }
  }

  // ---- poison ---------------------------------------------------------------------------------

  private async poison(variant: number, count: number): Promise<void> {
    const now = Date.now();
    const records = Array.from({ length: count }, (_, i) => {
      const id = `s${this.seed}-p${this.n++}`;
      const v = (variant + i) % 6;
      const data = [
        'not json {',
        JSON.stringify([1, 2, 3]),
        JSON.stringify({ type: 'click', ts: now }),
        JSON.stringify({ id, type: 'click', ts: 'yesterday' }),
        JSON.stringify({ id, type: '', ts: now }),
        JSON.stringify('hello'),
      ][v]!;
      return { v, data: Buffer.from(data), partitionKey: id };
    });
    const put = await this.world.putRaw(records);
    for (const [i, p] of put.entries()) this.ledger.poison.push({ shard: p.shard, seq: padSeq(p.seq), variant: records[i]!.v });
    this.count('poison', count);
  }

  // ---- batch ----------------------------------------------------------------------------------

  private async readPointer(): Promise<{ version: number; cutoff: number } | null> {
    const got = await this.world.clients.doc.send(
      new GetCommand({ TableName: this.world.config.tables.control, Key: { pk: 'pointer', sk: 'current' }, ConsistentRead: true }),
    );
    return got.Item ? { version: Number(got.Item.version), cutoff: Number(got.Item.cutoff) } : null;
  }

  /** The batch version and cutoff never go back, except by a rollback (which resets the reference). */
  private checkPointer(p: { version: number; cutoff: number } | null, where: string): void {
    this.checks++;
    const last = this.lastPointer;
    if (last && (p === null || p.version < last.version || p.cutoff < last.cutoff)) {
      throw new CheckFailure(
        'batch version monotonic',
        `${where}: the published batch went from version ${last.version} (cutoff ${new Date(last.cutoff).toISOString()}) to ${p ? `version ${p.version} (cutoff ${new Date(p.cutoff).toISOString()})` : 'none'} without a rollback`,
      );
    }
    if (p) {
      this.lastPointer = p;
      this.published.add(p.version);
    }
  }

  private noteRun(run: RunItem | undefined, faultFired: boolean, crash: boolean): void {
    if (!run) return;
    const state =
      run.state === 'RUNNING' && faultFired && crash
        ? 'crashed'
        : run.state === 'SUCCEEDED'
          ? 'succeeded'
          : run.state === 'SKIPPED'
            ? 'skipped'
            : run.state === 'FAILED'
              ? 'failed'
              : 'running';
    this.batches[state] = (this.batches[state] ?? 0) + 1;
    this.log(
      `   run ${run.runId}: ${run.state}${run.version ? ` v${run.version}` : ''}${run.cutoff ? ` cutoff ${isoOf(run.cutoff)}` : ''}${run.error ? ` error: ${run.error}` : ''}${run.note ? ` (${run.note})` : ''}`,
    );
    if (run.state === 'FAILED' && !faultFired) {
      this.count('batch.failedWithoutFault');
      this.notes.push(`batch run ${run.runId} failed without an injected fault: ${run.error ?? '?'}`);
    }
  }

  private firedTotal(): number {
    return Object.values(this.world.batch.fired).reduce((a, b) => a + b, 0);
  }

  private async batch(via: 'http' | 'direct', fault: Extract<Step, { kind: 'batch' }>['fault']): Promise<void> {
    const w = this.world;
    const before = this.firedTotal();
    w.batch.arm(fault ?? undefined);
    try {
      let run: RunItem | undefined;
      if (via === 'direct') run = await w.runBatch();
      else {
        const res = await w.api('POST', '/batch/runs');
        if (res.status !== 202) throw new CheckFailure('batch api', `POST /batch/runs answered ${res.status} ${JSON.stringify(res.body)}`);
        if (res.body.alreadyRunning) {
          // The holder is a run that crashed earlier (its lock expires) or one this driver is not waiting for.
          this.batches.refused = (this.batches.refused ?? 0) + 1;
          this.log(`   refused: ${String(res.body.id)} holds the lock`);
        } else run = await this.waitRun(String(res.body.id), () => fault?.mode === 'crash' && this.firedTotal() > before);
      }
      this.noteRun(run, this.firedTotal() > before, fault?.mode === 'crash');
    } finally {
      w.batch.arm(undefined);
    }
    this.checkPointer(await this.readPointer(), 'after a batch run');
  }

  /** Polls GET /batch/runs/{id} until the run ends (or, after a simulated crash, stays RUNNING for good). */
  private async waitRun(id: string, crashed: () => boolean): Promise<RunItem | undefined> {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const res = await this.world.api('GET', `/batch/runs/${id}`);
      if (res.status !== 200)
        throw new CheckFailure('batch api', `GET /batch/runs/${id} answered ${res.status} ${JSON.stringify(res.body)}`);
      const b = res.body;
      const run = {
        runId: String(b.id),
        state: b.state,
        version: b.version ?? undefined,
        cutoff: typeof b.cutoff === 'string' ? Date.parse(b.cutoff) : undefined,
        error: b.error,
        note: b.note,
      } as unknown as RunItem;
      if (b.state !== 'RUNNING') return run;
      if (crashed()) {
        // The dead run stays RUNNING; give its in-process promise a moment to settle.
        await sleep(200);
        return run;
      }
      if (Date.now() > deadline) throw new SimError(`batch run ${id} still RUNNING after 120 s`);
      await sleep(100);
    }
  }

  /**
   * Two runs at once: two starts together (the lock lets one through), or a
   * run stalled between its steps (as a Step Functions execution may be)
   * whose lock expires and is taken by another run that publishes; the stalled
   * run must then fail at publish without moving the pointer.
   */
  private async concurrentBatch(): Promise<void> {
    const w = this.world;
    if (this.random() < 0.5) {
      this.count('batch.concurrent.starts');
      const [direct, http] = await Promise.all([w.runBatch(), w.api('POST', '/batch/runs')]);
      this.noteRun(direct, false, false);
      if (http.status !== 202) throw new CheckFailure('batch api', `POST /batch/runs answered ${http.status} ${JSON.stringify(http.body)}`);
      if (!http.body.alreadyRunning && http.body.id !== direct.runId)
        this.noteRun(await this.waitRun(String(http.body.id), () => false), false, false);
      this.checkPointer(await this.readPointer(), 'after two concurrent runs');
      return;
    }
    this.count('batch.concurrent.overtaken');
    const ctx = batchContext(w.clients, w.config, w.batchOptions());
    const runId = newRunId(Date.now());
    const plan = await planStep(ctx, runId);
    if (plan.skipped || plan.version === undefined || plan.cutoff === undefined) {
      this.log(`   stalled run skipped: ${plan.note ?? ''}`);
      return;
    }
    try {
      for (const view of plan.views) await viewStep(ctx, { runId, version: plan.version, cutoff: plan.cutoff, view });
    } catch (e) {
      await failStep(ctx, { runId, version: plan.version, error: errorText(e) });
      this.log(`   stalled run failed in its views: ${errorText(e)}`);
      return;
    }
    // Stalled past its lock: another run takes the lock and publishes.
    await sleep(LOCK_TTL_S * 1000 + 1100);
    const other = await w.runBatch();
    this.noteRun(other, false, false);
    const before = await this.readPointer();
    let outcome: string;
    try {
      const pub = await publishStep(ctx, { runId, version: plan.version, cutoff: plan.cutoff });
      outcome = `${pub.state}${pub.published ? ' published' : ''}`;
      if (pub.published && other.state === 'SUCCEEDED') {
        throw new CheckFailure(
          'stalled run',
          `run ${runId} (v${plan.version}) published after its lock was taken by ${other.runId} (v${other.version})`,
        );
      }
    } catch (e) {
      if (e instanceof CheckFailure) throw e;
      outcome = errorText(e);
      await failStep(ctx, { runId, version: plan.version, error: outcome });
    }
    this.log(`   stalled run v${plan.version}: ${outcome}`);
    const after = await this.readPointer();
    if (other.state === 'SUCCEEDED' && !isDeepStrictEqual(before, after)) {
      throw new CheckFailure(
        'stalled run',
        `the pointer moved from ${JSON.stringify(before)} to ${JSON.stringify(after)} when the overtaken run tried to publish`,
      );
    }
    this.checkPointer(after, 'after an overtaken run');
  }

  private async rollback(back: number): Promise<void> {
    const current = await this.readPointer();
    if (!current) {
      this.log('   nothing published yet');
      return;
    }
    const older = [...this.published].filter((v) => v < current.version).sort((a, b) => b - a);
    const target = older[back - 1] ?? Math.max(1, current.version - back);
    const res = await this.world.api('POST', '/batch/rollback', { version: target });
    this.log(`   rollback to v${target}: ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`);
    this.checks++;
    if (res.status === 200) {
      this.count('rollback');
      const cutoff = Date.parse(String(res.body.cutoff));
      if (res.body.version !== target)
        throw new CheckFailure('rollback', `asked for v${target}, the pointer is ${JSON.stringify(res.body)}`);
      // A rollback is the one move back that is allowed: it becomes the new reference.
      this.lastPointer = { version: target, cutoff };
      this.checkPointer(await this.readPointer(), 'after a rollback');
      return;
    }
    if (res.status !== 404 && res.status !== 409)
      throw new CheckFailure('rollback', `POST /batch/rollback answered ${res.status} ${JSON.stringify(res.body)}`);
    this.checkPointer(await this.readPointer(), 'after a refused rollback');
  }

  // ---- queries and checks ---------------------------------------------------------------------

  private queryParams(q: QueryDraw, now: number): { view: View; spec: OracleSpec; params: URLSearchParams } {
    const view = DEMO_VIEWS[q.view % DEMO_VIEWS.length]!;
    const grain = GRAINS[Math.min(GRAINS.length - 1, GRAINS.indexOf(view.grain) + q.coarser)]!;
    const step = GRAIN_MS[view.grain];
    const rawFrom = now - q.fromBackMin * 60_000;
    const from = q.align ? Math.floor(rawFrom / step) * step : rawFrom;
    const to = from + Math.max(1, q.spanMin) * 60_000;
    let groupBy: string[];
    const params = new URLSearchParams({ from: new Date(from).toISOString(), to: new Date(to).toISOString(), grain });
    if (q.groupBy === 'all') groupBy = [...view.dimensions];
    else if (q.groupBy === 'none') {
      groupBy = [];
      params.set('groupBy', '');
    } else {
      const mask = q.groupBy;
      groupBy = view.dimensions.filter((_, i) => (mask >> i) & 1);
      params.set('groupBy', groupBy.join(','));
    }
    const filters: Record<string, string> = {};
    if (q.filter && view.dimensions.length > 0) {
      const dim = view.dimensions[q.filter[0] % view.dimensions.length]!;
      const values = FILTER_VALUES[dim] ?? ['none'];
      filters[dim] = values[q.filter[1] % values.length]!;
      params.set(dim, filters[dim]);
    }
    return { view, spec: { from, to, grain, groupBy, filters }, params };
  }

  private async query(q: QueryDraw): Promise<void> {
    await this.world.idle();
    await this.checkQuery(q);
    await this.checkTotals();
    await this.checkPoison();
  }

  /**
   * Queries while a batch run loads and flips (after idle, so the truth does
   * not move meanwhile). With `hold`, the first query reads the pointer before
   * the run starts and its batch-view reads wait until the run has published
   * and retired old versions: a query in flight across the flip.
   */
  private async queryDuringBatch(drawn: QueryDraw, hold: boolean): Promise<void> {
    // Every bucket from the oldest late event to now: any row the flip could disturb is in range.
    const q: QueryDraw = { ...drawn, fromBackMin: 4 * 24 * 60, spanMin: 4 * 24 * 60 + 120 };
    const w = this.world;
    await w.idle();
    let done = false;
    let release: () => void = () => {};
    let n = 0;
    let first: Promise<void> | undefined;
    const held = w.heldReads;
    if (hold) {
      w.holdBatchReads = new Promise<void>((r) => {
        release = r;
      });
      const pointerRead = new Promise<void>((r) => {
        w.onPointerRead = r;
      });
      first = this.checkQuery(q);
      first.catch(() => undefined);
      await Promise.race([pointerRead, first]);
      w.onPointerRead = undefined;
      n++;
    }
    const running = w.runBatch().finally(() => {
      done = true;
      release();
    });
    running.catch(() => undefined);
    try {
      await first;
      for (; !done || n === 0; n++) await this.checkQuery({ ...q, coarser: (q.coarser + n) % 4, groupBy: n % 2 === 0 ? q.groupBy : 'all' });
    } finally {
      w.holdBatchReads = undefined;
      w.onPointerRead = undefined;
      release();
      this.noteRun(await running, false, false);
    }
    this.count('query.duringBatch', n);
    if (w.heldReads > held) this.count('query.heldAcrossFlip');
    this.checkPointer(await this.readPointer(), 'after queries during a batch run');
  }

  private async checkQuery(q: QueryDraw): Promise<void> {
    const { view, spec, params } = this.queryParams(q, Date.now());
    const res = await this.world.api('GET', `/views/${view.name}?${params}`);
    this.queries++;
    if (res.status !== 200)
      throw new CheckFailure('query status', `GET /views/${view.name}?${params} answered ${res.status} ${JSON.stringify(res.body)}`);
    this.checkBatchField(res.body.batch, `GET /views/${view.name}`);
    const want = oracleRows(view, this.ledger.events(), spec);
    this.compareRows(`GET /views/${view.name}?${params}`, res.body.rows as Record<string, unknown>[], want, res.body.batch);
  }

  private checkBatchField(batch: unknown, where: string): void {
    const b = batch as { version: number; cutoff: string } | null;
    this.checkPointer(b ? { version: b.version, cutoff: Date.parse(b.cutoff) } : null, where);
  }

  private compareRows(
    what: string,
    got: readonly Record<string, unknown>[],
    want: readonly Record<string, unknown>[],
    batch: unknown,
  ): void {
    this.checks++;
    if (isDeepStrictEqual(got, want)) return;
    const key = (r: Record<string, unknown>) =>
      JSON.stringify(Object.entries(r).filter(([k]) => !/^(events|orders|revenue|min_order|max_order|avg_order|views|load_ms)$/.test(k)));
    const byKey = new Map(want.map((r) => [key(r), r]));
    const diffs: string[] = [];
    for (const g of got) {
      const w = byKey.get(key(g));
      byKey.delete(key(g));
      if (!w) diffs.push(`extra row ${JSON.stringify(g)}`);
      else if (!isDeepStrictEqual(g, w)) diffs.push(`got ${JSON.stringify(g)} want ${JSON.stringify(w)}`);
    }
    for (const w of byKey.values()) diffs.push(`missing row ${JSON.stringify(w)}`);
    if (diffs.length === 0) diffs.push('same rows in another order');
    throw new CheckFailure(
      'rows equal the oracle',
      `${what} (batch ${JSON.stringify(batch)}): ${diffs.length} difference(s): ${diffs.slice(0, 8).join('; ')}`,
    );
  }

  /** Per type, the count over all time equals the acknowledged ids: nothing lost, nothing counted twice. */
  private async checkTotals(): Promise<void> {
    const now = Date.now();
    const from = Math.floor((now - 4 * 86_400_000) / 60_000) * 60_000;
    const to = Math.ceil((now + 3_600_000) / 60_000) * 60_000;
    const view = DEMO_VIEWS[0]!;
    const params = new URLSearchParams({
      from: new Date(from).toISOString(),
      to: new Date(to).toISOString(),
      grain: 'all',
      groupBy: 'type',
    });
    const res = await this.world.api('GET', `/views/${view.name}?${params}`);
    this.queries++;
    if (res.status !== 200) throw new CheckFailure('query status', `totals query answered ${res.status} ${JSON.stringify(res.body)}`);
    this.checkBatchField(res.body.batch, 'totals query');
    const want = new Map<string, number>();
    for (const e of this.ledger.events()) want.set(e.type, (want.get(e.type) ?? 0) + 1);
    const got = new Map((res.body.rows as { type: string; events: number }[]).map((r) => [r.type, r.events]));
    this.checks++;
    const problems: string[] = [];
    for (const t of new Set([...want.keys(), ...got.keys()])) {
      const w = want.get(t) ?? 0;
      const g = got.get(t) ?? 0;
      if (g < w) problems.push(`${t}: ${w - g} acknowledged event(s) lost (${g} of ${w})`);
      if (g > w) problems.push(`${t}: ${g - w} counted twice or never acknowledged (${g} for ${w} ids)`);
    }
    if (problems.length > 0)
      throw new CheckFailure('nothing lost, nothing twice', `${problems.join('; ')} (batch ${JSON.stringify(res.body.batch)})`);
    this.compareRows(
      'totals',
      res.body.rows as Record<string, unknown>[],
      oracleRows(view, this.ledger.events(), { from, to, grain: 'all', groupBy: ['type'] }),
      res.body.batch,
    );
  }

  private async listKeys(bucket: string, prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.world.clients.s3.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ...(token && { ContinuationToken: token }) }),
      );
      for (const o of page.Contents ?? []) keys.push(o.Key!);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return keys;
  }

  /** Every poison record in the failures bucket (once per consumer), counted once by each, and nothing else there. */
  private async checkPoison(): Promise<void> {
    this.checks++;
    const w = this.world;
    const keys = new Set(await this.listKeys(w.config.buckets.failures, 'failures/'));
    const expected = new Set(
      this.ledger.poison.flatMap((p) => [`failures/speed/${p.shard}/${p.seq}.json`, `failures/archive/${p.shard}/${p.seq}.json`]),
    );
    const missing = [...expected].filter((k) => !keys.has(k));
    const extra = [...keys].filter((k) => !expected.has(k));
    if (missing.length > 0 || extra.length > 0) {
      throw new CheckFailure(
        'poison in the on-failure destination only',
        `${missing.length} poison object(s) missing (${missing.slice(0, 4).join(', ')}); ${extra.length} unexpected object(s) in the failures bucket (${extra.slice(0, 4).join(', ')})`,
      );
    }
    const stats = await w.clients.doc.send(
      new GetCommand({ TableName: w.config.tables.control, Key: { pk: 'stats', sk: 'poison' }, ConsistentRead: true }),
    );
    const speed = Number(stats.Item?.count ?? 0);
    const archive = Number(stats.Item?.archive ?? 0);
    const n = this.ledger.poison.length;
    if (speed !== n || archive !== n) {
      throw new CheckFailure('poison counted once', `${n} poison record(s) put; stats/poison counts speed ${speed}, archive ${archive}`);
    }
  }

  /** After a restart of the emulators (SIGKILL included): every acknowledged id is still in the stream. */
  private async checkStreamKeptAcknowledged(): Promise<void> {
    const ids = new Set((await streamEntries(this.world)).map((r) => r.partitionKey));
    const lost = [...this.ledger.acked.keys()].filter((id) => !ids.has(id));
    this.checks++;
    if (lost.length > 0)
      throw new SimError(
        `the stream lost ${lost.length} acknowledged record(s) across a restart of the emulators: ${lost.slice(0, 5).join(', ')}`,
      );
  }

  /** Corrupts one events_by_type speed item the query will read: a count added twice, or an item lost. */
  private async sabotage(what: 'double' | 'drop'): Promise<void> {
    const w = this.world;
    await w.idle();
    const pointer = await this.readPointer();
    const table = w.config.tables.speed;
    const items = (await w.clients.dynamodb.send(new ScanCommand({ TableName: table, ConsistentRead: true }))).Items ?? [];
    const item = items.find((i) => i.view?.S === 'events_by_type' && (pointer === null || Number(i.window?.N) >= pointer.cutoff));
    if (!item) throw new SimError('sabotage: no speed item after the cutoff to corrupt');
    const Key = { pk: item.pk!, sk: item.sk! };
    if (what === 'drop') await w.clients.dynamodb.send(new DeleteItemCommand({ TableName: table, Key }));
    else {
      // One cell of the item (keys.ts: `<minute>|<dims>|<column>`) counted twice.
      const count = Object.keys(item).find((a) => a.endsWith('|events__count'));
      if (!count) throw new SimError('sabotage: the speed item has no events__count cell');
      const records = count.replace(/events__count$/, 'records');
      await w.clients.dynamodb.send(
        new UpdateItemCommand({
          TableName: table,
          Key,
          UpdateExpression: 'ADD #count :one, #records :one',
          ExpressionAttributeNames: { '#count': count, '#records': records },
          ExpressionAttributeValues: { ':one': { N: '1' } },
        }),
      );
    }
    this.count(`sabotage.${what}`);
  }

  // ---- the end of a schedule ------------------------------------------------------------------

  async final(): Promise<void> {
    const w = this.world;
    w.speedSeam.arm(undefined);
    w.archiveSeam.arm(undefined);
    w.speedHook.arm(undefined);
    w.archiveHook.arm(undefined);
    w.batch.arm(undefined);
    await Promise.all([w.speedSeam.settled(), w.archiveSeam.settled()]);
    await w.idle();
    await this.checkTotals();
    await this.checkPoison();
    // A batch with the faults off must cover every arrival: wait out the window and margin, then run.
    const windowMs = SIM_SETTINGS.windowSeconds * 1000;
    const needCutoff = Math.floor(w.lastPutAt / windowMs) * windowMs + windowMs;
    let run: RunItem | undefined;
    for (let attempt = 0; attempt < 6; attempt++) {
      const wait = needCutoff + SIM_SETTINGS.cutoffMarginSeconds * 1000 + 300 - Date.now();
      if (wait > 0) await sleep(wait);
      await w.idle();
      run = await w.runBatch();
      this.noteRun(run, false, false);
      if (run.state === 'SUCCEEDED' && (run.cutoff ?? 0) >= needCutoff) break;
      const pointer = await this.readPointer();
      if (pointer && pointer.cutoff >= needCutoff) break;
      // A lock left by a crashed run expires within LOCK_TTL_S.
      await sleep(LOCK_TTL_S * 500);
    }
    const pointer = await this.readPointer();
    this.checkPointer(pointer, 'final batch run');
    if (!pointer || pointer.cutoff < needCutoff) {
      throw new CheckFailure(
        'final batch',
        `with the faults off no batch run covered every arrival (cutoff ${pointer ? new Date(pointer.cutoff).toISOString() : 'none'}, needed ${new Date(needCutoff).toISOString()}; last run ${run?.state} ${run?.error ?? run?.note ?? ''})`,
      );
    }
    // Every view, now served by the batch alone: every bucket and group, and the totals.
    for (let i = 0; i < DEMO_VIEWS.length; i++) {
      await this.checkQuery({
        view: i,
        fromBackMin: 4 * 24 * 60,
        spanMin: 4 * 24 * 60 + 120,
        align: true,
        coarser: 0,
        groupBy: 'all',
        filter: null,
      });
      await this.checkQuery({
        view: i,
        fromBackMin: 4 * 24 * 60,
        spanMin: 4 * 24 * 60 + 120,
        align: true,
        coarser: 3,
        groupBy: 'none',
        filter: null,
      });
    }
    await this.checkTotals();
    await this.checkPoison();
    await this.checkArchive();
  }

  /** The raw archive holds every acknowledged id and no poison record. */
  private async checkArchive(): Promise<void> {
    this.checks++;
    const w = this.world;
    const ids = new Set<string>();
    const seqs = new Set<string>();
    for (const key of await this.listKeys(w.config.buckets.raw, 'raw/')) {
      const obj = await w.clients.s3.send(new GetObjectCommand({ Bucket: w.config.buckets.raw, Key: key }));
      const text = gunzipSync(Buffer.from(await obj.Body!.transformToByteArray())).toString('utf8');
      for (const line of text.split('\n')) {
        if (!line) continue;
        const r = JSON.parse(line) as { id: string; shard: string; seq: string };
        ids.add(r.id);
        seqs.add(`${r.shard}/${r.seq}`);
      }
    }
    const missing = [...this.ledger.acked.keys()].filter((id) => !ids.has(id));
    const poison = this.ledger.poison.filter((p) => seqs.has(`${p.shard}/${p.seq}`));
    if (missing.length > 0 || poison.length > 0) {
      throw new CheckFailure(
        'archive complete and clean',
        `${missing.length} acknowledged id(s) not archived (${missing.slice(0, 5).join(', ')}); ${poison.length} poison record(s) archived`,
      );
    }
  }
}
