/**
 * Test helpers for the speed layer: synthetic Kinesis events with real-looking
 * sequence numbers, an independent oracle of the speed table, a reader of the
 * table, fresh table sets, and a fault-injecting wrapper around the real
 * DynamoDB client.
 */

import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { type AttributeValue, CreateTableCommand, DescribeTableCommand, type DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { GetRecordsCommand, GetShardIteratorCommand, type KinesisClient, ListShardsCommand } from '@aws-sdk/client-kinesis';
import { kinesisEventFactory, kinesisSource } from '../../functions/adapters/kinesis-records.ts';
import { deaggregateRecord, isAggregated } from '../../functions/adapters/kpl.ts';
import { Decimal } from '../../functions/core/decimal.ts';
import { mergeSketches, parseSketch, sketchOf } from '../../functions/core/hll.ts';
import { cellsOf } from '../../functions/core/keys.ts';
import { recordPosition } from '../../functions/core/record.ts';
import type { View } from '../../functions/core/views.ts';
import { TABLES } from '../../functions/resources.ts';
import { countedCopies } from './oracle.ts';

/** A record as it sits in a shard: what producers sent and what Kinesis stamped on it. */
export interface ShardRecord {
  readonly shard: string;
  readonly seq: string;
  /** Epoch ms. */
  readonly arrival: number;
  /** The event (JSON-encoded into the record), or raw bytes for poison tests. */
  readonly event: Record<string, unknown> | Uint8Array;
}

/** The stream's records as the consumers must see them: each user record of an aggregate as an event at its position. */
export async function readStreamEvents(
  cloud: { readonly clients: { readonly kinesis: KinesisClient } },
  StreamName: string,
): Promise<ShardRecord[]> {
  const shards = (await cloud.clients.kinesis.send(new ListShardsCommand({ StreamName }))).Shards ?? [];
  const out: ShardRecord[] = [];
  const event = (bytes: Buffer): ShardRecord['event'] => {
    try {
      return JSON.parse(bytes.toString('utf8'));
    } catch {
      return bytes;
    }
  };
  for (const s of shards) {
    const it = await cloud.clients.kinesis.send(
      new GetShardIteratorCommand({ StreamName, ShardId: s.ShardId!, ShardIteratorType: 'TRIM_HORIZON' }),
    );
    const got = await cloud.clients.kinesis.send(new GetRecordsCommand({ ShardIterator: it.ShardIterator!, Limit: 10_000 }));
    for (const r of got.Records ?? []) {
      const bytes = Buffer.from(r.Data ?? new Uint8Array());
      const base = { shard: s.ShardId!, arrival: r.ApproximateArrivalTimestamp!.getTime() };
      if (!isAggregated(bytes)) {
        out.push({ ...base, seq: r.SequenceNumber!, event: event(bytes) });
        continue;
      }
      const agg = deaggregateRecord(bytes, r.SequenceNumber!, r.PartitionKey!);
      if (!agg.ok) out.push({ ...base, seq: r.SequenceNumber!, event: bytes });
      else
        for (const u of agg.records)
          out.push({ ...base, seq: recordPosition(r.SequenceNumber!, u.sub), event: u.ok ? event(u.data) : Buffer.from('bad') });
    }
  }
  return out;
}

const SEQ_BASE = [
  49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898n,
  49_590_338_271_512_557_353_758_223_161_503_106_814_194_224_350_642_569_314n,
  49_590_338_271_534_858_098_956_753_784_644_642_532_466_872_712_148_549_730n,
  49_590_338_271_557_158_844_155_284_407_786_178_250_739_521_073_654_530_146n,
];

/** Kinesis-like shard id. */
export const shardId = (i: number) => `shardId-${String(i).padStart(12, '0')}`;

/** The n-th sequence number of shard i: 56 digits, strictly increasing, with uneven gaps as in Kinesis. */
export function seqOf(shard: number, n: number): string {
  const base = SEQ_BASE[shard % SEQ_BASE.length]! + BigInt(Math.floor(shard / SEQ_BASE.length)) * 10n ** 40n;
  return String(base + BigInt(n) * 7_919_000_000n + BigInt((n * 37) % 1000));
}

const SOURCE = kinesisSource({ account: '000000000000', region: 'us-east-1', stream: 'tandem-events', role: 'tandem-speed' });

/** A Lambda Kinesis event holding `records` (as the ESM builds it). */
export function kinesisEvent(records: readonly ShardRecord[]) {
  return kinesisEventFactory(
    records.map((r) => ({
      shard: r.shard,
      seq: r.seq,
      arrival: r.arrival,
      partitionKey: r.event instanceof Uint8Array ? 'poison' : String(r.event.id ?? 'none'),
      data: r.event instanceof Uint8Array ? r.event : Buffer.from(JSON.stringify(r.event)),
    })),
    SOURCE,
  );
}

/** One expected speed cell (records and every state column as normalized decimal text), or an item's hw (the last counted sequence number, padded). */
export type ItemValues = Record<string, string>;

const norm = (v: string | number) => new Decimal(String(v)).toFixed();

/** Event time of the contract (epoch ms or ISO-8601 with a zone), undefined when invalid: such records are poison. */
function eventTime(ts: unknown): number | undefined {
  if (typeof ts === 'number') return Number.isInteger(ts) ? ts : undefined;
  if (typeof ts !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(ts)) return undefined;
  const ms = Date.parse(ts);
  return Number.isNaN(ms) ? undefined : ms;
}

/**
 * The speed table computed straight from the definition, independently of
 * functions/core: the copies that count are those of the dedup rule with
 * horizon `horizonMs` (`countedCopies`, test/support/oracle.ts: a copy counts
 * iff no copy of its id arrived within H before it); each counts in every view
 * whose filter it passes, under (view, arrival window, event-time bucket,
 * dimension values, shard). Keys are `view|window|bucket|dims json|shard` for
 * cells and `hw|view|window|slot|part|shard` for the hw of each item (keys.ts).
 */
export function oracle(
  views: readonly View[],
  records: readonly ShardRecord[],
  windowMs: number,
  horizonMs: number,
): Map<string, ItemValues> {
  const copies: (ShardRecord & { id: string })[] = [];
  for (const r of records) {
    if (r.event instanceof Uint8Array) continue;
    const e = r.event;
    if (typeof e.id !== 'string' || typeof e.type !== 'string' || eventTime(e.ts) === undefined) continue;
    copies.push({ ...r, id: e.id });
  }
  const counted = countedCopies(copies, horizonMs);
  const grainMs = { minute: 60_000, hour: 3_600_000, day: 86_400_000 } as const;
  const text = (v: unknown) => (v === null || v === undefined ? null : String(v));
  const out = new Map<string, ItemValues>();
  for (const r of counted) {
    const e = r.event as Record<string, unknown>;
    const ts = eventTime(e.ts)!;
    for (const v of views) {
      if (v.filter && !Object.entries(v.filter).every(([k, want]) => text(e[k]) === String(want))) continue;
      const window = Math.floor(r.arrival / windowMs) * windowMs;
      const bucket = Math.floor(ts / grainMs[v.grain]) * grainMs[v.grain];
      const key = `${v.name}|${window}|${bucket}|${JSON.stringify(v.dimensions.map((d) => text(e[d])))}|${r.shard}`;
      const item = out.get(key) ?? { records: '0' };
      item.records = norm(Number(item.records) + 1);
      // The item holding the cell: its hw is the last record applied to any of its cells.
      const slot = Math.floor(bucket / 3_600_000) * 3_600_000;
      // A view with a distinct metric cuts even the current hour's item by 10 s of arrival (speed/apply.ts recordItem).
      const sketches = Object.values(v.metrics).some((m) => m.fn === 'distinct');
      const part = slot === Math.floor(window / 3_600_000) * 3_600_000 && !sketches ? 0 : 1 + Math.floor((r.arrival - window) / 10_000);
      const itemKey = `hw|${v.name}|${window}|${slot}|${part}|${r.shard}`;
      const hw = r.seq.padStart(64, '0');
      if ((out.get(itemKey)?.hw ?? '') < hw) out.set(itemKey, { hw });
      for (const [name, m] of Object.entries(v.metrics)) {
        const raw = m.fn === 'count' ? undefined : e[m.field];
        const x = typeof raw === 'number' ? new Decimal(String(raw)) : null;
        const addTo = (col: string, by: Decimal) => {
          item[col] = new Decimal(item[col] ?? '0').plus(by).toFixed();
        };
        if (m.fn === 'count') addTo(`${name}__count`, new Decimal(1));
        if (m.fn === 'sum') addTo(`${name}__sum`, x ?? new Decimal(0));
        if (m.fn === 'avg') {
          addTo(`${name}__sum`, x ?? new Decimal(0));
          addTo(`${name}__count`, new Decimal(x ? 1 : 0));
        }
        if (m.fn === 'min' && x)
          item[`${name}__min`] = item[`${name}__min`] === undefined ? x.toFixed() : Decimal.min(item[`${name}__min`]!, x).toFixed();
        if (m.fn === 'max' && x)
          item[`${name}__max`] = item[`${name}__max`] === undefined ? x.toFixed() : Decimal.max(item[`${name}__max`]!, x).toFixed();
        // The sketch of the cell's distinct values (canonical text; register-wise max, core/hll.ts).
        if (m.fn === 'distinct' && raw !== null && raw !== undefined) {
          const had = item[`${name}__hll`];
          item[`${name}__hll`] = mergeSketches(had === undefined ? null : parseSketch(had), sketchOf(String(raw)))!.toText();
        }
      }
      out.set(key, item);
    }
  }
  return out;
}

/**
 * The speed table keyed like `oracle`: every cell (summed over the parts of a late slot that
 * hold it) with records and the state columns, and every item's hw.
 */
export async function readSpeedTable(ddb: DynamoDBClient, table: string): Promise<Map<string, ItemValues>> {
  const out = new Map<string, ItemValues>();
  let start: Record<string, AttributeValue> | undefined;
  do {
    const res = await ddb.send(new ScanCommand({ TableName: table, ConsistentRead: true, ...(start && { ExclusiveStartKey: start }) }));
    for (const item of res.Items ?? []) {
      out.set(`hw|${item.view?.S}|${item.window?.N}|${item.slot?.N}|${item.part?.N}|${item.shard?.S}`, { hw: item.hw?.S ?? 'none' });
      for (const cell of storedCells(item)) {
        const key = `${item.view?.S}|${item.window?.N}|${cell.bucket}|${JSON.stringify(cell.dims)}|${item.shard?.S}`;
        const values = out.get(key) ?? {};
        for (const [k, v] of Object.entries(cell.columns)) {
          if (k.endsWith('__hll')) {
            const have = values[k];
            values[k] = mergeSketches(have === undefined ? null : parseSketch(have), parseSketch(String(v)))!.toText();
            continue;
          }
          const x = new Decimal(String(v ?? 'NaN'));
          const have = values[k];
          values[k] = (
            have === undefined ? x : k.endsWith('__min') ? Decimal.min(have, x) : k.endsWith('__max') ? Decimal.max(have, x) : x.plus(have)
          ).toFixed();
        }
        out.set(key, values);
      }
    }
    start = res.LastEvaluatedKey;
  } while (start);
  return out;
}

/** The cells of a speed item as scanned (AttributeValues), column values as number text. */
export function storedCells(item: Record<string, AttributeValue>) {
  return cellsOf(Number(item.slot?.N), Object.fromEntries(Object.entries(item).map(([k, v]) => [k, v.N ?? v.S])));
}

/** Sorted plain object of a key map (readable diffs in `toEqual`). */
export const asObject = (m: Map<string, ItemValues>) => Object.fromEntries([...m.entries()].sort(([a], [b]) => (a < b ? -1 : 1)));

/** Creates fresh speed, dedup and control tables named `<prefix>-<id>` (dynalite creates them at once). */
export async function createSpeedTables(ddb: DynamoDBClient, prefix: string): Promise<{ speed: string; dedup: string; control: string }> {
  const names = { speed: `${prefix}-speed`, dedup: `${prefix}-dedup`, control: `${prefix}-control` };
  await Promise.all(
    (['speed', 'dedup', 'control'] as const).map((t) => {
      const spec = TABLES[t];
      const keys = [spec.partitionKey, ...('sortKey' in spec ? [spec.sortKey] : [])];
      return ddb.send(
        new CreateTableCommand({
          TableName: names[t],
          BillingMode: 'PAY_PER_REQUEST',
          AttributeDefinitions: keys.map((k) => ({ AttributeName: k.name, AttributeType: k.type })),
          KeySchema: keys.map((k, i) => ({ AttributeName: k.name, KeyType: i === 0 ? ('HASH' as const) : ('RANGE' as const) })),
        }),
      );
    }),
  );
  // dynalite answers CreateTable at once but flips the table to ACTIVE on a timer: wait for it.
  for (const TableName of Object.values(names)) {
    for (let i = 0; (await ddb.send(new DescribeTableCommand({ TableName }))).Table?.TableStatus !== 'ACTIVE'; i++) {
      if (i > 200) throw new Error(`table ${TableName} did not become ACTIVE`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  return names;
}

export interface Fault {
  /** Requests of this kind that pass before the fault: the (after + 1)-th one fails. */
  readonly after: number;
  /** `throw`: fail before sending; `lost`: send (the write lands), then fail as if the response was lost. */
  readonly kind: 'throw' | 'lost';
  /** Which commands count: UpdateItem only, or every request. */
  readonly on: 'UpdateItemCommand' | 'any';
}

export class InjectedFault extends Error {
  constructor(what: string) {
    super(`injected fault at ${what}`);
    this.name = 'InjectedFault';
  }
}

/**
 * The real client behind a seam: `arm(fault)` makes one request fail, then the
 * client is healthy again. Counts every request by command name.
 */
export function faultyClient(real: DynamoDBClient) {
  let fault: Fault | undefined;
  let seen = 0;
  const counts: Record<string, number> = {};
  const send = async (command: { constructor: { name: string } }, ...rest: unknown[]) => {
    const name = command.constructor.name;
    if (fault && (fault.on === 'any' || fault.on === name)) {
      if (seen++ === fault.after) {
        const f = fault;
        fault = undefined;
        // The request reaches the store whatever it answers; the caller sees only a lost response.
        if (f.kind === 'lost')
          await (real.send as (c: unknown, ...r: unknown[]) => Promise<unknown>)(command, ...rest).catch(() => undefined);
        counts[name] = (counts[name] ?? 0) + (f.kind === 'lost' ? 1 : 0);
        throw new InjectedFault(`${name} #${f.after + 1} (${f.kind})`);
      }
    }
    counts[name] = (counts[name] ?? 0) + 1;
    return (real.send as (c: unknown, ...r: unknown[]) => Promise<unknown>)(command, ...rest);
  };
  const client = new Proxy(real, { get: (t, p, r) => (p === 'send' ? send : Reflect.get(t, p, r)) }) as DynamoDBClient;
  return {
    client,
    counts,
    arm(f: Fault | undefined) {
      fault = f;
      seen = 0;
    },
    /** Whether the armed fault has not fired yet. */
    get armed() {
      return fault !== undefined;
    },
  };
}

/** A logger and metrics that stay quiet in tests. */
export function quietTelemetry() {
  process.env.POWERTOOLS_METRICS_DISABLED = 'true';
  // TANDEM_TEST_LOG=1 shows the handler's log (e.g. why a batch failed) when a test needs debugging.
  return {
    logger: new Logger({ serviceName: 'tandem-speed-test', logLevel: process.env.TANDEM_TEST_LOG ? 'DEBUG' : 'SILENT' }),
    metrics: new Metrics({ namespace: 'TandemTest', serviceName: 'speed' }),
  };
}
