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
import {
  type AttributeValue,
  CreateTableCommand,
  type DynamoDBClient,
  GetItemCommand,
  QueryCommand,
  ScanCommand,
} from '@aws-sdk/client-dynamodb';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import type { KinesisStreamEvent } from 'aws-lambda';
import { Decimal as DecimalJs } from 'decimal.js';
import { expect } from 'vitest';
import type { Clients } from '../../functions/adapters/clients.ts';
import type { ArchiveHooks } from '../../functions/archive/archive.ts';
import { createArchiveHandler } from '../../functions/archive/handler.ts';
import { duckDbEngine } from '../../functions/batch/duckdb.ts';
import { readPartitionRows, rollupRows, rowsOfItems } from '../../functions/batch/load.ts';
import type { BatchOptions } from '../../functions/batch/pipeline.ts';
import type { Config } from '../../functions/config.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { mergeSketches, parseSketch, sketchOf } from '../../functions/core/hll.ts';
import { batchDayBlockPk, batchPartitionPk, batchRollupPk, blockStart, POINTER_KEY, pad13, versionKey } from '../../functions/core/keys.ts';
import { DEFAULT_SETTINGS, type Settings } from '../../functions/core/settings.ts';
import type { View } from '../../functions/core/views.ts';
import { BUCKETS, TABLES } from '../../functions/resources.ts';
import type { TestCloud } from './cloud.ts';
import { countedCopies } from './oracle.ts';
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
/** The control table of each batch-view table `freshResources` made (readBatchRows reads a version's manifest there). */
const controlTables = new Map<string, string>();

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
  controlTables.set(tables.batchViews, tables.control);
  return { tables, buckets, stageDir };
}

export function testConfig(r: Resources, streamName: string, views: readonly View[], settings: Partial<Settings> = {}): Config {
  return { streamName, tables: r.tables, buckets: r.buckets, views, settings: { ...DEFAULT_SETTINGS, ...settings } };
}

/** Batch options for tests: DuckDB staging into the resources' own directory, plus overrides. */
export function batchOptions(clients: Pick<Clients, 's3'>, r: Resources, extra: BatchOptions = {}): BatchOptions {
  return { engine: duckDbEngine({ s3: clients.s3, rawBucket: r.buckets.raw, stageDir: r.stageDir }), ...extra };
}

/** The pointer item; dynalite answers ResourceNotFound for a table created a moment ago (still CREATING), so a few retries. */
async function publishedPointer(ddb: DynamoDBClient, table: string) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await ddb.send(new GetItemCommand({ TableName: table, Key: marshallKey(POINTER_KEY), ConsistentRead: true }));
    } catch (e) {
      if ((e as Error).name !== 'ResourceNotFoundException' || attempt >= 40) throw e;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
}

/**
 * The real archive handler over these resources, in a world that stays possible: it refuses a
 * record that arrived before the published cutoff. A published cutoff C vouches that every record
 * arriving before C is archived (invariant 4, docs/design.md: the planner saw every shard idle or
 * lagging past C), and increments rely on it: the next run counts only the arrivals in [C, C'), so
 * a record archived later with an arrival below C would be in a rebuild and in `batchOracle`, and
 * never in an increment. In production Kinesis stamps arrivals, so that cannot happen; a test clock
 * can make it happen (new records started at "the last arrival + 1 min" while the run's `now` was
 * 2 min after it), hence the check here rather than a difference found later.
 */
export function archiveHandler(c: Pick<Clients, 'dynamodb' | 's3'>, r: Resources, hooks?: ArchiveHooks) {
  const { logger, metrics } = quietTelemetry();
  const handler = createArchiveHandler({
    s3: c.s3,
    ddb: c.dynamodb,
    rawBucket: r.buckets.raw,
    failureBucket: r.buckets.failures,
    controlTable: r.tables.control,
    logger,
    metrics,
    ...(hooks && { hooks }),
  });
  // A redelivery of records already archived (a Lambda retry) is no new arrival: allowed after any publish.
  const archived = new Set<string>();
  // Sequence number and arrival: two generated streams of one world may reuse sequence numbers (generateStream starts each at 0).
  const redelivery = (x: { eventID: string; kinesis: { approximateArrivalTimestamp: number } }) =>
    `${x.eventID}@${x.kinesis.approximateArrivalTimestamp}`;
  return async (event: Parameters<typeof handler>[0]) => {
    // Malformed events (archive.test.ts) go to the handler as they are.
    const records = (event as Partial<KinesisStreamEvent> | null)?.Records;
    if (!Array.isArray(records)) return handler(event);
    const pointer = await publishedPointer(c.dynamodb, r.tables.control);
    const cutoff = pointer.Item?.cutoff?.N === undefined ? undefined : Number(pointer.Item.cutoff.N);
    const early =
      cutoff === undefined
        ? undefined
        : records.find((x) => x.kinesis?.approximateArrivalTimestamp * 1000 < cutoff && !archived.has(redelivery(x)));
    if (early && cutoff !== undefined) {
      const at = new Date(early.kinesis.approximateArrivalTimestamp * 1000).toISOString();
      throw new Error(
        `test world: record ${early.kinesis.sequenceNumber} arrived at ${at}, before the published cutoff ` +
          `${new Date(cutoff).toISOString()}: archived now it is in no increment (start new records at or after the cutoff)`,
      );
    }
    const out = await handler(event);
    if (out.batchItemFailures.length === 0) for (const x of records) archived.add(redelivery(x));
    return out;
  };
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
 * definition with none of the code under test: the copies that count under
 * the dedup rule with horizon H (test/support/oracle.ts `countedCopies`: the
 * first copy of an id, or one whose previous copy arrived more than H
 * before it), those that arrived before the cutoff; then the filter, the
 * bucket, the dimensions and exact sums. Keys `bucket|dims json`, values the
 * state columns as plain decimal text. H defaults to the settings' 7 days.
 */
export function batchOracle(
  view: View,
  records: readonly ShardRecord[],
  cutoff: number,
  horizonMs = DEFAULT_SETTINGS.dedupHorizonSeconds * 1000,
): Map<string, Record<string, string | null>> {
  const copies: (ShardRecord & { id: string })[] = [];
  for (const r of records) {
    if (r.event instanceof Uint8Array) continue;
    const e = r.event;
    if (typeof e.id !== 'string' || typeof e.type !== 'string' || eventTime(e.ts) === undefined) continue;
    copies.push({ ...r, id: e.id });
  }
  const out = new Map<string, Record<string, string | null>>();
  for (const r of countedCopies(copies, horizonMs)) {
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
      if (m.fn === 'distinct') {
        // The sketch of the row's values (canonical text, core/hll.ts; its registers are checked against
        // an independent oracle in test/unit/hll.test.ts), null while no event carries the field.
        const col = `${name}__hll`;
        const had = row[col] ?? null;
        row[col] = mergeSketches(had === null ? null : parseSketch(had), sketchOf(text(e[m.field])))?.toText() ?? null;
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

/**
 * The rows a version of a view holds, keyed like `batchOracle`: through the version's manifest
 * (partition -> the version that wrote it, as queries read), each partition from its writer's
 * key. A manifest without a map for the view (written before increments): the items the
 * version itself wrote.
 */
export async function readBatchRows(
  ddb: DynamoDBClient,
  table: string,
  view: View,
  version: number,
): Promise<Map<string, Record<string, string | null>>> {
  const control = controlTables.get(table);
  if (!control) throw new Error(`readBatchRows: ${table} is not a batch-view table of freshResources`);
  const manifest = await ddb.send(new GetItemCommand({ TableName: control, Key: marshallKey(versionKey(version)), ConsistentRead: true }));
  const entryM = manifest.Item?.views?.M?.[view.name]?.M;
  const parts = entryM?.partitions?.M;
  const items: Record<string, AttributeValue>[] = [];
  const sortRows = <R extends { bucket: number; dims: readonly (string | null)[] }>(rs: R[]) => {
    const key = (r: R) => `${pad13(r.bucket)}#${JSON.stringify(r.dims)}`;
    return [...rs].sort((a, b) => (key(a) < key(b) ? -1 : 1));
  };
  if (parts) {
    const rollupsM = entryM?.rollups?.M;
    const grains = (rollupsM?.grains?.L ?? []).map((g) => g.S as 'hour' | 'day');
    for (const [p, writer] of Object.entries(parts)) {
      // Copy-on-write per block: each block from the first of [writer, ...inherited writers] that holds it.
      const chain = [Number(writer.N), ...(entryM?.inherits?.M?.[p]?.L ?? []).map((w) => Number(w.N))];
      const blocks = new Set<string>();
      const partItems: Record<string, AttributeValue>[] = [];
      for (const w of chain) {
        const own = await queryKey(ddb, table, batchPartitionPk(view.name, w, Number(p)));
        const fresh = own.filter((item) => !blocks.has(item.block!.N!));
        for (const item of fresh) partItems.push(item);
        for (const item of fresh) blocks.add(item.block!.N!);
      }
      items.push(...partItems);
      // Each rollup the writer keeps must be exactly the rollup of the partition's base rows (increments merge them).
      if (rollupsM && Number(writer.N) >= Number(rollupsM.from?.N)) {
        const base = rowsOfItems(view, partItems);
        for (const g of grains) {
          const got = await readPartitionRows(ddb, table, view, batchRollupPk(view.name, g, Number(writer.N), Number(p)));
          if (JSON.stringify(sortRows(got)) !== JSON.stringify(sortRows(rollupRows(view, g, base))))
            throw new Error(`readBatchRows: version ${version}'s ${g} rollup of ${view.name} partition ${p} is not its base rows' rollup`);
        }
      }
    }
  } else {
    let start: Record<string, AttributeValue> | undefined;
    do {
      const page = await ddb.send(
        new ScanCommand({
          TableName: table,
          ConsistentRead: true,
          FilterExpression: '#view = :view AND #version = :version AND attribute_not_exists(#grain)',
          ExpressionAttributeNames: { '#view': 'view', '#version': 'version', '#grain': 'grain' },
          ExpressionAttributeValues: { ':view': { S: view.name }, ':version': { N: String(version) } },
          ...(start && { ExclusiveStartKey: start }),
        }),
      );
      items.push(...(page.Items ?? []));
      start = page.LastEvaluatedKey;
    } while (start);
  }
  const baseRows = rowsOfItems(view, items);
  // Day blocks (minute views): each must hold exactly the day rollup of the version's partitions in its 30-day block.
  const dayBlocks = manifest.Item?.views?.M?.[view.name]?.M?.rollups?.M?.dayBlocks?.M ?? {};
  for (const [start, writer] of Object.entries(dayBlocks)) {
    const got = await readPartitionRows(ddb, table, view, batchDayBlockPk(view.name, Number(writer.N), Number(start)));
    const inBlock = baseRows.filter((r) => blockStart(r.bucket, 'day') === Number(start));
    const want = rollupRows(view, 'day', inBlock);
    if (JSON.stringify(sortRows(got)) !== JSON.stringify(sortRows(want)))
      throw new Error(
        `readBatchRows: version ${version}'s day block ${start} of ${view.name} (writer ${writer.N}) is not its partitions' day rollup`,
      );
  }
  const out = new Map<string, Record<string, string | null>>();
  for (const r of baseRows) {
    const row: Record<string, string | null> = {};
    for (const [metric, m] of Object.entries(view.metrics)) {
      const comps = m.fn === 'avg' ? ['sum', 'count'] : m.fn === 'distinct' ? ['hll'] : [m.fn];
      for (const c of comps) {
        const col = `${metric}__${c}`;
        const v = r.values[col] ?? null;
        row[col] = v === null || c === 'hll' ? v : new Decimal(v).toFixed();
      }
    }
    const key = `${r.bucket}|${JSON.stringify(r.dims)}`;
    if (out.has(key)) throw new Error(`readBatchRows: version ${version} of ${view.name} holds ${key} twice`);
    out.set(key, row);
  }
  return out;
}

const marshallKey = (k: { pk: string; sk: string }): Record<string, AttributeValue> => ({ pk: { S: k.pk }, sk: { S: k.sk } });

/** Every item of one key (all pages, strongly consistent). */
async function queryKey(ddb: DynamoDBClient, table: string, pk: string): Promise<Record<string, AttributeValue>[]> {
  const items: Record<string, AttributeValue>[] = [];
  let start: Record<string, AttributeValue> | undefined;
  do {
    const page = await ddb.send(
      new QueryCommand({
        TableName: table,
        ConsistentRead: true,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': { S: pk } },
        ...(start && { ExclusiveStartKey: start }),
      }),
    );
    items.push(...(page.Items ?? []));
    start = page.LastEvaluatedKey;
  } while (start);
  return items;
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

/**
 * A fresh archive with the demo views: `add` generates records (5 % duplicates) and archives them in
 * batches of 40, and the clock `now()` moves to 2 minutes after the last arrival; `expectOracle`
 * checks a version's rows of every view against the oracle over the records added.
 */
export async function archiveWorld(cloud: TestCloud, prefix: string, start: number) {
  const r = await freshResources(cloud.clients, prefix);
  const config = testConfig(r, cloud.names.TANDEM_STREAM_NAME!, DEMO_VIEWS);
  const archive = archiveHandler(cloud.clients, r);
  const records: ShardRecord[] = [];
  let now = start;
  const add = async (from: number, span: number, events: number, seed: number) => {
    const rs = generateStream({ events, start: from, span, duplicates: 0.05, seed });
    for (const b of batchesOf(rs, 40)) expect((await archive(kinesisEvent(b))).batchItemFailures).toEqual([]);
    records.push(...rs);
    now = Math.max(now, ...rs.map((x) => x.arrival)) + 2 * 60_000;
  };
  const expectOracle = async (version: number, cutoff: number) => {
    for (const view of DEMO_VIEWS)
      expect(sorted(await readBatchRows(cloud.clients.dynamodb, r.tables.batchViews, view, version)), view.name).toEqual(
        sorted(batchOracle(view, records, cutoff)),
      );
  };
  return { r, config, archive, records, add, expectOracle, now: () => now };
}
