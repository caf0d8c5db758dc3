/**
 * Test helpers for streams in the Kinesis emulator: a fresh stream per test (so tests
 * in one file share one emulator without sharing records), puts, and a
 * recorder of the Kinesis events a function received.
 */

import { randomUUID } from 'node:crypto';
import { CreateStreamCommand, DescribeStreamSummaryCommand, type KinesisClient, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import type { KinesisStreamEvent, KinesisStreamRecord } from 'aws-lambda';

export async function createStream(kinesis: KinesisClient, shards = 1, name = `t-${randomUUID().slice(0, 8)}`): Promise<string> {
  await kinesis.send(new CreateStreamCommand({ StreamName: name, ShardCount: shards }));
  for (let i = 0; i < 200; i++) {
    const d = await kinesis.send(new DescribeStreamSummaryCommand({ StreamName: name }));
    if (d.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') return name;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`stream ${name} did not become ACTIVE`);
}

export interface PutResult {
  readonly data: string;
  readonly shard: string;
  readonly seq: string;
}

/**
 * Puts one record per payload (text as given; objects as JSON) in one PutRecords call.
 * `hashKey` pins every record to the shard owning that hash key.
 */
export async function put(
  kinesis: KinesisClient,
  stream: string,
  payloads: readonly (string | object)[],
  hashKey?: string,
): Promise<PutResult[]> {
  const texts = payloads.map((p) => (typeof p === 'string' ? p : JSON.stringify(p)));
  const r = await kinesis.send(
    new PutRecordsCommand({
      StreamName: stream,
      Records: texts.map((t, i) => ({
        Data: Buffer.from(t),
        PartitionKey: `pk-${i}-${t.slice(0, 40)}`,
        ...(hashKey ? { ExplicitHashKey: hashKey } : {}),
      })),
    }),
  );
  if (r.FailedRecordCount) throw new Error(`${r.FailedRecordCount} records failed to put`);
  return (r.Records ?? []).map((x, i) => ({ data: texts[i]!, shard: x.ShardId!, seq: x.SequenceNumber! }));
}

export const decode = (r: KinesisStreamRecord) => Buffer.from(r.kinesis.data, 'base64').toString('utf8');

/** Remembers every event and every invocation outcome of a test function. */
export class Recorder {
  readonly events: { shard: string; data: string[]; seqs: string[]; at: number }[] = [];
  /** Data of the records of invocations that succeeded, in order. */
  readonly processed: string[] = [];
  note(event: KinesisStreamEvent): { shard: string; data: string[]; seqs: string[] } {
    const first = event.Records[0]!;
    const e = {
      shard: first.eventID.split(':')[0]!,
      data: event.Records.map(decode),
      seqs: event.Records.map((r) => r.kinesis.sequenceNumber),
      at: Date.now(),
    };
    this.events.push(e);
    return e;
  }
}
