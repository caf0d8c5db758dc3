/**
 * The local IAM check (local/iam/enforce.ts): the decision of iam-simulate for
 * the policies of a function, and the SDK error a denied call fails with,
 * before any request leaves the process (no emulator needed: the endpoint is
 * unreachable, a denied call never gets there).
 */
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient, GetCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AccessDeniedError, type FunctionIdentity, installIamCheck, isAllowed, runAsFunction } from '../../local/iam/enforce.ts';

const TABLE = 'arn:aws:dynamodb:us-east-1:000000000000:table/tandem-control';
const identity: FunctionIdentity = {
  name: 'tandem-authorizer',
  roleName: 'Tandem-AuthorizerRole',
  account: '000000000000',
  region: 'us-east-1',
  env: { TANDEM_CONTROL_TABLE: 'tandem-control', AWS_REGION: 'us-east-1' },
  policies: [
    {
      name: 'p',
      document: {
        Version: '2012-10-17',
        Statement: [
          {
            Effect: 'Allow',
            Action: 'dynamodb:GetItem',
            Resource: TABLE,
            Condition: { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': ['apikey'] } },
          },
          {
            Effect: 'Allow',
            Action: 's3:ListBucket',
            Resource: 'arn:aws:s3:::tandem-raw',
            Condition: { StringLike: { 's3:prefix': ['raw/*'] } },
          },
        ],
      },
    },
  ],
};

const endpoint = 'http://127.0.0.1:9'; // discard port: nothing answers
const config = { endpoint, region: 'us-east-1', maxAttempts: 1, credentials: { accessKeyId: 'x', secretAccessKey: 'x' } };
let uninstall: () => void;
beforeAll(() => {
  uninstall = installIamCheck();
});
afterAll(() => uninstall());

describe('isAllowed', () => {
  it('allows what a statement allows, conditions included', async () => {
    const ctx = { 'dynamodb:LeadingKeys': ['apikey'] };
    expect(await isAllowed(identity, { action: 'dynamodb:GetItem', resource: TABLE, context: ctx })).toBe(true);
    expect(await isAllowed(identity, { action: 'dynamodb:PutItem', resource: TABLE, context: ctx })).toBe(false);
    expect(
      await isAllowed(identity, { action: 'dynamodb:GetItem', resource: TABLE, context: { 'dynamodb:LeadingKeys': ['pointer'] } }),
    ).toBe(false);
    const list = (prefix: string) => ({ action: 's3:ListBucket', resource: 'arn:aws:s3:::tandem-raw', context: { 's3:prefix': prefix } });
    expect(await isAllowed(identity, list('raw/dt=2025-01-01/'))).toBe(true);
    expect(await isAllowed(identity, list('failures/'))).toBe(false);
  });
});

describe('a call made as a function', () => {
  it('fails as AWS fails it: AccessDeniedException naming principal, action and resource', async () => {
    const ddb = new DynamoDBClient(config);
    const err = await runAsFunction(identity, () =>
      ddb.send(new GetItemCommand({ TableName: 'tandem-control', Key: { pk: { S: 'pointer' }, sk: { S: 'x' } } })).catch((e: unknown) => e),
    );
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect(err).toMatchObject({ name: 'AccessDeniedException', $fault: 'client', $metadata: { httpStatusCode: 400 } });
    expect((err as Error).message).toBe(
      `User: arn:aws:sts::000000000000:assumed-role/Tandem-AuthorizerRole/tandem-authorizer ` +
        `is not authorized to perform: dynamodb:GetItem on resource: ${TABLE} ` +
        `because no identity-based policy allows the dynamodb:GetItem action`,
    );
    ddb.destroy();
  });

  it('checks document-client commands (unmarshalled keys) and S3 (AccessDenied, 403)', async () => {
    const ddb = new DynamoDBClient(config);
    const doc = DynamoDBDocumentClient.from(ddb);
    const denied = await runAsFunction(identity, () =>
      doc.send(new GetCommand({ TableName: 'tandem-control', Key: { pk: 'pointer', sk: 'x' } })).catch((e: unknown) => e),
    );
    expect((denied as Error).message).toContain(
      'perform: dynamodb:GetItem on resource: arn:aws:dynamodb:us-east-1:000000000000:table/tandem-control',
    );
    // Allowed: the call goes on to the network (and fails there, not with AccessDenied).
    const allowed = await runAsFunction(identity, () =>
      doc.send(new GetCommand({ TableName: 'tandem-control', Key: { pk: 'apikey', sk: 'x' } })).catch((e: unknown) => e),
    );
    expect(allowed).not.toBeInstanceOf(AccessDeniedError);
    const s3 = new S3Client({ ...config, forcePathStyle: true });
    const s3Denied = await runAsFunction(identity, () =>
      s3.send(new ListObjectsV2Command({ Bucket: 'tandem-raw', Prefix: 'failures/' })).catch((e: unknown) => e),
    );
    expect(s3Denied).toMatchObject({ name: 'AccessDenied', $metadata: { httpStatusCode: 403 } });
    expect((s3Denied as Error).message).toContain('perform: s3:ListBucket on resource: arn:aws:s3:::tandem-raw because');
    ddb.destroy();
    s3.destroy();
  });

  it('checks nothing outside a function, and shows a function its own environment', async () => {
    const ddb = new DynamoDBClient(config);
    const outside = await ddb
      .send(new GetItemCommand({ TableName: 'tandem-control', Key: { pk: { S: 'pointer' } } }))
      .catch((e: unknown) => e);
    expect(outside).not.toBeInstanceOf(AccessDeniedError);
    ddb.destroy();
    const before = process.env.TANDEM_CONTROL_TABLE;
    expect(runAsFunction(identity, () => process.env.TANDEM_CONTROL_TABLE)).toBe('tandem-control');
    expect(runAsFunction(identity, () => process.env.TANDEM_SPEED_TABLE)).toBeUndefined();
    expect(runAsFunction(identity, () => typeof process.env.PATH)).toBe('string');
    expect(process.env.TANDEM_CONTROL_TABLE).toBe(before);
  });
});
