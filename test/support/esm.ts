/**
 * The speed layer's crash-hook runs on the local event source mapping: per
 * invocation, nothing, a crash before or after the handler, or a DynamoDB
 * fault inside it; and a stream drained through the real speed handler under
 * such hooks.
 */
import fc from 'fast-check';
import type { Clients } from '../../functions/adapters/clients.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import type { Settings } from '../../functions/core/settings.ts';
import { ItemCache } from '../../functions/speed/apply.ts';
import { createSpeedHandler } from '../../functions/speed/handler.ts';
import { startEventSourceMapping } from '../../local/esm.ts';
import { type Fault, faultyClient, quietTelemetry } from './speed.ts';

export type Hook = { kind: 'none' } | { kind: 'before' } | { kind: 'after' } | { kind: 'dynamo'; fault: Fault };

export const hookArb: fc.Arbitrary<Hook> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ kind: 'none' } as Hook) },
  { weight: 1, arbitrary: fc.constant({ kind: 'before' } as Hook) },
  { weight: 1, arbitrary: fc.constant({ kind: 'after' } as Hook) },
  {
    weight: 2,
    arbitrary: fc
      .record({ after: fc.nat(5), kind: fc.constantFrom('throw', 'lost'), on: fc.constantFrom('UpdateItemCommand', 'any') })
      .map((fault) => ({ kind: 'dynamo', fault: fault as Fault }) as Hook),
  },
);

const telemetry = quietTelemetry();
const quiet = { info: () => {}, warn: () => {}, error: () => {} };

/**
 * A local event source mapping over the whole stream, as deployed (bisect on error, retry forever), invoking
 * `handler` with `hooks` applied to its invocations in turn: a crash before it, a fault armed on its DynamoDB
 * client (`faulty`) for the invocation, or a crash after it (a timeout after the work was done).
 */
export function startHookedMapping(
  clients: Pick<Clients, 'kinesis'>,
  o: {
    readonly name: string;
    readonly streamName: string;
    readonly batchSize: number;
    readonly handler: (event: unknown) => Promise<unknown>;
    readonly hooks: readonly Hook[];
    readonly faulty: ReturnType<typeof faultyClient>;
  },
) {
  const pending = [...o.hooks];
  return startEventSourceMapping({
    name: o.name,
    kinesis: clients.kinesis,
    streamName: o.streamName,
    batchSize: o.batchSize,
    bisectBatchOnError: true,
    reportBatchItemFailures: true,
    retryAttempts: -1,
    maxRecordAgeSeconds: -1,
    pollIntervalMs: 20,
    retryBackoffMs: 1,
    shardRefreshMs: 60_000,
    logger: quiet,
    invoke: async (event) => {
      const hook = pending.shift() ?? { kind: 'none' };
      if (hook.kind === 'before') throw new Error('crash hook: before the handler');
      o.faulty.arm(hook.kind === 'dynamo' ? hook.fault : undefined);
      try {
        const res = await o.handler(event);
        if (hook.kind === 'after') throw new Error('crash hook: after the handler (a timeout)');
        return res as never;
      } finally {
        o.faulty.arm(undefined);
      }
    },
  });
}

/**
 * Runs the speed handler (demo views) over the whole stream through the local event source mapping until it is
 * idle, the `hooks` applied to its invocations in turn, retrying forever and bisecting on error as deployed.
 */
export async function drainWithHooks(
  clients: Pick<Clients, 'dynamodb' | 's3' | 'kinesis'>,
  o: {
    readonly name: string;
    readonly streamName: string;
    readonly tables: { speed: string; dedup: string; control: string };
    readonly failureBucket: string;
    readonly settings: Settings;
    readonly batchSize: number;
    readonly hooks: readonly Hook[];
  },
): Promise<void> {
  const faulty = faultyClient(clients.dynamodb);
  const handler = createSpeedHandler({
    ddb: faulty.client,
    s3: clients.s3,
    tables: o.tables,
    failureBucket: o.failureBucket,
    views: DEMO_VIEWS,
    settings: o.settings,
    cache: new ItemCache(),
    ...telemetry,
  });
  const esm = await startHookedMapping(clients, {
    name: o.name,
    streamName: o.streamName,
    batchSize: o.batchSize,
    handler,
    hooks: o.hooks,
    faulty,
  });
  try {
    await esm.idle();
  } finally {
    await esm.stop();
  }
}
