/**
 * What the emulators get wrong and the local cloud works around (the list in
 * docs/local-cloud.md, "What the emulators lack"). Each test here fails when
 * its workaround is removed. (The TTL sweeper for dynalite has its own file:
 * sweeper.test.ts.)
 */
import { GetRecordsCommand, GetShardIteratorCommand, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCloud, type TestCloud } from '../support/cloud.ts';

let cloud: TestCloud;

beforeAll(async () => {
  cloud = await startTestCloud({ shards: 1, prefix: 'wa' });
});

afterAll(async () => {
  await cloud?.stop();
});

describe('emulator workarounds', () => {
  it('s3rver lists past 1,000 keys (it answers 500 on Node 20 unless started with --openssl-legacy-provider)', async () => {
    const Bucket = cloud.names.TANDEM_RAW_BUCKET!;
    const keys = Array.from({ length: 1005 }, (_, i) => `many/${String(i).padStart(5, '0')}`);
    for (let i = 0; i < keys.length; i += 50) {
      await Promise.all(keys.slice(i, i + 50).map((Key) => cloud.clients.s3.send(new PutObjectCommand({ Bucket, Key, Body: Buffer.from('x') }))));
    }
    const listed: string[] = [];
    let token: string | undefined;
    do {
      const page = await cloud.clients.s3.send(new ListObjectsV2Command({ Bucket, Prefix: 'many/', ...(token ? { ContinuationToken: token } : {}) }));
      listed.push(...(page.Contents ?? []).map((o) => o.Key!));
      token = page.NextContinuationToken;
    } while (token);
    expect(listed).toEqual(keys);
  });

  it('s3rver stores a streamed body intact (it corrupts it when the SDK adds checksum trailers: clients.ts sets WHEN_REQUIRED)', async () => {
    const Bucket = cloud.names.TANDEM_RAW_BUCKET!;
    const body = Buffer.from(Array.from({ length: 20_000 }, (_, i) => `line ${i}\n`).join(''));
    await cloud.clients.s3.send(new PutObjectCommand({ Bucket, Key: 'stream/a.txt', Body: Readable.from([body.subarray(0, 70_000), body.subarray(70_000)]), ContentLength: body.length }));
    const got = await cloud.clients.s3.send(new GetObjectCommand({ Bucket, Key: 'stream/a.txt' }));
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(body)).toBe(true);
  });

  it('kinesis-local stores each PutRecords exactly once over the HTTP/1.1 handler (HTTP/2 fails after storing, and the retry duplicates)', async () => {
    const StreamName = cloud.names.TANDEM_STREAM_NAME!;
    const n = 40;
    for (let i = 0; i < n; i++) {
      await cloud.clients.kinesis.send(new PutRecordsCommand({ StreamName, Records: [{ PartitionKey: `p${i}`, Data: Buffer.from(`r${i}`) }] }));
    }
    const it = await cloud.clients.kinesis.send(new GetShardIteratorCommand({ StreamName, ShardId: 'shardId-000000000000', ShardIteratorType: 'TRIM_HORIZON' }));
    const got = await cloud.clients.kinesis.send(new GetRecordsCommand({ ShardIterator: it.ShardIterator! }));
    expect((got.Records ?? []).map((r) => Buffer.from(r.Data!).toString())).toEqual(Array.from({ length: n }, (_, i) => `r${i}`));
  });
});
