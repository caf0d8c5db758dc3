/**
 * `npm run bench -- backfill [--events 200000] [--batch-size 1000] [--no-write] [--json]`
 *
 * Events per second of `tandem backfill` into the local cloud, end to end: the
 * CLI as a child process (start-up, GET /views, reading and gunzipping the
 * file, validating every event as ingest does, spooling, writing the objects,
 * manifest entries and the backfill item to s3rver and dynalite), over a gzip
 * NDJSON file of demo-mix events (local/demo.ts: 3 % resent ids, 5 % late).
 * The baseline, in the same run and against the same emulators: the raw archive
 * handler's own rate over the same events, fed as synthetic Kinesis events of
 * `--batch-size` records per shard (the local cloud's archive mapping batches
 * 1,000), on 2 shards. Goal: backfill >= 0.5x the archive handler.
 *
 * Writes the table into docs/benchmarks.md under `## backfill` (unless --no-write); with
 * --json, prints one JSON document on stdout (the table goes to stderr).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Command } from 'commander';
import { createClients } from '../functions/adapters/clients.ts';
import { localNames } from '../functions/resources.ts';
import { startLocalCloud } from '../local/cloud.ts';
import { DemoGenerator } from '../local/demo.ts';
import { provision } from '../local/provision.ts';
import { REPO_ROOT } from '../local/runtime.ts';
import { ArchiveFeeder, benchConfig } from './support/archive.ts';
import { cpuMsOf } from './support/cpu.ts';
import { markdownTable, writeBenchmarkSection } from './support/report.ts';

process.env.POWERTOOLS_METRICS_DISABLED = 'true';
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const opts = new Command()
  .option('--events <n>', 'events in the history file', (v) => Number.parseInt(v, 10), 200_000)
  .option('--batch-size <n>', 'records per archive handler invocation (the baseline)', (v) => Number.parseInt(v, 10), 1000)
  .option('--no-write', 'do not update docs/benchmarks.md')
  .option('--json', 'print one JSON document on stdout (narration on stderr)')
  .parse(process.argv)
  .opts<{ events: number; batchSize: number; write: boolean; json?: boolean }>();

const log = (...a: unknown[]) => console.error(...a);
const T0 = Date.UTC(2025, 2, 3, 0, 0, 0);
const DAY = 86_400_000;

const dir = mkdtempSync(join(tmpdir(), 'tandem-bench-backfill-'));
const loads: number[] = [];
const sampler = setInterval(() => loads.push(loadavg()[0]!), 2000);
sampler.unref();
const cloud = await startLocalCloud({
  port: 0,
  demo: false,
  batchEverySeconds: null,
  dataDir: join(dir, 'data'),
  logger: { info: () => undefined, warn: (m, ...x) => log(m, ...x), error: (m, ...x) => log(m, ...x) },
});
try {
  // ---- the history: demo-mix events over a day, one gzip NDJSON file ----
  const gen = new DemoGenerator({ seed: 11 });
  const events: { id: string }[] = [];
  const ticks = Math.ceil(opts.events / 100);
  for (let t = 0; events.length < opts.events; t++) {
    const { events: e, retries } = gen.tick(T0 + Math.floor((t * DAY) / ticks), 100);
    events.push(...e, ...retries);
  }
  events.length = opts.events;
  // Two files of the same events: ids of the second renamed, so the second backfill is a new one (not a re-run).
  const write = (name: string, prefix: string) => {
    const f = join(dir, name);
    writeFileSync(f, gzipSync(`${events.map((e) => JSON.stringify({ ...e, id: `${prefix}${e.id}` })).join('\n')}\n`));
    return f;
  };
  const file = write('history.ndjson.gz', '');
  const fileNoClaims = write('history-2.ndjson.gz', 'nc-');
  const fileBytes = statSync(file).size;
  log(`${opts.events.toLocaleString('en-US')} events, ${(fileBytes / 1024 / 1024).toFixed(1)} MB gzip`);
  const dynalitePid = cloud.emulators.dynamodb.pid;

  // ---- the baseline: the archive handler over the same events, same emulators ----
  const clients = createClients(process.env);
  const names = localNames('benchfeed');
  await provision(clients, { names, shards: 2 });
  const feeder = new ArchiveFeeder(clients, benchConfig(names), 2, opts.batchSize);
  log('archive handler...');
  const cArchive = cpuMsOf(dynalitePid);
  const tArchive = performance.now();
  for (const [i, e] of events.entries()) await feeder.add(e, T0 + Math.floor((i * DAY) / events.length));
  await feeder.flush();
  const archiveMs = performance.now() - tArchive;
  const archiveDynaliteMs = cpuMsOf(dynalitePid) - cArchive;
  for (const c of Object.values(clients)) c.destroy();

  // ---- tandem backfill, the CLI as a user runs it: with claims (the default), then --no-claims ----
  const backfill = async (f: string, extra: string[]) => {
    log(`tandem backfill ${extra.join(' ')}...`);
    const c0 = cpuMsOf(dynalitePid);
    const t0 = performance.now();
    const out = await new Promise<string>((res, rej) => {
      const child = spawn(process.execPath, [join(REPO_ROOT, 'bin/tandem.js'), 'backfill', f, '--no-batch', '--json', ...extra], {
        cwd: dir,
        env: { ...process.env, TANDEM_DATA_DIR: join(dir, 'data') },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let text = '';
      child.stdout.on('data', (d: Buffer) => {
        text += d.toString();
      });
      child.once('close', (code) => (code === 0 ? res(text) : rej(new Error(`tandem backfill exited ${code}: ${text}`))));
    });
    const ms = performance.now() - t0;
    const summary = JSON.parse(out) as { accepted: number; objects: number; bytes: number; claims: number; idSets: number };
    if (summary.accepted !== opts.events) throw new Error(`backfill accepted ${summary.accepted} of ${opts.events}`);
    return { ms, summary, dynaliteMs: cpuMsOf(dynalitePid) - c0 };
  };
  const withClaims = await backfill(file, []);
  const noClaims = await backfill(fileNoClaims, ['--no-claims']);
  const backfillMs = withClaims.ms;
  const summary = withClaims.summary;

  const rate = (ms: number) => Math.round(opts.events / (ms / 1000));
  const cpuPer = (ms: number) => `${Math.round((ms * 1000) / opts.events)} µs`;
  const rows = [
    [
      'archive handler (baseline)',
      `${(archiveMs / 1000).toFixed(1)} s`,
      rate(archiveMs).toLocaleString('en-US'),
      '1.00x',
      `batches of ${opts.batchSize.toLocaleString('en-US')} per shard, 2 shards; dynalite ${cpuPer(archiveDynaliteMs)} CPU per event`,
    ],
    [
      '`tandem backfill` (CLI, end to end)',
      `${(backfillMs / 1000).toFixed(1)} s`,
      rate(backfillMs).toLocaleString('en-US'),
      `${(archiveMs / backfillMs).toFixed(2)}x`,
      `${summary.objects} objects, ${(summary.bytes / 1024 / 1024).toFixed(1)} MB written, ` +
        `${summary.claims.toLocaleString('en-US')} ids registered in ${summary.idSets.toLocaleString('en-US')} id sets; ` +
        `dynalite ${cpuPer(withClaims.dynaliteMs)} CPU per event`,
    ],
    [
      '`tandem backfill --no-claims`',
      `${(noClaims.ms / 1000).toFixed(1)} s`,
      rate(noClaims.ms).toLocaleString('en-US'),
      `${(archiveMs / noClaims.ms).toFixed(2)}x`,
      `${noClaims.summary.objects} objects, ${noClaims.summary.claims} ids registered; dynalite ${cpuPer(noClaims.dynaliteMs)} CPU per event`,
    ],
  ];
  const load = loads.length > 0 ? (loads.reduce((a, b) => a + b, 0) / loads.length).toFixed(1) : 'n/a';
  const md = [
    '## backfill',
    '',
    `\`npm run bench -- backfill --events ${opts.events}\` (bench/backfill.ts, ${new Date().toISOString().slice(0, 10)}; ` +
      `${availableParallelism()} cores, load average ${load} during the run).`,
    `${opts.events.toLocaleString('en-US')} demo-mix events over a day ` +
      `in one gzip NDJSON file (${(fileBytes / 1024 / 1024).toFixed(1)} MB), ` +
      `into the local cloud's s3rver and dynalite.`,
    'The baseline, in the same run against the same emulators: the raw archive handler over the same events, fed as',
    'synthetic Kinesis events. The backfill is measured as a user runs it: `tandem backfill FILE --no-batch --json` as a',
    'child process, from its start (process start-up, `GET /views`) to its exit. Goal: at least 0.5x the handler.',
    'By default every id is registered with the speed layer first, in id sets of about 100 ids an item (control table,',
    'BatchWriteItem; docs/batch-layer.md "Backfill"); `--no-claims` skips that. dynalite\'s CPU (from /proc) is read around each path.',
    '',
    ...markdownTable(['path', 'time', 'events/s', 'vs. handler', 'notes'], rows),
    '',
  ].join('\n');
  if (opts.json) {
    log(md);
    const path = (ms: number, s?: { claims: number; idSets: number }, dynaliteMs?: number) => ({
      ms: Math.round(ms),
      eventsPerSecond: rate(ms),
      vsArchive: Number((archiveMs / ms).toFixed(3)),
      ...(s && { idsRegistered: s.claims, idSets: s.idSets }),
      ...(dynaliteMs !== undefined && { dynaliteCpuMs: Math.round(dynaliteMs) }),
    });
    console.log(
      JSON.stringify({
        events: opts.events,
        archive: path(archiveMs, undefined, archiveDynaliteMs),
        backfill: path(backfillMs, summary, withClaims.dynaliteMs),
        noClaims: path(noClaims.ms, noClaims.summary, noClaims.dynaliteMs),
      }),
    );
  } else console.log(md);
  if (opts.write) writeBenchmarkSection('backfill', md);
} finally {
  await cloud.stop();
  rmSync(dir, { recursive: true, force: true });
}
