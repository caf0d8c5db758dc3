/**
 * `tandem backfill FILE...`: history files (NDJSON, gzip or not; `-` for stdin)
 * into the raw archive, validated as ingest validates (rejections with their
 * position and field in a file, as `tandem send`), then a batch run that
 * includes them (functions/archive/backfill.ts; docs/batch-layer.md, "Backfill").
 * An admin command: it writes the raw bucket and the control table directly,
 * with your AWS credentials or to the local cloud's emulators, and talks to the
 * HTTP API for the views and the batch run.
 */
import { createReadStream, readFileSync } from 'node:fs';
import { pipeline, Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import type { RunAnswer, StartRunAnswer, ViewsAnswer } from '../../functions/contract/api.ts';
import { parseViews, parseViewsJson, type View } from '../../functions/core/views.ts';
import { BUCKETS, localNames, TABLES } from '../../functions/resources.ts';
import { type ApiClient, readLocalEndpoints, sleep } from '../client.ts';
import { checkFile, RejectsFile, readEvents } from '../events.ts';
import {
  action,
  clientFor,
  EXIT_FAILURE,
  narrate,
  positiveInt,
  printJson,
  ReportedFailure,
  type TargetFlags,
  UsageError,
  usageExits,
  withTarget,
} from '../output.ts';

interface BackfillFlags extends TargetFlags {
  readonly rejected: string;
  readonly rawBucket?: string;
  readonly controlTable?: string;
  readonly views?: string;
  readonly batch: boolean;
  readonly claims: boolean;
  readonly wait?: boolean;
  readonly timeout: string;
  readonly json?: boolean;
}

export function registerBackfill(program: Command): void {
  const cmd = program
    .command('backfill')
    .description('archive history files of events (NDJSON, gzip or not) as the raw archive does, then run the batch over them')
    .argument('<files...>', 'files of events; "-" reads stdin')
    .option('--rejected <file>', 'where rejected events go, one JSON line each with their reasons', 'rejected.ndjson')
    .option('--raw-bucket <name>', `the raw archive bucket (env ${BUCKETS.raw.env}); the local cloud's when it runs`)
    .option('--control-table <name>', `the control table (env ${TABLES.control.env}); the local cloud's when it runs`)
    .option('--views <file>', 'validate against the views of this JSON file instead of asking the API (GET /views)')
    .option('--no-batch', 'do not start a batch run afterwards')
    .option('--no-claims', "do not register the events' ids with the speed layer (see below what it costs)")
    .option('--wait', 'wait for a batch run whose cutoff passes the backfill (its events then show in queries)')
    .option('--timeout <seconds>', 'give up waiting after this long', '900')
    .option('--json', 'print the summary as one JSON document')
    .addHelpText(
      'after',
      `
Every record gets one arrival time T (when the backfill starts writing); the events count in the batch
views from the first run whose cutoff passes T, and never in the speed layer. Running the same files again
adds nothing: the files' content names the backfill, and events without an "id" get one derived from it.

The ids are first registered with the speed layer (id sets of ~100 ids an item in the control table; T is
taken 15 s after), so that a live copy of one arriving within the dedup horizon after T is not counted by
the speed layer either. --no-claims skips that: for history whose ids cannot come in live again; if one
does, the speed layer counts it until the next batch run covers it (the batch views are exact either way).

Against the local cloud nothing is needed while \`tandem local\` runs on ./.tandem (else --data-dir).
Against AWS: your credentials, --raw-bucket and --control-table (the stack's outputs), --url and --api-key.
Exit code: 0 when every event was archived, 1 when any was rejected or something failed, 2 on usage errors.

Examples:
  tandem backfill examples/events.ndjson
  tandem backfill history-2024-*.ndjson.gz --wait
  zcat old.ndjson.gz | tandem backfill - --no-batch`,
    );
  withTarget(cmd);
  usageExits(cmd);
  cmd.action(action(async (files: string[], flags: BackfillFlags) => backfill(files, flags)));
}

/** Where to write: the bucket, the table and the clients' environment (flags, then env, then a running local cloud). */
function storeTarget(flags: BackfillFlags): {
  env: Record<string, string | undefined>;
  rawBucket: string;
  controlTable: string;
} {
  const env: Record<string, string | undefined> = { ...process.env };
  const named = flags.rawBucket ?? flags.controlTable ?? env[BUCKETS.raw.env] ?? env[TABLES.control.env];
  const overridden = Boolean(env.AWS_ENDPOINT_URL_DYNAMODB ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL);
  if (!named && !overridden) {
    const running = readLocalEndpoints(flags.dataDir);
    if (running) {
      // The emulators' environment (local/emulators.ts): s3rver accepts only its own access key.
      Object.assign(env, { AWS_ENDPOINT_URL_DYNAMODB: running.dynamodb, AWS_ENDPOINT_URL_S3: running.s3, AWS_REGION: 'us-east-1' });
      Object.assign(env, { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' });
      delete env.AWS_SESSION_TOKEN;
    }
  }
  const local = Boolean(env.AWS_ENDPOINT_URL_DYNAMODB ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL);
  if (local) {
    // Emulators check no signature (s3rver wants its own key), but the SDK wants credentials to sign with.
    env.AWS_ACCESS_KEY_ID ??= 'S3RVER';
    env.AWS_SECRET_ACCESS_KEY ??= 'S3RVER';
  }
  const names = localNames();
  const rawBucket = flags.rawBucket ?? env[BUCKETS.raw.env] ?? (local ? names[BUCKETS.raw.env] : undefined);
  const controlTable = flags.controlTable ?? env[TABLES.control.env] ?? (local ? names[TABLES.control.env] : undefined);
  if (!rawBucket || !controlTable) {
    throw new UsageError(
      'where to? pass --raw-bucket and --control-table ' +
        `(or set ${BUCKETS.raw.env} and ${TABLES.control.env}: the stack's outputs); ` +
        'for the local cloud, start it (tandem local) or pass --data-dir <its data dir>',
    );
  }
  return { env, rawBucket, controlTable };
}

/** An input file (or stdin) as text, gunzipped when it starts with gzip's magic bytes (1f 8b). */
async function openInput(file: string): Promise<Readable> {
  const raw: Readable = file === '-' ? process.stdin : createReadStream(file);
  const it = raw[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let head = Buffer.alloc(0);
  let ended = false;
  while (head.length < 2) {
    const n = await it.next();
    if (n.done) {
      ended = true;
      break;
    }
    head = Buffer.concat([head, n.value]);
  }
  async function* rest(): AsyncGenerator<Buffer> {
    if (head.length > 0) yield head;
    if (ended) return;
    for (let n = await it.next(); !n.done; n = await it.next()) yield n.value;
  }
  const body = Readable.from(rest());
  if (head[0] !== 0x1f || head[1] !== 0x8b) return body;
  // pipeline destroys the gunzip stream with the error of either side, so the reader sees it.
  return pipeline(body, createGunzip(), () => {});
}

async function* inputs(files: readonly string[]) {
  for (const file of files) {
    const shown = file === '-' ? 'stdin' : file;
    try {
      for await (const item of readEvents(await openInput(file))) {
        yield {
          position: 'line' in item.position ? { file: shown, line: item.position.line } : { index: item.position.index },
          event: item.event,
          ...(item.invalid !== undefined && { invalid: item.invalid }),
        };
      }
    } catch (e) {
      throw new Error(`reading ${shown}: ${(e as Error).message}`);
    }
  }
}

async function viewsFor(flags: BackfillFlags, client: () => ApiClient): Promise<View[]> {
  if (flags.views) {
    let text: string;
    try {
      text = readFileSync(flags.views, 'utf8');
    } catch (e) {
      throw new UsageError(`cannot read ${flags.views}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    try {
      return parseViewsJson(text);
    } catch (e) {
      throw new UsageError(`--views ${flags.views}: ${(e as Error).message}`);
    }
  }
  const { body } = await client().get<ViewsAnswer>('/views');
  return parseViews(body.views);
}

async function backfill(files: string[], flags: BackfillFlags): Promise<void> {
  const timeoutMs = positiveInt('--timeout', flags.timeout) * 1000;
  if (files.filter((f) => f === '-').length > 1) throw new UsageError('"-" (stdin) can be given once');
  if (files.includes('-') && process.stdin.isTTY) throw new UsageError('pipe events to stdin for "-" (tandem backfill - < events.ndjson)');
  for (const f of files) if (f !== '-') checkFile(f);
  const target = storeTarget(flags);
  let api: ApiClient | undefined;
  const client = () => {
    api ??= clientFor(flags);
    return api;
  };
  const views = await viewsFor(flags, client);
  // Loaded here, not at the top: the AWS SDK would slow every other command's start.
  const { createClients } = await import('../../functions/adapters/clients.ts');
  const { runBackfill } = await import('../../functions/archive/backfill.ts');
  const local = Boolean(target.env.AWS_ENDPOINT_URL_DYNAMODB ?? target.env.AWS_ENDPOINT_URL_S3 ?? target.env.AWS_ENDPOINT_URL);
  const aws = createClients(local ? target.env : process.env);

  const rejectedFile = new RejectsFile(flags.rejected);
  const progress = new Progress();
  const started = Date.now();
  let summary: Awaited<ReturnType<typeof runBackfill>>;
  try {
    summary = await runBackfill(inputs(files), {
      s3: aws.s3,
      ddb: aws.dynamodb,
      rawBucket: target.rawBucket,
      controlTable: target.controlTable,
      // Live copies of these ids are then decided against the backfilled ones (docs/batch-layer.md, "Backfill").
      claims: flags.claims,
      views,
      onReject: (r) => rejectedFile.write(r),
      onProgress: (p) => progress.update(p),
    });
  } finally {
    progress.stop();
    await rejectedFile.close();
    aws.s3.destroy();
    aws.dynamodb.destroy();
  }
  const seconds = (Date.now() - started) / 1000;
  const arrival = summary.arrival === null ? null : new Date(summary.arrival).toISOString();

  let run: { id: string; state: string; cutoff: string | null; version: number | null } | null = null;
  let runFailed = false;
  if (flags.batch && summary.arrival !== null) {
    const r = await startRun(client(), summary.arrival, Boolean(flags.wait), timeoutMs);
    run = r.run;
    runFailed = r.failed;
  }

  const doc = {
    shard: summary.shard,
    arrival,
    outcome: summary.outcome,
    events: summary.events,
    accepted: summary.accepted,
    rejected: summary.rejected,
    rejectedFile: summary.rejected > 0 ? flags.rejected : null,
    objects: summary.objects,
    claims: summary.claims,
    idSets: summary.idSets,
    bytes: summary.bytes,
    seconds: Number(seconds.toFixed(3)),
    eventsPerSecond: seconds > 0 ? Math.round(summary.events / seconds) : null,
    run,
  };
  if (flags.json) printJson(doc);
  else {
    const what =
      summary.outcome === 'empty'
        ? 'nothing to archive'
        : summary.outcome === 'already-complete'
          ? `already archived as ${summary.shard} (arrival ${arrival}): nothing added`
          : `archived ${summary.accepted} events as ${summary.shard} in ${summary.objects} object(s), arrival ${arrival}` +
            (summary.outcome === 'resumed' ? ' (finished an interrupted backfill)' : '');
    process.stdout.write(
      `${what}; ${summary.events} read, ${summary.rejected} rejected` +
        (summary.rejected > 0 ? ` (reasons in ${flags.rejected})` : '') +
        ` in ${seconds.toFixed(1)} s\n`,
    );
    if (run) process.stdout.write(`batch run ${run.id}: ${run.state}${run.cutoff ? `, cutoff ${run.cutoff}` : ''}\n`);
  }
  if (summary.rejected > 0 || runFailed) throw new ReportedFailure(EXIT_FAILURE);
}

const FINAL = new Set(['SUCCEEDED', 'FAILED', 'SKIPPED']);

/**
 * Starts a batch run; with `wait`, follows runs until one publishes a cutoff past
 * T: a run started right away cuts at most at now less the margin, floored to
 * its window, so the first run usually ends below T and the next ones are tried.
 */
async function startRun(
  client: ApiClient,
  arrival: number,
  wait: boolean,
  timeoutMs: number,
): Promise<{ run: { id: string; state: string; cutoff: string | null; version: number | null }; failed: boolean }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { body: started } = await client.post<StartRunAnswer>('/batch/runs', {});
    if (!wait) {
      narrate(
        `batch run ${started.id} started; the backfill counts from the first run whose cutoff passes ${new Date(arrival).toISOString()}`,
      );
      return { run: { id: started.id, state: started.state, cutoff: null, version: null }, failed: false };
    }
    let run: RunAnswer;
    for (;;) {
      ({ body: run } = await client.get<RunAnswer>(`/batch/runs/${encodeURIComponent(started.id)}`));
      if (FINAL.has(run.state) || Date.now() > deadline) break;
      await sleep(500);
    }
    const summary = { id: run.id, state: run.state, cutoff: run.cutoff, version: run.version };
    if (run.state === 'FAILED') {
      narrate(`tandem: batch run ${run.id} failed: ${run.error ?? 'unknown error'}`);
      return { run: summary, failed: true };
    }
    if (run.state === 'SUCCEEDED' && run.cutoff !== null && Date.parse(run.cutoff) > arrival) {
      narrate(`batch run ${run.id} published version ${run.version}, cutoff ${run.cutoff}: the backfill counts`);
      return { run: summary, failed: false };
    }
    if (Date.now() > deadline) {
      narrate(`tandem: no batch run passed ${new Date(arrival).toISOString()} within the timeout; scheduled runs will`);
      return { run: summary, failed: true };
    }
    narrate(`batch run ${run.id}: ${run.state}${run.cutoff ? `, cutoff ${run.cutoff}` : ''}; waiting for a cutoff past the backfill`);
    await sleep(5_000);
  }
}

/** Progress on stderr: a bar on a terminal (validation counts, then records written), plain lines every two seconds otherwise. */
class Progress {
  private readonly started = Date.now();
  private bar: SingleBar | undefined;
  private phase: string | undefined;
  private lastLine = 0;

  update(p: { phase: 'validate' | 'write'; done: number; total?: number; accepted: number; rejected: number }): void {
    const rate = Math.round(p.done / Math.max(0.001, (Date.now() - this.started) / 1000));
    if (process.stderr.isTTY) {
      if (this.phase !== p.phase) {
        this.bar?.stop();
        this.phase = p.phase;
        this.bar = new SingleBar({
          format:
            p.phase === 'validate'
              ? 'validating {done} events | {rejected} rejected | {rate} events/s'
              : '{bar} {percentage}% | {done} of {total} records written',
          stream: process.stderr,
          hideCursor: true,
          clearOnComplete: false,
        });
        this.bar.start(Math.max(1, p.total ?? 1), 0, { done: 0, rejected: 0, rate: 0 });
      }
      this.bar!.update(p.phase === 'write' ? p.done : 0, { done: p.done, rejected: p.rejected, rate });
      return;
    }
    if (Date.now() - this.lastLine < 2_000) return;
    this.lastLine = Date.now();
    narrate(
      p.phase === 'validate'
        ? `validated ${p.done} events (${p.rejected} rejected, ${rate} events/s)`
        : `wrote ${p.done} of ${p.total} records`,
    );
  }

  stop(): void {
    this.bar?.stop();
  }
}
