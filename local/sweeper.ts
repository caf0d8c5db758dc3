/**
 * DynamoDB TTL for dynalite, which has none (UpdateTimeToLive is an unknown
 * operation and nothing ever expires): periodically scans every table that
 * resources.ts gives a TTL attribute and deletes the items whose expiry
 * (epoch seconds) has passed. As in AWS, readers must still filter expired
 * items themselves: deletion comes late (here: up to one interval).
 */

import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { DeleteItemCommand, type DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import type { LogSink } from '../functions/adapters/log.ts';
import { TABLES } from '../functions/resources.ts';
import { trimStream } from './stream-trim.ts';

export interface SweepTarget {
  readonly table: string;
  readonly ttlAttribute: string;
  readonly keys: readonly string[];
}

/** The tables to sweep, from resources.ts and the local physical names (env variable -> name). */
export function sweepTargets(names: Readonly<Record<string, string>>): SweepTarget[] {
  const out: SweepTarget[] = [];
  for (const t of Object.values(TABLES)) {
    if (!t.ttlAttribute) continue;
    const table = names[t.env];
    if (!table) throw new Error(`no physical name for ${t.env}`);
    out.push({ table, ttlAttribute: t.ttlAttribute, keys: [t.partitionKey.name, ...('sortKey' in t ? [t.sortKey.name] : [])] });
  }
  return out;
}

/** Deletes every expired item of the targets once; returns how many were deleted. */
export async function sweepOnce(
  dynamodb: DynamoDBClient,
  targets: readonly SweepTarget[],
  nowSeconds = Math.floor(Date.now() / 1000),
): Promise<number> {
  let deleted = 0;
  for (const t of targets) {
    let start: Record<string, AttributeValue> | undefined;
    do {
      const page = await dynamodb.send(
        new ScanCommand({
          TableName: t.table,
          FilterExpression: '#ttl < :now',
          ProjectionExpression: t.keys.map((_, i) => `#k${i}`).join(', '),
          ExpressionAttributeNames: { '#ttl': t.ttlAttribute, ...Object.fromEntries(t.keys.map((k, i) => [`#k${i}`, k])) },
          ExpressionAttributeValues: { ':now': { N: String(nowSeconds) } },
          ...(start ? { ExclusiveStartKey: start } : {}),
        }),
      );
      const items = page.Items ?? [];
      // Conditional deletes, a few at a time: an item re-written with a later expiry
      // since the scan (a renewed lock, say) must survive.
      for (let i = 0; i < items.length; i += 8) {
        const results = await Promise.allSettled(
          items.slice(i, i + 8).map((Key) =>
            dynamodb.send(
              new DeleteItemCommand({
                TableName: t.table,
                Key,
                ConditionExpression: '#ttl < :now',
                ExpressionAttributeNames: { '#ttl': t.ttlAttribute },
                ExpressionAttributeValues: { ':now': { N: String(nowSeconds) } },
              }),
            ),
          ),
        );
        for (const r of results) {
          if (r.status === 'fulfilled') deleted++;
          else if ((r.reason as { name?: string }).name !== 'ConditionalCheckFailedException') throw r.reason;
        }
      }
      start = page.LastEvaluatedKey;
    } while (start);
  }
  return deleted;
}

export interface Sweeper {
  /** Sweeps now (waits for a sweep already running). */
  sweep(): Promise<number>;
  stop(): Promise<void>;
}

export function startSweeper(opts: {
  dynamodb: DynamoDBClient;
  targets: readonly SweepTarget[];
  /** @default 60000 */
  intervalMs?: number;
  /** Also enforce the stream's retention (kinesalite: local/stream-trim.ts) every `everySweeps` sweeps. */
  stream?: { kinesis: KinesisClient; streamName: string; everySweeps: number };
  logger?: Pick<LogSink, 'warn' | 'debug'>;
}): Sweeper {
  let running: Promise<number> | undefined;
  let stopped = false;
  let sweeps = 0;
  const once = async () => {
    const n = await sweepOnce(opts.dynamodb, opts.targets);
    if (opts.stream && sweeps++ % opts.stream.everySweeps === 0) await trimStream(opts.stream.kinesis, opts.stream.streamName);
    return n;
  };
  const sweep = () => {
    running ??= once().finally(() => {
      running = undefined;
    });
    return running;
  };
  const timer = setInterval(() => {
    if (stopped) return;
    sweep().then(
      (n) => n > 0 && opts.logger?.debug?.(`sweeper: deleted ${n} expired item(s)`),
      (e) => opts.logger?.warn('sweeper: sweep failed', e),
    );
  }, opts.intervalMs ?? 60_000);
  timer.unref();
  return {
    sweep,
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      await running?.catch(() => undefined);
    },
  };
}
