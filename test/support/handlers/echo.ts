/** Test handler: echoes its event and what its Lambda context says; `mode` makes it fail on purpose. */
import type { Context } from 'aws-lambda';

interface EchoEvent {
  mode?: 'throw' | 'sleep' | 'mutate' | 'undefined';
  ms?: number;
  list?: number[];
}

export const handler = async (event: EchoEvent, context: Context) => {
  if (event.mode === 'throw') throw new RangeError('asked to throw');
  if (event.mode === 'sleep') await new Promise((r) => setTimeout(r, event.ms ?? 10_000));
  if (event.mode === 'mutate') event.list?.push(99);
  if (event.mode === 'undefined') return undefined;
  return {
    event,
    functionName: context.functionName,
    requestId: context.awsRequestId,
    arn: context.invokedFunctionArn,
    remaining: context.getRemainingTimeInMillis(),
    at: new Date(0),
  };
};
