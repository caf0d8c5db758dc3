/**
 * One shard of the mapping: a read loop (GetRecords ahead of the function, up
 * to a bound) and a process loop (batches by size, payload and batching
 * window, delivered with Lambda's retry, bisect, partial-failure and
 * record-age rules), the shard's checkpoint, and the waiters of `idle()`.
 */
import { GetRecordsCommand, GetShardIteratorCommand, type GetShardIteratorCommandInput } from '@aws-sdk/client-kinesis';
import { type KinesisEventSource, kinesisEventFactory } from '../../functions/adapters/kinesis-records.ts';
import { InvocationError } from '../runtime.ts';
import type { Checkpoints } from './checkpoints.ts';
import { type FailureObject, type FailureWriterHost, writeFailure } from './failures.ts';
import { checkBatchResponse, type Outcome } from './response.ts';
import { Signal } from './signal.ts';
import type { EventSourceMappingOptions, Rec, ShardState, ShardStats } from './types.ts';

/** Lambda's limit on an invocation payload: a batch never exceeds it. */
const MAX_PAYLOAD_BYTES = 6 * 1024 * 1024;
/** GetRecords' own maximum. */
export const MAX_GET_RECORDS = 10_000;

/** The mapping as its shard workers see it (mapping.ts). */
export interface MappingContext extends FailureWriterHost {
  readonly o: EventSourceMappingOptions;
  readonly checkpoints: Checkpoints;
  /** The `eventSourceARN`, role and region of the events. */
  readonly source: KinesisEventSource;
  readonly batchSize: number;
  readonly windowMs: number;
  readonly retryAttempts: number;
  readonly maxAgeMs: number;
  readonly pollMs: number;
  readonly backoffMs: number;
  isDone(shardId: string): boolean;
  refreshShards(): Promise<void>;
}

const cmpSeq = (a: string, b: string) => {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
};

const errorName = (e: unknown) => (e as { name?: string } | undefined)?.name ?? '';

interface IdleWaiter {
  readonly since: number;
  /** Sequence number to reach (null: nothing to reach), set once a read that began after `since` got to the tip. */
  target?: string | null;
  readonly resolve: () => void;
}

export class ShardWorker {
  state: ShardState = 'waiting-for-parent';
  private checkpoint: string | undefined;
  private checkpointArrival: number | undefined;
  private readonly buffer: (Rec & { readAt: number })[] = [];
  private lastRead: string | undefined;
  private ended = false;
  private inFlight: Rec[] | undefined;
  private millisBehind: number | undefined;
  private readonly recordsReady = new Signal();
  private readonly spaceReady = new Signal();
  private readonly waiters: IdleWaiter[] = [];
  private loops: Promise<void> | undefined;
  private readonly readAhead: number;
  /** When this shard's first LATEST iterator was taken. */
  private latestAt: number | undefined;
  private readonly counters = { batches: 0, records: 0, failures: 0, discarded: 0 };

  constructor(
    private readonly m: MappingContext,
    readonly id: string,
    private readonly parents: readonly string[],
    private readonly inFirstListing: boolean,
  ) {
    const saved = m.checkpoints.of(id);
    this.checkpoint = saved?.seq;
    this.checkpointArrival = saved?.arrival;
    if (saved?.done) this.state = 'done';
    // Read ahead of the function (each GetRecords call has a fixed cost: kinesalite reads 10,000
    // records in ~0.7 s in one call, ~1.2 s in 100 calls of 100; a call of kinesis-local cost about as
    // much for 100 records as for 10,000), but not without bound: what is buffered is re-read after a restart.
    this.readAhead = MAX_GET_RECORDS;
  }

  maybeStart(): void {
    if (this.state !== 'waiting-for-parent' || this.m.stopped) return;
    if (!this.parents.every((p) => this.m.isDone(p))) return;
    this.state = 'polling';
    this.loops = Promise.all([this.readLoop(), this.processLoop()]).then(
      () => undefined,
      (e) => this.m.log.error(`esm ${this.m.o.name} ${this.id}: poller stopped on an unexpected error`, e),
    );
  }

  private async iterator(): Promise<string | undefined> {
    const base = { StreamName: this.m.o.streamName, ShardId: this.id };
    let input: GetShardIteratorCommandInput;
    if (this.lastRead ?? this.checkpoint) {
      input = { ...base, ShardIteratorType: 'AFTER_SEQUENCE_NUMBER', StartingSequenceNumber: this.lastRead ?? this.checkpoint };
    } else if ((this.m.o.startingPosition ?? 'TRIM_HORIZON') === 'LATEST') {
      // A fresh mapping starts at the tip; after a restart (or for a shard born later) it
      // starts where the mapping was created, so records put while it was down are not skipped.
      // (A renewed iterator starts where the first LATEST one did, so nothing put meanwhile is skipped.)
      input =
        this.inFirstListing && this.latestAt === undefined
          ? { ...base, ShardIteratorType: 'LATEST' }
          : { ...base, ShardIteratorType: 'AT_TIMESTAMP', Timestamp: new Date(this.latestAt ?? this.m.checkpoints.createdAt) };
      this.latestAt ??= Date.now();
    } else {
      input = { ...base, ShardIteratorType: 'TRIM_HORIZON' };
    }
    try {
      return (await this.m.o.kinesis.send(new GetShardIteratorCommand(input))).ShardIterator;
    } catch (e) {
      if (
        input.ShardIteratorType !== 'AFTER_SEQUENCE_NUMBER' ||
        !['ResourceNotFoundException', 'InvalidArgumentException'].includes(errorName(e))
      )
        throw e;
      // The stream lost records we had checkpointed (kinesis-local, if chosen, persists on an
      // interval; kinesalite keeps every acknowledged put, so with it this is a safety net):
      // go back to the checkpoint's arrival time; the layers' idempotency absorbs the overlap.
      const at = new Date(Math.min(Date.now(), this.checkpointArrival ?? this.m.checkpoints.createdAt));
      this.m.log.warn(
        `esm ${this.m.o.name} ${this.id}: checkpoint ${input.StartingSequenceNumber} not found in the stream; ` +
          `resuming at ${at.toISOString()}`,
      );
      return (await this.m.o.kinesis.send(new GetShardIteratorCommand({ ...base, ShardIteratorType: 'AT_TIMESTAMP', Timestamp: at })))
        .ShardIterator;
    }
  }

  private async readLoop(): Promise<void> {
    let iterator: string | undefined;
    let failures = 0;
    while (!this.m.stopped) {
      try {
        iterator ??= await this.iterator();
        if (!iterator) {
          this.ended = true;
          break;
        }
        if (this.buffer.length >= this.readAhead) {
          await this.spaceReady.wait(1000);
          continue;
        }
        const startedAt = Date.now();
        const limit = Math.min(MAX_GET_RECORDS, this.readAhead - this.buffer.length);
        const r = await this.m.o.kinesis.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: limit }));
        failures = 0;
        const now = Date.now();
        for (const x of r.Records ?? []) {
          const data = Buffer.from(x.Data ?? new Uint8Array()).toString('base64');
          const rec = {
            seq: x.SequenceNumber!,
            partitionKey: x.PartitionKey ?? '',
            data,
            arrivalMs: x.ApproximateArrivalTimestamp?.getTime() ?? now,
            size: data.length + (x.PartitionKey?.length ?? 0) + 400,
            readAt: now,
          };
          this.buffer.push(rec);
          this.lastRead = rec.seq;
        }
        this.millisBehind = r.MillisBehindLatest;
        iterator = r.NextShardIterator;
        if (!iterator) this.ended = true;
        // Both emulators report MillisBehindLatest 0 even mid-shard (kinesalite always, except at the
        // end of a closed shard): a short read is the sign of the tip.
        const atTip = (r.Records?.length ?? 0) < limit || this.ended;
        if (atTip) this.reachedTip(startedAt);
        this.recordsReady.notify();
        if (this.ended) break;
        if (atTip) await this.m.sleep(this.m.pollMs);
      } catch (e) {
        if (this.m.stopped) break;
        if (errorName(e) === 'ExpiredIteratorException') {
          iterator = undefined;
          continue;
        }
        failures++;
        const level = failures > 3 ? 'error' : 'warn';
        this.m.log[level](`esm ${this.m.o.name} ${this.id}: GetRecords failed (${errorName(e)}), retrying`, e);
        iterator = errorName(e) === 'ProvisionedThroughputExceededException' ? iterator : undefined;
        await this.m.sleep(Math.min(5000, 100 * 2 ** failures));
      }
    }
    this.recordsReady.notify();
  }

  private reachedTip(startedAt: number): void {
    for (const w of this.waiters) if (w.target === undefined && startedAt >= w.since) w.target = this.lastRead ?? null;
    this.checkIdle();
  }

  private checkIdle(): void {
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i]!;
      const finished = this.state === 'done' || this.state === 'stopped';
      const reached =
        w.target !== undefined &&
        (w.target === null || (this.checkpoint !== undefined && cmpSeq(this.checkpoint, w.target) >= 0)) &&
        !(this.inFlight && w.target !== null && cmpSeq(this.inFlight[0]!.seq, w.target) <= 0);
      if (finished || reached) {
        this.waiters.splice(i, 1);
        w.resolve();
      }
    }
  }

  idle(since: number): Promise<void> {
    if (this.state === 'done' || this.state === 'stopped') return Promise.resolve();
    return new Promise((resolve) => {
      this.waiters.push({ since, resolve });
      this.checkIdle();
    });
  }

  /** Takes the next batch: up to batchSize records and at most Lambda's payload limit. */
  private take(): Rec[] {
    let bytes = 0;
    let n = 0;
    while (n < this.buffer.length && n < this.m.batchSize) {
      bytes += this.buffer[n]!.size;
      if (n > 0 && bytes > MAX_PAYLOAD_BYTES) break;
      n++;
    }
    const batch = this.buffer.splice(0, n);
    this.spaceReady.notify();
    return batch;
  }

  private async processLoop(): Promise<void> {
    while (!this.m.stopped) {
      if (this.buffer.length === 0) {
        if (this.ended) {
          this.finish();
          return;
        }
        await this.recordsReady.wait();
        continue;
      }
      if (this.m.windowMs > 0 && this.buffer.length < this.m.batchSize && !this.ended) {
        const deadline = this.buffer[0]!.readAt + this.m.windowMs;
        if (Date.now() < deadline) {
          await this.recordsReady.wait(deadline - Date.now());
          continue;
        }
      }
      const batch = this.take();
      this.inFlight = batch;
      try {
        await this.deliver(batch);
      } finally {
        this.inFlight = undefined;
        this.checkIdle();
      }
    }
  }

  private finish(): void {
    this.state = 'done';
    this.m.checkpoints.finish(this.id);
    this.checkIdle();
    // Children wait for this shard: look for them now rather than at the next refresh.
    this.m.refreshShards().catch((e) => this.m.log.warn(`esm ${this.m.o.name}: ListShards failed`, e));
  }

  private commit(r: Rec): void {
    this.checkpoint = r.seq;
    this.checkpointArrival = r.arrivalMs;
    this.m.checkpoints.commit(this.id, r.seq, r.arrivalMs);
    this.checkIdle();
  }

  /** Delivers one batch with Lambda's retry, bisect, partial-failure and record-age rules. */
  private async deliver(batch: Rec[]): Promise<void> {
    // A stack of pieces still to deliver, in shard order (the head is next).
    const pending: { records: Rec[]; retries: number; invokes: number }[] = [{ records: batch, retries: 0, invokes: 0 }];
    while (pending.length > 0) {
      if (this.m.stopped) return; // not checkpointed: delivered again after a restart
      const piece = pending[0]!;
      if (this.m.maxAgeMs >= 0) {
        const oldest = Date.now() - this.m.maxAgeMs;
        const expired = piece.records.findIndex((r) => r.arrivalMs >= oldest);
        const n = expired === -1 ? piece.records.length : expired;
        if (n > 0) {
          if (!(await this.discard(piece.records.slice(0, n), 'RecordAgeExceeded', piece.invokes, null))) return;
          piece.records = piece.records.slice(n);
          if (piece.records.length === 0) {
            pending.shift();
            continue;
          }
        }
      }
      const outcome = await this.invokeOnce(piece.records);
      piece.invokes++;
      if (outcome.kind === 'ok') {
        this.counters.records += piece.records.length;
        this.commit(piece.records[piece.records.length - 1]!);
        pending.shift();
        continue;
      }
      this.counters.failures++;
      let error: { type: string; message: string };
      if (outcome.kind === 'partial') {
        // Lambda restarts from the lowest failed sequence number: everything before it is done.
        if (outcome.index > 0) {
          this.counters.records += outcome.index;
          this.commit(piece.records[outcome.index - 1]!);
          piece.records = piece.records.slice(outcome.index);
        }
        error = {
          type: 'BatchItemFailures',
          message: `the function reported ${outcome.count} failed record(s), the first at ${piece.records[0]!.seq}`,
        };
      } else {
        error = outcome.error;
        if (this.m.o.bisectBatchOnError && piece.records.length > 1) {
          const mid = Math.ceil(piece.records.length / 2);
          pending.splice(
            0,
            1,
            { records: piece.records.slice(0, mid), retries: piece.retries, invokes: 0 },
            { records: piece.records.slice(mid), retries: piece.retries, invokes: 0 },
          );
          continue;
        }
      }
      if (this.m.retryAttempts >= 0 && piece.retries >= this.m.retryAttempts) {
        if (!(await this.discard(piece.records, 'RetryAttemptsExhausted', piece.invokes, error))) return;
        pending.shift();
        continue;
      }
      piece.retries++;
      this.m.log.warn(
        `esm ${this.m.o.name} ${this.id}: batch ${piece.records[0]!.seq}.. failed (${error.type}: ${error.message}); ` +
          `retry ${piece.retries}`,
      );
      await this.m.sleep(Math.min(5000, this.m.backoffMs * 2 ** (piece.retries - 1)));
    }
  }

  private async invokeOnce(records: Rec[]): Promise<Outcome> {
    this.counters.batches++;
    const event = kinesisEventFactory(
      records.map((r) => ({ shard: this.id, seq: r.seq, arrival: r.arrivalMs, partitionKey: r.partitionKey, data: r.data })),
      this.m.source,
    );
    let response: unknown;
    try {
      response = await this.m.o.invoke(event);
    } catch (e) {
      if (e instanceof InvocationError) return { kind: 'error', error: { type: e.errorType, message: e.errorMessage } };
      return { kind: 'error', error: { type: errorName(e) || 'Error', message: e instanceof Error ? e.message : String(e) } };
    }
    return this.m.o.reportBatchItemFailures ? checkBatchResponse(response, records) : { kind: 'ok' };
  }

  /** Sends records to the on-failure destination and moves the checkpoint past them; false when stopped first. */
  private async discard(
    records: Rec[],
    condition: FailureObject['condition'],
    invokes: number,
    error: FailureObject['error'],
  ): Promise<boolean> {
    const first = records[0]!;
    const last = records[records.length - 1]!;
    this.m.log.warn(
      `esm ${this.m.o.name} ${this.id}: ${condition}: discarding ${records.length} record(s) ` +
        `${first.seq}..${last.seq}${error ? ` (${error.type}: ${error.message})` : ''}`,
    );
    if (!(await writeFailure(this.m, this.id, records, condition, invokes, error))) return false;
    this.counters.discarded += records.length;
    this.commit(last);
    return true;
  }

  stats(): ShardStats {
    const oldest = this.inFlight?.[0] ?? this.buffer[0];
    const lag = oldest ? Math.max(0, Date.now() - oldest.arrivalMs) : 0;
    return {
      ...(this.checkpoint ? { checkpoint: this.checkpoint } : {}),
      ...(this.state === 'polling' ? { millisBehindLatest: Math.max(lag, this.millisBehind ?? 0) } : {}),
      ...this.counters,
      state: this.state,
    };
  }

  async stop(): Promise<void> {
    this.recordsReady.notify();
    this.spaceReady.notify();
    await this.loops;
    if (this.state !== 'done') this.state = 'stopped';
    this.checkIdle();
  }
}
