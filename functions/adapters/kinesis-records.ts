/**
 * The Lambda Kinesis event as an event source mapping builds it: the inverse
 * of kinesis-event.ts, and the one place that knows its shape. The local
 * cloud's mapping (local/esm/) delivers these to the consumers, and the tests
 * and benchmarks feed the consumers these directly (like Powertools' test
 * factories). It lives in functions/adapters/, not local/ or test/, because
 * all three may import from here and it is the counterpart of the parser next to it.
 */

import * as kinesisAgg from 'aws-kinesis-agg';
import type { KinesisStreamEvent, KinesisStreamRecord } from 'aws-lambda';

/** One record as it sits in a shard (the fields of kinesis-event.ts's StreamRecord, plus the partition key). */
export interface KinesisRecordInput {
  readonly shard: string;
  readonly seq: string;
  /** ApproximateArrivalTimestamp, epoch ms. */
  readonly arrival: number;
  /** The record's bytes, or a string that is already their base64 text (as the event carries them). */
  readonly data: Uint8Array | string;
  /**
   * @default the event id when the data is one JSON event with a string id (as ingest keys records), else 'k'
   * (a key other than the id sends the speed layer's claims down the chained path, functions/speed/dedup.ts).
   */
  readonly partitionKey?: string;
}

/** Who delivers the records: the same for every record of a mapping. */
export interface KinesisEventSource {
  /** eventSourceARN. */
  readonly streamArn: string;
  /** invokeIdentityArn: the mapping's execution role. */
  readonly roleArn: string;
  readonly region: string;
}

/** A source from its parts: the stream's and the role's ARN in one account and region. */
export const kinesisSource = (s: { account: string; region: string; stream: string; role: string }): KinesisEventSource => ({
  streamArn: `arn:aws:kinesis:${s.region}:${s.account}:stream/${s.stream}`,
  roleArn: `arn:aws:iam::${s.account}:role/${s.role}`,
  region: s.region,
});

function defaultPartitionKey(data: Uint8Array | string): string {
  try {
    const e: unknown = JSON.parse(
      typeof data === 'string' ? Buffer.from(data, 'base64').toString('utf8') : Buffer.from(data).toString('utf8'),
    );
    const id = e !== null && typeof e === 'object' ? (e as { id?: unknown }).id : undefined;
    return typeof id === 'string' && id.length > 0 ? id : 'k';
  } catch {
    return 'k';
  }
}

/** One record of a Lambda Kinesis event. */
export function kinesisRecordFactory(r: KinesisRecordInput, source: KinesisEventSource): KinesisStreamRecord {
  return {
    kinesis: {
      kinesisSchemaVersion: '1.0',
      partitionKey: r.partitionKey ?? defaultPartitionKey(r.data),
      sequenceNumber: r.seq,
      data: typeof r.data === 'string' ? r.data : Buffer.from(r.data).toString('base64'),
      // Lambda gives seconds with a fraction.
      approximateArrivalTimestamp: r.arrival / 1000,
    },
    eventSource: 'aws:kinesis',
    eventVersion: '1.0',
    eventID: `${r.shard}:${r.seq}`,
    eventName: 'aws:kinesis:record',
    invokeIdentityArn: source.roleArn,
    awsRegion: source.region,
    eventSourceARN: source.streamArn,
  };
}

/** A Lambda Kinesis event holding `records`, in the order given. */
export function kinesisEventFactory(records: readonly KinesisRecordInput[], source: KinesisEventSource): KinesisStreamEvent {
  return { Records: records.map((r) => kinesisRecordFactory(r, source)) };
}

/** One user record for `kplAggregate`. */
export interface KplUserRecord {
  readonly partitionKey: string;
  /** The user record's bytes, or its text (UTF-8). */
  readonly data: Uint8Array | string;
}

/** What `aws-kinesis-agg`'s aggregator hands over: one Kinesis record's partition key and bytes. */
interface EncodedRecord {
  readonly partitionKey: string;
  readonly data: Buffer;
}

interface RecordAggregatorInstance {
  aggregateRecords(
    records: { partitionKey: string; data: Buffer }[],
    forceFlush: boolean,
    onReady: (err: Error | null, encoded?: EncodedRecord) => void,
  ): void;
}

/**
 * KPL-aggregated Kinesis records holding `records` in order, as a producer
 * with aggregation on writes them (AWS Labs' `aws-kinesis-agg` aggregator,
 * the Node.js counterpart of the KPL's format): one record while they fit in
 * 1 MiB, more when not. Its partition key is the first user record's.
 */
export function kplAggregate(records: readonly KplUserRecord[]): EncodedRecord[] {
  const Aggregator = (kinesisAgg as unknown as { RecordAggregator: new () => RecordAggregatorInstance }).RecordAggregator;
  const out: EncodedRecord[] = [];
  let failure: Error | undefined;
  new Aggregator().aggregateRecords(
    records.map((r) => ({ partitionKey: r.partitionKey, data: Buffer.from(r.data) })),
    true,
    (err, encoded) => {
      if (err) failure ??= err;
      else if (encoded) out.push({ partitionKey: encoded.partitionKey, data: encoded.data });
    },
  );
  if (failure) throw failure;
  return out;
}
