/**
 * The batch state machine definition (functions/contract/state-machine.ts, the
 * one the CDK stack deploys) run by a local ASL interpreter
 * (aws-local-stepfunctions) whose Task states call the real batch-task
 * handler against real emulators: a successful run, a skipped one, and a
 * failing one that goes through Catch -> MarkFailed -> Fail. The Athena
 * definition runs the same way with handlers standing in for the Athena tasks
 * (Start / Poll / Stop): they answer from DuckDB over the same archive and
 * write what Athena would (the objects query's CSV, the views' UNLOAD parts),
 * so the real compile, verify, parts, load and finish steps read them; what
 * the Lambda itself asks Athena goes through its port (AthenaQueries), which
 * the test implements over the same script. The compaction after a publish
 * runs the same way: its UNLOAD's stand-in writes real Parquet with DuckDB
 * into the staging prefix, the real put step copies it under compact/, and
 * later runs read it (DuckDB standing in for Athena over the compacted table).
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { DeleteCommand, GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AthenaQueries, athenaEngine, s3Location, unloadGroupOf } from '../../functions/batch/athena.ts';
import { COMPACTING_PK, compactPutStep } from '../../functions/batch/athena-compact.ts';
import { compactHourPrefix, readCompacted } from '../../functions/batch/compact.ts';
import { getManifest, getPointer, getRun, lockHolder } from '../../functions/batch/control.ts';
import { openDuckDb } from '../../functions/batch/duckdb.ts';
import { batchContext } from '../../functions/batch/pipeline.ts';
import { createBatchTaskHandler } from '../../functions/batch/task.ts';
import { type AthenaOptions, batchStateMachineDefinition } from '../../functions/contract/state-machine.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { batchPartitionStart, pad13 } from '../../functions/core/keys.ts';
import { DEFAULT_SETTINGS } from '../../functions/core/settings.ts';
import { arrivalPartition, COMPACT_COLUMNS, duckdbSource, literal, outputColumns, rawReadRange } from '../../functions/core/sql.ts';
import {
  archiveHandler,
  batchesOf,
  batchOptions,
  batchOracle,
  freshResources,
  generateStream,
  kinesisEvent,
  type Resources,
  readBatchRows,
  removeStageDirs,
  type ShardRecord,
  sorted,
  testConfig,
} from '../support/batch.ts';
import { startTestCloud, type TestCloud } from '../support/cloud.ts';

// aws-local-stepfunctions 3 uses Promise.withResolvers (Node 22); Node 20 needs this polyfill.
const P = Promise as unknown as { withResolvers?: () => unknown };
P.withResolvers ??= () => {
  let resolve!: (v: unknown) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
};

const TASK_ARN = 'arn:aws:lambda:us-east-1:000000000000:function:tandem-batch-task';
const T0 = Date.UTC(2030, 0, 15, 10, 0, 0);

describe('batch state machine on a local ASL interpreter', () => {
  let cloud: TestCloud;
  let StateMachine: typeof import('aws-local-stepfunctions').StateMachine;
  beforeAll(async () => {
    process.env.POWERTOOLS_METRICS_DISABLED = 'true';
    ({ StateMachine } = await import('aws-local-stepfunctions'));
    cloud = await startTestCloud();
  });
  afterAll(async () => {
    await cloud?.stop();
    removeStageDirs();
  });

  async function execute(r: Resources, runId: string, now: number) {
    const ctx = batchContext(
      cloud.clients,
      testConfig(r, cloud.names.TANDEM_STREAM_NAME!, DEMO_VIEWS),
      batchOptions(cloud.clients, r, { now: () => now }),
    );
    const handler = createBatchTaskHandler(() => ctx, new Logger({ logLevel: 'SILENT' }), new Metrics({ namespace: 'TandemTest' }));
    const calls: string[] = [];
    const task = (input: unknown) => {
      calls.push(String((input as { step: string }).step));
      return handler(input) as Promise<never>;
    };
    const machine = new StateMachine(batchStateMachineDefinition(TASK_ARN) as never);
    const execution = machine.run(
      {},
      {
        overrides: { taskResourceLocalHandlers: { Plan: task, View: task, Publish: task, MarkFailed: task } },
        context: { Execution: { Name: runId } },
      },
    );
    try {
      return { output: (await execution.result) as Record<string, unknown>, error: undefined, calls };
    } catch (error) {
      return { output: undefined, error: error as Error, calls };
    }
  }

  async function archived(r: Resources): Promise<ShardRecord[]> {
    const records = generateStream({ events: 150, shards: 2, start: T0, span: 300_000, duplicates: 0.05, late: 0.1, seed: 42 });
    const archive = archiveHandler(cloud.clients, r);
    for (const b of batchesOf(records, 50)) await archive(kinesisEvent(b));
    return records;
  }

  it('plan -> a Map over the views -> publish: the version equals the oracle; a second run with nothing new is skipped', async () => {
    const r = await freshResources(cloud.clients);
    const records = await archived(r);
    const now = T0 + 600_000;
    const done = await execute(r, 'run-sfn-ok', now);
    expect(done.error).toBeUndefined();
    expect(done.calls.sort()).toEqual(['plan', 'publish', 'view', 'view', 'view']);
    expect(done.output).toMatchObject({
      plan: { runId: 'run-sfn-ok', skipped: false, version: 1 },
      publish: { state: 'SUCCEEDED', published: true, version: 1 },
    });
    const control = { doc: cloud.clients.doc, table: r.tables.control };
    const run = await getRun(control, 'run-sfn-ok');
    expect(run).toMatchObject({ state: 'SUCCEEDED', version: 1 });
    for (const view of DEMO_VIEWS) {
      expect(sorted(await readBatchRows(cloud.clients.dynamodb, r.tables.batchViews, view, 1))).toEqual(
        sorted(batchOracle(view, records, run!.cutoff!)),
      );
    }
    expect(await lockHolder(control, now)).toBeUndefined();

    const again = await execute(r, 'run-sfn-again', now);
    expect(again.error).toBeUndefined();
    expect(again.calls).toEqual(['plan', 'publish']);
    expect(again.output).toMatchObject({
      plan: { skipped: true, version: null, views: [] },
      publish: { state: 'SKIPPED', published: false },
    });
    expect((await getRun(control, 'run-sfn-again'))?.state).toBe('SKIPPED');
  });

  it('a failing step goes through Catch to MarkFailed: the run is FAILED with the cause, the lock released, nothing published', async () => {
    const r = await freshResources(cloud.clients);
    await archived(r);
    const key = (await cloud.clients.s3.send(new ListObjectsV2Command({ Bucket: r.buckets.raw, Prefix: 'raw/' }))).Contents![0]!.Key!;
    await cloud.clients.s3.send(new DeleteObjectCommand({ Bucket: r.buckets.raw, Key: key }));
    const now = T0 + 600_000;
    const failed = await execute(r, 'run-sfn-fail', now);
    expect(failed.error?.message).toMatch(/A step of the batch run failed/);
    expect(failed.calls).toEqual(['plan', 'fail']);
    const control = { doc: cloud.clients.doc, table: r.tables.control };
    const run = await getRun(control, 'run-sfn-fail');
    expect(run?.state).toBe('FAILED');
    expect(run?.error).toMatch(/the archive is incomplete: 1 raw object\(s\) missing/);
    expect(await getPointer(control)).toBeUndefined();
    expect(await lockHolder(control, now)).toBeUndefined();
  });
});

describe('the Athena definition on a local ASL interpreter (handlers stand in for Athena)', () => {
  let cloud: TestCloud;
  let StateMachine: typeof import('aws-local-stepfunctions').StateMachine;
  beforeAll(async () => {
    process.env.POWERTOOLS_METRICS_DISABLED = 'true';
    ({ StateMachine } = await import('aws-local-stepfunctions'));
    cloud = await startTestCloud();
  });
  afterAll(async () => {
    await cloud?.stop();
    removeStageDirs();
  });

  const horizonMs = DEFAULT_SETTINGS.dedupHorizonSeconds * 1000;

  interface Started {
    readonly id: string;
    readonly sql: string;
    readonly token: string;
  }

  /** What the Athena stand-ins are told to do, and what they saw. */
  interface Script {
    /** A view query's attempt that ends FAILED, retryable. */
    failRetryable?: { view: string; attempt: number };
    /** A view query whose polling fails (GetQueryExecution errors): the Catch must stop it. */
    pollError?: string;
    /** Every compaction UNLOAD ends FAILED (not retryable). */
    failCompaction?: boolean;
    started: Started[];
    stopped: string[];
    stoppedByFailStep: string[];
  }

  async function execute(r: Resources, runId: string, now: number, script: Script) {
    const config = testConfig(r, cloud.names.TANDEM_STREAM_NAME!, DEMO_VIEWS);
    const duck = batchOptions(cloud.clients, r).engine!;
    // The Lambda runs no query on Athena: its engine is named athena, never opened.
    const ctx = {
      ...batchContext(cloud.clients, config, batchOptions(cloud.clients, r, { now: () => now })),
      engine: athenaEngine(),
      athenaWorkgroup: 'tandem_batch',
      // The port the Lambda asks Athena through (athena.ts AthenaQueries), answered from the script: the parts
      // step reads a query's statistics; the fail step stops the run's queries still running.
      athena: {
        statistics: async () => ({ engineMs: 5 }),
        running: async (workgroup: string) =>
          workgroup === 'tandem_batch'
            ? script.started
                .filter((q) => !script.stopped.includes(q.id) && (executions.get(q.id)?.state ?? 'RUNNING') === 'RUNNING')
                .map((q) => ({ id: q.id, sql: q.sql }))
            : [],
        stop: async (id: string) => {
          script.stoppedByFailStep.push(id);
          script.stopped.push(id);
        },
      } satisfies AthenaQueries,
    };
    const handler = createBatchTaskHandler(() => ctx, new Logger({ logLevel: 'SILENT' }), new Metrics({ namespace: 'TandemTest' }));
    const calls: string[] = [];
    const task = (input: unknown) => {
      calls.push(String((input as { step: string }).step));
      return handler(input) as Promise<never>;
    };
    const control = { doc: cloud.clients.doc, table: r.tables.control };
    const executions = new Map<string, { state: string; output: string; status: Record<string, unknown> }>();

    /** Answers a query from DuckDB over the same archive, writing what Athena writes. */
    const start = async (input: { QueryString: string; ClientRequestToken: string }) => {
      const id = `q-${script.started.length}`;
      script.started.push({ id, sql: input.QueryString, token: input.ClientRequestToken });
      const run = (await getRun(control, runId))!;
      const manifest = (await getManifest(control, run.version!))!;
      const compaction = /\) TO '(s3:\/\/[^']+\/compact\/[^/]+\/(\d{13})\/a\d+\/)'/.exec(input.QueryString);
      if (compaction) {
        const [, location, hour] = compaction;
        const output = `s3://${r.buckets.raw}/athena/${id}.csv`;
        if (script.failCompaction) {
          const status = { State: 'FAILED', StateChangeReason: 'simulated', AthenaError: { ErrorCategory: 2, Retryable: false } };
          executions.set(id, { state: 'FAILED', output, status });
          return { QueryExecutionId: id };
        }
        await unloadParquet(Number(hour), location!, id);
        executions.set(id, { state: 'SUCCEEDED', output, status: { State: 'SUCCEEDED' } });
        return { QueryExecutionId: id };
      }
      // Stands in for Athena over the compacted table: DuckDB reads the same hours as Parquet when the SQL asks for them.
      const compactedFor = async (from: number | null) =>
        input.QueryString.includes('"raw_events_compact"') ? await readCompacted(control, run.cutoff!, from) : new Map();
      const unload = /\) TO '(s3:\/\/[^']+\/unload\/[^/]+\/([^/]+)\/a(\d+)\/)'/.exec(input.QueryString);
      if (!unload) {
        // The completeness query: Athena's CSV result at <output>/<id>.csv.
        const plans = DEMO_VIEWS.map((v) => manifest.views[v.name]!);
        const from = plans.some((p) => p.mode !== 'increment') ? null : Math.min(...plans.map((p) => p.since! - horizonMs));
        const compacted = await compactedFor(from);
        const session = await duck.open(run.cutoff!, runId, { from, compacted });
        const reads = await session.objectReads();
        const parquet = (await session.compactedReads?.()) ?? new Map();
        await session.close();
        const q = (v: string | number) => `"${String(v).replaceAll('"', '""')}"`;
        const fileOf = async (hour: number) => (await list(r.buckets.raw, compactHourPrefix(hour)))[0]!;
        const compactRows: string[] = [];
        for (const [hour, read] of parquet) {
          const path = `s3://${r.buckets.raw}/${await fileOf(hour)}`;
          for (const [shard, c] of read.shards) compactRows.push([q(path), q(c.lines), q(c.covered), q(read.bytes), q(shard)].join(','));
        }
        const csv = [
          `"path","lines","covered","bytes"${compacted.size > 0 ? ',"shard"' : ''}`,
          ...[...reads].map(([k, o]) =>
            [q(`s3://${r.buckets.raw}/${k}`), q(o.lines), q(o.covered), q(o.bytes), ...(compacted.size > 0 ? [''] : [])].join(','),
          ),
          ...compactRows,
        ].join('\n');
        const output = `s3://${r.buckets.raw}/athena/${id}.csv`;
        await put(output, `${csv}\n`);
        executions.set(id, { state: 'SUCCEEDED', output, status: { State: 'SUCCEEDED' } });
        return { QueryExecutionId: id };
      }
      const [, location, viewName, attempt] = unload;
      const output = `s3://${r.buckets.raw}/athena/${id}.csv`;
      if (script.failRetryable?.view === viewName && script.failRetryable?.attempt === Number(attempt)) {
        const status = { State: 'FAILED', StateChangeReason: 'transient', AthenaError: { ErrorCategory: 1, Retryable: true } };
        executions.set(id, { state: 'FAILED', output, status });
        return { QueryExecutionId: id };
      }
      const view = DEMO_VIEWS.find((v) => v.name === viewName)!;
      const plan = manifest.views[view.name]!;
      const since = plan.mode === 'increment' ? plan.since : undefined;
      const need = rawReadRange(run.cutoff!, horizonMs, since).from;
      const session = await duck.open(run.cutoff!, runId, { from: need, compacted: await compactedFor(need) });
      const rows = await session.runView(view, { horizonMs, ...(since !== undefined && { since }) });
      await session.close();
      const groups = new Map<number, string[]>();
      const n = outputColumns(view).length;
      for (const row of rows) {
        const values = [String(row.bucket), ...row.dims, ...Object.values(row.values)];
        const line = JSON.stringify(Object.fromEntries(values.slice(0, n).map((v, i) => [`c${i}`, v])));
        const g = unloadGroupOf(view, batchPartitionStart(row.bucket, view.grain));
        groups.set(g, [...(groups.get(g) ?? []), line]);
      }
      // Two files per group, as Athena's parallel writers would leave them.
      for (const [g, lines] of groups) {
        const half = Math.ceil(lines.length / 2);
        await put(`${location}g=${g}/${id}-0.gz`, gzipSync(`${lines.slice(0, half).join('\n')}\n`));
        if (lines.length > half) await put(`${location}g=${g}/${id}-1.gz`, gzipSync(`${lines.slice(half).join('\n')}\n`));
      }
      executions.set(id, { state: 'SUCCEEDED', output, status: { State: 'SUCCEEDED' } });
      return { QueryExecutionId: id };
    };
    const put = (url: string, body: string | Uint8Array) => {
      const { bucket, key } = s3Location(url);
      return cloud.clients.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    };
    /**
     * What Athena's compaction UNLOAD writes: the hour's raw lines, the columns the batch reads, as Parquet (ZSTD),
     * in several files named by Athena (no extension), one per shard here, each sorted.
     */
    const unloadParquet = async (hour: number, location: string, id: string) => {
      const dir = join(r.stageDir, 'athena-standin', id);
      await mkdir(dir, { recursive: true });
      const { dt, hr } = arrivalPartition(hour);
      const files: string[] = [];
      for (const key of await list(r.buckets.raw, `raw/dt=${dt}/hr=${hr}/`)) {
        const got = await cloud.clients.s3.send(new GetObjectCommand({ Bucket: r.buckets.raw, Key: key }));
        const file = join(dir, `${files.length}.json.gz`);
        await writeFile(file, await got.Body!.transformToByteArray());
        files.push(file);
      }
      const db = await openDuckDb();
      try {
        const columns = COMPACT_COLUMNS.map((c) => c.name).join(', ');
        await db.query(`CREATE TABLE lines AS SELECT ${columns} FROM ${duckdbSource(files)}`);
        const shards = (await db.query('SELECT DISTINCT shard FROM lines ORDER BY 1')).map(([s]) => String(s));
        for (const [i, shard] of shards.entries()) {
          const out = join(dir, `part-${i}.parquet`);
          await db.query(
            `COPY (SELECT ${columns} FROM lines WHERE shard = ${literal(shard)} ORDER BY arrival, shard, seq) TO ${literal(out)} ` +
              '(FORMAT PARQUET, COMPRESSION ZSTD)',
          );
          await put(`${location}${id}_0000${i}_${shard}`, await readFile(out));
        }
      } finally {
        db.close();
        await rm(dir, { recursive: true, force: true });
      }
    };
    const poll = async (input: { QueryExecutionId: string }) => {
      const e = executions.get(input.QueryExecutionId)!;
      const isView = script.started.find((s) => s.id === input.QueryExecutionId)!.sql.startsWith('UNLOAD');
      if (script.pollError && isView) {
        // Still running as far as Athena knows: only a stop ends it.
        e.state = 'RUNNING';
        const err = new Error('simulated: GetQueryExecution failed');
        err.name = script.pollError;
        throw err;
      }
      return {
        QueryExecution: { QueryExecutionId: input.QueryExecutionId, Status: e.status, ResultConfiguration: { OutputLocation: e.output } },
      };
    };
    const stop = async (input: { QueryExecutionId: string }) => {
      script.stopped.push(input.QueryExecutionId);
      return {};
    };
    const athena: AthenaOptions = {
      workgroup: 'tandem_batch',
      database: 'tandem',
      table: 'raw_events',
      resultsLocation: `s3://${r.buckets.raw}/athena/`,
      queryAttempts: 3,
      compaction: { table: 'raw_events_compact', rawBucket: r.buckets.raw },
    };
    const machine = new StateMachine(batchStateMachineDefinition(TASK_ARN, { athena }) as never);
    const execution = machine.run(
      {},
      {
        overrides: {
          taskResourceLocalHandlers: {
            Plan: task,
            Compile: task,
            Verify: task,
            Parts: task,
            Load: task,
            Finish: task,
            Publish: task,
            MarkFailed: task,
            CompactPlan: task,
            CompactPut: task,
            CompactRecord: task,
            CompactStart: start as never,
            CompactPoll: poll as never,
            CompactStop: stop as never,
            ObjectsStart: start as never,
            ViewStart: start as never,
            ObjectsPoll: poll as never,
            ViewPoll: poll as never,
            ObjectsStop: stop as never,
            ViewStop: stop as never,
          },
          waitTimeOverrides: { ObjectsWait: 0, ViewWait: 0, CompactWait: 0 },
        },
        context: { Execution: { Name: runId } },
      },
    );
    try {
      return { output: (await execution.result) as Record<string, unknown>, error: undefined, calls };
    } catch (error) {
      // The run item says why (the ASL's Fail only says that a step failed).
      const why = (await getRun(control, runId))?.error;
      return { output: undefined, error: Object.assign(error as Error, { why }), calls };
    }
  }

  async function list(bucket: string, prefix: string): Promise<string[]> {
    const got = await cloud.clients.s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    return (got.Contents ?? []).map((o) => o.Key!).sort();
  }

  async function archive(r: Resources, seed: number, start: number): Promise<ShardRecord[]> {
    const records = generateStream({ events: 150, shards: 2, start, span: 300_000, duplicates: 0.05, late: 0.1, seed });
    const handler = archiveHandler(cloud.clients, r);
    for (const b of batchesOf(records, 50)) await handler(kinesisEvent(b));
    return records;
  }

  async function expectOracle(r: Resources, version: number, records: readonly ShardRecord[], cutoff: number) {
    for (const view of DEMO_VIEWS) {
      expect(sorted(await readBatchRows(cloud.clients.dynamodb, r.tables.batchViews, view, version)), view.name).toEqual(
        sorted(batchOracle(view, records, cutoff)),
      );
    }
  }

  it('queries from the state machine, loads by partition groups, and an increment merges into the published version', async () => {
    const r = await freshResources(cloud.clients);
    const first = await archive(r, 42, T0);
    const script: Script = { started: [], stopped: [], stoppedByFailStep: [] };
    const done = await execute(r, 'run-athena-ok', T0 + 600_000, script);
    expect(done.error, (done.error as { why?: string } | undefined)?.why).toBeUndefined();
    expect(done.output).toMatchObject({ publish: { state: 'SUCCEEDED', published: true, version: 1 } });
    // One completeness query and one UNLOAD per view; every token a SHA-256 and distinct.
    expect(script.started).toHaveLength(1 + DEMO_VIEWS.length);
    expect(script.started[0]!.sql).toMatch(/^SELECT "path"/);
    for (const s of script.started.slice(1)) expect(s.sql).toMatch(/^UNLOAD \(/);
    expect(new Set(script.started.map((s) => s.token)).size).toBe(script.started.length);
    for (const s of script.started) expect(s.token).toMatch(/^[0-9a-f]{64}$/);
    expect(done.calls.filter((c) => c === 'load').length).toBeGreaterThanOrEqual(DEMO_VIEWS.length);
    expect(script.stopped).toEqual([]);
    const control = { doc: cloud.clients.doc, table: r.tables.control };
    const run = (await getRun(control, 'run-athena-ok'))!;
    expect(run.state).toBe('SUCCEEDED');
    await expectOracle(r, 1, first, run.cutoff!);

    // New arrivals: the next run increments every view (the merge per partition group).
    const second = await archive(r, 43, T0 + 900_000);
    const again = await execute(r, 'run-athena-inc', T0 + 1_500_000, { started: [], stopped: [], stoppedByFailStep: [] });
    expect(again.error).toBeUndefined();
    const inc = (await getRun(control, 'run-athena-inc'))!;
    expect(inc).toMatchObject({ state: 'SUCCEEDED', version: 2 });
    for (const v of DEMO_VIEWS) expect(inc.views?.[v.name]?.mode, v.name).toBe('increment');
    await expectOracle(r, 2, [...first, ...second], inc.cutoff!);
    expect(await lockHolder(control, T0 + 1_500_000)).toBeUndefined();
  });

  it('compacts covered hours after the publish: a failed UNLOAD leaves the run published, a later run compacts the hour', async () => {
    const r = await freshResources(cloud.clients);
    const control = { doc: cloud.clients.doc, table: r.tables.control };
    const hour10 = T0;
    const records = [...(await archive(r, 21, T0)), ...(await archive(r, 22, T0 + 3_900_000))];
    // Hour 10 is covered whole: its UNLOAD fails; the run is published all the same, the hour left uncompacted.
    const first = await execute(r, 'run-compact-1', T0 + 4_500_000, {
      started: [],
      stopped: [],
      stoppedByFailStep: [],
      failCompaction: true,
    });
    expect(first.error, (first.error as { why?: string } | undefined)?.why).toBeUndefined();
    expect(first.output).toMatchObject({ publish: { state: 'SUCCEEDED', published: true, version: 1 } });
    expect(first.calls).toContain('compactPlan');
    expect(first.calls).not.toContain('compactPut');
    expect(first.calls.at(-1)).toBe('compactRecord');
    const run1 = (await getRun(control, 'run-compact-1'))!;
    expect(run1).toMatchObject({ state: 'SUCCEEDED', compaction: { hours: 0, failed: 1 } });
    expect(run1.compaction?.error).toMatch(/^2030-01-15T10h: Athena\.QueryFailed/);
    expect((await getPointer(control))?.version).toBe(1);
    expect((await readCompacted(control, run1.cutoff!)).size).toBe(0);
    expect(await list(r.buckets.raw, 'compact/')).toEqual([]);
    await expectOracle(r, 1, records, run1.cutoff!);

    // The next run reads hour 10 as JSON (no item yet) and compacts it: Athena's files, under the hour's prefix.
    records.push(...(await archive(r, 23, T0 + 4_800_000)));
    const second = await execute(r, 'run-compact-2', T0 + 5_400_000, { started: [], stopped: [], stoppedByFailStep: [] });
    expect(second.error, (second.error as { why?: string } | undefined)?.why).toBeUndefined();
    const run2 = (await getRun(control, 'run-compact-2'))!;
    expect(run2).toMatchObject({ state: 'SUCCEEDED', version: 2, compaction: { hours: 1, failed: 0 } });
    const item = (await readCompacted(control, run2.cutoff!)).get(hour10)!;
    const inHour = records.filter((x) => x.arrival >= hour10 && x.arrival < hour10 + 3_600_000);
    expect(Object.values(item.shards).reduce((n, x) => n + x.lines, 0)).toBe(inHour.length);
    for (const x of Object.values(item.shards)) expect(x.recorded).toBe(x.lines);
    const files = await list(r.buckets.raw, 'compact/');
    expect(files.length).toBe(2);
    for (const f of files) expect(f).toMatch(/^compact\/dt=2030-01-15\/hr=10\/q-\d+_0000\d_.+\.parquet$/);
    await expectOracle(r, 2, records, run2.cutoff!);

    // The put step converges: retried after a crash that left stale files and no item, it replaces them; with the item
    // it does nothing; while another run holds the hour's lease it leaves the hour alone.
    const ctx = {
      ...batchContext(cloud.clients, testConfig(r, cloud.names.TANDEM_STREAM_NAME!, DEMO_VIEWS), batchOptions(cloud.clients, r)),
      engine: athenaEngine(),
      athena: { statistics: async () => ({ engineMs: 0 }), running: async () => [], stop: async () => {} } satisfies AthenaQueries,
    };
    const put = {
      runId: 'run-compact-2',
      hour: hour10,
      location: `s3://${r.buckets.raw}/athena/compact/run-compact-2/${pad13(hour10)}/a0/`,
      shards: item.shards,
      rawBucket: r.buckets.raw,
    };
    const itemKey = { TableName: r.tables.control, Key: { pk: 'compacted', sk: pad13(hour10) } };
    await cloud.clients.doc.send(new DeleteCommand(itemKey));
    await cloud.clients.s3.send(
      new PutObjectCommand({ Bucket: r.buckets.raw, Key: `${compactHourPrefix(hour10)}stale.parquet`, Body: 'x' }),
    );
    const lease = { pk: COMPACTING_PK, sk: pad13(hour10), runId: 'run-other', until: Date.now() + 3_600_000 };
    await cloud.clients.doc.send(new PutCommand({ TableName: r.tables.control, Item: lease }));
    await expect(compactPutStep(ctx, put)).rejects.toThrow(/another run is putting this hour's files in place/);
    await cloud.clients.doc.send(new DeleteCommand({ TableName: r.tables.control, Key: { pk: COMPACTING_PK, sk: pad13(hour10) } }));
    expect(await compactPutStep(ctx, put)).toMatchObject({ hour: hour10, files: 2 });
    expect(await list(r.buckets.raw, 'compact/')).toEqual(files);
    expect((await readCompacted(control, run2.cutoff!)).get(hour10)?.shards).toEqual(item.shards);
    expect(await compactPutStep(ctx, put)).toMatchObject({ files: 0 });
    expect(
      (await cloud.clients.doc.send(new GetCommand({ ...itemKey, Key: { pk: COMPACTING_PK, sk: pad13(hour10) } }))).Item,
    ).toBeUndefined();

    // The run after reads hour 10 from the compacted table, checked by counts, and equals the oracle.
    records.push(...(await archive(r, 24, T0 + 5_700_000)));
    const script: Script = { started: [], stopped: [], stoppedByFailStep: [] };
    const third = await execute(r, 'run-compact-3', T0 + 6_300_000, script);
    expect(third.error, (third.error as { why?: string } | undefined)?.why).toBeUndefined();
    const run3 = (await getRun(control, 'run-compact-3'))!;
    expect(run3).toMatchObject({ state: 'SUCCEEDED', version: 3, archive: { compactedHours: 1 } });
    const queries = script.started.filter((q) => !q.sql.includes('/compact/'));
    for (const q of queries) expect(q.sql).toContain('"tandem"."raw_events_compact"');
    await expectOracle(r, 3, records, run3.cutoff!);
    // A compacted item is never compacted again.
    expect(script.started.filter((q) => q.sql.includes(`hr = '10'`))).toEqual([]);
    expect(await list(r.buckets.raw, 'compact/')).toEqual(files);

    // A compacted hour is checked by its counts per (hour, shard): a lost file fails the next run, nothing published.
    await cloud.clients.s3.send(new DeleteObjectCommand({ Bucket: r.buckets.raw, Key: files[0]! }));
    await archive(r, 25, T0 + 6_600_000);
    const fourth = await execute(r, 'run-compact-4', T0 + 7_200_000, { started: [], stopped: [], stoppedByFailStep: [] });
    expect(fourth.error?.message).toMatch(/A step of the batch run failed/);
    expect((await getRun(control, 'run-compact-4'))?.error).toMatch(/compacted \(arrival hour, shard\) pair\(s\) that do not add up/);
    expect((await getPointer(control))?.version).toBe(3);
  });

  it('a query whose failure Athena calls retryable runs again with a new token and a new output location', async () => {
    const r = await freshResources(cloud.clients);
    const records = await archive(r, 7, T0);
    const view = DEMO_VIEWS[0]!.name;
    const script: Script = { started: [], stopped: [], stoppedByFailStep: [], failRetryable: { view, attempt: 0 } };
    const done = await execute(r, 'run-athena-retry', T0 + 600_000, script);
    expect(done.error, (done.error as { why?: string } | undefined)?.why).toBeUndefined();
    const attempts = script.started.filter((s) => s.sql.includes(`/${view}/a`));
    expect(attempts).toHaveLength(2);
    expect(attempts[0]!.token).not.toBe(attempts[1]!.token);
    expect(attempts[0]!.sql).toContain(`/${view}/a0/'`);
    expect(attempts[1]!.sql).toContain(`/${view}/a1/'`);
    const run = (await getRun({ doc: cloud.clients.doc, table: r.tables.control }, 'run-athena-retry'))!;
    expect(run.state).toBe('SUCCEEDED');
    await expectOracle(r, 1, records, run.cutoff!);
  });

  it('a query that cannot be followed is stopped through Catch, and the run fails through MarkFailed', async () => {
    const r = await freshResources(cloud.clients);
    await archive(r, 9, T0);
    const script: Script = { started: [], stopped: [], stoppedByFailStep: [], pollError: 'Athena.InvalidRequestException' };
    const failed = await execute(r, 'run-athena-stop', T0 + 600_000, script);
    expect(failed.error?.message).toMatch(/A step of the batch run failed/);
    const views = script.started.filter((s) => s.sql.startsWith('UNLOAD'));
    expect(views.length).toBeGreaterThan(0);
    // The query whose polling failed was stopped through Catch; the Map then cancelled its siblings
    // mid-query, and the fail step stopped what was still running of the run. Nothing was loaded.
    const byCatch = script.stopped.filter((id) => !script.stoppedByFailStep.includes(id));
    expect(byCatch.length).toBeGreaterThan(0);
    expect(script.stopped.sort()).toEqual(views.map((v) => v.id).sort());
    expect(failed.calls).not.toContain('load');
    expect(failed.calls.at(-1)).toBe('fail');
    const control = { doc: cloud.clients.doc, table: r.tables.control };
    const run = await getRun(control, 'run-athena-stop');
    expect(run?.state).toBe('FAILED');
    expect(run?.error).toMatch(/Athena\.InvalidRequestException/);
    expect(await getPointer(control)).toBeUndefined();
    expect(await lockHolder(control, T0 + 600_000)).toBeUndefined();
  });
});
