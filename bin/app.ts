#!/usr/bin/env node
/**
 * The CDK app: one TandemStack, configured from context (`-c key=value` or
 * cdk.json), with cdk-nag's AwsSolutions checks on the whole app. Run by the
 * CDK CLI through tsx (cdk.json), e.g.
 *
 *   npx cdk synth --no-notices
 *   npx cdk deploy -c views=./my-views.json -c apiKeyHashes=admin:<sha256>
 *   npx aws-cdk-local deploy -c target=localstack        (scripts/deploy-localstack.sh)
 *
 * Context keys (all optional): stackName, target (aws | localstack), views
 * (a .json file, or a .ts/.js module exporting `views` or a default),
 * batchEngine (athena | duckdb), streamMode (on-demand | provisioned),
 * shardCount, batchEverySeconds, maxBatchLagSeconds, apiKeyHashes (comma list),
 * corsAllowOrigin, createWebAcl (true | false), removalPolicy (retain | destroy),
 * architecture (arm64 | x86_64), runtime (nodejs22.x | nodejs24.x),
 * apiAuth (authorizer | in-function), bisectBatchOnError (true | false),
 * validateRequestBody (true | false), nag (true | false), projectionStartDay (YYYY-MM-DD: the first
 * arrival day Athena's partition projection enumerates; default the day of synthesis, pin it once deployed).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { App, Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { AwsSolutionsChecks } from 'cdk-nag';
import { parseViews, parseViewsJson, type View } from '../functions/core/views.ts';
import { BATCH_ENGINES, type BatchEngine } from '../lib/batch-layer.ts';
import { ApiAuth } from '../lib/ingest-api.ts';
import { TandemStack, type TandemStackProps } from '../lib/tandem-stack.ts';

/** Reads a views file as the local cloud's `--views` does: JSON, or a module exporting `views`/default. */
export async function loadViewsFile(file: string): Promise<View[]> {
  const path = resolve(file);
  if (path.endsWith('.json')) return parseViewsJson(readFileSync(path, 'utf8'));
  const mod = (await import(pathToFileURL(path).href)) as { views?: unknown; default?: unknown };
  return parseViews(mod.views ?? mod.default);
}

type Context = (key: string) => unknown;

function text(ctx: Context, key: string): string | undefined {
  const v = ctx(key);
  return v === undefined || v === null || v === '' ? undefined : String(v);
}

function oneOf<T extends string>(ctx: Context, key: string, allowed: readonly T[]): T | undefined {
  const v = text(ctx, key);
  if (v !== undefined && !allowed.includes(v as T)) throw new Error(`context ${key} must be one of ${allowed.join(', ')}, received "${v}"`);
  return v as T | undefined;
}

function whole(ctx: Context, key: string): number | undefined {
  const v = text(ctx, key);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`context ${key} must be a positive whole number, received "${v}"`);
  return n;
}

function flag(ctx: Context, key: string): boolean | undefined {
  const v = oneOf(ctx, key, ['true', 'false'] as const);
  return v === undefined ? undefined : v === 'true';
}

/** Node runtimes the `runtime` context key offers. */
const RUNTIMES = { 'nodejs22.x': lambda.Runtime.NODEJS_22_X, 'nodejs24.x': lambda.Runtime.NODEJS_24_X } as const;

/**
 * Stack props from the app context. The LocalStack target picks what LocalStack's free plan
 * runs (docs/deploy.md, "Deploying to LocalStack"): the key checked in the functions (no
 * Lambda authorizers), Node.js 22 (nodejs24.x only from LocalStack 4.11), the DuckDB engine
 * (no Athena or Glue), no bisect on error (its Kinesis poller has none), no body validation in
 * the gateway (LocalStack validates every body as JSON, gzip too, and answers without the
 * contract's body; the functions validate anyway), a provisioned stream, removable resources
 * and functions for the host's CPU. Each can still be set by its own key.
 */
export async function propsFromContext(ctx: Context, env = process.env): Promise<TandemStackProps & { stackName: string }> {
  const target = oneOf(ctx, 'target', ['aws', 'localstack'] as const) ?? 'aws';
  const localstack = target === 'localstack';
  const viewsFile = text(ctx, 'views');
  const batchEngine: BatchEngine = oneOf(ctx, 'batchEngine', BATCH_ENGINES) ?? (localstack ? 'duckdb' : 'athena');
  const streamMode = oneOf(ctx, 'streamMode', ['on-demand', 'provisioned'] as const) ?? (localstack ? 'provisioned' : undefined);
  const shardCount = whole(ctx, 'shardCount');
  const batchEverySeconds = whole(ctx, 'batchEverySeconds');
  const maxBatchLagSeconds = whole(ctx, 'maxBatchLagSeconds');
  const hashes = text(ctx, 'apiKeyHashes');
  const cors = text(ctx, 'corsAllowOrigin');
  const webAcl = flag(ctx, 'createWebAcl');
  const removal = oneOf(ctx, 'removalPolicy', ['retain', 'destroy'] as const) ?? (localstack ? 'destroy' : 'retain');
  const runtime = oneOf(ctx, 'runtime', Object.keys(RUNTIMES) as (keyof typeof RUNTIMES)[]) ?? (localstack ? 'nodejs22.x' : undefined);
  const apiAuth = oneOf(ctx, 'apiAuth', Object.values(ApiAuth)) ?? (localstack ? ApiAuth.IN_FUNCTION : undefined);
  const bisect = flag(ctx, 'bisectBatchOnError') ?? (localstack ? false : undefined);
  const validateBody = flag(ctx, 'validateRequestBody') ?? (localstack ? false : undefined);
  // LocalStack runs functions in containers of the host's architecture unless it emulates.
  const arch =
    oneOf(ctx, 'architecture', ['arm64', 'x86_64'] as const) ?? (localstack ? (process.arch === 'arm64' ? 'arm64' : 'x86_64') : undefined);
  const projectionStartDay = text(ctx, 'projectionStartDay');
  if (projectionStartDay !== undefined && !/^\d{4}-\d{2}-\d{2}$/.test(projectionStartDay))
    throw new Error(`context projectionStartDay must be a day YYYY-MM-DD, received "${projectionStartDay}"`);
  const account = env.CDK_DEFAULT_ACCOUNT;
  const region = env.CDK_DEFAULT_REGION;
  return {
    stackName: text(ctx, 'stackName') ?? 'Tandem',
    description: 'Tandem: a serverless Lambda Architecture (Kinesis, Lambda, DynamoDB, S3, Step Functions, Athena)',
    ...(account && region ? { env: { account, region } } : {}),
    ...(viewsFile ? { views: await loadViewsFile(viewsFile) } : {}),
    batchEngine,
    ...(streamMode ? { streamMode: streamMode === 'provisioned' ? kinesis.StreamMode.PROVISIONED : kinesis.StreamMode.ON_DEMAND } : {}),
    ...(shardCount !== undefined ? { shardCount } : {}),
    ...(batchEverySeconds !== undefined ? { batchEvery: Duration.seconds(batchEverySeconds) } : {}),
    ...(maxBatchLagSeconds !== undefined ? { maxBatchLag: Duration.seconds(maxBatchLagSeconds) } : {}),
    ...(hashes
      ? {
          apiKeyHashes: hashes
            .split(',')
            .map((h) => h.trim())
            .filter(Boolean),
        }
      : {}),
    ...(cors ? { corsAllowOrigin: cors } : {}),
    ...(webAcl !== undefined ? { createWebAcl: webAcl } : {}),
    removalPolicy: removal === 'destroy' ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
    ...(arch ? { architecture: arch === 'arm64' ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64 } : {}),
    ...(runtime ? { runtime: RUNTIMES[runtime] } : {}),
    ...(apiAuth ? { apiAuth: apiAuth as ApiAuth } : {}),
    ...(bisect !== undefined ? { bisectBatchOnError: bisect } : {}),
    ...(validateBody !== undefined ? { validateRequestBody: validateBody } : {}),
    ...(projectionStartDay ? { projectionStartDay } : {}),
  };
}

/** Builds the app (bin/app.ts main, and the whole-app synth test, which may override props). */
export async function buildApp(app = new App(), overrides: Partial<TandemStackProps> = {}): Promise<{ app: App; stack: TandemStack }> {
  const ctx: Context = (key) => app.node.tryGetContext(key);
  const props = { ...(await propsFromContext(ctx)), ...overrides };
  const stack = new TandemStack(app, props.stackName, props);
  if (flag(ctx, 'nag') !== false) Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { app, stack };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { app } = await buildApp();
  app.synth();
}
