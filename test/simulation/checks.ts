/**
 * The checks: Tandem's answers compared with the oracle (the client's
 * ledger), and the invariants that hold between steps.
 *
 * After every query: (1) rows equal the oracle's; (2) per event type, the
 * totals equal the number of copies that count under the dedup rule (the
 * ledger's `events`: nothing lost, nothing counted twice); (3) the published batch version and cutoff never go back except by
 * a rollback; (4) every poison record is in the failures bucket, counted once
 * by each consumer, and nothing else is in that bucket. Every answer of
 * ingest, of the batch API and of a rollback is checked too, the stream after
 * a restart of the emulators, and at the end of a schedule the final batch
 * run, every view and the raw archive.
 */

import { isDeepStrictEqual } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import type { RunItem } from '../../functions/batch/control.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import type { View } from '../../functions/core/views.ts';
import { type OracleSpec, oracleRows } from '../support/oracle.ts';
import { streamEntries } from './diagnose.ts';
import { SimError, type World } from './harness.ts';
import { COUNTRIES, type Ev, PAGES, TYPES } from './ledger.ts';
import type { QueryDraw } from './schedule.ts';
import type { SeedState } from './state.ts';

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

/** One item of a POST /events body and what ingest must make of it. */
export interface Expected {
  /** Valid: the event; bad: the field ingest must name. */
  readonly event?: Ev;
  readonly badField?: string;
  readonly payload: unknown;
}

export type ApiAnswer = Awaited<ReturnType<World['api']>>;
export type Pointer = { version: number; cutoff: number };

/** Values a query filter may ask for, per dimension (the last one matches nothing). */
const FILTER_VALUES: Record<string, readonly string[]> = {
  country: [...COUNTRIES, 'XX'],
  page: [...PAGES, '/none'],
  type: [...TYPES, 'none'],
};
const GRAINS = ['minute', 'hour', 'day', 'all'] as const;
const GRAIN_MS = { minute: 60_000, hour: 3_600_000, day: 86_400_000 } as const;
/** Every bucket from the oldest late event (3 days back) to now. */
const WHOLE_SPAN = { fromBackMin: 4 * 24 * 60, spanMin: 4 * 24 * 60 + 120 } as const;

/** `q` over every bucket from the oldest late event to now. */
export const wholeSpan = (q: QueryDraw): QueryDraw => ({ ...q, ...WHOLE_SPAN });

export class Checks {
  /** The last published pointer seen (a rollback resets it: the one move back that is allowed). */
  private lastPointer: Pointer | null = null;
  /** Versions seen published, for rollback targets. */
  private readonly published = new Set<number>();

  constructor(private readonly s: SeedState) {}

  private get world(): World {
    return this.s.world;
  }

  // ---- the published batch --------------------------------------------------------------------

  async readPointer(): Promise<Pointer | null> {
    const got = await this.world.clients.doc.send(
      new GetCommand({ TableName: this.world.config.tables.control, Key: { pk: 'pointer', sk: 'current' }, ConsistentRead: true }),
    );
    return got.Item ? { version: Number(got.Item.version), cutoff: Number(got.Item.cutoff) } : null;
  }

  /** The batch version and cutoff never go back, except by a rollback (which resets the reference). */
  pointer(p: Pointer | null, where: string): void {
    this.s.checks++;
    const last = this.lastPointer;
    if (last && (p === null || p.version < last.version || p.cutoff < last.cutoff)) {
      const next = p ? `version ${p.version} (cutoff ${new Date(p.cutoff).toISOString()})` : 'none';
      throw new CheckFailure(
        'batch version monotonic',
        `${where}: the published batch went from version ${last.version} (cutoff ${new Date(last.cutoff).toISOString()}) ` +
          `to ${next} without a rollback`,
      );
    }
    if (p) {
      this.lastPointer = p;
      this.published.add(p.version);
    }
  }

  /** Versions seen published below `version`, newest first. */
  publishedBelow(version: number): number[] {
    return [...this.published].filter((v) => v < version).sort((a, b) => b - a);
  }

  /** The answer of POST /batch/rollback to `target`, and the pointer after it. */
  async rollbackAnswer(target: number, res: ApiAnswer): Promise<void> {
    this.s.checks++;
    if (res.status === 200) {
      const cutoff = Date.parse(String(res.body.cutoff));
      if (res.body.version !== target)
        throw new CheckFailure('rollback', `asked for v${target}, the pointer is ${JSON.stringify(res.body)}`);
      // A rollback is the one move back that is allowed: it becomes the new reference.
      this.lastPointer = { version: target, cutoff };
      this.pointer(await this.readPointer(), 'after a rollback');
      return;
    }
    if (res.status !== 404 && res.status !== 409)
      throw new CheckFailure('rollback', `POST /batch/rollback answered ${res.status} ${JSON.stringify(res.body)}`);
    this.pointer(await this.readPointer(), 'after a refused rollback');
  }

  /** The answer of POST /batch/runs. */
  batchStarted(res: ApiAnswer): void {
    if (res.status !== 202) throw new CheckFailure('batch api', `POST /batch/runs answered ${res.status} ${JSON.stringify(res.body)}`);
  }

  /** The answer of GET /batch/runs/{id}. */
  runAnswered(id: string, res: ApiAnswer): void {
    if (res.status !== 200) throw new CheckFailure('batch api', `GET /batch/runs/${id} answered ${res.status} ${JSON.stringify(res.body)}`);
  }

  /** A run stalled past its lock must not publish once another run took the lock and published. */
  overtakenDidNotPublish(runId: string, version: number, published: boolean, other: RunItem): void {
    if (published && other.state === 'SUCCEEDED') {
      throw new CheckFailure(
        'stalled run',
        `run ${runId} (v${version}) published after its lock was taken by ${other.runId} (v${other.version})`,
      );
    }
  }

  /** ... nor move the pointer by trying. */
  overtakenLeftPointer(before: Pointer | null, after: Pointer | null, other: RunItem): void {
    if (other.state === 'SUCCEEDED' && !isDeepStrictEqual(before, after)) {
      throw new CheckFailure(
        'stalled run',
        `the pointer moved from ${JSON.stringify(before)} to ${JSON.stringify(after)} when the overtaken run tried to publish`,
      );
    }
    this.pointer(after, 'after an overtaken run');
  }

  /** With the faults off, a batch run published a cutoff past every arrival. */
  async finalBatch(needCutoff: number, run: RunItem | undefined): Promise<void> {
    const pointer = await this.readPointer();
    this.pointer(pointer, 'final batch run');
    if (!pointer || pointer.cutoff < needCutoff) {
      throw new CheckFailure(
        'final batch',
        `with the faults off no batch run covered every arrival (cutoff ${pointer ? new Date(pointer.cutoff).toISOString() : 'none'}, ` +
          `needed ${new Date(needCutoff).toISOString()}; last run ${run?.state} ${run?.error ?? run?.note ?? ''})`,
      );
    }
  }

  // ---- ingest ---------------------------------------------------------------------------------

  /** The answer of one POST /events; returns the events it acknowledged, in order. */
  ingestAnswer(body: unknown, expected: readonly Expected[], res: ApiAnswer): Ev[] {
    const bad = expected.map((x, i) => ({ i, field: x.badField })).filter((x) => x.field !== undefined);
    const valid = expected.length - bad.length;
    if (!Array.isArray(body) && (body === null || typeof body !== 'object')) {
      // One bare JSON value that is not an object: the body itself is at fault (400 with an error, no per-event list).
      this.s.checks++;
      if (res.status !== 400 || typeof res.body.error !== 'string' || res.body.error === '') {
        throw new CheckFailure(
          'ingest status',
          `a body that is a bare ${typeof body}: expected 400 with an error, received ${res.status} ${JSON.stringify(res.body)}`,
        );
      }
      return [];
    }
    const rejected = (res.body.rejected ?? []) as { index: number; field: string; message: string }[];
    this.s.checks++;
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
      return [];
    }
    if (res.status === 503) {
      const notStored = new Set((res.body.notStored ?? []) as number[]);
      if (notStored.size === 0) throw new CheckFailure('ingest status', `503 without notStored: ${JSON.stringify(res.body)}`);
      return expected.flatMap((x, i) => (x.event && !notStored.has(i) ? [x.event] : []));
    }
    const want = bad.length > 0 ? 207 : 200;
    if (res.status !== want || res.body.accepted !== valid) {
      throw new CheckFailure(
        'ingest status',
        `expected ${want} with ${valid} accepted, received ${res.status} ${JSON.stringify(res.body).slice(0, 500)}`,
      );
    }
    return expected.flatMap((x) => (x.event ? [x.event] : []));
  }

  // ---- queries --------------------------------------------------------------------------------

  /** Checks (1) to (4) around one drawn query. */
  async afterQuery(q: QueryDraw): Promise<void> {
    await this.query(q);
    await this.totals();
    await this.poison();
  }

  /** Every view, served by the batch alone at the end: every bucket and group, and the totals. */
  async everyView(): Promise<void> {
    for (let i = 0; i < DEMO_VIEWS.length; i++) {
      await this.query({ view: i, ...WHOLE_SPAN, align: true, coarser: 0, groupBy: 'all', filter: null });
      await this.query({ view: i, ...WHOLE_SPAN, align: true, coarser: 3, groupBy: 'none', filter: null });
    }
  }

  /** One drawn query: its rows equal the oracle's, its batch is not older than the last one seen. */
  async query(q: QueryDraw): Promise<void> {
    const { view, spec, params } = this.queryParams(q, Date.now());
    const res = await this.world.api('GET', `/views/${view.name}?${params}`);
    this.s.queries++;
    if (res.status !== 200)
      throw new CheckFailure('query status', `GET /views/${view.name}?${params} answered ${res.status} ${JSON.stringify(res.body)}`);
    this.batchField(res.body.batch, `GET /views/${view.name}`);
    const want = oracleRows(view, this.s.ledger.events(), spec);
    this.rows(`GET /views/${view.name}?${params}`, res.body.rows as Record<string, unknown>[], want, res.body.batch);
  }

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

  private batchField(batch: unknown, where: string): void {
    const b = batch as { version: number; cutoff: string } | null;
    this.pointer(b ? { version: b.version, cutoff: Date.parse(b.cutoff) } : null, where);
  }

  private rows(what: string, got: readonly Record<string, unknown>[], want: readonly Record<string, unknown>[], batch: unknown): void {
    this.s.checks++;
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

  /** Per type, the count over all time equals the copies that count (the ledger's `events`): nothing lost, nothing counted twice. */
  async totals(): Promise<void> {
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
    this.s.queries++;
    if (res.status !== 200) throw new CheckFailure('query status', `totals query answered ${res.status} ${JSON.stringify(res.body)}`);
    this.batchField(res.body.batch, 'totals query');
    const want = new Map<string, number>();
    for (const e of this.s.ledger.events()) want.set(e.type, (want.get(e.type) ?? 0) + 1);
    const got = new Map((res.body.rows as { type: string; events: number }[]).map((r) => [r.type, r.events]));
    this.s.checks++;
    const problems: string[] = [];
    for (const t of new Set([...want.keys(), ...got.keys()])) {
      const w = want.get(t) ?? 0;
      const g = got.get(t) ?? 0;
      if (g < w) problems.push(`${t}: ${w - g} acknowledged event(s) lost (${g} of ${w})`);
      if (g > w) problems.push(`${t}: ${g - w} counted twice or never acknowledged (${g} for ${w} ids)`);
    }
    if (problems.length > 0)
      throw new CheckFailure('nothing lost, nothing twice', `${problems.join('; ')} (batch ${JSON.stringify(res.body.batch)})`);
    this.rows(
      'totals',
      res.body.rows as Record<string, unknown>[],
      oracleRows(view, this.s.ledger.events(), { from, to, grain: 'all', groupBy: ['type'] }),
      res.body.batch,
    );
  }

  // ---- the failures bucket, the stream, the archive -------------------------------------------

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
  async poison(): Promise<void> {
    this.s.checks++;
    const w = this.world;
    const keys = new Set(await this.listKeys(w.config.buckets.failures, 'failures/'));
    const expected = new Set(
      this.s.ledger.poison.flatMap((p) => [`failures/speed/${p.shard}/${p.seq}.json`, `failures/archive/${p.shard}/${p.seq}.json`]),
    );
    const missing = [...expected].filter((k) => !keys.has(k));
    const extra = [...keys].filter((k) => !expected.has(k));
    if (missing.length > 0 || extra.length > 0) {
      throw new CheckFailure(
        'poison in the on-failure destination only',
        `${missing.length} poison object(s) missing (${missing.slice(0, 4).join(', ')}); ` +
          `${extra.length} unexpected object(s) in the failures bucket (${extra.slice(0, 4).join(', ')})`,
      );
    }
    const stats = await w.clients.doc.send(
      new GetCommand({ TableName: w.config.tables.control, Key: { pk: 'stats', sk: 'poison' }, ConsistentRead: true }),
    );
    const speed = Number(stats.Item?.count ?? 0);
    const archive = Number(stats.Item?.archive ?? 0);
    const n = this.s.ledger.poison.length;
    if (speed !== n || archive !== n) {
      throw new CheckFailure('poison counted once', `${n} poison record(s) put; stats/poison counts speed ${speed}, archive ${archive}`);
    }
  }

  /** After a restart of the emulators (SIGKILL included): every acknowledged id is still in the stream. */
  async streamKeptAcknowledged(): Promise<void> {
    const ids = new Set((await streamEntries(this.world)).flatMap((r) => [r.partitionKey, ...r.ids]));
    const lost = [...this.s.ledger.acked.keys()].filter((id) => !ids.has(id));
    this.s.checks++;
    if (lost.length > 0)
      throw new SimError(
        `the stream lost ${lost.length} acknowledged record(s) across a restart of the emulators: ${lost.slice(0, 5).join(', ')}`,
      );
  }

  /** The raw archive holds every acknowledged id and no poison record. */
  async archive(): Promise<void> {
    this.s.checks++;
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
    const missing = [...this.s.ledger.acked.keys()].filter((id) => !ids.has(id));
    const poison = this.s.ledger.poison.filter((p) => seqs.has(`${p.shard}/${p.seq}`));
    if (missing.length > 0 || poison.length > 0) {
      throw new CheckFailure(
        'archive complete and clean',
        `${missing.length} acknowledged id(s) not archived (${missing.slice(0, 5).join(', ')}); ${poison.length} poison record(s) archived`,
      );
    }
  }
}
