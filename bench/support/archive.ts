/**
 * Shared by the batch benchmarks: a provisioned world's Config, the real
 * archive handler, and a feeder that hands it records as synthetic Kinesis
 * events, batched per shard as the event source mapping would (millions of
 * records through the Kinesis emulator would take minutes to put, and the
 * stream is not what these benchmarks measure).
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import type { Clients } from '../../functions/adapters/clients.ts';
import { kinesisEventFactory, kinesisSource } from '../../functions/adapters/kinesis-records.ts';
import { createArchiveHandler } from '../../functions/archive/handler.ts';
import type { Config } from '../../functions/config.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { DEFAULT_SETTINGS } from '../../functions/core/settings.ts';
import { STREAM } from '../../functions/resources.ts';

/** A realistic Kinesis sequence number to count up from. */
export const SEQ0 = 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898n;
export const shardId = (i: number) => `shardId-${String(i).padStart(12, '0')}`;

/** The shard of an id (the partition key is the id, so every copy of an id is on one shard). */
export function hashShard(id: string, shards: number): number {
  let h = 0;
  for (let i = 0; i < id.length; i++) h = (h * 31 + id.charCodeAt(i)) >>> 0;
  return h % shards;
}

/** Every file under a directory. */
export function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

/** The Config of a world provisioned under `names` (local/provision.ts), with the demo views. */
export function benchConfig(names: Readonly<Record<string, string>>): Config {
  return {
    streamName: names[STREAM.env]!,
    tables: {
      speed: names.TANDEM_SPEED_TABLE!,
      dedup: names.TANDEM_DEDUP_TABLE!,
      batchViews: names.TANDEM_BATCH_VIEWS_TABLE!,
      control: names.TANDEM_CONTROL_TABLE!,
    },
    buckets: { raw: names.TANDEM_RAW_BUCKET!, failures: names.TANDEM_FAILURE_BUCKET! },
    views: DEMO_VIEWS,
    settings: DEFAULT_SETTINGS,
  };
}

interface Pending {
  readonly arrival: number;
  readonly seq: string;
  /** Base64 of the record's bytes, as the event carries it. */
  readonly data: string;
}

const SOURCE = kinesisSource({ account: '000000000000', region: 'us-east-1', stream: 'tandem-events', role: 'tandem-archive' });

/**
 * Feeds records to the real archive handler (silent logger, metrics off) in
 * batches of `batchSize` per shard. Sequence numbers grow per shard across
 * every call, so one feeder can archive a history and, later, its increment.
 */
export class ArchiveFeeder {
  /** Records handed to the archive so far. */
  records = 0;
  private readonly archive: ReturnType<typeof createArchiveHandler>;
  private readonly pending: Pending[][];
  private readonly seqs: bigint[];

  constructor(
    clients: Pick<Clients, 's3' | 'dynamodb'>,
    config: Config,
    private readonly shards: number,
    private readonly batchSize: number,
    /**
     * Archive a shard's batch early once its arrivals span this long: the handler writes one
     * object per arrival hour of a batch at once, and a batch spanning days (a slow, long
     * history) opens hundreds of connections to s3rver. A real batch spans minutes.
     */
    private readonly maxSpanMs = Number.POSITIVE_INFINITY,
  ) {
    process.env.POWERTOOLS_METRICS_DISABLED = 'true';
    this.archive = createArchiveHandler({
      s3: clients.s3,
      ddb: clients.dynamodb,
      rawBucket: config.buckets.raw,
      failureBucket: config.buckets.failures,
      controlTable: config.tables.control,
      logger: new Logger({ logLevel: process.env.TANDEM_BENCH_LOG ? 'ERROR' : 'SILENT' }),
      metrics: new Metrics({ namespace: 'TandemBench' }),
    });
    this.pending = Array.from({ length: shards }, () => []);
    this.seqs = Array.from({ length: shards }, () => 0n);
  }

  /** Queues one event (any JSON object with an `id`) arriving at `arrival` ms; archives its shard's batch when full. */
  async add(event: { readonly id: string }, arrival: number): Promise<void> {
    const s = hashShard(event.id, this.shards);
    const first = this.pending[s]![0];
    if (first && arrival - first.arrival >= this.maxSpanMs) await this.flushShard(s);
    this.seqs[s] = this.seqs[s]! + 1n;
    this.pending[s]!.push({
      arrival,
      seq: String(SEQ0 + this.seqs[s]! * 1_000_003n),
      data: Buffer.from(JSON.stringify(event)).toString('base64'),
    });
    this.records++;
    if (this.pending[s]!.length >= this.batchSize) await this.flushShard(s);
  }

  /** Archives every queued record. */
  async flush(): Promise<void> {
    for (let s = 0; s < this.shards; s++) await this.flushShard(s);
  }

  private async flushShard(s: number): Promise<void> {
    const batch = this.pending[s]!;
    if (batch.length === 0) return;
    this.pending[s] = [];
    const shard = shardId(s);
    const event = kinesisEventFactory(
      batch.map((r) => ({ shard, ...r })),
      SOURCE,
    );
    // As the event source mapping does: a failed batch comes back whole (same keys, so harmless: invariant 6).
    // On a loaded machine an emulator call can time out now and then.
    for (let attempt = 1; ; attempt++) {
      const out = await this.archive(event);
      if (out.batchItemFailures.length === 0) return;
      if (attempt === 3) throw new Error(`archive batch of ${shard} failed ${attempt} times`);
      await new Promise((r) => setTimeout(r, 1000 * attempt));
    }
  }
}
