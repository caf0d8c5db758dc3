/**
 * The simulation's local cloud. It is assembled from the local cloud's own
 * parts exactly as local/cloud.ts assembles them (emulators as child
 * processes, provisioning, the Lambda runtime, the Kinesis event source
 * mappings with bisect, bounded retries, ReportBatchItemFailures and the
 * on-failure bucket, the API Gateway stand-in), with one difference: the
 * handlers are built with their factories (createSpeedHandler,
 * createArchiveHandler, createIngestHandler, createQueryHandler,
 * createBatchApiHandler) over clients wrapped by the fault seams of
 * faults.ts, where local/cloud.ts imports the handler modules, whose clients
 * live at module scope and cannot be wrapped.
 *
 * `SimCloud` owns the emulators (one set per process, data on disk so a
 * restart keeps it); a `World` is one seed's Tandem: its own stream, tables,
 * buckets and checkpoints (a fresh name prefix), torn down at the end.
 */

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger as PowertoolsLogger } from '@aws-lambda-powertools/logger';
import { DeleteTableCommand } from '@aws-sdk/client-dynamodb';
import {
  DeleteStreamCommand,
  DescribeStreamSummaryCommand,
  ListShardsCommand,
  MergeShardsCommand,
  PutRecordsCommand,
  type Shard,
  SplitShardCommand,
} from '@aws-sdk/client-kinesis';
import { type DynamoDBDocumentClient, GetCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { type Clients, createClients } from '../../functions/adapters/clients.ts';
import { exactDocClient } from '../../functions/api/read-view.ts';
import { createArchiveHandler } from '../../functions/archive.ts';
import type { RunItem } from '../../functions/batch/control.ts';
import { duckDbEngine } from '../../functions/batch/duckdb.ts';
import { type BatchOptions, runBatchToCompletion } from '../../functions/batch/pipeline.ts';
import { createBatchApiHandler } from '../../functions/batch-api.ts';
import type { Config } from '../../functions/config.ts';
import type { HandlerName } from '../../functions/contract/routes.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { DEFAULT_SETTINGS, type Settings } from '../../functions/core/settings.ts';
import { createIngestHandler } from '../../functions/ingest.ts';
import { createQueryHandler } from '../../functions/query.ts';
import { BUCKETS, FAILURE_PREFIX, localNames, STREAM, TABLES } from '../../functions/resources.ts';
import { ItemCache } from '../../functions/speed/apply.ts';
import { createSpeedHandler } from '../../functions/speed.ts';
import { type EmulatorSet, startEmulators } from '../../local/emulators.ts';
import { type EventSourceMapping, startEventSourceMapping } from '../../local/esm.ts';
import { type HttpServer, startHttpServer } from '../../local/http.ts';
import { provision } from '../../local/provision.ts';
import { type LocalFunction, wrapHandler } from '../../local/runtime.ts';
import { quietTelemetry } from '../support/speed.ts';
import { BatchFaults, IngestFaults, InvokeHook, Seam } from './faults.ts';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The consumers' Lambda timeout in the simulation (AWS: 120 s / 300 s) and how long a `timeout` fault holds its request. */
export const CONSUMER_TIMEOUT_S = Number(process.env.TANDEM_SIM_CONSUMER_TIMEOUT_S ?? 6);
const HOLD_MS = CONSUMER_TIMEOUT_S * 1000 + 500;

/** The batch lock lives this long without a refresh, so a crashed run blocks the next ones only briefly. */
export const LOCK_TTL_S = 4;

/** Arrival windows of 2 s and a 1 s cutoff margin: cutoffs advance many times within a short schedule. */
export const SIM_SETTINGS: Settings = { ...DEFAULT_SETTINGS, windowSeconds: 2, cutoffMarginSeconds: 1 };

export type Logger = (line: string) => void;

const text = (x: unknown): string =>
  x instanceof Error
    ? `${x.name}: ${x.message}${x.stack ? ` ${x.stack.split('\n').slice(1, 4).join(' |')}` : ''}`
    : typeof x === 'string'
      ? x
      : JSON.stringify(x, (_k, v) => (v instanceof Error ? text(v) : v));

/** A silent Powertools logger that keeps the handlers' warnings and errors for the log of a failing seed. */
class SinkLogger extends PowertoolsLogger {
  constructor(private readonly sink: (line: string) => void) {
    super({ serviceName: 'tandem-sim', logLevel: 'SILENT' });
  }
  override error(...args: Parameters<PowertoolsLogger['error']>): void {
    this.sink(`ERROR ${args.map(text).join(' ')}`);
  }
  override warn(...args: Parameters<PowertoolsLogger['warn']>): void {
    this.sink(`WARN ${args.map(text).join(' ')}`);
  }
}

export class SimError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SimError';
  }
}

/** The emulators, shared by every seed of a process; data on disk so a restart keeps it. */
export class SimCloud {
  restarts = 0;
  private constructor(
    readonly dataDir: string,
    public emulators: EmulatorSet,
  ) {}

  static async start(dataDir?: string): Promise<SimCloud> {
    // Powertools' EMF output and the SDK's Node 20 notice would flood the output.
    process.env.POWERTOOLS_METRICS_DISABLED = 'true';
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
    const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'tandem-sim-'));
    mkdirSync(dir, { recursive: true });
    return new SimCloud(dir, await startEmulators({ dataDir: join(dir, 'emulators') }));
  }

  get env(): Record<string, string> {
    return this.emulators.env;
  }

  /**
   * Stops every emulator and starts them again on their data. `hard`: SIGKILL,
   * at any moment (kinesalite writes each put to LevelDB before answering, so
   * nothing acknowledged may be lost: the driver checks it); else SIGTERM.
   */
  async restart(hard: boolean): Promise<void> {
    const e = this.emulators;
    if (hard) await Promise.all([e.kinesis.kill(), e.dynamodb.kill(), e.s3.kill()]);
    else await e.stop();
    this.emulators = await startEmulators({ dataDir: join(this.dataDir, 'emulators') });
    this.restarts++;
  }

  /** Before a seed: if an emulator died (or a restart of a failed seed left none running), starts them again. */
  async ensureUp(): Promise<void> {
    const e = this.emulators;
    const dead = [e.kinesis, e.dynamodb, e.s3].some((x) => x.process.exitCode !== null || x.process.signalCode !== null);
    if (!dead) return;
    await e.stop().catch(() => undefined);
    this.emulators = await startEmulators({ dataDir: join(this.dataDir, 'emulators') });
    this.restarts++;
  }

  async stop(): Promise<void> {
    await this.emulators.stop();
  }
}

export interface WorldOptions {
  readonly seed: number;
  readonly shards: number;
  readonly speedBatchSize: number;
  readonly archiveBatchSize: number;
  readonly log: Logger;
}

type ApiFunction = LocalFunction<APIGatewayProxyEvent, unknown>;

let worlds = 0;

/** One seed's Tandem on the shared emulators. */
export class World {
  readonly prefix: string;
  readonly names: Record<string, string>;
  readonly config: Config;
  readonly apiKey = `sim-key-${Math.random().toString(36).slice(2)}`;
  readonly speedSeam = new Seam('speed', HOLD_MS);
  readonly archiveSeam = new Seam('archive', HOLD_MS);
  readonly speedHook = new InvokeHook();
  readonly archiveHook = new InvokeHook();
  readonly ingest = new IngestFaults();
  readonly batch = new BatchFaults(DEMO_VIEWS.map((v) => v.name));
  /** Wall-clock time of the last PutRecords (ingest or a poison put). */
  lastPutAt = 0;
  clients!: Clients;
  url = '';
  private esm: { speed: EventSourceMapping; archive: EventSourceMapping } | undefined;
  private http: HttpServer | undefined;
  private readonly esmDir: string;
  private readonly stageDir: string;
  /** Warnings of the mappings (for the log of a failing seed). */
  readonly warnings: string[] = [];

  constructor(
    readonly cloud: SimCloud,
    readonly o: WorldOptions,
  ) {
    this.prefix = `sim${o.seed}x${worlds++}p${process.pid}`.toLowerCase();
    this.names = localNames(this.prefix);
    const n = (env: string) => this.names[env]!;
    this.config = {
      streamName: n(STREAM.env),
      tables: {
        speed: n(TABLES.speed.env),
        dedup: n(TABLES.dedup.env),
        batchViews: n(TABLES.batchViews.env),
        control: n(TABLES.control.env),
      },
      buckets: { raw: n(BUCKETS.raw.env), failures: n(BUCKETS.failures.env) },
      views: DEMO_VIEWS,
      settings: SIM_SETTINGS,
    };
    this.esmDir = join(cloud.dataDir, 'esm', this.prefix);
    this.stageDir = join(cloud.dataDir, 'stage', this.prefix);
  }

  async start(): Promise<void> {
    this.clients = createClients({ ...this.cloud.env, ...this.names });
    await provision(this.clients, { names: this.names, shards: this.o.shards });
    await this.startWorkers();
  }

  /** Options of every batch run: the DuckDB engine and the fault hooks. */
  batchOptions(): BatchOptions {
    return {
      engine: this.batch.wrapEngine(duckDbEngine({ s3: this.clients.s3, rawBucket: this.config.buckets.raw, stageDir: this.stageDir })),
      hooks: this.batch.hooks,
      lockTtlSeconds: LOCK_TTL_S,
    };
  }

  runBatch(): Promise<RunItem> {
    return runBatchToCompletion(this.clients, this.config, this.batchOptions());
  }

  /** Builds the handlers over the current clients (a cold start: fresh caches) and starts the mappings and the API. */
  async startWorkers(): Promise<void> {
    const c = this.clients;
    const { metrics } = quietTelemetry();
    const logger = new SinkLogger((m) => this.note(m));
    const { tables, buckets, views, settings } = this.config;
    const speed = wrapHandler(
      createSpeedHandler({
        ddb: this.speedSeam.wrap(c.dynamodb),
        s3: this.speedSeam.wrap(c.s3),
        tables: { speed: tables.speed, dedup: tables.dedup, control: tables.control },
        failureBucket: buckets.failures,
        views,
        settings,
        cache: new ItemCache(),
        logger,
        metrics,
      }),
      { name: 'tandem-speed', entry: 'functions/speed.ts', timeoutSeconds: CONSUMER_TIMEOUT_S },
    );
    const archive = wrapHandler(
      createArchiveHandler({
        s3: this.archiveSeam.wrap(c.s3),
        ddb: this.archiveSeam.wrap(c.dynamodb),
        rawBucket: buckets.raw,
        failureBucket: buckets.failures,
        controlTable: tables.control,
        logger,
        metrics,
      }),
      { name: 'tandem-archive', entry: 'functions/archive.ts', timeoutSeconds: CONSUMER_TIMEOUT_S },
    );
    const api: Partial<Record<HandlerName, ApiFunction>> = {
      ingest: wrapHandler(
        createIngestHandler({
          kinesis: this.ingest.wrap(c.kinesis),
          streamName: this.config.streamName,
          views,
          logger,
          put: { baseDelayMs: 10, maxDelayMs: 100, maxRounds: 3 },
        }),
        { name: 'tandem-ingest', entry: 'functions/ingest.ts', timeoutSeconds: 29 },
      ) as ApiFunction,
      query: wrapHandler(
        createQueryHandler({
          doc: this.slowBatchReads(exactDocClient(c.dynamodb)),
          tables: { speed: tables.speed, batchViews: tables.batchViews, control: tables.control },
          views,
          settings,
          logger,
        }),
        { name: 'tandem-query', entry: 'functions/query.ts', timeoutSeconds: 29 },
      ) as ApiFunction,
      batchApi: wrapHandler(
        createBatchApiHandler(() => ({ clients: this.clients, config: this.config, batch: this.batchOptions() }), logger),
        { name: 'tandem-batch-api', entry: 'functions/batch-api.ts', timeoutSeconds: 29 },
      ) as ApiFunction,
    };
    const esmLogger = {
      info: () => {},
      warn: (m: string) => this.note(m),
      error: (m: string) => this.note(m),
    };
    const common = {
      kinesis: c.kinesis,
      streamName: this.config.streamName,
      startingPosition: 'TRIM_HORIZON' as const,
      bisectBatchOnError: true,
      reportBatchItemFailures: true,
      onFailure: { s3: c.s3, failureBucket: buckets.failures, prefix: FAILURE_PREFIX },
      checkpointDir: this.esmDir,
      pollIntervalMs: 50,
      shardRefreshMs: 500,
      retryBackoffMs: 50,
      logger: esmLogger,
    };
    // The AWS settings (lib/speed-layer.ts, lib/raw-archive.ts) with short batching windows.
    const speedEsm = await startEventSourceMapping({
      ...common,
      name: 'speed',
      batchSize: this.o.speedBatchSize,
      maxBatchingWindowMs: 20,
      retryAttempts: 10,
      maxRecordAgeSeconds: 6 * 3600,
      invoke: this.speedHook.wrap((e) => speed.invoke(e)),
    });
    const archiveEsm = await startEventSourceMapping({
      ...common,
      name: 'archive',
      batchSize: this.o.archiveBatchSize,
      maxBatchingWindowMs: 50,
      retryAttempts: 1000,
      maxRecordAgeSeconds: 24 * 3600,
      invoke: this.archiveHook.wrap((e) => archive.invoke(e)),
    });
    this.esm = { speed: speedEsm, archive: archiveEsm };
    this.http = await startHttpServer({
      port: 0,
      apiKeys: this.apiKey,
      staticDirs: [],
      invoke: (h, event) => {
        const fn = api[h];
        if (!fn) throw new Error(`the simulation does not serve ${h}`);
        return fn.invoke(event);
      },
      logger: { info: () => {}, warn: (m: string) => this.note(m), error: (m: string) => this.note(m) },
    });
    this.url = this.http.url;
  }

  /**
   * A slow query, made deterministic: while set, the query handler's reads of
   * batch-view rows wait for this promise (the end of a batch run), and
   * `onPointerRead` is told when it has read the published pointer.
   */
  holdBatchReads: Promise<unknown> | undefined;
  onPointerRead: (() => void) | undefined;
  /** Batch-view reads that were held. */
  heldReads = 0;

  /** The query handler's document client behind the slow-read seam above. */
  private slowBatchReads(doc: DynamoDBDocumentClient): Pick<DynamoDBDocumentClient, 'send'> {
    const send = async (command: unknown) => {
      const hold = this.holdBatchReads;
      if (hold && command instanceof QueryCommand && command.input.TableName === this.config.tables.batchViews) {
        this.heldReads++;
        await hold;
      }
      const out = await (doc.send as (c: unknown) => Promise<unknown>)(command);
      if (command instanceof GetCommand && command.input.TableName === this.config.tables.control && command.input.Key?.pk === 'pointer')
        this.onPointerRead?.();
      return out;
    };
    return { send: send as DynamoDBDocumentClient['send'] };
  }

  private note(m: string): void {
    this.warnings.push(`${new Date().toISOString()} ${m}`);
    if (this.warnings.length > 400) this.warnings.splice(0, 100);
  }

  /** Stops the mappings and the API at once (a batch in flight is not checkpointed and comes again). */
  async stopWorkers(): Promise<void> {
    const esm = this.esm;
    this.esm = undefined;
    await Promise.all([esm?.speed.stop(), esm?.archive.stop(), this.http?.close()]);
    this.http = undefined;
  }

  /** Restarts the handlers' workers: new containers (empty caches) and new mappings resuming from their checkpoints. */
  async restartWorkers(): Promise<void> {
    await this.stopWorkers();
    await this.startWorkers();
  }

  /** Restarts the emulators under this world (they keep their data) and everything that talks to them. */
  async restartCloud(hard: boolean): Promise<void> {
    await this.stopWorkers();
    for (const c of Object.values(this.clients)) c.destroy();
    await this.cloud.restart(hard);
    this.clients = createClients({ ...this.cloud.env, ...this.names });
    // Idempotent: keeps what survived, and says so by failing loudly if a table or the stream is gone.
    await provision(this.clients, { names: this.names, shards: this.o.shards });
    await this.startWorkers();
  }

  /** Waits until both mappings have applied everything the stream holds now. */
  async idle(timeoutMs = 90_000): Promise<void> {
    const esm = this.esm;
    if (!esm) throw new SimError('the mappings are not running');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new SimError(
              `the mappings did not catch up within ${timeoutMs} ms: ` +
                JSON.stringify({ speed: esm.speed.stats(), archive: esm.archive.stats() }),
            ),
          ),
        timeoutMs,
      );
    });
    try {
      await Promise.race([Promise.all([esm.speed.idle(), esm.archive.idle()]), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  stats(): Record<string, unknown> {
    return { speed: this.esm?.speed.stats(), archive: this.esm?.archive.stats() };
  }

  /** Puts raw records straight into the stream (poison), bypassing ingest. */
  async putRaw(records: readonly { data: Uint8Array; partitionKey: string }[]): Promise<{ shard: string; seq: string }[]> {
    this.lastPutAt = Date.now();
    const out = await this.clients.kinesis.send(
      new PutRecordsCommand({
        StreamName: this.config.streamName,
        Records: records.map((r) => ({ Data: r.data, PartitionKey: r.partitionKey })),
      }),
    );
    this.lastPutAt = Date.now();
    if (out.FailedRecordCount) throw new SimError(`poison put failed: ${JSON.stringify(out.Records)}`);
    return (out.Records ?? []).map((r) => ({ shard: r.ShardId!, seq: r.SequenceNumber! }));
  }

  async shards(): Promise<Shard[]> {
    return (await this.clients.kinesis.send(new ListShardsCommand({ StreamName: this.config.streamName }))).Shards ?? [];
  }

  /**
   * Reshards the stream: doubles the open shards (a SplitShard of each, as
   * UpdateShardCount's uniform scaling does; kinesalite has no
   * UpdateShardCount), splits one (SplitShard) or merges two adjacent ones
   * (MergeShards: the child has two parents); waits until ACTIVE.
   */
  async reshard(how: 'double' | 'split' | 'merge', pick: number): Promise<string> {
    const open = (await this.shards())
      .filter((s) => s.SequenceNumberRange?.EndingSequenceNumber === undefined)
      .sort((a, b) => (BigInt(a.HashKeyRange!.StartingHashKey!) < BigInt(b.HashKeyRange!.StartingHashKey!) ? -1 : 1));
    if (how !== 'merge' && open.length >= 8) return `not resharded: ${open.length} open shards already`;
    if (how === 'merge' && open.length < 2) return 'not resharded: one open shard, nothing to merge';
    const k = this.clients.kinesis;
    const split = async (s: Shard) => {
      const lo = BigInt(s.HashKeyRange!.StartingHashKey!);
      const hi = BigInt(s.HashKeyRange!.EndingHashKey!);
      await k.send(
        new SplitShardCommand({
          StreamName: this.config.streamName,
          ShardToSplit: s.ShardId!,
          NewStartingHashKey: String((lo + hi + 1n) / 2n),
        }),
      );
      await this.untilActive(`SplitShard ${s.ShardId}`);
    };
    let what: string;
    if (how === 'merge') {
      const i = pick % (open.length - 1);
      const [a, b] = [open[i]!, open[i + 1]!];
      await k.send(
        new MergeShardsCommand({ StreamName: this.config.streamName, ShardToMerge: a.ShardId!, AdjacentShardToMerge: b.ShardId! }),
      );
      what = `MergeShards ${a.ShardId} + ${b.ShardId}`;
    } else if (how === 'double') {
      for (const s of open) await split(s);
      what = `SplitShard of each: ${open.length} -> ${open.length * 2} open shards`;
    } else {
      const s = open[pick % open.length]!;
      await split(s);
      what = `SplitShard ${s.ShardId}`;
    }
    await this.untilActive(what);
    return what;
  }

  private async untilActive(what: string): Promise<void> {
    const k = this.clients.kinesis;
    for (let i = 0; i < 400; i++) {
      const d = await k.send(new DescribeStreamSummaryCommand({ StreamName: this.config.streamName }));
      if (d.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') return;
      await sleep(50);
    }
    throw new SimError(`the stream did not become ACTIVE after ${what}`);
  }

  /** Calls the API as a client would. */
  async api(method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetch(`${this.url}${path}`, {
      method,
      headers: { 'x-api-key': this.apiKey, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new SimError(`${method} ${path} answered ${res.status} with a body that is not JSON: ${text.slice(0, 300)}`);
    }
    return { status: res.status, body: parsed };
  }

  /** Stops everything of this world, lets held requests land, and deletes its stream, tables and local files. */
  async close(): Promise<void> {
    await this.stopWorkers().catch(() => undefined);
    await Promise.all([this.speedSeam.settled(), this.archiveSeam.settled()]);
    const c = this.clients;
    await c.kinesis
      .send(new DeleteStreamCommand({ StreamName: this.config.streamName, EnforceConsumerDeletion: true }))
      .catch(() => undefined);
    await Promise.all(
      Object.values(this.config.tables).map((t) => c.dynamodb.send(new DeleteTableCommand({ TableName: t })).catch(() => undefined)),
    );
    for (const x of Object.values(c)) x.destroy();
    rmSync(this.esmDir, { recursive: true, force: true });
    rmSync(this.stageDir, { recursive: true, force: true });
  }
}
