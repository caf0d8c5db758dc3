/**
 * `npm run bench -- poller [--records 6000] [--rounds 3] [--sizes 100,1000] [--no-startup] [--no-write] [--json]`:
 * the local cloud's own costs.
 *
 * 1. Read throughput from the Kinesis emulator: one shard poller of the event source
 *    mapping (local/esm.ts, with a no-op function) against a bare
 *    GetRecords loop over the same shard in the same run (the baseline).
 * 2. Start-up time: emulators + provisioning (in process), and `tandem local
 *    --no-demo` as a child process until GET /health answers 200, with an
 *    empty data dir and again with the data it left (a restart).
 *
 * Writes the summary into docs/benchmarks.md under `## local cloud` (unless --no-write); with
 * --json, prints one JSON document on stdout (the summary lines go to stderr).
 */

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GetRecordsCommand, GetShardIteratorCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import { Command } from 'commander';
import { createClients } from '../functions/adapters/clients.ts';
import { localNames } from '../functions/resources.ts';
import { emulatorEnv, kinesisEngine, startEmulator, startEmulators } from '../local/emulators.ts';
import { startEventSourceMapping } from '../local/esm.ts';
import { provision } from '../local/provision.ts';
import { REPO_ROOT } from '../local/runtime.ts';
import { createStream, put } from '../test/support/kinesis.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const opts = new Command()
  .option('--records <n>', 'records put into the shard', (v) => Number.parseInt(v, 10), 6000)
  .option('--rounds <n>', 'measurements of each reader (the median is reported)', (v) => Number.parseInt(v, 10), 3)
  .option('--sizes <list>', 'batch sizes of the poller', '100,1000')
  .option('--no-startup', 'skip the start-up measurements')
  .option('--no-write', 'do not update docs/benchmarks.md')
  .option('--json', 'print one JSON document on stdout (narration on stderr)')
  .parse(process.argv)
  .opts<{ records: number; rounds: number; sizes: string; startup: boolean; write: boolean; json?: boolean }>();
/** Report lines: stdout, or stderr when stdout holds the JSON document. */
const out = (...a: unknown[]) => (opts.json ? console.error(...a) : console.log(...a));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const int = (n: number) => Math.round(n).toLocaleString('en-US');

async function bareRead(kinesis: KinesisClient, stream: string, n: number): Promise<number> {
  const t = performance.now();
  let it = (
    await kinesis.send(
      new GetShardIteratorCommand({ StreamName: stream, ShardId: 'shardId-000000000000', ShardIteratorType: 'TRIM_HORIZON' }),
    )
  ).ShardIterator;
  let got = 0;
  while (it && got < n) {
    const r = await kinesis.send(new GetRecordsCommand({ ShardIterator: it, Limit: 10_000 }));
    got += r.Records?.length ?? 0;
    it = r.NextShardIterator;
  }
  if (got !== n) throw new Error(`bare loop read ${got} of ${n} records`);
  return n / ((performance.now() - t) / 1000);
}

async function pollerRead(kinesis: KinesisClient, stream: string, n: number, batchSize: number): Promise<number> {
  let got = 0;
  const t = performance.now();
  const m = await startEventSourceMapping({
    name: `bench-${batchSize}`,
    kinesis,
    streamName: stream,
    batchSize,
    pollIntervalMs: 50,
    invoke: async (e) => {
      got += e.Records.length;
    },
    logger: { info: () => {}, warn: (x) => console.error(x), error: (x) => console.error(x) },
  });
  await m.idle();
  const rps = n / ((performance.now() - t) / 1000);
  await m.stop();
  if (got !== n) throw new Error(`poller delivered ${got} of ${n} records`);
  return rps;
}

// 1. Throughput.
/** The Kinesis emulator started here and by `tandem local` below (TANDEM_KINESIS_ENGINE, else kinesalite). */
const engine = kinesisEngine();
const kinesisEmu = await startEmulator('kinesis');
const { kinesis } = createClients(
  emulatorEnv({ kinesis: kinesisEmu, dynamodb: { endpoint: 'http://127.0.0.1:9' }, s3: { endpoint: 'http://127.0.0.1:9' } }),
);
const sizes = opts.sizes.split(',').map(Number);
let bareRps = 0;
const pollerRps: Record<number, number> = {};
let putRps = 0;
try {
  const stream = await createStream(kinesis, 1);
  const payload = (i: number) => ({
    id: `bench-${i}`,
    type: 'page_view',
    ts: new Date().toISOString(),
    page: '/docs',
    country: 'DE',
    load_ms: 100 + (i % 900),
  });
  const tPut = performance.now();
  for (let i = 0; i < opts.records; i += 500)
    await put(
      kinesis,
      stream,
      Array.from({ length: Math.min(500, opts.records - i) }, (_, k) => payload(i + k)),
    );
  putRps = opts.records / ((performance.now() - tPut) / 1000);
  console.error(`put ${opts.records} records into one shard (${int(putRps)} records/s)`);
  const bare: number[] = [];
  const polled: Record<number, number[]> = Object.fromEntries(sizes.map((s) => [s, []]));
  // Interleaved rounds, so a slowdown of the machine hits both readers alike.
  for (let r = 0; r < opts.rounds; r++) {
    bare.push(await bareRead(kinesis, stream, opts.records));
    for (const s of sizes) polled[s]!.push(await pollerRead(kinesis, stream, opts.records, s));
  }
  bareRps = median(bare);
  for (const s of sizes) pollerRps[s] = median(polled[s]!);
} finally {
  kinesis.destroy();
  await kinesisEmu.stop();
}
out(`bare GetRecords loop: ${int(bareRps)} records/s (baseline)`);
for (const s of sizes) out(`one shard poller, batchSize ${s}: ${int(pollerRps[s]!)} records/s (${(pollerRps[s]! / bareRps).toFixed(2)}x)`);

// 2. Start-up.
interface Startup {
  emulatorsMs: number;
  freshMs: number;
  restartMs: number;
}
let startup: Startup | undefined;

async function healthAfterSpawn(dataDir: string): Promise<number> {
  const t = performance.now();
  const child = spawn(
    process.execPath,
    [join(REPO_ROOT, 'bin/tandem.js'), 'local', '--no-demo', '--port', '0', '--batch-every', 'off', '--data-dir', dataDir],
    {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error('tandem local exited during start-up');
      const url = /^API:\s+(\S+)/m.exec(out)?.[1];
      if (url) {
        const r = await fetch(`${url}/health`).catch(() => undefined);
        if (r?.status === 200) return performance.now() - t;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    child.kill('SIGINT');
    await exited;
  }
}

if (opts.startup) {
  const em: number[] = [];
  for (let r = 0; r < opts.rounds; r++) {
    const t = performance.now();
    const set = await startEmulators();
    const c = createClients(set.env);
    await provision(c, { names: localNames(), shards: 2 });
    em.push(performance.now() - t);
    for (const x of Object.values(c)) x.destroy();
    await set.stop();
  }
  const fresh: number[] = [];
  const restart: number[] = [];
  for (let r = 0; r < opts.rounds; r++) {
    const dir = mkdtempSync(join(tmpdir(), 'bench-start-'));
    try {
      fresh.push(await healthAfterSpawn(dir));
      restart.push(await healthAfterSpawn(dir));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  startup = { emulatorsMs: median(em), freshMs: median(fresh), restartMs: median(restart) };
  out(`emulators + provisioning (in process): ${(startup.emulatorsMs / 1000).toFixed(1)} s`);
  out(
    `tandem local --no-demo -> /health 200: ${(startup.freshMs / 1000).toFixed(1)} s with an empty data dir, ` +
      `${(startup.restartMs / 1000).toFixed(1)} s restarting on its data`,
  );
}

if (opts.json) {
  const round3 = (x: number) => Number(x.toFixed(3));
  console.log(
    JSON.stringify({
      engine,
      records: opts.records,
      rounds: opts.rounds,
      putRecordsPerSecond: Math.round(putRps),
      bareRecordsPerSecond: Math.round(bareRps),
      pollers: sizes.map((s) => ({
        batchSize: s,
        recordsPerSecond: Math.round(pollerRps[s]!),
        vsBare: round3(pollerRps[s]! / bareRps),
      })),
      startup: startup
        ? { emulatorsMs: Math.round(startup.emulatorsMs), freshMs: Math.round(startup.freshMs), restartMs: Math.round(startup.restartMs) }
        : null,
    }),
  );
}

if (opts.write) {
  const path = join(dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'benchmarks.md');
  const lines = [
    '## local cloud',
    '',
    `\`npm run bench -- poller\` (bench/poller.ts; medians of ${opts.rounds} interleaved rounds; ` +
      `${int(opts.records)} records of ~150 bytes in one shard of ${engine}).`,
    '',
    '| reader | records/s | vs. baseline |',
    '|---|---:|---:|',
    `| bare GetRecords loop (Limit 10,000) — baseline | ${int(bareRps)} | 1.00x |`,
    ...sizes.map(
      (s) =>
        `| one shard poller (local/esm.ts), batchSize ${s}, no-op function | ` +
        `${int(pollerRps[s]!)} | ${(pollerRps[s]! / bareRps).toFixed(2)}x |`,
    ),
    '',
    `PutRecords into the same shard ran at ${int(putRps)} records/s (500 per call).`,
    ...(startup
      ? [
          '',
          '| start-up | seconds |',
          '|---|---:|',
          `| emulators + provisioning, in process (${engine}, dynalite, s3rver in parallel) | ${(startup.emulatorsMs / 1000).toFixed(1)} |`,
          `| \`tandem local --no-demo\` -> GET /health 200, empty data dir (\`npm start\` minus npm) | ` +
            `${(startup.freshMs / 1000).toFixed(1)} |`,
          `| the same, restarting on the data it left | ${(startup.restartMs / 1000).toFixed(1)} |`,
        ]
      : []),
  ];
  const doc = readFileSync(path, 'utf8');
  const start = doc.search(/^## local cloud\s*$/m);
  // Keep the long-run subsection (written by bench/longrun.ts) when re-writing this one.
  let next = -1;
  let keep = '';
  if (start >= 0) {
    const rest = doc.slice(start + 1).search(/^## /m);
    next = rest >= 0 ? start + 1 + rest : -1;
    const section = doc.slice(start, next >= 0 ? next : undefined);
    const lr = section.search(/^### long run\s*$/m);
    if (lr >= 0) keep = `\n${section.slice(lr).trimEnd()}\n`;
  }
  const body = `${lines.join('\n')}\n${keep}`;
  const updated = start < 0 ? `${doc.trimEnd()}\n\n${body}` : `${doc.slice(0, start)}${body}${next >= 0 ? `\n${doc.slice(next)}` : ''}`;
  writeFileSync(path, updated);
  console.error('wrote docs/benchmarks.md ## local cloud');
}
