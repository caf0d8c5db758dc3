/**
 * API keys in the control table (real dynalite) and the two checks of them:
 * the AWS REQUEST authorizer (create -> Allow with the key's name as principal,
 * revoke -> Deny, no key -> Unauthorized (401); only hashes stored), and the
 * handlers checking keys themselves (TANDEM_API_AUTH=in-function, the LocalStack
 * target): every route but /health answers 401/403 before routing, a revoked key
 * at once.
 */
import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import type { APIGatewayProxyEvent, APIGatewayRequestAuthorizerEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuthorizer } from '../../functions/api/authorizer.ts';
import { type BatchRuns, createBatchRunsHandler } from '../../functions/api/batch.ts';
import { createHealthHandler } from '../../functions/api/health.ts';
import type { ApiHandler } from '../../functions/api/http.ts';
import { createIngestHandler } from '../../functions/api/ingest.ts';
import { IN_FUNCTION, INVALID_KEY, MISSING_KEY } from '../../functions/api/key-check.ts';
import { createKey, hashKey, listKeys, lookupKey, revokeKey } from '../../functions/api/keys.ts';
import { createQueryHandler } from '../../functions/api/query.ts';
import { exactDocClient } from '../../functions/api/read-view.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { DEFAULT_SETTINGS } from '../../functions/core/settings.ts';
import { SETTINGS_ENV, TABLES } from '../../functions/resources.ts';
import { apiEvent, lambdaContext, parse, readStream, silentLogger } from '../support/api.ts';
import { startTestCloud, type TestCloud } from '../support/cloud.ts';
import { watchedDoc } from '../support/dynalite.ts';

let cloud: TestCloud;
let table: string;
beforeAll(async () => {
  cloud = await startTestCloud();
  table = cloud.names.TANDEM_CONTROL_TABLE!;
});
afterAll(async () => {
  await cloud?.stop();
});

const methodArn = 'arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/POST/events';
const request = (key?: string) =>
  ({
    type: 'REQUEST',
    methodArn,
    path: '/events',
    headers: key === undefined ? {} : { 'x-api-key': key },
    requestContext: { identity: { sourceIp: '10.0.0.1' } },
  }) as unknown as APIGatewayRequestAuthorizerEvent;

describe('API keys and the authorizer', () => {
  it('creates a key (stored as its hash only), allows it, revokes it, then denies it', async () => {
    const { key, record } = await createKey(cloud.clients.doc, table, 'dashboard');
    expect(record).toMatchObject({ name: 'dashboard', hash: hashKey(key), revoked: false });
    const stored = await cloud.clients.doc.send(new ScanCommand({ TableName: table }));
    expect(JSON.stringify(stored.Items)).not.toContain(key);

    const auth = createAuthorizer({ doc: cloud.clients.doc, controlTable: () => table, envHashes: [], logger: silentLogger() });
    const allow = await auth(request(key));
    expect(allow.principalId).toBe('dashboard');
    expect(allow.policyDocument.Statement[0]).toMatchObject({
      Effect: 'Allow',
      Resource: 'arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/*',
    });
    expect(allow.context).toEqual({ keyName: 'dashboard' });

    const other = await auth(request(`${key}x`));
    expect(other.policyDocument.Statement[0]).toMatchObject({ Effect: 'Deny' });
    await expect(auth(request())).rejects.toThrow('Unauthorized');

    const revoked = await revokeKey(cloud.clients.doc, table, 'dashboard');
    expect(revoked).toEqual([expect.objectContaining({ name: 'dashboard', revoked: true })]);
    expect(await lookupKey(cloud.clients.doc, table, key)).toBeUndefined();
    expect((await auth(request(key))).policyDocument.Statement[0]).toMatchObject({ Effect: 'Deny' });
  });

  it('keeps names unique among active keys, validates names, and lists keys without secrets', async () => {
    const a = await createKey(cloud.clients.doc, table, 'ci');
    await expect(createKey(cloud.clients.doc, table, 'ci')).rejects.toThrow(/exists already/);
    await expect(createKey(cloud.clients.doc, table, 'bad name!')).rejects.toThrow(/key name must/);
    await expect(revokeKey(cloud.clients.doc, table, 'nobody')).rejects.toThrow(/no active key/);
    const list = await listKeys(cloud.clients.doc, table);
    expect(list.map((k) => [k.name, k.revoked])).toEqual(
      expect.arrayContaining([
        ['ci', false],
        ['dashboard', true],
      ]),
    );
    expect(JSON.stringify(list)).not.toContain(a.key);
    // revoking by hash works too; afterwards the name is free again
    await revokeKey(cloud.clients.doc, table, a.record.hash);
    const b = await createKey(cloud.clients.doc, table, 'ci');
    expect(await lookupKey(cloud.clients.doc, table, b.key)).toBe('ci');
    expect(await lookupKey(cloud.clients.doc, table, a.key)).toBeUndefined();
  });

  it('accepts keys from TANDEM_API_KEY_HASHES without a table lookup', async () => {
    // The real table holds keys, but the seam fails any request: an env key must be decided without one.
    const watched = watchedDoc(cloud.clients.doc);
    watched.fail = new Error('the table must not be read for an env key');
    const auth = createAuthorizer({
      doc: watched.doc,
      controlTable: () => table,
      envHashes: [{ name: 'env-ci', hash: hashKey('s3cret') }],
      logger: silentLogger(),
    });
    expect((await auth(request('s3cret'))).principalId).toBe('env-ci');
    expect(watched.reads).toEqual([]);
  });
});

describe('keys checked in the handlers (ApiAuth.IN_FUNCTION, the LocalStack target)', () => {
  // As lib/ingest-api.ts sets them on the functions of keyed routes; the guard reads them when a handler is made.
  const saved = { ...process.env };
  let ingest: ApiHandler;
  let query: ApiHandler;
  let batch: ApiHandler;
  let health: ApiHandler;
  let batchCalls = 0;
  const envKey = 'tdm_env_only_key';

  beforeAll(() => {
    Object.assign(process.env, cloud.env, {
      [SETTINGS_ENV.apiAuth]: IN_FUNCTION,
      [TABLES.control.env]: table,
      [SETTINGS_ENV.apiKeyHashes]: `ops:${hashKey(envKey)}`,
    });
    const names = cloud.names;
    ingest = createIngestHandler({
      kinesis: cloud.clients.kinesis,
      streamName: names.TANDEM_STREAM_NAME!,
      views: DEMO_VIEWS,
      logger: silentLogger(),
    });
    query = createQueryHandler({
      doc: exactDocClient(cloud.clients.dynamodb),
      tables: { speed: names.TANDEM_SPEED_TABLE!, batchViews: names.TANDEM_BATCH_VIEWS_TABLE!, control: table },
      views: DEMO_VIEWS,
      settings: DEFAULT_SETTINGS,
      logger: silentLogger(),
    });
    // The batch layer is not what is tested: a request that gets past the key reaches it and counts.
    batch = createBatchRunsHandler(() => {
      batchCalls++;
      return { get: async () => undefined } as unknown as BatchRuns;
    }, silentLogger());
    health = createHealthHandler(silentLogger());
  });
  afterAll(() => {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  });

  const call = async (h: ApiHandler, method: string, path: string, key?: string, over: Partial<APIGatewayProxyEvent> = {}) =>
    parse(await h(apiEvent(method, path, { headers: key === undefined ? {} : { 'x-api-key': key }, ...over }), lambdaContext()));
  const event = (id: string) => ({
    body: JSON.stringify({ id, type: 'page_view', ts: new Date().toISOString(), page: '/auth' }),
    headers: { 'content-type': 'application/json' },
  });
  const missing = { status: 401, body: { error: MISSING_KEY.error, field: 'x-api-key' } };
  const invalid = { status: 403, body: { error: INVALID_KEY.error, field: 'x-api-key' } };

  it('answers 401 without a key and 403 with a wrong one on every keyed route, before routing', async () => {
    const stored = (await readStream(cloud.clients.kinesis, cloud.names.TANDEM_STREAM_NAME!)).length;
    for (const key of [undefined, 'tdm_wrong']) {
      const want = key === undefined ? missing : invalid;
      const withHeaders = (id: string) => ({ ...event(id), headers: { ...event(id).headers, ...(key ? { 'x-api-key': key } : {}) } });
      expect(parse(await ingest(apiEvent('POST', '/events', withHeaders('auth-refused')), lambdaContext()))).toEqual(want);
      expect(await call(query, 'GET', '/views', key)).toEqual(want);
      expect(
        await call(query, 'GET', '/views/{name}', key, { path: '/views/events_by_type', pathParameters: { name: 'events_by_type' } }),
      ).toEqual(want);
      expect(await call(query, 'GET', '/status', key)).toEqual(want);
      expect(await call(batch, 'POST', '/batch/runs', key, { body: '{}' })).toEqual(want);
      expect(await call(batch, 'GET', '/batch/runs/{id}', key, { path: '/batch/runs/run-1', pathParameters: { id: 'run-1' } })).toEqual(
        want,
      );
      expect(await call(batch, 'POST', '/batch/rollback', key, { body: '{"version":1}' })).toEqual(want);
    }
    expect(batchCalls).toBe(0);
    expect((await readStream(cloud.clients.kinesis, cloud.names.TANDEM_STREAM_NAME!)).length).toBe(stored);
  });

  it('serves a key from the control table, then refuses it the moment it is revoked', async () => {
    const { key } = await createKey(cloud.clients.doc, table, 'localstack');
    const ok = await ingest(
      apiEvent('POST', '/events', { ...event('auth-ok'), headers: { ...event('auth-ok').headers, 'x-api-key': key } }),
      lambdaContext(),
    );
    expect(ok.statusCode).toBe(200);
    expect((await readStream(cloud.clients.kinesis, cloud.names.TANDEM_STREAM_NAME!)).map((r) => (r.data as { id?: string }).id)).toContain(
      'auth-ok',
    );
    expect((await call(query, 'GET', '/views', key)).status).toBe(200);
    expect((await call(query, 'GET', '/status', key)).status).toBe(200);
    // Past the key, the route answers: here an unknown run.
    expect(await call(batch, 'GET', '/batch/runs/{id}', key, { path: '/batch/runs/run-1', pathParameters: { id: 'run-1' } })).toMatchObject(
      {
        status: 404,
      },
    );
    expect(batchCalls).toBe(1);

    await revokeKey(cloud.clients.doc, table, 'localstack');
    // No authorizer cache: refused on the next request.
    expect(await call(query, 'GET', '/views', key)).toEqual(invalid);
  });

  it('accepts a key given as a hash at deploy time (TANDEM_API_KEY_HASHES)', async () => {
    expect((await call(query, 'GET', '/views', envKey)).status).toBe(200);
  });

  it('asks no key of GET /health or a CORS preflight', async () => {
    expect(await call(health, 'GET', '/health')).toEqual({ status: 200, body: { status: 'ok' } });
    expect((await query(apiEvent('OPTIONS', '/views'), lambdaContext())).statusCode).toBe(204);
  });
});
