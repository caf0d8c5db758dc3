/**
 * Props of the Tandem construct beyond its defaults: the DuckDB engine (the
 * LocalStack target), stream modes, WAF, views, removal, grants, and the
 * validation errors that show the value received.
 */
import { App, Duration, RemovalPolicy, Size, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { lagAlarmThresholdSeconds, speedTtlSeconds } from '../../functions/core/settings.ts';
import { count, parseViewsJson, sum, type View, view } from '../../functions/core/views.ts';
import { SETTINGS_ENV } from '../../functions/resources.ts';
import { Tandem, type TandemProps } from '../../lib/tandem.ts';
import { actionsOf, logicalId, PLACEHOLDER, referencedIds, resources, statementsOfRole, synthTandem } from './synth.ts';

/** Builds only (no template): for props that must be rejected. */
function build(props: TandemProps): void {
  const app = new App();
  new Tandem(new Stack(app, 'Bad'), 'Tandem', { handlerCode: () => PLACEHOLDER, ...props });
}

const nagViolations = (app: App) => new AwsSolutionsChecks().validateScope(app).violations.map((v) => v.ruleName);

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
    const window = (p.Period as number) * (p.EvaluationPeriods as number);
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
