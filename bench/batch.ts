/**
 * `npm run bench -- batch [--events 1000000,4000000] [--batch-size 10000] [--span-hours 24] [--shards 4] [--no-write] [--json]`
 *
 * For each event count: demo-mix events (local/demo.ts; 1 % resent ids, 5 %
 * late) with arrivals spread over `--span-hours`, fed as synthetic Kinesis
 * events of `--batch-size` records to the real archive handler, which writes
 * them to s3rver (millions of records through the Kinesis emulator would take
 * minutes to put — kinesalite ~8,900 records/s, kinesis-local ~390 — and the
 * stream is not what this measures). Then one
 * full batch run (runBatchToCompletion: plan, stage the objects from s3rver
 * into an empty cache, completeness check, DuckDB SQL per view, load into
 * dynalite, publish), split into its stages. The baseline, in the same run:
 * the same SQL run directly by DuckDB over the already staged files (the
 * floor). Reports the ratio full run / (floor + load), rows loaded per second,
 * the growth from the first to the last event count, and peak RSS.
 *
 * Writes the table into docs/benchmarks.md under `## batch` (unless --no-write); with --json,
 * prints one JSON document on stdout (the table goes to stderr).
 */

import { mkdtempSync, statSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import Table from 'cli-table3';
import { Command } from 'commander';
import { createClients } from '../functions/adapters/clients.ts';
import { duckDbEngine, openDuckDb } from '../functions/batch/duckdb.ts';
import { runBatchToCompletion } from '../functions/batch/pipeline.ts';
import { DEMO_VIEWS } from '../functions/core/demo-views.ts';
import { compileView, duckdbSource } from '../functions/core/sql.ts';
import { localNames } from '../functions/resources.ts';
import { DemoGenerator } from '../local/demo.ts';
import { provision } from '../local/provision.ts';
import { ArchiveFeeder, benchConfig, walk } from './support/archive.ts';
import { startBenchEmulators } from './support/emulators.ts';
import { versionItems } from './support/items.ts';
import { writeBenchmarkSection } from './support/report.ts';

process.env.POWERTOOLS_METRICS_DISABLED = 'true';
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const opts = new Command()
  .option('--events <list>', 'event counts, comma-separated', '1000000,4000000')
  .option('--batch-size <n>', 'records per archive invocation', (v) => Number.parseInt(v, 10), 10_000)
  .option('--span-hours <n>', 'hours of arrival time the events spread over', (v) => Number(v), 24)
  .option('--shards <n>', 'Kinesis shards the events spread over', (v) => Number.parseInt(v, 10), 4)
  .option('--no-write', 'do not update docs/benchmarks.md')
  .option('--json', 'print one JSON document on stdout (narration on stderr)')
  .parse(process.argv)
  .opts<{ events: string; batchSize: number; spanHours: number; shards: number; write: boolean; json?: boolean }>();

const counts = opts.events.split(',').map((s) => Number.parseInt(s.trim(), 10));
if (counts.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`--events must be whole numbers, received "${opts.events}"`);

const T0 = Date.UTC(2025, 2, 3, 0, 0, 0);
const log = (...a: unknown[]) => console.error(...a);
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;
const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

interface Result {
  events: number;
  records: number;
  objects: number;
  rawBytes: number;
  archiveMs: number;
  rows: number;
  /** DynamoDB items (blocks, rollups included) the run wrote. */
  items: number;
  totalMs: number;
  planMs: number;
  stageMs: number;
  verifyMs: number;
  sqlMs: number;
  loadMs: number;
  publishMs: number;
  floorMs: number;
  rssBytes: number;
}

const emulators = await startBenchEmulators();
const stageDirs: string[] = [];
const results: Result[] = [];
try {
  const env = emulators.env;
  const clients = createClients(env);
  for (const [i, n] of counts.entries()) {
    const names = localNames(`bench${i}`);
    await provision(clients, { names, shards: opts.shards });
    const config = benchConfig(names);
    const feeder = new ArchiveFeeder(clients, config, opts.shards, opts.batchSize);

    // ---- archive: the real handler, fed batches per shard as the event source mapping would ----
    log(`\n${n.toLocaleString('en-US')} events: archiving through the archive handler...`);
    const gen = new DemoGenerator({ seed: 7 + i, duplicateFraction: 0.01, lateFraction: 0.05 });
    const spanMs = opts.spanHours * 3_600_000;
    const perTick = 100;
    const ticks = Math.ceil(n / perTick);
    const tArchive = performance.now();
    for (let t = 0; t < ticks; t++) {
      const at = T0 + Math.floor((t * spanMs) / ticks);
      const { events, retries } = gen.tick(at, Math.min(perTick, n - t * perTick));
      for (const [j, e] of [...events, ...retries].entries()) await feeder.add(e, at + (j % 100));
      if (t % 1000 === 0 && process.stderr.isTTY) process.stderr.write(`\r  ${feeder.records.toLocaleString('en-US')} records`);
    }
    await feeder.flush();
    const records = feeder.records;
    const archiveMs = performance.now() - tArchive;
    log(`\r  ${records.toLocaleString('en-US')} records archived in ${sec(archiveMs)}`);

    // ---- the full run, from an empty staging cache ----
    const stageDir = mkdtempSync(join(tmpdir(), 'tandem-bench-stage-'));
    stageDirs.push(stageDir);
    const now = T0 + spanMs + 600_000;
    log('  full batch run...');
    const t0 = performance.now();
    const run = await runBatchToCompletion(clients, config, {
      engine: duckDbEngine({ s3: clients.s3, rawBucket: config.buckets.raw, stageDir }),
      now: () => now,
    });
    const totalMs = performance.now() - t0;
    if (run.state !== 'SUCCEEDED') throw new Error(`batch run ${run.state}: ${run.error ?? run.note ?? ''}`);
    const views = Object.values(run.views);
    const timing = (k: string) => run.timings?.[k] ?? 0;

    // ---- the floor: the same SQL, DuckDB straight over the staged files ----
    log('  floor: the same SQL over the staged files...');
    const files = walk(join(stageDir, 'raw')).sort();
    const db = await openDuckDb();
    const tf = performance.now();
    const horizonMs = config.settings.dedupHorizonSeconds * 1000;
    for (const v of DEMO_VIEWS)
      await db.query(compileView(v, { dialect: 'duckdb', cutoff: run.cutoff!, horizonMs, source: duckdbSource(files) }));
    const floorMs = performance.now() - tf;
    db.close();

    results.push({
      events: n,
      records,
      objects: files.length,
      rawBytes: files.reduce((a, f) => a + statSync(f).size, 0),
      archiveMs,
      rows: views.reduce((a, v) => a + v.rows, 0),
      items: await versionItems(clients.dynamodb, config.tables.batchViews, run.version!),
      totalMs,
      planMs: timing('plan'),
      stageMs: timing('stage'),
      verifyMs: timing('verify'),
      sqlMs: views.reduce((a, v) => a + v.sqlMs, 0),
      loadMs: views.reduce((a, v) => a + v.loadMs, 0),
      publishMs: timing('publish'),
      floorMs,
      rssBytes: process.resourceUsage().maxRSS * 1024,
    });
    log(`  done: ${sec(totalMs)} total`);
  }
} finally {
  await emulators.stop(stageDirs);
}

// ---- report ----
const head = ['', ...results.map((r) => `${r.events.toLocaleString('en-US')} events`)];
const row = (label: string, f: (r: Result) => string) => [label, ...results.map(f)];
const first = results[0]!;
const last = results[results.length - 1]!;
const rows: string[][] = [
  row('records archived (with resent copies)', (r) => r.records.toLocaleString('en-US')),
  row('raw objects / gzip size', (r) => `${r.objects} / ${mb(r.rawBytes)}`),
  row(
    'archive handler (synthetic events)',
    (r) => `${sec(r.archiveMs)} (${Math.round(r.records / (r.archiveMs / 1000)).toLocaleString('en-US')} records/s)`,
  ),
  row('full run', (r) => sec(r.totalMs)),
  row('  plan (cutoff)', (r) => sec(r.planMs)),
  row('  stage (download to the cache)', (r) => sec(r.stageMs)),
  row('  completeness check', (r) => sec(r.verifyMs)),
  row('  SQL, 3 views', (r) => sec(r.sqlMs)),
  row('  load', (r) => `${sec(r.loadMs)} (${r.rows.toLocaleString('en-US')} rows in ${r.items.toLocaleString('en-US')} items)`),
  row('  publish', (r) => sec(r.publishMs)),
  row('floor: same SQL, DuckDB over the staged files (baseline)', (r) => sec(r.floorMs)),
  row('full run / (floor + load)  [goal <= 1.3]', (r) => (r.totalMs / (r.floorMs + r.loadMs)).toFixed(2)),
  row('SQL in the run / floor', (r) => (r.sqlMs / r.floorMs).toFixed(2)),
  row('rows loaded per second', (r) => Math.round(r.rows / (r.loadMs / 1000)).toLocaleString('en-US')),
  row('peak RSS of the benchmark process', (r) => mb(r.rssBytes)),
];
if (results.length > 1) {
  const growth = last.totalMs / first.totalMs;
  rows.push([
    `growth of the full run, ${first.events.toLocaleString('en-US')} -> ${last.events.toLocaleString('en-US')}  [goal <= 4.4]`,
    ...results.map((r) => (r === last ? `${growth.toFixed(2)}x` : '')),
  ]);
  rows.push([`growth of the floor, same`, ...results.map((r) => (r === last ? `${(last.floorMs / first.floorMs).toFixed(2)}x` : ''))]);
}
const table = new Table({ head, style: { head: [], border: [] } });
for (const r of rows) table.push(r);
if (opts.json) {
  log(table.toString());
  const round3 = (x: number) => Number(x.toFixed(3));
  console.log(
    JSON.stringify({
      batchSize: opts.batchSize,
      spanHours: opts.spanHours,
      shards: opts.shards,
      meanLoad: round3(emulators.meanLoad()),
      cores: availableParallelism(),
      results: results.map((r) => ({
        ...r,
        ...Object.fromEntries(
          (['archiveMs', 'totalMs', 'planMs', 'stageMs', 'verifyMs', 'sqlMs', 'loadMs', 'publishMs', 'floorMs'] as const).map((k) => [
            k,
            Math.round(r[k]),
          ]),
        ),
        archiveRecordsPerSecond: Math.round(r.records / (r.archiveMs / 1000)),
        runOverFloorPlusLoad: round3(r.totalMs / (r.floorMs + r.loadMs)),
        goalRunOverFloorPlusLoadMet: r.totalMs / (r.floorMs + r.loadMs) <= 1.3,
        sqlOverFloor: round3(r.sqlMs / r.floorMs),
        rowsLoadedPerSecond: Math.round(r.rows / (r.loadMs / 1000)),
      })),
      growth:
        results.length > 1
          ? {
              fromEvents: first.events,
              toEvents: last.events,
              run: round3(last.totalMs / first.totalMs),
              goalRunMet: last.totalMs / first.totalMs <= 4.4,
              floor: round3(last.floorMs / first.floorMs),
            }
          : null,
    }),
  );
} else console.log(table.toString());

if (opts.write) {
  const md = [
    '## batch',
    '',
    `\`npm run bench -- batch --events ${opts.events}\` (${new Date().toISOString().slice(0, 10)}). Demo-mix events (1 % resent ids, 5 % late by`,
    `up to 3 h) with arrivals over ${opts.spanHours} h on ${opts.shards} shards, archived to s3rver by the real archive handler in batches of`,
    `${opts.batchSize.toLocaleString('en-US')}; then one full run (\`runBatchToCompletion\`, DuckDB engine, empty staging cache, dynalite as the`,
    'table store). Baseline in the same run: the floor, the same three SQL statements run by DuckDB directly over',
    'the staged files. Same time span for every count, so the number of view rows barely grows while the events do.',
    `Mean 1-minute load average while it ran: ${emulators.meanLoad().toFixed(1)} on ${availableParallelism()} cores.`,
    '',
    `| | ${head.slice(1).join(' | ')} |`,
    `|---|${head
      .slice(1)
      .map(() => '---:')
      .join('|')}|`,
    // Stage rows are indented in the terminal; in Markdown they say what they are part of.
    ...rows.map((r) => `| ${r.map((c, i) => (i === 0 && c.startsWith('  ') ? `of which ${c.trim()}` : c.trim() || ' ')).join(' | ')} |`),
    '',
    'What the figures mean: docs/batch-layer.md, "Performance".',
    '',
  ].join('\n');
  writeBenchmarkSection('batch', md);
  log('\nwrote docs/benchmarks.md (## batch)');
}
