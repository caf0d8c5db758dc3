/**
 * The whole CDK app of bin/app.ts: context -> props, cdk-nag wired as a
 * validation plugin (a violation fails synthesis), and one full synthesis with
 * every handler bundled by local esbuild, as `npx cdk synth` does.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { afterAll, describe, expect, it } from 'vitest';
import { buildApp, propsFromContext } from '../../bin/app.ts';
import { HANDLERS } from '../../functions/contract/routes.ts';
import { ApiAuth } from '../../lib/ingest-api.ts';
import { PLACEHOLDER } from './synth.ts';

const dirs: string[] = [];
const outdir = () => {
  const d = mkdtempSync(join(tmpdir(), 'tandem-cdk-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('context', () => {
  const ctx = (values: Record<string, string>) => (key: string) => values[key];

  it('defaults to the AWS target with Athena, retained resources and the demo views', async () => {
    const p = await propsFromContext(ctx({}), {});
    expect(p).toMatchObject({ stackName: 'Tandem', batchEngine: 'athena', removalPolicy: RemovalPolicy.RETAIN });
    expect(p.views).toBeUndefined();
    expect(p.env).toBeUndefined();
  });

  it('the LocalStack target picks DuckDB, a provisioned stream and removable resources', async () => {
    const p = await propsFromContext(ctx({ target: 'localstack' }), {
      CDK_DEFAULT_ACCOUNT: '000000000000',
      CDK_DEFAULT_REGION: 'us-east-1',
    });
    expect(p).toMatchObject({
      batchEngine: 'duckdb',
      streamMode: kinesis.StreamMode.PROVISIONED,
      removalPolicy: RemovalPolicy.DESTROY,
      env: { account: '000000000000', region: 'us-east-1' },
    });
    expect(p.architecture?.name).toBe(process.arch === 'arm64' ? 'arm64' : 'x86_64');
    // What LocalStack's free plan lacks: Lambda authorizers, nodejs24.x before 4.11, bisect on error,
    // body validation by content type.
    expect(p).toMatchObject({ apiAuth: ApiAuth.IN_FUNCTION, bisectBatchOnError: false, validateRequestBody: false });
    expect(p.runtime?.name).toBe('nodejs22.x');
  });

  it('the AWS target keeps the authorizer, the latest runtime and bisect; each can be chosen', async () => {
    const p = await propsFromContext(ctx({}), {});
    expect(p.apiAuth).toBeUndefined();
    expect(p.runtime).toBeUndefined();
    expect(p.bisectBatchOnError).toBeUndefined();
    expect(p.validateRequestBody).toBeUndefined();
    const q = await propsFromContext(
      ctx({ target: 'localstack', runtime: 'nodejs24.x', apiAuth: 'authorizer', bisectBatchOnError: 'true' }),
      {},
    );
    expect(q).toMatchObject({ apiAuth: ApiAuth.AUTHORIZER, bisectBatchOnError: true });
    expect(q.runtime?.name).toBe('nodejs24.x');
    await expect(propsFromContext(ctx({ runtime: 'nodejs18.x' }), {})).rejects.toThrow(
      'context runtime must be one of nodejs22.x, nodejs24.x, received "nodejs18.x"',
    );
  });

  it('reads numbers, lists and flags', async () => {
    const p = await propsFromContext(
      ctx({
        batchEverySeconds: '600',
        maxBatchLagSeconds: '7200',
        apiKeyHashes: `a:${'0'.repeat(64)}, ${'1'.repeat(64)}`,
        createWebAcl: 'true',
      }),
      {},
    );
    expect(p.batchEvery?.toSeconds()).toBe(Duration.minutes(10).toSeconds());
    expect(p.maxBatchLag?.toSeconds()).toBe(7200);
    expect(p.apiKeyHashes).toEqual([`a:${'0'.repeat(64)}`, '1'.repeat(64)]);
    expect(p.createWebAcl).toBe(true);
  });

  it('passes the partition-projection start day (default: the construct uses the day of synthesis)', async () => {
    expect((await propsFromContext(ctx({ projectionStartDay: '2026-12-01' }), {})).projectionStartDay).toBe('2026-12-01');
    expect((await propsFromContext(ctx({}), {})).projectionStartDay).toBeUndefined();
  });

  it('rejects bad values, naming the key and the value', async () => {
    await expect(propsFromContext(ctx({ batchEngine: 'spark' }), {})).rejects.toThrow(
      'context batchEngine must be one of athena, duckdb, received "spark"',
    );
    await expect(propsFromContext(ctx({ shardCount: 'two' }), {})).rejects.toThrow(
      'context shardCount must be a positive whole number, received "two"',
    );
    await expect(propsFromContext(ctx({ createWebAcl: 'yes' }), {})).rejects.toThrow(
      'context createWebAcl must be one of true, false, received "yes"',
    );
    await expect(propsFromContext(ctx({ projectionStartDay: 'today' }), {})).rejects.toThrow(
      'context projectionStartDay must be a day YYYY-MM-DD, received "today"',
    );
  });

  it('loads views from a JSON file', async () => {
    const dir = outdir();
    const file = join(dir, 'views.json');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(file, JSON.stringify({ views: [{ name: 'n', dimensions: [], grain: 'day', metrics: { n: { fn: 'count' } } }] }));
    const p = await propsFromContext(ctx({ views: file }), {});
    expect(p.views).toEqual([{ name: 'n', dimensions: [], grain: 'day', metrics: { n: { fn: 'count' } } }]);
  });
});

describe('cdk-nag in the app', () => {
  it('a violation anywhere in the app fails synthesis', async () => {
    const { app, stack } = await buildApp(new App({ outdir: outdir() }), { handlerCode: () => PLACEHOLDER });
    new s3.Bucket(stack, 'UnloggedBucket');
    expect(() => app.synth()).toThrow(/AwsSolutions-S1/);
    const report = readFileSync(join(app.outdir, 'validation-report.json'), 'utf8');
    expect(report).toContain('AwsSolutions-S1');
    expect(report).toContain('UnloggedBucket');
    expect(report).not.toContain('Tandem/Tandem/');
  });
});

describe('whole app', () => {
  // The checks are on here too: any cdk-nag finding would fail this synthesis.
  it('synthesizes offline with every handler bundled by local esbuild', { timeout: 300_000 }, async () => {
    const dir = outdir();
    const { app, stack } = await buildApp(new App({ outdir: dir }));
    const assembly = app.synth();
    const template = assembly.getStackByName(stack.stackName).template as {
      Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
    };
    const functions = Object.values(template.Resources).filter((r) => r.Type === 'AWS::Lambda::Function');
    expect(functions).toHaveLength(Object.keys(HANDLERS).length);
    for (const f of functions)
      expect(f.Properties.Code).toMatchObject({ S3Bucket: expect.anything(), S3Key: expect.stringMatching(/\.zip$/) });

    const assets = JSON.parse(readFileSync(join(dir, `${stack.stackName}.assets.json`), 'utf8')) as {
      files: Record<string, { source: { path: string } }>;
    };
    const bundles = Object.values(assets.files)
      .map((f) => join(dir, f.source.path, 'index.mjs'))
      .filter((p) => {
        try {
          readFileSync(p);
          return true;
        } catch {
          return false;
        }
      });
    expect(bundles).toHaveLength(Object.keys(HANDLERS).length);
    for (const b of bundles) {
      const code = readFileSync(b, 'utf8');
      // Self-contained ESM: no import of a package the Lambda runtime would have to provide.
      const imports = [...code.matchAll(/(?:^|[;\s])import\s*(?:[\w*{}\s,$]+from\s*)?["']([^"']+)["']/g)].map((m) => m[1]);
      expect(
        imports.filter((i) => !i!.startsWith('node:')),
        b,
      ).toEqual([]);
    }
  });
});
