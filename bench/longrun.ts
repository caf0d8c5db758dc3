/**
 * `npm run bench -- longrun --minutes 60`: leaves `tandem local` running with
 * its demo (as people leave `npm start` running for a day) and samples, every
 * `--every` seconds: the resident memory of the local cloud process and of
 * each emulator, the latency of one POST /events (ingest -> PutRecords into
 * kinesis-local) and of one query, and the speed layer's lag. The baseline is
 * the first sample of the same run; the summary gives growth per hour.
 *
 * Writes `### long run` under `## local cloud` in docs/benchmarks.md (unless --no-write).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { REPO_ROOT } from '../local/runtime.ts';
import { childPids, cmdline } from '../test/support/procs.ts';

const opts = new Command()
  .option('--minutes <n>', 'how long to run', (v) => Number(v), 60)
  .option('--every <seconds>', 'seconds between samples', (v) => Number(v), 30)
  .option('--rate <n>', 'demo events per second (the local cloud default is 10)', '10')
  .option('--no-write', 'do not update docs/benchmarks.md')
  .parse(process.argv)
  .opts<{ minutes: number; every: number; rate: string; write: boolean }>();

const rssMb = (pid: number): number => {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
};

interface Sample {
  minute: number;
  cloudMb: number;
  kinesisMb: number;
  dynamoMb: number;
  s3Mb: number;
  postMs: number;
  queryMs: number;
  speedLagMs: number;
  events: number;
}

const dataDir = mkdtempSync(join(tmpdir(), 'tandem-longrun-'));
const child = spawn(process.execPath, [join(REPO_ROOT, 'bin/tandem.js'), 'local', '--port', '0', '--data-dir', dataDir, '--demo-rate', opts.rate], {
  cwd: REPO_ROOT,
  stdio: ['ignore', 'pipe', 'pipe'],
});
let out = '';
let errText = '';
child.stdout!.on('data', (d: Buffer) => {
  out += d.toString();
});
child.stderr!.on('data', (d: Buffer) => {
  errText = (errText + d.toString()).slice(-5000);
});
const exited = new Promise<void>((res) => child.once('exit', () => res()));

const samples: Sample[] = [];
try {
  while (!/^API key:/m.test(out)) {
    if (child.exitCode !== null) throw new Error(`tandem local exited: ${errText}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const url = /^API:\s+(\S+)/m.exec(out)![1]!;
  const key = /^API key:\s+(\S+)/m.exec(out)![1]!;
  const pids = childPids(child.pid!);
  const find = (re: RegExp) => pids.find((p) => re.test(cmdline(p))) ?? -1;
  const kinesisPid = find(/kinesis-local/);
  const dynamoPid = find(/dynalite/);
  const s3Pid = find(/s3rver/);
  const t0 = Date.now();
  const end = t0 + opts.minutes * 60_000;
  const headers = { 'x-api-key': key, 'content-type': 'application/json' };
  for (let i = 0; ; i++) {
    const tPost = performance.now();
    await fetch(`${url}/events`, { method: 'POST', headers, body: JSON.stringify({ id: `longrun-${i}`, type: 'probe', ts: new Date().toISOString() }) });
    const postMs = performance.now() - tPost;
    const tQuery = performance.now();
    const q = (await (await fetch(`${url}/views/events_by_type?grain=all&groupBy=&from=${encodeURIComponent(new Date(t0 - 6 * 3_600_000).toISOString())}`, { headers })).json()) as {
      rows?: { events?: number }[];
    };
    const queryMs = performance.now() - tQuery;
    const status = (await (await fetch(`${url}/status`, { headers })).json()) as { speed?: { shards?: { lagMs?: number }[] } };
    const sample: Sample = {
      minute: (Date.now() - t0) / 60_000,
      cloudMb: rssMb(child.pid!),
      kinesisMb: rssMb(kinesisPid),
      dynamoMb: rssMb(dynamoPid),
      s3Mb: rssMb(s3Pid),
      postMs,
      queryMs,
      speedLagMs: Math.max(0, ...(status.speed?.shards ?? []).map((s) => s.lagMs ?? 0)),
      events: q.rows?.[0]?.events ?? 0,
    };
    samples.push(sample);
    console.log(
      `${sample.minute.toFixed(1).padStart(6)} min  cloud ${sample.cloudMb.toFixed(0)} MB  kinesis-local ${sample.kinesisMb.toFixed(0)} MB  dynalite ${sample.dynamoMb.toFixed(0)} MB  s3rver ${sample.s3Mb.toFixed(0)} MB  POST ${postMs.toFixed(0)} ms  query ${queryMs.toFixed(0)} ms  speed lag ${sample.speedLagMs} ms  events ${sample.events}`,
    );
    if (Date.now() >= end) break;
    await new Promise((r) => setTimeout(r, Math.min(opts.every * 1000, Math.max(0, end - Date.now()))));
  }
} finally {
  child.kill('SIGINT');
  await exited;
  rmSync(dataDir, { recursive: true, force: true });
}

const first = samples[0]!;
const last = samples[samples.length - 1]!;
const hours = Math.max(1e-9, (last.minute - first.minute) / 60);
const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
// Latency: the mean of the first and of the last quarter of the samples (single probes are noisy).
const quarter = Math.max(1, Math.floor(samples.length / 4));
const head = samples.slice(0, quarter);
const tail = samples.slice(-quarter);
const row = (name: string, a: number, b: number, unit: string) =>
  `| ${name} | ${a.toFixed(0)} ${unit} | ${b.toFixed(0)} ${unit} | ${((b - a) / hours).toFixed(0)} ${unit}/h | ${(b / a).toFixed(2)}x |`;
const lines = [
  '### long run',
  '',
  `\`npm run bench -- longrun --minutes ${opts.minutes}\` (bench/longrun.ts): \`tandem local\` with its demo at ${opts.rate} events/s for ${last.minute.toFixed(0)} minutes, ${samples.length} samples; baseline = the start of the same run. ${last.events.toLocaleString('en-US')} events counted by the end.`,
  '',
  '| measure | start | end | growth | end / start |',
  '|---|---:|---:|---:|---:|',
  row('kinesis-local RSS', first.kinesisMb, last.kinesisMb, 'MB'),
  row('local cloud process RSS (handlers, ESM, HTTP)', first.cloudMb, last.cloudMb, 'MB'),
  row('dynalite RSS', first.dynamoMb, last.dynamoMb, 'MB'),
  row('s3rver RSS', first.s3Mb, last.s3Mb, 'MB'),
  row('POST /events of 1 event (ingest + PutRecords), mean of first/last quarter', avg(head.map((s) => s.postMs)), avg(tail.map((s) => s.postMs)), 'ms'),
  row('GET /views/events_by_type, mean of first/last quarter', avg(head.map((s) => s.queryMs)), avg(tail.map((s) => s.queryMs)), 'ms'),
  row('speed-layer lag, mean of first/last quarter', avg(head.map((s) => s.speedLagMs)), avg(tail.map((s) => s.speedLagMs)), 'ms'),
];
console.log(lines.join('\n'));

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
