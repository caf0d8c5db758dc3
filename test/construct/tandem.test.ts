/**
 * The Tandem construct with its defaults (athena engine), synthesized once:
 * every security and reliability setting the deployment issue lists, the IAM
 * of each function, the alarms, and cdk-nag.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CfnResource, Validations } from 'aws-cdk-lib';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { ROUTES } from '../../functions/contract/routes.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { DEFAULT_SETTINGS, lagAlarmThresholdSeconds, speedTtlSeconds } from '../../functions/core/settings.ts';
import { GLUE_COLUMNS, GLUE_COMPACT_COLUMNS } from '../../functions/core/sql.ts';
import { BUCKETS, SETTINGS_ENV, STREAM, TABLES, TTL_ATTRIBUTE } from '../../functions/resources.ts';
import { ALARM_METRICS_LIMIT, groupsOf } from '../../lib/monitoring.ts';
import { actionsOf, logicalId, referencedIds, resources, type Statement, statementsOfRole, synthTandem } from './synth.ts';

const here = dirname(fileURLToPath(import.meta.url));
const ASL_FILE = join(here, 'state-machine.asl.json');

const { app, stack, tandem, template } = synthTandem();
const id = (c: unknown) => logicalId(stack, c);
const roleOf = (fn: lambda.IFunction) => id((fn.role as iam.Role).node.defaultChild);
const fnId = (fn: lambda.IFunction) => id(fn);
const statements = (fn: lambda.IFunction) => statementsOfRole(template, roleOf(fn));
const allActions = (fn: lambda.IFunction) => statements(fn).flatMap(actionsOf);
const WRITE_ACTION =
  /^(dynamodb:(Put|Update|Delete|BatchWrite)|s3:(Put|Delete|Abort)|kinesis:Put|states:(Start|Stop)|sqs:Send|sns:Publish|lambda:Invoke)/;

const functions = () => ({
  ingest: tandem.ingestApi.ingestFunction,
  health: tandem.ingestApi.healthFunction,
  authorizer: tandem.ingestApi.authorizerFunction!,
  speed: tandem.speedLayer.function,
  archive: tandem.rawArchive.function,
  batchTask: tandem.batchLayer.function,
  query: tandem.serving.queryFunction,
  batchApi: tandem.serving.batchApiFunction,
});

function envOf(fn: lambda.IFunction): Record<string, unknown> {
  const r = resources(template, 'AWS::Lambda::Function')[fnId(fn)];
  return ((r?.Properties.Environment as { Variables: Record<string, unknown> }) ?? { Variables: {} }).Variables;
}

describe('stream', () => {
  it('is on-demand and encrypted', () => {
    template.hasResourceProperties('AWS::Kinesis::Stream', {
      StreamModeDetails: { StreamMode: 'ON_DEMAND' },
      StreamEncryption: { EncryptionType: 'KMS', KeyId: 'alias/aws/kinesis' },
      RetentionPeriodHours: 24,
    });
  });
});

describe('event source mappings', () => {
  const mapping = (fn: lambda.IFunction) => {
    const all = Object.values(resources(template, 'AWS::Lambda::EventSourceMapping')).filter(
      (m) => (m.Properties.FunctionName as { Ref: string }).Ref === fnId(fn),
    );
    expect(all).toHaveLength(1);
    return all[0]!.Properties;
  };
  const safe = {
    BisectBatchOnFunctionError: true,
    FunctionResponseTypes: ['ReportBatchItemFailures'],
    ParallelizationFactor: 1,
    StartingPosition: 'TRIM_HORIZON',
  };

  it('speed: small batches, short window, bounded retries and age, S3 on-failure destination', () => {
    const m = mapping(tandem.speedLayer.function);
    expect(m).toMatchObject({
      ...safe,
      BatchSize: 100,
      MaximumBatchingWindowInSeconds: 1,
      MaximumRetryAttempts: 10,
      MaximumRecordAgeInSeconds: 6 * 3600,
    });
    expect(m.DestinationConfig).toEqual({ OnFailure: { Destination: { 'Fn::GetAtt': [id(tandem.failureBucket), 'Arn'] } } });
    expect(m.EventSourceArn).toEqual({ 'Fn::GetAtt': [id(tandem.stream), 'Arn'] });
  });

  it('archive: large batches, long window, bounded retries, age up to the retention', () => {
    const m = mapping(tandem.rawArchive.function);
    expect(m).toMatchObject({
      ...safe,
      BatchSize: 5000,
      MaximumBatchingWindowInSeconds: 60,
      MaximumRetryAttempts: 1000,
      MaximumRecordAgeInSeconds: 24 * 3600,
    });
    expect(m.DestinationConfig).toEqual({ OnFailure: { Destination: { 'Fn::GetAtt': [id(tandem.failureBucket), 'Arn'] } } });
  });

  it('never retries forever nor keeps records forever', () => {
    const mappings = Object.values(resources(template, 'AWS::Lambda::EventSourceMapping'));
    expect(mappings).toHaveLength(2);
    for (const m of mappings) {
      expect(m.Properties.MaximumRetryAttempts).toBeGreaterThanOrEqual(0);
      expect(m.Properties.MaximumRecordAgeInSeconds).toBeGreaterThanOrEqual(60);
    }
  });
});

describe('tables', () => {
  const tables = {
    speed: tandem.speedTable,
    dedup: tandem.dedupTable,
    batchViews: tandem.batchViewsTable,
    control: tandem.controlTable,
  } as const;

  it.each(Object.keys(tables) as (keyof typeof tables)[])('%s: keys from resources.ts, TTL, PITR, encryption, on-demand', (name) => {
    const spec = TABLES[name];
    const t = resources(template, 'AWS::DynamoDB::Table')[id(tables[name])];
    expect(t).toBeDefined();
    const keys = [
      { AttributeName: spec.partitionKey.name, KeyType: 'HASH' },
      ...('sortKey' in spec ? [{ AttributeName: spec.sortKey.name, KeyType: 'RANGE' }] : []),
    ];
    expect(t!.Properties).toMatchObject({
      KeySchema: keys,
      BillingMode: 'PAY_PER_REQUEST',
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      SSESpecification: { SSEEnabled: true },
      TimeToLiveSpecification: { AttributeName: TTL_ATTRIBUTE, Enabled: true },
    });
    expect(t!.DeletionPolicy).toBe('Retain');
  });
});

describe('buckets', () => {
  const buckets = resources(template, 'AWS::S3::Bucket');

  it('all are encrypted, private, owner-enforced and kept on delete', () => {
    expect(Object.keys(buckets)).toHaveLength(4);
    for (const b of Object.values(buckets)) {
      expect(b.Properties).toMatchObject({
        BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
        PublicAccessBlockConfiguration: {
          BlockPublicAcls: true,
          BlockPublicPolicy: true,
          IgnorePublicAcls: true,
          RestrictPublicBuckets: true,
        },
        OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
      });
      expect(b.DeletionPolicy).toBe('Retain');
    }
  });

  it('all deny requests without TLS', () => {
    const policies = resources(template, 'AWS::S3::BucketPolicy');
    for (const bucketId of Object.keys(buckets)) {
      const policy = Object.values(policies).find((p) => (p.Properties.Bucket as { Ref: string }).Ref === bucketId);
      expect(policy, bucketId).toBeDefined();
      const statements = (policy!.Properties.PolicyDocument as { Statement: (Statement & { Condition: unknown })[] }).Statement;
      expect(statements).toContainEqual(
        expect.objectContaining({ Effect: 'Deny', Action: 's3:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
      );
    }
  });

  it('raw, failure and results buckets log access to the access-log bucket', () => {
    const logs = id(tandem.node.findChild('AccessLogsBucket'));
    for (const b of [tandem.rawBucket, tandem.failureBucket, tandem.batchLayer.resultsBucket!]) {
      expect(buckets[id(b)]!.Properties.LoggingConfiguration).toMatchObject({ DestinationBucketName: { Ref: logs } });
    }
    expect(buckets[logs]!.Properties.LoggingConfiguration).toBeUndefined();
  });

  it('raw objects move to cheaper storage after 30 days', () => {
    expect(buckets[id(tandem.rawBucket)]!.Properties.LifecycleConfiguration).toEqual({
      Rules: [
        {
          Id: 'raw-to-cheaper-storage',
          Prefix: 'raw/',
          Status: 'Enabled',
          Transitions: [{ StorageClass: 'INTELLIGENT_TIERING', TransitionInDays: 30 }],
          AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
        },
      ],
    });
  });

  it('the failure bucket publishes request metrics for its alarm', () => {
    expect(buckets[id(tandem.failureBucket)]!.Properties.MetricsConfigurations).toEqual([{ Id: 'all' }]);
  });
});

describe('glue and athena', () => {
  it('the raw table has the archive columns and projects dt/hr partitions over raw/', () => {
    const table = Object.values(resources(template, 'AWS::Glue::Table'))[0]!.Properties.TableInput as {
      Name: string;
      PartitionKeys: unknown;
      Parameters: Record<string, unknown>;
      StorageDescriptor: { Columns: unknown; Location: unknown; SerdeInfo: { SerializationLibrary: string } };
    };
    expect(table.Name).toBe('raw_events');
    expect(table.PartitionKeys).toEqual([
      { Name: 'dt', Type: 'string' },
      { Name: 'hr', Type: 'string' },
    ]);
    expect(table.StorageDescriptor.Columns).toEqual(GLUE_COLUMNS.map((c) => ({ Name: c.name, Type: c.type })));
    expect(table.StorageDescriptor.SerdeInfo.SerializationLibrary).toBe('org.apache.hive.hcatalog.data.JsonSerDe');
    const location = { 'Fn::Join': ['', ['s3://', { Ref: id(tandem.rawBucket) }, '/raw/']] };
    expect(table.StorageDescriptor.Location).toEqual(location);
    expect(table.Parameters).toMatchObject({
      'projection.enabled': 'true',
      'projection.dt.type': 'date',
      'projection.dt.format': 'yyyy-MM-dd',
      // The deploy day by default (the day of synthesis).
      'projection.dt.range': `${new Date().toISOString().slice(0, 10)},NOW`,
      'projection.hr.type': 'integer',
      'projection.hr.range': '0,23',
      'projection.hr.digits': '2',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Athena's projection template syntax
      'storage.location.template': { 'Fn::Join': ['', ['s3://', { Ref: id(tandem.rawBucket) }, '/raw/dt=${dt}/hr=${hr}/']] },
    });
  });

  it('the compacted table reads Parquet over compact/ with the columns the batch reads and the same projected partitions', () => {
    const tables = Object.values(resources(template, 'AWS::Glue::Table')).map(
      (t) =>
        t.Properties.TableInput as {
          Name: string;
          PartitionKeys: unknown;
          Parameters: Record<string, unknown>;
          StorageDescriptor: {
            Columns: unknown;
            Location: unknown;
            InputFormat: string;
            OutputFormat: string;
            SerdeInfo: { SerializationLibrary: string };
          };
        },
    );
    const table = tables.find((t) => t.Name === 'raw_events_compact')!;
    expect(table).toBeDefined();
    expect(table.StorageDescriptor.Columns).toEqual(GLUE_COMPACT_COLUMNS.map((c) => ({ Name: c.name, Type: c.type })));
    expect(table.StorageDescriptor.Columns).not.toContainEqual({ Name: 'type', Type: 'string' });
    expect(table.StorageDescriptor.Columns).toContainEqual({ Name: 'num', Type: 'map<string,string>' });
    expect(table.StorageDescriptor.SerdeInfo.SerializationLibrary).toBe('org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe');
    expect(table.StorageDescriptor.InputFormat).toBe('org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat');
    expect(table.StorageDescriptor.Location).toEqual({ 'Fn::Join': ['', ['s3://', { Ref: id(tandem.rawBucket) }, '/compact/']] });
    expect(table.PartitionKeys).toEqual(tables.find((t) => t.Name === 'raw_events')!.PartitionKeys);
    expect(table.Parameters).toMatchObject({
      classification: 'parquet',
      'projection.enabled': 'true',
      'projection.dt.range': `${new Date().toISOString().slice(0, 10)},NOW`,
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Athena's projection template syntax
      'storage.location.template': { 'Fn::Join': ['', ['s3://', { Ref: id(tandem.rawBucket) }, '/compact/dt=${dt}/hr=${hr}/']] },
    });
    // The state machine, which runs the queries, may read the table and the Parquet objects (read-only).
    const statements = Object.values(resources(template, 'AWS::IAM::Policy')).flatMap(
      (p) => (p.Properties.PolicyDocument as { Statement: { Action: string | string[]; Resource: unknown }[] }).Statement,
    );
    const text = JSON.stringify(statements.filter((st) => [st.Action].flat().includes('glue:GetTable')));
    expect(text).toContain('raw_events_compact');
    const reads = JSON.stringify(statements.filter((st) => [st.Action].flat().includes('s3:GetObject')));
    expect(reads).toContain('/compact/*');
  });

  it('the workgroup can be deleted after it ran queries (cdk destroy), and the Glue database goes with the stack', () => {
    template.hasResourceProperties('AWS::Athena::WorkGroup', { RecursiveDeleteOption: true });
    // Only metadata: retained, its fixed name would make the next create fail with "already exists".
    template.hasResource('AWS::Glue::Database', { DeletionPolicy: 'Delete', UpdateReplacePolicy: 'Delete' });
  });

  it('the workgroup enforces encrypted results and a bytes-scanned cutoff from the cost model', () => {
    // 2 x athenaRawBytesPerDay (1 GiB) x athenaHistoryDays (30): docs/batch-layer.md, "Athena in AWS".
    expect(tandem.batchLayer.bytesScannedCutoff).toBe(2 * 1024 ** 3 * 30);
    template.hasResourceProperties('AWS::Athena::WorkGroup', {
      WorkGroupConfiguration: {
        EnforceWorkGroupConfiguration: true,
        BytesScannedCutoffPerQuery: 60 * 1024 ** 3,
        PublishCloudWatchMetricsEnabled: true,
        ResultConfiguration: {
          EncryptionConfiguration: { EncryptionOption: 'SSE_S3' },
          OutputLocation: { 'Fn::Join': ['', ['s3://', { Ref: id(tandem.batchLayer.resultsBucket) }, '/athena/']] },
        },
      },
    });
  });
});

describe('batch state machine and schedule', () => {
  const sm = resources(template, 'AWS::StepFunctions::StateMachine')[id(tandem.stateMachine)]!.Properties;

  it('logs everything to its log group and traces with X-Ray', () => {
    expect(sm.TracingConfiguration).toEqual({ Enabled: true });
    expect(sm.LoggingConfiguration).toMatchObject({ Level: 'ALL', IncludeExecutionData: true });
    expect(sm.StateMachineType).toBe('STANDARD');
  });

  type State = {
    Type: string;
    Resource?: string;
    Parameters?: Record<string, unknown>;
    Retry?: unknown[];
    Catch?: { ErrorEquals: string[]; Next: string }[];
    Next?: string;
    ItemProcessor?: { States: Record<string, State> };
    Choices?: unknown[];
  };
  const asl = JSON.parse(sm.DefinitionString as string) as { States: Record<string, State> };
  /** Every state, those inside Map states too. */
  const allStates = (states: Record<string, State>): [string, State][] =>
    Object.entries(states).flatMap(([n, st]) => [
      [n, st] as [string, State],
      ...(st.ItemProcessor ? allStates(st.ItemProcessor.States) : []),
    ]);
  const states = Object.fromEntries(allStates(asl.States));

  it('runs the batch-task function in every Lambda task, and the queries as Athena tasks', () => {
    expect(sm.DefinitionSubstitutions).toEqual({
      BatchTaskArn: { 'Fn::GetAtt': [fnId(tandem.batchLayer.function), 'Arn'] },
      ResultsBucket: { Ref: id(tandem.batchLayer.resultsBucket) },
      RawBucket: { Ref: id(tandem.rawBucket) },
    });
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a Step Functions definition substitution
    expect(states.Compile!.Parameters!.resultsLocation).toBe('s3://${ResultsBucket}/athena/');
    const tasks = Object.entries(states).filter(([, st]) => st.Type === 'Task');
    const lambdaTasks = tasks.filter(([, st]) => !st.Resource!.startsWith('arn:aws:states:::athena:'));
    expect(lambdaTasks.map(([n]) => n).sort()).toEqual([
      'CompactPlan',
      'CompactPut',
      'CompactRecord',
      'Compile',
      'Finish',
      'Load',
      'MarkFailed',
      'Parts',
      'Plan',
      'Publish',
      'Verify',
    ]);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a Step Functions definition substitution
    for (const [, st] of lambdaTasks) expect(st.Resource).toBe('${BatchTaskArn}');
    for (const name of ['Plan', 'Compile', 'Verify', 'Views', 'Publish'])
      expect(asl.States[name]!.Catch, name).toEqual([{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'MarkFailed' }]);
    for (const [, st] of tasks) expect(st.Retry).toBeDefined();
  });

  it('no Lambda waits on a query: each is started, polled and stopped by the state machine', () => {
    for (const p of ['Objects', 'View', 'Compact']) {
      expect(states[`${p}Start`]!.Resource).toBe('arn:aws:states:::athena:startQueryExecution');
      expect(states[`${p}Poll`]!.Resource).toBe('arn:aws:states:::athena:getQueryExecution');
      expect(states[`${p}Stop`]!.Resource).toBe('arn:aws:states:::athena:stopQueryExecution');
      expect(states[`${p}Start`]!.Parameters).toMatchObject({ WorkGroup: 'test_batch', QueryExecutionContext: { Database: 'test' } });
      // A failure while the query runs goes through Stop (the query id is in the state).
      expect(states[`${p}Poll`]!.Catch).toEqual([{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: `${p}Stop` }]);
      expect(states[`${p}Stop`]!.Parameters!['QueryExecutionId.$']).toMatch(/started\.id$/);
      expect(states[`${p}TooLong`]!.Next).toBe(`${p}Stop`);
      expect(states[`${p}Stop`]!.Next).toBe(`${p}Failed`);
      // A retryable failure starts the query again with the next attempt number.
      expect(states[`${p}Again`]!.Next).toBe(`${p}Start`);
      expect(JSON.stringify(states[`${p}Again`]!.Parameters)).toContain('States.MathAdd');
    }
    expect(states.ObjectsFailed!.Next).toBe('MarkFailed');
    expect(states.ViewFailed!.Type).toBe('Fail');
    // A compaction query that fails ends its hour's iteration with the error, never the run.
    expect(states.CompactFailed).toMatchObject({ Type: 'Pass', End: true });
  });

  it('compacts covered hours after a publish, by an UNLOAD per hour and a put step, and never fails the published run', () => {
    expect(asl.States.Publish!.Next).toBe('Published');
    expect(asl.States.Published!.Choices).toEqual([{ Variable: '$.publish.published', BooleanEquals: true, Next: 'CompactPlan' }]);
    expect(states.Compile!.Parameters!.compactTable).toBe('raw_events_compact');
    expect(states.Verify!.Parameters!['verified.$']).toBe('$.compiled.verified');
    expect(asl.States.CompactHours).toMatchObject({ Type: 'Map', ItemsPath: '$.compaction.hours', MaxConcurrency: 2 });
    expect(Object.keys(asl.States.CompactHours!.ItemProcessor!.States)).toContain('CompactPut');
    expect(states.CompactPut!.Parameters).toMatchObject({
      step: 'compactPut',
      'location.$': "States.Format('{}a{}/', $.location, $.loop.attempt)",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a Step Functions definition substitution
      rawBucket: '${RawBucket}',
    });
    // Every failure after the publish is caught and recorded, then the run ends as published.
    expect(states.CompactPlan!.Catch![0]!.Next).toBe('CompactPlanFailed');
    expect(states.CompactPut!.Catch![0]!.Next).toBe('CompactFailed');
    expect(asl.States.CompactHours!.Catch![0]!.Next).toBe('CompactRecord');
    expect(asl.States.CompactRecord!.Catch![0]!.Next).toBe('Done');
    expect(asl.States.Done!.Type).toBe('Succeed');
    const afterPublish = ['Published', 'CompactPlan', 'CompactPlanFailed', 'CompactHours', 'CompactRecord', 'Done'];
    for (const name of afterPublish) expect(JSON.stringify(asl.States[name]), name).not.toContain('MarkFailed');
  });

  it('each attempt of a query has its own ClientRequestToken (the same token returns the same FAILED execution)', () => {
    const token = states.ViewStart!.Parameters!['ClientRequestToken.$'] as string;
    expect(token).toBe("States.Hash(States.Format('{}/{}/{}', $$.Execution.Name, $.query.name, $.loop.attempt), 'SHA-256')");
    expect(states.ViewStart!.Parameters!['QueryString.$']).toBe("States.Format('{}{}{}', $.query.head, $.loop.attempt, $.query.tail)");
  });

  it('loads each view by a Map over the load groups of its UNLOAD output', () => {
    const loads = states.Loads!;
    expect(loads).toMatchObject({ Type: 'Map', ItemsPath: '$.parts.groups', MaxConcurrency: 8 });
    expect(Object.keys(loads.ItemProcessor!.States)).toEqual(['Load']);
    expect(states.Parts!.Parameters!['location.$']).toBe("States.Format('{}a{}/', $.location, $.loop.attempt)");
    expect(asl.States.Views).toMatchObject({ Type: 'Map', ItemsPath: '$.compiled.views', MaxConcurrency: 2 });
  });

  it('the state machine may run queries in its workgroup only, and read raw/ and write the results bucket', () => {
    const role = id((tandem.batchLayer.stateMachine.role as iam.Role).node.defaultChild);
    const st = statementsOfRole(template, role);
    const athena = st.filter((x) => actionsOf(x).some((a) => a.startsWith('athena:')));
    expect(athena.flatMap(actionsOf).sort()).toEqual([
      'athena:GetQueryExecution',
      'athena:StartQueryExecution',
      'athena:StopQueryExecution',
    ]);
    for (const x of athena) expect(JSON.stringify(x.Resource)).toContain(':workgroup/test_batch');
    // It reads raw/ and compact/ and never writes the raw bucket: the compaction's UNLOAD writes to the results bucket.
    const raw = st.filter((x) => referencedIds(x).includes(id(tandem.rawBucket)));
    expect(raw.flatMap(actionsOf).sort()).toEqual(['s3:GetBucketLocation', 's3:GetObject', 's3:ListBucket']);
    const results = st.filter((x) => referencedIds(x).includes(id(tandem.batchLayer.resultsBucket)));
    expect(results.flatMap(actionsOf)).toContain('s3:PutObject');
  });

  it('matches the reviewed definition (UPDATE_ASL=1 rewrites test/construct/state-machine.asl.json)', () => {
    const actual = JSON.parse(sm.DefinitionString as string);
    if (process.env.UPDATE_ASL === '1') writeFileSync(ASL_FILE, `${JSON.stringify(actual, null, 2)}\n`);
    expect(
      existsSync(ASL_FILE),
      `${ASL_FILE} is missing: run UPDATE_ASL=1 npx vitest run test/construct/tandem.test.ts and review it`,
    ).toBe(true);
    expect(actual).toEqual(JSON.parse(readFileSync(ASL_FILE, 'utf8')));
  });

  it('times a run out after 2 hours inside the ASL (DefinitionBody.fromString ignores the timeout prop)', () => {
    expect(JSON.parse(sm.DefinitionString as string).TimeoutSeconds).toBe(7200);
  });

  it('logs to a group whose name is new on every stack create (it may be retained)', () => {
    const groups = resources(template, 'AWS::Logs::LogGroup');
    const group = Object.values(groups).find((g) => JSON.stringify(g.Properties.LogGroupName ?? '').includes('/aws/vendedlogs/states/'));
    expect(group).toBeDefined();
    expect(JSON.stringify(group!.Properties.LogGroupName)).toContain('AWS::StackId');
  });

  it('is started every hour with a flexible window and a retry policy', () => {
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'rate(1 hour)',
      State: 'ENABLED',
      FlexibleTimeWindow: { Mode: 'FLEXIBLE', MaximumWindowInMinutes: 1 },
      Target: {
        Arn: { Ref: id(tandem.stateMachine) },
        RetryPolicy: { MaximumRetryAttempts: 3, MaximumEventAgeInSeconds: 600 },
        Input: JSON.stringify({ trigger: 'schedule' }),
      },
    });
  });
});

describe('API', () => {
  const methods = resources(template, 'AWS::ApiGateway::Method');
  const apiResources = resources(template, 'AWS::ApiGateway::Resource');
  const pathOf = (resourceId: unknown): string => {
    const ref = resourceId as { Ref?: string; 'Fn::GetAtt'?: string[] };
    if (ref['Fn::GetAtt']) return '';
    const r = apiResources[ref.Ref!]!;
    return `${pathOf(r.Properties.ParentId)}/${r.Properties.PathPart as string}`;
  };
  const routes = Object.values(methods).map((m) => ({
    method: m.Properties.HttpMethod as string,
    path: pathOf(m.Properties.ResourceId),
    props: m.Properties,
  }));
  const authorizerId = id(tandem.ingestApi.authorizer);

  it('serves exactly the routes of the contract, plus CORS preflights', () => {
    const served = routes.filter((r) => r.method !== 'OPTIONS').map((r) => `${r.method} ${r.path}`);
    expect(served.sort()).toEqual(ROUTES.map((r) => `${r.method} ${r.path}`).sort());
    const preflights = routes.filter((r) => r.method === 'OPTIONS').map((r) => r.path);
    expect(preflights.sort()).toEqual([...new Set(ROUTES.map((r) => r.path))].sort());
  });

  it('puts the authorizer on every route but /health (and preflights)', () => {
    for (const r of routes) {
      if (r.method === 'OPTIONS' || r.path === '/health') expect(r.props.AuthorizationType, `${r.method} ${r.path}`).toBe('NONE');
      else expect(r.props, `${r.method} ${r.path}`).toMatchObject({ AuthorizationType: 'CUSTOM', AuthorizerId: { Ref: authorizerId } });
    }
    template.hasResourceProperties('AWS::ApiGateway::Authorizer', {
      Type: 'REQUEST',
      IdentitySource: 'method.request.header.x-api-key',
      AuthorizerResultTtlInSeconds: 300,
    });
  });

  it('validates requests: path parameters required, the events body shape checked', () => {
    template.hasResourceProperties('AWS::ApiGateway::RequestValidator', { ValidateRequestBody: true, ValidateRequestParameters: true });
    const validator = Object.keys(resources(template, 'AWS::ApiGateway::RequestValidator'))[0];
    for (const r of routes) expect(r.props.RequestValidatorId, `${r.method} ${r.path}`).toEqual({ Ref: validator });
    expect(routes.find((r) => r.method === 'GET' && r.path === '/views/{name}')!.props.RequestParameters).toEqual({
      'method.request.path.name': true,
    });
    expect(routes.find((r) => r.method === 'POST' && r.path === '/events')!.props.RequestModels).toEqual({
      'application/json': { Ref: expect.stringMatching(/EventsBody/) },
    });
  });

  it('logs access and execution (no bodies), traces, throttles', () => {
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      StageName: 'v1',
      TracingEnabled: true,
      AccessLogSetting: { DestinationArn: Match.anyValue(), Format: Match.stringLikeRegexp('requestId') },
      MethodSettings: [
        {
          HttpMethod: '*',
          ResourcePath: '/*',
          LoggingLevel: 'INFO',
          DataTraceEnabled: false,
          MetricsEnabled: true,
          ThrottlingRateLimit: 500,
          ThrottlingBurstLimit: 1000,
        },
      ],
    });
  });

  it('answers the gateway errors with the contract shape and CORS headers', () => {
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseType: 'UNAUTHORIZED',
      StatusCode: '401',
      ResponseParameters: { 'gatewayresponse.header.Access-Control-Allow-Origin': "'*'" },
      ResponseTemplates: { 'application/json': JSON.stringify({ error: 'the x-api-key header is missing', field: 'x-api-key' }) },
    });
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', { ResponseType: 'ACCESS_DENIED', StatusCode: '403' });
  });

  it('sets no status code on the default responses, so each 4xx/5xx type keeps its own (404, 415, 429, 504, ...)', () => {
    for (const type of ['DEFAULT_4XX', 'DEFAULT_5XX']) {
      template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
        ResponseType: type,
        StatusCode: Match.absent(),
        ResponseTemplates: { 'application/json': '{"error": $context.error.messageString}' },
      });
    }
    // Explicit codes only where the contract names them (docs/api.md).
    const codes = Object.values(resources(template, 'AWS::ApiGateway::GatewayResponse'))
      .filter((r) => r.Properties.StatusCode !== undefined)
      .map((r) => `${r.Properties.ResponseType as string} ${r.Properties.StatusCode as string}`);
    expect(codes.sort()).toEqual([
      'ACCESS_DENIED 403',
      'BAD_REQUEST_BODY 400',
      'MISSING_AUTHENTICATION_TOKEN 404',
      'REQUEST_TOO_LARGE 413',
      'THROTTLED 429',
      'UNAUTHORIZED 401',
    ]);
  });

  it('has no WAF unless asked', () => {
    template.resourceCountIs('AWS::WAFv2::WebACL', 0);
    template.resourceCountIs('AWS::WAFv2::WebACLAssociation', 0);
  });
});

describe('functions', () => {
  it('run on the latest Node runtime, arm64, traced, JSON logs to a log group with retention', () => {
    const fns = resources(template, 'AWS::Lambda::Function');
    expect(Object.keys(fns)).toHaveLength(8);
    const groups = resources(template, 'AWS::Logs::LogGroup');
    for (const f of Object.values(fns)) {
      expect(f.Properties).toMatchObject({
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        TracingConfig: { Mode: 'Active' },
        LoggingConfig: { LogFormat: 'JSON' },
      });
      const group = (f.Properties.LoggingConfig as { LogGroup: { Ref: string } }).LogGroup.Ref;
      expect(groups[group]!.Properties.RetentionInDays).toBe(30);
      expect(f.Properties.Environment).toMatchObject({ Variables: { POWERTOOLS_METRICS_NAMESPACE: 'Tandem' } });
    }
    // The service names the handlers' loggers use (functions/contract/telemetry.ts): deployed log queries match them.
    const services = Object.values(fns).map(
      (f) => (f.Properties.Environment as { Variables: Record<string, unknown> }).Variables.POWERTOOLS_SERVICE_NAME,
    );
    expect(services.sort()).toEqual([
      'tandem-archive',
      'tandem-authorizer',
      'tandem-batch',
      'tandem-batch-api',
      'tandem-health',
      'tandem-ingest',
      'tandem-query',
      'tandem-speed',
    ]);
  });

  it('carry the views and settings the local cloud uses', () => {
    for (const fn of [
      tandem.speedLayer.function,
      tandem.rawArchive.function,
      tandem.batchLayer.function,
      tandem.serving.queryFunction,
      tandem.ingestApi.ingestFunction,
    ]) {
      const env = envOf(fn);
      expect(JSON.parse(env[SETTINGS_ENV.views] as string)).toEqual(JSON.parse(JSON.stringify(DEMO_VIEWS)));
      expect(env[SETTINGS_ENV.windowSeconds]).toBe(String(DEFAULT_SETTINGS.windowSeconds));
      expect(env[SETTINGS_ENV.maxBatchLagSeconds]).toBe(String(DEFAULT_SETTINGS.maxBatchLagSeconds));
    }
  });

  it('get the names of exactly the resources they use', () => {
    const ref = (c: unknown) => ({ Ref: id(c) });
    expect(envOf(tandem.speedLayer.function)).toMatchObject({
      [STREAM.env]: ref(tandem.stream),
      [TABLES.speed.env]: ref(tandem.speedTable),
      [TABLES.dedup.env]: ref(tandem.dedupTable),
      [TABLES.control.env]: ref(tandem.controlTable),
      [BUCKETS.failures.env]: ref(tandem.failureBucket),
    });
    expect(envOf(tandem.rawArchive.function)).toMatchObject({
      [BUCKETS.raw.env]: ref(tandem.rawBucket),
      [TABLES.control.env]: ref(tandem.controlTable),
    });
    expect(envOf(tandem.batchLayer.function)).toMatchObject({
      [SETTINGS_ENV.batchEngine]: 'athena',
      [SETTINGS_ENV.athenaTable]: 'raw_events',
      [SETTINGS_ENV.athenaDatabase]: 'test',
      [SETTINGS_ENV.athenaWorkgroup]: 'test_batch',
      [TABLES.batchViews.env]: ref(tandem.batchViewsTable),
    });
    expect(envOf(tandem.serving.batchApiFunction)).toMatchObject({ [SETTINGS_ENV.stateMachineArn]: ref(tandem.stateMachine) });
    expect(envOf(tandem.ingestApi.authorizerFunction!)).toEqual({
      [TABLES.control.env]: ref(tandem.controlTable),
      POWERTOOLS_SERVICE_NAME: 'tandem-authorizer',
      POWERTOOLS_METRICS_NAMESPACE: 'Tandem',
      POWERTOOLS_LOG_LEVEL: 'INFO',
      NODE_OPTIONS: '--enable-source-maps',
    });
    expect(Object.keys(envOf(tandem.serving.queryFunction))).not.toContain(BUCKETS.raw.env);
    expect(Object.keys(envOf(tandem.ingestApi.ingestFunction))).not.toContain(TABLES.speed.env);
  });
});

describe('IAM: each function can do what it needs and no more', () => {
  it('no statement anywhere has a wildcard action', () => {
    for (const p of Object.values(resources(template, 'AWS::IAM::Policy'))) {
      for (const s of (p.Properties.PolicyDocument as { Statement: Statement[] }).Statement) {
        for (const a of actionsOf(s)) expect(a, JSON.stringify(s)).not.toContain('*');
      }
    }
  });

  it('the only Resource "*" grants are for X-Ray and log delivery, which have no resource-level permissions', () => {
    for (const p of Object.values(resources(template, 'AWS::IAM::Policy'))) {
      for (const s of (p.Properties.PolicyDocument as { Statement: Statement[] }).Statement) {
        if (s.Resource === '*')
          for (const a of actionsOf(s))
            expect(a).toMatch(
              /^(xray:|logs:(Create|Get|Update|Delete|List)LogDeliver|logs:(PutResourcePolicy|DescribeResourcePolicies|DescribeLogGroups)$)/,
            );
      }
    }
  });

  it('functions use only their own log group', () => {
    for (const fn of Object.values(functions())) {
      const logs = statements(fn).filter((s) => actionsOf(s).some((a) => a.startsWith('logs:')));
      expect(logs).toHaveLength(1);
      const fnResource = resources(template, 'AWS::Lambda::Function')[fnId(fn)]!;
      const group = (fnResource.Properties.LoggingConfig as { LogGroup: { Ref: string } }).LogGroup.Ref;
      expect(referencedIds(logs[0]!)).toEqual([group]);
    }
  });

  it('the query function cannot write anything', () => {
    const writes = allActions(tandem.serving.queryFunction).filter((a) => WRITE_ACTION.test(a) || a.startsWith('dynamodb:Scan'));
    expect(writes).toEqual([]);
    const dynamo = statements(tandem.serving.queryFunction).filter((s) => actionsOf(s).some((a) => a.startsWith('dynamodb:')));
    expect(dynamo.flatMap(referencedIds).sort()).toEqual(
      [id(tandem.speedTable), id(tandem.batchViewsTable), id(tandem.controlTable)].sort(),
    );
  });

  it('the archive cannot write the view tables, only the raw bucket, the failures and its checkpoints', () => {
    const viewTables = [tandem.speedTable, tandem.dedupTable, tandem.batchViewsTable].map(id);
    for (const s of statements(tandem.rawArchive.function)) {
      const touched = referencedIds(s);
      if (actionsOf(s).some((a) => a.startsWith('dynamodb:'))) {
        expect(touched).toEqual([id(tandem.controlTable)]);
      }
      for (const t of viewTables) expect(touched).not.toContain(t);
    }
    const puts = statements(tandem.rawArchive.function).filter((s) => actionsOf(s).includes('s3:PutObject'));
    expect(puts.flatMap(referencedIds).sort()).toEqual([id(tandem.rawBucket), id(tandem.failureBucket), id(tandem.failureBucket)].sort());
    expect(allActions(tandem.rawArchive.function)).not.toContain('s3:GetObject');
  });

  it('ingest may only put records into the stream', () => {
    const data = statements(tandem.ingestApi.ingestFunction).filter((s) => !actionsOf(s).some((a) => /^(logs|xray):/.test(a)));
    expect(data).toHaveLength(1);
    expect(actionsOf(data[0]!).sort()).toEqual(['kinesis:ListShards', 'kinesis:PutRecord', 'kinesis:PutRecords']);
    expect(referencedIds(data[0]!)).toEqual([id(tandem.stream)]);
  });

  it('the authorizer reads API-key items of the control table and nothing else', () => {
    const data = statements(tandem.ingestApi.authorizerFunction!).filter((s) => !actionsOf(s).some((a) => /^(logs|xray):/.test(a)));
    expect(data).toEqual([
      {
        Effect: 'Allow',
        Action: 'dynamodb:GetItem',
        Resource: { 'Fn::GetAtt': [id(tandem.controlTable), 'Arn'] },
        Condition: { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': ['apikey'] } },
      },
    ]);
    expect(
      statements(tandem.ingestApi.healthFunction)
        .flatMap(actionsOf)
        .filter((a) => !/^(logs|xray):/.test(a)),
    ).toEqual([]);
  });

  it('the speed layer cannot touch the raw archive or the batch views', () => {
    for (const s of statements(tandem.speedLayer.function)) {
      expect(referencedIds(s)).not.toContain(id(tandem.rawBucket));
      expect(referencedIds(s)).not.toContain(id(tandem.batchViewsTable));
    }
  });

  it('the batch task reads the raw archive but cannot write it (compact/ aside), and runs Athena in its own workgroup only', () => {
    const raw = statements(tandem.batchLayer.function).filter((s) => referencedIds(s).includes(id(tandem.rawBucket)));
    // The state machine runs the queries (Athena reads raw/ with its role); the function reads raw/ and compact/, and
    // writes and deletes under compact/ only (it copies the compaction's staged Parquet there).
    expect([...new Set(raw.flatMap(actionsOf))].sort()).toEqual([
      's3:AbortMultipartUpload',
      's3:DeleteObject',
      's3:GetObject',
      's3:ListBucket',
      's3:PutObject',
    ]);
    for (const s of raw.filter((x) => actionsOf(x).some((a) => /^s3:(Put|Delete|Abort)/.test(a)))) {
      expect(JSON.stringify(s.Resource)).toContain('/compact/*');
      expect(JSON.stringify(s.Resource)).not.toContain('raw/');
    }
    expect(JSON.stringify(raw)).toContain('raw/*');
    expect(JSON.stringify(raw)).toContain('compact/*');
    const athena = statements(tandem.batchLayer.function).filter((s) => actionsOf(s).some((a) => a.startsWith('athena:')));
    expect(athena).toHaveLength(1);
    expect(JSON.stringify(athena[0]!.Resource)).toContain(':workgroup/test_batch');
    expect(allActions(tandem.batchLayer.function)).not.toContain('kinesis:PutRecords');
  });

  it('the batch API can start and describe runs of its state machine, and write only the control table', () => {
    const acts = allActions(tandem.serving.batchApiFunction);
    expect(acts).toContain('states:StartExecution');
    expect(acts).toContain('states:DescribeExecution');
    const writes = statements(tandem.serving.batchApiFunction).filter((s) =>
      actionsOf(s).some((a) => /^dynamodb:(Put|Update|Delete|BatchWrite)/.test(a)),
    );
    expect(writes.flatMap(referencedIds)).toEqual([id(tandem.controlTable)]);
  });
});

describe('alarms and dashboard', () => {
  const alarms = resources(template, 'AWS::CloudWatch::Alarm');
  const alarm = (a: unknown) => alarms[id(a)]!.Properties;

  it('watch the iterator age of each mapping', () => {
    for (const [a, fn, ms] of [
      [tandem.monitoring.speedIteratorAgeAlarm, tandem.speedLayer.function, 300_000],
      [tandem.monitoring.archiveIteratorAgeAlarm, tandem.rawArchive.function, 900_000],
    ] as const) {
      expect(alarm(a)).toMatchObject({
        MetricName: 'IteratorAge',
        Namespace: 'AWS/Lambda',
        Statistic: 'Maximum',
        Dimensions: [{ Name: 'FunctionName', Value: { Ref: fnId(fn) } }],
        Threshold: ms,
        ComparisonOperator: 'GreaterThanThreshold',
      });
    }
  });

  it('fires when anything lands in the on-failure bucket', () => {
    const p = alarm(tandem.monitoring.failureDestinationAlarm);
    expect(p).toMatchObject({ Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold' });
    expect(JSON.stringify(p.Metrics)).toContain('"MetricName":"PutRequests"');
    expect(JSON.stringify(p.Metrics)).toContain(`"Value":{"Ref":"${id(tandem.failureBucket)}"}`);
  });

  it('fires when a batch query scans 80 % of the workgroup cutoff (Athena ProcessedBytes of the workgroup)', () => {
    const p = alarm(tandem.monitoring.athenaScanAlarm);
    expect(p).toMatchObject({
      Threshold: Math.floor(60 * 1024 ** 3 * 0.8),
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'notBreaching',
    });
    const metrics = p.Metrics as {
      MetricStat?: { Metric: { Namespace: string; MetricName: string; Dimensions: unknown[] }; Stat: string };
    }[];
    const stats = metrics.filter((m) => m.MetricStat).map((m) => m.MetricStat!);
    expect(stats.map((m) => m.Metric.MetricName)).toEqual(['ProcessedBytes', 'ProcessedBytes', 'ProcessedBytes']);
    for (const m of stats) {
      expect(m).toMatchObject({ Metric: { Namespace: 'AWS/Athena' }, Stat: 'Maximum' });
      expect(m.Metric.Dimensions).toContainEqual({ Name: 'WorkGroup', Value: 'test_batch' });
    }
  });

  it('fires on failed batch runs', () => {
    const p = alarm(tandem.monitoring.batchFailureAlarm);
    expect(p).toMatchObject({ Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold' });
    for (const m of ['ExecutionsFailed', 'ExecutionsTimedOut', 'ExecutionsAborted']) expect(JSON.stringify(p.Metrics)).toContain(m);
  });

  it('fires on batch lag after lagAlarmThresholdSeconds, well before the speed TTL', () => {
    const p = alarm(tandem.monitoring.batchLagAlarm);
    const metrics = p.Metrics as { Id: string; Expression?: string; MetricStat?: { Period: number; Metric: { MetricName: string } } }[];
    const period = metrics.find((m) => m.MetricStat)!.MetricStat!.Period;
    const window = period * (p.EvaluationPeriods as number);
    expect(window).toBe(lagAlarmThresholdSeconds(DEFAULT_SETTINGS));
    expect(window + period).toBeLessThan(speedTtlSeconds(DEFAULT_SETTINGS));
    expect(p).toMatchObject({
      ComparisonOperator: 'LessThanThreshold',
      Threshold: 1,
      DatapointsToAlarm: p.EvaluationPeriods,
      // A new stack has no run yet: missing data must not be breaching, or it starts red.
      TreatMissingData: 'notBreaching',
    });
    // Periods count only while the stream is polled (the heartbeat), so a stopped schedule still alarms.
    expect(metrics.find((m) => m.Expression)!.Expression).toBe('succeeded + 0 * polls');
    expect(
      metrics
        .map((m) => m.MetricStat?.Metric.MetricName)
        .filter(Boolean)
        .sort(),
    ).toEqual(['ExecutionsSucceeded', 'GetRecords.Success']);
  });

  it('fires when the published cutoff is older than the lag threshold', () => {
    expect(alarm(tandem.monitoring.batchCutoffAgeAlarm)).toMatchObject({
      Namespace: 'Tandem',
      MetricName: 'BatchCutoffAge',
      Dimensions: [{ Name: 'service', Value: 'batch' }],
      Statistic: 'Maximum',
      Threshold: lagAlarmThresholdSeconds(DEFAULT_SETTINGS),
      ComparisonOperator: 'GreaterThanThreshold',
    });
  });

  it('fires on API 5xx and on throttles', () => {
    expect(alarm(tandem.monitoring.apiServerErrorAlarm)).toMatchObject({
      MetricName: '5XXError',
      Namespace: 'AWS/ApiGateway',
      Threshold: 1,
    });
    const lambda = tandem.monitoring.lambdaThrottleAlarms.map((a) => JSON.stringify(alarm(a).Metrics)).join();
    for (const fn of Object.values(functions())) expect(lambda).toContain(`"Value":{"Ref":"${fnId(fn)}"}`);
    expect(lambda).toContain('"MetricName":"Throttles"');
    expect(JSON.stringify(alarm(tandem.monitoring.streamThrottleAlarm).Metrics)).toContain('PutRecords.ThrottledRecords');
  });

  it(`no alarm holds more than CloudWatch's ${ALARM_METRICS_LIMIT} metrics`, () => {
    expect(Object.keys(alarms).length).toBeGreaterThan(0);
    for (const [name, a] of Object.entries(alarms)) {
      const metrics = (a.Properties.Metrics as { MetricStat?: unknown }[] | undefined) ?? [];
      expect(metrics.filter((m) => m.MetricStat).length, name).toBeLessThanOrEqual(ALARM_METRICS_LIMIT);
    }
    expect(groupsOf([...Array(23).keys()], ALARM_METRICS_LIMIT).map((g) => g.length)).toEqual([10, 10, 3]);
  });

  it('a dashboard shows every alarm', () => {
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    const body = JSON.stringify(Object.values(resources(template, 'AWS::CloudWatch::Dashboard'))[0]!.Properties.DashboardBody);
    for (const a of tandem.monitoring.alarms) expect(body).toContain(id(a));
  });
});

describe('re-deploy after a failed create or cdk destroy', () => {
  // Properties that name a resource; a retained resource with a name fixed at synth would make the
  // next create of the stack fail with "already exists".
  const NAME_KEYS = ['LogGroupName', 'BucketName', 'TableName', 'StreamName', 'Name', 'RoleName', 'AlarmName', 'DashboardName'];
  const kept = (r: Record<string, unknown>) => ['Retain', 'RetainExceptOnCreate'].includes(r.DeletionPolicy as string);

  it('no retained resource has a name fixed at synth (generated, or new per stack create)', () => {
    const all = template.toJSON().Resources as Record<
      string,
      { Type: string; Properties?: Record<string, unknown> } & Record<string, unknown>
    >;
    const retained = Object.entries(all).filter(([, r]) => kept(r));
    expect(retained.length).toBeGreaterThan(0);
    for (const [logical, r] of retained) {
      const props = r.Properties ?? {};
      const names = [...NAME_KEYS.map((k) => props[k]), (props.DatabaseInput as { Name?: unknown } | undefined)?.Name];
      for (const name of names.filter((n) => n !== undefined))
        expect(JSON.stringify(name), `${logical} (${r.Type}) is retained with a fixed name`).toContain('AWS::StackId');
    }
  });
});

describe('cdk-nag', () => {
  it('AwsSolutions finds nothing: no error, no warning', () => {
    const report = new AwsSolutionsChecks().validateScope(app);
    expect(report.violations.map((v) => `${v.ruleName} ${v.violatingResources.map((r) => r.constructPath).join(' ')}`)).toEqual([]);
  });

  it('the stack has no error annotations', () => {
    expect(Annotations.fromStack(stack).findError('*', Match.anyValue())).toEqual([]);
  });

  it('every acknowledgment sits on one resource, names its rule (and finding for IAM) and gives a specific reason', () => {
    const acks: { path: string; id: string; reason: string }[] = [];
    for (const c of stack.node.findAll()) {
      for (const m of c.node.metadata) {
        if (m.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
        for (const [key, reason] of Object.entries(m.data as Record<string, string>))
          acks.push({ path: c.node.path, id: key.replace(/^annotation::/i, ''), reason });
      }
    }
    expect(acks.length).toBeGreaterThan(0);
    for (const a of acks) {
      const scope = stack.node
        .findChild('Tandem')
        .node.findAll()
        .find((c) => c.node.path === a.path);
      const isResource = scope !== undefined && (CfnResource.isCfnResource(scope) || CfnResource.isCfnResource(scope.node.defaultChild));
      expect(isResource, `${a.path} is not a resource`).toBe(true);
      expect(a.id).toMatch(/^AwsSolutions-[A-Z]+\d+/);
      if (/IAM[45]/.test(a.id)) expect(a.id).toMatch(/\[(Resource|Policy|Action)::.+\]$/);
      expect(a.reason.length).toBeGreaterThan(30);
    }
  });
});
