/**
 * API keys in the control table (real dynalite) and the AWS REQUEST
 * authorizer that checks them: create -> Allow with the key's name as
 * principal, revoke -> Deny, no key -> Unauthorized (401); only hashes stored.
 */
import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import type { APIGatewayRequestAuthorizerEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuthorizer } from '../../functions/api/authorizer.ts';
import { createKey, hashKey, listKeys, lookupKey, revokeKey } from '../../functions/api/keys.ts';
import { silentLogger } from '../support/api.ts';
import { startTestCloud, type TestCloud } from '../support/cloud.ts';

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
    const auth = createAuthorizer({
      doc: { send: () => Promise.reject(new Error('the table must not be read for an env key')) },
      controlTable: () => table,
      envHashes: [{ name: 'env-ci', hash: hashKey('s3cret') }],
      logger: silentLogger(),
    });
    expect((await auth(request('s3cret'))).principalId).toBe('env-ci');
  });
});
