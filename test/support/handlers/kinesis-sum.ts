/** Test handler: sums `n` over a Kinesis batch and reports what its Lambda context said. */
import type { Context, KinesisStreamEvent } from 'aws-lambda';

export const handler = async (event: KinesisStreamEvent, context: Context) => {
  let sum = 0;
  for (const r of event.Records) sum += (JSON.parse(Buffer.from(r.kinesis.data, 'base64').toString('utf8')) as { n: number }).n;
  return { batchItemFailures: [], sum, functionName: context.functionName, hadTimeLeft: context.getRemainingTimeInMillis() > 0 };
};
