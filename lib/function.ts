/**
 * One Lambda function of Tandem: a handler from `functions/contract/routes.ts` HANDLERS,
 * bundled with local esbuild (no Docker), on the latest Node runtime (or the one asked for), arm64,
 * with its own role (logs scoped to its own log group), a log group with a
 * retention, X-Ray, and Powertools configured through the environment (its
 * service name and metrics namespace from functions/contract/telemetry.ts).
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Duration, type RemovalPolicy, Token } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { HANDLERS, type HandlerName } from '../functions/contract/routes.ts';
import { METRICS_NAMESPACE, SERVICE_NAMES } from '../functions/contract/telemetry.ts';
import { acknowledge, invalid, XRAY_REASON } from './common.ts';

/** The repository root: handler entries in HANDLERS are relative to it. */
export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The latest Node.js runtime aws-cdk-lib offers (cdk-nag L1 checks for it). */
export const NODE_RUNTIME = lambda.Runtime.NODEJS_24_X;

/** `nodejs22.x` -> 22: the Node major of a Lambda runtime, for esbuild's target. */
function nodeMajor(runtime: lambda.Runtime): number | undefined {
  const m = /^nodejs(\d+)\.x$/.exec(runtime.name);
  return m ? Number(m[1]) : undefined;
}

/** Native module of the DuckDB batch engine, replaced by a stub wherever it is not installed. */
const DUCKDB_MODULE = '@duckdb/node-api';
const DUCKDB_STUB = path.join(PROJECT_ROOT, 'lib', 'bundling', 'duckdb-unavailable.ts');

/** Lambda's limit on the total size of a function's environment variables. */
const ENV_LIMIT_BYTES = 4 * 1024;

/** Options every Tandem function shares, set once on the `Tandem` construct. */
export interface FunctionDefaults {
  /**
   * Instruction set of every function.
   *
   * @default lambda.Architecture.ARM_64
   */
  readonly architecture?: lambda.Architecture;
  /**
   * Node.js runtime of every function (`nodejs<N>.x`, N >= 20); the bundles target it.
   * An older one than NODE_RUNTIME is for platforms without the latest, such as
   * LocalStack before 4.11 (docs/deploy.md).
   *
   * @default NODE_RUNTIME (lambda.Runtime.NODEJS_24_X)
   */
  readonly runtime?: lambda.Runtime;
  /**
   * How long function logs are kept.
   *
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * Log level of the Powertools logger in every function.
   *
   * @default 'INFO'
   */
  readonly logLevel?: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  /**
   * Code of each handler instead of bundling `functions/<handler>.ts` with
   * esbuild; the handler is then `index.handler`. For tests and for
   * pre-built artifacts.
   *
   * @default - each entry of HANDLERS bundled with local esbuild
   */
  readonly handlerCode?: (handler: HandlerName) => lambda.Code;
  /**
   * Removal policy of the log groups.
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly logRemovalPolicy?: RemovalPolicy;
}

/** Only the FunctionDefaults of a wider props object (so layer props do not leak into functions). */
export function functionDefaults(p: FunctionDefaults): FunctionDefaults {
  return {
    ...(p.architecture ? { architecture: p.architecture } : {}),
    ...(p.runtime ? { runtime: p.runtime } : {}),
    ...(p.logRetention ? { logRetention: p.logRetention } : {}),
    ...(p.logLevel ? { logLevel: p.logLevel } : {}),
    ...(p.handlerCode ? { handlerCode: p.handlerCode } : {}),
    ...(p.logRemovalPolicy ? { logRemovalPolicy: p.logRemovalPolicy } : {}),
  };
}

export interface TandemFunctionProps extends FunctionDefaults {
  /** Which handler of HANDLERS this function runs. */
  readonly handler: HandlerName;
  /** Environment variables (names from functions/resources.ts). */
  readonly environment: Readonly<Record<string, string>>;
  /**
   * Memory in MB.
   *
   * @default 256
   */
  readonly memorySize?: number;
  /**
   * Longest run of one invocation.
   *
   * @default Duration.seconds(30)
   */
  readonly timeout?: Duration;
  /**
   * Modules installed (npm, for linux and the function's architecture) into
   * the bundle instead of bundled: native modules without a layer.
   *
   * @default - none
   */
  readonly nodeModules?: string[];
}

/** A Tandem Lambda function (the `Resource` child is the Lambda function). */
export class TandemFunction extends Construct {
  /** The Lambda function. */
  readonly function: lambda.Function;
  /** Its execution role (only the grants of its layer construct are added). */
  readonly role: iam.Role;
  /** Its log group. */
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: TandemFunctionProps) {
    super(scope, id);
    const entry = path.join(PROJECT_ROOT, HANDLERS[props.handler]);
    const envSize = Object.entries(props.environment).reduce(
      (n, [k, v]) => n + k.length + (Token.isUnresolved(v) ? 64 : Buffer.byteLength(v)),
      0,
    );
    if (envSize > ENV_LIMIT_BYTES) {
      invalid(
        this,
        `the environment of ${props.handler} is ${envSize} bytes, more than Lambda's ${ENV_LIMIT_BYTES}; ` +
          `declare fewer or shorter views. Received ${envSize} bytes`,
      );
    }
    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      ...(props.logRemovalPolicy ? { removalPolicy: props.logRemovalPolicy } : {}),
    });
    // An own role instead of AWSLambdaBasicExecutionRole: that managed policy may
    // write to every log group of the account.
    this.role = new iam.Role(this, 'Role', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
    this.logGroup.grantWrite(this.role);

    const runtime = props.runtime ?? NODE_RUNTIME;
    const major = nodeMajor(runtime);
    // The handlers use Node 20 APIs (engines in package.json) and are bundled as ESM for Node.
    if (major === undefined || major < 20) invalid(this, `runtime must be a Node.js runtime nodejs20.x or later. Received ${runtime.name}`);
    const code = props.handlerCode?.(props.handler);
    const architecture = props.architecture ?? lambda.Architecture.ARM_64;
    this.function = new NodejsFunction(this, 'Resource', {
      ...(code ? { code, handler: 'index.handler' } : { entry, handler: 'handler' }),
      runtime,
      architecture,
      memorySize: props.memorySize ?? 256,
      timeout: props.timeout ?? Duration.seconds(30),
      role: this.role,
      logGroup: this.logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      tracing: lambda.Tracing.ACTIVE,
      projectRoot: PROJECT_ROOT,
      depsLockFilePath: path.join(PROJECT_ROOT, 'package-lock.json'),
      environment: {
        POWERTOOLS_SERVICE_NAME: SERVICE_NAMES[props.handler],
        POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
        POWERTOOLS_LOG_LEVEL: props.logLevel ?? 'INFO',
        NODE_OPTIONS: '--enable-source-maps',
        ...props.environment,
      },
      bundling: {
        forceDockerBundling: false,
        format: OutputFormat.ESM,
        target: `node${major}`,
        minify: true,
        sourceMap: true,
        // Everything, the AWS SDK included, is bundled: the deployed code runs the SDK
        // versions the local cloud was tested with, not the runtime's.
        bundleAwsSDK: true,
        externalModules: [],
        mainFields: ['module', 'main'],
        // CommonJS dependencies inside an ESM bundle still call require().
        banner: "import { createRequire as __tandemRequire } from 'node:module'; const require = __tandemRequire(import.meta.url);",
        tsconfig: path.join(PROJECT_ROOT, 'tsconfig.json'),
        ...(props.nodeModules?.includes(DUCKDB_MODULE) ? {} : { esbuildArgs: { '--alias': [`${DUCKDB_MODULE}=${DUCKDB_STUB}`] } }),
        ...(props.nodeModules
          ? {
              nodeModules: props.nodeModules,
              // npm picks optional platform packages (native bindings) for the Lambda, not for this machine.
              environment: {
                npm_config_os: 'linux',
                npm_config_cpu: architecture === lambda.Architecture.X86_64 ? 'x64' : 'arm64',
                npm_config_libc: 'glibc',
              },
            }
          : {}),
      },
    });
    acknowledge(this.role, { 'IAM5[Resource::*]': XRAY_REASON });
    if (runtime.name !== NODE_RUNTIME.name) {
      acknowledge(this.function, {
        L1: `${runtime.name} was asked for (the runtime prop): the target platform lacks ${NODE_RUNTIME.name} (docs/deploy.md)`,
      });
    }
  }
}
