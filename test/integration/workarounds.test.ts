/**
 * What the emulators get wrong and the local cloud works around (the list in
 * docs/local-cloud.md, "The emulators, and what they lack"). Each test here fails when
 * its workaround is removed. (The TTL sweeper for dynalite has its own file:
 * sweeper.test.ts.)
 */

import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { BatchWriteItemCommand, CreateTableCommand, QueryCommand, ScanCommand, waitUntilTableExists } from '@aws-sdk/client-dynamodb';
import { GetRecordsCommand, GetShardIteratorCommand, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Clients, createClients } from '../../functions/adapters/clients.ts';
import { type EmulatorSet, emulatorEnv, startEmulator, startEmulators } from '../../local/emulators.ts';
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
      const page = await clients.s3.send(
        new ListObjectsV2Command({ Bucket, Prefix: 'many/', ...(token ? { ContinuationToken: token } : {}) }),
      );
      listed.push(...(page.Contents ?? []).map((o) => o.Key!));
      token = page.NextContinuationToken;
    } while (token);
    expect(listed).toEqual(keys);
  });

  // s3rver corrupts a streamed body when the SDK adds checksum trailers: clients.ts sets WHEN_REQUIRED.
  it('s3rver stores a streamed body intact', async () => {
    const body = Buffer.from(Array.from({ length: 20_000 }, (_, i) => `line ${i}\n`).join(''));
    await clients.s3.send(
      new PutObjectCommand({
        Bucket,
        Key: 'stream/a.txt',
        Body: Readable.from([body.subarray(0, 70_000), body.subarray(70_000)]),
        ContentLength: body.length,
      }),
    );
    const got = await clients.s3.send(new GetObjectCommand({ Bucket, Key: 'stream/a.txt' }));
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(body)).toBe(true);
  });

  // The client defaults to HTTP/2, which kinesalite does not speak: every call fails with "Protocol error".
  it('the Kinesis client reaches kinesalite over HTTP/1.1 and each PutRecords is stored once', async () => {
    // kinesis-local, the emulator before, failed PutRecords under HTTP/2 only some of the time, after
    // storing them: the retries duplicated records, which the exact list below would also catch.
    const StreamName = await createStream(clients.kinesis, 1);
    const n = 40;
    for (let i = 0; i < n; i++) {
      await clients.kinesis.send(new PutRecordsCommand({ StreamName, Records: [{ PartitionKey: `p${i}`, Data: Buffer.from(`r${i}`) }] }));
    }
    const it = await clients.kinesis.send(
      new GetShardIteratorCommand({ StreamName, ShardId: 'shardId-000000000000', ShardIteratorType: 'TRIM_HORIZON' }),
    );
    const got = await clients.kinesis.send(new GetRecordsCommand({ ShardIterator: it.ShardIterator! }));
    expect((got.Records ?? []).map((r) => Buffer.from(r.Data!).toString())).toEqual(Array.from({ length: n }, (_, i) => `r${i}`));
  });

  // As published, dynalite leaves every iterator open, and they pin its memory: local/dynalite-iterators.cjs.
  it('dynalite closes the LevelDB iterator of every Query and Scan', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-iterators-'));
    /** Open iterators after a mix of reads: full, cut by Limit, backwards, scans. */
    const openAfterReads = async (dynaliteAsShipped: boolean): Promise<number> => {
      const file = join(dir, `open-${dynaliteAsShipped}`);
      const e = await startEmulator('dynamodb', {
        dataDir: join(dir, `db-${dynaliteAsShipped}`),
        dynaliteAsShipped,
        env: { NODE_OPTIONS: `--require ${join(import.meta.dirname, '../support/level-iterators.cjs')}`, TANDEM_ITERATORS_FILE: file },
      });
      const { dynamodb } = createClients(emulatorEnv({ kinesis: e, dynamodb: e, s3: e }));
      try {
        const TableName = 'iterators';
        await dynamodb.send(
          new CreateTableCommand({
            TableName,
            KeySchema: [
              { AttributeName: 'pk', KeyType: 'HASH' },
              { AttributeName: 'sk', KeyType: 'RANGE' },
            ],
            AttributeDefinitions: [
              { AttributeName: 'pk', AttributeType: 'S' },
              { AttributeName: 'sk', AttributeType: 'S' },
            ],
            BillingMode: 'PAY_PER_REQUEST',
          }),
        );
        // createTableMs 0 still flips the table to ACTIVE on a later tick: a loaded machine can write before it.
        await waitUntilTableExists({ client: dynamodb, maxWaitTime: 30, minDelay: 0.05, maxDelay: 0.2 }, { TableName });
        const Item = (i: number) => ({ pk: { S: 'p' }, sk: { S: String(i).padStart(3, '0') } });
        await dynamodb.send(
          new BatchWriteItemCommand({
            RequestItems: { [TableName]: Array.from({ length: 25 }, (_, i) => ({ PutRequest: { Item: Item(i) } })) },
          }),
        );
        const key = { KeyConditionExpression: 'pk = :p', ExpressionAttributeValues: { ':p': { S: 'p' } } };
        for (let i = 0; i < 10; i++) {
          await dynamodb.send(new QueryCommand({ TableName, ...key }));
          await dynamodb.send(new QueryCommand({ TableName, ...key, Limit: 3 }));
          await dynamodb.send(new QueryCommand({ TableName, ...key, Limit: 3, ScanIndexForward: false }));
          await dynamodb.send(new ScanCommand({ TableName }));
          await dynamodb.send(new ScanCommand({ TableName, Limit: 5 }));
        }
        // The count is written within 20 ms of a change; closing is asynchronous: let both settle.
        let last = '';
        for (let stable = 0; stable < 5; ) {
          await new Promise((r) => setTimeout(r, 100));
          const now = existsSync(file) ? readFileSync(file, 'utf8') : '';
          stable = now === last && now !== '' ? stable + 1 : 0;
          last = now;
        }
        return Number(last);
      } finally {
        dynamodb.destroy();
        await e.stop();
      }
    };
    try {
      expect(await openAfterReads(true)).toBeGreaterThanOrEqual(50);
      expect(await openAfterReads(false)).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
