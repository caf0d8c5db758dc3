/**
 * Test helpers for the archive and the batch layer: generated streams of
 * events (demo mix, duplicates, late events) laid out on shards with arrival
 * times and sequence numbers, a fresh set of tables and buckets per test in
 * shared emulators, the archive handler over them, an independent oracle of
 * batch-view rows, and a reader of the rows a version holds.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AttributeValue, CreateTableCommand, type DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { Decimal as DecimalJs } from 'decimal.js';
import type { Clients } from '../../functions/adapters/clients.ts';
import type { ArchiveHooks } from '../../functions/archive/archive.ts';
import { createArchiveHandler } from '../../functions/archive/handler.ts';
import { duckDbEngine } from '../../functions/batch/duckdb.ts';
import type { BatchOptions } from '../../functions/batch/pipeline.ts';
import type { Config } from '../../functions/config.ts';
import { DEFAULT_SETTINGS, type Settings } from '../../functions/core/settings.ts';
import type { View } from '../../functions/core/views.ts';
import { BUCKETS, TABLES } from '../../functions/resources.ts';
import { kinesisEvent, quietTelemetry, type ShardRecord, seqOf, shardId } from './speed.ts';

export { kinesisEvent, type ShardRecord, seqOf, shardId };

const Decimal = DecimalJs.clone({ precision: 80 });

/** Names of one isolated set of tables and buckets inside shared emulators. */
export interface Resources {
  readonly tables: { speed: string; dedup: string; batchViews: string; control: string };
  readonly buckets: { raw: string; failures: string };
  readonly stageDir: string;
}

let counter = 0;
const stageDirs: string[] = [];

/** Removes the staging directories `freshResources` made (call in afterAll). */
export function removeStageDirs(): void {
  for (const d of stageDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** Creates fresh tables and buckets (`<prefix>-<n>-<id>`): each test starts from empty stores. */
export async function freshResources(c: Pick<Clients, 'dynamodb' | 's3'>, prefix = 'b'): Promise<Resources> {
  const p = `${prefix}${process.pid}-${counter++}`;
  const tables = { speed: `${p}-speed`, dedup: `${p}-dedup`, batchViews: `${p}-batch-views`, control: `${p}-control` };
  const buckets = { raw: `${p}-raw`.toLowerCase(), failures: `${p}-failures`.toLowerCase() };
  await Promise.all([
    ...(['speed', 'dedup', 'batchViews', 'control'] as const).map((t) => {
      const spec = TABLES[t];
      const keys = [spec.partitionKey, ...('sortKey' in spec ? [spec.sortKey] : [])];
      return c.dynamodb.send(
        new CreateTableCommand({
          TableName: tables[t],
          BillingMode: 'PAY_PER_REQUEST',
          AttributeDefinitions: keys.map((k) => ({ AttributeName: k.name, AttributeType: k.type })),
          KeySchema: keys.map((k, i) => ({ AttributeName: k.name, KeyType: i === 0 ? ('HASH' as const) : ('RANGE' as const) })),
        }),
      );
    }),
    ...Object.keys(BUCKETS).map((b) => c.s3.send(new CreateBucketCommand({ Bucket: buckets[b as keyof typeof buckets] }))),
  ]);
  const stageDir = mkdtempSync(join(tmpdir(), 'tandem-stage-test-'));
  stageDirs.push(stageDir);
  return { tables, buckets, stageDir };
}

export function testConfig(r: Resources, streamName: string, views: readonly View[], settings: Partial<Settings> = {}): Config {
  return { streamName, tables: r.tables, buckets: r.buckets, views, settings: { ...DEFAULT_SETTINGS, ...settings } };
}

/** Batch options for tests: DuckDB staging into the resources' own directory, plus overrides. */
export function batchOptions(clients: Pick<Clients, 's3'>, r: Resources, extra: BatchOptions = {}): BatchOptions {
  return { engine: duckDbEngine({ s3: clients.s3, rawBucket: r.buckets.raw, stageDir: r.stageDir }), ...extra };
}

/** The real archive handler over these resources. */
export function archiveHandler(c: Pick<Clients, 'dynamodb' | 's3'>, r: Resources, hooks?: ArchiveHooks) {
  const { logger, metrics } = quietTelemetry();
  return createArchiveHandler({
    s3: c.s3,
    ddb: c.dynamodb,
    rawBucket: r.buckets.raw,
    failureBucket: r.buckets.failures,
    controlTable: r.tables.control,
    logger,
    metrics,
    ...(hooks && { hooks }),
  });
}

// ---- generated streams --------------------------------------------------------------------------

/** A small deterministic PRNG (mulberry32), so generated streams are reproducible from a seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const PAGES = ['/', '/pricing', '/docs', '/blog', '/signup', '/about'];
export const COUNTRIES = ['DE', 'FR', 'US', 'JP', 'BR', 'IN'];

export interface StreamSpec {
  readonly events: number;
  readonly shards?: number;
  /** First arrival, epoch ms. */
  readonly start: number;
  /** Arrivals spread over this many ms. */
  readonly span: number;
  /** Share of records that resend an earlier id (a client retry, sometimes with other values). */
  readonly duplicates?: number;
  /** Share of events whose event time lies minutes to hours before their arrival. */
  readonly late?: number;
  readonly seed?: number;
}

/** Demo-mix events laid out on shards: per shard, sequence numbers and arrivals ascend together. */
export function generateStream(spec: StreamSpec): ShardRecord[] {
  const rand = rng(spec.seed ?? 1);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
  const shards = spec.shards ?? 2;
  const events: { event: Record<string, unknown>; arrival: number }[] = [];
  const sent: Record<string, unknown>[] = [];
  for (let i = 0; i < spec.events; i++) {
    const arrival = spec.start + Math.floor((spec.span * i) / spec.events) + Math.floor(rand() * 50);
    let event: Record<string, unknown>;
    if (sent.length > 0 && rand() < (spec.duplicates ?? 0.01)) {
      const original = pick(sent);
      // Mostly an exact resend; sometimes other values under the same id (the first copy must win).
      event = rand() < 0.7 ? original : { ...original, amount: Math.round(rand() * 100_000) / 100, country: pick(COUNTRIES) };
    } else {
      const late = rand() < (spec.late ?? 0.05);
      const ts = late ? arrival - Math.floor(rand() * 6 * 3_600_000) - 60_000 : arrival - Math.floor(rand() * 2000);
      const r = rand();
      const id = `e-${spec.seed ?? 1}-${i}`;
      if (r < 0.6)
        event = { id, type: 'page_view', ts, page: pick(PAGES), country: pick(COUNTRIES), load_ms: 20 + Math.floor(rand() * 2000) };
      else if (r < 0.85) {
        event = {
          id,
          type: 'purchase',
          ts: rand() < 0.5 ? ts : new Date(ts).toISOString(),
          country: pick(COUNTRIES),
          amount: Math.round(rand() * 50_000) / 100,
        };
        // A few oddities both layers must skip the same way: a missing amount, a non-numeric one, a null country.
        const odd = rand();
        if (odd < 0.05) delete event.amount;
        else if (odd < 0.08) event.amount = 'n/a';
        else if (odd < 0.1) event.country = null;
      } else event = { id, type: 'signup', ts, country: pick(COUNTRIES), plan: pick(['free', 'team', 'enterprise']) };
      sent.push(event);
    }
    events.push({ event, arrival });
  }
  // All copies of an id go to one shard (the partition key is the id), in arrival order.
  const perShard = new Map<number, number>();
  return events.map(({ event, arrival }) => {
    const s = hashShard(String(event.id), shards);
    const n = perShard.get(s) ?? 0;
    perShard.set(s, n + 1);
    return { shard: shardId(s), seq: seqOf(s, n), arrival, event };
  });
}

function hashShard(id: string, shards: number): number {
  let h = 0;
  for (let i = 0; i < id.length; i++) h = (h * 31 + id.charCodeAt(i)) >>> 0;
  return h % shards;
}

/** Splits records into Lambda-like batches of one shard each, of at most `size` records, in stream order. */
export function batchesOf(records: readonly ShardRecord[], size: number): ShardRecord[][] {
  const byShard = new Map<string, ShardRecord[]>();
  for (const r of records) byShard.set(r.shard, [...(byShard.get(r.shard) ?? []), r]);
  const out: ShardRecord[][] = [];
  for (const list of byShard.values()) for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}

// ---- the oracle ---------------------------------------------------------------------------------

const GRAIN_MS = { minute: 60_000, hour: 3_600_000, day: 86_400_000 } as const;
const text = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

function eventTime(ts: unknown): number | undefined {
  if (typeof ts === 'number') return Number.isInteger(ts) ? ts : undefined;
  if (typeof ts !== 'string') return undefined;
  const ms = Date.parse(ts);
  return Number.isNaN(ms) ? undefined : ms;
}

/** A metric value as the contract reads it: a finite JS number with <= 9 decimals and <= 15 digits, else absent. */
function metricValue(v: unknown): DecimalJs | null {
  if (typeof v !== 'number' || !Number.isFinite(v)) return null;
  const d = new Decimal(String(v));
  return d.decimalPlaces() <= 9 && d.precision(true) <= 15 ? d : null;
}

/**
 * The rows version N of a view must hold, computed straight from the
 * definition with none of the code under test: per event id the copy with the
 * smallest (arrival, sequence) over ALL records, counted if it arrived before
 * the cutoff; then the filter, the bucket, the dimensions and exact sums.
 * Keys `bucket|dims json`, values the state columns as plain decimal text.
 */
export function batchOracle(view: View, records: readonly ShardRecord[], cutoff: number): Map<string, Record<string, string | null>> {
  const first = new Map<string, ShardRecord>();
  for (const r of records) {
    if (r.event instanceof Uint8Array) continue;
    const e = r.event;
    if (typeof e.id !== 'string' || typeof e.type !== 'string' || eventTime(e.ts) === undefined) continue;
    const seen = first.get(e.id);
    if (!seen || r.arrival < seen.arrival || (r.arrival === seen.arrival && BigInt(r.seq) < BigInt(seen.seq))) first.set(e.id, r);
  }
  const out = new Map<string, Record<string, string | null>>();
  for (const r of first.values()) {
    if (r.arrival >= cutoff) continue;
    const e = r.event as Record<string, unknown>;
    if (view.filter && !Object.entries(view.filter).every(([k, want]) => text(e[k]) === String(want))) continue;
    const step = GRAIN_MS[view.grain];
    const bucket = Math.floor(eventTime(e.ts)! / step) * step;
    const key = `${bucket}|${JSON.stringify(view.dimensions.map((d) => text(e[d])))}`;
    const row = out.get(key) ?? {};
    for (const [name, m] of Object.entries(view.metrics)) {
      const x = m.fn === 'count' ? null : metricValue(e[m.field]);
      const add = (col: string, by: DecimalJs) => {
        row[col] = new Decimal(row[col] ?? '0').plus(by).toFixed();
      };
      if (m.fn === 'count') add(`${name}__count`, new Decimal(1));
      if (m.fn === 'sum') add(`${name}__sum`, x ?? new Decimal(0));
      if (m.fn === 'avg') {
        add(`${name}__sum`, x ?? new Decimal(0));
        add(`${name}__count`, new Decimal(x ? 1 : 0));
      }
      if (m.fn === 'min' || m.fn === 'max') {
        const col = `${name}__${m.fn}`;
        const cur = row[col];
        if (!(col in row)) row[col] = null;
        if (x) row[col] = cur == null ? x.toFixed() : (m.fn === 'min' ? Decimal.min(cur, x) : Decimal.max(cur, x)).toFixed();
      }
    }
    out.set(key, row);
  }
  return out;
}

/** The rows a version of a view holds in the batch-view table, keyed like `batchOracle`. */
export async function readBatchRows(
  ddb: DynamoDBClient,
  table: string,
  view: View,
  version: number,
): Promise<Map<string, Record<string, string | null>>> {
  const out = new Map<string, Record<string, string | null>>();
  let start: Record<string, AttributeValue> | undefined;
  do {
    const page = await ddb.send(
      new ScanCommand({
        TableName: table,
        ConsistentRead: true,
        FilterExpression: '#view = :view AND #version = :version',
        ExpressionAttributeNames: { '#view': 'view', '#version': 'version' },
        ExpressionAttributeValues: { ':view': { S: view.name }, ':version': { N: String(version) } },
        ...(start && { ExclusiveStartKey: start }),
      }),
    );
    for (const item of page.Items ?? []) {
      const dims = (item.dims?.L ?? []).map((d) => (d.NULL ? null : (d.S ?? null)));
      const row: Record<string, string | null> = {};
      for (const [metric, m] of Object.entries(view.metrics)) {
        const comps = m.fn === 'avg' ? ['sum', 'count'] : [m.fn];
        for (const c of comps) {
          const col = `${metric}__${c}`;
          const v = item[col]?.N;
          row[col] = v === undefined ? null : new Decimal(v).toFixed();
        }
      }
      out.set(`${item.bucket?.N}|${JSON.stringify(dims)}`, row);
    }
    start = page.LastEvaluatedKey;
  } while (start);
  return out;
}

/** Every item of a table (tests: counting what a version left behind). */
export async function scanAll(ddb: DynamoDBClient, table: string): Promise<Record<string, AttributeValue>[]> {
  const out: Record<string, AttributeValue>[] = [];
  let start: Record<string, AttributeValue> | undefined;
  do {
    const page = await ddb.send(new ScanCommand({ TableName: table, ConsistentRead: true, ...(start && { ExclusiveStartKey: start }) }));
    out.push(...(page.Items ?? []));
    start = page.LastEvaluatedKey;
  } while (start);
  return out;
}

/** Sorted plain object of a row map (readable diffs in `toEqual`). */
export const sorted = (m: Map<string, Record<string, string | null>>) =>
  Object.fromEntries([...m.entries()].sort(([a], [b]) => (a < b ? -1 : 1)));
