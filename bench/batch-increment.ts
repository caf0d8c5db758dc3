/**
 * `npm run bench -- batch-increment [--days 7,30,90] [--events-per-day 20000] [--increment-hours 1] [--json] [--no-write]
 *  [--cpu-profile DIR]`
 *
 * Does an incremental run cost what the new data costs, not what history costs?
 * For each history length D: demo-mix events (local/demo.ts; 1 % resent at
 * once, plus copies resent hours to days later, within and beyond the dedup
 * horizon H; 5 % late) with arrivals spread over the D days before a fixed end
 * T, archived to s3rver by the real archive handler (synthetic Kinesis events,
 * bench/support/archive.ts); a rebuild publishes at cutoff T; then
 * `--increment-hours` of new arrivals are archived and ONE incremental run
 * publishes (the same staging cache, as the local cloud keeps it), then a
 * requested rebuild recomputes from all history. Every history
 * ends at the same T, so the increment touches the same batch-view partitions
 * whatever D is. Baseline in the same run: the history's raw files parsed once
 * into a DuckDB table plus one bare GROUP BY per view over it (no dedup, no load).
 *
 * Reports, per D: the increment's raw objects/rows/bytes read (the run item's
 * `archive`), rows written (the views' `written`) and wall time; the first run's
 * and the rebuild's wall time and stages, and the baseline's; ratios against the first D and rebuild/baseline,
 * beside the goals of issue 19. `--json`: one JSON document on stdout (narration
 * and the table on stderr). Writes the table into docs/benchmarks.md under
 * `## batch-increment` unless --no-write.
 */

import { mkdirSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import Table from 'cli-table3';
import { Command } from 'commander';
import { createClients } from '../functions/adapters/clients.ts';
import { getManifest } from '../functions/batch/control.ts';
import { duckDbEngine, openDuckDb } from '../functions/batch/duckdb.ts';
import { runBatchToCompletion } from '../functions/batch/pipeline.ts';
import { BATCH_PARTITION_MS } from '../functions/core/keys.ts';
import { duckdbSource } from '../functions/core/sql.ts';
import type { View } from '../functions/core/views.ts';
import { localNames } from '../functions/resources.ts';
import { type DemoEvent, DemoGenerator, seededRandom } from '../local/demo.ts';
import { provision } from '../local/provision.ts';
import { ArchiveFeeder, benchConfig, walk } from './support/archive.ts';
import { startBenchEmulators, succeeded } from './support/emulators.ts';
import { versionItems } from './support/items.ts';
import { markdownTable, writeBenchmarkSection } from './support/report.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const whole = (flag: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a whole number >= 1, received "${v}"`);
  return n;
};
const opts = new Command()
  .option('--days <list>', 'history lengths in days, comma-separated', '7,30,90')
  .option('--events-per-day <n>', 'events a day (before resent copies)', whole('--events-per-day'), 20_000)
  .option('--increment-hours <n>', 'hours of new arrivals in the incremental run', (v) => Number(v), 1)
  .option('--json', 'print one JSON document on stdout (narration and the table on stderr)')
  .option('--no-write', 'do not update docs/benchmarks.md')
  .option('--cpu-profile <dir>', 'write a V8 CPU profile of the main thread over each requested rebuild (rebuild-<days>d.cpuprofile)')
  .parse(process.argv)
  .opts<{ days: string; eventsPerDay: number; incrementHours: number; json?: boolean; write: boolean; cpuProfile?: string }>();

/**
 * Profiles the main thread around `fn` when --cpu-profile is given (node:inspector, so only the span asked for is
 * sampled, not the archive feeding before it): where a rebuild's JavaScript time goes, beside its CPU totals.
 */
async function profiled<T>(name: string, fn: () => Promise<T>): Promise<T> {
  if (!opts.cpuProfile) return fn();
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object) =>
    new Promise<unknown>((resolve, reject) => session.post(method, params, (e, r) => (e ? reject(e) : resolve(r))));
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', { interval: 200 });
  await post('Profiler.start');
  try {
    return await fn();
  } finally {
    const { profile } = (await post('Profiler.stop')) as { profile: unknown };
    mkdirSync(opts.cpuProfile, { recursive: true });
    const file = join(opts.cpuProfile, `${name}.cpuprofile`);
    writeFileSync(file, JSON.stringify(profile));
    session.disconnect();
    log(`  CPU profile: ${file}`);
  }
}

const days = opts.days.split(',').map((s) => Number(s.trim()));
if (days.some((d) => !Number.isInteger(d) || d < 1)) throw new Error(`--days must be whole numbers >= 1, received "${opts.days}"`);
if (!(opts.incrementHours > 0)) throw new Error(`--increment-hours must be > 0, received "${opts.incrementHours}"`);

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** The end of every history: the rebuild's cutoff. Noon, 20.5 days into its 30-day partition (hour views). */
const T_END = Date.UTC(2025, 5, 1, 12, 0, 0);
const SHARDS = 4;
/** Records per archive invocation: the biggest batch a Kinesis event source mapping delivers is 10,000; bigger here for speed. */
const BATCH_SIZE = 25_000;
/** ... and at most 6 arrival hours each (6 objects per shard and invocation). */
const MAX_BATCH_SPAN_MS = 6 * 3_600_000;
/**
 * Events sharing one arrival instant: few enough that a tick comes every ~15 s, so
 * arrivals (and the minute buckets they fill) spread as real traffic does.
 */
const PER_TICK = Math.max(1, Math.min(100, Math.round((opts.eventsPerDay * 15_000) / DAY)));
/** Share of events also resent hours to days later, within H; and beyond H (on top of the generator's 1 % resent at once). */
const RESEND_WITHIN = 0.002;
const RESEND_BEYOND = 0.002;
const log = (...a: unknown[]) => console.error(...a);
const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
const int = (n: number) => Math.round(n).toLocaleString('en-US');

/** Sampled past events with their arrival (in arrival order), to resend as late copies. */
class Resender {
  private readonly sample: { e: DemoEvent; arrival: number }[] = [];
  private readonly rnd: () => number;
  constructor(
    seed: number,
    private readonly horizonMs: number,
  ) {
    this.rnd = seededRandom(seed);
  }
  remember(e: DemoEvent, arrival: number): void {
    if (this.rnd() < 0.05) this.sample.push({ e, arrival });
  }
  /** Index of the first sampled event arriving at or after `ms`. */
  private before(ms: number): number {
    let lo = 0;
    let hi = this.sample.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.sample[mid]!.arrival < ms) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
  /** Copies to resend at `at` for a tick of `n` new events. */
  copies(at: number, n: number): DemoEvent[] {
    const out: DemoEvent[] = [];
    // Within H: a copy of an event that arrived between 1 h and H - 1 h before (never counts again).
    const lo = this.before(at - this.horizonMs + HOUR);
    const hi = this.before(at - HOUR);
    if (hi > lo && this.rnd() < RESEND_WITHIN * n) out.push(this.sample[lo + Math.floor(this.rnd() * (hi - lo))]!.e);
    // Beyond H: more than H (+1 min) after the sampled copy: unless another copy came within H, it counts again,
    // in its old event-time bucket (so the increment rewrites that old partition).
    const old = this.before(at - this.horizonMs - 60_000);
    if (old > 0 && this.rnd() < RESEND_BEYOND * n) out.push(this.sample[Math.floor(this.rnd() * old)]!.e);
    return out;
  }
}

/** Feeds `n` demo events (plus their copies) with arrivals spread evenly over [from, from + spanMs). */
async function feed(feeder: ArchiveFeeder, gen: DemoGenerator, resend: Resender, from: number, spanMs: number, n: number) {
  const ticks = Math.ceil(n / PER_TICK);
  for (let t = 0; t < ticks; t++) {
    const at = from + Math.floor((t * spanMs) / ticks);
    const k = Math.min(PER_TICK, n - t * PER_TICK);
    const { events, retries } = gen.tick(at, k);
    const all = [...events, ...retries, ...resend.copies(at, k)];
    // Arrivals stay in order along each shard (1 ms apart within the tick, well inside its span).
    for (const [j, e] of all.entries()) {
      await feeder.add(e, at + j);
      resend.remember(e, at + j);
    }
    if (t % 20_000 === 0 && process.stderr.isTTY) process.stderr.write(`\r  ${int(feeder.records)} records`);
  }
  await feeder.flush();
}

const GRAIN_MS: Record<View['grain'], number> = { minute: 60_000, hour: HOUR, day: DAY };
const quote = (s: string) => `'${s.replaceAll("'", "''")}'`;

/** The bare aggregation of a view over parsed lines: no dedup, no late-copy logic, just the GROUP BY. */
function bareGroupBy(view: View, table: string): string {
  const dims = view.dimensions.map((d) => `fields[${quote(d)}]`);
  const aggs = Object.values(view.metrics).flatMap((m) => {
    if (m.fn === 'count') return ['count(*)'];
    if (m.fn === 'distinct') return [`approx_count_distinct(fields[${quote(m.field)}])`];
    const x = `TRY_CAST(num[${quote(m.field)}] AS DECIMAL(18, 9))`;
    return m.fn === 'avg' ? [`sum(${x})`, `count(${x})`] : [`${m.fn}(${x})`];
  });
  const where = Object.entries(view.filter ?? {}).map(([k, v]) => `fields[${quote(k)}] = ${quote(String(v))}`);
  return [
    `SELECT ts - ts % ${GRAIN_MS[view.grain]}, ${[...dims, ...aggs].join(', ')}`,
    `FROM ${table}`,
    ...(where.length > 0 ? [`WHERE ${where.join(' AND ')}`] : []),
    `GROUP BY ${[0, ...dims.map((_, i) => i + 1)].map((i) => i + 1).join(', ')}`,
  ].join('\n');
}

interface Result {
  historyDays: number;
  historyRecords: number;
  historyObjects: number;
  historyBytes: number;
  archiveMs: number;
  rebuildMs: number;
  /** The rebuild run item's stage timings (ms): plan, stage, verify, publish, retire, compact, total. */
  rebuildTimings: Record<string, number>;
  /** The requested rebuild after the increment (history compacted): wall time, stage timings, SQL and load. */
  againMs: number;
  againTimings: Record<string, number>;
  /** CPU (ms) over the requested rebuild: this process (main thread and DuckDB's), dynalite, s3rver. */
  againCpu: { ownMs: number; dynamodbMs: number; s3Ms: number };
  againSqlMs: number;
  againLoadMs: number;
  rebuildRows: number;
  /** DynamoDB items (blocks) the rebuild wrote, rollups included. */
  rebuildItems: number;
  rebuildSqlMs: number;
  rebuildLoadMs: number;
  baselineMs: number;
  baselineParseMs: number;
  /** CPU (ms) of this process over the baseline (DuckDB's threads and the main thread). */
  baselineCpuMs: number;
  incrementRecords: number;
  incrementMs: number;
  incrementSqlMs: number;
  incrementLoadMs: number;
  rawObjectsRead: number;
  rawRowsRead: number;
  rawBytesRead: number;
  rowsWritten: number;
  /** DynamoDB items (blocks) the increment wrote, rollups included. */
  itemsWritten: number;
  writtenByView: Record<string, number>;
  /** Per view, the batch-view partitions the increment rewrote (writer = its version). */
  partitionsByView: Record<string, string[]>;
  viewRows: number;
}

const emulators = await startBenchEmulators();
const stageDirs: string[] = [];
const results: Result[] = [];
const tAll = performance.now();
try {
  const clients = createClients(emulators.env);
  for (const [i, d] of days.entries()) {
    const names = localNames(`inc${i}`);
    await provision(clients, { names, shards: SHARDS });
    const config = benchConfig(names);
    const horizonMs = config.settings.dedupHorizonSeconds * 1000;
    const feeder = new ArchiveFeeder(clients, config, SHARDS, BATCH_SIZE, MAX_BATCH_SPAN_MS);
    const gen = new DemoGenerator({ seed: 19 + i, duplicateFraction: 0.01, lateFraction: 0.05 });
    const resend = new Resender(91 + i, horizonMs);

    // ---- history: D days of arrivals before T_END ----
    log(`\n${d} days of history, ${int(opts.eventsPerDay * d)} events: archiving...`);
    const ta = performance.now();
    await feed(feeder, gen, resend, T_END - d * DAY, d * DAY, opts.eventsPerDay * d);
    const archiveMs = performance.now() - ta;
    const historyRecords = feeder.records;
    log(`\r  ${int(historyRecords)} records archived in ${sec(archiveMs)}`);

    // ---- the rebuild, publishing at cutoff T_END (now = T_END + 10 s, less the 5 s margin, floored to the minute) ----
    const stageDir = mkdtempSync(join(tmpdir(), 'tandem-bench-stage-'));
    stageDirs.push(stageDir);
    const engine = duckDbEngine({ s3: clients.s3, rawBucket: config.buckets.raw, stageDir });
    log('  rebuild...');
    const tr = performance.now();
    const rebuild = succeeded(
      await runBatchToCompletion(clients, config, { engine, now: () => T_END + 10_000, request: { rebuild: true } }),
      'rebuild',
    );
    const rebuildMs = performance.now() - tr;
    if (rebuild.cutoff !== T_END) throw new Error(`rebuild cutoff ${rebuild.cutoff}, expected ${T_END}`);
    const rebuildRows = Object.values(rebuild.views).reduce((a, v) => a + (v.written ?? v.rows), 0);
    const rebuildItems = await versionItems(clients.dynamodb, config.tables.batchViews, rebuild.version!);
    const rebuildTimings = Object.fromEntries(Object.entries(rebuild.timings ?? {}).map(([k, v]) => [k, Math.round(Number(v))]));
    log(
      `  rebuild: ${sec(rebuildMs)}, ${int(rebuildRows)} rows written in ${int(rebuildItems)} items; stages (ms) ${JSON.stringify(rebuildTimings)}`,
    );

    // ---- baseline: the history's files parsed once into a table, one bare GROUP BY per view ----
    const files = walk(join(stageDir, 'raw')).sort();
    const db = await openDuckDb();
    const tb = performance.now();
    const baseCpu0 = process.cpuUsage();
    await db.query(`CREATE TEMP TABLE lines AS SELECT id, ts, arrival, shard, seq, fields, num FROM ${duckdbSource(files)}`);
    const baselineParseMs = performance.now() - tb;
    for (const v of config.views) await db.query(bareGroupBy(v, 'lines'));
    const baselineMs = performance.now() - tb;
    const baseCpu = process.cpuUsage(baseCpu0);
    const baselineCpuMs = Math.round((baseCpu.user + baseCpu.system) / 1000);
    db.close();
    log(`  baseline: ${sec(baselineMs)} (parse ${sec(baselineParseMs)})`);

    // ---- the increment: --increment-hours of new arrivals, then one incremental run ----
    const incMs = opts.incrementHours * HOUR;
    await feed(feeder, gen, resend, T_END, incMs, Math.round((opts.eventsPerDay * incMs) / DAY));
    const incrementRecords = feeder.records - historyRecords;
    log(`  incremental run over ${int(incrementRecords)} new records...`);
    const ti = performance.now();
    const inc = succeeded(await runBatchToCompletion(clients, config, { engine, now: () => T_END + incMs + 10_000 }), 'incremental run');
    const incrementMs = performance.now() - ti;
    const views = Object.entries(inc.views);
    for (const [name, v] of views) if (v.mode !== 'increment') throw new Error(`view ${name} ran as ${v.mode} (${v.reason ?? ''})`);
    const manifest = await getManifest({ doc: clients.doc, table: config.tables.control }, inc.version!);
    const partitionsByView = Object.fromEntries(
      config.views.map((v) => {
        const map = manifest?.views?.[v.name]?.partitions ?? {};
        const own = Array.isArray(map) ? [] : Object.entries(map).filter(([, w]) => w === inc.version);
        return [v.name, own.map(([p]) => new Date(Number(p)).toISOString().slice(0, 10)).sort()];
      }),
    );
    // ---- a requested rebuild over the same history (what `tandem batch rebuild` costs from then on; the first run above
    // also compacted the hours increments read, H + 1 day before its cutoff, once) ----
    log('  rebuild again (the last H + 1 day compacted by the first run)...');
    const tr2 = performance.now();
    const cpu0 = { own: process.cpuUsage(), ...emulators.cpuMs() };
    const again = succeeded(
      await profiled(`rebuild-${d}d`, () =>
        runBatchToCompletion(clients, config, { engine, now: () => T_END + incMs + 70_000, request: { rebuild: true } }),
      ),
      'second rebuild',
    );
    const againMs = performance.now() - tr2;
    // CPU, not wall time, says where a 2-core machine's time went: this process (the run's code and DuckDB's threads)
    // and each emulator (dynalite storing the load, s3rver listing for the staging).
    const ownCpu = process.cpuUsage(cpu0.own);
    const cpu1 = emulators.cpuMs();
    const againCpu = {
      ownMs: Math.round((ownCpu.user + ownCpu.system) / 1000),
      dynamodbMs: Math.round(cpu1.dynamodb - cpu0.dynamodb),
      s3Ms: Math.round(cpu1.s3 - cpu0.s3),
    };
    const againTimings = Object.fromEntries(Object.entries(again.timings ?? {}).map(([k, v]) => [k, Math.round(Number(v))]));
    log(
      `  rebuild again: ${sec(againMs)}; SQL ${Object.values(again.views).reduce((s, v) => s + v.sqlMs, 0)} ms, ` +
        `load ${Object.values(again.views).reduce((s, v) => s + v.loadMs, 0)} ms, stages (ms) ${JSON.stringify(againTimings)}`,
    );
    const a = inc.archive;
    if (a?.rawRowsRead === undefined || a.rawBytesRead === undefined) throw new Error('the run item has no archive.rawRowsRead');
    const r: Result = {
      historyDays: d,
      historyRecords,
      historyObjects: files.length,
      historyBytes: files.reduce((s, f) => s + statSync(f).size, 0),
      archiveMs,
      rebuildMs,
      rebuildTimings,
      againMs,
      againTimings,
      againCpu,
      againSqlMs: Object.values(again.views).reduce((s, v) => s + v.sqlMs, 0),
      againLoadMs: Object.values(again.views).reduce((s, v) => s + v.loadMs, 0),
      rebuildRows,
      rebuildItems,
      rebuildSqlMs: Object.values(rebuild.views).reduce((s, v) => s + v.sqlMs, 0),
      rebuildLoadMs: Object.values(rebuild.views).reduce((s, v) => s + v.loadMs, 0),
      baselineMs,
      baselineParseMs,
      baselineCpuMs,
      incrementRecords,
      incrementMs,
      incrementSqlMs: views.reduce((s, [, v]) => s + v.sqlMs, 0),
      incrementLoadMs: views.reduce((s, [, v]) => s + v.loadMs, 0),
      rawObjectsRead: a.rawObjectsRead ?? 0,
      rawRowsRead: a.rawRowsRead,
      rawBytesRead: a.rawBytesRead,
      rowsWritten: views.reduce((s, [, v]) => s + (v.written ?? 0), 0),
      itemsWritten: await versionItems(clients.dynamodb, config.tables.batchViews, inc.version!),
      writtenByView: Object.fromEntries(views.map(([n, v]) => [n, v.written ?? 0])),
      partitionsByView,
      viewRows: views.reduce((s, [, v]) => s + v.rows, 0),
    };
    results.push(r);
    const incTimings = Object.fromEntries(Object.entries(inc.timings ?? {}).map(([k, v]) => [k, Math.round(Number(v))]));
    log(
      `  increment: ${sec(incrementMs)}, ${int(r.rawRowsRead)} raw rows read, ` +
        `${int(r.rowsWritten)} rows written in ${int(r.itemsWritten)} items; SQL ${r.incrementSqlMs} ms, load ${r.incrementLoadMs} ms, ` +
        `stages (ms) ${JSON.stringify(incTimings)}`,
    );
  }
} finally {
  await emulators.stop(stageDirs);
}
const totalMs = performance.now() - tAll;

// ---- report ----
const first = results[0]!;
const goal = (value: number, limit: number) => `${value.toFixed(2)}x (goal <= ${limit}x: ${value <= limit ? 'met' : 'not met'})`;
const stages = (t: Record<string, number>, sqlMs: number, loadMs: number) =>
  [t.stage ?? 0, t.verify ?? 0, sqlMs, loadMs, t.compact ?? 0].map((ms) => sec(ms)).join(' / ');
const versus = (f: (r: Result) => number, limit: number) => (r: Result) => (r === first ? '1.00x' : goal(f(r) / f(first), limit));
const head = ['', ...results.map((r) => `${r.historyDays} days`)];
const row = (label: string, f: (r: Result) => string) => [label, ...results.map(f)];
const partitionDays = BATCH_PARTITION_MS.hour / DAY;
const rows: string[][] = [
  row('history: records archived (with copies)', (r) => int(r.historyRecords)),
  row('history: raw objects / gzip size', (r) => `${int(r.historyObjects)} / ${mb(r.historyBytes)}`),
  row('history: gzip bytes per record', (r) => (r.historyBytes / r.historyRecords).toFixed(1)),
  row('history: archive handler', (r) => `${sec(r.archiveMs)} (${int(r.historyRecords / (r.archiveMs / 1000))} records/s)`),
  row(
    'first run (a rebuild): wall time',
    (r) => `${sec(r.rebuildMs)} (${int(r.rebuildRows)} rows written in ${int(r.rebuildItems)} items)`,
  ),
  row('first run: stage / verify / SQL / load / compaction of the last H + 1 day', (r) =>
    stages(r.rebuildTimings, r.rebuildSqlMs, r.rebuildLoadMs),
  ),
  row('rebuild (requested, after the increment): wall time', (r) => sec(r.againMs)),
  row('rebuild: stage / verify / SQL / load / compaction', (r) => stages(r.againTimings, r.againSqlMs, r.againLoadMs)),
  row(
    'rebuild: CPU of this process (run + DuckDB) / dynalite / s3rver',
    (r) => `${sec(r.againCpu.ownMs)} / ${sec(r.againCpu.dynamodbMs)} / ${sec(r.againCpu.s3Ms)}`,
  ),
  row(
    'baseline: parse once + bare GROUP BY per view',
    (r) => `${sec(r.baselineMs)} (parse ${sec(r.baselineParseMs)}; CPU ${sec(r.baselineCpuMs)})`,
  ),
  row('first run / baseline', (r) => `${(r.rebuildMs / r.baselineMs).toFixed(2)}x`),
  row('rebuild / baseline', (r) => goal(r.againMs / r.baselineMs, 2)),
  row('increment: new records archived', (r) => int(r.incrementRecords)),
  row('increment: raw objects read', (r) => int(r.rawObjectsRead)),
  row('increment: raw rows read', (r) => int(r.rawRowsRead)),
  row('increment: raw bytes read', (r) => mb(r.rawBytesRead)),
  row(
    'increment: batch-view rows written',
    (r) =>
      `${int(r.rowsWritten)} (${Object.entries(r.writtenByView)
        .map(([n, w]) => `${n} ${int(w)}`)
        .join(', ')})`,
  ),
  row('increment: DynamoDB items written (blocks, rollups included)', (r) => int(r.itemsWritten)),
  row('increment: partitions touched (start day)', (r) =>
    Object.entries(r.partitionsByView)
      .map(([n, ps]) => `${n} ${ps.length ? ps.join(' ') : '-'}`)
      .join('; '),
  ),
  row('increment: wall time', (r) => `${sec(r.incrementMs)} (SQL ${sec(r.incrementSqlMs)}, load ${sec(r.incrementLoadMs)})`),
  row(
    `raw rows read vs ${first.historyDays} days`,
    versus((r) => r.rawRowsRead, 1.2),
  ),
  row(
    `raw bytes read vs ${first.historyDays} days`,
    versus((r) => r.rawBytesRead, 1.2),
  ),
  row(
    `rows written vs ${first.historyDays} days`,
    versus((r) => r.rowsWritten, 1.2),
  ),
  row(
    `wall time vs ${first.historyDays} days`,
    versus((r) => r.incrementMs, 1.5),
  ),
];
const table = new Table({ head, style: { head: [], border: [] } });
for (const r of rows) table.push(r);
(opts.json ? log : console.log)(table.toString());
const meanLoad = emulators.meanLoad();
log(`\ntotal ${sec(totalMs)}; mean 1-minute load average ${meanLoad.toFixed(1)} on ${availableParallelism()} cores`);

if (opts.json) {
  console.log(
    JSON.stringify({
      eventsPerDay: opts.eventsPerDay,
      incrementHours: opts.incrementHours,
      runs: results.map((r) => ({
        historyDays: r.historyDays,
        incremental: {
          rawRowsRead: r.rawRowsRead,
          rawBytesRead: r.rawBytesRead,
          rowsWritten: r.rowsWritten,
          ms: Math.round(r.incrementMs),
          itemsWritten: r.itemsWritten,
          rawObjectsRead: r.rawObjectsRead,
          newRecords: r.incrementRecords,
          sqlMs: r.incrementSqlMs,
          loadMs: r.incrementLoadMs,
          writtenByView: r.writtenByView,
          partitionsByView: r.partitionsByView,
        },
        rebuild: { ms: Math.round(r.againMs), sqlMs: r.againSqlMs, loadMs: r.againLoadMs, timings: r.againTimings, cpu: r.againCpu },
        firstRun: {
          ms: Math.round(r.rebuildMs),
          rowsWritten: r.rebuildRows,
          itemsWritten: r.rebuildItems,
          sqlMs: r.rebuildSqlMs,
          loadMs: r.rebuildLoadMs,
          timings: r.rebuildTimings,
        },
        baseline: { ms: Math.round(r.baselineMs), parseMs: Math.round(r.baselineParseMs), cpuMs: r.baselineCpuMs },
        history: { records: r.historyRecords, objects: r.historyObjects, gzipBytes: r.historyBytes, archiveMs: Math.round(r.archiveMs) },
      })),
    }),
  );
}

if (opts.write) {
  const cmd = `npm run bench -- batch-increment --days ${opts.days} --events-per-day ${opts.eventsPerDay} --increment-hours ${opts.incrementHours}`;
  const md = [
    '## batch-increment',
    '',
    `\`${cmd}\` (${new Date().toISOString().slice(0, 10)}, ${sec(totalMs)} in all). Per history length, demo-mix events`,
    `(${opts.eventsPerDay.toLocaleString('en-US')} a day; 1 % resent at once, ${RESEND_WITHIN * 100} % resent hours to days later within the`,
    `dedup horizon H = 7 days and ${RESEND_BEYOND * 100} % beyond it; 5 % late by up to 3 h) with arrivals over the days before one fixed end T`,
    `(${new Date(T_END).toISOString()}: noon, ${((T_END % BATCH_PARTITION_MS.hour) / DAY).toFixed(1)} days into its ${partitionDays}-day hour-view partition),`,
    `on ${SHARDS} shards, archived to s3rver by the real archive handler (synthetic Kinesis events, batches of ${BATCH_SIZE.toLocaleString('en-US')});`,
    'a first run (a rebuild) publishes at T (DuckDB engine, empty staging cache, dynalite) and compacts into Parquet, once,',
    `the hours increments read (H + 1 day before T); then the next ${opts.incrementHours} h of arrivals are archived and one incremental run`,
    `publishes at T + ${opts.incrementHours} h (same staging cache, as the local cloud keeps it); then a requested rebuild (\`tandem batch rebuild\`)`,
    'recomputes every view from all history (Parquet where compacted, JSON before). Copy-on-write is per block.',
    "Baseline in the same run: the history's staged files parsed once into a DuckDB table, plus one",
    "bare `GROUP BY` per view over it (no dedup, nothing loaded). Raw rows/bytes read are the run item's",
    "`archive.rawRowsRead` / `rawBytesRead` (lines and stored gzip bytes of the objects of the arrival range [C - H, C')).",
    "Stages overlap: the parse runs while the staging lists (so verify is what is left of it), a view's SQL while the view",
    "before it loads, and the first view's later parts while its earlier parts load; SQL and load add up to more than the wall time.",
    '`--cpu-profile DIR` writes a V8 CPU profile of the main thread over each requested rebuild (`rebuild-<days>d.cpuprofile`).',
    `Mean 1-minute load average while it ran: ${meanLoad.toFixed(1)} on ${availableParallelism()} cores.`,
    '',
    ...markdownTable(head, rows),
    '',
    'What the figures mean, and the cost model they feed: docs/batch-layer.md, "What a run costs in AWS".',
    '',
  ].join('\n');
  writeBenchmarkSection('batch-increment', md);
  log('wrote docs/benchmarks.md (## batch-increment)');
}
