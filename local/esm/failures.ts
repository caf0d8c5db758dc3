/**
 * The on-failure destination: a batch the mapping gives up on (retries
 * exhausted, or records too old) is written as one JSON object to S3 before
 * the shard moves past it.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { LogSink } from '../../functions/adapters/log.ts';
import { FAILURE_PREFIX } from '../../functions/resources.ts';
import type { EventSourceMappingOptions, Rec } from './types.ts';

/** What the on-failure destination object holds (JSON). */
export interface FailureObject {
  readonly version: '1.0';
  readonly timestamp: string;
  readonly mapping: string;
  readonly streamName: string;
  readonly streamArn: string;
  readonly shard: string;
  readonly firstSequenceNumber: string;
  readonly lastSequenceNumber: string;
  /** Why the records were discarded, in Lambda's words. */
  readonly condition: 'RetryAttemptsExhausted' | 'RecordAgeExceeded';
  readonly approximateInvokeCount: number;
  readonly error: { readonly type: string; readonly message: string } | null;
  /** The batch info Lambda sends to an on-failure destination. */
  readonly KinesisBatchInfo: {
    readonly shardId: string;
    readonly startSequenceNumber: string;
    readonly endSequenceNumber: string;
    readonly approximateArrivalOfFirstRecord: string;
    readonly approximateArrivalOfLastRecord: string;
    readonly batchSize: number;
    readonly streamArn: string;
  };
  readonly records: readonly {
    readonly sequenceNumber: string;
    readonly partitionKey: string;
    /** Base64, as in the Lambda event. */
    readonly data: string;
    /** Epoch seconds with fraction, as in the Lambda event. */
    readonly approximateArrivalTimestamp: number;
    readonly arrival: string;
  }[];
}

/** The mapping as the writer sees it. */
export interface FailureWriterHost {
  readonly o: Pick<EventSourceMappingOptions, 'name' | 'streamName' | 'onFailure'>;
  readonly streamArn: string;
  readonly stopped: boolean;
  readonly log: LogSink;
  sleep(ms: number): Promise<void>;
}

/**
 * Writes `records` (a non-empty run of one shard) to the on-failure destination, if any,
 * retrying until it succeeds; false when the mapping stopped first.
 */
export async function writeFailure(
  m: FailureWriterHost,
  shard: string,
  records: readonly Rec[],
  condition: FailureObject['condition'],
  invokes: number,
  error: FailureObject['error'],
): Promise<boolean> {
  const dest = m.o.onFailure;
  if (!dest) return true;
  const first = records[0]!;
  const last = records[records.length - 1]!;
  const body: FailureObject = {
    version: '1.0',
    timestamp: new Date().toISOString(),
    mapping: m.o.name,
    streamName: m.o.streamName,
    streamArn: m.streamArn,
    shard,
    firstSequenceNumber: first.seq,
    lastSequenceNumber: last.seq,
    condition,
    approximateInvokeCount: invokes,
    error,
    KinesisBatchInfo: {
      shardId: shard,
      startSequenceNumber: first.seq,
      endSequenceNumber: last.seq,
      approximateArrivalOfFirstRecord: new Date(first.arrivalMs).toISOString(),
      approximateArrivalOfLastRecord: new Date(last.arrivalMs).toISOString(),
      batchSize: records.length,
      streamArn: m.streamArn,
    },
    records: records.map((r) => ({
      sequenceNumber: r.seq,
      partitionKey: r.partitionKey,
      data: r.data,
      approximateArrivalTimestamp: r.arrivalMs / 1000,
      arrival: new Date(r.arrivalMs).toISOString(),
    })),
  };
  // Deterministic key: a retry after a crash overwrites the same object.
  const Key = `${dest.prefix ?? FAILURE_PREFIX}${m.o.name}/${shard}/${first.seq}-${last.seq}.json`;
  for (let attempt = 1; ; attempt++) {
    if (m.stopped) return false;
    try {
      await dest.s3.send(
        new PutObjectCommand({ Bucket: dest.failureBucket, Key, Body: Buffer.from(JSON.stringify(body)), ContentType: 'application/json' }),
      );
      return true;
    } catch (e) {
      // The shard must not move on before its records are safe in the destination.
      m.log.error(`esm ${m.o.name} ${shard}: cannot write ${Key} to the on-failure destination (attempt ${attempt})`, e);
      await m.sleep(Math.min(5000, 200 * 2 ** attempt));
    }
  }
}
