/**
 * `tandem send [file|-]`: events from an NDJSON or JSON file (or stdin) to
 * POST /events in requests of at most 500, with progress on stderr and the
 * rejected events, with their reasons, in a file.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import type { ErrorBody, EventsAnswer, EventsRefused } from '../../functions/contract/api.ts';
import { type ApiClient, ApiError, sleep, UnreachableError } from '../client.ts';
import { checkFile, type Item, type Rejection, RejectsFile, readEvents } from '../events.ts';
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

/** The contract's limit on events per request. */
const MAX_BATCH = 500;
/** Attempts per request when the API is briefly unavailable (503, 429, 502, 504, network). */
const ATTEMPTS = 6;

interface SendFlags extends TargetFlags {
  readonly rejected: string;
  readonly batchSize: string;
  readonly concurrency: string;
  readonly json?: boolean;
}

interface PostResult {
  readonly accepted: number;
  readonly rejected: Rejection[];
}

export function registerSend(program: Command): void {
  const cmd = program
    .command('send')
    .description('send events (NDJSON, or a JSON array / {"events": [...]}) from a file or stdin to POST /events')
    .argument('[file]', 'file of events; "-" or nothing reads stdin')
    .option('--rejected <file>', 'where rejected events go, one JSON line each with their reasons', 'rejected.ndjson')
    .option('--batch-size <n>', `events per request (at most ${MAX_BATCH})`, String(MAX_BATCH))
    .option('--concurrency <n>', 'requests in flight', '2')
    .option('--json', 'print the summary as one JSON document')
    .addHelpText(
      'after',
      `
Events without an "id" get a random one before they are sent, so a retried request never counts twice.
Exit code: 0 when every event was accepted, 1 when any was rejected or the API failed, 2 on usage errors.

Examples:
  tandem send events.ndjson
  generate-events | tandem send - --rejected bad.ndjson`,
    );
  withTarget(cmd);
  usageExits(cmd);
  cmd.action(action(async (file: string | undefined, flags: SendFlags) => send(file, flags)));
}

async function send(file: string | undefined, flags: SendFlags): Promise<void> {
  const batchSize = positiveInt('--batch-size', flags.batchSize);
  if (batchSize > MAX_BATCH) throw new UsageError(`--batch-size must be at most ${MAX_BATCH}, received ${batchSize}`);
  const concurrency = positiveInt('--concurrency', flags.concurrency);
  const fromStdin = file === undefined || file === '-';
  if (fromStdin && process.stdin.isTTY)
    throw new UsageError('give a file of events, or pipe them to stdin (tandem send - < events.ndjson)');
  let input: Readable;
  let expected = 0;
  if (fromStdin) {
    input = process.stdin;
  } else {
    checkFile(file);
    // The bar's total: lines of an NDJSON file (a one-line JSON document shows a counter instead).
    if (process.stderr.isTTY) expected = await countLines(file);
    input = createReadStream(file);
  }

  const client = clientFor(flags);
  const progress = new Progress(expected > 1 ? expected : 0);
  const rejectedFile = new RejectsFile(flags.rejected);
  const stats = { sent: 0, accepted: 0, rejected: 0 };
  const started = Date.now();
  const record = (r: PostResult, sent: number) => {
    stats.sent += sent;
    stats.accepted += r.accepted;
    stats.rejected += r.rejected.length;
    for (const rej of r.rejected) rejectedFile.write(rej);
    progress.update(stats);
  };

  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  const dispatch = async (batch: Item[]) => {
    // Lines that are not JSON never leave the machine; the rest go in one request.
    const unreadable: Rejection[] = batch
      .filter((i) => i.invalid !== undefined)
      .map((i) => ({ position: i.position, field: null, message: i.invalid!, event: i.event }));
    const readable = batch.filter((i) => i.invalid === undefined);
    const posted = readable.length > 0 ? await postBatch(client, readable) : { accepted: 0, rejected: [] };
    record({ accepted: posted.accepted, rejected: [...unreadable, ...posted.rejected] }, batch.length);
  };
  const launch = (batch: Item[]) => {
    const p: Promise<void> = dispatch(batch)
      .catch((e) => {
        failure ??= e;
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  };

  try {
    let batch: Item[] = [];
    for await (const item of readEvents(input)) {
      batch.push(item);
      if (batch.length < batchSize) continue;
      launch(batch);
      batch = [];
      while (inFlight.size >= concurrency) await Promise.race(inFlight);
      if (failure) break;
    }
    if (!failure && batch.length > 0) launch(batch);
    await Promise.all(inFlight);
  } finally {
    progress.stop(stats);
    await rejectedFile.close();
  }
  if (failure) {
    narrate(`tandem: ${(failure as Error).message}`);
    narrate(`tandem: stopped after ${stats.sent} events (${stats.accepted} accepted, ${stats.rejected} rejected)`);
    throw new ReportedFailure(EXIT_FAILURE);
  }

  const seconds = (Date.now() - started) / 1000;
  const summary = {
    sent: stats.sent,
    accepted: stats.accepted,
    rejected: stats.rejected,
    rejectedFile: stats.rejected > 0 ? flags.rejected : null,
    seconds: Number(seconds.toFixed(3)),
  };
  if (flags.json) printJson(summary);
  else
    process.stdout.write(
      `accepted ${stats.accepted} of ${stats.sent} events` +
        (stats.rejected > 0 ? `; ${stats.rejected} rejected (reasons in ${flags.rejected})` : '; none rejected') +
        ` in ${seconds.toFixed(1)} s\n`,
    );
  if (stats.rejected > 0) throw new ReportedFailure(EXIT_FAILURE);
}

/** An id for events that lack one, so that resending a request cannot count an event twice. */
function withId(event: unknown): unknown {
  if (event && typeof event === 'object' && !Array.isArray(event) && !('id' in event)) return { id: randomUUID(), ...event };
  return event;
}

/**
 * Posts one batch: 200/207 as the contract says; 400 rejects the batch with the
 * API's reasons; 413 halves the batch; 429/502/503/504 and network errors are
 * retried with backoff (safe: every event carries an id).
 */
async function postBatch(client: ApiClient, items: readonly Item[]): Promise<PostResult> {
  const events = items.map((i) => withId(i.event));
  for (let attempt = 1; ; attempt++) {
    try {
      // 200 and 207 answer EventsAnswer, a 400 EventsRefused (every event rejected) or a bare error (the body as a whole).
      const { status, body: sent } = await client.post<EventsAnswer | EventsRefused | ErrorBody>('/events', events, { accept: [400, 413] });
      // A body that is not JSON (a proxy's page) is kept as text by the client.
      const body = sent !== null && typeof sent === 'object' ? sent : { error: `rejected (${status})` };
      if (status === 413) {
        if (items.length === 1)
          return {
            accepted: 0,
            rejected: [
              {
                position: items[0]!.position,
                field: null,
                message: 'the event is larger than the API accepts (413)',
                event: items[0]!.event,
              },
            ],
          };
        const half = Math.ceil(items.length / 2);
        const [a, b] = [await postBatch(client, items.slice(0, half)), await postBatch(client, items.slice(half))];
        return { accepted: a.accepted + b.accepted, rejected: [...a.rejected, ...b.rejected] };
      }
      const listed = 'rejected' in body ? body.rejected : [];
      if ('error' in body && listed.length === 0) {
        const { error: message, field = null } = body;
        return { accepted: 0, rejected: items.map((i) => ({ position: i.position, field, message, event: i.event })) };
      }
      const rejected = listed.map((r) => {
        const item = items[r.index];
        return {
          position: item?.position ?? { index: r.index },
          field: r.field,
          message: r.message,
          event: item?.event,
        };
      });
      return { accepted: 'accepted' in body ? body.accepted : items.length - rejected.length, rejected };
    } catch (e) {
      const transient = e instanceof UnreachableError || (e instanceof ApiError && [429, 502, 503, 504].includes(e.status));
      if (!transient || attempt >= ATTEMPTS) throw e;
      await sleep(Math.min(8_000, 250 * 2 ** attempt));
    }
  }
}

interface Counts {
  readonly sent: number;
  readonly accepted: number;
  readonly rejected: number;
}

/** Lines in a file (newlines, plus an unterminated last line), read in chunks. */
async function countLines(file: string): Promise<number> {
  let lines = 0;
  let last = 10;
  for await (const chunk of createReadStream(file)) {
    const buf = chunk as Buffer;
    for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, i + 1)) lines++;
    if (buf.length > 0) last = buf[buf.length - 1]!;
  }
  return last === 10 ? lines : lines + 1;
}

/**
 * Progress on stderr: a cli-progress bar on a terminal (over the lines of a
 * file, or a counter for stdin), plain lines at most every two seconds otherwise.
 */
class Progress {
  private readonly bar: SingleBar | undefined;
  private readonly started = Date.now();
  private lastLine = 0;

  constructor(private readonly total: number) {
    if (process.stderr.isTTY) {
      const counts = '{sent} events sent | {rate} events/s | {rejected} rejected';
      this.bar = new SingleBar({
        format: total > 0 ? `{bar} {percentage}% | ${counts}` : counts,
        stream: process.stderr,
        hideCursor: true,
        clearOnComplete: false,
      });
      this.bar.start(Math.max(total, 1), 0, this.payload({ sent: 0, accepted: 0, rejected: 0 }));
    }
  }

  private rate(sent: number): number {
    const s = (Date.now() - this.started) / 1000;
    return s > 0 ? Math.round(sent / s) : 0;
  }

  private payload(c: Counts) {
    return { sent: c.sent, rejected: c.rejected, rate: this.rate(c.sent) };
  }

  update(c: Counts): void {
    if (this.bar) {
      if (c.sent > this.total && this.total > 0) this.bar.setTotal(c.sent);
      this.bar.update(this.total > 0 ? c.sent : 0, this.payload(c));
      return;
    }
    if (Date.now() - this.lastLine < 2_000) return;
    this.lastLine = Date.now();
    narrate(`sent ${c.sent} events (${c.accepted} accepted, ${c.rejected} rejected, ${this.rate(c.sent)} events/s)`);
  }

  stop(c: Counts): void {
    if (this.bar) {
      // Blank lines made the estimate high: end the bar full.
      if (this.total > 0) this.bar.setTotal(Math.max(c.sent, 1));
      this.bar.update(this.total > 0 ? c.sent : 0, this.payload(c));
      this.bar.stop();
    }
  }
}
