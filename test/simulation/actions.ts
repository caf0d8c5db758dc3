/**
 * The schedule's actions: what the simulation does to Tandem and its world
 * (sends as a client would, poison records, faults armed, batch runs,
 * concurrent and stalled runs, rollbacks, restarts, resharding, a corrupted
 * speed item). An action checks the answers it gets on the way (through
 * checks.ts) and keeps the client's ledger: what ingest acknowledged is what
 * the oracle counts.
 *
 * The order of the draws from `SeedState.random` is part of a seed's
 * schedule: an action draws exactly where the one-class driver did.
 */

import { createHash } from 'node:crypto';
import { DeleteItemCommand, ScanCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { kplAggregate } from '../../functions/adapters/kinesis-records.ts';
import { deaggregateRecord } from '../../functions/adapters/kpl.ts';
import { newRunId, type RunItem } from '../../functions/batch/control.ts';
import { batchContext, describeError } from '../../functions/batch/pipeline.ts';
import { failStep, planStep, publishStep, viewStep } from '../../functions/batch/steps.ts';
import { padSeq, recordPosition } from '../../functions/core/record.ts';
import { CheckFailure, type Checks, type Expected, wholeSpan } from './checks.ts';
import type { BatchFault, InvokeFaultKind, PutFault, WriteFault } from './faults.ts';
import { LOCK_TTL_S, SIM_SETTINGS, SimError, type World } from './harness.ts';
import { COUNTRIES, type Ev, PAGES, TYPES } from './ledger.ts';
import type { EventDraw, EventType, QueryDraw, Step } from './schedule.ts';
import { type SeedState, sleep } from './state.ts';

const isoOf = (ms: unknown) => (typeof ms === 'number' && Number.isFinite(ms) ? new Date(ms).toISOString() : String(ms));
const asExpected = (e: Ev): Expected => ({ payload: e, event: e });

export class Actions {
  constructor(
    private readonly s: SeedState,
    private readonly check: Checks,
  ) {}

  private get world(): World {
    return this.s.world;
  }

  // ---- faults and the emulators ---------------------------------------------------------------

  armWrite(consumer: 'speed' | 'archive', fault: WriteFault): void {
    (consumer === 'speed' ? this.world.speedSeam : this.world.archiveSeam).arm(fault);
  }

  armDelivery(consumer: 'speed' | 'archive', fault: InvokeFaultKind): void {
    (consumer === 'speed' ? this.world.speedHook : this.world.archiveHook).arm(fault);
  }

  /** Every fault off, and the writes a fault held back settled. */
  async faultsOff(): Promise<void> {
    const w = this.world;
    w.speedSeam.arm(undefined);
    w.archiveSeam.arm(undefined);
    w.speedHook.arm(undefined);
    w.archiveHook.arm(undefined);
    w.batch.arm(undefined);
    await Promise.all([w.speedSeam.settled(), w.archiveSeam.settled()]);
  }

  restartWorkers(): Promise<void> {
    this.s.count('restart.workers');
    return this.world.restartWorkers();
  }

  async restartCloud(hard: boolean): Promise<void> {
    this.s.count(hard ? 'restart.cloud.sigkill' : 'restart.cloud.sigterm');
    await this.world.restartCloud(hard);
  }

  async reshard(how: 'double' | 'split' | 'merge', pick: number): Promise<void> {
    const what = await this.world.reshard(how, pick);
    this.s.log(`   ${what}`);
    if (!what.startsWith('not')) this.s.count(`reshard.${how}`);
  }

  // ---- sends ----------------------------------------------------------------------------------

  private newEvent(d: Extract<EventDraw, { kind: 'new' }>, now: number): Ev {
    const id = this.s.nextId('e');
    const tsMs =
      d.lateMin === 0 ? now - Math.floor(this.s.random() * 3000) : now - d.lateMin * 60_000 - Math.floor(this.s.random() * 60_000);
    if (d.lateMin > 0) this.s.lateEvents++;
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
    const id = this.s.nextId('bad');
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

  async send(shape: 'single' | 'array' | 'wrapped', draws: readonly EventDraw[], fault: PutFault | null): Promise<void> {
    const ledger = this.s.ledger;
    const now = Date.now();
    const expected: Expected[] = [];
    for (const d of draws) {
      if (d.kind === 'bad') {
        const b = this.badEvent(d.variant, now);
        expected.push({ payload: b.payload, badField: b.field });
        continue;
      }
      if (d.kind === 'retry' && ledger.sent.length > 0) {
        const id = ledger.sent[d.pick % ledger.sent.length]!;
        const acked = ledger.acked.get(id);
        const base = acked ?? ledger.unacked.get(id)!;
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
        if (acked && d.changed) this.s.count('client.retry.changed');
        else this.s.count('client.retry.same');
        this.s.retriedEvents++;
        expected.push({ payload: e, event: e });
        continue;
      }
      const e = this.newEvent(
        d.kind === 'new'
          ? d
          : { kind: 'new', type: 'click', lateMin: 0, isoTs: false, country: 0, page: 0, amount: 1, loadMs: 1, odd: 'none' },
        now,
      );
      ledger.sending(e);
      expected.push({ payload: e, event: e });
    }
    const pendingOf = () => ledger.pending(expected.flatMap((x) => (x.event ? [x.event] : [])));
    if (fault) this.world.ingest.arm(fault, this.s.random);
    try {
      const payloads = expected.map((x) => x.payload);
      const body = shape === 'single' && payloads.length === 1 ? payloads[0] : shape === 'wrapped' ? { events: payloads } : payloads;
      await this.post(body, expected);
      // The client resends what was not acknowledged, unchanged, until it is (faults off after 3 rounds).
      for (let round = 1; pendingOf().length > 0; round++) {
        if (round > 8) throw new SimError(`events still not acknowledged after ${round - 1} resends`);
        if (round > 3) this.world.ingest.arm(undefined, this.s.random);
        const pending = pendingOf();
        this.s.count('client.resend503', pending.length);
        await sleep(20 * round);
        await this.post(pending, pending.map(asExpected));
      }
    } finally {
      this.world.ingest.arm(undefined, this.s.random);
    }
  }

  /** One POST /events; its answer checked; what it acknowledged in the ledger. */
  private async post(body: unknown, expected: readonly Expected[]): Promise<void> {
    this.world.lastPutAt = Date.now();
    const res = await this.world.api('POST', '/events', body);
    this.world.lastPutAt = Date.now();
    this.s.rejectedEvents += expected.filter((x) => x.badField !== undefined).length;
    for (const e of this.check.ingestAnswer(body, expected, res)) this.s.ledger.ack(e);
  }

  /**
   * Concurrent requests; some events are sent again, unchanged, in another
   * request at the same time (which copy arrives first is unknown, so copies
   * in flight together are always identical).
   */
  async burst(requests: number, perRequest: number, copies: number): Promise<void> {
    const now = Date.now();
    const groups: Ev[][] = Array.from({ length: requests }, () => []);
    const fresh: Ev[] = [];
    for (let g = 0; g < requests; g++) {
      for (let i = 0; i < perRequest; i++) {
        const type = TYPES[Math.floor(this.s.random() * TYPES.length)] as EventType;
        const e = this.newEvent(
          {
            kind: 'new',
            type,
            lateMin: 0,
            isoTs: this.s.random() < 0.5,
            country: Math.floor(this.s.random() * 6),
            page: i,
            amount: 1 + Math.floor(this.s.random() * 99_999),
            loadMs: 1 + i,
            odd: 'none',
          },
          now,
        );
        this.s.ledger.sending(e);
        groups[g]!.push(e);
        fresh.push(e);
      }
    }
    for (let c = 0; c < copies; c++) {
      const e = fresh[Math.floor(this.s.random() * fresh.length)]!;
      groups[Math.floor(this.s.random() * requests)]!.push({ ...e });
      this.s.retriedEvents++;
    }
    this.s.count('client.burst');
    this.s.count('client.retry.inFlight', copies);
    await Promise.all(groups.map((g) => this.post(g, g.map(asExpected))));
    for (let round = 1; this.s.ledger.pending(fresh).length > 0; round++) {
      if (round > 8) throw new SimError(`events still not acknowledged after ${round - 1} resends`);
      const pending = this.s.ledger.pending(fresh);
      await this.post(pending, pending.map(asExpected));
    }
  }

  // ---- poison ---------------------------------------------------------------------------------

  async poison(variant: number, count: number): Promise<void> {
    const now = Date.now();
    const records = Array.from({ length: count }, (_, i) => {
      const id = this.s.nextId('p');
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
    for (const [i, p] of put.entries()) this.s.ledger.poison.push({ shard: p.shard, seq: padSeq(p.seq), variant: records[i]!.v });
    this.s.count('poison', count);
  }

  // ---- a direct producer with KPL aggregation ------------------------------------------------------

  /**
   * New events put straight into Kinesis as KPL aggregates (the library's aggregator), with identical
   * copies inside one aggregate and in another; the user records of one aggregate all route to the shard
   * of its partition key (as the KPL packs them), so every copy of an id lands where ingest puts it. A bad
   * user record and a corrupt aggregate are poison at their positions.
   */
  async aggregated(s: Extract<Step, { kind: 'aggregated' }>): Promise<void> {
    const now = Date.now();
    const events = s.events.map((d) => this.newEvent(d as Extract<EventDraw, { kind: 'new' }>, now));
    // With other keys, each copy gets a user id of its own: copies of one id go to any shard.
    const key = (id: string, copy: number) =>
      s.otherKeys ? `user-${([...id].reduce((a, c) => a + c.charCodeAt(0), 0) + copy * 3) % 11}` : id;
    const first = events.map((e) => ({ partitionKey: key(e.id, 0), data: Buffer.from(JSON.stringify(e)), id: e.id }));
    const inside = first.slice(0, s.copiesInside).map((u) => ({ ...u, partitionKey: key(u.id, 1) }));
    const across = first.slice(0, s.copiesAcross).map((u) => ({ ...u, partitionKey: key(u.id, 2) }));
    const shards = (await this.world.shards())
      .filter((x) => x.SequenceNumberRange?.EndingSequenceNumber === undefined)
      .map((x) => ({ id: x.ShardId!, start: BigInt(x.HashKeyRange!.StartingHashKey!), end: BigInt(x.HashKeyRange!.EndingHashKey!) }));
    const shardOf = (key: string) => {
      const h = BigInt(`0x${createHash('md5').update(key).digest('hex')}`);
      return shards.find((x) => x.start <= h && h <= x.end)?.id ?? '';
    };
    const byShard = (users: readonly { partitionKey: string; data: Buffer }[]) => {
      if (s.otherKeys) return [users];
      const m = new Map<string, { partitionKey: string; data: Buffer }[]>();
      for (const u of users) m.set(shardOf(u.partitionKey), [...(m.get(shardOf(u.partitionKey)) ?? []), u]);
      return [...m.values()];
    };
    const badUser = s.bad ? [{ partitionKey: first[0]!.partitionKey, data: Buffer.from('not json {') }] : [];
    const groups = [...byShard([...first, ...inside, ...badUser]), ...byShard(across)].filter((g) => g.length > 0);
    const records = groups.flatMap((g) => kplAggregate(g).map((a) => ({ data: Buffer.from(a.data), partitionKey: a.partitionKey })));
    if (s.corrupt) {
      const [bad] = kplAggregate([{ partitionKey: this.s.nextId('p'), data: Buffer.from(JSON.stringify(events[0])) }]);
      const data = Buffer.from(bad!.data);
      data[data.length - 1]! ^= 0xff;
      records.push({ data, partitionKey: bad!.partitionKey });
    }
    for (const e of events) this.s.ledger.sending(e);
    const put = await this.world.putRaw(records);
    for (const e of events) this.s.ledger.ack(e);
    for (const [i, p] of put.entries()) {
      const r = records[i]!;
      const agg = deaggregateRecord(r.data, p.seq, r.partitionKey);
      if (!agg.ok) this.s.ledger.poison.push({ shard: p.shard, seq: recordPosition(p.seq), variant: -1 });
      else
        for (const u of agg.records) {
          const bad = !u.ok || u.data.toString() === 'not json {';
          if (bad) this.s.ledger.poison.push({ shard: p.shard, seq: recordPosition(p.seq, u.sub), variant: -1 });
        }
    }
    this.s.count('client.aggregated.records', records.length);
    this.s.count('client.aggregated.events', first.length + inside.length + across.length);
    if (s.bad) this.s.count('poison');
    if (s.corrupt) this.s.count('poison');
    if (s.otherKeys) this.s.count('client.aggregated.otherKeys');
  }

  // ---- batch ----------------------------------------------------------------------------------

  /** A run's outcome in the tallies and the log. */
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
    this.s.batches[state] = (this.s.batches[state] ?? 0) + 1;
    this.s.log(
      `   run ${run.runId}: ${run.state}${run.version ? ` v${run.version}` : ''}${run.cutoff ? ` cutoff ${isoOf(run.cutoff)}` : ''}` +
        `${run.error ? ` error: ${run.error}` : ''}${run.note ? ` (${run.note})` : ''}`,
    );
    if (run.state === 'FAILED' && !faultFired) {
      this.s.count('batch.failedWithoutFault');
      this.s.notes.push(`batch run ${run.runId} failed without an injected fault: ${run.error ?? '?'}`);
    }
  }

  private firedTotal(): number {
    return Object.values(this.world.batch.fired).reduce((a, b) => a + b, 0);
  }

  async batch(via: 'http' | 'direct', fault: BatchFault | null): Promise<void> {
    const w = this.world;
    const before = this.firedTotal();
    w.batch.arm(fault ?? undefined);
    try {
      let run: RunItem | undefined;
      if (via === 'direct') run = await w.runBatch();
      else {
        const res = await w.api('POST', '/batch/runs');
        this.check.batchStarted(res);
        if (res.body.alreadyRunning) {
          // The holder is a run that crashed earlier (its lock expires) or one this driver is not waiting for.
          this.s.batches.refused = (this.s.batches.refused ?? 0) + 1;
          this.s.log(`   refused: ${String(res.body.id)} holds the lock`);
        } else run = await this.waitRun(String(res.body.id), () => fault?.mode === 'crash' && this.firedTotal() > before);
      }
      this.noteRun(run, this.firedTotal() > before, fault?.mode === 'crash');
    } finally {
      w.batch.arm(undefined);
    }
    this.check.pointer(await this.check.readPointer(), 'after a batch run');
  }

  /** Polls GET /batch/runs/{id} until the run ends (or, after a simulated crash, stays RUNNING for good). */
  private async waitRun(id: string, crashed: () => boolean): Promise<RunItem | undefined> {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const res = await this.world.api('GET', `/batch/runs/${id}`);
      this.check.runAnswered(id, res);
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
  async concurrentBatch(): Promise<void> {
    const w = this.world;
    if (this.s.random() < 0.5) {
      this.s.count('batch.concurrent.starts');
      const [direct, http] = await Promise.all([w.runBatch(), w.api('POST', '/batch/runs')]);
      this.noteRun(direct, false, false);
      this.check.batchStarted(http);
      if (!http.body.alreadyRunning && http.body.id !== direct.runId)
        this.noteRun(await this.waitRun(String(http.body.id), () => false), false, false);
      this.check.pointer(await this.check.readPointer(), 'after two concurrent runs');
      return;
    }
    this.s.count('batch.concurrent.overtaken');
    const ctx = batchContext(w.clients, w.config, w.batchOptions());
    const runId = newRunId(Date.now());
    const plan = await planStep(ctx, runId);
    if (plan.skipped || plan.version === undefined || plan.cutoff === undefined) {
      this.s.log(`   stalled run skipped: ${plan.note ?? ''}`);
      return;
    }
    try {
      for (const view of plan.views) await viewStep(ctx, { runId, version: plan.version, cutoff: plan.cutoff, view });
    } catch (e) {
      await failStep(ctx, { runId, version: plan.version, error: describeError(e) });
      this.s.log(`   stalled run failed in its views: ${describeError(e)}`);
      return;
    }
    // Stalled past its lock: another run takes the lock and publishes.
    await sleep(LOCK_TTL_S * 1000 + 1100);
    const other = await w.runBatch();
    this.noteRun(other, false, false);
    const before = await this.check.readPointer();
    let outcome: string;
    try {
      const pub = await publishStep(ctx, { runId, version: plan.version, cutoff: plan.cutoff });
      outcome = `${pub.state}${pub.published ? ' published' : ''}`;
      this.check.overtakenDidNotPublish(runId, plan.version, Boolean(pub.published), other);
    } catch (e) {
      if (e instanceof CheckFailure) throw e;
      outcome = describeError(e);
      await failStep(ctx, { runId, version: plan.version, error: outcome });
    }
    this.s.log(`   stalled run v${plan.version}: ${outcome}`);
    this.check.overtakenLeftPointer(before, await this.check.readPointer(), other);
  }

  async rollback(back: number): Promise<void> {
    const current = await this.check.readPointer();
    if (!current) {
      this.s.log('   nothing published yet');
      return;
    }
    const older = this.check.publishedBelow(current.version);
    const target = older[back - 1] ?? Math.max(1, current.version - back);
    const res = await this.world.api('POST', '/batch/rollback', { version: target });
    this.s.log(`   rollback to v${target}: ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`);
    if (res.status === 200) this.s.count('rollback');
    await this.check.rollbackAnswer(target, res);
  }

  /**
   * With the faults off, batch runs until one publishes a cutoff of at least
   * `needCutoff` (or six tries); returns the last run.
   */
  async batchUntilCovered(needCutoff: number): Promise<RunItem | undefined> {
    const w = this.world;
    let run: RunItem | undefined;
    for (let attempt = 0; attempt < 6; attempt++) {
      const wait = needCutoff + SIM_SETTINGS.cutoffMarginSeconds * 1000 + 300 - Date.now();
      if (wait > 0) await sleep(wait);
      await w.idle();
      run = await w.runBatch();
      this.noteRun(run, false, false);
      if (run.state === 'SUCCEEDED' && (run.cutoff ?? 0) >= needCutoff) break;
      const pointer = await this.check.readPointer();
      if (pointer && pointer.cutoff >= needCutoff) break;
      // A lock left by a crashed run expires within LOCK_TTL_S.
      await sleep(LOCK_TTL_S * 500);
    }
    return run;
  }

  // ---- queries across a batch run -------------------------------------------------------------

  /**
   * Queries while a batch run loads and flips (after idle, so the truth does
   * not move meanwhile). With `hold`, the first query reads the pointer before
   * the run starts and its batch-view reads wait until the run has published
   * and retired old versions: a query in flight across the flip.
   */
  async queryDuringBatch(drawn: QueryDraw, hold: boolean): Promise<void> {
    // Every bucket from the oldest late event to now: any row the flip could disturb is in range.
    const q = wholeSpan(drawn);
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
      first = this.check.query(q);
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
      for (; !done || n === 0; n++)
        await this.check.query({ ...q, coarser: (q.coarser + n) % 4, groupBy: n % 2 === 0 ? q.groupBy : 'all' });
    } finally {
      w.holdBatchReads = undefined;
      w.onPointerRead = undefined;
      release();
      this.noteRun(await running, false, false);
    }
    this.s.count('query.duringBatch', n);
    if (w.heldReads > held) this.s.count('query.heldAcrossFlip');
    this.check.pointer(await this.check.readPointer(), 'after queries during a batch run');
  }

  // ---- behind Tandem's back -------------------------------------------------------------------

  /** Corrupts one events_by_type speed item the query will read: a count added twice, or an item lost. */
  async sabotage(what: 'double' | 'drop'): Promise<void> {
    const w = this.world;
    await w.idle();
    const pointer = await this.check.readPointer();
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
    this.s.count(`sabotage.${what}`);
  }
}
