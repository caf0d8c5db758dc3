/**
 * The batch state machine definition (functions/contract/state-machine.ts, the
 * one the CDK stack deploys) run by a local ASL interpreter
 * (aws-local-stepfunctions) whose Task states call the real batch-task
 * handler against real emulators: a successful run, a skipped one, and a
 * failing one that goes through Catch -> MarkFailed -> Fail.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { DeleteObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getPointer, getRun, lockHolder } from '../../functions/batch/control.ts';
import { batchContext } from '../../functions/batch/pipeline.ts';
import { createBatchTaskHandler } from '../../functions/batch/task.ts';
import { batchStateMachineDefinition } from '../../functions/contract/state-machine.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
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
