/**
 * `npm run bench -- api [--rounds 2] [--probes 200] [--queries 30] [--no-write] [--json]`: the API on the local cloud, in one run.
 *
 * 1. Ingest: events/s over HTTP (POST /events, 500-event requests, 4 concurrent
 *    clients) next to the baseline of the same 500-record PutRecords sent
 *    straight to the Kinesis emulator by 4 concurrent SDK clients (rounds
 *    interleaved, so a drift while the stream grows — kinesis-local slowed
 *    with it — or while the machine's load changes hits both sides alike).
 * 2. Freshness: time from a 200 on POST /events to the event showing in
 *    GET /views/events_by_type (p50/p99 over --probes probes), next to the
 *    speed poller's batching window and poll interval.
 * 3. Query latency for a 24 h minute-grain range of page_views (a full day of
 *    batch rows, 30 dimension combinations a minute, plus 10 minutes of speed
 *    deltas): p50/p99 of the merged query over HTTP, and in process of the
 *    merged read vs a batch-only read of the same rows; the DynamoDB reads.
 *
 * Writes a summary under `## api` in docs/benchmarks.md (unless --no-write); with --json, prints
 * one JSON document on stdout (the summary goes to stderr).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Logger } from '@aws-lambda-powertools/logger';
import { PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { PutCommand } from '@aws-sdk/lib-dynamodb';
import { Command } from 'commander';
import { createClients } from '../functions/adapters/clients.ts';
import { exactDocClient, readView } from '../functions/api/read-view.ts';
import { loadRows } from '../functions/batch/load.ts';
import { runBatchToCompletion } from '../functions/batch/pipeline.ts';
import { loadConfig } from '../functions/config.ts';
import { DEMO_VIEWS } from '../functions/core/demo-views.ts';
import { stateColumns } from '../functions/core/metrics.ts';
import { floorTo } from '../functions/core/time.ts';
import { findView } from '../functions/core/views.ts';
import { createQueryHandler } from '../functions/query.ts';
import { processSpeedBatch } from '../functions/speed/process.ts';
import { startLocalCloud } from '../local/cloud.ts';
import { kinesisEngine } from '../local/emulators.ts';
import { createContext } from '../local/runtime.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const opts = new Command()
  .option('--rounds <n>', 'ingest rounds per side (each: 4 clients x 1 request of 500 events)', (v) => Number.parseInt(v, 10), 2)
  .option('--probes <n>', 'freshness probes', (v) => Number.parseInt(v, 10), 200)
  .option('--queries <n>', 'query repetitions per kind', (v) => Number.parseInt(v, 10), 30)
  .option('--no-write', 'do not update docs/benchmarks.md')
  .option('--json', 'print one JSON document on stdout (narration on stderr)')
  .parse(process.argv)
  .opts<{ rounds: number; probes: number; queries: number; write: boolean; json?: boolean }>();

const CLIENTS = 4;
const PER_REQUEST = 500;
const MIN = 60_000;
const HOUR = 3_600_000;
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};
const ms = (n: number) => `${Math.round(n).toLocaleString('en-US')} ms`;
const int = (n: number) => Math.round(n).toLocaleString('en-US');
const log = (m: string) => process.stderr.write(`${m}\n`);

const loadStart = loadavg()[0]!;
/** The Kinesis emulator the local cloud starts (TANDEM_KINESIS_ENGINE, else kinesalite). */
const engine = kinesisEngine();
const dataDir = mkdtempSync(join(tmpdir(), 'tandem-bench-api-'));
const SPEED_WINDOW_MS = 0;
const SPEED_POLL_MS = 250;
const cloud = await startLocalCloud({
  port: 0,
  demo: false,
  batchEverySeconds: null,
  dataDir,
  apiKey: 'bench-key-0123456789',
  // The local cloud's own speed mapping settings, stated here so the report can show them.
  mappings: { speed: { maxBatchingWindowMs: SPEED_WINDOW_MS, pollIntervalMs: SPEED_POLL_MS } },
  logger: { info: () => undefined, warn: (m) => log(`warn: ${m}`), error: (m) => log(`error: ${m}`) },
});
const clients = createClients(process.env);
const config = loadConfig(process.env);
const headers = { 'x-api-key': cloud.apiKey, 'content-type': 'application/json' };

try {
  // ---- 1. ingest ----
  let seq = 0;
  const batchOf = (tag: string) =>
    Array.from({ length: PER_REQUEST }, () => ({ id: `${tag}-${++seq}`, type: 'bench', ts: Date.now(), country: 'DE', n: seq }));
  const side = { http: { events: 0, ms: 0 }, direct: { events: 0, ms: 0 } };
  for (let round = 0; round < opts.rounds; round++) {
    for (const kind of round % 2 === 0 ? (['direct', 'http'] as const) : (['http', 'direct'] as const)) {
      const t = performance.now();
      await Promise.all(
        Array.from({ length: CLIENTS }, async () => {
          const events = batchOf(kind);
          if (kind === 'http') {
            const r = await fetch(`${cloud.url}/events`, { method: 'POST', headers, body: JSON.stringify(events) });
            if (r.status !== 200) throw new Error(`POST /events answered ${r.status}: ${await r.text()}`);
          } else {
            const out = await clients.kinesis.send(
              new PutRecordsCommand({
                StreamName: config.streamName,
                Records: events.map((e) => ({ Data: Buffer.from(JSON.stringify(e)), PartitionKey: e.id })),
              }),
            );
            if (out.FailedRecordCount) throw new Error(`${out.FailedRecordCount} records failed`);
          }
        }),
      );
      side[kind].ms += performance.now() - t;
      side[kind].events += CLIENTS * PER_REQUEST;
    }
    log(`ingest round ${round + 1}/${opts.rounds}`);
  }
  const httpRate = side.http.events / (side.http.ms / 1000);
  const directRate = side.direct.events / (side.direct.ms / 1000);
  log(`ingest: HTTP ${int(httpRate)} events/s, direct PutRecords ${int(directRate)} records/s`);
  await cloud.idle();
  // A published batch, as the local cloud's schedule would have made by now: the probes' queries
  // then read the speed windows since its cutoff, not the whole TTL horizon.
  const run = await runBatchToCompletion(clients, config);
  log(`batch run ${run.state}: version ${run.version}, cutoff ${run.cutoff === undefined ? '-' : new Date(run.cutoff).toISOString()}`);

  // ---- 2. freshness ----
  const fresh: number[] = [];
  const PROBERS = 2;
  const POLL_MS = 50;
  let probe = 0;
  const probeOnce = async () => {
    const i = ++probe;
    const type = `probe_${i}`;
    const now = Date.now();
    const r = await fetch(`${cloud.url}/events`, { method: 'POST', headers, body: JSON.stringify({ id: `probe-${i}`, type, ts: now }) });
    if (r.status !== 200) throw new Error(`probe POST answered ${r.status}`);
    const t0 = performance.now();
    const q = `${cloud.url}/views/events_by_type?type=${type}&grain=all&from=${now - HOUR}&to=${now + HOUR}`;
    for (;;) {
      const got = (await (await fetch(q, { headers })).json()) as { rows: { events: number }[] };
      if (got.rows[0]?.events === 1) break;
      if (performance.now() - t0 > 60_000) throw new Error(`probe ${i} not visible after 60 s`);
      await new Promise((res) => setTimeout(res, POLL_MS));
    }
    fresh.push(performance.now() - t0);
  };
  await Promise.all(
    Array.from({ length: PROBERS }, async () => {
      while (probe < opts.probes) await probeOnce();
    }),
  );
  log(`freshness: p50 ${ms(pct(fresh, 50))}, p99 ${ms(pct(fresh, 99))}`);

  // ---- 3. query latency, 24 h of minute rows ----
  const view = findView(DEMO_VIEWS, 'page_views')!;
  const now = Date.now();
  const windowMs = config.settings.windowSeconds * 1000;
  const cutoff = floorTo(now - 10 * MIN, windowMs);
  // A synthetic version of page_views (the ingest phase sent no page views), published over the real one.
  const version = (run.version ?? 0) + 1;
  const PAGES = ['/', '/pricing', '/docs', '/blog', '/signup', '/about'];
  // 6 pages x 5 countries a minute: a day of them answers ~4.4 MB, under the 5 MB one response may carry.
  const COUNTRIES = ['DE', 'FR', 'US', 'GB', 'JP'];
  const first = floorTo(now, MIN) - 24 * HOUR;
  const rows = [];
  for (let b = first; b < floorTo(now, MIN) + MIN; b += MIN) {
    for (const page of PAGES)
      for (const country of COUNTRIES) {
        const n = 1 + ((b / MIN + page.length + country.charCodeAt(0)) % 5);
        rows.push({
          bucket: b,
          dims: [page, country],
          values: { views__count: String(n), load_ms__sum: String(n * 210), load_ms__count: String(n) },
        });
      }
  }
  // users__hll (distinct) is left empty: null in the block, the empty sketch.
  if (stateColumns(view).filter((c) => c.component !== 'hll').length !== 3) throw new Error('page_views changed: update the bench rows');
  const tLoad = performance.now();
  const loaded = await loadRows({ ddb: clients.dynamodb, table: config.tables.batchViews }, view, version, rows);
  await clients.doc.send(
    new PutCommand({
      TableName: config.tables.control,
      Item: {
        pk: 'pointer',
        sk: 'current',
        version,
        cutoff,
        publishedAt: now,
        runId: 'bench',
        views: { [view.name]: { rows: rows.length } },
      },
    }),
  );
  log(`loaded ${int(rows.length)} batch rows in ${int(loaded.items)} items (blocks) in ${ms(performance.now() - tLoad)}`);
  // Ten minutes of speed deltas past the cutoff, through the real speed layer: mostly fresh, 10 % late.
  const speedRecords = [];
  const SPEED_EVENTS = 6000;
  for (let i = 0; i < SPEED_EVENTS; i++) {
    const arrival = cutoff + Math.floor((i / SPEED_EVENTS) * (now - cutoff));
    const ts = i % 10 === 0 ? arrival - ((i * 7919) % (23 * HOUR)) : arrival - (i % 5) * 1000;
    const shard = `shardId-00000000000${i % 2}`;
    const event = {
      id: `speed-${i}`,
      type: 'page_view',
      ts,
      page: PAGES[i % 6],
      country: COUNTRIES[(i * 7) % COUNTRIES.length],
      load_ms: 100 + (i % 400),
    };
    speedRecords.push({ shard, seq: `9${String(i).padStart(55, '0')}`, arrival, data: Buffer.from(JSON.stringify(event)) });
  }
  for (let i = 0; i < speedRecords.length; i += 500) {
    const res = await processSpeedBatch(speedRecords.slice(i, i + 500), {
      ddb: clients.dynamodb,
      s3: clients.s3,
      tables: { speed: config.tables.speed, dedup: config.tables.dedup, control: config.tables.control },
      failureBucket: config.buckets.failures,
      views: [view],
      settings: config.settings,
    });
    if (res.failures.length > 0) throw new Error('speed batch failed');
  }
  const doc = exactDocClient(clients.dynamodb);
  const tables = { speed: config.tables.speed, batchViews: config.tables.batchViews, control: config.tables.control };
  const cost = await readView({ doc, tables, settings: config.settings }, view, first, floorTo(now, MIN) + MIN, now);
  log(`read cost: batch ${JSON.stringify(cost.stats.batch)}, speed ${JSON.stringify(cost.stats.speed)}`);

  const logger = new Logger({ serviceName: 'bench', logLevel: 'SILENT' });
  const merged = createQueryHandler({ doc, tables, views: config.views, settings: config.settings, logger });
  const batchOnly = createQueryHandler({ doc, tables, views: config.views, settings: config.settings, logger, read: { batchOnly: true } });
  const event = {
    httpMethod: 'GET',
    path: '/views/page_views',
    resource: '/views/{name}',
    pathParameters: { name: 'page_views' },
    queryStringParameters: null,
    headers: {},
  } as unknown as Parameters<typeof merged>[0];
  const ctx = createContext({ functionName: 'bench-query', requestId: 'bench', deadline: Date.now() + 3_600_000 });
  const http: number[] = [];
  const inMerged: number[] = [];
  const inBatch: number[] = [];
  let rowsOut = 0;
  for (let i = 0; i < opts.queries; i++) {
    // Interleaved, so drift (GC, the pollers) hits all three alike.
    let t = performance.now();
    const r = await fetch(`${cloud.url}/views/page_views`, { headers });
    if (r.status !== 200) throw new Error(`GET /views/page_views answered ${r.status}: ${await r.text()}`);
    const body = (await r.json()) as { rows: unknown[] };
    http.push(performance.now() - t);
    rowsOut = body.rows.length;
    t = performance.now();
    const m = await merged(event, ctx);
    inMerged.push(performance.now() - t);
    t = performance.now();
    const b = await batchOnly(event, ctx);
    inBatch.push(performance.now() - t);
    for (const res of [m, b]) if (res.statusCode !== 200) throw new Error(`the in-process query answered ${res.statusCode}: ${res.body}`);
  }
  log(
    `query: HTTP p50 ${ms(pct(http, 50))} p99 ${ms(pct(http, 99))}; ` +
      `in process merged p50 ${ms(pct(inMerged, 50))} p99 ${ms(pct(inMerged, 99))}, ` +
      `batch-only p50 ${ms(pct(inBatch, 50))} p99 ${ms(pct(inBatch, 99))}`,
  );

  const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
  const loadEnd = loadavg()[0]!;
  const lines = [
    '## api',
    '',
    `\`npm run bench -- api\` (bench/api.ts), on the local cloud (${engine}, dynalite, s3rver; 2 shards), ` +
      `one run, ${new Date().toISOString().slice(0, 10)}, ` +
      `load average ${loadStart.toFixed(1)} at the start and ${loadEnd.toFixed(1)} at the end ` +
      `(other work on the machine slows every figure alike; the ratios hold). ` +
      `The ingest ratio is what the HTTP path (validation, ids) costs on top of ${engine}'s PutRecords; ` +
      `query latency is bound by dynalite reading the batch blocks and speed items and by the exact-decimal state of each row.`,
    '',
    '| ingest (4 concurrent clients, 500 events a request) | events/s | vs. baseline |',
    '|---|---:|---:|',
    `| PutRecords straight to ${engine}, 500 records a call — baseline | ${int(directRate)} | 1.00x |`,
    `| POST /events over HTTP (validation, ids, PutRecords) | ${int(httpRate)} | ${ratio(httpRate, directRate)} |`,
    '',
    `Freshness (a 200 on POST /events -> the event counted in GET /views/events_by_type, ${fresh.length} probes, ` +
      `${PROBERS} at a time, polling every ${POLL_MS} ms, after a published batch): ` +
      `p50 ${ms(pct(fresh, 50))}, p99 ${ms(pct(fresh, 99))}; ` +
      `the speed poller's batching window is ${SPEED_WINDOW_MS} ms and its poll interval ${SPEED_POLL_MS} ms ` +
      `(goal: p99 <= ${SPEED_WINDOW_MS + SPEED_POLL_MS} ms + 1 s = ${ms(SPEED_WINDOW_MS + SPEED_POLL_MS + 1000)}).`,
    '',
    `| GET /views/page_views, 24 h at minute grain (${int(rows.length)} batch rows + ` +
      `${int(cost.speedRows.length)} speed deltas -> ${int(rowsOut)} rows) | p50 | p99 | p99 vs. batch-only |`,
    '|---|---:|---:|---:|',
    `| batch-only read of the same range, in process — baseline | ${ms(pct(inBatch, 50))} | ${ms(pct(inBatch, 99))} | 1.00x |`,
    `| merged (batch + speed windows >= cutoff), in process | ` +
      `${ms(pct(inMerged, 50))} | ${ms(pct(inMerged, 99))} | ${ratio(pct(inMerged, 99), pct(inBatch, 99))} |`,
    `| merged, over HTTP (local server + handler) | ${ms(pct(http, 50))} | ${ms(pct(http, 99))} | ` +
      `${ratio(pct(http, 99), pct(inBatch, 99))} |`,
    '',
    `DynamoDB reads of that query: 1 GetItem (pointer); ` +
      `batch: ${cost.stats.batch.partitions} partitions, ${cost.stats.batch.requests} Query requests, ` +
      `${int(cost.stats.batch.items)} items; ` +
      `speed: ${cost.stats.speed.partitions} partitions, ${cost.stats.speed.requests} Query requests, ` +
      `${int(cost.stats.speed.scanned)} items read (${int(cost.stats.speed.items)} kept). ` +
      `${opts.queries} repetitions of each query kind.`,
    '',
  ];
  if (opts.json) {
    log(lines.join('\n'));
    const round1 = (x: number) => Number(x.toFixed(1));
    const round3 = (x: number) => Number(x.toFixed(3));
    const latency = (xs: number[]) => ({ p50Ms: round1(pct(xs, 50)), p99Ms: round1(pct(xs, 99)) });
    const goalMs = SPEED_WINDOW_MS + SPEED_POLL_MS + 1000;
    process.stdout.write(
      `${JSON.stringify({
        engine,
        loadAverage: { start: round1(loadStart), end: round1(loadEnd) },
        ingest: {
          clients: CLIENTS,
          eventsPerRequest: PER_REQUEST,
          rounds: opts.rounds,
          directRecordsPerSecond: Math.round(directRate),
          httpEventsPerSecond: Math.round(httpRate),
          httpVsDirect: round3(httpRate / directRate),
        },
        freshness: {
          probes: fresh.length,
          concurrentProbes: PROBERS,
          probePollMs: POLL_MS,
          speedBatchingWindowMs: SPEED_WINDOW_MS,
          speedPollIntervalMs: SPEED_POLL_MS,
          ...latency(fresh),
          goalP99Ms: goalMs,
          goalP99Met: pct(fresh, 99) <= goalMs,
        },
        query: {
          repetitions: opts.queries,
          batchRows: rows.length,
          speedDeltas: cost.speedRows.length,
          rowsOut,
          batchOnly: latency(inBatch),
          merged: { ...latency(inMerged), p99VsBatchOnly: round3(pct(inMerged, 99) / pct(inBatch, 99)) },
          http: { ...latency(http), p99VsBatchOnly: round3(pct(http, 99) / pct(inBatch, 99)) },
          reads: {
            pointerGets: 1,
            batch: { partitions: cost.stats.batch.partitions, requests: cost.stats.batch.requests, items: cost.stats.batch.items },
            speed: {
              partitions: cost.stats.speed.partitions,
              requests: cost.stats.speed.requests,
              itemsRead: cost.stats.speed.scanned,
              itemsKept: cost.stats.speed.items,
            },
          },
        },
      })}\n`,
    );
  } else process.stdout.write(`${lines.join('\n')}\n`);
  if (opts.write) {
    const path = join(dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'benchmarks.md');
    const doc = readFileSync(path, 'utf8');
    const start = doc.search(/^## api\s*$/m);
    let out: string;
    if (start < 0) out = `${doc.trimEnd()}\n\n${lines.join('\n')}`;
    else {
      const rest = doc.slice(start + 1).search(/^## /m);
      const end = rest >= 0 ? start + 1 + rest : doc.length;
      out = `${doc.slice(0, start)}${lines.join('\n')}\n${doc.slice(end)}`;
    }
    writeFileSync(path, out.endsWith('\n') ? out : `${out}\n`);
    log('docs/benchmarks.md updated (## api)');
  }
} finally {
  for (const c of Object.values(clients)) c.destroy();
  await cloud.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
