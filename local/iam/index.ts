/**
 * The local cloud's functions as the deployed stack defines them: each one's
 * environment and IAM policy from the synthesized template (template.ts,
 * resolve.ts), and the check of every call it makes (enforce.ts). On unless
 * `TANDEM_IAM=off` (docs/local-cloud.md, "IAM").
 */
import type { HandlerName } from '../../functions/contract/routes.ts';
import { BUCKETS, SETTINGS_ENV, STREAM, TABLES } from '../../functions/resources.ts';
import { type Denial, denials, type FunctionIdentity, installIamCheck, isFunctionVariable } from './enforce.ts';
import { type LocalTarget, templateFunctions } from './resolve.ts';
import { type CfnTemplate, deployedTemplate } from './template.ts';

export { AccessDeniedError, currentFunction, type Denial, type FunctionIdentity, runAsFunction } from './enforce.ts';
export type { CfnTemplate } from './template.ts';

type Env = Readonly<Record<string, string | undefined>>;

/** Whether the check is on: `TANDEM_IAM=off` (or 0, false) turns it off. */
export function iamEnabled(env: Env = process.env): boolean {
  return !['off', '0', 'false'].includes((env.TANDEM_IAM ?? '').toLowerCase());
}

/** Variables that name a resource: the template decides them, never the host. */
const RESOURCE_VARIABLES = new Set<string>([
  STREAM.env,
  ...Object.values(TABLES).map((t) => t.env),
  ...Object.values(BUCKETS).map((b) => b.env),
]);
/** Variables of services the local cloud does not run: no Step Functions (batches run in process), no Athena (DuckDB). */
const NOT_LOCAL = new Set<string>([
  SETTINGS_ENV.stateMachineArn,
  SETTINGS_ENV.athenaWorkgroup,
  SETTINGS_ENV.athenaDatabase,
  SETTINGS_ENV.athenaTable,
]);

export interface LocalIamOptions {
  readonly target: LocalTarget;
  /** Local function name of each handler (context.functionName). */
  readonly functionNames: Readonly<Partial<Record<HandlerName, string>>>;
  /**
   * The local cloud's own variables: emulator endpoints and credentials, region, and the
   * settings it or the shell sets (TANDEM_WINDOW_SECONDS, TANDEM_BATCH_ENGINE=duckdb, ...).
   */
  readonly overrides: Env;
  /** The template (loadTemplate). */
  readonly template: LoadedTemplate;
}

export interface LoadedTemplate {
  readonly template: CfnTemplate;
  /** Cache key; undefined for a template given by the caller. */
  readonly hash: string | undefined;
  readonly cached: boolean;
  readonly ms: number;
}

/**
 * The template of the stack the app would deploy (cached), or the one given (tests:
 * a variant of the stack). Started before the emulators, so a cold synth overlaps them.
 */
export async function loadTemplate(o: {
  viewsFile?: string | undefined;
  template?: CfnTemplate | undefined;
  logger?: { info(message: string): void };
}): Promise<LoadedTemplate> {
  if (o.template) return { template: o.template, hash: undefined, cached: false, ms: 0 };
  return deployedTemplate({ ...(o.viewsFile ? { viewsFile: o.viewsFile } : {}), ...(o.logger ? { logger: o.logger } : {}) });
}

export interface LocalIam {
  /** Identity (environment and policies) of each function of the template. */
  readonly functions: ReadonlyMap<HandlerName, FunctionIdentity>;
  /** Template hash, and whether it came from the cache (start-up report). */
  readonly template: { readonly hash: string | undefined; readonly cached: boolean; readonly ms: number };
  /** Calls denied so far, and the last few (`stats().iam` of the local cloud). */
  stats(): { denied: number; recent: Denial[] };
  /** Turns the check off again (when the local cloud stops). */
  uninstall(): void;
}

/** Each function's environment: the template's, resolved, under the local cloud's overrides. */
export function localEnvironment(template: Readonly<Record<string, string>>, name: string, o: LocalIamOptions): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(template)) if (!NOT_LOCAL.has(k)) env[k] = v;
  for (const [k, v] of Object.entries(o.overrides)) {
    if (v === undefined || !isFunctionVariable(k) || RESOURCE_VARIABLES.has(k) || NOT_LOCAL.has(k)) continue;
    env[k] = v;
  }
  // What the Lambda runtime sets.
  env.AWS_LAMBDA_FUNCTION_NAME = name;
  env.AWS_REGION = o.target.region;
  env.AWS_DEFAULT_REGION = o.target.region;
  return env;
}

/** Each function's identity from the template, and the check turned on. */
export function startLocalIam(o: LocalIamOptions): LocalIam {
  const synth = o.template;
  const fns = templateFunctions(synth.template, o.target);
  const identities = new Map<HandlerName, FunctionIdentity>();
  const identity = (h: HandlerName): FunctionIdentity => {
    const f = fns.get(h);
    if (!f) throw new Error(`the template has no ${h} function`);
    const name = o.functionNames[h] ?? `tandem-${h}`;
    return {
      name,
      roleName: `Tandem-${f.roleLogicalId}`,
      account: o.target.account,
      region: o.target.region,
      policies: f.policies,
      env: localEnvironment(f.environment, name, o),
    };
  };
  for (const h of fns.keys()) identities.set(h, identity(h));
  const batchTask = identities.get('batchTask');
  const batchApi = identities.get('batchApi');
  if (batchTask && batchApi) {
    // POST /batch/runs runs the batch in process here (no Step Functions): the run is the
    // batch-task function's work, so its grants and variables apply too.
    identities.set('batchApi', { ...batchApi, env: { ...batchTask.env, ...batchApi.env }, alsoAs: batchTask });
  }
  const uninstall = installIamCheck();
  return {
    functions: identities,
    template: { hash: synth.hash, cached: synth.cached, ms: synth.ms },
    stats: () => {
      const d = denials();
      return { denied: d.count, recent: d.recent };
    },
    uninstall,
  };
}
