/**
 * The batch load's writer (batch/load.ts writeAll) over a lazy source, as a rebuild's load feeds it (requests made
 * as the view's parts are computed): a request goes out as soon as one worker has 25 requests, while the source is
 * still making the rest. Workers pulling at once once dealt the requests out one each, so no request filled (and
 * none went out) until the source had made nearly all of them: no write overlapped the encoding. Real dynalite in
 * this process; sends are counted through a seam around the real client.
 */
import { type DynamoDBClient, QueryCommand, type WriteRequest } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BATCH_WRITE_MAX, writeAll } from '../../functions/batch/load.ts';
import { type LocalDynamo, startDynalite } from '../support/dynalite.ts';

let local: LocalDynamo;
beforeAll(async () => {
  local = await startDynalite();
});
afterAll(async () => {
  await local?.stop();
});

/** The real client, counting the requests it has answered. */
function counted(real: DynamoDBClient): { ddb: DynamoDBClient; answered: () => number } {
  let answered = 0;
  const ddb = new Proxy(real, {
    get(target, prop, receiver) {
      if (prop !== 'send') return Reflect.get(target, prop, receiver);
      return async (command: Parameters<DynamoDBClient['send']>[0]) => {
        const out = await target.send(command);
        answered++;
        return out;
      };
    },
  });
  return { ddb, answered: () => answered };
}

const put = (pk: string, i: number): WriteRequest => ({
  PutRequest: { Item: { pk: { S: pk }, sk: { S: String(i).padStart(4, '0') }, n: { N: String(i) } } },
});

describe('writeAll', () => {
  it('sends a full request while a lazy source is still making the rest, and writes every item', async () => {
    const { ddb, answered } = counted(local.dynamodb);
    const pk = 'lazy-source';
    const first = 2 * BATCH_WRITE_MAX;
    let answeredBeforeEnd = -1;
    // Makes `first` requests, then waits for the writer to have had one answered (or gives up after 5 s, as a writer
    // that holds every request back until the source ends would make it), then makes 30 more.
    async function* source(): AsyncGenerator<WriteRequest> {
      for (let i = 0; i < first; i++) yield put(pk, i);
      for (const until = Date.now() + 5000; answered() === 0 && Date.now() < until; ) await new Promise((r) => setTimeout(r, 5));
      answeredBeforeEnd = answered();
      for (let i = first; i < first + 30; i++) yield put(pk, i);
    }
    const stats = await writeAll({ ddb, table: local.control, concurrency: 8 }, source());
    expect(answeredBeforeEnd).toBeGreaterThan(0);
    expect(stats).toMatchObject({ written: first + 30, items: first + 30 });
    // Full requests while the source could fill them: 25, 25, then what the last 30 make.
    expect(stats.requests).toBe(Math.ceil((first + 30) / BATCH_WRITE_MAX));
    const got = await local.dynamodb.send(
      new QueryCommand({ TableName: local.control, KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': { S: pk } } }),
    );
    expect(got.Items?.map((i) => Number(i.n?.N))).toEqual(Array.from({ length: first + 30 }, (_, i) => i));
  });
});
