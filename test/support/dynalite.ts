/**
 * A real DynamoDB protocol server (dynalite) in this process, for tests that
 * need a table but no whole local cloud: the clients are the SDK's own, pointed
 * at it, so every request goes through the real protocol.
 */
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { createSpeedTables } from './speed.ts';

// dynalite ships no types: its factory returns a node http server. Loaded on use, so unit tests
// importing only the seam below never load the server.
const dynalite = (opts: { createTableMs?: number }) => (createRequire(import.meta.url)('dynalite') as (o: typeof opts) => Server)(opts);

export interface LocalDynamo {
  readonly dynamodb: DynamoDBClient;
  readonly doc: DynamoDBDocumentClient;
  /** A control table with the product's key schema. */
  readonly control: string;
  stop(): Promise<void>;
}

export async function startDynalite(): Promise<LocalDynamo> {
  const server = dynalite({ createTableMs: 0 });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const dynamodb = new DynamoDBClient({
    endpoint: `http://127.0.0.1:${port}`,
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  const doc = DynamoDBDocumentClient.from(dynamodb, { marshallOptions: { removeUndefinedValues: true } });
  const { control } = await createSpeedTables(dynamodb, 'test');
  return {
    dynamodb,
    doc,
    control,
    async stop() {
      dynamodb.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

type Send = (command: unknown, ...rest: unknown[]) => Promise<unknown>;

/**
 * The real document client behind a seam: counts the keys asked for (GetItem) and,
 * once `fail` is set, throws that error instead of sending (a store that is down).
 */
export function watchedDoc(real: DynamoDBDocumentClient) {
  const reads: string[] = [];
  const seam = {
    fail: undefined as Error | undefined,
    reads,
    doc: {
      send: async (command: { input?: { Key?: { sk?: string } } }, ...rest: unknown[]) => {
        const sk = command.input?.Key?.sk;
        if (sk !== undefined) reads.push(sk);
        if (seam.fail) throw seam.fail;
        return (real.send as Send)(command, ...rest);
      },
    } as Pick<DynamoDBDocumentClient, 'send'>,
  };
  return seam;
}
