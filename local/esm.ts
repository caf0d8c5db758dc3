/**
 * The Kinesis event source mapping of the local cloud: polls every shard of a
 * stream and invokes a function with Lambda's Kinesis events, keeping the
 * semantics of a Lambda event source mapping (docs/local-cloud.md has the
 * table of what matches AWS and what differs):
 *
 * - one poller per shard, records in order, one batch in flight per shard
 *   (ParallelizationFactor 1); closed parents are drained before their children;
 * - `batchSize`, `maxBatchingWindowMs` (and Lambda's 6 MB payload cap);
 * - starting position TRIM_HORIZON or LATEST; the checkpoint (last processed
 *   sequence number per shard) is persisted, so a restart resumes after it;
 * - `bisectBatchOnError` (a split does not count as a retry), ReportBatchItemFailures
 *   (retry from the lowest reported sequence number; an invalid response fails
 *   the whole batch), `retryAttempts`, `maxRecordAgeSeconds`;
 * - after retries are exhausted or records expire, the batch is written to the
 *   on-failure destination (an S3 object) and the shard moves on.
 *
 * Written by hand because nothing on npm polls Kinesis with Lambda's
 * semantics: the KCL is Java, and kinesis consumers on npm have no
 * bisect/partial-failure/destination behaviour.
 */

import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DescribeStreamSummaryCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  type GetShardIteratorCommandInput,
  type KinesisClient,
  ListShardsCommand,
  type Shard,
} from '@aws-sdk/client-kinesis';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { KinesisStreamEvent, KinesisStreamRecord } from 'aws-lambda';
import { FAILURE_PREFIX } from '../functions/resources.ts';
import { InvocationError, LOCAL_ACCOUNT } from './runtime.ts';

export interface EsmLogger {
  info(message: string, ...extra: unknown[]): void;
  warn(message: string, ...extra: unknown[]): void;
  error(message: string, ...extra: unknown[]): void;
  debug?(message: string, ...extra: unknown[]): void;
}

export type StartingPosition = 'TRIM_HORIZON' | 'LATEST';

export interface EventSourceMappingOptions {
  /** Mapping name: names the checkpoint file and the failure objects. */
  readonly name: string;
  readonly kinesis: KinesisClient;
  readonly streamName: string;
  /**
   * One synchronous invocation of the function (e.g. LocalFunction.invoke), typed
   * `Promise<KinesisStreamBatchResponse | void>` by handlers; the response is checked
   * at run time (an invalid one fails the batch). A rejection is a function error.
   */
  readonly invoke: (event: KinesisStreamEvent) => Promise<unknown>;
  /** Most records in one event (1..10,000). @default 100 */
  readonly batchSize?: number;
  /** How long to gather records before invoking with a short batch (0..300,000 ms). @default 0 */
  readonly maxBatchingWindowMs?: number;
  /** Where a shard without a checkpoint starts. @default 'TRIM_HORIZON' */
  readonly startingPosition?: StartingPosition;
  /** Split a failed batch in two and retry each half (splits do not count as retries). @default false */
  readonly bisectBatchOnError?: boolean;
  /** Honour `batchItemFailures` in the function's response. @default false (the response is ignored, as in AWS) */
  readonly reportBatchItemFailures?: boolean;
  /** Retries after a failed invocation before the records are discarded; -1 = until the records expire. @default 2 (AWS: -1) */
  readonly retryAttempts?: number;
  /** Records older than this (by arrival) are discarded instead of invoked; -1 = never. @default 3600 (AWS: -1; AWS's minimum is 60) */
  readonly maxRecordAgeSeconds?: number;
  /** Where discarded batches go. @default - discarded records are only logged */
  readonly onFailure?: { readonly s3: S3Client; readonly bucket: string; readonly prefix?: string };
  /** Directory of the checkpoint file `<name>.json`. @default - checkpoints live in memory only */
  readonly checkpointDir?: string;
  /** Sleep between GetRecords calls of a shard that is caught up. @default 250 */
  readonly pollIntervalMs?: number;
  /** How often the shard list is refreshed (new shards after a reshard). @default 5000 */
  readonly shardRefreshMs?: number;
  /** First delay between retries of a failed batch, doubled per retry up to 5 s. @default 200 */
  readonly retryBackoffMs?: number;
  readonly logger?: EsmLogger;
}

export interface ShardStats {
  /** Last processed (or discarded) sequence number. */
  checkpoint?: string;
  /** Age of the oldest record read but not yet processed, or GetRecords' MillisBehindLatest when larger. */
  millisBehindLatest?: number;
  /** Invocations made (including retries). */
  batches: number;
  /** Records the function processed successfully. */
  records: number;
  /** Failed invocations (errors, timeouts, invalid responses, partial failures). */
  failures: number;
  /** Records sent to the on-failure destination (or dropped when there is none). */
  discarded: number;
  state: ShardState;
}

export type ShardState = 'waiting-for-parent' | 'polling' | 'done' | 'stopped';

export interface EventSourceMapping {
  stop(): Promise<void>;
  /** Resolves when every shard has processed what the stream held when idle() was called, and no batch is in flight. */
  idle(): Promise<void>;
  stats(): { perShard: Record<string, ShardStats> };
}

/** What the on-failure destination object holds (JSON). */
export interface FailureObject {
  readonly version: '1.0';
  readonly timestamp: string;
  readonly mapping: string;
  readonly streamName: string;
  readonly streamArn: string;
  readonly shard: string;
  readonly firstSequenceNumber: string;
  readonly lastSequenceNumber: string;
  /** Why the records were discarded, in Lambda's words. */
  readonly condition: 'RetryAttemptsExhausted' | 'RecordAgeExceeded';
  readonly approximateInvokeCount: number;
  readonly error: { readonly type: string; readonly message: string } | null;
  /** The batch info Lambda sends to an on-failure destination. */
  readonly KinesisBatchInfo: {
    readonly shardId: string;
    readonly startSequenceNumber: string;
    readonly endSequenceNumber: string;
    readonly approximateArrivalOfFirstRecord: string;
    readonly approximateArrivalOfLastRecord: string;
    readonly batchSize: number;
    readonly streamArn: string;
  };
  readonly records: readonly {
    readonly sequenceNumber: string;
    readonly partitionKey: string;
    /** Base64, as in the Lambda event. */
    readonly data: string;
    /** Epoch seconds with fraction, as in the Lambda event. */
    readonly approximateArrivalTimestamp: number;
    readonly arrival: string;
  }[];
}

/** Lambda's limit on an invocation payload: a batch never exceeds it. */
const MAX_PAYLOAD_BYTES = 6 * 1024 * 1024;
/** GetRecords' own maximum. */
const MAX_GET_RECORDS = 10_000;

interface Rec {
  readonly seq: string;
  readonly partitionKey: string;
  /** Base64 data, encoded once at read time. */
  readonly data: string;
  readonly arrivalMs: number;
  /** Approximate bytes this record adds to the event JSON. */
  readonly size: number;
}

interface CheckpointFile {
  mapping: string;
  stream: { name: string; arn: string; createdAt: number };
  /** When the mapping was first created: a LATEST shard without a checkpoint restarts from here. */
  createdAt: number;
  shards: Record<string, { seq?: string; arrival?: number; done?: boolean }>;
}

const cmpSeq = (a: string, b: string) => {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
};

/** A wakeable wait: `wait(ms)` resolves on `notify()` or after `ms` (and then forgets the waiter). */
class Signal {
  private readonly waiters = new Set<() => void>();
  wait(ms?: number): Promise<void> {
    return new Promise((res) => {
      let t: NodeJS.Timeout | undefined;
      const done = () => {
        clearTimeout(t);
        this.waiters.delete(done);
        res();
      };
      this.waiters.add(done);
      if (ms !== undefined) t = setTimeout(done, Math.max(0, ms));
    });
  }
  notify(): void {
    for (const f of [...this.waiters]) f();
  }
}

const errorName = (e: unknown) => (e as { name?: string } | undefined)?.name ?? '';

export type Outcome =
  | { kind: 'ok' }
  | { kind: 'partial'; index: number; count: number }
  | { kind: 'error'; error: { type: string; message: string } };

class Mapping implements EventSourceMapping {
  readonly batchSize: number;
  readonly windowMs: number;
  readonly retryAttempts: number;
  readonly maxAgeMs: number;
  readonly pollMs: number;
  readonly backoffMs: number;
  readonly log: EsmLogger;
  readonly shards = new Map<string, ShardWorker>();
  stopped = false;
  readonly stopSignal = new Signal();
  private refreshTimer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  /** True until the first shard listing of a mapping without a checkpoint file: those shards honour LATEST. */
  private fresh = false;
  file!: CheckpointFile;
  streamArn = '';
  region = 'us-east-1';

  constructor(readonly o: EventSourceMappingOptions) {
    this.batchSize = o.batchSize ?? 100;
    this.windowMs = o.maxBatchingWindowMs ?? 0;
    this.retryAttempts = o.retryAttempts ?? 2;
    this.maxAgeMs = (o.maxRecordAgeSeconds ?? 3600) * 1000;
    this.pollMs = o.pollIntervalMs ?? 250;
    this.backoffMs = o.retryBackoffMs ?? 200;
    this.log = o.logger ?? { info: () => {}, warn: (m, ...x) => console.warn(m, ...x), error: (m, ...x) => console.error(m, ...x) };
    const int = (v: number, name: string, min: number, max: number) => {
      if (!Number.isInteger(v) || v < min || v > max)
        throw new RangeError(`${name} must be a whole number from ${min} to ${max}, received ${v}`);
    };
    int(this.batchSize, 'batchSize', 1, MAX_GET_RECORDS);
    int(this.windowMs, 'maxBatchingWindowMs', 0, 300_000);
    int(this.retryAttempts, 'retryAttempts', -1, 10_000);
    if (!(o.maxRecordAgeSeconds === undefined || o.maxRecordAgeSeconds === -1 || o.maxRecordAgeSeconds > 0)) {
      throw new RangeError(`maxRecordAgeSeconds must be -1 or positive, received ${o.maxRecordAgeSeconds}`);
    }
    if (!/^[A-Za-z0-9_.-]+$/.test(o.name)) throw new RangeError(`mapping name must be letters, digits, _ . -, received "${o.name}"`);
  }

  get checkpointPath(): string | undefined {
    return this.o.checkpointDir ? join(this.o.checkpointDir, `${this.o.name}.json`) : undefined;
  }

  async start(): Promise<void> {
    this.region = await this.o.kinesis.config.region();
    const d = await this.o.kinesis.send(new DescribeStreamSummaryCommand({ StreamName: this.o.streamName }));
    const s = d.StreamDescriptionSummary;
    if (!s?.StreamARN) throw new Error(`stream ${this.o.streamName} has no ARN`);
    this.streamArn = s.StreamARN;
    const stream = { name: this.o.streamName, arn: s.StreamARN, createdAt: s.StreamCreationTimestamp?.getTime() ?? 0 };
    this.file = this.loadCheckpoints(stream);
    this.persist();
    await this.refreshShards();
    this.scheduleRefresh();
  }

  private loadCheckpoints(stream: CheckpointFile['stream']): CheckpointFile {
    const path = this.checkpointPath;
    const fresh = (): CheckpointFile => {
      this.fresh = true;
      return { mapping: this.o.name, stream, createdAt: Date.now(), shards: {} };
    };
    if (!path) return fresh();
    let f: CheckpointFile;
    try {
      f = JSON.parse(readFileSync(path, 'utf8')) as CheckpointFile;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
        this.log.warn(`esm ${this.o.name}: unreadable checkpoint file ${path}, starting afresh`, e);
      return fresh();
    }
    if (f.stream?.arn !== stream.arn || f.stream?.createdAt !== stream.createdAt) {
      // The stream was re-created (e.g. the emulator started without its data): old sequence numbers mean nothing.
      this.log.warn(`esm ${this.o.name}: stream ${stream.name} is not the one checkpointed in ${path}; starting afresh`);
      return fresh();
    }
    return f;
  }

  persist(): void {
    const path = this.checkpointPath;
    if (!path) return;
    mkdirSync(this.o.checkpointDir!, { recursive: true });
    // Write-then-rename: a crash mid-write never leaves a torn checkpoint.
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.file, null, 1));
    renameSync(tmp, path);
  }

  private scheduleRefresh(): void {
    if (this.stopped) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshShards()
        .catch((e) => this.log.warn(`esm ${this.o.name}: ListShards failed`, e))
        .finally(() => this.scheduleRefresh());
    }, this.o.shardRefreshMs ?? 5000);
  }

  /** Lists the shards and starts a worker for each new one. */
  refreshShards(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        const all: Shard[] = [];
        let token: string | undefined;
        do {
          const r = await this.o.kinesis.send(new ListShardsCommand(token ? { NextToken: token } : { StreamName: this.o.streamName }));
          all.push(...(r.Shards ?? []));
          token = r.NextToken;
        } while (token);
        const listed = new Set(all.map((s) => s.ShardId!));
        for (const s of all) {
          if (this.stopped || this.shards.has(s.ShardId!)) continue;
          const parents = [s.ParentShardId, s.AdjacentParentShardId].filter((p): p is string => !!p && listed.has(p));
          const w = new ShardWorker(this, s.ShardId!, parents, this.fresh);
          this.shards.set(s.ShardId!, w);
        }
        this.fresh = false;
        for (const w of this.shards.values()) w.maybeStart();
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  isDone(shardId: string): boolean {
    return this.shards.get(shardId)?.state === 'done';
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.refreshTimer);
    this.stopSignal.notify();
    await this.refreshing?.catch(() => undefined);
    await Promise.all([...this.shards.values()].map((w) => w.stop()));
  }

  async idle(): Promise<void> {
    if (this.stopped) return;
    const since = Date.now();
    await this.refreshShards();
    await Promise.all([...this.shards.values()].map((w) => w.idle(since)));
  }

  stats(): { perShard: Record<string, ShardStats> } {
    const perShard: Record<string, ShardStats> = {};
    for (const [id, w] of this.shards) perShard[id] = w.stats();
    return { perShard };
  }

  eventRecord(shardId: string, r: Rec): KinesisStreamRecord {
    return {
      kinesis: {
        kinesisSchemaVersion: '1.0',
        partitionKey: r.partitionKey,
        sequenceNumber: r.seq,
        data: r.data,
        approximateArrivalTimestamp: r.arrivalMs / 1000,
      },
      eventSource: 'aws:kinesis',
      eventVersion: '1.0',
      eventID: `${shardId}:${r.seq}`,
      eventName: 'aws:kinesis:record',
      invokeIdentityArn: `arn:aws:iam::${LOCAL_ACCOUNT}:role/${this.o.name}-esm`,
      awsRegion: this.region,
      eventSourceARN: this.streamArn,
    };
  }

  sleep(ms: number): Promise<void> {
    return this.stopped ? Promise.resolve() : this.stopSignal.wait(ms);
  }
}

interface IdleWaiter {
  readonly since: number;
  /** Sequence number to reach (null: nothing to reach), set once a read that began after `since` got to the tip. */
  target?: string | null;
  readonly resolve: () => void;
}

class ShardWorker {
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
    private readonly m: Mapping,
    readonly id: string,
    private readonly parents: readonly string[],
    private readonly inFirstListing: boolean,
  ) {
    const saved = m.file.shards[id];
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
          : { ...base, ShardIteratorType: 'AT_TIMESTAMP', Timestamp: new Date(this.latestAt ?? this.m.file.createdAt) };
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
      const at = new Date(Math.min(Date.now(), this.checkpointArrival ?? this.m.file.createdAt));
      this.m.log.warn(
        `esm ${this.m.o.name} ${this.id}: checkpoint ${input.StartingSequenceNumber} not found in the stream; resuming at ${at.toISOString()}`,
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
    this.m.file.shards[this.id] = { ...this.m.file.shards[this.id], done: true };
    this.m.persist();
    this.checkIdle();
    // Children wait for this shard: look for them now rather than at the next refresh.
    this.m.refreshShards().catch((e) => this.m.log.warn(`esm ${this.m.o.name}: ListShards failed`, e));
  }

  private commit(r: Rec): void {
    this.checkpoint = r.seq;
    this.checkpointArrival = r.arrivalMs;
    this.m.file.shards[this.id] = { seq: r.seq, arrival: r.arrivalMs };
    this.m.persist();
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
        `esm ${this.m.o.name} ${this.id}: batch ${piece.records[0]!.seq}.. failed (${error.type}: ${error.message}); retry ${piece.retries}`,
      );
      await this.m.sleep(Math.min(5000, this.m.backoffMs * 2 ** (piece.retries - 1)));
    }
  }

  private async invokeOnce(records: Rec[]): Promise<Outcome> {
    this.counters.batches++;
    const event: KinesisStreamEvent = { Records: records.map((r) => this.m.eventRecord(this.id, r)) };
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
      `esm ${this.m.o.name} ${this.id}: ${condition}: discarding ${records.length} record(s) ${first.seq}..${last.seq}${error ? ` (${error.type}: ${error.message})` : ''}`,
    );
    const dest = this.m.o.onFailure;
    if (dest) {
      const body: FailureObject = {
        version: '1.0',
        timestamp: new Date().toISOString(),
        mapping: this.m.o.name,
        streamName: this.m.o.streamName,
        streamArn: this.m.streamArn,
        shard: this.id,
        firstSequenceNumber: first.seq,
        lastSequenceNumber: last.seq,
        condition,
        approximateInvokeCount: invokes,
        error,
        KinesisBatchInfo: {
          shardId: this.id,
          startSequenceNumber: first.seq,
          endSequenceNumber: last.seq,
          approximateArrivalOfFirstRecord: new Date(first.arrivalMs).toISOString(),
          approximateArrivalOfLastRecord: new Date(last.arrivalMs).toISOString(),
          batchSize: records.length,
          streamArn: this.m.streamArn,
        },
        records: records.map((r) => ({
          sequenceNumber: r.seq,
          partitionKey: r.partitionKey,
          data: r.data,
          approximateArrivalTimestamp: r.arrivalMs / 1000,
          arrival: new Date(r.arrivalMs).toISOString(),
        })),
      };
      // Deterministic key: a retry after a crash overwrites the same object.
      const Key = `${dest.prefix ?? FAILURE_PREFIX}${this.m.o.name}/${this.id}/${first.seq}-${last.seq}.json`;
      for (let attempt = 1; ; attempt++) {
        if (this.m.stopped) return false;
        try {
          await dest.s3.send(
            new PutObjectCommand({ Bucket: dest.bucket, Key, Body: Buffer.from(JSON.stringify(body)), ContentType: 'application/json' }),
          );
          break;
        } catch (e) {
          // The shard must not move on before its records are safe in the destination.
          this.m.log.error(`esm ${this.m.o.name} ${this.id}: cannot write ${Key} to the on-failure destination (attempt ${attempt})`, e);
          await this.m.sleep(Math.min(5000, 200 * 2 ** attempt));
        }
      }
    }
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

/**
 * Lambda's rules for a ReportBatchItemFailures response: null, {}, or an
 * empty/null list are success; each failure must carry an `itemIdentifier`
 * that is a sequence number of the batch, else the whole batch failed.
 */
export function checkBatchResponse(response: unknown, records: readonly { seq: string }[]): Outcome {
  const invalid = (message: string): Outcome => ({ kind: 'error', error: { type: 'InvalidBatchItemFailuresResponse', message } });
  if (response === undefined || response === null) return { kind: 'ok' };
  if (typeof response !== 'object' || Array.isArray(response))
    return invalid(`the response must be an object, received ${JSON.stringify(response)}`);
  const list = (response as { batchItemFailures?: unknown }).batchItemFailures;
  if (list === undefined || list === null) return { kind: 'ok' };
  if (!Array.isArray(list)) return invalid('batchItemFailures must be a list');
  if (list.length === 0) return { kind: 'ok' };
  const index = new Map(records.map((r, i) => [r.seq, i]));
  let lowest = Number.POSITIVE_INFINITY;
  for (const f of list) {
    const id = (f as { itemIdentifier?: unknown } | null)?.itemIdentifier;
    if (typeof id !== 'string' || id === '')
      return invalid(`each batchItemFailures entry needs an itemIdentifier, received ${JSON.stringify(f)}`);
    const i = index.get(id);
    if (i === undefined) return invalid(`itemIdentifier ${id} is not a sequence number of this batch`);
    lowest = Math.min(lowest, i);
  }
  return { kind: 'partial', index: lowest, count: list.length };
}

/** Starts polling every shard of the stream; resolves once the shards are listed and the pollers run. */
export async function startEventSourceMapping(opts: EventSourceMappingOptions): Promise<EventSourceMapping> {
  const m = new Mapping(opts);
  try {
    await m.start();
  } catch (e) {
    await m.stop();
    throw e;
  }
  return m;
}
