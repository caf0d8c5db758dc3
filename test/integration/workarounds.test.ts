/**
 * What the emulators get wrong and the local cloud works around (the list in
 * docs/local-cloud.md, "The emulators, and what they lack"). Each test here fails when
 * its workaround is removed. (The TTL sweeper for dynalite has its own file:
 * sweeper.test.ts.)
 */
import { GetRecordsCommand, GetShardIteratorCommand, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Clients, createClients } from '../../functions/adapters/clients.ts';
import { type EmulatorSet, startEmulators } from '../../local/emulators.ts';
import { createStream } from '../support/kinesis.ts';

// The emulators and the project's clients, without provisioning: each test creates what it uses,
// so a removed workaround fails its own test, not the set-up of the whole file.
let emulators: EmulatorSet;
let clients: Clients;
const Bucket = 'wa-raw';

beforeAll(async () => {
  emulators = await startEmulators();
  clients = createClients(emulators.env);
  await clients.s3.send(new CreateBucketCommand({ Bucket }));
});

afterAll(async () => {
  // Close kept-alive connections first: emulators shut down gracefully only without open ones.
  for (const c of Object.values(clients ?? {})) c.destroy();
  await emulators?.stop();
});

describe('emulator workarounds', () => {
  it('s3rver lists past 1,000 keys (it answers 500 on Node 20 unless started with --openssl-legacy-provider)', async () => {
    const keys = Array.from({ length: 1005 }, (_, i) => `many/${String(i).padStart(5, '0')}`);
    for (let i = 0; i < keys.length; i += 50) {
      await Promise.all(keys.slice(i, i + 50).map((Key) => clients.s3.send(new PutObjectCommand({ Bucket, Key, Body: Buffer.from('x') }))));
    }
    const listed: string[] = [];
    let token: string | undefined;
    do {
      const page = await clients.s3.send(new ListObjectsV2Command({ Bucket, Prefix: 'many/', ...(token ? { ContinuationToken: token } : {}) }));
      listed.push(...(page.Contents ?? []).map((o) => o.Key!));
      token = page.NextContinuationToken;
    } while (token);
    expect(listed).toEqual(keys);
  });

  it('s3rver stores a streamed body intact (it corrupts it when the SDK adds checksum trailers: clients.ts sets WHEN_REQUIRED)', async () => {
    const body = Buffer.from(Array.from({ length: 20_000 }, (_, i) => `line ${i}\n`).join(''));
    await clients.s3.send(new PutObjectCommand({ Bucket, Key: 'stream/a.txt', Body: Readable.from([body.subarray(0, 70_000), body.subarray(70_000)]), ContentLength: body.length }));
    const got = await clients.s3.send(new GetObjectCommand({ Bucket, Key: 'stream/a.txt' }));
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(body)).toBe(true);
  });

  it('the Kinesis client reaches kinesalite over HTTP/1.1 and each PutRecords is stored once (the client defaults to HTTP/2, which kinesalite does not speak: every call fails with "Protocol error")', async () => {
    // kinesis-local, the emulator before, failed PutRecords under HTTP/2 only some of the time, after
    // storing them: the retries duplicated records, which the exact list below would also catch.
    const StreamName = await createStream(clients.kinesis, 1);
    const n = 40;
    for (let i = 0; i < n; i++) {
      await clients.kinesis.send(new PutRecordsCommand({ StreamName, Records: [{ PartitionKey: `p${i}`, Data: Buffer.from(`r${i}`) }] }));
    }
    const it = await clients.kinesis.send(new GetShardIteratorCommand({ StreamName, ShardId: 'shardId-000000000000', ShardIteratorType: 'TRIM_HORIZON' }));
    const got = await clients.kinesis.send(new GetRecordsCommand({ ShardIterator: it.ShardIterator! }));
    expect((got.Records ?? []).map((r) => Buffer.from(r.Data!).toString())).toEqual(Array.from({ length: n }, (_, i) => `r${i}`));
  });
});
