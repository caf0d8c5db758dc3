import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import {
  CreateStreamCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  ListShardsCommand,
  PutRecordCommand,
  PutRecordsCommand,
} from '@aws-sdk/client-kinesis';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClients } from '../../functions/adapters/clients.ts';
import { EmulatorError, emulatorEnv, freePort, startEmulator, startEmulators } from '../../local/emulators.ts';
import { startTestCloud, type TestCloud } from '../support/cloud.ts';

describe('emulators through the AWS SDK', () => {
  let cloud: TestCloud;
  beforeAll(async () => {
    cloud = await startTestCloud();
  });
  afterAll(async () => {
    await cloud?.stop();
  });

  it('the Kinesis emulator (kinesalite) stores and returns a record with an arrival timestamp and a 56-digit sequence number', async () => {
    const StreamName = cloud.names.TANDEM_STREAM_NAME!;
    const put = await cloud.clients.kinesis.send(new PutRecordCommand({ StreamName, PartitionKey: 'a', Data: Buffer.from('{"x":1}') }));
    const it = await cloud.clients.kinesis.send(
      new GetShardIteratorCommand({ StreamName, ShardId: put.ShardId!, ShardIteratorType: 'TRIM_HORIZON' }),
    );
    const got = await cloud.clients.kinesis.send(new GetRecordsCommand({ ShardIterator: it.ShardIterator! }));
    expect(got.Records?.[0]?.SequenceNumber).toBe(put.SequenceNumber);
    expect(got.Records?.[0]?.ApproximateArrivalTimestamp).toBeInstanceOf(Date);
    expect(put.SequenceNumber).toMatch(/^\d{56}$/);
    const shards = await cloud.clients.kinesis.send(new ListShardsCommand({ StreamName }));
    expect(shards.Shards).toHaveLength(2);
  });

  it('dynalite round-trips an item', async () => {
    const TableName = cloud.names.TANDEM_DEDUP_TABLE!;
    await cloud.clients.dynamodb.send(new PutItemCommand({ TableName, Item: { id: { S: 'e1' }, seq: { S: '1' } } }));
    const got = await cloud.clients.dynamodb.send(new GetItemCommand({ TableName, Key: { id: { S: 'e1' } } }));
    expect(got.Item?.seq?.S).toBe('1');
  });

  it('s3rver round-trips an object', async () => {
    const Bucket = cloud.names.TANDEM_RAW_BUCKET!;
    await cloud.clients.s3.send(new PutObjectCommand({ Bucket, Key: 'raw/a.txt', Body: Buffer.from('hello') }));
    const got = await cloud.clients.s3.send(new GetObjectCommand({ Bucket, Key: 'raw/a.txt' }));
    expect(await got.Body?.transformToString()).toBe('hello');
  });
});

/** Local addresses (hex, as /proc/net/tcp{,6} print them) of the sockets listening on a port. */
function listeningAddresses(port: number): string[] {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  return ['/proc/net/tcp', '/proc/net/tcp6'].flatMap((f) =>
    readFileSync(f, 'utf8')
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s+/))
      .filter((cols) => cols[1]?.endsWith(`:${hexPort}`) && cols[3] === '0A')
      .map((cols) => cols[1]!.split(':')[0]!),
  );
}

describe('emulator start-up', () => {
  it('every emulator listens on 127.0.0.1 only, not on every interface', async () => {
    const set = await startEmulators();
    try {
      for (const e of [set.kinesis, set.dynamodb, set.s3])
        expect({ [e.name]: listeningAddresses(e.port) }).toEqual({ [e.name]: ['0100007F'] });
    } finally {
      await set.stop();
    }
  });

  it('kinesalite closes its store and exits 0 on SIGTERM (its own CLI has no handler: the signal kills it)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-kinesalite-'));
    try {
      const k = await startEmulator('kinesis', { dataDir: dir, kinesisEngine: 'kinesalite' });
      const exit = new Promise<[number | null, string | null]>((res) => k.process.once('exit', (code, signal) => res([code, signal])));
      k.process.kill('SIGTERM');
      expect(await exit).toEqual([0, null]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the emulator when its fixed port is taken', async () => {
    const port = await freePort();
    const blocker = createServer();
    await new Promise<void>((res) => blocker.listen(port, '127.0.0.1', () => res()));
    try {
      await expect(startEmulator('kinesis', { port })).rejects.toThrow(new RegExp(`kinesis emulator: port ${port} is already in use`));
    } finally {
      blocker.close();
    }
  });

  it('kinesalite keeps every acknowledged put across a SIGKILL (LevelDB on disk, no persist interval)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-kinesalite-'));
    const kinesisOf = (e: { endpoint: string }) =>
      createClients({ ...process.env, ...emulatorEnv({ kinesis: e, dynamodb: e, s3: e }) }).kinesis;
    let k = await startEmulator('kinesis', { dataDir: dir, kinesisEngine: 'kinesalite' });
    try {
      await kinesisOf(k).send(new CreateStreamCommand({ StreamName: 's', ShardCount: 1 }));
      await new Promise((r) => setTimeout(r, 200));
      const put = await kinesisOf(k).send(
        new PutRecordsCommand({
          StreamName: 's',
          Records: Array.from({ length: 50 }, (_, i) => ({ PartitionKey: `p${i}`, Data: Buffer.from(`r${i}`) })),
        }),
      );
      expect(put.FailedRecordCount ?? 0).toBe(0);
      await k.kill();
      k = await startEmulator('kinesis', { dataDir: dir, kinesisEngine: 'kinesalite' });
      const it = await kinesisOf(k).send(
        new GetShardIteratorCommand({ StreamName: 's', ShardId: 'shardId-000000000000', ShardIteratorType: 'TRIM_HORIZON' }),
      );
      const got = await kinesisOf(k).send(new GetRecordsCommand({ ShardIterator: it.ShardIterator! }));
      expect(got.Records?.map((r) => Buffer.from(r.Data!).toString())).toEqual(Array.from({ length: 50 }, (_, i) => `r${i}`));
      expect(got.Records?.map((r) => r.SequenceNumber)).toEqual(put.Records?.map((r) => r.SequenceNumber));
    } finally {
      await k.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fails at once, naming the emulator, when kinesis-local finds its TLS port (port + 1) taken', async () => {
    // A free port whose next one this test can take (another test's server may hold it: then another port).
    const blocker = createServer();
    let port = 0;
    for (let attempt = 0; port === 0; attempt++) {
      const p = await freePort();
      const bound = await new Promise<boolean>((res, rej) => {
        blocker.once('error', (e: NodeJS.ErrnoException) => (e.code === 'EADDRINUSE' && attempt < 20 ? res(false) : rej(e)));
        blocker.listen(p + 1, () => res(true));
      });
      if (bound) port = p;
    }
    try {
      const err = await startEmulator('kinesis', { port, kinesisEngine: 'kinesis-local' }).then(
        async (e) => {
          await e.stop();
          return undefined;
        },
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(EmulatorError);
      expect((err as Error).message).toMatch(/kinesis emulator: .*EADDRINUSE/s);
      // seen in the emulator's own output, not after the 60 s readiness deadline
      expect((err as Error).message).not.toMatch(/within 60 s/);
    } finally {
      blocker.close();
    }
  });
});
