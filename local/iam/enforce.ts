/**
 * The local cloud's IAM check. Every handler runs in this one process, so the
 * function a call comes from is known by an AsyncLocalStorage scope that
 * local/runtime.ts opens around its import and each invocation
 * (`runAsFunction`). Inside such a scope:
 *
 * - every AWS SDK call is evaluated against that function's policies from the
 *   template by @cloud-copilot/iam-simulate, before it is signed or sent, and
 *   fails as AWS would fail it (AccessDeniedException, AccessDenied for S3);
 * - `process.env` shows the function its own environment for the names
 *   Lambda and the template set (AWS_*, TANDEM_*, POWERTOOLS_*); other names
 *   come from the host process.
 *
 * Outside a scope (the local cloud's own provisioning, mappings, sweeper,
 * demo) nothing is checked, as those stand for AWS services, not functions.
 * The check sits in a middleware added to every SDK client a function sends
 * with (the first time it sends inside a scope), so clients that handlers
 * build themselves are checked too.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { AthenaClient } from '@aws-sdk/client-athena';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KinesisClient } from '@aws-sdk/client-kinesis';
import { S3Client } from '@aws-sdk/client-s3';
import { SFNClient } from '@aws-sdk/client-sfn';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { runSimulation } from '@cloud-copilot/iam-simulate';
import { type AuthorizationCheck, authorizationChecks } from './actions.ts';
import type { PolicyDocument } from './resolve.ts';

/** Who a function is, in IAM terms, and what it may do. */
export interface FunctionIdentity {
  /** Function name (the session name of its assumed role). */
  readonly name: string;
  readonly roleName: string;
  readonly account: string;
  readonly region: string;
  readonly policies: readonly { readonly name: string; readonly document: PolicyDocument }[];
  /** Its environment (AWS_*, TANDEM_*, POWERTOOLS_* names); the host's when absent. */
  readonly env?: Readonly<Record<string, string>>;
  /**
   * Another identity whose grants also apply: the batch-API function runs a batch in process
   * locally, where in AWS it starts the state machine and the batch-task function does the work.
   */
  readonly alsoAs?: FunctionIdentity;
}

const scope = new AsyncLocalStorage<{ identity: FunctionIdentity; env: Record<string, string> | undefined }>();

/** Runs `fn` as the given function: its calls are checked, its process.env is its own. */
export function runAsFunction<T>(identity: FunctionIdentity, fn: () => T): T {
  return scope.run({ identity, env: identity.env ? { ...identity.env } : undefined }, fn);
}

/** The function the current code runs as (undefined outside any). */
export function currentFunction(): FunctionIdentity | undefined {
  return scope.getStore()?.identity;
}

/** `arn:aws:sts::<account>:assumed-role/<role>/<function>`: the principal AWS names in a denial. */
export function principalArn(i: FunctionIdentity): string {
  return `arn:aws:sts::${i.account}:assumed-role/${i.roleName}/${i.name}`;
}

/** The error AWS returns for an action no identity-based policy allows (the SDK's shape: name, $fault, $metadata). */
export class AccessDeniedError extends Error {
  readonly $fault = 'client' as const;
  readonly $metadata: { httpStatusCode: number; requestId: string; attempts: number; totalRetryDelay: number };
  readonly Code: string;
  constructor(
    readonly action: string,
    readonly resource: string,
    identity: FunctionIdentity,
  ) {
    super(
      `User: ${principalArn(identity)} is not authorized to perform: ${action} on resource: ${resource} ` +
        `because no identity-based policy allows the ${action} action`,
    );
    // S3 answers 403 AccessDenied; the JSON services 400 AccessDeniedException.
    const s3 = action.startsWith('s3:');
    this.name = s3 ? 'AccessDenied' : 'AccessDeniedException';
    this.Code = this.name;
    this.$metadata = { httpStatusCode: s3 ? 403 : 400, requestId: 'local-iam', attempts: 1, totalRetryDelay: 0 };
  }
}

/** Condition keys any statement of the identity's policies tests (only those are worth sending). */
function conditionKeys(i: FunctionIdentity): Set<string> {
  const keys = new Set<string>();
  for (const p of i.policies)
    for (const s of p.document.Statement)
      for (const block of Object.values(s.Condition ?? {})) for (const k of Object.keys(block)) keys.add(k.toLowerCase());
  return keys;
}

const decisions = new WeakMap<FunctionIdentity, { keys: Set<string>; cache: Map<string, Promise<boolean>> }>();

/** Whether the identity's policies allow one check (iam-simulate; cached per identity). */
export async function isAllowed(i: FunctionIdentity, check: AuthorizationCheck): Promise<boolean> {
  let d = decisions.get(i);
  if (!d) {
    d = { keys: conditionKeys(i), cache: new Map() };
    decisions.set(i, d);
  }
  const { keys } = d;
  const context = Object.fromEntries(Object.entries(check.context).filter(([k]) => keys.has(k.toLowerCase())));
  const key = `${check.action} ${check.resource} ${JSON.stringify(context)}`;
  let decision = d.cache.get(key);
  if (!decision) {
    decision = simulate(i, check.action, check.resource, context);
    if (d.cache.size > 10_000) d.cache.clear();
    d.cache.set(key, decision);
  }
  return decision;
}

async function simulate(
  i: FunctionIdentity,
  action: string,
  resource: string,
  context: Record<string, string | string[]>,
): Promise<boolean> {
  const result = await runSimulation(
    {
      request: { principal: principalArn(i), action, resource: { resource, accountId: i.account }, contextVariables: context },
      identityPolicies: i.policies.map((p) => ({ name: p.name, policy: p.document })),
      serviceControlPolicies: [],
      resourceControlPolicies: [],
    },
    {},
  );
  if (result.resultType === 'error') {
    throw new Error(`the local IAM check could not evaluate ${action} on ${resource}: ${JSON.stringify(result.errors)}`);
  }
  return result.overallResult === 'Allowed';
}

/** A denied call, as `tandem local` reports it (stats). */
export interface Denial {
  readonly function: string;
  readonly action: string;
  readonly resource: string;
  readonly message: string;
  readonly at: string;
}

let denied = 0;
const recent: Denial[] = [];

/** How many calls were denied since the check was installed, and the last few. */
export function denials(): { count: number; recent: Denial[] } {
  return { count: denied, recent: [...recent] };
}

/** Throws AccessDeniedError for the first check the identity (or the one it stands in for) is not allowed. */
export async function authorize(i: FunctionIdentity, checks: readonly AuthorizationCheck[]): Promise<void> {
  for (const c of checks) {
    if (await isAllowed(i, c)) continue;
    if (i.alsoAs && (await isAllowed(i.alsoAs, c))) continue;
    const e = new AccessDeniedError(c.action, c.resource, i);
    denied++;
    recent.push({ function: i.name, action: c.action, resource: c.resource, message: e.message, at: new Date().toISOString() });
    if (recent.length > 20) recent.shift();
    throw e;
  }
}

// Responses that later requests name by an id only (GetRecords, Athena query ids): what they belong to.
const iterators = new Map<string, string>();
const queries = new Map<string, string>();
function remember(m: Map<string, string>, k: unknown, v: string | undefined): void {
  if (typeof k !== 'string' || !v) return;
  if (m.size > 10_000) m.clear();
  m.set(k, v);
}
const seen = { streamOfIterator: (it: string) => iterators.get(it), workgroupOfQuery: (id: string) => queries.get(id) };

type Stack = {
  add(mw: unknown, opts: { step: 'initialize'; name: string; priority?: 'high' | 'normal' | 'low'; override?: boolean }): void;
};
const MIDDLEWARE = 'tandemLocalIam';
const checked = new WeakSet<object>();

function addMiddleware(stack: Stack): void {
  if (checked.has(stack)) return;
  checked.add(stack);
  stack.add(
    (
      next: (a: { input: Record<string, unknown> }) => Promise<{ output: Record<string, unknown> }>,
      ctx: { clientName?: string; commandName?: string },
    ) =>
      async (args: { input: Record<string, unknown> }) => {
        const identity = currentFunction();
        if (!identity) return next(args);
        const checks = authorizationChecks(String(ctx.clientName), String(ctx.commandName), args.input, identity, seen);
        await authorize(identity, checks);
        const out = await next(args);
        const streamArn = checks[0]?.resource;
        if (ctx.commandName === 'GetShardIteratorCommand') remember(iterators, out.output.ShardIterator, streamArn);
        if (ctx.commandName === 'GetRecordsCommand') remember(iterators, out.output.NextShardIterator, streamArn);
        if (ctx.commandName === 'StartQueryExecutionCommand') remember(queries, out.output.QueryExecutionId, String(args.input.WorkGroup));
        return out;
      },
    { step: 'initialize', name: MIDDLEWARE, priority: 'high', override: true },
  );
}

let installed = 0;
let restore: (() => void) | undefined;

/**
 * Turns the check on in this process (idempotent, counted: `uninstall` undoes
 * it once every local cloud that installed it has stopped).
 */
export function installIamCheck(): () => void {
  if (installed++ === 0) {
    denied = 0;
    recent.length = 0;
    const patched: [object, unknown][] = [];
    // The prototypes that own `send` (smithy's Client, possibly in several copies).
    for (const C of [DynamoDBClient, DynamoDBDocumentClient, KinesisClient, S3Client, AthenaClient, SFNClient]) {
      let proto: Record<string, unknown> | null = C.prototype as unknown as Record<string, unknown>;
      while (proto && !Object.hasOwn(proto, 'send')) proto = Object.getPrototypeOf(proto) as Record<string, unknown> | null;
      if (!proto || patched.some(([p]) => p === proto)) continue;
      const original = proto.send as (this: { middlewareStack: Stack }, ...a: unknown[]) => unknown;
      patched.push([proto, original]);
      proto.send = function (this: { middlewareStack: Stack }, ...a: unknown[]) {
        if (currentFunction()) addMiddleware(this.middlewareStack);
        return original.apply(this, a);
      };
    }
    const unEnv = scopeProcessEnv();
    restore = () => {
      for (const [proto, original] of patched) (proto as Record<string, unknown>).send = original;
      unEnv();
    };
  }
  let done = false;
  return () => {
    if (done) return;
    done = true;
    if (--installed === 0) {
      restore?.();
      restore = undefined;
    }
  };
}

/** Names a function's environment decides; the rest (PATH, HOME, test runner variables) are the host's. */
export function isFunctionVariable(name: string): boolean {
  return name.startsWith('AWS_') || name.startsWith('TANDEM_') || name.startsWith('POWERTOOLS_') || name === '_HANDLER';
}

/** Makes process.env show, inside a function's scope, that function's own variables. */
function scopeProcessEnv(): () => void {
  const host = process.env;
  const own = (k: string | symbol) => {
    const s = scope.getStore();
    return s?.env && typeof k === 'string' && isFunctionVariable(k) ? s.env : undefined;
  };
  const proxy = new Proxy(host, {
    get: (t, k) => {
      const e = own(k);
      return e ? e[k as string] : Reflect.get(t, k);
    },
    set: (t, k, v) => {
      const e = own(k);
      if (e) e[k as string] = String(v);
      else Reflect.set(t, k, v);
      return true;
    },
    has: (t, k) => {
      const e = own(k);
      return e ? Object.hasOwn(e, k as string) : Reflect.has(t, k);
    },
    deleteProperty: (t, k) => {
      const e = own(k);
      if (e) delete e[k as string];
      else Reflect.deleteProperty(t, k);
      return true;
    },
    ownKeys: (t) => {
      const s = scope.getStore();
      if (!s?.env) return Reflect.ownKeys(t);
      return [...new Set([...Reflect.ownKeys(t).filter((k) => typeof k !== 'string' || !isFunctionVariable(k)), ...Object.keys(s.env)])];
    },
    getOwnPropertyDescriptor: (t, k) => {
      const e = own(k);
      if (!e) return Reflect.getOwnPropertyDescriptor(t, k);
      return Object.hasOwn(e, k as string) ? { value: e[k as string], writable: true, enumerable: true, configurable: true } : undefined;
    },
  });
  process.env = proxy;
  return () => {
    if (process.env === proxy) process.env = host;
  };
}
