/**
 * Demo traffic for `npm start`: page views, purchases and signups across a
 * few pages and countries, some late (event time minutes to hours back), some
 * resent with the same id as a client retry would be. Sent over the HTTP API
 * (`POST /events` with the API key, the way users send) or straight into the
 * stream with PutRecords (partition key = event id, as ingest does).
 *
 * The default rate is modest on purpose: the demo is left running for hours,
 * and every event costs CPU in each layer and disk in each store (kinesalite
 * keeps records in LevelDB and drops those past the retention, 24 h at least,
 * only when a GetRecords passes them). It was set when the emulator was
 * kinesis-local, which slowed as a shard grew (docs/local-cloud.md, "Long runs").
 */
import { type KinesisClient, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import type { LogSink } from '../functions/adapters/log.ts';

export interface DemoEvent {
  readonly id: string;
  readonly type: 'page_view' | 'purchase' | 'signup';
  readonly ts: string;
  readonly [field: string]: string | number | boolean | null;
}

export const DEMO_PAGES = ['/', '/pricing', '/docs', '/blog', '/signup', '/checkout'] as const;
export const DEMO_COUNTRIES = ['US', 'DE', 'FR', 'GB', 'JP', 'BR'] as const;

/** A small seeded PRNG (mulberry32): the same seed gives the same demo, which the tests rely on. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface DemoOptions {
  readonly seed?: number;
  /** Share of events whose `ts` is minutes to hours in the past. @default 0.05 */
  readonly lateFraction?: number;
  /** Share of events resent later with the same id (client retries). @default 0.03 */
  readonly duplicateFraction?: number;
}

export interface DemoTick {
  /** New events, sent in one request. */
  readonly events: DemoEvent[];
  /** Exact copies of events sent before (same id), sent in a separate request like a client retry. */
  readonly retries: DemoEvent[];
}

export class DemoGenerator {
  private readonly rnd: () => number;
  private readonly late: number;
  private readonly dup: number;
  private readonly toRetry: DemoEvent[] = [];
  private counter = 0;
  private readonly prefix: string;

  constructor(opts: DemoOptions = {}) {
    const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);
    this.rnd = seededRandom(seed);
    this.late = opts.lateFraction ?? 0.05;
    this.dup = opts.duplicateFraction ?? 0.03;
    this.prefix = `demo-${seed.toString(36)}-${Math.floor(this.rnd() * 36 ** 4).toString(36)}`;
  }

  private pick<T>(items: readonly T[], weights?: readonly number[]): T {
    if (!weights) return items[Math.floor(this.rnd() * items.length)]!;
    const total = weights.reduce((a, b) => a + b, 0);
    let x = this.rnd() * total;
    for (let i = 0; i < items.length; i++) {
      x -= weights[i]!;
      if (x < 0) return items[i]!;
    }
    return items[items.length - 1]!;
  }

  /** One event at `nowMs` (event time a little before now, or much earlier when late). */
  event(nowMs: number): DemoEvent {
    const id = `${this.prefix}-${(this.counter++).toString(36)}`;
    const late = this.rnd() < this.late;
    // Late: 2 minutes to 3 hours back (a phone that was offline); else up to 2 s of client delay.
    const back = late ? 120_000 + Math.floor(this.rnd() * (3 * 3_600_000 - 120_000)) : Math.floor(this.rnd() * 2000);
    const ts = new Date(nowMs - back).toISOString();
    const country = this.pick(DEMO_COUNTRIES, [30, 15, 12, 12, 8, 6]);
    const user = `u${Math.floor(this.rnd() * 5000)}`;
    const kind = this.pick(['page_view', 'purchase', 'signup'] as const, [80, 13, 7]);
    if (kind === 'page_view') {
      const page = this.pick(DEMO_PAGES, [30, 15, 25, 15, 8, 7]);
      // Long-tailed load times around 300 ms.
      const load_ms = Math.round(120 + 250 * -Math.log(1 - this.rnd() * 0.999));
      return { id, type: kind, ts, page, country, user, load_ms };
    }
    if (kind === 'purchase') {
      const cents = 499 + Math.floor(this.rnd() * 20_000);
      return { id, type: kind, ts, country, user, amount: cents / 100, items: 1 + Math.floor(this.rnd() * 4) };
    }
    return { id, type: kind, ts, country, user, plan: this.pick(['free', 'pro', 'team'], [70, 22, 8]) };
  }

  /** The events of one tick; some earlier events come back as retries. */
  tick(nowMs: number, n: number): DemoTick {
    const events = Array.from({ length: n }, () => this.event(nowMs));
    const retries = this.toRetry.splice(0, this.toRetry.length);
    for (const e of events) if (this.rnd() < this.dup) this.toRetry.push(e);
    return { events, retries };
  }
}

export type DemoSender = (events: readonly DemoEvent[]) => Promise<void>;

/** Sends events through the HTTP API, as a user would. */
export function httpSender(apiUrl: string, apiKey: string): DemoSender {
  return async (events) => {
    const r = await fetch(`${apiUrl.replace(/\/$/, '')}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': apiKey },
      body: JSON.stringify({ events }),
    });
    const text = await r.text();
    if (r.status !== 200) throw new Error(`POST /events answered ${r.status}: ${text.slice(0, 300)}`);
  };
}

/** Puts events straight into the stream (partition key = event id, as ingest does). */
export function kinesisSender(kinesis: KinesisClient, streamName: string): DemoSender {
  return async (events) => {
    for (let i = 0; i < events.length; i += 500) {
      const chunk = events.slice(i, i + 500);
      const r = await kinesis.send(
        new PutRecordsCommand({
          StreamName: streamName,
          Records: chunk.map((e) => ({ PartitionKey: e.id, Data: Buffer.from(JSON.stringify(e)) })),
        }),
      );
      if (r.FailedRecordCount) throw new Error(`PutRecords: ${r.FailedRecordCount} of ${chunk.length} records failed`);
    }
  };
}

export interface DemoStats {
  sent: number;
  retried: number;
  failedRequests: number;
  skippedTicks: number;
  lastError?: string;
}

export interface Demo {
  stats(): DemoStats;
  stop(): Promise<void>;
}

/** Sends `ratePerSecond` events per second (one request per tick, retries in another). */
export function startDemo(opts: {
  send: DemoSender;
  /** @default 10 */
  ratePerSecond?: number;
  /** @default 1000 */
  tickMs?: number;
  generator?: DemoGenerator;
  logger?: Pick<LogSink, 'warn'>;
}): Demo {
  const rate = opts.ratePerSecond ?? 10;
  const tickMs = opts.tickMs ?? 1000;
  if (!(rate > 0)) throw new RangeError(`ratePerSecond must be positive, received ${rate}`);
  const gen = opts.generator ?? new DemoGenerator();
  const stats: DemoStats = { sent: 0, retried: 0, failedRequests: 0, skippedTicks: 0 };
  let owed = 0;
  let busy: Promise<void> | undefined;
  const tick = () => {
    owed += (rate * tickMs) / 1000;
    if (busy) {
      // The stream is slower than the demo: drop the tick rather than queue without bound.
      stats.skippedTicks++;
      owed = Math.min(owed, rate * 5);
      return;
    }
    const n = Math.floor(owed);
    owed -= n;
    const { events, retries } = gen.tick(Date.now(), n);
    busy = (async () => {
      for (const [batch, key] of [
        [events, 'sent'],
        [retries, 'retried'],
      ] as const) {
        if (batch.length === 0) continue;
        try {
          await opts.send(batch);
          stats[key] += batch.length;
        } catch (e) {
          stats.failedRequests++;
          stats.lastError = e instanceof Error ? e.message : String(e);
          if (stats.failedRequests <= 3 || stats.failedRequests % 100 === 0)
            opts.logger?.warn(`demo: sending events failed (${stats.failedRequests} so far)`, e);
        }
      }
    })().finally(() => {
      busy = undefined;
    });
  };
  const timer = setInterval(tick, tickMs);
  return {
    stats: () => ({ ...stats }),
    stop: async () => {
      clearInterval(timer);
      await busy;
    },
  };
}

/** Seed of the demo's history: the same day of events on every new data dir. */
export const DEMO_HISTORY_SEED = 22;

/**
 * A day (by default) of demo history before `nowMs`, deterministic for a seed
 * and `nowMs`: per minute, events around a daily curve (busier in the
 * afternoon, quiet at night), with the demo's late events and resent copies.
 * `tandem local` backfills it on a new data dir (local/cloud.ts).
 */
export function demoHistory(opts: { nowMs: number; hours?: number; perMinute?: number; seed?: number }): DemoEvent[] {
  const hours = opts.hours ?? 24;
  const perMinute = opts.perMinute ?? 15;
  const gen = new DemoGenerator({ seed: opts.seed ?? DEMO_HISTORY_SEED });
  const start = Math.floor(opts.nowMs / 60_000) * 60_000 - hours * 3_600_000;
  const out: DemoEvent[] = [];
  let owed = 0;
  for (let t = start; t < start + hours * 3_600_000; t += 60_000) {
    const hourOfDay = new Date(t).getUTCHours() + new Date(t).getUTCMinutes() / 60;
    owed += perMinute * (1 + 0.6 * Math.sin(((hourOfDay - 9) / 24) * 2 * Math.PI));
    const n = Math.floor(owed);
    owed -= n;
    // Event times spread over the minute; the generator puts late ones hours back.
    const { events, retries } = gen.tick(t + 59_000, n);
    out.push(...events, ...retries);
  }
  return out;
}
