import { PutItemCommand, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { GetRecordsCommand, GetShardIteratorCommand, ListShardsCommand, PutRecordCommand } from '@aws-sdk/client-kinesis';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
