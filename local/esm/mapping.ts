/**
 * The mapping: validates the options, opens the checkpoint file, lists the
 * stream's shards (again every `shardRefreshMs`, and when a shard ends) and
 * runs one worker per shard, a child only once its parents are done.
 */
import { DescribeStreamSummaryCommand, ListShardsCommand, type Shard } from '@aws-sdk/client-kinesis';
import type { KinesisEventSource } from '../../functions/adapters/kinesis-records.ts';
import type { LogSink } from '../../functions/adapters/log.ts';
import { LOCAL_ACCOUNT } from '../runtime.ts';
import { Checkpoints } from './checkpoints.ts';
import { MAX_GET_RECORDS, type MappingContext, ShardWorker } from './shard-worker.ts';
import { Signal } from './signal.ts';
import type { EventSourceMapping, EventSourceMappingOptions, ShardStats } from './types.ts';

class Mapping implements EventSourceMapping, MappingContext {
  readonly batchSize: number;
  readonly windowMs: number;
  readonly retryAttempts: number;
  readonly maxAgeMs: number;
  readonly pollMs: number;
  readonly backoffMs: number;
  readonly log: LogSink;
  readonly checkpoints: Checkpoints;
  readonly shards = new Map<string, ShardWorker>();
  stopped = false;
  readonly stopSignal = new Signal();
  private refreshTimer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  /** True until the first shard listing of a mapping without a checkpoint file: those shards honour LATEST. */
  private fresh = false;
  streamArn = '';
  source!: KinesisEventSource;

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
    this.checkpoints = new Checkpoints(o.name, o.checkpointDir, this.log);
  }

  async start(): Promise<void> {
    const region = await this.o.kinesis.config.region();
    const d = await this.o.kinesis.send(new DescribeStreamSummaryCommand({ StreamName: this.o.streamName }));
    const s = d.StreamDescriptionSummary;
    if (!s?.StreamARN) throw new Error(`stream ${this.o.streamName} has no ARN`);
    this.streamArn = s.StreamARN;
    const stream = { name: this.o.streamName, arn: s.StreamARN, createdAt: s.StreamCreationTimestamp?.getTime() ?? 0 };
    this.source = { streamArn: s.StreamARN, roleArn: `arn:aws:iam::${LOCAL_ACCOUNT}:role/${this.o.name}-esm`, region };
    this.fresh = this.checkpoints.open(stream);
    await this.refreshShards();
    this.scheduleRefresh();
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

  sleep(ms: number): Promise<void> {
    return this.stopped ? Promise.resolve() : this.stopSignal.wait(ms);
  }
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
