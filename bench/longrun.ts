/**
 * `npm run bench -- longrun [--minutes 60] [--every 30] [--rate 10] [--clouds <list>] [--no-write] [--json]`:
 * leaves `tandem local` running with its demo (as people leave `npm start` running for a day) and samples, every
 * `--every` seconds: the resident memory of the local cloud process and of
 * each emulator, the Kinesis emulator's data on disk, the latency of one POST
 * /events (ingest -> PutRecords) and of one query, and the speed layer's lag.
 * With `--clouds kinesalite,kinesalite:as-shipped` (the default) local clouds run side by side
 * under the same load on the same machine: here the local cloud as it is and one whose dynalite
 * runs as published, without local/dynalite-iterators.cjs (`kinesis-local` in the list adds a
 * cloud on the other Kinesis emulator: the choice of emulator was made by these numbers). The baseline of
 * each measure is the first sample of the same run; the summary gives growth
 * per hour.
 *
 * Writes `### long run` under `## local cloud` in docs/benchmarks.md (unless --no-write); with
 * --json, prints one JSON document on stdout (samples and table on stderr).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { type KinesisEngine, kinesisEngine } from '../local/emulators.ts';
import { REPO_ROOT } from '../local/runtime.ts';
import { childPids, cmdline } from '../test/support/procs.ts';

const opts = new Command()
  .option('--minutes <n>', 'how long to run', (v) => Number(v), 60)
  .option('--every <seconds>', 'seconds between samples', (v) => Number(v), 30)
  .option('--rate <n>', 'demo events per second (the local cloud default is 10)', '10')
  .option(
    '--clouds <list>',
    'local clouds to run side by side: <Kinesis emulator>[:as-shipped] (dynalite without its iterator fix)',
    'kinesalite,kinesalite:as-shipped',
  )
  .option('--no-write', 'do not update docs/benchmarks.md')
  .option('--json', 'print one JSON document on stdout (narration on stderr)')
  .parse(process.argv)
  .opts<{ minutes: number; every: number; rate: string; clouds: string; write: boolean; json?: boolean }>();
/** Report lines: stdout, or stderr when stdout holds the JSON document. */
const out = (...a: unknown[]) => (opts.json ? console.error(...a) : console.log(...a));
const variants = opts.clouds.split(',').map((c) => {
  const [engine, variant] = c.trim().split(':');
  if (variant !== undefined && variant !== 'as-shipped')
    throw new Error(`--clouds: a cloud is <Kinesis emulator>[:as-shipped], received "${c}"`);
  return { engine: kinesisEngine(engine as KinesisEngine), dynaliteAsShipped: variant === 'as-shipped' };
});

const rssMb = (pid: number): number => {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
};
const diskMb = (dir: string): number => {
  try {
    return Number(execFileSync('du', ['-sk', dir], { encoding: 'utf8' }).split('\t')[0]) / 1024;
  } catch {
    return Number.NaN;
  }
};

interface Sample {
  minute: number;
  cloudMb: number;
  kinesisMb: number;
  kinesisDiskMb: number;
  dynamoDiskMb: number;
  dynamoMb: number;
  s3Mb: number;
  postMs: number;
  queryMs: number;
  speedLagMs: number;
  events: number;
}

interface Cloud {
  engine: KinesisEngine;
  /** The engine, and whether dynalite runs as shipped. */
  label: string;
  dynaliteAsShipped: boolean;
  child: ChildProcess;
  exited: Promise<void>;
  dataDir: string;
  url: string;
  key: string;
  pids: { kinesis: number; dynamo: number; s3: number };
  samples: Sample[];
}

async function startCloud(engine: KinesisEngine, dynaliteAsShipped: boolean): Promise<Cloud> {
  const label = dynaliteAsShipped ? `${engine}, dynalite as shipped` : engine;
  const dataDir = mkdtempSync(join(tmpdir(), 'tandem-longrun-'));
  const child = spawn(
    process.execPath,
    [join(REPO_ROOT, 'bin/tandem.js'), 'local', '--port', '0', '--data-dir', dataDir, '--demo-rate', opts.rate],
    {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TANDEM_KINESIS_ENGINE: engine, TANDEM_DYNALITE_AS_SHIPPED: dynaliteAsShipped ? '1' : '0' },
    },
  );
  let out = '';
  let errText = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    errText = (errText + d.toString()).slice(-5000);
  });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  while (!/^API key:/m.test(out)) {
    if (child.exitCode !== null) throw new Error(`tandem local (${engine}) exited: ${errText}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const pids = childPids(child.pid!);
  const find = (re: RegExp) => pids.find((p) => re.test(cmdline(p))) ?? -1;
  return {
    engine,
    label,
    dynaliteAsShipped,
    child,
    exited,
    dataDir,
    url: /^API:\s+(\S+)/m.exec(out)![1]!,
    key: /^API key:\s+(\S+)/m.exec(out)![1]!,
    // By the script each runs (data directories are named alike, so never by the package name alone).
    pids: {
      kinesis: find(engine === 'kinesalite' ? /kinesalite\.cjs / : /kinesis-local\/main\.js/),
      dynamo: find(/dynalite\/cli\.js /),
      s3: find(/s3rver\/bin\/s3rver\.js /),
    },
    samples: [],
  };
}

async function sample(c: Cloud, t0: number, i: number): Promise<Sample> {
  const headers = { 'x-api-key': c.key, 'content-type': 'application/json' };
  const tPost = performance.now();
  await fetch(`${c.url}/events`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ id: `longrun-${i}`, type: 'probe', ts: new Date().toISOString() }),
  });
  const postMs = performance.now() - tPost;
  const tQuery = performance.now();
  const q = (await (
    await fetch(`${c.url}/views/events_by_type?grain=all&groupBy=&from=${encodeURIComponent(new Date(t0 - 6 * 3_600_000).toISOString())}`, {
      headers,
    })
  ).json()) as {
    rows?: { events?: number }[];
  };
  const queryMs = performance.now() - tQuery;
  const status = (await (await fetch(`${c.url}/status`, { headers })).json()) as { speed?: { shards?: { lagMs?: number }[] } };
  return {
    minute: (Date.now() - t0) / 60_000,
    cloudMb: rssMb(c.child.pid!),
    kinesisMb: rssMb(c.pids.kinesis),
    kinesisDiskMb: diskMb(join(c.dataDir, 'kinesis')),
    dynamoDiskMb: diskMb(join(c.dataDir, 'dynamodb')),
    dynamoMb: rssMb(c.pids.dynamo),
    s3Mb: rssMb(c.pids.s3),
    postMs,
    queryMs,
    speedLagMs: Math.max(0, ...(status.speed?.shards ?? []).map((s) => s.lagMs ?? 0)),
    events: q.rows?.[0]?.events ?? 0,
  };
}

const clouds: Cloud[] = [];
try {
  for (const v of variants) clouds.push(await startCloud(v.engine, v.dynaliteAsShipped));
  const t0 = Date.now();
  const end = t0 + opts.minutes * 60_000;
  for (let i = 0; ; i++) {
    for (const c of clouds) {
      const x = await sample(c, t0, i);
      c.samples.push(x);
      out(
        `${x.minute.toFixed(1).padStart(6)} min  ${c.label.padEnd(34)} cloud ${x.cloudMb.toFixed(0)} MB  ` +
          `${c.engine} ${x.kinesisMb.toFixed(0)} MB (disk ${x.kinesisDiskMb.toFixed(0)} MB)  ` +
          `dynalite ${x.dynamoMb.toFixed(0)} MB (disk ${x.dynamoDiskMb.toFixed(0)} MB)  ` +
          `s3rver ${x.s3Mb.toFixed(0)} MB  POST ${x.postMs.toFixed(0)} ms  ` +
          `query ${x.queryMs.toFixed(0)} ms  speed lag ${x.speedLagMs} ms  events ${x.events}`,
      );
    }
    if (Date.now() >= end) break;
    await new Promise((r) => setTimeout(r, Math.min(opts.every * 1000, Math.max(0, end - Date.now()))));
  }
} finally {
  for (const c of clouds) c.child.kill('SIGINT');
  for (const c of clouds) {
    await c.exited;
    rmSync(c.dataDir, { recursive: true, force: true });
  }
}

const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
/** Rounded for the JSON document; a ratio over a start of 0 stays null there (JSON has no Infinity or NaN). */
const round1 = (x: number) => Number(x.toFixed(1));
const round3 = (x: number) => Number(x.toFixed(3));
interface Measure {
  start: number;
  end: number;
  growthPerHour: number;
  endOverStart: number;
}
const summaries: {
  label: string;
  engine: KinesisEngine;
  dynaliteAsShipped: boolean;
  sampleCount: number;
  minutes: number;
  measures: Record<string, Measure>;
  eventsCounted: number;
}[] = [];
const sideBySide = `${clouds.length} \`tandem local\` side by side (${clouds.map((c) => c.label).join('; ')}),`;
const lines = [
  '### long run',
  '',
  `\`npm run bench -- longrun --minutes ${opts.minutes}\` (bench/longrun.ts): ` +
    `${clouds.length === 1 ? '`tandem local`' : sideBySide} ` +
    `with the demo at ${opts.rate} events/s for ${clouds[0]!.samples.at(-1)!.minute.toFixed(0)} minutes, ` +
    `a sample every ${opts.every} s; ` +
    `baseline = the start of the same run. ` +
    `Latencies are the mean of the first and of the last quarter of the samples (single probes are noisy).`,
  '',
  '| local cloud | measure | start | end | growth | end / start |',
  '|---|---|---:|---:|---:|---:|',
];
for (const c of clouds) {
  const samples = c.samples;
  const first = samples[0]!;
  const last = samples[samples.length - 1]!;
  const hours = Math.max(1e-9, (last.minute - first.minute) / 60);
  const quarter = Math.max(1, Math.floor(samples.length / 4));
  const head = samples.slice(0, quarter);
  const tail = samples.slice(-quarter);
  const measures: Record<string, Measure> = {};
  /** `key` names the measure in the JSON document (its unit is in the key: Mb, Ms). */
  const row = (key: string, name: string, a: number, b: number, unit: string) => {
    measures[key] = { start: round1(a), end: round1(b), growthPerHour: round1((b - a) / hours), endOverStart: round3(b / a) };
    lines.push(
      `| ${c.label} | ${name} | ${a.toFixed(0)} ${unit} | ${b.toFixed(0)} ${unit} | ` +
        `${((b - a) / hours).toFixed(0)} ${unit}/h | ${(b / a).toFixed(2)}x |`,
    );
  };
  row('kinesisRssMb', `${c.engine} RSS`, first.kinesisMb, last.kinesisMb, 'MB');
  row('kinesisDiskMb', `${c.engine} data on disk`, first.kinesisDiskMb, last.kinesisDiskMb, 'MB');
  row('cloudRssMb', 'local cloud process RSS (handlers, ESM, HTTP)', first.cloudMb, last.cloudMb, 'MB');
  row('dynaliteRssMb', 'dynalite RSS', first.dynamoMb, last.dynamoMb, 'MB');
  row('dynaliteDiskMb', 'dynalite data on disk', first.dynamoDiskMb, last.dynamoDiskMb, 'MB');
  row('s3rverRssMb', 's3rver RSS', first.s3Mb, last.s3Mb, 'MB');
  row('postEventMs', 'POST /events of 1 event (ingest + PutRecords)', avg(head.map((s) => s.postMs)), avg(tail.map((s) => s.postMs)), 'ms');
  row('queryMs', 'GET /views/events_by_type', avg(head.map((s) => s.queryMs)), avg(tail.map((s) => s.queryMs)), 'ms');
  row('speedLagMs', 'speed-layer lag', avg(head.map((s) => s.speedLagMs)), avg(tail.map((s) => s.speedLagMs)), 'ms');
  lines.push(`| ${c.label} | events counted by the end | | ${last.events.toLocaleString('en-US')} | | |`);
  summaries.push({
    label: c.label,
    engine: c.engine,
    dynaliteAsShipped: c.dynaliteAsShipped,
    sampleCount: samples.length,
    minutes: round1(last.minute - first.minute),
    measures,
    eventsCounted: last.events,
  });
}
out(lines.join('\n'));
if (opts.json)
  console.log(
    JSON.stringify({
      minutes: opts.minutes,
      everySeconds: opts.every,
      rate: Number(opts.rate),
      minutesRun: round1(clouds[0]!.samples.at(-1)!.minute),
      clouds: summaries,
    }),
  );

if (opts.write) {
  const path = join(dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'benchmarks.md');
  const doc = readFileSync(path, 'utf8');
  const start = doc.search(/^## local cloud\s*$/m);
  const body = `${lines.join('\n')}\n`;
  let updated: string;
  if (start < 0) {
    updated = `${doc.trimEnd()}\n\n## local cloud\n\n${body}`;
  } else {
    const rest = doc.slice(start + 1).search(/^## /m);
    const end = rest >= 0 ? start + 1 + rest : doc.length;
    const section = doc.slice(start, end);
    const lr = section.search(/^### long run\s*$/m);
    const kept = (lr >= 0 ? section.slice(0, lr) : section).trimEnd();
    updated = `${doc.slice(0, start)}${kept}\n\n${body}${end < doc.length ? `\n${doc.slice(end)}` : ''}`;
  }
  writeFileSync(path, updated);
  console.error('wrote docs/benchmarks.md ### long run');
}
