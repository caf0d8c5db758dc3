/**
 * Every AWS SDK client the handlers use, configured in one place: retries,
 * timeouts, HTTP/1.1, and endpoints from the SDK's standard
 * `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` variables (the local cloud
 * sets them; in AWS they are unset). Nothing here names a host.
 */

import { Agent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { AthenaClient } from '@aws-sdk/client-athena';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KinesisClient } from '@aws-sdk/client-kinesis';
import { S3Client } from '@aws-sdk/client-s3';
import { SFNClient } from '@aws-sdk/client-sfn';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { NodeHttpHandler } from '@smithy/node-http-handler';

export interface Clients {
  readonly kinesis: KinesisClient;
  readonly dynamodb: DynamoDBClient;
  readonly doc: DynamoDBDocumentClient;
  readonly s3: S3Client;
  readonly athena: AthenaClient;
  readonly sfn: SFNClient;
}

type Env = Readonly<Record<string, string | undefined>>;

/** True when any endpoint override is set, i.e. we talk to emulators (path-style S3, dummy region). */
export function usesEndpointOverride(env: Env = process.env): boolean {
  return Object.keys(env).some((k) => k === 'AWS_ENDPOINT_URL' || k.startsWith('AWS_ENDPOINT_URL_'));
}

/**
 * The endpoint for one service from `AWS_ENDPOINT_URL_<SERVICE>` or
 * `AWS_ENDPOINT_URL`, read from `env` so a process can hold clients for more
 * than one target (tests, the local cloud's handlers). Absent in AWS.
 */
export function endpointFor(service: 'KINESIS' | 'DYNAMODB' | 'S3' | 'ATHENA' | 'SFN', env: Env): string | undefined {
  return env[`AWS_ENDPOINT_URL_${service}`] ?? env.AWS_ENDPOINT_URL;
}

function common(env: Env) {
  // HTTP/1.1 everywhere: the Kinesis client defaults to an HTTP/2 handler, and the
  // local Kinesis emulator, kinesalite, speaks only HTTP/1.1 (every call fails with
  // "Protocol error"). kinesis-local, the emulator before it, failed intermittently
  // under HTTP/2 *after* storing records, so a retry duplicated them.
  const requestHandler = new NodeHttpHandler({
    connectionTimeout: 3_000,
    requestTimeout: 30_000,
    httpAgent: new Agent({ keepAlive: true, maxSockets: 64 }),
    httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets: 64 }),
  });
  return {
    region: env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1',
    maxAttempts: 4,
    requestHandler,
    ...(env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY && env !== process.env
      ? { credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY } }
      : {}),
  };
}

/** Builds the clients once per process (module scope in handlers). */
export function createClients(env: Env = process.env): Clients {
  const base = common(env);
  const local = usesEndpointOverride(env);
  const at = (service: Parameters<typeof endpointFor>[0]) => {
    const endpoint = endpointFor(service, env);
    return endpoint ? { ...base, endpoint } : base;
  };
  const dynamodb = new DynamoDBClient(at('DYNAMODB'));
  return {
    kinesis: new KinesisClient(at('KINESIS')),
    dynamodb,
    doc: DynamoDBDocumentClient.from(dynamodb, { marshallOptions: { removeUndefinedValues: true } }),
    // Path-style and WHEN_REQUIRED checksums locally: s3rver cannot route virtual hosts and
    // stores streamed bodies corrupted when the SDK adds its default checksum trailers.
    s3: new S3Client({
      ...at('S3'),
      forcePathStyle: local,
      ...(local ? { requestChecksumCalculation: 'WHEN_REQUIRED' as const, responseChecksumValidation: 'WHEN_REQUIRED' as const } : {}),
    }),
    athena: new AthenaClient(at('ATHENA')),
    sfn: new SFNClient(at('SFN')),
  };
}

let shared: Clients | undefined;
/** The process-wide clients (created on first use). */
export function clients(): Clients {
  shared ??= createClients();
  return shared;
}
