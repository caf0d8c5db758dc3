/**
 * Test helpers for the API handlers: API Gateway REST v1 proxy events, a
 * reader of everything a Kinesis stream holds, and a fault-injecting wrapper
 * around the real Kinesis client (it withholds chosen PutRecords entries from
 * the real service and reports them failed, as Kinesis does under throttling).
 */
import { Logger } from '@aws-lambda-powertools/logger';
import {
  GetRecordsCommand,
  GetShardIteratorCommand,
  type KinesisClient,
  ListShardsCommand,
  PutRecordsCommand,
  type PutRecordsCommandOutput,
  type PutRecordsResultEntry,
} from '@aws-sdk/client-kinesis';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import type { KinesisPut } from '../../functions/api/put-events.ts';

export const silentLogger = () => new Logger({ serviceName: 'test', logLevel: 'SILENT' });

export function lambdaContext(remainingMs = 30_000): Context {
  const deadline = Date.now() + remainingMs;
  return {
    awsRequestId: `req-${Math.random().toString(36).slice(2)}`,
    functionName: 'test',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:test',
    memoryLimitInMB: '256',
    logGroupName: '/aws/lambda/test',
    logStreamName: 'test',
    callbackWaitsForEmptyEventLoop: false,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

export function apiEvent(method: string, path: string, over: Partial<APIGatewayProxyEvent> = {}): APIGatewayProxyEvent {
  return {
    body: null,
    headers: {},
    multiValueHeaders: {},
    httpMethod: method,
    isBase64Encoded: false,
    path,
    pathParameters: null,
    queryStringParameters: null,
    multiValueQueryStringParameters: null,
    stageVariables: null,
    requestContext: { requestId: 'test', stage: 'test', identity: { sourceIp: '127.0.0.1' } } as APIGatewayProxyEvent['requestContext'],
    resource: path,
    ...over,
  };
}

export const postEvents = (body: unknown, over: Partial<APIGatewayProxyEvent> = {}) =>
  apiEvent('POST', '/events', {
    body: typeof body === 'string' ? body : JSON.stringify(body),
    headers: { 'content-type': 'application/json' },
    ...over,
  });

export function parse(r: APIGatewayProxyResult): { status: number; body: Record<string, unknown> } {
  return { status: r.statusCode, body: JSON.parse(r.body) as Record<string, unknown> };
}

export interface StreamRecord {
  readonly shard: string;
  readonly seq: string;
  readonly partitionKey: string;
  readonly arrival: number;
  readonly data: unknown;
}

/** Every record the stream holds, read from TRIM_HORIZON on every shard. */
export async function readStream(kinesis: KinesisClient, streamName: string): Promise<StreamRecord[]> {
  const shards = (await kinesis.send(new ListShardsCommand({ StreamName: streamName }))).Shards ?? [];
  const out: StreamRecord[] = [];
  for (const s of shards) {
    let iterator = (
      await kinesis.send(new GetShardIteratorCommand({ StreamName: streamName, ShardId: s.ShardId!, ShardIteratorType: 'TRIM_HORIZON' }))
    ).ShardIterator;
    while (iterator) {
      const got = await kinesis.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 10_000 }));
      for (const r of got.Records ?? []) {
        out.push({
          shard: s.ShardId!,
          seq: r.SequenceNumber!,
          partitionKey: r.PartitionKey!,
          arrival: r.ApproximateArrivalTimestamp!.getTime(),
          data: JSON.parse(Buffer.from(r.Data!).toString('utf8')),
        });
      }
      if ((got.Records?.length ?? 0) === 0 && (got.MillisBehindLatest ?? 0) === 0) break;
      iterator = got.NextShardIterator;
    }
  }
  return out;
}

export interface FlakyKinesis extends KinesisPut {
  /** Partition keys of each PutRecords request, in order. */
  readonly requests: string[][];
  /** Entries withheld (reported failed) per request. */
  readonly withheld: string[][];
}

/**
 * Wraps the real client: for each PutRecords, entries for which `fail(request,
 * position, partitionKey)` is true are not sent and come back with an
 * ErrorCode, the others go to the real stream. `throwOn(request)` makes a
 * whole request fail as a network error would.
 */
export function flakyKinesis(
  real: KinesisClient,
  fail: (request: number, position: number, partitionKey: string) => boolean,
  throwOn: (request: number) => boolean = () => false,
): FlakyKinesis {
  const requests: string[][] = [];
  const withheld: string[][] = [];
  const send = async (command: unknown) => {
    if (!(command instanceof PutRecordsCommand)) return real.send(command as never);
    const records = command.input.Records ?? [];
    const n = requests.length;
    requests.push(records.map((r) => r.PartitionKey!));
    if (throwOn(n)) {
      withheld.push(records.map((r) => r.PartitionKey!));
      throw Object.assign(new Error('injected network failure'), { name: 'TimeoutError' });
    }
    const failing = records.map((r, i) => fail(n, i, r.PartitionKey!));
    withheld.push(records.filter((_, i) => failing[i]).map((r) => r.PartitionKey!));
    const pass = records.filter((_, i) => !failing[i]);
    const out: Partial<PutRecordsCommandOutput> =
      pass.length > 0 ? await real.send(new PutRecordsCommand({ ...command.input, Records: pass })) : { Records: [], FailedRecordCount: 0 };
    let j = 0;
    const results: PutRecordsResultEntry[] = records.map((_, i) =>
      failing[i]
        ? { ErrorCode: 'ProvisionedThroughputExceededException', ErrorMessage: 'Rate exceeded for shard (injected)' }
        : out.Records![j++]!,
    );
    return { ...out, Records: results, FailedRecordCount: (out.FailedRecordCount ?? 0) + failing.filter(Boolean).length };
  };
  return { send: send as unknown as KinesisPut['send'], requests, withheld };
}
