/**
 * The local Lambda runtime: loads a handler module by path and invokes it as
 * the nodejs Lambda runtime does: the event and the result cross a JSON
 * boundary, the handler gets a Context with a deadline, the invocation fails
 * with a timeout error when the deadline passes, and a thrown error comes back
 * as a function error (errorType, errorMessage) without killing the caller.
 *
 * All handlers run in one process. Given an `identity` (local/iam), a function
 * is imported and invoked as itself: it sees its own environment in
 * `process.env` and its AWS calls are checked against its IAM policy. Without
 * one, handlers share the host's `process.env`: set it before the first
 * `loadFunction` (handlers read their configuration at import, as at a Lambda
 * cold start).
 */

import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Context } from 'aws-lambda';
import { type FunctionIdentity, runAsFunction } from './iam/enforce.ts';

/** The repository root: handler paths in functions/contract/routes.ts are relative to it. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Account and region the local ARNs carry (the emulators accept any). */
export const LOCAL_ACCOUNT = '000000000000';

export interface FunctionOptions {
  /** Function name, as in AWS (context.functionName, ARN, log group). */
  readonly name: string;
  /** Module path, absolute or relative to the repository root (e.g. `functions/speed.ts`). */
  readonly entry: string;
  /** Exported handler function. @default 'handler' */
  readonly handlerExport?: string;
  /** Invocation timeout. @default 3 (Lambda's default) */
  readonly timeoutSeconds?: number;
  /** Reported as context.memoryLimitInMB (not enforced). @default 1024 */
  readonly memoryMb?: number;
  readonly region?: string;
  /**
   * Who the function is (local/iam): its import and every invocation run as it, so its AWS
   * calls are checked against its policies and it sees its own environment. @default - the host's
   * environment, no check
   */
  readonly identity?: FunctionIdentity;
}

export interface FunctionStats {
  invocations: number;
  errors: number;
  timeouts: number;
}

export interface LocalFunction<E = unknown, R = unknown> {
  readonly name: string;
  /** Absolute path of the module. */
  readonly entry: string;
  readonly timeoutMs: number;
  /** One synchronous invocation (RequestResponse): resolves with the JSON result, rejects with an InvocationError. */
  invoke(event: E): Promise<R>;
  stats(): FunctionStats;
}

/** The handler module or its export is missing or unusable. */
export class HandlerLoadError extends Error {
  constructor(
    readonly entry: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'HandlerLoadError';
  }
}

/** A failed invocation, with the fields Lambda reports for a function error. */
export class InvocationError extends Error {
  constructor(
    readonly functionName: string,
    readonly requestId: string,
    readonly errorType: string,
    readonly errorMessage: string,
    options?: { cause?: unknown },
  ) {
    super(`${functionName}: ${errorType}: ${errorMessage}`, options);
    this.name = 'InvocationError';
  }
}

export class InvocationTimeoutError extends InvocationError {
  constructor(functionName: string, requestId: string, timeoutMs: number) {
    // The wording of Lambda's own timeout message.
    super(functionName, requestId, 'Sandbox.Timedout', `Task timed out after ${(timeoutMs / 1000).toFixed(2)} seconds`);
    this.name = 'InvocationTimeoutError';
  }
}

type AnyHandler = (event: unknown, context: Context) => unknown;

/** Imports a handler module and returns its handler export; errors name the file. */
export async function loadHandler(entry: string, handlerExport = 'handler'): Promise<AnyHandler> {
  const abs = isAbsolute(entry) ? entry : resolve(REPO_ROOT, entry);
  const shown = relative(REPO_ROOT, abs) || abs;
  if (!existsSync(abs)) throw new HandlerLoadError(abs, `handler file ${shown} does not exist`);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(abs).href)) as Record<string, unknown>;
  } catch (e) {
    throw new HandlerLoadError(abs, `handler file ${shown} failed to load: ${(e as Error).message}`, { cause: e });
  }
  const fn = mod[handlerExport];
  if (typeof fn !== 'function') throw new HandlerLoadError(abs, `handler file ${shown} has no exported function "${handlerExport}"`);
  if (fn.length >= 3) {
    // The nodejs24.x runtime (the one the stacks deploy) no longer calls callback-style handlers.
    throw new HandlerLoadError(abs, `handler "${handlerExport}" in ${shown} takes a callback; use an async handler`);
  }
  return fn as AnyHandler;
}

export interface ContextOptions {
  readonly functionName: string;
  readonly requestId: string;
  readonly deadline: number;
  readonly memoryMb?: number;
  readonly region?: string;
}

/** A Lambda Context whose getRemainingTimeInMillis counts down to `deadline`. */
export function createContext(o: ContextOptions): Context {
  const region = o.region ?? process.env.AWS_REGION ?? 'us-east-1';
  const unsupported = (what: string) => () => {
    throw new Error(`context.${what}() is not supported: return a value or throw`);
  };
  const day = new Date().toISOString().slice(0, 10).replaceAll('-', '/');
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: o.functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${region}:${LOCAL_ACCOUNT}:function:${o.functionName}`,
    memoryLimitInMB: String(o.memoryMb ?? 1024),
    awsRequestId: o.requestId,
    logGroupName: `/aws/lambda/${o.functionName}`,
    logStreamName: `${day}/[$LATEST]local`,
    getRemainingTimeInMillis: () => Math.max(0, o.deadline - Date.now()),
    done: unsupported('done'),
    fail: unsupported('fail'),
    succeed: unsupported('succeed'),
  };
}

/**
 * What crosses Lambda's JSON boundary: the handler cannot mutate the caller's
 * objects, `undefined` becomes null, a Date becomes a string.
 */
function throughJson(value: unknown): unknown {
  if (value === undefined) return null;
  return JSON.parse(JSON.stringify(value)) as unknown;
}

function errorFields(e: unknown): { type: string; message: string } {
  if (e instanceof Error) return { type: e.name || 'Error', message: e.message };
  return { type: 'Error', message: typeof e === 'string' ? e : JSON.stringify(e) };
}

/** Loads a handler module (after process.env is set) and returns an invocable function. */
export async function loadFunction<E = unknown, R = unknown>(opts: FunctionOptions): Promise<LocalFunction<E, R>> {
  // Imported as the function: module-scope code (configuration, clients) reads its environment, as at a cold start.
  const load = () => loadHandler(opts.entry, opts.handlerExport);
  const handler = await (opts.identity ? runAsFunction(opts.identity, load) : load());
  const entry = isAbsolute(opts.entry) ? opts.entry : resolve(REPO_ROOT, opts.entry);
  return wrapHandler<E, R>(handler as (event: E, context: Context) => unknown, { ...opts, entry });
}

/** Turns an in-memory handler into a LocalFunction (tests; loadFunction uses it too). */
export function wrapHandler<E = unknown, R = unknown>(
  handler: (event: E, context: Context) => unknown,
  opts: FunctionOptions,
): LocalFunction<E, R> {
  const timeoutMs = Math.round((opts.timeoutSeconds ?? 3) * 1000);
  if (!(timeoutMs > 0)) throw new RangeError(`timeoutSeconds must be positive, received ${opts.timeoutSeconds}`);
  const stats: FunctionStats = { invocations: 0, errors: 0, timeouts: 0 };
  return {
    name: opts.name,
    entry: opts.entry,
    timeoutMs,
    stats: () => ({ ...stats }),
    async invoke(event: E): Promise<R> {
      stats.invocations++;
      const requestId = randomUUID();
      const deadline = Date.now() + timeoutMs;
      const context = createContext({
        functionName: opts.name,
        requestId,
        deadline,
        ...(opts.memoryMb ? { memoryMb: opts.memoryMb } : {}),
        ...(opts.region ? { region: opts.region } : {}),
      });
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new InvocationTimeoutError(opts.name, requestId, timeoutMs)), timeoutMs);
      });
      try {
        // The abandoned promise of a timed-out handler keeps running in this process
        // (Lambda would freeze the sandbox); its outcome is ignored.
        const call = () => handler(throughJson(event) as E, context);
        const identity = opts.identity;
        const run = Promise.resolve().then(() => (identity ? runAsFunction(identity, call) : call()));
        run.catch(() => undefined);
        const result = await Promise.race([run, timeout]);
        try {
          return throughJson(result) as R;
        } catch (e) {
          throw new InvocationError(opts.name, requestId, 'Runtime.SerializationError', (e as Error).message, { cause: e });
        }
      } catch (e) {
        if (e instanceof InvocationTimeoutError) {
          stats.timeouts++;
          stats.errors++;
          throw e;
        }
        stats.errors++;
        if (e instanceof InvocationError) throw e;
        const f = errorFields(e);
        throw new InvocationError(opts.name, requestId, f.type, f.message, { cause: e });
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
