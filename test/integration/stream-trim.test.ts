/**
 * kinesalite enforces the stream's retention only when a GetRecords call
 * passes over expired records; the pollers never read behind their
 * checkpoints, so without the local cloud's trim every record ever put stays on
 * disk. Records are aged by running kinesalite with its clock 25 h behind
 * (test/support/clock-shift.cjs), then reading with the real clock. Whether a
 * record is still stored is seen by reading with the shifted clock again
 * (kinesalite then hides nothing).
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CreateStreamCommand,
  DescribeStreamSummaryCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  type KinesisClient,
  PutRecordsCommand,
} from '@aws-sdk/client-kinesis';
import { afterAll, describe, expect, it } from 'vitest';
import { createClients } from '../../functions/adapters/clients.ts';
import { emulatorEnv, type RunningEmulator, startEmulator } from '../../local/emulators.ts';
import { trimStream } from '../../local/stream-trim.ts';

const dir = mkdtempSync(join(tmpdir(), 'tandem-trim-'));
const clockShift = join(dirname(fileURLToPath(import.meta.url)), '..', 'support', 'clock-shift.cjs');
const DAY_AND_HOUR_AGO = { NODE_OPTIONS: `--require ${clockShift}`, TANDEM_CLOCK_SHIFT_MS: String(-25 * 3_600_000) };
let running: RunningEmulator | undefined;

async function kinesalite(env?: Record<string, string>): Promise<KinesisClient> {
  await running?.stop();
  running = await startEmulator('kinesis', { dataDir: dir, kinesisEngine: 'kinesalite', ...(env ? { env } : {}) });
  return createClients({ ...process.env, ...emulatorEnv({ kinesis: running, dynamodb: running, s3: running }) }).kinesis;
}

async function put(k: KinesisClient, stream: string, prefix: string, n: number): Promise<void> {
  for (let from = 0; from < n; from += 500) {
    const Records = Array.from({ length: Math.min(500, n - from) }, (_, i) => ({
      PartitionKey: `${prefix}${from + i}`,
      Data: Buffer.from(`${prefix}${from + i}`),
    }));
    const r = await k.send(new PutRecordsCommand({ StreamName: stream, Records }));
    expect(r.FailedRecordCount ?? 0).toBe(0);
  }
}

async function stored(k: KinesisClient, stream: string): Promise<string[]> {
  const it = await k.send(
    new GetShardIteratorCommand({ StreamName: stream, ShardId: 'shardId-000000000000', ShardIteratorType: 'TRIM_HORIZON' }),
  );
  const got = await k.send(new GetRecordsCommand({ ShardIterator: it.ShardIterator!, Limit: 10_000 }));
  return (got.Records ?? []).map((r) => Buffer.from(r.Data!).toString());
}

afterAll(async () => {
  await running?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('stream retention for kinesalite (local/stream-trim.ts)', () => {
  it('deletes the records past the retention, and without the trim they stay stored', async () => {
    let k = await kinesalite(DAY_AND_HOUR_AGO);
    for (const s of ['trimmed', 'untouched']) {
      await k.send(new CreateStreamCommand({ StreamName: s, ShardCount: 1 }));
      while ((await k.send(new DescribeStreamSummaryCommand({ StreamName: s }))).StreamDescriptionSummary?.StreamStatus !== 'ACTIVE')
        await new Promise((r) => setTimeout(r, 50));
      await put(k, s, 'old', 1500);
    }

    k = await kinesalite();
    for (const s of ['trimmed', 'untouched']) await put(k, s, 'new', 5);
    // No read here: any GetRecords from the start would itself delete what it passes.
    const pages = await trimStream(k, 'trimmed');
    expect(pages).toBeGreaterThan(0);

    k = await kinesalite(DAY_AND_HOUR_AGO);
    expect(await stored(k, 'trimmed')).toEqual(['new0', 'new1', 'new2', 'new3', 'new4']);
    const kept = await stored(k, 'untouched');
    expect(kept).toHaveLength(1505);
    expect(kept.slice(0, 2)).toEqual(['old0', 'old1']);
  });
});
