/**
 * The event source mapping poller against the Kinesis emulator (kinesalite, or
 * kinesis-local when TANDEM_KINESIS_ENGINE picks it), and s3rver for the
 * on-failure destination: each Lambda semantic with a test function that
 * fails on purpose. One emulator pair per file; a fresh stream per test.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KinesisDataStreamSchema } from '@aws-lambda-powertools/parser/schemas';
import { type KinesisClient, ListShardsCommand, SplitShardCommand } from '@aws-sdk/client-kinesis';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import type { KinesisStreamEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClients } from '../../functions/adapters/clients.ts';
import type { LogSink } from '../../functions/adapters/log.ts';
import { emulatorEnv, type RunningEmulator, startEmulator } from '../../local/emulators.ts';
import { type EventSourceMapping, type EventSourceMappingOptions, type FailureObject, startEventSourceMapping } from '../../local/esm.ts';
import { loadFunction, wrapHandler } from '../../local/runtime.ts';
import { createStream, decode, put, Recorder } from '../support/kinesis.ts';

let kinesisEmu: RunningEmulator;
let s3Emu: RunningEmulator;
let kinesis: KinesisClient;
let s3: S3Client;
const BUCKET = 'esm-failures';
const logs: string[] = [];
const logger: LogSink = { info: (m) => logs.push(m), warn: (m) => logs.push(m), error: (m) => logs.push(m) };
const running: EventSourceMapping[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  [kinesisEmu, s3Emu] = await Promise.all([startEmulator('kinesis'), startEmulator('s3')]);
  const env = emulatorEnv({ kinesis: kinesisEmu, s3: s3Emu, dynamodb: { endpoint: 'http://127.0.0.1:9' } });
  ({ kinesis, s3 } = createClients(env));
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
});

afterAll(async () => {
  await Promise.all(running.map((m) => m.stop()));
  kinesis?.destroy();
  s3?.destroy();
  await Promise.all([kinesisEmu?.stop(), s3Emu?.stop()]);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function start(
  opts: Partial<EventSourceMappingOptions> & Pick<EventSourceMappingOptions, 'streamName' | 'invoke'>,
): Promise<EventSourceMapping> {
  const m = await startEventSourceMapping({ name: 'test', kinesis, pollIntervalMs: 50, retryBackoffMs: 20, logger, ...opts });
  running.push(m);
  return m;
}

async function failureObjects(prefix: string): Promise<FailureObject[]> {
  const list = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
  const out: FailureObject[] = [];
  for (const o of list.Contents ?? []) {
    const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: o.Key! }));
    out.push(JSON.parse(await got.Body!.transformToString()) as FailureObject);
  }
  return out.sort((a, b) => (BigInt(a.firstSequenceNumber) < BigInt(b.firstSequenceNumber) ? -1 : 1));
}

const range = (n: number, p = 'r') => Array.from({ length: n }, (_, i) => `${p}${i}`);

describe('event source mapping on the Kinesis emulator', () => {
  it('delivers every record once, in shard order, in batches of batchSize, as a Lambda Kinesis event', async () => {
    const stream = await createStream(kinesis, 2);
    const shards = (await kinesis.send(new ListShardsCommand({ StreamName: stream }))).Shards!;
    // Pin records to each shard by hash key so both shards get traffic.
    const puts = [
      ...(await put(kinesis, stream, range(23, 'a'), shards[0]!.HashKeyRange!.StartingHashKey)),
      ...(await put(kinesis, stream, range(17, 'b'), shards[1]!.HashKeyRange!.StartingHashKey)),
    ];
    const rec = new Recorder();
    const inFlight = new Map<string, number>();
    let maxInFlight = 0;
    const events: KinesisStreamEvent[] = [];
    const m = await start({
      streamName: stream,
      batchSize: 5,
      invoke: async (event) => {
        const e = rec.note(event);
        events.push(event);
        inFlight.set(e.shard, (inFlight.get(e.shard) ?? 0) + 1);
        maxInFlight = Math.max(maxInFlight, inFlight.get(e.shard)!);
        await new Promise((r) => setTimeout(r, 5));
        inFlight.set(e.shard, inFlight.get(e.shard)! - 1);
      },
    });
    await m.idle();
    expect(maxInFlight).toBe(1);
    expect(rec.events.every((e) => e.data.length <= 5)).toBe(true);
    for (const shard of [shards[0]!.ShardId!, shards[1]!.ShardId!]) {
      const got = rec.events.filter((e) => e.shard === shard).flatMap((e) => e.seqs);
      const want = puts.filter((p) => p.shard === shard).map((p) => p.seq);
      expect(got).toEqual(want);
    }
    expect(rec.events.flatMap((e) => e.data).sort()).toEqual([...range(23, 'a'), ...range(17, 'b')].sort());
    // The exact shape Lambda sends: Powertools' own schema accepts it and decodes the base64 data.
    for (const event of events) expect(KinesisDataStreamSchema.safeParse(event).success).toBe(true);
    const r = events[0]!.Records[0]!;
    expect(r.eventSource).toBe('aws:kinesis');
    expect(r.eventName).toBe('aws:kinesis:record');
    expect(r.eventSourceARN).toBe(`arn:aws:kinesis:us-east-1:000000000000:stream/${stream}`);
    expect(r.eventID).toBe(`${rec.events[0]!.shard}:${r.kinesis.sequenceNumber}`);
    expect(r.awsRegion).toBe('us-east-1');
    expect(r.kinesis.kinesisSchemaVersion).toBe('1.0');
    // Epoch seconds with a fraction, near now.
    expect(Math.abs(r.kinesis.approximateArrivalTimestamp - Date.now() / 1000)).toBeLessThan(600);
    const stats = m.stats().perShard;
    expect(stats[shards[0]!.ShardId!]).toMatchObject({ records: 23, batches: 5, failures: 0, checkpoint: puts[22]!.seq });
    expect(stats[shards[1]!.ShardId!]).toMatchObject({ records: 17, batches: 4, failures: 0 });
  });

  it('maxBatchingWindow gathers records put apart into one batch; without it they come in two', async () => {
    for (const windowMs of [2000, 0]) {
      const stream = await createStream(kinesis, 1);
      const rec = new Recorder();
      const m = await start({ streamName: stream, batchSize: 100, maxBatchingWindowMs: windowMs, invoke: async (e) => void rec.note(e) });
      await put(kinesis, stream, ['x1', 'x2']);
      if (windowMs === 0) {
        // Wait for the first batch to be delivered before putting the next records.
        await m.idle();
        expect(rec.events).toHaveLength(1);
      } else {
        await new Promise((r) => setTimeout(r, 300));
      }
      await put(kinesis, stream, ['x3']);
      await m.idle();
      expect(rec.events.map((e) => e.data)).toEqual(windowMs ? [['x1', 'x2', 'x3']] : [['x1', 'x2'], ['x3']]);
    }
  });

  it('starting position: TRIM_HORIZON reads what was there, LATEST only what comes after', async () => {
    const stream = await createStream(kinesis, 1);
    await put(kinesis, stream, ['old1', 'old2']);
    const trim = new Recorder();
    const latest = new Recorder();
    const a = await start({ name: 'trim', streamName: stream, startingPosition: 'TRIM_HORIZON', invoke: async (e) => void trim.note(e) });
    const b = await start({ name: 'latest', streamName: stream, startingPosition: 'LATEST', invoke: async (e) => void latest.note(e) });
    await b.idle();
    await put(kinesis, stream, ['new1']);
    await Promise.all([a.idle(), b.idle()]);
    expect(trim.events.flatMap((e) => e.data)).toEqual(['old1', 'old2', 'new1']);
    expect(latest.events.flatMap((e) => e.data)).toEqual(['new1']);
  });

  it('the checkpoint survives a restart of the mapping: only records after it are delivered again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'esm-cp-'));
    dirs.push(dir);
    const stream = await createStream(kinesis, 1);
    await put(kinesis, stream, ['c1', 'c2', 'c3']);
    const first = new Recorder();
    const m1 = await start({ streamName: stream, checkpointDir: dir, invoke: async (e) => void first.note(e) });
    await m1.idle();
    await m1.stop();
    await put(kinesis, stream, ['c4', 'c5']);
    const second = new Recorder();
    const m2 = await start({ streamName: stream, checkpointDir: dir, invoke: async (e) => void second.note(e) });
    await m2.idle();
    expect(first.events.flatMap((e) => e.data)).toEqual(['c1', 'c2', 'c3']);
    expect(second.events.flatMap((e) => e.data)).toEqual(['c4', 'c5']);
  });

  it('the checkpoint survives a restart of the Kinesis emulator itself (persisted stream, persisted checkpoint file)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'esm-restart-'));
    dirs.push(dir);
    const env = (k: RunningEmulator) => emulatorEnv({ kinesis: k, s3: s3Emu, dynamodb: { endpoint: 'http://127.0.0.1:9' } });
    let k1: RunningEmulator | undefined = await startEmulator('kinesis', { dataDir: join(dir, 'kinesis'), persistInterval: '200ms' });
    let k2: RunningEmulator | undefined;
    try {
      const c1 = createClients(env(k1)).kinesis;
      const stream = await createStream(c1, 1);
      await put(c1, stream, ['s1', 's2']);
      const first = new Recorder();
      const m1 = await startEventSourceMapping({
        name: 'restart',
        kinesis: c1,
        streamName: stream,
        checkpointDir: join(dir, 'esm'),
        pollIntervalMs: 50,
        logger,
        invoke: async (e) => void first.note(e),
      });
      await m1.idle();
      await m1.stop();
      await put(c1, stream, ['s3']);
      // kinesalite has every acknowledged put on disk already; kinesis-local (when chosen) persists
      // on an interval (200 ms here): give it a few.
      await new Promise((r) => setTimeout(r, 1000));
      c1.destroy();
      await k1.stop();
      k1 = undefined;
      k2 = await startEmulator('kinesis', { dataDir: join(dir, 'kinesis') });
      const c2 = createClients(env(k2)).kinesis;
      const second = new Recorder();
      const m2 = await startEventSourceMapping({
        name: 'restart',
        kinesis: c2,
        streamName: stream,
        checkpointDir: join(dir, 'esm'),
        pollIntervalMs: 50,
        logger,
        invoke: async (e) => void second.note(e),
      });
      await m2.idle();
      await m2.stop();
      c2.destroy();
      expect(first.events.flatMap((e) => e.data)).toEqual(['s1', 's2']);
      expect(second.events.flatMap((e) => e.data)).toEqual(['s3']);
    } finally {
      await k1?.stop();
      await k2?.stop();
    }
  });

  it('a LATEST mapping restarted after a stop still gets the records put while it was down', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'esm-latest-'));
    dirs.push(dir);
    const stream = await createStream(kinesis, 1);
    await put(kinesis, stream, ['before']);
    const m1 = await start({ streamName: stream, checkpointDir: dir, startingPosition: 'LATEST', invoke: async () => {} });
    await m1.idle();
    await m1.stop();
    await put(kinesis, stream, ['while-down']);
    const rec = new Recorder();
    const m2 = await start({ streamName: stream, checkpointDir: dir, startingPosition: 'LATEST', invoke: async (e) => void rec.note(e) });
    await m2.idle();
    expect(rec.events.flatMap((e) => e.data)).toEqual(['while-down']);
  });

  it('bisectBatchOnError isolates a poison record: the others are processed once, the poison one goes to the destination', async () => {
    const stream = await createStream(kinesis, 1);
    const data = range(8, 'p');
    data[5] = 'POISON';
    const puts = await put(kinesis, stream, data);
    const rec = new Recorder();
    const ok: string[] = [];
    const m = await start({
      name: 'bisect',
      streamName: stream,
      batchSize: 8,
      maxBatchingWindowMs: 500,
      bisectBatchOnError: true,
      retryAttempts: 0,
      onFailure: { s3, failureBucket: BUCKET, prefix: `bisect-${stream}/` },
      invoke: async (event) => {
        const e = rec.note(event);
        if (e.data.includes('POISON')) throw new TypeError('poison record');
        ok.push(...e.data);
      },
    });
    await m.idle();
    expect(ok).toEqual(data.filter((d) => d !== 'POISON'));
    // 8 fails -> [p0..p3] ok, [p4..p7] fails -> [p4, POISON] fails -> [p4] ok, [POISON] fails (no retries left) -> [p6, p7] ok.
    expect(rec.events.map((e) => e.data.length)).toEqual([8, 4, 4, 2, 1, 1, 2]);
    const failures = await failureObjects(`bisect-${stream}/`);
    expect(failures).toHaveLength(1);
    const f = failures[0]!;
    expect(f).toMatchObject({
      mapping: 'bisect',
      streamName: stream,
      shard: puts[5]!.shard,
      firstSequenceNumber: puts[5]!.seq,
      lastSequenceNumber: puts[5]!.seq,
      condition: 'RetryAttemptsExhausted',
      error: { type: 'TypeError', message: 'poison record' },
    });
    expect(f.records.map((r) => Buffer.from(r.data, 'base64').toString())).toEqual(['POISON']);
    expect(f.records[0]!.sequenceNumber).toBe(puts[5]!.seq);
    expect(Date.parse(f.records[0]!.arrival)).toBe(Math.round(f.records[0]!.approximateArrivalTimestamp * 1000));
    expect(m.stats().perShard[puts[0]!.shard]).toMatchObject({ records: 7, discarded: 1, checkpoint: puts[7]!.seq });
  });

  it('without bisect, a failing batch is retried retryAttempts times, then goes whole to the destination and the shard moves on', async () => {
    const stream = await createStream(kinesis, 1);
    const puts = await put(kinesis, stream, ['q1', 'BAD', 'q3']);
    const rec = new Recorder();
    const after: string[] = [];
    const m = await start({
      name: 'retries',
      streamName: stream,
      retryAttempts: 2,
      onFailure: { s3, failureBucket: BUCKET, prefix: `retries-${stream}/` },
      invoke: async (event) => {
        const e = rec.note(event);
        if (e.data.includes('BAD')) throw new Error('cannot handle BAD');
        after.push(...e.data);
      },
    });
    await m.idle();
    expect(rec.events.filter((e) => e.data.includes('BAD'))).toHaveLength(3);
    await put(kinesis, stream, ['q4']);
    await m.idle();
    expect(after).toEqual(['q4']);
    const [f, ...more] = await failureObjects(`retries-${stream}/`);
    expect(more).toHaveLength(0);
    expect(f).toMatchObject({
      firstSequenceNumber: puts[0]!.seq,
      lastSequenceNumber: puts[2]!.seq,
      approximateInvokeCount: 3,
      condition: 'RetryAttemptsExhausted',
    });
    expect(f!.records.map((r) => Buffer.from(r.data, 'base64').toString())).toEqual(['q1', 'BAD', 'q3']);
    expect(f!.KinesisBatchInfo).toMatchObject({
      shardId: puts[0]!.shard,
      batchSize: 3,
      startSequenceNumber: puts[0]!.seq,
      endSequenceNumber: puts[2]!.seq,
    });
  });

  it('ReportBatchItemFailures restarts from the lowest reported sequence number; records before it are not sent again', async () => {
    const stream = await createStream(kinesis, 1);
    const puts = await put(kinesis, stream, ['i0', 'i1', 'i2', 'i3', 'i4']);
    const rec = new Recorder();
    let calls = 0;
    const m = await start({
      streamName: stream,
      reportBatchItemFailures: true,
      retryAttempts: 3,
      invoke: async (event) => {
        rec.note(event);
        calls++;
        // First call: i3 and i1 failed (unordered on purpose); second call: i3 failed; then success.
        if (calls === 1) return { batchItemFailures: [{ itemIdentifier: puts[3]!.seq }, { itemIdentifier: puts[1]!.seq }] };
        if (calls === 2) return { batchItemFailures: [{ itemIdentifier: puts[3]!.seq }] };
        return { batchItemFailures: [] };
      },
    });
    await m.idle();
    expect(rec.events.map((e) => e.data)).toEqual([
      ['i0', 'i1', 'i2', 'i3', 'i4'],
      ['i1', 'i2', 'i3', 'i4'],
      ['i3', 'i4'],
    ]);
    expect(m.stats().perShard[puts[0]!.shard]).toMatchObject({ records: 5, failures: 2, discarded: 0, checkpoint: puts[4]!.seq });
  });

  it('ReportBatchItemFailures off: a partial-failure response is ignored, as in AWS', async () => {
    const stream = await createStream(kinesis, 1);
    const puts = await put(kinesis, stream, ['j0', 'j1']);
    const rec = new Recorder();
    const m = await start({
      streamName: stream,
      invoke: async (e) => {
        rec.note(e);
        return { batchItemFailures: [{ itemIdentifier: puts[0]!.seq }] };
      },
    });
    await m.idle();
    expect(rec.events).toHaveLength(1);
  });

  it('an invalid batch response fails the whole batch (retried from its first record, then to the destination)', async () => {
    const stream = await createStream(kinesis, 1);
    const puts = await put(kinesis, stream, ['k0', 'k1', 'k2']);
    const rec = new Recorder();
    const m = await start({
      name: 'invalid',
      streamName: stream,
      reportBatchItemFailures: true,
      retryAttempts: 1,
      onFailure: { s3, failureBucket: BUCKET, prefix: `invalid-${stream}/` },
      // Wrong key casing: Lambda treats this as a complete failure.
      invoke: async (e) => {
        rec.note(e);
        return { batchItemFailures: [{ ItemIdentifier: puts[1]!.seq }] };
      },
    });
    await m.idle();
    expect(rec.events.map((e) => e.data)).toEqual([
      ['k0', 'k1', 'k2'],
      ['k0', 'k1', 'k2'],
    ]);
    const [f] = await failureObjects(`invalid-${stream}/`);
    expect(f?.error?.type).toBe('InvalidBatchItemFailuresResponse');
    expect(f?.records).toHaveLength(3);
  });

  it('a function that times out fails its batch: bisect isolates the slow record (through the local runtime)', async () => {
    const stream = await createStream(kinesis, 1);
    const puts = await put(kinesis, stream, ['t0', 'SLOW', 't2', 't3']);
    const ok: string[] = [];
    const fn = wrapHandler(
      async (event: KinesisStreamEvent) => {
        const data = event.Records.map(decode);
        if (data.includes('SLOW')) await new Promise((r) => setTimeout(r, 3000));
        else ok.push(...data);
      },
      { name: 'slow-fn', entry: 'test', timeoutSeconds: 0.3 },
    );
    const m = await start({
      name: 'timeout',
      streamName: stream,
      batchSize: 4,
      bisectBatchOnError: true,
      retryAttempts: 0,
      onFailure: { s3, failureBucket: BUCKET, prefix: `timeout-${stream}/` },
      invoke: (e) => fn.invoke(e),
    });
    await m.idle();
    expect(ok).toEqual(['t0', 't2', 't3']);
    const [f, ...more] = await failureObjects(`timeout-${stream}/`);
    expect(more).toHaveLength(0);
    expect(f).toMatchObject({
      firstSequenceNumber: puts[1]!.seq,
      error: { type: 'Sandbox.Timedout', message: 'Task timed out after 0.30 seconds' },
    });
    expect(fn.stats().timeouts).toBeGreaterThanOrEqual(3);
  });

  it('records older than maxRecordAge are not retried forever: they go to the destination as RecordAgeExceeded', async () => {
    const stream = await createStream(kinesis, 1);
    let calls = 0;
    const m = await start({
      name: 'age',
      streamName: stream,
      retryAttempts: -1,
      maxRecordAgeSeconds: 2,
      retryBackoffMs: 300,
      onFailure: { s3, failureBucket: BUCKET, prefix: `age-${stream}/` },
      invoke: async () => {
        calls++;
        throw new Error('always failing');
      },
    });
    await m.idle();
    const puts = await put(kinesis, stream, ['old']);
    // Infinite retries, yet idle() returns: the record expires and the shard moves on.
    await m.idle();
    const [f] = await failureObjects(`age-${stream}/`);
    // How many invocations happened before it expired depends on the machine's speed; the object says.
    expect(f).toMatchObject({ condition: 'RecordAgeExceeded', firstSequenceNumber: puts[0]!.seq, approximateInvokeCount: calls });
    expect(m.stats().perShard[puts[0]!.shard]).toMatchObject({ checkpoint: puts[0]!.seq, discarded: 1, records: 0 });
  });

  it('a closed parent shard is drained before its children start', async () => {
    const stream = await createStream(kinesis, 1);
    await put(kinesis, stream, range(12, 'parent'));
    const [parent] = (await kinesis.send(new ListShardsCommand({ StreamName: stream }))).Shards!;
    await kinesis.send(
      new SplitShardCommand({ StreamName: stream, ShardToSplit: parent!.ShardId!, NewStartingHashKey: (2n ** 127n).toString() }),
    );
    let children: string[] = [];
    for (let i = 0; i < 100 && children.length < 2; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const shards = (await kinesis.send(new ListShardsCommand({ StreamName: stream }))).Shards!;
      children = shards.filter((s) => s.ParentShardId === parent!.ShardId).map((s) => s.ShardId!);
    }
    expect(children).toHaveLength(2);
    await put(kinesis, stream, range(6, 'child'));
    const rec = new Recorder();
    const m = await start({
      streamName: stream,
      batchSize: 3,
      invoke: async (event) => {
        rec.note(event);
        // Slow enough that children would interleave if they did not wait.
        await new Promise((r) => setTimeout(r, 40));
      },
    });
    await m.idle();
    const order = rec.events.map((e) => e.shard);
    const lastParent = order.lastIndexOf(parent!.ShardId!);
    const firstChild = order.findIndex((s) => children.includes(s));
    expect(lastParent).toBeGreaterThanOrEqual(0);
    expect(firstChild).toBeGreaterThan(lastParent);
    expect(rec.events.flatMap((e) => e.data).sort()).toEqual([...range(12, 'parent'), ...range(6, 'child')].sort());
    expect(m.stats().perShard[parent!.ShardId!]?.state).toBe('done');
  });

  it('runs a handler module loaded from its file, with the Lambda context', async () => {
    const stream = await createStream(kinesis, 1);
    await put(kinesis, stream, [{ n: 1 }, { n: 2 }]);
    const fn = await loadFunction<KinesisStreamEvent, { batchItemFailures: { itemIdentifier: string }[] }>({
      name: 'recorder-fn',
      entry: 'test/support/handlers/kinesis-sum.ts',
      timeoutSeconds: 5,
    });
    const results: unknown[] = [];
    const m = await start({
      streamName: stream,
      reportBatchItemFailures: true,
      invoke: async (e) => {
        const r = await fn.invoke(e);
        results.push(r);
        return r;
      },
    });
    await m.idle();
    expect(results).toEqual([{ batchItemFailures: [], sum: 3, functionName: 'recorder-fn', hadTimeLeft: true }]);
  });
});
