/**
 * KPL aggregation (the Kinesis Producer Library's record format, also written
 * by the Kinesis Agent and Fluent Bit with aggregation on): one Kinesis record
 * holding many user records, each with its own partition key, as a protobuf
 * message between the magic bytes `F3 89 9A C2` and an MD5 checksum
 * (https://github.com/awslabs/amazon-kinesis-producer/blob/master/aggregation-format.md).
 * Decoded with AWS Labs' `aws-kinesis-agg`, checksums verified.
 *
 * Both consumers (speed, archive) read every user record as an event of its
 * own, positioned by (sequence number, sub-sequence number) (`recordPosition`,
 * functions/core/record.ts). What cannot be read is poison at the finest grain
 * possible: a corrupt aggregate (bad checksum, bad protobuf) for the whole
 * Kinesis record, a user record without a partition key for that user record
 * only (and a user record that is not an event, like any record, in
 * poison.ts's `normalize`).
 */
import { deaggregate } from 'aws-kinesis-agg';

/** The four bytes every aggregated record starts with. */
export const KPL_MAGIC = Buffer.from('f3899ac2', 'hex');
/** MD5 of the protobuf message, after it. */
const CHECKSUM_BYTES = 16;

export const isAggregated = (data: Uint8Array): boolean => data.length >= KPL_MAGIC.length && KPL_MAGIC.every((b, i) => data[i] === b);

/** One user record of an aggregate, or the reason it cannot be read. */
export type UserRecord =
  | { readonly ok: true; readonly sub: number; readonly partitionKey: string; readonly data: Buffer }
  | { readonly ok: false; readonly sub: number; readonly reason: string };

export type Deaggregated =
  | { readonly ok: true; readonly records: readonly UserRecord[] }
  /** The aggregate as a whole cannot be read: checksum or protobuf. */
  | { readonly ok: false; readonly reason: string };

/** The user records of an aggregated record (`isAggregated(data)`), in sub-sequence order. */
export function deaggregateRecord(data: Uint8Array, seq: string, partitionKey: string): Deaggregated {
  if (data.length < KPL_MAGIC.length + CHECKSUM_BYTES) return { ok: false, reason: 'is a KPL aggregate too short to hold its checksum' };
  const records: UserRecord[] = [];
  let failure: string | undefined;
  // The library's callbacks run synchronously; an error for one user record comes with its
  // sub-sequence number, an error for the whole record without one.
  deaggregate(
    { data: Buffer.from(data).toString('base64'), sequenceNumber: seq, partitionKey } as Parameters<typeof deaggregate>[0],
    true,
    (err, r) => {
      if (err || !r) return;
      const sub = r.subSequenceNumber;
      if (typeof r.partitionKey !== 'string' || r.partitionKey.length === 0)
        records.push({ ok: false, sub, reason: 'is a KPL user record whose partition key index is not in the aggregate' });
      else records.push({ ok: true, sub, partitionKey: r.partitionKey, data: Buffer.from(r.data, 'base64') });
    },
    (err, bad) => {
      if (!err) return;
      if (bad && typeof bad.subSequenceNumber === 'number')
        records.push({ ok: false, sub: bad.subSequenceNumber, reason: `is a KPL user record that cannot be read: ${err.message}` });
      else failure = err.message;
    },
  );
  if (failure !== undefined) return { ok: false, reason: `is a corrupt KPL aggregate: ${failure}` };
  return { ok: true, records: records.sort((a, b) => a.sub - b.sub) };
}
