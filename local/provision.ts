/**
 * Creates the stream, tables and buckets of resources.ts in the emulators
 * (idempotent: existing ones are kept, so a restart with --data-dir reuses them).
 */
import { CreateTableCommand, DescribeTableCommand, ResourceInUseException } from '@aws-sdk/client-dynamodb';
import { CreateStreamCommand, DescribeStreamSummaryCommand, ResourceInUseException as KinesisInUse } from '@aws-sdk/client-kinesis';
import { CreateBucketCommand, HeadBucketCommand } from '@aws-sdk/client-s3';
import type { Clients } from '../functions/adapters/clients.ts';
import { BUCKETS, STREAM, TABLES } from '../functions/resources.ts';

export interface ProvisionOptions {
  /** Physical names by environment variable (see resources.localNames). */
  readonly names: Readonly<Record<string, string>>;
  readonly shards?: number;
}

export async function provision(c: Clients, opts: ProvisionOptions): Promise<void> {
  const name = (env: string) => {
    const n = opts.names[env];
    if (!n) throw new Error(`no physical name for ${env}`);
    return n;
  };
  await Promise.all([
    ...Object.values(TABLES).map(async (t) => {
      const TableName = name(t.env);
      try {
        await c.dynamodb.send(
          new CreateTableCommand({
            TableName,
            BillingMode: 'PAY_PER_REQUEST',
            AttributeDefinitions: [t.partitionKey, ...('sortKey' in t ? [t.sortKey] : [])].map((k) => ({
              AttributeName: k.name,
              AttributeType: k.type,
            })),
            KeySchema: [
              { AttributeName: t.partitionKey.name, KeyType: 'HASH' },
              ...('sortKey' in t ? [{ AttributeName: t.sortKey.name, KeyType: 'RANGE' as const }] : []),
            ],
          }),
        );
      } catch (e) {
        if (!(e instanceof ResourceInUseException)) throw e;
      }
      for (let i = 0; i < 100; i++) {
        const d = await c.dynamodb.send(new DescribeTableCommand({ TableName }));
        if (d.Table?.TableStatus === 'ACTIVE') return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`table ${TableName} did not become ACTIVE`);
    }),
    ...Object.values(BUCKETS).map(async (b) => {
      const Bucket = name(b.env);
      try {
        await c.s3.send(new HeadBucketCommand({ Bucket }));
      } catch {
        await c.s3.send(new CreateBucketCommand({ Bucket }));
      }
    }),
    (async () => {
      const StreamName = name(STREAM.env);
      try {
        await c.kinesis.send(new CreateStreamCommand({ StreamName, ShardCount: opts.shards ?? STREAM.defaultShards }));
      } catch (e) {
        if (!(e instanceof KinesisInUse)) throw e;
      }
      for (let i = 0; i < 200; i++) {
        const d = await c.kinesis.send(new DescribeStreamSummaryCommand({ StreamName }));
        if (d.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`stream ${StreamName} did not become ACTIVE`);
    })(),
  ]);
}
