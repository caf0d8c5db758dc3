/**
 * dynalite has no TTL: without the sweeper an expired item stays forever
 * (asserted first, so this test fails if the workaround is removed or
 * becomes unnecessary). The sweeper deletes exactly the expired items.
 */
import { CreateTableCommand, GetItemCommand, PutItemCommand, ScanCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClients } from '../../functions/adapters/clients.ts';
import { localNames, TABLES } from '../../functions/resources.ts';
import { emulatorEnv, type RunningEmulator, startEmulator } from '../../local/emulators.ts';
import { startSweeper, sweepOnce, sweepTargets } from '../../local/sweeper.ts';

let dynamo: RunningEmulator;
let clients: ReturnType<typeof createClients>;
const names = localNames('sweep');

beforeAll(async () => {
  dynamo = await startEmulator('dynamodb');
  clients = createClients(
    emulatorEnv({ dynamodb: dynamo, kinesis: { endpoint: 'http://127.0.0.1:9' }, s3: { endpoint: 'http://127.0.0.1:9' } }),
  );
  // Only the tables of resources.ts: this file needs no stream or bucket.
  for (const t of Object.values(TABLES)) {
    await clients.dynamodb.send(
      new CreateTableCommand({
        TableName: names[t.env],
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
  }
});

afterAll(async () => {
  clients?.dynamodb.destroy();
  await dynamo?.stop();
});

const now = () => Math.floor(Date.now() / 1000);

describe('TTL sweeper for dynalite', () => {
  it('dynalite itself never expires an item; the sweeper deletes exactly the expired ones', async () => {
    const control = names.TANDEM_CONTROL_TABLE!;
    const dedup = names.TANDEM_DEDUP_TABLE!;
    const put = (TableName: string, Item: Record<string, { S: string } | { N: string }>) =>
      clients.dynamodb.send(new PutItemCommand({ TableName, Item }));
    await put(control, { pk: { S: 'lock' }, sk: { S: 'old' }, expiresAt: { N: String(now() - 10) } });
    await put(control, { pk: { S: 'lock' }, sk: { S: 'live' }, expiresAt: { N: String(now() + 3600) } });
    await put(control, { pk: { S: 'pointer' }, sk: { S: 'current' } });
    for (let i = 0; i < 30; i++) await put(dedup, { id: { S: `e${i}` }, expiresAt: { N: String(i % 2 ? now() - 1 : now() + 3600) } });

    // The emulator's gap: the expired item is still there (a TTL-capable store may take a while too, but never "after a read").
    const before = await clients.dynamodb.send(new GetItemCommand({ TableName: control, Key: { pk: { S: 'lock' }, sk: { S: 'old' } } }));
    expect(before.Item).toBeDefined();

    const deleted = await sweepOnce(clients.dynamodb, sweepTargets(names));
    expect(deleted).toBe(16);
    const controlLeft = (await clients.dynamodb.send(new ScanCommand({ TableName: control }))).Items!.map((i) => i.sk!.S).sort();
    expect(controlLeft).toEqual(['current', 'live']);
    const dedupLeft = (await clients.dynamodb.send(new ScanCommand({ TableName: dedup })))
      .Items!.map((i) => Number(i.id!.S!.slice(1)))
      .sort((a, b) => a - b);
    expect(dedupLeft).toEqual(Array.from({ length: 15 }, (_, i) => i * 2));
  });

  it('sweepTargets covers every table with a TTL attribute', () => {
    expect(
      sweepTargets(names)
        .map((t) => t.table)
        .sort(),
    ).toEqual([names.TANDEM_BATCH_VIEWS_TABLE, names.TANDEM_CONTROL_TABLE, names.TANDEM_DEDUP_TABLE, names.TANDEM_SPEED_TABLE].sort());
    expect(sweepTargets(names).find((t) => t.table === names.TANDEM_SPEED_TABLE)?.keys).toEqual(['pk', 'sk']);
  });

  it('the periodic sweeper runs on its own and stops cleanly', async () => {
    const speed = names.TANDEM_SPEED_TABLE!;
    await clients.dynamodb.send(
      new PutItemCommand({ TableName: speed, Item: { pk: { S: 'v#1#0' }, sk: { S: 'x' }, expiresAt: { N: String(now() - 5) } } }),
    );
    const sweeper = startSweeper({ dynamodb: clients.dynamodb, targets: sweepTargets(names), intervalMs: 50 });
    for (let i = 0; i < 100; i++) {
      const got = await clients.dynamodb.send(new GetItemCommand({ TableName: speed, Key: { pk: { S: 'v#1#0' }, sk: { S: 'x' } } }));
      if (!got.Item) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await sweeper.stop();
    const got = await clients.dynamodb.send(new GetItemCommand({ TableName: speed, Key: { pk: { S: 'v#1#0' }, sk: { S: 'x' } } }));
    expect(got.Item).toBeUndefined();
  });
});
