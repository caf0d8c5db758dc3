import { PutItemCommand, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { GetRecordsCommand, GetShardIteratorCommand, ListShardsCommand, PutRecordCommand } from '@aws-sdk/client-kinesis';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmulatorError, freePort, startEmulator } from '../../local/emulators.ts';
import { startTestCloud, type TestCloud } from '../support/cloud.ts';

describe('emulators through the AWS SDK', () => {
  let cloud: TestCloud;
  beforeAll(async () => {
    cloud = await startTestCloud();
  });
  afterAll(async () => {
    await cloud?.stop();
  });

  it('kinesis-local stores and returns a record with an arrival timestamp', async () => {
    const StreamName = cloud.names.TANDEM_STREAM_NAME!;
    const put = await cloud.clients.kinesis.send(new PutRecordCommand({ StreamName, PartitionKey: 'a', Data: Buffer.from('{"x":1}') }));
    const it = await cloud.clients.kinesis.send(
      new GetShardIteratorCommand({ StreamName, ShardId: put.ShardId!, ShardIteratorType: 'TRIM_HORIZON' }),
    );
    const got = await cloud.clients.kinesis.send(new GetRecordsCommand({ ShardIterator: it.ShardIterator! }));
    expect(got.Records?.[0]?.SequenceNumber).toBe(put.SequenceNumber);
    expect(got.Records?.[0]?.ApproximateArrivalTimestamp).toBeInstanceOf(Date);
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

describe('emulator start-up', () => {
  it('fails at once, naming the emulator, when kinesis-local finds its TLS port (port + 1) taken', async () => {
    const port = await freePort();
    const blocker = createServer();
    await new Promise<void>((res, rej) => {
      blocker.once('error', rej);
      blocker.listen(port + 1, () => res());
    });
    try {
      const err = await startEmulator('kinesis', { port }).then(
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
