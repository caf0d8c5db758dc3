import { describe, expect, it } from 'vitest';
import { HandlerLoadError, InvocationError, InvocationTimeoutError, loadFunction, loadHandler, wrapHandler } from '../../local/runtime.ts';

interface Echo {
  event: { list?: number[] };
  functionName: string;
  requestId: string;
  arn: string;
  remaining: number;
  at: string;
}

describe('local Lambda runtime', () => {
  it('loads a handler module by path and invokes it with a Lambda context, across a JSON boundary', async () => {
    const fn = await loadFunction<object, Echo>({ name: 'echo-fn', entry: 'test/support/handlers/echo.ts', timeoutSeconds: 2 });
    const event = { mode: 'mutate' as const, list: [1] };
    const a = await fn.invoke(event);
    const b = await fn.invoke({});
    expect(a.functionName).toBe('echo-fn');
    expect(a.arn).toBe('arn:aws:lambda:us-east-1:000000000000:function:echo-fn');
    expect(a.requestId).not.toBe(b.requestId);
    expect(a.remaining).toBeGreaterThan(0);
    expect(a.remaining).toBeLessThanOrEqual(2000);
    // The handler mutated its copy, not the caller's event; a Date came back as JSON text.
    expect(a.event.list).toEqual([1, 99]);
    expect(event.list).toEqual([1]);
    expect(a.at).toBe('1970-01-01T00:00:00.000Z');
    expect(await fn.invoke({ mode: 'undefined' })).toBeNull();
    expect(fn.stats()).toEqual({ invocations: 3, errors: 0, timeouts: 0 });
  });

  it('surfaces a thrown error as a function error with its type and message', async () => {
    const fn = await loadFunction({ name: 'echo-fn', entry: 'test/support/handlers/echo.ts' });
    const err = await fn.invoke({ mode: 'throw' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvocationError);
    expect(err).toMatchObject({ errorType: 'RangeError', errorMessage: 'asked to throw', functionName: 'echo-fn' });
    expect(fn.stats().errors).toBe(1);
  });

  it("fails an invocation that outlives its timeout with Lambda's timeout error", async () => {
    const fn = await loadFunction({ name: 'echo-fn', entry: 'test/support/handlers/echo.ts', timeoutSeconds: 0.2 });
    const err = await fn.invoke({ mode: 'sleep', ms: 5000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvocationTimeoutError);
    expect((err as InvocationError).errorMessage).toBe('Task timed out after 0.20 seconds');
    expect((err as InvocationError).errorType).toBe('Sandbox.Timedout');
    expect(fn.stats()).toEqual({ invocations: 1, errors: 1, timeouts: 1 });
  });

  it('names the file when a handler is missing or unusable', async () => {
    await expect(loadHandler('functions/no-such-handler.ts')).rejects.toThrow(HandlerLoadError);
    await expect(loadHandler('functions/no-such-handler.ts')).rejects.toThrow('handler file functions/no-such-handler.ts does not exist');
    await expect(loadHandler('test/support/handlers/echo.ts', 'other')).rejects.toThrow(
      'handler file test/support/handlers/echo.ts has no exported function "other"',
    );
    await expect(loadHandler('test/support/handlers/callback-style.ts')).rejects.toThrow('takes a callback');
  });

  it('a result that cannot cross the JSON boundary is a serialization error', async () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const fn = wrapHandler(async () => cyclic, { name: 'cyclic', entry: 'inline' });
    await expect(fn.invoke({})).rejects.toMatchObject({ errorType: 'Runtime.SerializationError' });
  });
});
