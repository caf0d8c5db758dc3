/**
 * Props of the Tandem construct beyond its defaults: the LocalStack target as
 * bin/app.ts builds it (key checked in the functions, Node.js 22, DuckDB, no
 * bisect), the DuckDB engine, stream modes, WAF, views, removal, grants, and the
 * validation errors that show the value received.
 */
import { App, Duration, RemovalPolicy, Size, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { propsFromContext } from '../../bin/app.ts';
import { IN_FUNCTION, INVALID_KEY, MISSING_KEY } from '../../functions/api/key-check.ts';
import { ROUTES } from '../../functions/contract/routes.ts';
import { lagAlarmThresholdSeconds, speedTtlSeconds } from '../../functions/core/settings.ts';
import { count, parseViewsJson, sum, type View, view } from '../../functions/core/views.ts';
import { SETTINGS_ENV, TABLES } from '../../functions/resources.ts';
import { ApiAuth } from '../../lib/ingest-api.ts';
import { Tandem, type TandemProps } from '../../lib/tandem.ts';
import { actionsOf, logicalId, PLACEHOLDER, referencedIds, resources, statementsOfRole, synthTandem } from './synth.ts';

/** Builds only (no template): for props that must be rejected. */
function build(props: TandemProps): void {
  const app = new App();
  new Tandem(new Stack(app, 'Bad'), 'Tandem', { handlerCode: () => PLACEHOLDER, ...props });
}

const nagViolations = (app: App) => new AwsSolutionsChecks().validateScope(app).violations.map((v) => v.ruleName);

// The props bin/app.ts derives from the context, as `npm run deploy:localstack` passes it.
const {
  stackName: _name,
  description: _d,
  env: _env,
  ...localstackProps
} = await propsFromContext((k) => (k === 'target' ? 'localstack' : undefined), {});

describe('the LocalStack target (-c target=localstack)', () => {
  const s = synthTandem(localstackProps);
  const t = s.tandem;
  const fnResources = () => resources(s.template, 'AWS::Lambda::Function');
  const envOf = (fn: lambda.IFunction) =>
    (fnResources()[logicalId(s.stack, fn)]!.Properties.Environment as { Variables: Record<string, unknown> }).Variables;
  const keyed = { ingest: t.ingestApi.ingestFunction, query: t.serving.queryFunction, batchApi: t.serving.batchApiFunction };

  it('creates no authorizer: every method is open to the gateway, the functions check the key', () => {
    expect(t.ingestApi.apiAuth).toBe(ApiAuth.IN_FUNCTION);
    s.template.resourceCountIs('AWS::ApiGateway::Authorizer', 0);
    expect(t.ingestApi.authorizer).toBeUndefined();
    expect(t.ingestApi.authorizerFunction).toBeUndefined();
    expect(Object.keys(fnResources())).toHaveLength(7);
    for (const m of Object.values(resources(s.template, 'AWS::ApiGateway::Method'))) {
      expect(m.Properties.AuthorizationType).toBe('NONE');
      expect(m.Properties.AuthorizerId).toBeUndefined();
    }
  });

  it('every function of a keyed route checks the key itself; /health does not', () => {
    // Each keyed route of the contract is served by one of these.
    expect(new Set(ROUTES.filter((r) => r.auth).map((r) => r.handler))).toEqual(new Set(Object.keys(keyed)));
    for (const [name, fn] of Object.entries(keyed)) {
      expect(envOf(fn), name).toMatchObject({
        [SETTINGS_ENV.apiAuth]: IN_FUNCTION,
        [TABLES.control.env]: { Ref: logicalId(s.stack, t.controlTable) },
      });
      const role = logicalId(s.stack, (fn.role as iam.Role).node.defaultChild);
      expect(statementsOfRole(s.template, role), name).toContainEqual({
        Effect: 'Allow',
        Action: 'dynamodb:GetItem',
        Resource: { 'Fn::GetAtt': [logicalId(s.stack, t.controlTable), 'Arn'] },
        Condition: { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': ['apikey'] } },
      });
    }
    expect(Object.keys(envOf(t.ingestApi.healthFunction))).not.toContain(SETTINGS_ENV.apiAuth);
    expect(Object.keys(envOf(t.ingestApi.healthFunction))).not.toContain(TABLES.control.env);
  });

  it('the functions answer 401/403 with the bodies of the gateway responses AWS gives', () => {
    const responses = Object.values(resources(s.template, 'AWS::ApiGateway::GatewayResponse')).map((r) => r.Properties);
    const body = (type: string) =>
      JSON.parse((responses.find((r) => r.ResponseType === type)!.ResponseTemplates as Record<string, string>)['application/json']!);
    expect(body('UNAUTHORIZED')).toEqual({ error: MISSING_KEY.error, field: MISSING_KEY.field });
    expect(body('ACCESS_DENIED')).toEqual({ error: INVALID_KEY.error, field: INVALID_KEY.field });
    expect(responses.find((r) => r.ResponseType === 'UNAUTHORIZED')!.StatusCode).toBe(String(MISSING_KEY.statusCode));
    expect(responses.find((r) => r.ResponseType === 'ACCESS_DENIED')!.StatusCode).toBe(String(INVALID_KEY.statusCode));
  });

  it('leaves body checks to the functions (LocalStack validates gzip bodies as JSON and drops the contract body)', () => {
    s.template.hasResourceProperties('AWS::ApiGateway::RequestValidator', { ValidateRequestBody: false, ValidateRequestParameters: true });
  });

  it('runs every function on nodejs22.x (nodejs24.x exists in LocalStack only from 4.11)', () => {
    for (const f of Object.values(fnResources())) expect(f.Properties.Runtime).toBe('nodejs22.x');
  });

  it('runs the batch on DuckDB (no Athena or Glue in LocalStack)', () => {
    expect(envOf(t.batchLayer.function)[SETTINGS_ENV.batchEngine]).toBe('duckdb');
    expect(envOf(t.serving.batchApiFunction)[SETTINGS_ENV.batchEngine]).toBe('duckdb');
    s.template.resourceCountIs('AWS::Athena::WorkGroup', 0);
    s.template.resourceCountIs('AWS::Glue::Database', 0);
  });

  it('does not rely on bisect: both mappings have it off, bounded retries and the S3 on-failure destination', () => {
    const mappings = Object.values(resources(s.template, 'AWS::Lambda::EventSourceMapping')).map((m) => m.Properties);
    expect(mappings).toHaveLength(2);
    for (const m of mappings) {
      expect(m.BisectBatchOnFunctionError).toBe(false);
      expect(m.FunctionResponseTypes).toEqual(['ReportBatchItemFailures']);
      expect(m.MaximumRetryAttempts).toBeGreaterThan(0);
      expect(JSON.stringify(m.DestinationConfig)).toContain(logicalId(s.stack, t.failureBucket));
    }
  });

  it('is cdk-nag clean', () => {
    expect(nagViolations(s.app)).toEqual([]);
  });
});

describe('apiAuth and runtime are validated', () => {
  it('rejects a runtime before Node 20 and an unknown mode', () => {
    expect(() => build({ runtime: lambda.Runtime.NODEJS_18_X })).toThrow(
      /runtime must be a Node\.js runtime nodejs20\.x or later\. Received nodejs18\.x/,
    );
    expect(() => build({ runtime: lambda.Runtime.PYTHON_3_12 })).toThrow(/Received python3\.12/);
    expect(() => build({ apiAuth: 'none' as ApiAuth })).toThrow(/apiAuth must be one of authorizer, in-function\. Received "none"/);
  });
});

describe('the Athena cost model and projection start', () => {
  const s = synthTandem(
    { athenaRawBytesPerDay: Size.gibibytes(60), athenaHistoryDays: 90, projectionStartDay: '2026-12-01' },
    undefined,
    'Cost',
  );
  it('sizes the cutoff as 2 x bytes a day x history days, and alarms at 80 % of it', () => {
    const cutoff = 2 * 60 * 1024 ** 3 * 90;
    expect(s.tandem.batchLayer.bytesScannedCutoff).toBe(cutoff);
    s.template.hasResourceProperties('AWS::Athena::WorkGroup', { WorkGroupConfiguration: { BytesScannedCutoffPerQuery: cutoff } });
    s.template.hasResourceProperties('AWS::CloudWatch::Alarm', { Threshold: Math.floor(cutoff * 0.8) });
  });
  it('projects partitions from the day it is given', () => {
    const table = Object.values(s.template.findResources('AWS::Glue::Table'))[0] as {
      Properties: { TableInput: { Parameters: Record<string, unknown> } };
    };
    expect(table.Properties.TableInput.Parameters['projection.dt.range']).toBe('2026-12-01,NOW');
  });
});

describe('batchEngine duckdb (the LocalStack target)', () => {
  const s = synthTandem({
    batchEngine: 'duckdb',
    streamMode: kinesis.StreamMode.PROVISIONED,
    shardCount: 3,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  const fn = s.tandem.batchLayer.function;
  const env = () =>
    (
      resources(s.template, 'AWS::Lambda::Function')[logicalId(s.stack, fn)]!.Properties.Environment as {
        Variables: Record<string, unknown>;
      }
    ).Variables;

  it('creates no Glue, Athena or results bucket, and runs DuckDB in the batch-task function', () => {
    s.template.resourceCountIs('AWS::Glue::Database', 0);
    s.template.resourceCountIs('AWS::Glue::Table', 0);
    s.template.resourceCountIs('AWS::Athena::WorkGroup', 0);
    s.template.resourceCountIs('AWS::S3::Bucket', 3);
    expect(env()[SETTINGS_ENV.batchEngine]).toBe('duckdb');
    expect(env()[SETTINGS_ENV.stageDir]).toBe('/tmp/tandem-stage');
    expect(Object.keys(env())).not.toContain(SETTINGS_ENV.athenaWorkgroup);
    s.template.hasResourceProperties('AWS::Lambda::Function', {
      MemorySize: 3008,
      Environment: { Variables: { [SETTINGS_ENV.batchEngine]: 'duckdb' } },
    });
  });

  it('the batch task has no Athena or Glue permission', () => {
    const role = logicalId(s.stack, (fn.role as iam.Role).node.defaultChild);
    const acts = statementsOfRole(s.template, role).flatMap(actionsOf);
    expect(acts.filter((a) => /^(athena|glue):/.test(a))).toEqual([]);
    expect(acts).toContain('s3:GetObject');
  });

  it('uses a provisioned stream with the given shards', () => {
    s.template.hasResourceProperties('AWS::Kinesis::Stream', { ShardCount: 3, StreamModeDetails: { StreamMode: 'PROVISIONED' } });
  });

  it('deletes stateful resources with the stack when asked', () => {
    const tables = Object.values(resources(s.template, 'AWS::DynamoDB::Table'));
    const buckets = Object.values(resources(s.template, 'AWS::S3::Bucket'));
    // control, speed, dedup, batch views; access logs, failures, raw (DuckDB has no results bucket)
    expect(tables).toHaveLength(4);
    expect(buckets).toHaveLength(3);
    for (const t of tables) expect(t.DeletionPolicy).toBe('Delete');
    for (const b of buckets) expect(b.DeletionPolicy).toBe('Delete');
  });

  it('is cdk-nag clean', () => {
    expect(nagViolations(s.app)).toEqual([]);
  });
});

describe('options', () => {
  const views = [
    view({ name: 'clicks', dimensions: ['page'], grain: 'hour', metrics: { clicks: count() } }),
    view({ name: 'sales', filter: { type: 'sale' }, dimensions: [], grain: 'day', metrics: { total: sum('amount') } }),
  ];
  const hash = 'a'.repeat(64);
  let producer: iam.Role | undefined;
  let reader: iam.Role | undefined;
  const s = synthTandem(
    {
      views: parseViewsJson(JSON.stringify({ views })),
      maxBatchLag: Duration.hours(2),
      batchEvery: Duration.minutes(30),
      createWebAcl: true,
      corsAllowOrigin: 'https://dash.example.com',
      apiKeyHashes: [`ops:${hash}`],
      architecture: lambda.Architecture.X86_64,
    },
    (tandem, stack) => {
      producer = new iam.Role(stack, 'Producer', { assumedBy: new iam.AccountRootPrincipal() });
      reader = new iam.Role(stack, 'Reader', { assumedBy: new iam.AccountRootPrincipal() });
      tandem.grantIngest(producer);
      tandem.grantQuery(reader);
    },
  );

  it('views parsed from { views } JSON reach every function', () => {
    s.template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: { [SETTINGS_ENV.views]: JSON.stringify(views) } },
    });
    expect(s.tandem.views.map((v) => v.name)).toEqual(['clicks', 'sales']);
  });

  it('the lag alarm follows maxBatchLag, below the speed TTL derived from it', () => {
    const p = resources(s.template, 'AWS::CloudWatch::Alarm')[logicalId(s.stack, s.tandem.monitoring.batchLagAlarm)]!.Properties;
    const period = (p.Metrics as { MetricStat?: { Period: number } }[]).find((m) => m.MetricStat)!.MetricStat!.Period;
    const window = period * (p.EvaluationPeriods as number);
    expect(window).toBe(2 * 3600);
    expect(window).toBe(lagAlarmThresholdSeconds(s.tandem.settings));
    expect(window).toBeLessThan(speedTtlSeconds(s.tandem.settings));
    s.template.hasResourceProperties('AWS::Scheduler::Schedule', { ScheduleExpression: 'rate(30 minutes)' });
  });

  it('creates a web ACL without the body-size rule and associates it with the stage', () => {
    const acl = Object.values(resources(s.template, 'AWS::WAFv2::WebACL'))[0]!.Properties;
    const names = (acl.Rules as { Name: string }[]).map((r) => r.Name);
    expect(names).toEqual(['AWSManagedRulesAmazonIpReputationList', 'AWSManagedRulesKnownBadInputsRuleSet', 'rate-per-ip']);
    expect(acl.Scope).toBe('REGIONAL');
    s.template.resourceCountIs('AWS::WAFv2::WebACLAssociation', 1);
  });

  it('passes the CORS origin to the API functions and the gateway answers', () => {
    s.template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: { [SETTINGS_ENV.corsOrigin]: 'https://dash.example.com' } },
    });
    s.template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseParameters: { 'gatewayresponse.header.Access-Control-Allow-Origin': "'https://dash.example.com'" },
    });
  });

  it('passes named key hashes to the authorizer', () => {
    s.template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: { [SETTINGS_ENV.apiKeyHashes]: `ops:${hash}` } },
    });
  });

  it('builds x86_64 functions when asked', () => {
    const functions = Object.values(resources(s.template, 'AWS::Lambda::Function'));
    expect(functions).toHaveLength(8);
    for (const f of functions) expect(f.Properties.Architectures).toEqual(['x86_64']);
  });

  it('grantIngest lets a producer put records, grantQuery lets a reader read the three tables', () => {
    const t = s.template;
    const put = statementsOfRole(t, logicalId(s.stack, producer!.node.defaultChild));
    expect(put.flatMap(actionsOf).sort()).toEqual(['kinesis:ListShards', 'kinesis:PutRecord', 'kinesis:PutRecords']);
    const read = statementsOfRole(t, logicalId(s.stack, reader!.node.defaultChild));
    expect(read.flatMap(actionsOf).every((a) => /^dynamodb:(Get|BatchGet|Query|Describe)/.test(a))).toBe(true);
    expect(read.flatMap(referencedIds).sort()).toEqual(
      [s.tandem.speedTable, s.tandem.batchViewsTable, s.tandem.controlTable].map((x) => logicalId(s.stack, x)).sort(),
    );
  });

  it('is cdk-nag clean with WAF', () => {
    expect(nagViolations(s.app)).toEqual([]);
  });
});

describe('validation errors show the value received', () => {
  it.each<[string, TandemProps, RegExp]>([
    ['shardCount on an on-demand stream', { shardCount: 4 }, /shardCount applies to a provisioned stream only\. Received 4/],
    [
      'a stream retention under a day',
      { streamRetentionPeriod: Duration.hours(12) },
      /retentionPeriod must be between 86400 and 31536000 seconds\. Received 43200 seconds/,
    ],
    ['infinite retries', { speedRetryAttempts: -1 }, /retryAttempts must be a whole number between 0 and 10000\. Received -1/],
    [
      'a record age past the retention',
      { archiveMaxRecordAge: Duration.hours(48) },
      /maxRecordAge cannot exceed the stream retention \(1 day\)\. Received 2 days/,
    ],
    [
      'a batch window over 5 minutes',
      { speedMaxBatchingWindow: Duration.minutes(6) },
      /maxBatchingWindow must be between 0 and 300 seconds\. Received 360 seconds/,
    ],
    [
      'a schedule slower than the lag alarm',
      { batchEvery: Duration.hours(7) },
      /batchEvery must be shorter than maxBatchLag \(6 hours\).*Received 7 hours/,
    ],
    [
      'a window that does not divide a day',
      { window: Duration.seconds(7) },
      /windowSeconds must divide a day \(86400\) evenly, received 7/,
    ],
    [
      'a lag over a day',
      { maxBatchLag: Duration.hours(25) },
      /maxBatchLag must be whole minutes and at most 1 day for its alarm\. Received 90000 s/,
    ],
    ['a bad key hash', { apiKeyHashes: ['not-a-hash'] }, /apiKeyHashes entries must be a SHA-256 hex hash.*Received "not-a-hash"/],
    [
      'WAF twice',
      { createWebAcl: true, webAclArn: 'arn:aws:wafv2:eu-west-1:123456789012:regional/webacl/x/1' },
      /either createWebAcl or webAclArn.*Received webAclArn arn:aws:wafv2/,
    ],
    ['an unknown engine', { batchEngine: 'spark' as 'athena' }, /batchEngine must be one of athena, duckdb\. Received "spark"/],
    [
      'a view with a bad grain',
      // Callers without the types (JavaScript, casts) are validated all the same.
      { views: [{ name: 'v', dimensions: [], grain: 'week', metrics: { n: { fn: 'count' } } }] as unknown as View[] },
      /views\[0\]\.grain: grain must be one of minute, hour, day, received "week"/,
    ],
    ['no views', { views: [] }, /views must declare at least one view\. Received \[\]/],
    [
      'a tiny Athena cutoff',
      { athenaBytesScannedCutoff: Size.mebibytes(1) },
      /athenaBytesScannedCutoff must be at least 10 MB\. Received 1048576 bytes/,
    ],
    [
      'a projection start that is no day',
      { projectionStartDay: '2025-02-30' },
      /projectionStartDay must be a day YYYY-MM-DD\. Received "2025-02-30"/,
    ],
    [
      'a projection start in another format',
      { projectionStartDay: '01/02/2025' },
      /projectionStartDay must be a day YYYY-MM-DD\. Received "01\/02\/2025"/,
    ],
  ])('rejects %s', (_what, props, message) => {
    expect(() => build(props)).toThrow(message);
  });

  it('rejects views too large for the Lambda environment, naming the size', () => {
    const many = Array.from({ length: 40 }, (_, i) =>
      view({
        name: `view_${i}_with_a_long_name`,
        dimensions: ['country', 'page'],
        grain: 'minute',
        metrics: { total_amount: sum('amount'), events: count() },
      }),
    );
    expect(() => build({ views: many })).toThrow(/environment of \w+ is \d+ bytes, more than Lambda's 4096.*Received \d+ bytes/);
  });

  it('errors carry the construct path', () => {
    expect(() => build({ speedBatchSize: 0 })).toThrow(
      /^Bad\/Tandem\/Speed: batchSize must be a whole number between 1 and 10000\. Received 0/,
    );
  });
});
