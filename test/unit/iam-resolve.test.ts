/**
 * From the synthesized template to the local functions (local/iam/resolve.ts):
 * the intrinsics the template uses resolved to local names and ARNs, and the
 * mapping of SDK commands to IAM actions and resources (local/iam/actions.ts).
 */
import { describe, expect, it } from 'vitest';
import { localNames } from '../../functions/resources.ts';
import { authorizationChecks, UnmappedCommandError } from '../../local/iam/actions.ts';
import { localEnvironment } from '../../local/iam/index.ts';
import { TemplateResolver, templateFunctions } from '../../local/iam/resolve.ts';
import type { CfnTemplate } from '../../local/iam/template.ts';

const target = { account: '000000000000', region: 'us-east-1', names: localNames() };
const join = (...parts: unknown[]) => ({ 'Fn::Join': ['', parts] });
const arnOf = (id: string) => ({ 'Fn::GetAtt': [id, 'Arn'] });

// The shapes the synthesized Tandem stack has (test/construct covers the real one).
const template: CfnTemplate = {
  Resources: {
    Stream: { Type: 'AWS::Kinesis::Stream' },
    Control: { Type: 'AWS::DynamoDB::Table' },
    Raw: { Type: 'AWS::S3::Bucket' },
    Machine: { Type: 'AWS::StepFunctions::StateMachine' },
    Db: { Type: 'AWS::Glue::Database', Properties: { DatabaseInput: { Name: 'tandem' } } },
    Logs: { Type: 'AWS::Logs::LogGroup' },
    Role: { Type: 'AWS::IAM::Role' },
    Policy: {
      Type: 'AWS::IAM::Policy',
      Properties: {
        Roles: [{ Ref: 'Role' }],
        PolicyDocument: {
          Version: '2012-10-17',
          Statement: [
            { Effect: 'Allow', Action: ['logs:PutLogEvents'], Resource: arnOf('Logs') },
            { Effect: 'Allow', Action: 'dynamodb:GetItem', Resource: arnOf('Control') },
            { Effect: 'Allow', Action: 's3:GetObject', Resource: join(arnOf('Raw'), '/raw/*') },
            { Effect: 'Allow', Action: 'states:StartExecution', Resource: { Ref: 'Machine' } },
            {
              Effect: 'Allow',
              Action: 'glue:GetTable',
              Resource: join(
                'arn:',
                { Ref: 'AWS::Partition' },
                ':glue:',
                { Ref: 'AWS::Region' },
                ':',
                { Ref: 'AWS::AccountId' },
                ':table/',
                { Ref: 'Db' },
                '/raw',
              ),
            },
          ],
        },
      },
    },
    Fn: {
      Type: 'AWS::Lambda::Function',
      Properties: {
        Role: arnOf('Role'),
        Environment: {
          Variables: {
            POWERTOOLS_SERVICE_NAME: 'tandem-batch-api',
            TANDEM_CONTROL_TABLE: { Ref: 'Control' },
            TANDEM_RAW_BUCKET: { Ref: 'Raw' },
            TANDEM_STREAM_NAME: { Ref: 'Stream' },
            TANDEM_STATE_MACHINE_ARN: { Ref: 'Machine' },
            TANDEM_CUTOFF_MARGIN_SECONDS: '5',
          },
        },
      },
    },
  },
};

describe('TemplateResolver', () => {
  const r = new TemplateResolver(template, target);
  it('names each resource as the local cloud does (through the variable that carries it)', () => {
    expect(r.resolve({ Ref: 'Control' })).toBe('tandem-control');
    expect(r.resolve({ Ref: 'Raw' })).toBe('tandem-raw');
    expect(r.resolve({ Ref: 'Stream' })).toBe('tandem-events');
    expect(r.resolve({ Ref: 'Db' })).toBe('tandem');
  });
  it('builds ARNs in the local account and region', () => {
    expect(r.resolve(arnOf('Control'))).toBe('arn:aws:dynamodb:us-east-1:000000000000:table/tandem-control');
    expect(r.resolve(arnOf('Stream'))).toBe('arn:aws:kinesis:us-east-1:000000000000:stream/tandem-events');
    expect(r.resolve(join(arnOf('Raw'), '/raw/*'))).toBe('arn:aws:s3:::tandem-raw/raw/*');
    expect(r.resolve({ Ref: 'Machine' })).toBe('arn:aws:states:us-east-1:000000000000:stateMachine:local-machine');
    expect(r.resolve(join('arn:', { Ref: 'AWS::Partition' }, ':x:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }))).toBe(
      'arn:aws:x:us-east-1:000000000000',
    );
  });
  it('refuses what it does not know instead of guessing', () => {
    expect(() => r.resolve({ Ref: 'Nope' })).toThrow('the template has no resource Nope');
    expect(() => r.resolve({ 'Fn::GetAtt': ['Control', 'StreamArn'] })).toThrow('Fn::GetAtt Control.StreamArn is not resolved locally');
    expect(() => r.resolve({ 'Fn::Sub': 'x' })).toThrow('Fn::Sub is not resolved locally');
  });
});

describe('templateFunctions and localEnvironment', () => {
  const fns = templateFunctions(template, target);
  const f = fns.get('batchApi')!;
  it('finds each function by its service name, with its role policies resolved', () => {
    expect([...fns.keys()]).toEqual(['batchApi']);
    expect(f.roleLogicalId).toBe('Role');
    expect(f.policies[0]!.document.Statement.map((s) => s.Resource)).toEqual([
      'arn:aws:logs:us-east-1:000000000000:log-group:local-logs:*',
      'arn:aws:dynamodb:us-east-1:000000000000:table/tandem-control',
      'arn:aws:s3:::tandem-raw/raw/*',
      'arn:aws:states:us-east-1:000000000000:stateMachine:local-machine',
      'arn:aws:glue:us-east-1:000000000000:table/tandem/raw',
    ]);
  });
  it('gives the template environment, the local settings on top, resource names from the template only', () => {
    const env = localEnvironment(f.environment, 'tandem-batch-api', {
      target,
      functionNames: {},
      template: { template, hash: undefined, cached: false, ms: 0 },
      overrides: { TANDEM_CUTOFF_MARGIN_SECONDS: '0', TANDEM_SPEED_TABLE: 'tandem-speed', AWS_ENDPOINT_URL_S3: 'http://s3', PATH: '/bin' },
    });
    expect(env).toEqual({
      POWERTOOLS_SERVICE_NAME: 'tandem-batch-api',
      TANDEM_CONTROL_TABLE: 'tandem-control',
      TANDEM_RAW_BUCKET: 'tandem-raw',
      TANDEM_STREAM_NAME: 'tandem-events',
      TANDEM_CUTOFF_MARGIN_SECONDS: '0',
      AWS_ENDPOINT_URL_S3: 'http://s3',
      AWS_LAMBDA_FUNCTION_NAME: 'tandem-batch-api',
      AWS_REGION: 'us-east-1',
      AWS_DEFAULT_REGION: 'us-east-1',
    });
  });
});

describe('authorizationChecks', () => {
  const seen = {
    streamOfIterator: (it: string) => (it === 'it-1' ? 'arn:aws:kinesis:us-east-1:000000000000:stream/tandem-events' : undefined),
    workgroupOfQuery: () => undefined,
  };
  const checks = (client: string, command: string, input: Record<string, unknown>) =>
    authorizationChecks(client, command, input, target, seen);
  const table = 'arn:aws:dynamodb:us-east-1:000000000000:table/';
  it('DynamoDB: the table ARN, one check per table of a batch, the partition keys as dynamodb:LeadingKeys', () => {
    expect(
      checks('DynamoDBClient', 'GetItemCommand', { TableName: 'tandem-control', Key: { pk: { S: 'apikey' }, sk: { S: 'h' } } }),
    ).toEqual([{ action: 'dynamodb:GetItem', resource: `${table}tandem-control`, context: { 'dynamodb:LeadingKeys': ['apikey'] } }]);
    expect(
      checks('DynamoDBClient', 'BatchWriteItemCommand', {
        RequestItems: {
          'tandem-speed': [{ PutRequest: { Item: { pk: 'a' } } }, { DeleteRequest: { Key: { pk: 'b' } } }],
          'tandem-dedup': [],
        },
      }),
    ).toEqual([
      { action: 'dynamodb:BatchWriteItem', resource: `${table}tandem-speed`, context: { 'dynamodb:LeadingKeys': ['a', 'b'] } },
      { action: 'dynamodb:BatchWriteItem', resource: `${table}tandem-dedup`, context: {} },
    ]);
    expect(
      checks('DynamoDBClient', 'QueryCommand', {
        TableName: 'tandem-speed',
        IndexName: 'byDay',
        KeyConditionExpression: '#p = :p AND sk > :s',
        ExpressionAttributeNames: { '#p': 'pk' },
        ExpressionAttributeValues: { ':p': { S: 'v1' }, ':s': { S: '0' } },
      }),
    ).toEqual([{ action: 'dynamodb:Query', resource: `${table}tandem-speed/index/byDay`, context: { 'dynamodb:LeadingKeys': ['v1'] } }]);
  });
  it('S3: objects for object actions, the bucket with s3:prefix for ListObjectsV2 (s3:ListBucket)', () => {
    expect(checks('S3Client', 'PutObjectCommand', { Bucket: 'tandem-raw', Key: 'raw/a.json.gz' })).toEqual([
      { action: 's3:PutObject', resource: 'arn:aws:s3:::tandem-raw/raw/a.json.gz', context: {} },
    ]);
    expect(checks('S3Client', 'ListObjectsV2Command', { Bucket: 'tandem-raw', Prefix: 'raw/dt=' })).toEqual([
      { action: 's3:ListBucket', resource: 'arn:aws:s3:::tandem-raw', context: { 's3:prefix': 'raw/dt=' } },
    ]);
    expect(checks('S3Client', 'HeadObjectCommand', { Bucket: 'b', Key: 'k' })[0]!.action).toBe('s3:GetObject');
  });
  it('Kinesis: the stream ARN, from the name, the ARN or the iterator it was issued for; Step Functions: the ARN', () => {
    const stream = 'arn:aws:kinesis:us-east-1:000000000000:stream/tandem-events';
    expect(checks('KinesisClient', 'PutRecordsCommand', { StreamName: 'tandem-events', Records: [] })).toEqual([
      { action: 'kinesis:PutRecords', resource: stream, context: {} },
    ]);
    expect(checks('KinesisClient', 'GetRecordsCommand', { ShardIterator: 'it-1' })[0]!.resource).toBe(stream);
    expect(() => checks('KinesisClient', 'GetRecordsCommand', { ShardIterator: 'unknown' })).toThrow(UnmappedCommandError);
    expect(checks('SFNClient', 'StartExecutionCommand', { stateMachineArn: 'arn:aws:states:us-east-1:0:stateMachine:m' })).toEqual([
      { action: 'states:StartExecution', resource: 'arn:aws:states:us-east-1:0:stateMachine:m', context: {} },
    ]);
  });
});
