import { deflateSync, gzipSync } from 'node:zlib';
import { Logger } from '@aws-lambda-powertools/logger';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { APIGatewayProxyEvent, APIGatewayRequestAuthorizerEvent, Context } from 'aws-lambda';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { apiWildcard, createAuthorizer } from '../../functions/api/authorizer.ts';
import { guarded, HttpError, header, json, readBody, readJsonBody } from '../../functions/api/http.ts';
import { generateKey, hashKey, KEY_PREFIX, matchEnvKey, parseKeyHashes } from '../../functions/api/keys.ts';
import { chunkEntries, entryBytes, type PutEntry } from '../../functions/api/put-events.ts';
import { speedWindowRange } from '../../functions/api/read-view.ts';
import { isoTime } from '../../functions/api/status.ts';
import { MAX_BODY_BYTES } from '../../functions/contract/routes.ts';
import { DEFAULT_SETTINGS, speedTtlSeconds } from '../../functions/core/settings.ts';
import { watchedDoc } from '../support/dynalite.ts';

const logger = new Logger({ serviceName: 'test', logLevel: 'SILENT' });
const ctx = { awsRequestId: 'req-1', getRemainingTimeInMillis: () => 10_000 } as unknown as Context;

function apiEvent(over: Partial<APIGatewayProxyEvent> = {}): APIGatewayProxyEvent {
  return {
    body: null,
    headers: {},
    multiValueHeaders: {},
    httpMethod: 'POST',
    isBase64Encoded: false,
    path: '/events',
    pathParameters: null,
    queryStringParameters: null,
    multiValueQueryStringParameters: null,
    stageVariables: null,
    requestContext: {} as APIGatewayProxyEvent['requestContext'],
    resource: '/events',
    ...over,
  };
}

describe('request bodies', () => {
  it('reads plain, base64, gzip and deflate bodies', () => {
    const text = '{"a":1}';
    expect(readBody(apiEvent({ body: text })).toString()).toBe(text);
    expect(readBody(apiEvent({ body: Buffer.from(text).toString('base64'), isBase64Encoded: true })).toString()).toBe(text);
    const gz = gzipSync(text).toString('base64');
    expect(readBody(apiEvent({ body: gz, isBase64Encoded: true, headers: { 'Content-Encoding': 'gzip' } })).toString()).toBe(text);
    const df = deflateSync(text).toString('base64');
    expect(readBody(apiEvent({ body: df, isBase64Encoded: true, headers: { 'content-encoding': 'deflate' } })).toString()).toBe(text);
  });

  it('answers 413 for a body over the limit, also when it only expands past it', () => {
    const big = 'x'.repeat(MAX_BODY_BYTES + 1);
    expect(() => readBody(apiEvent({ body: big }))).toThrow(expect.objectContaining({ statusCode: 413, field: 'body' }));
    // 5 MB + 1 of zeros gzips to a few kB: the limit must hold after decompression.
    const bomb = gzipSync(Buffer.alloc(MAX_BODY_BYTES + 1)).toString('base64');
    expect(bomb.length).toBeLessThan(100_000);
    expect(() => readBody(apiEvent({ body: bomb, isBase64Encoded: true, headers: { 'content-encoding': 'gzip' } }))).toThrow(
      expect.objectContaining({ statusCode: 413 }),
    );
    const exact = gzipSync(Buffer.alloc(MAX_BODY_BYTES)).toString('base64');
    expect(readBody(apiEvent({ body: exact, isBase64Encoded: true, headers: { 'content-encoding': 'gzip' } })).length).toBe(MAX_BODY_BYTES);
  });

  it('names the body or the encoding when they are bad', () => {
    expect(() => readBody(apiEvent({ body: null }))).toThrow(expect.objectContaining({ statusCode: 400, field: 'body' }));
    expect(() => readBody(apiEvent({ body: 'not gzip', headers: { 'content-encoding': 'gzip' } }))).toThrow(
      expect.objectContaining({ statusCode: 400, field: 'body' }),
    );
    expect(() => readBody(apiEvent({ body: 'x', headers: { 'content-encoding': 'br' } }))).toThrow(
      expect.objectContaining({ statusCode: 415, field: 'content-encoding' }),
    );
    expect(() => readJsonBody(apiEvent({ body: '{"a":' }))).toThrow(expect.objectContaining({ statusCode: 400, field: 'body' }));
    const latin1 = Buffer.from([0x7b, 0xff, 0x7d]).toString('base64');
    expect(() => readJsonBody(apiEvent({ body: latin1, isBase64Encoded: true }))).toThrow(expect.objectContaining({ statusCode: 400 }));
  });

  it('finds headers whatever their case', () => {
    expect(header(apiEvent({ headers: { 'X-Api-Key': 'k' } }), 'x-api-key')).toBe('k');
    expect(header(apiEvent({ headers: {} }), 'x-api-key')).toBeUndefined();
  });
});

describe('responses and the guard', () => {
  it('answers JSON with CORS headers', () => {
    const r = json(200, { a: 1 });
    expect(r.headers?.['content-type']).toMatch(/^application\/json/);
    expect(r.headers?.['access-control-allow-origin']).toBe('*');
    expect(JSON.parse(r.body)).toEqual({ a: 1 });
  });

  it('renders HttpErrors and hides unexpected errors behind a 500 without a stack', async () => {
    const h1 = guarded(logger, async () => {
      throw new HttpError(400, 'from must be a time', 'from');
    });
    const r1 = await h1(apiEvent(), ctx);
    expect(r1.statusCode).toBe(400);
    expect(JSON.parse(r1.body)).toEqual({ error: 'from must be a time', field: 'from' });
    const h2 = guarded(logger, async () => {
      throw new Error('secret internals at /var/task/x.js:1');
    });
    const r2 = await h2(apiEvent(), ctx);
    expect(r2.statusCode).toBe(500);
    expect(JSON.parse(r2.body)).toEqual({ error: 'internal error', requestId: 'req-1' });
    expect(r2.body).not.toContain('secret');
    const r3 = await h2(apiEvent({ httpMethod: 'OPTIONS' }), ctx);
    expect(r3.statusCode).toBe(204);
    expect(r3.headers?.['access-control-allow-headers']).toContain('x-api-key');
  });
});

describe('PutRecords chunks', () => {
  const entry = (index: number, bytes: number): PutEntry => ({ index, data: new Uint8Array(bytes), partitionKey: `id-${index}` });

  it('keeps order and stays within the record and byte limits', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 3000 }), { maxLength: 60 }),
        fc.integer({ min: 1, max: 7 }),
        fc.integer({ min: 3010, max: 20_000 }),
        (sizes, maxRecords, maxBytes) => {
          const entries = sizes.map((s, i) => entry(i, s));
          const chunks = chunkEntries(entries, maxRecords, maxBytes);
          expect(chunks.flat().map((e) => e.index)).toEqual(entries.map((e) => e.index));
          for (const c of chunks) {
            expect(c.length).toBeGreaterThan(0);
            expect(c.length).toBeLessThanOrEqual(maxRecords);
            expect(c.reduce((n, e) => n + entryBytes(e), 0)).toBeLessThanOrEqual(maxBytes);
          }
          // greedy: a chunk is only closed when the next entry would not fit
          for (let i = 0; i + 1 < chunks.length; i++) {
            const c = chunks[i]!;
            const next = chunks[i + 1]![0]!;
            expect(c.length === maxRecords || c.reduce((n, e) => n + entryBytes(e), 0) + entryBytes(next) > maxBytes).toBe(true);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('splits 500 events at the 500-record limit and a 5 MB body by bytes', () => {
    expect(chunkEntries(Array.from({ length: 1001 }, (_, i) => entry(i, 10))).map((c) => c.length)).toEqual([500, 500, 1]);
    expect(chunkEntries(Array.from({ length: 100 }, (_, i) => entry(i, 60_000))).map((c) => c.length)).toEqual([87, 13]);
  });
});

describe('API keys', () => {
  it('generates distinct prefixed keys and hashes them with SHA-256', () => {
    const a = generateKey();
    expect(a.startsWith(KEY_PREFIX)).toBe(true);
    expect(a).not.toBe(generateKey());
    expect(hashKey('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('reads env hashes and matches keys by hash', () => {
    const hashes = parseKeyHashes(`ci:${hashKey('k1')}, ${hashKey('k2').toUpperCase()}`);
    expect(hashes.map((h) => h.name)).toEqual(['ci', 'env-2']);
    expect(matchEnvKey(hashes, 'k1')).toBe('ci');
    expect(matchEnvKey(hashes, 'k2')).toBe('env-2');
    expect(matchEnvKey(hashes, 'k3')).toBeUndefined();
    expect(() => parseKeyHashes('ci:abc')).toThrow(/SHA-256/);
  });

  it('the authorizer allows a known key, denies an unknown one and answers Unauthorized without one', async () => {
    // A real client behind the seam that fails every request: without a control table nothing is sent.
    const watched = watchedDoc(DynamoDBDocumentClient.from(new DynamoDBClient({ region: 'us-east-1' })));
    watched.fail = new Error('no table in this test');
    const auth = createAuthorizer({
      doc: watched.doc,
      controlTable: () => undefined,
      envHashes: parseKeyHashes(`ci:${hashKey('good')}`),
      logger,
    });
    const methodArn = 'arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/views/page_views';
    const ev = (headers: Record<string, string>) =>
      ({ type: 'REQUEST', methodArn, headers, requestContext: {} }) as unknown as APIGatewayRequestAuthorizerEvent;
    const allow = await auth(ev({ 'X-API-Key': 'good' }));
    expect(allow.principalId).toBe('ci');
    expect(allow.policyDocument.Statement[0]).toMatchObject({
      Effect: 'Allow',
      Resource: 'arn:aws:execute-api:us-east-1:123456789012:abc123/prod/*',
    });
    const deny = await auth(ev({ 'x-api-key': 'bad' }));
    expect(deny.policyDocument.Statement[0]).toMatchObject({ Effect: 'Deny' });
    await expect(auth(ev({}))).rejects.toThrow('Unauthorized');
    expect(apiWildcard('not-an-arn')).toBe('not-an-arn');
    expect(watched.reads).toEqual([]);
  });
});

describe('read ranges and status times', () => {
  it('reads speed windows from the cutoff, never older than the TTL horizon', () => {
    const now = Date.UTC(2025, 0, 10, 12, 0, 30);
    const ttlMs = speedTtlSeconds(DEFAULT_SETTINGS) * 1000;
    const none = speedWindowRange(DEFAULT_SETTINGS, null, now);
    expect(none.from).toBeLessThanOrEqual(now - ttlMs - 60_000);
    expect(none.from % 60_000).toBe(0);
    expect(none.to).toBeGreaterThan(now);
    const recent = now - 10 * 60_000;
    expect(speedWindowRange(DEFAULT_SETTINGS, recent, now).from).toBe(recent);
    expect(speedWindowRange(DEFAULT_SETTINGS, now - 10 * ttlMs, now).from).toBe(none.from);
  });

  it('renders stored times as ISO-8601', () => {
    expect(isoTime(0)).toBe('1970-01-01T00:00:00.000Z');
    expect(isoTime('1700000000000')).toBe('2023-11-14T22:13:20.000Z');
    expect(isoTime('2024-01-01T00:00:00Z')).toBe('2024-01-01T00:00:00.000Z');
    expect(isoTime(undefined)).toBeUndefined();
  });
});
