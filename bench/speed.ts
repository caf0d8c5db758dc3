/**
 * `npm run bench -- speed [--records N] [--sizes 100,1000,10000] [--kinesis-records N] [--no-write]`
 *
 * Part 1, same events and same run, against dynalite (a child process):
 *   (a) the real speed handler fed synthetic Kinesis events of B records;
 *   (b) a naive handler: one unconditional UpdateItem per (record, matching
 *       view), no dedup, no exactly-once (the baseline).
 * Reports records/s, delta writes, dedup requests and claim writes, all
 * DynamoDB requests per record, and delta items per batch, at each batch size,
 * on the demo mix (local/demo.ts: page views, purchases, signups, 5 % late,
 * 3 % resent ids), 1,000 records/s of arrival time on one shard.
 * Requests are counted by a middleware on the real client; the CPU time of the
 * dynalite process and of this one is read around every batch, which gives the
 * ceiling dynalite alone puts on each handler.
 *
 * Part 1 also runs, at batch 1,000, the same mix KPL-aggregated, and the same mix within a
 * backfill's horizon (every arrival within [T, T + H] of a backfill of 100,000 ids, every
 * 10th id of the mix among them), each beside the plain run.
 *
 * Part 2, through the local cloud: records/s from the Kinesis emulator through the
 * local event source mapping and the handler, next to a bare GetRecords loop
 * over the same stream in the same run.
 *
 * Writes the tables into docs/benchmarks.md under `## speed` (unless --no-write); with --json,
 * prints one JSON document on stdout (tables and narration on stderr).
 */

import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { CreateTableCommand, DescribeTableCommand, type DynamoDBClient, PutItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import {
  CreateStreamCommand,
  DescribeStreamSummaryCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  ListShardsCommand,
  PutRecordsCommand,
} from '@aws-sdk/client-kinesis';
import Table from 'cli-table3';
import { Command } from 'commander';
import { batchWriteAll } from '../functions/adapters/batch-items.ts';
import { createClients } from '../functions/adapters/clients.ts';
import type { StreamRecord } from '../functions/adapters/kinesis-event.ts';
import { kinesisEventFactory, kinesisSource, kplAggregate } from '../functions/adapters/kinesis-records.ts';
import { normalize } from '../functions/adapters/poison.ts';
import { aggregate } from '../functions/core/aggregate.ts';
import { encodeIdSet, idSetBucket, idSetBuckets, idSetKey } from '../functions/core/backfill-ids.ts';
import { decimalText } from '../functions/core/decimal.ts';
import { DEMO_VIEWS } from '../functions/core/demo-views.ts';
import { Sketch } from '../functions/core/hll.ts';
import { cellAttribute, dimsKey, pad13, speedPk } from '../functions/core/keys.ts';
import { mapLimit } from '../functions/core/limit.ts';
import { combineViewStates, stateColumns, type ViewState } from '../functions/core/metrics.ts';
import { DEFAULT_SETTINGS } from '../functions/core/settings.ts';
import type { View } from '../functions/core/views.ts';
import { TABLES, TTL_ATTRIBUTE } from '../functions/resources.ts';
import { groupByItem, ItemCache } from '../functions/speed/apply.ts';
import { decide, readClaims, writeClaims } from '../functions/speed/dedup.ts';
import { createSpeedHandler } from '../functions/speed/handler.ts';
import { OutsideCopies } from '../functions/speed/outside.ts';
import { DemoGenerator } from '../local/demo.ts';
import { emulatorEnv, type KinesisEngine, kinesisEngine, startEmulator } from '../local/emulators.ts';
import { startEventSourceMapping } from '../local/esm.ts';
import { cpuMsOf } from './support/cpu.ts';

process.env.POWERTOOLS_METRICS_DISABLED = 'true';
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const opts = new Command()
  .option('--records <n>', 'records per batch size (part 1)', (v) => Number.parseInt(v, 10), 10_000)
  .option('--sizes <list>', 'batch sizes', '100,1000,10000')
  .option('--kinesis-records <n>', 'records put into the Kinesis emulator (part 2; 0 skips it)', (v) => Number.parseInt(v, 10), 3_000)
  .option('--no-write', 'do not update docs/benchmarks.md')
  .option('--json', 'print one JSON document on stdout (narration on stderr)')
  .parse(process.argv)
  .opts<{ records: number; sizes: string; kinesisRecords: number; write: boolean; json?: boolean }>();
/** Report lines: stdout, or stderr when stdout holds the JSON document. */
const out = (...a: unknown[]) => (opts.json ? console.error(...a) : console.log(...a));

const SHARD = 'shardId-000000000000';
const SEQ0 = 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898n;
const T0 = Date.UTC(2025, 2, 3, 12, 0, 0);

/** The demo mix at 1,000 records/s of arrival time: 100 events per 100 ms tick, plus resent ids. */
function demoRecords(n: number, lateFraction?: number): StreamRecord[] {
  const gen = new DemoGenerator({ seed: 42, ...(lateFraction !== undefined && { lateFraction }) });
  const out: StreamRecord[] = [];
  for (let tick = 0; out.length < n; tick++) {
    const at = T0 + tick * 100;
    const { events, retries } = gen.tick(at, 100);
    for (const e of [...events, ...retries]) {
      if (out.length >= n) break;
      // Arrival: spread over the tick, as PutRecords calls would land.
      out.push({
        shard: SHARD,
        seq: String(SEQ0 + BigInt(out.length) * 1_000_003n),
        arrival: at + (out.length % 100),
        data: Buffer.from(JSON.stringify(e)),
      });
    }
  }
  return out;
}

const SOURCE = kinesisSource({ account: '000000000000', region: 'us-east-1', stream: 'bench', role: 'bench' });
const kinesisEvent = (records: readonly StreamRecord[]) => kinesisEventFactory(records, SOURCE);

/** Requests by command, and UpdateItems by table, counted on the real client. */
function countRequests(client: DynamoDBClient) {
  const c = { byCommand: {} as Record<string, number>, updatesByTable: {} as Record<string, number>, total: 0, claimItems: 0 };
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const name = context.commandName ?? '?';
      c.byCommand[name] = (c.byCommand[name] ?? 0) + 1;
      c.total++;
      if (name === 'UpdateItemCommand') {
        const t = (args.input as { TableName?: string }).TableName ?? '?';
        c.updatesByTable[t] = (c.updatesByTable[t] ?? 0) + 1;
      }
      if (name === 'BatchWriteItemCommand') {
        for (const items of Object.values((args.input as { RequestItems?: Record<string, unknown[]> }).RequestItems ?? {}))
          c.claimItems += items.length;
      }
      return next(args);
    },
    { step: 'initialize', name: 'benchCountRequests' },
  );
  return {
    counts: c,
    reset() {
      c.byCommand = {};
      c.updatesByTable = {};
      c.total = 0;
      c.claimItems = 0;
    },
  };
}

async function createTables(ddb: DynamoDBClient, prefix: string) {
  const names = { speed: `${prefix}-speed`, dedup: `${prefix}-dedup`, control: `${prefix}-control` };
  for (const t of ['speed', 'dedup', 'control'] as const) {
    const spec = TABLES[t];
    const keys = [spec.partitionKey, ...('sortKey' in spec ? [spec.sortKey] : [])];
    await ddb.send(
      new CreateTableCommand({
        TableName: names[t],
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: keys.map((k) => ({ AttributeName: k.name, AttributeType: k.type })),
        KeySchema: keys.map((k, i) => ({ AttributeName: k.name, KeyType: i === 0 ? ('HASH' as const) : ('RANGE' as const) })),
      }),
    );
    // dynalite flips a new table to ACTIVE on a timer.
    while ((await ddb.send(new DescribeTableCommand({ TableName: names[t] }))).Table?.TableStatus !== 'ACTIVE')
      await new Promise((r) => setTimeout(r, 10));
  }
  return names;
}

/** The batch's records that parse (the demo mix has no poison), as the handler parses them. */
const parsed = (records: readonly StreamRecord[]) =>
  records.flatMap((r) => {
    const n = normalize(r);
    return n.ok ? [n.record] : [];
  });

/**
 * The baseline: per record and matching view, one unconditional UpdateItem
 * (ADD count/sum; min/max only through if_not_exists, as it has no way to
 * compare), same keys, 16 in flight. What a first speed layer usually does;
 * it double counts every redelivery.
 */
async function naiveBatch(ddb: DynamoDBClient, table: string, records: readonly StreamRecord[]) {
  const raws = parsed(records);
  const updates: { view: (typeof DEMO_VIEWS)[number]; delta: ReturnType<typeof aggregate>[number] }[] = [];
  for (const r of raws)
    for (const view of DEMO_VIEWS)
      for (const delta of aggregate([view], [r], DEFAULT_SETTINGS.windowSeconds * 1000)) updates.push({ view, delta });
  await mapLimit(updates, 16, async ({ view, delta }) => {
    // One item per cell, keyed like Tandem's items but without packing.
    const pk = speedPk(delta.view, delta.window, delta.shard);
    const sk = `${pad13(delta.window)}#${pad13(delta.bucket)}#${dimsKey(delta.dims)}#${delta.shard}`;
    const names: Record<string, string> = { '#records': 'records' };
    const values: Record<string, { N: string } | { S: string }> = { ':one': { N: '1' } };
    const add = ['#records :one'];
    const set: string[] = [];
    stateColumns(view).forEach((c, i) => {
      const v = delta.state[c.metric]?.[c.component];
      if (v == null) return;
      names[`#c${i}`] = c.column;
      values[`:c${i}`] = v instanceof Sketch ? { S: v.toText() } : { N: decimalText(v) };
      if (c.component === 'count' || c.component === 'sum') add.push(`#c${i} :c${i}`);
      else set.push(`#c${i} = if_not_exists(#c${i}, :c${i})`);
    });
    names['#exp'] = TTL_ATTRIBUTE;
    values[':exp'] = { N: String(Math.floor(delta.window / 1000) + 86_400) };
    set.push('#exp = :exp');
    await ddb.send(
      new UpdateItemCommand({
        TableName: table,
        Key: { pk: { S: pk }, sk: { S: sk } },
        UpdateExpression: `ADD ${add.join(', ')} SET ${set.join(', ')}`,
        ExpressionAttributeNames: names,
        ExpressionAttributeValues: values,
      }),
    );
  });
}

interface Row {
  size: number;
  records: number;
  realRps: number;
  naiveRps: number;
  deltaWrites: number;
  dedupRequests: number;
  claimWrites: number;
  requests: number;
  itemsPerBatch: number;
  naiveRequests: number;
  /** Shares of the real handler's time spent on claims and on delta items. */
  dedupShare: number;
  applyShare: number;
  conflicts: number;
  /** CPU per record (µs) of the dynalite process and of this process, real handler and naive handler. */
  cpu: { realDynalite: number; realHandler: number; naiveDynalite: number; naiveHandler: number };
  /** The dedup alone (read the batch's claims, write the new ones, nothing else): records/s, and dynalite's CPU per record (µs). */
  claimsOnly: { rps: number; dynalite: number };
}

/**
 * The dedup the speed layer must do, alone: the batch's claims read (BatchGetItem) and the new
 * ones written (BatchWriteItem) with the handler's own functions, after parsing; no delta. Its
 * dynalite CPU per record is a floor under any handler that claims each id.
 */
async function claimsOnlyBatch(ddb: DynamoDBClient, table: string, records: readonly StreamRecord[]) {
  const raws = parsed(records);
  const io = { requests: 0 };
  const horizonMs = DEFAULT_SETTINGS.dedupHorizonSeconds * 1000;
  const { claims } = await readClaims(ddb, table, [...new Set(raws.map((r) => r.id))], io, { horizonMs });
  await writeClaims(ddb, table, decide(raws, claims, horizonMs).newClaims, DEFAULT_SETTINGS, io);
}

const selfCpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** Runs `fn`: its wall time, and the CPU it cost dynalite (`pid`) and this process; the reads of /proc stay outside the wall time. */
async function measured<T>(pid: number, fn: () => Promise<T>): Promise<{ result: T; ms: number; dynaliteMs: number; selfMs: number }> {
  const [d, h] = [cpuMsOf(pid), selfCpuMs()];
  const t = performance.now();
  const result = await fn();
  const ms = performance.now() - t;
  return { result, ms, dynaliteMs: cpuMsOf(pid) - d, selfMs: selfCpuMs() - h };
}

/**
 * Records/s that `dynaliteUs` of dynalite CPU per record allows at most, and that over the naive
 * handler's records/s: for the real handler, and for the dedup alone (what dynalite allows any
 * handler that claims each id, before it writes a delta).
 */
const ceilingOf = (dynaliteUs: number, r: Row) => ({ rps: 1e6 / dynaliteUs, overNaive: 1e6 / dynaliteUs / r.naiveRps });
const ceiling = (r: Row) => ceilingOf(r.cpu.realDynalite, r);
const claimsCeiling = (r: Row) => ceilingOf(r.claimsOnly.dynalite, r);

const fmt = (n: number, digits = 3) => (Number.isFinite(n) ? n.toFixed(digits) : '-');
const int = (n: number) => Math.round(n).toLocaleString('en-US');
const pct = (x: number) => `${Math.round(x * 100)} %`;

/** The aggregated run: the same demo records, KPL-aggregated, beside the plain run at the same batch size (user records). */
interface AggregatedRow {
  /** User records per batch, and per aggregate (one demo tick: 100 ms of arrivals, the KPL's default RecordMaxBufferedTime). */
  batch: number;
  perAggregate: number;
  records: number;
  rps: number;
  /** All DynamoDB requests per user record; the dedup's alone. */
  requests: number;
  dedupRequests: number;
}

/**
 * `records` as a producer with KPL aggregation on would put them: `perAggregate` consecutive records
 * in one Kinesis record (the aggregator of `aws-kinesis-agg`), at the first one's arrival.
 */
function aggregatedRecords(records: readonly StreamRecord[], perAggregate: number): StreamRecord[] {
  const out: StreamRecord[] = [];
  for (let i = 0; i < records.length; i += perAggregate) {
    const group = records.slice(i, i + perAggregate);
    const users = group.map((r) => ({ partitionKey: JSON.parse(Buffer.from(r.data).toString()).id as string, data: r.data }));
    for (const agg of kplAggregate(users))
      out.push({
        shard: SHARD,
        seq: String(SEQ0 + BigInt(out.length) * 1_000_003n),
        arrival: group[0]!.arrival,
        data: agg.data,
        partitionKey: agg.partitionKey,
      });
  }
  return out;
}

/** The real speed handler on the bench's tables: demo views, default settings, silent logs. */
function benchHandler(
  clients: ReturnType<typeof createClients>,
  tables: Parameters<typeof createSpeedHandler>[0]['tables'],
  onStats?: Parameters<typeof createSpeedHandler>[0]['onStats'],
  outside = new OutsideCopies(),
) {
  return createSpeedHandler({
    ddb: clients.dynamodb,
    s3: clients.s3,
    tables,
    failureBucket: 'unused',
    views: DEMO_VIEWS,
    settings: DEFAULT_SETTINGS,
    cache: new ItemCache(),
    outside,
    logger: new Logger({ logLevel: 'SILENT' }),
    metrics: new Metrics({ namespace: 'Bench' }),
    ...(onStats && { onStats }),
  });
}

/** The real handler over the aggregated demo mix, batches of `batch` user records. */
async function aggregatedRun(
  clients: ReturnType<typeof createClients>,
  counter: ReturnType<typeof countRequests>,
  records: readonly StreamRecord[],
  batch: number,
): Promise<AggregatedRow> {
  const perAggregate = 100;
  const aggregated = aggregatedRecords(records, perAggregate);
  const perBatch = Math.max(1, Math.round(batch / perAggregate));
  const tables = await createTables(clients.dynamodb, 'benchkpl');
  let dedupRequests = 0;
  const handler = benchHandler(clients, tables, (st) => {
    dedupRequests += st.dedupRequests;
    if (st.poison > 0) throw new Error('an aggregated benchmark batch held poison');
  });
  counter.reset();
  let ms = 0;
  for (let i = 0; i < aggregated.length; i += perBatch) {
    const e = kinesisEvent(aggregated.slice(i, i + perBatch));
    const t = performance.now();
    const res = await handler(e);
    ms += performance.now() - t;
    if (res.batchItemFailures.length > 0) throw new Error('an aggregated benchmark batch failed');
  }
  return {
    batch,
    perAggregate,
    records: records.length,
    rps: (records.length / ms) * 1000,
    requests: counter.counts.total / records.length,
    dedupRequests: dedupRequests / records.length,
  };
}

let aggregatedRow: AggregatedRow | undefined;

/** The mix within a backfill's horizon, beside the plain mix, at one batch size (interleaved batch by batch). */
interface HorizonRow {
  batch: number;
  records: number;
  /** Ids in the backfill's id sets, and the mix's ids among them. */
  backfilled: number;
  mixIds: number;
  idSets: number;
  plain: { rps: number; requests: number };
  horizon: { rps: number; requests: number; lists: number; sets: number; readUnits: number; duplicates: number };
}
const HORIZON_BACKFILL_IDS = 100_000;

async function horizonRun(env: Record<string, string>, records: readonly StreamRecord[], batch: number): Promise<HorizonRow> {
  const plain = createClients(env);
  const plainCounter = countRequests(plain.dynamodb);
  const within = createClients(env);
  const withinCounter = countRequests(within.dynamodb);
  const plainTables = await createTables(plain.dynamodb, 'benchplain');
  const tables = await createTables(within.dynamodb, 'benchhorizon');
  // A backfill a minute before the first arrival: every record arrives within [T, T + H] of it.
  const ids = [...new Set(parsed(records).map((r) => r.id))];
  const mixIds = ids.filter((_, i) => i % 10 === 0);
  const backfilled = [...mixIds, ...Array.from({ length: HORIZON_BACKFILL_IDS - mixIds.length }, (_, i) => `history-${i}`)];
  const shard = 'backfill-0000000000000bench';
  const buckets = idSetBuckets(backfilled.length);
  const grouped = new Map<number, Map<string, number>>();
  for (const [i, id] of backfilled.entries()) {
    const set = grouped.get(idSetBucket(id, buckets)) ?? new Map<string, number>();
    grouped.set(idSetBucket(id, buckets), set);
    set.set(id, i);
  }
  const puts = [...grouped].map(([bucket, set]) => {
    const key = idSetKey(shard, bucket);
    return { PutRequest: { Item: { pk: { S: key.pk }, sk: { S: key.sk }, ids: { S: encodeIdSet(set) } } } };
  });
  await batchWriteAll(within.dynamodb, tables.control, puts, { what: 'bench: id-set writes' });
  await within.dynamodb.send(
    new PutItemCommand({
      TableName: tables.control,
      Item: {
        pk: { S: 'backfill' },
        sk: { S: shard },
        arrival: { N: String(T0 - 60_000) },
        state: { S: 'complete' },
        buckets: { N: String(buckets) },
      },
    }),
  );
  const outside = new OutsideCopies();
  let duplicates = 0;
  const plainHandler = benchHandler(plain, plainTables);
  const handler = benchHandler(within, tables, (st) => (duplicates += st.duplicates), outside);
  plainCounter.reset();
  withinCounter.reset();
  let plainMs = 0;
  let ms = 0;
  for (let i = 0; i < records.length; i += batch) {
    const e = kinesisEvent(records.slice(i, i + batch));
    let t = performance.now();
    if ((await plainHandler(e)).batchItemFailures.length > 0) throw new Error('a plain benchmark batch failed');
    plainMs += performance.now() - t;
    t = performance.now();
    if ((await handler(e)).batchItemFailures.length > 0) throw new Error('a backfill-horizon benchmark batch failed');
    ms += performance.now() - t;
  }
  for (const c of [plain, within]) for (const x of Object.values(c)) x.destroy();
  return {
    batch,
    records: records.length,
    backfilled: backfilled.length,
    mixIds: mixIds.length,
    idSets: puts.length,
    plain: { rps: (records.length / plainMs) * 1000, requests: plainCounter.counts.total / records.length },
    horizon: {
      rps: (records.length / ms) * 1000,
      requests: withinCounter.counts.total / records.length,
      lists: outside.stats.lists,
      sets: outside.stats.sets,
      readUnits: outside.stats.readUnits,
      duplicates,
    },
  };
}
let horizonRow: HorizonRow | undefined;

async function part1(): Promise<Row[]> {
  const dynamo = await startEmulator('dynamodb');
  try {
    const env = { ...emulatorEnv({ kinesis: dynamo, dynamodb: dynamo, s3: dynamo }) };
    const clients = createClients(env);
    const counter = countRequests(clients.dynamodb);
    const naiveClient = createClients(env).dynamodb;
    const naiveCounter = countRequests(naiveClient);
    // The dedup alone on a client of its own, so neither handler's request counts include it.
    const claimsClient = createClients(env).dynamodb;
    const records = demoRecords(opts.records);
    const rows: Row[] = [];
    const sizes = opts.sizes.split(',').map((s) => Number.parseInt(s, 10));
    let run = 0;
    for (const size of sizes) {
      const batches: StreamRecord[][] = [];
      for (let i = 0; i < records.length; i += size) batches.push(records.slice(i, i + size));
      // (a) the real handler: one batch at a time, as one shard is processed.
      const real = await createTables(clients.dynamodb, `bench${++run}`);
      const phases = { dedupMs: 0, applyMs: 0, conflicts: 0 };
      const handler = benchHandler(clients, real, (st) => {
        phases.dedupMs += st.dedupMs;
        phases.applyMs += st.applyMs;
        phases.conflicts += st.apply.conflicts;
      });
      const events = batches.map(kinesisEvent);
      // (b) the naive handler over the same batches, on its own client (own request counts).
      const naive = await createTables(naiveClient, `naive${run}`);
      const claimsOnly = await createTables(claimsClient, `claims${run}`);
      counter.reset();
      naiveCounter.reset();
      // Interleaved batch by batch, so a change in the machine's load hits all three alike.
      let realMs = 0;
      let naiveMs = 0;
      let claimsMs = 0;
      let claimsDynaliteMs = 0;
      const cpu = { realDynalite: 0, realHandler: 0, naiveDynalite: 0, naiveHandler: 0 };
      for (const [i, e] of events.entries()) {
        const realRun = await measured(dynamo.pid, () => handler(e));
        if (realRun.result.batchItemFailures.length > 0) throw new Error('a benchmark batch failed');
        const naiveRun = await measured(dynamo.pid, () => naiveBatch(naiveClient, naive.speed, batches[i]!));
        const claimsRun = await measured(dynamo.pid, () => claimsOnlyBatch(claimsClient, claimsOnly.dedup, batches[i]!));
        claimsMs += claimsRun.ms;
        claimsDynaliteMs += claimsRun.dynaliteMs;
        realMs += realRun.ms;
        naiveMs += naiveRun.ms;
        cpu.realDynalite += realRun.dynaliteMs;
        cpu.realHandler += realRun.selfMs;
        cpu.naiveDynalite += naiveRun.dynaliteMs;
        cpu.naiveHandler += naiveRun.selfMs;
      }
      const perRecordUs = (ms: number) => (ms * 1000) / records.length;
      const c = {
        total: counter.counts.total,
        claimItems: counter.counts.claimItems,
        byCommand: { ...counter.counts.byCommand },
        updates: counter.counts.updatesByTable[real.speed] ?? 0,
      };
      const naiveRequests = naiveCounter.counts.total;

      rows.push({
        size,
        records: records.length,
        realRps: (records.length / realMs) * 1000,
        naiveRps: (records.length / naiveMs) * 1000,
        deltaWrites: c.updates / records.length,
        dedupRequests: ((c.byCommand.BatchGetItemCommand ?? 0) + (c.byCommand.BatchWriteItemCommand ?? 0)) / records.length,
        claimWrites: c.claimItems / records.length,
        requests: c.total / records.length,
        itemsPerBatch: c.updates / batches.length,
        naiveRequests: naiveRequests / records.length,
        dedupShare: phases.dedupMs / realMs,
        applyShare: phases.applyMs / realMs,
        conflicts: phases.conflicts,
        cpu: {
          realDynalite: perRecordUs(cpu.realDynalite),
          realHandler: perRecordUs(cpu.realHandler),
          naiveDynalite: perRecordUs(cpu.naiveDynalite),
          naiveHandler: perRecordUs(cpu.naiveHandler),
        },
        claimsOnly: { rps: (records.length / claimsMs) * 1000, dynalite: perRecordUs(claimsDynaliteMs) },
      });
      console.error(
        `batch ${size}: real ${fmt(realMs / 1000, 2)} s, naive ${fmt(naiveMs / 1000, 2)} s, dedup alone ${fmt(claimsMs / 1000, 2)} s`,
      );
    }
    // Issue 22: the same mix KPL-aggregated, at 1,000 user records a batch (or the one size asked for).
    const aggBatch = sizes.includes(1000) ? 1000 : sizes[0]!;
    aggregatedRow = await aggregatedRun(clients, counter, records, aggBatch);
    console.error(`aggregated, batch ${aggBatch} user records: ${int(aggregatedRow.rps)} user records/s`);
    horizonRow = await horizonRun(env, records, aggBatch);
    console.error(`within a backfill's horizon, batch ${aggBatch}: ${int(horizonRow.horizon.rps)} records/s`);
    return rows;
  } finally {
    await dynamo.stop();
  }
}

/** Speed items per record the key design implies for a mix at a batch size: aggregate() alone, no DynamoDB. */
/** DynamoDB's size of a number: one byte per two significant digits, plus one; 4 bytes holds up to 6 digits. */
const NUMBER_BYTES = 4;

/**
 * Items a batch writes per record, and the write units those writes cost (DynamoDB charges an
 * update ceil(item size / 1 KB), the item as it stands after the write; sizes by DynamoDB's rules:
 * attribute names plus values), with one item per cell (the layout before) or one per event hour
 * (`groupByItem`, now). Items live through their arrival window, so they grow batch by batch.
 */
function itemsPerRecord(
  records: readonly StreamRecord[],
  size: number,
  layout: 'cell' | 'hour',
  views: readonly View[] = DEMO_VIEWS,
): { items: number; units: number } {
  const windowMs = DEFAULT_SETTINGS.windowSeconds * 1000;
  // pk, sk, view, window, slot or bucket + dims, shard, hw (64 digits), expiresAt: measured on a stored item.
  const base = layout === 'cell' ? 260 : 220;
  // Per item, per cell: its state so far (a sketch grows as the batches of its window add to it) and its bytes.
  const itemBytes = new Map<string, Map<string, { state: ViewState; bytes: number }>>();
  let items = 0;
  let units = 0;
  for (let i = 0; i < records.length; i += size) {
    const seen = new Set<string>();
    const counted = records.slice(i, i + size).flatMap((r) => {
      const n = normalize(r);
      if (!n.ok || seen.has(n.record.id)) return [];
      seen.add(n.record.id);
      return [n.record];
    });
    const touched = new Set<string>();
    // The items this batch writes, each with its cells' deltas: as the handler groups them, or one item per cell.
    const written =
      layout === 'hour'
        ? groupByItem(views, counted, windowMs).map((g) => ({
            view: g.view,
            id: JSON.stringify(g.key),
            slot: g.key.slot,
            cells: aggregate([g.view], g.records, windowMs),
          }))
        : views.flatMap((view) =>
            aggregate([view], counted, windowMs).map((d) => ({
              view,
              id: JSON.stringify([d.view, d.window, d.bucket, d.dims]),
              slot: 0,
              cells: [d],
            })),
          );
    for (const w of written) {
      touched.add(w.id);
      const cells = itemBytes.get(w.id) ?? new Map<string, { state: ViewState; bytes: number }>();
      itemBytes.set(w.id, cells);
      for (const d of w.cells) {
        const name = (column: string) => (layout === 'cell' ? column : cellAttribute(w.slot, d.bucket, d.dims, column));
        const key = `${d.bucket}|${JSON.stringify(d.dims)}`;
        const old = cells.get(key);
        const state = old ? combineViewStates(w.view, old.state, d.state) : d.state;
        let bytes = name('records').length + NUMBER_BYTES;
        // A sketch is a string attribute of its canonical text (one byte a character); the other columns numbers.
        for (const c of stateColumns(w.view))
          bytes += name(c.column).length + (c.component === 'hll' ? (state[c.metric]?.hll?.toText().length ?? 0) : NUMBER_BYTES);
        cells.set(key, { state, bytes });
      }
    }
    for (const item of touched) {
      let bytes = base;
      for (const c of itemBytes.get(item)!.values()) bytes += c.bytes;
      units += Math.ceil(bytes / 1024);
    }
    items += touched.size;
  }
  return { items: items / records.length, units: units / records.length };
}

interface MixRow {
  size: number;
  /** Items and write units per record, demo mix: one item per cell, one per event hour; the same mix without late events. */
  cells: { items: number; units: number };
  demo: { items: number; units: number };
  onTime: { items: number; units: number };
  /** The demo mix, one item per event hour, with every `distinct` metric taken out of the views (issue 21's baseline). */
  noDistinct: { items: number; units: number };
}

/** The demo views without their `distinct` metrics: what the speed layer wrote before `users: distinct('user')`. */
const VIEWS_NO_DISTINCT: readonly View[] = DEMO_VIEWS.map((v) => ({
  ...v,
  metrics: Object.fromEntries(Object.entries(v.metrics).filter(([, m]) => m.fn !== 'distinct')),
}));

/** Write units per record with the demo's `distinct` metric over those without it, beside issue 21's goal. */
function distinctRatio(r: MixRow): string {
  const x = r.demo.units / r.noDistinct.units;
  return `${x.toFixed(2)}x (goal <= 1.5x: ${x <= 1.5 ? 'met' : 'not met'})`;
}

function mixes(sizes: readonly number[]): MixRow[] {
  // Two minutes of arrivals at least, so items live through whole windows.
  const n = Math.max(opts.records, 120_000, ...sizes);
  const demo = demoRecords(n);
  const onTime = demoRecords(n, 0);
  return sizes.map((size) => ({
    size,
    cells: itemsPerRecord(demo, size, 'cell'),
    demo: itemsPerRecord(demo, size, 'hour'),
    onTime: itemsPerRecord(onTime, size, 'hour'),
    noDistinct: itemsPerRecord(demo, size, 'hour', VIEWS_NO_DISTINCT),
  }));
}

interface KinesisRow {
  /** The Kinesis emulator part 2 ran against. */
  engine: KinesisEngine;
  records: number;
  bareRps: number;
  handlerRps: number;
  batchSize: number;
}

async function part2(): Promise<KinesisRow | undefined> {
  const n = opts.kinesisRecords;
  if (n <= 0) return undefined;
  const engine = kinesisEngine();
  const [kinesis, dynamo] = await Promise.all([startEmulator('kinesis', { kinesisEngine: engine }), startEmulator('dynamodb')]);
  try {
    const clients = createClients(emulatorEnv({ kinesis, dynamodb: dynamo, s3: dynamo }));
    const StreamName = 'bench-speed';
    await clients.kinesis.send(new CreateStreamCommand({ StreamName, ShardCount: 1 }));
    for (let i = 0; i < 200; i++) {
      const d = await clients.kinesis.send(new DescribeStreamSummaryCommand({ StreamName }));
      if (d.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const gen = new DemoGenerator({ seed: 7 });
    const events = Array.from({ length: n }, () => gen.event(Date.now()));
    for (let i = 0; i < events.length; i += 500) {
      const chunk = events.slice(i, i + 500);
      await clients.kinesis.send(
        new PutRecordsCommand({ StreamName, Records: chunk.map((e) => ({ PartitionKey: e.id, Data: Buffer.from(JSON.stringify(e)) })) }),
      );
    }
    // Bare GetRecords loop: read the shard from the start until it is drained.
    const shard = (await clients.kinesis.send(new ListShardsCommand({ StreamName }))).Shards![0]!.ShardId!;
    let t = performance.now();
    let iterator = (
      await clients.kinesis.send(new GetShardIteratorCommand({ StreamName, ShardId: shard, ShardIteratorType: 'TRIM_HORIZON' }))
    ).ShardIterator;
    let read = 0;
    while (iterator && read < n) {
      const r = await clients.kinesis.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 10_000 }));
      read += r.Records?.length ?? 0;
      iterator = r.NextShardIterator;
    }
    const bareMs = performance.now() - t;

    const tables = await createTables(clients.dynamodb, 'esm');
    const handler = benchHandler(clients, tables);
    const batchSize = 1000;
    t = performance.now();
    const esm = await startEventSourceMapping({
      name: 'bench-speed',
      kinesis: clients.kinesis,
      streamName: StreamName,
      batchSize,
      reportBatchItemFailures: true,
      pollIntervalMs: 20,
      invoke: (e) => handler(e),
      logger: { info: () => {}, warn: (m) => console.error(m), error: (m) => console.error(m) },
    });
    await esm.idle();
    const handlerMs = performance.now() - t;
    const processed = Object.values(esm.stats().perShard).reduce((a, s) => a + s.records, 0);
    await esm.stop();
    if (processed !== n) throw new Error(`the mapping processed ${processed} of ${n} records`);
    return { engine, records: n, bareRps: (read / bareMs) * 1000, handlerRps: (n / handlerMs) * 1000, batchSize };
  } finally {
    await Promise.all([kinesis.stop(), dynamo.stop()]);
  }
}

function renderAggregated(a: AggregatedRow | undefined, rows: Row[]): string[] {
  const plain = rows.find((r) => r.size === a?.batch);
  if (!a || !plain) return [];
  return [
    '',
    `The same mix KPL-aggregated (issue 22): ${int(a.perAggregate)} user records an aggregate (100 ms of arrivals, the KPL's default RecordMaxBufferedTime; \`aws-kinesis-agg\`'s aggregator), ${int(a.batch / a.perAggregate)} Kinesis records (${int(a.batch)} user records) a batch, beside the plain run at ${int(a.batch)} records a batch; per user record.`,
    '',
    '| input | batch (user records) | records/s | DynamoDB requests / record | dedup requests / record |',
    '|---|---:|---:|---:|---:|',
    `| plain records | ${int(plain.size)} | ${int(plain.realRps)} | ${fmt(plain.requests)} | ${fmt(plain.dedupRequests)} |`,
    `| KPL aggregates of ${int(a.perAggregate)} | ${int(a.batch)} | ${int(a.rps)} | ${fmt(a.requests)} | ${fmt(a.dedupRequests)} |`,
  ];
}

function renderHorizon(h: HorizonRow | undefined): string[] {
  if (!h) return [];
  return [
    '',
    `The same mix within a backfill's horizon (issue 22; functions/speed/outside.ts): a backfill of ${int(h.backfilled)} ids in ${int(h.idSets)} id sets, T a minute before the first arrival, so every record is within [T, T + H] and its id is looked up; ${int(h.mixIds)} of the mix's ids (every 10th) are among them, so their copies are duplicates of the backfilled ones. Batch ${int(h.batch)}, interleaved batch by batch with the plain mix on tables of its own, one warm container (the id sets it has read are cached); per record.`,
    '',
    '| run | records/s | DynamoDB requests / record | backfill lists read | id sets read | read units of id sets / record | duplicates |',
    '|---|---:|---:|---:|---:|---:|---:|',
    `| plain | ${int(h.plain.rps)} | ${fmt(h.plain.requests)} | - | - | - | - |`,
    `| within a backfill's horizon | ${int(h.horizon.rps)} | ${fmt(h.horizon.requests)} | ${int(h.horizon.lists)} | ${int(h.horizon.sets)} | ${fmt(h.horizon.readUnits / h.records)} | ${int(h.horizon.duplicates)} |`,
  ];
}

function render(rows: Row[], k: KinesisRow | undefined, m: MixRow[]): string {
  const lines: string[] = [];
  lines.push(
    `Demo mix (local/demo.ts, seed 42: 80 % page views, 13 % purchases, 7 % signups; 5 % late by 2 min to 3 h; 3 % ids resent), 1,000 records/s of arrival time on one shard, ${int(rows[0]?.records ?? 0)} records per batch size, dynalite as a child process. Baseline: the naive handler (one UpdateItem per record and matching view, no dedup, not exactly-once) over the same batches in the same run.`,
  );
  lines.push('');
  lines.push(
    '| batch size | real records/s | naive records/s | speed-up | delta writes / record | dedup requests / record | claim writes / record | DynamoDB requests / record (naive) | delta items / batch | time in claims / deltas | conflicts |',
  );
  lines.push('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    lines.push(
      `| ${int(r.size)} | ${int(r.realRps)} | ${int(r.naiveRps)} | ${fmt(r.realRps / r.naiveRps, 1)}x | ${fmt(r.deltaWrites)} | ${fmt(r.dedupRequests)} | ${fmt(r.claimWrites)} | ${fmt(r.requests)} (${fmt(r.naiveRequests, 2)}) | ${fmt(r.itemsPerBatch, 1)} | ${pct(r.dedupShare)} / ${pct(r.applyShare)} | ${int(r.conflicts)} |`,
    );
  }
  lines.push(...renderAggregated(aggregatedRow, rows));
  lines.push(...renderHorizon(horizonRow));
  lines.push('');
  lines.push(
    "CPU per record on each side of the socket, in the same run (from /proc: dynalite's process, and this one's, which runs the handler and the SDK). dynalite's CPU per record of the real handler bounds it at 1 s / that many µs even if the handler cost nothing and overlapped perfectly: the ceiling, and the ceiling over the naive handler's records/s.",
  );
  lines.push('');
  lines.push(
    "The dedup alone, in the same run: the batch's claims read and the new ones written with the handler's own functions (`readClaims`, `decide`, `writeClaims`), nothing else; its dynalite CPU per record is a floor under any handler that claims each id, and its ceiling over naive the most such a handler can reach on dynalite before it writes a single delta.",
  );
  lines.push('');
  lines.push(
    '| batch size | dynalite µs / record, real (naive) | handler process µs / record, real (naive) | ceiling on dynalite, records/s | ceiling / naive | dedup alone: records/s | dedup alone: dynalite µs / record | dedup alone: ceiling / naive |',
  );
  lines.push('|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    lines.push(
      `| ${int(r.size)} | ${int(r.cpu.realDynalite)} (${int(r.cpu.naiveDynalite)}) | ${int(r.cpu.realHandler)} (${int(r.cpu.naiveHandler)}) | ${int(ceiling(r).rps)} | ${fmt(ceiling(r).overNaive, 1)}x | ${int(r.claimsOnly.rps)} | ${int(r.claimsOnly.dynalite)} | ${fmt(claimsCeiling(r).overNaive, 1)}x |`,
    );
  }
  lines.push('');
  lines.push(
    "What the key design implies (computed from the records alone, no DynamoDB; two minutes of arrivals at least): speed items written per record, and in parentheses the write units they cost in DynamoDB (ceil(item size / 1 KB) per write, sizes by DynamoDB's rules with 4-byte numbers), with one item per (view, arrival window, bucket, dimension values, shard), the layout before, and with one item per (view, arrival window, event hour, shard; a late hour cut in 10-second arrival parts), the layout now; and now, on the same mix without late events. A sketch column counts its canonical text as it stands in the item (it grows through the window); the last column is the layout now without the demo's `users: distinct(user)` metric, and its ratio the write units `distinct` adds (issue 21's goal: at most 1.5x).",
  );
  lines.push('');
  lines.push(
    '| batch size | one item per cell (before) | one item per event hour (now) | now, no late events | now, without `distinct` | write units with / without `distinct` |',
  );
  lines.push('|---:|---:|---:|---:|---:|---:|');
  for (const r of m)
    lines.push(
      `| ${int(r.size)} | ${fmt(r.cells.items)} (${fmt(r.cells.units)}) | ${fmt(r.demo.items)} (${fmt(r.demo.units)}) | ${fmt(r.onTime.items)} (${fmt(r.onTime.units)}) | ${fmt(r.noDistinct.items)} (${fmt(r.noDistinct.units)}) | ${distinctRatio(r)} |`,
    );
  if (k) {
    lines.push('');
    lines.push(
      `Through the local cloud: ${int(k.records)} demo records put into ${k.engine} (one shard), then read by a bare GetRecords loop (baseline) and by the local event source mapping (batch size ${int(k.batchSize)}) invoking the real handler against dynalite, in the same run.`,
    );
    lines.push('');
    lines.push('| path | records/s | ratio |');
    lines.push('|---|---:|---:|');
    lines.push(`| bare GetRecords loop | ${int(k.bareRps)} | 1.00x |`);
    lines.push(`| ${k.engine} -> ESM -> speed handler -> dynalite | ${int(k.handlerRps)} | ${fmt(k.handlerRps / k.bareRps, 2)}x |`);
  }
  return lines.join('\n');
}

const rows = await part1();
const kinesisRow = await part2();
const mixRows = mixes(rows.map((r) => r.size));

const table = new Table({
  head: [
    'batch',
    'real rec/s',
    'naive rec/s',
    'x',
    'delta w/rec',
    'dedup req/rec',
    'claims/rec',
    'req/rec',
    'naive req/rec',
    'items/batch',
    'claims/deltas time',
  ],
});
for (const r of rows) {
  table.push([
    int(r.size),
    int(r.realRps),
    int(r.naiveRps),
    fmt(r.realRps / r.naiveRps, 1),
    fmt(r.deltaWrites),
    fmt(r.dedupRequests),
    fmt(r.claimWrites),
    fmt(r.requests),
    fmt(r.naiveRequests, 2),
    fmt(r.itemsPerBatch, 1),
    `${pct(r.dedupShare)} / ${pct(r.applyShare)}`,
  ]);
}
out(table.toString());
for (const line of [...renderAggregated(aggregatedRow, rows), ...renderHorizon(horizonRow)]) if (line.startsWith('| ')) out(line);
for (const r of rows) {
  out(
    `CPU µs / record at batch ${int(r.size)}: dynalite ${int(r.cpu.realDynalite)} real, ${int(r.cpu.naiveDynalite)} naive; handler process ${int(r.cpu.realHandler)} real, ${int(r.cpu.naiveHandler)} naive; ceiling on dynalite ${int(ceiling(r).rps)} records/s = ${fmt(ceiling(r).overNaive, 1)}x naive; dedup alone ${int(r.claimsOnly.rps)} records/s, dynalite ${int(r.claimsOnly.dynalite)} µs/record, ceiling ${fmt(claimsCeiling(r).overNaive, 1)}x naive`,
  );
}
for (const r of mixRows) {
  out(
    `speed items (write units) / record at batch ${int(r.size)}: one per cell ${fmt(r.cells.items)} (${fmt(r.cells.units)}), one per event hour ${fmt(r.demo.items)} (${fmt(r.demo.units)}), the same without late events ${fmt(r.onTime.items)} (${fmt(r.onTime.units)}), without distinct ${fmt(r.noDistinct.items)} (${fmt(r.noDistinct.units)}): ${distinctRatio(r)}`,
  );
}
if (kinesisRow)
  out(
    `${kinesisRow.engine}: bare GetRecords ${int(kinesisRow.bareRps)} records/s; through the ESM and the handler ${int(kinesisRow.handlerRps)} records/s (${fmt(kinesisRow.handlerRps / kinesisRow.bareRps, 2)}x)`,
  );

if (opts.json)
  console.log(
    JSON.stringify({ rows, aggregated: aggregatedRow ?? null, horizon: horizonRow ?? null, kinesis: kinesisRow ?? null, mixes: mixRows }),
  );

if (opts.write) {
  const path = join(dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'benchmarks.md');
  const body = `## speed\n\n\`npm run bench -- speed\` (bench/speed.ts; see docs/speed-layer.md for what the numbers mean).\n\n${render(rows, kinesisRow, mixRows)}\n`;
  const doc = readFileSync(path, 'utf8');
  const start = doc.search(/^## speed\s*$/m);
  let next = -1;
  if (start >= 0) {
    const rest = doc.slice(start + 1).search(/^## /m);
    next = rest >= 0 ? start + 1 + rest : -1;
  }
  const updated = start < 0 ? `${doc.trimEnd()}\n\n${body}` : `${doc.slice(0, start)}${body}${next >= 0 ? `\n${doc.slice(next)}` : ''}`;
  writeFileSync(path, updated);
  console.error('wrote docs/benchmarks.md ## speed');
}
