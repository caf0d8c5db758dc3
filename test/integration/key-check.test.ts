/**
 * The API key check the handlers run themselves under ApiAuth.IN_FUNCTION (the
 * LocalStack target): 401 without a key, 403 for a key not found or revoked, the
 * same decision as the REQUEST authorizer for every kind of key, only from
 * TANDEM_API_AUTH=in-function, before routing, never on GET /health or a preflight.
 * Keys live in a real control table (dynalite in process), made by the product's own createKey/revokeKey;
 * reads are counted, and the store made to fail, through a seam around the real client.
 */
import type { APIGatewayProxyEvent, APIGatewayRequestAuthorizerEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createAuthorizer } from '../../functions/api/authorizer.ts';
import { guarded, json } from '../../functions/api/http.ts';
import {
  createKeyCheck,
  IN_FUNCTION,
  INVALID_KEY,
  keyCheckFromEnv,
  keyOf,
  MISSING_KEY,
  resolveKey,
} from '../../functions/api/key-check.ts';
import { createKey, hashKey, KEY_PK, revokeKey } from '../../functions/api/keys.ts';
import { SETTINGS_ENV, TABLES } from '../../functions/resources.ts';
import { apiEvent, lambdaContext, parse, silentLogger } from '../support/api.ts';
import { type LocalDynamo, startDynalite, watchedDoc } from '../support/dynalite.ts';

let local: LocalDynamo;
let control: string;
// Keys are random (createKey makes them); the table holds only their hashes.
let ACTIVE: string;
let REVOKED: string;
beforeAll(async () => {
  local = await startDynalite();
  control = local.control;
  ACTIVE = (await createKey(local.doc, control, 'dashboard')).key;
  REVOKED = (await createKey(local.doc, control, 'old')).key;
  await revokeKey(local.doc, control, 'old');
});
afterAll(async () => {
  await local?.stop();
});

const ENV_KEY = 'tdm_from_env';
/** The real control table behind a seam that counts the keys read. */
const table = () => watchedDoc(local.doc);
const envHashes = [{ name: 'ci', hash: hashKey(ENV_KEY) }];

const withKey = (key: string | undefined, method = 'GET', path = '/views') =>
  apiEvent(method, path, { headers: key === undefined ? {} : { 'X-Api-Key': key } });

describe('keyOf', () => {
  it('reads x-api-key in any case and treats an empty one as none', () => {
    expect(keyOf({ 'X-API-KEY': 'k' })).toBe('k');
    expect(keyOf({ 'x-api-key': '' })).toBeUndefined();
    expect(keyOf(null)).toBeUndefined();
  });
});

describe('createKeyCheck', () => {
  const check = (t = table()) => createKeyCheck({ doc: t.doc, controlTable: () => control, envHashes, logger: silentLogger() });

  it('401 without a key, 403 for an unknown or a revoked key', async () => {
    expect(await check()(withKey(undefined))).toBe(MISSING_KEY);
    expect(await check()(withKey('tdm_nobody'))).toBe(INVALID_KEY);
    expect(await check()(withKey(REVOKED))).toBe(INVALID_KEY);
  });

  it('lets an active key through, with its name where the authorizer would put it', async () => {
    const event = withKey(ACTIVE);
    expect(await check()(event)).toBeUndefined();
    expect(event.requestContext.authorizer).toEqual({ principalId: 'dashboard', keyName: 'dashboard' });
  });

  it('looks up only the hash, and env keys without reading the table', async () => {
    const t = table();
    expect(await check(t)(withKey(ENV_KEY))).toBeUndefined();
    expect(t.reads).toEqual([]);
    await check(t)(withKey(ACTIVE));
    expect(t.reads).toEqual([hashKey(ACTIVE)]);
  });

  it('decides as the REQUEST authorizer does, key by key', async () => {
    const t = table();
    const deps = { doc: t.doc, controlTable: () => control, envHashes, logger: silentLogger() };
    const authorizer = createAuthorizer(deps);
    const inFunction = createKeyCheck(deps);
    for (const key of [undefined, ACTIVE, REVOKED, ENV_KEY, 'tdm_nobody', `${ACTIVE} `]) {
      const request = {
        type: 'REQUEST',
        methodArn: 'arn:aws:execute-api:us-east-1:000000000000:api/v1/GET/views',
        path: '/views',
        headers: key === undefined ? {} : { 'x-api-key': key },
      } as unknown as APIGatewayRequestAuthorizerEvent;
      const byAuthorizer = await authorizer(request).then(
        (r) => (r.policyDocument.Statement[0]!.Effect === 'Allow' ? 200 : 403),
        (e: Error) => (e.message === 'Unauthorized' ? 401 : 500),
      );
      const refused = await inFunction(withKey(key));
      expect(refused?.statusCode ?? 200, String(key)).toBe(byAuthorizer);
    }
  });

  it('resolveKey without a control table knows only the env keys', async () => {
    const t = table();
    expect(await resolveKey({ doc: t.doc, controlTable: () => undefined, envHashes }, ACTIVE)).toBeUndefined();
    expect(await resolveKey({ doc: t.doc, controlTable: () => undefined, envHashes }, ENV_KEY)).toBe('ci');
  });
});

describe('keyCheckFromEnv', () => {
  const env = (over: Record<string, string> = {}) => ({ [SETTINGS_ENV.apiAuth]: IN_FUNCTION, [TABLES.control.env]: control, ...over });

  it('is off unless TANDEM_API_AUTH is in-function, and refuses any other value', () => {
    expect(keyCheckFromEnv(silentLogger(), {})).toBeUndefined();
    expect(keyCheckFromEnv(silentLogger(), { [SETTINGS_ENV.apiAuth]: '' })).toBeUndefined();
    expect(() => keyCheckFromEnv(silentLogger(), { [SETTINGS_ENV.apiAuth]: 'authorizer' })).toThrow(
      'environment variable TANDEM_API_AUTH must be "in-function", received "authorizer"',
    );
    expect(() => keyCheckFromEnv(silentLogger(), env({ [SETTINGS_ENV.apiKeyHashes]: 'ci:nothex' }))).toThrow(/not a SHA-256 hex hash/);
  });

  it('reads the table named in the environment, asking for the client only when a key must be looked up', async () => {
    const t = table();
    const send = vi.spyOn(t.doc, 'send');
    const doc = vi.fn(async () => t.doc);
    const check = keyCheckFromEnv(silentLogger(), env({ [SETTINGS_ENV.apiKeyHashes]: `ci:${hashKey(ENV_KEY)}` }), doc)!;
    expect(await check(withKey(undefined))).toBe(MISSING_KEY);
    expect(await check(withKey(ENV_KEY))).toBeUndefined();
    expect(doc).not.toHaveBeenCalled();
    expect(await check(withKey(ACTIVE))).toBeUndefined();
    expect(await check(withKey(REVOKED))).toBe(INVALID_KEY);
    expect(send).toHaveBeenCalledWith(
      expect.objectContaining({ input: expect.objectContaining({ TableName: control, Key: { pk: KEY_PK, sk: hashKey(ACTIVE) } }) }),
    );
  });
});

describe('guarded with a key check', () => {
  const handled: string[] = [];
  const handler = (over?: Parameters<typeof guarded>[2]) =>
    guarded(
      silentLogger(),
      async (e: APIGatewayProxyEvent) => {
        handled.push(`${e.httpMethod} ${e.path}`);
        return json(200, { ok: true });
      },
      over,
    );
  let check: ReturnType<typeof createKeyCheck>;
  beforeAll(() => {
    check = createKeyCheck({ doc: table().doc, controlTable: () => control, envHashes, logger: silentLogger() });
  });

  it('answers 401 and 403 before routing, with the contract body and CORS headers', async () => {
    handled.length = 0;
    const none = await handler(check)(withKey(undefined, 'POST', '/events'), lambdaContext());
    expect(parse(none)).toEqual({ status: 401, body: { error: MISSING_KEY.error, field: 'x-api-key' } });
    expect(none.headers).toMatchObject({ 'access-control-allow-origin': '*', 'content-type': 'application/json; charset=utf-8' });
    const wrong = await handler(check)(withKey('tdm_nobody', 'GET', '/views/{name}'), lambdaContext());
    expect(parse(wrong)).toEqual({ status: 403, body: { error: INVALID_KEY.error, field: 'x-api-key' } });
    expect(handled).toEqual([]);
    expect((await handler(check)(withKey(ACTIVE, 'GET', '/status'), lambdaContext())).statusCode).toBe(200);
    expect(handled).toEqual(['GET /status']);
  });

  it('never asks a key of GET /health or a CORS preflight', async () => {
    expect((await handler(check)(withKey(undefined, 'GET', '/health'), lambdaContext())).statusCode).toBe(200);
    expect((await handler(check)(withKey(undefined, 'OPTIONS', '/views'), lambdaContext())).statusCode).toBe(204);
  });

  it('a failing lookup is a 500 without details, not a pass', async () => {
    const down = table();
    down.fail = new Error('DynamoDB down');
    const broken = createKeyCheck({
      doc: down.doc,
      controlTable: () => control,
      envHashes: [],
      logger: silentLogger(),
    });
    const r = await handler(broken)(withKey(ACTIVE), lambdaContext());
    expect(r.statusCode).toBe(500);
    expect(parse(r).body.error).toBe('internal error');
  });

  it('without TANDEM_API_AUTH the guard checks nothing (behind the authorizer, or the local cloud)', async () => {
    expect(process.env[SETTINGS_ENV.apiAuth]).toBeUndefined();
    expect((await handler()(withKey(undefined), lambdaContext())).statusCode).toBe(200);
  });
});
