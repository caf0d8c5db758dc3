/**
 * The normalized form of one stream record: what the archive writes as one
 * NDJSON line and what the speed layer aggregates. Both layers derive it with
 * `toRawRecord`, so they agree on every bucket, dimension value and number.
 */
import { Decimal, DecimalRangeError, decimalFromNumber, decimalText } from './decimal.ts';
import { parseTime } from './time.ts';
import { canonicalValue } from './views.ts';

/** One archived record (one line of a raw object under `raw/`). */
export interface RawRecord {
  /** Event id (the dedup key; also the Kinesis partition key). */
  readonly id: string;
  readonly type: string;
  /** Event time, epoch ms (parsed from the event's `ts`). */
  readonly ts: number;
  /** Kinesis ApproximateArrivalTimestamp, epoch ms. */
  readonly arrival: number;
  readonly shard: string;
  /**
   * Position in the shard (compares as a string): the sequence number zero-padded to SEQ_WIDTH
   * digits, plus `.` and the sub-sequence number padded to SUBSEQ_WIDTH digits for a user record
   * of a KPL aggregate (`recordPosition`).
   */
  readonly seq: string;
  /** Every scalar field of the event as canonical text (null for JSON null). */
  readonly fields: Readonly<Record<string, string | null>>;
  /** Every numeric field of the event that fits DECIMAL(38,9) inputs, as plain decimal text. */
  readonly num: Readonly<Record<string, string>>;
  /**
   * A retraction, not an event: the speed layer takes this copy's count back (functions/speed/dedup.ts,
   * "Any partition key"); aggregated negated (`retractionState`, core/aggregate.ts).
   */
  readonly retract?: true;
}

/** Width of sequence numbers as stored and compared (Kinesis' are up to 56 digits today). */
export const SEQ_WIDTH = 64;

export function padSeq(seq: string): string {
  if (!/^\d{1,64}$/.test(seq)) throw new RangeError(`sequence number must be 1..${SEQ_WIDTH} digits, received "${seq}"`);
  return seq.padStart(SEQ_WIDTH, '0');
}

/**
 * Width of sub-sequence numbers in positions. An aggregate holds at most 1 MiB and each
 * user record takes at least 6 bytes of it, so its index stays below 175,000.
 */
export const SUBSEQ_WIDTH = 6;

/**
 * The position of a record in its shard: `padSeq(seq)` for a plain record (exactly the
 * padded sequence number, as before aggregates were read), `padSeq(seq).<subseq>` for
 * user record `sub` of a KPL aggregate. Every base has SEQ_WIDTH digits and `.` sorts
 * below every digit, so string order is (seq, subseq) order and a plain record sorts
 * before every user record of the same sequence number. Every comparison of positions
 * (speed items' `hw`, claims, progress marks, poison counts, raw object keys) is a plain
 * string comparison, in the code and in DynamoDB conditions alike.
 */
export function recordPosition(seq: string, sub?: number): string {
  const base = padSeq(seq);
  if (sub === undefined) return base;
  if (!Number.isSafeInteger(sub) || sub < 0 || sub >= 10 ** SUBSEQ_WIDTH)
    throw new RangeError(`sub-sequence number must be 0..${10 ** SUBSEQ_WIDTH - 1}, received ${sub}`);
  return `${base}.${String(sub).padStart(SUBSEQ_WIDTH, '0')}`;
}

/** Matches a position (`recordPosition`): the padded sequence number and the optional sub-sequence suffix. */
export const POSITION_PATTERN = `\\d{${SEQ_WIDTH}}(?:\\.\\d{${SUBSEQ_WIDTH}})?`;

export class RecordError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field} ${message}`);
    this.name = 'RecordError';
  }
}

/**
 * Structural check of a consumed record (ingest has already done the strict
 * check; records put straight into Kinesis may be anything). Throws RecordError
 * naming the field: such a record is poison and goes to the on-failure
 * destination in both layers. A metric field that is not a usable number is
 * not poison: it is absent from `num`, so both layers skip it the same way.
 */
export function toRawRecord(data: unknown, arrival: number, shard: string, seq: string, sub?: number): RawRecord {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) throw new RecordError('event', 'must be a JSON object');
  const e = data as Record<string, unknown>;
  if (typeof e.id !== 'string' || e.id.length < 1 || e.id.length > 128)
    throw new RecordError('id', 'must be a string of 1 to 128 characters');
  if (typeof e.type !== 'string' || e.type.length < 1 || e.type.length > 128)
    throw new RecordError('type', 'must be a string of 1 to 128 characters');
  let ts: number;
  try {
    ts = parseTime(e.ts);
  } catch (err) {
    throw new RecordError('ts', (err as Error).message);
  }
  const fields: Record<string, string | null> = {};
  const num: Record<string, string> = {};
  for (const [k, v] of Object.entries(e)) {
    if (v === null || typeof v === 'string' || typeof v === 'boolean') fields[k] = canonicalValue(v);
    else if (typeof v === 'number' && Number.isFinite(v)) {
      fields[k] = canonicalValue(v);
      try {
        num[k] = decimalText(decimalFromNumber(v));
      } catch (err) {
        if (!(err instanceof DecimalRangeError)) throw err;
      }
    }
    // nested objects and arrays are not fields: ingest rejects them, consumers ignore them
  }
  return { id: e.id, type: e.type, ts, arrival, shard, seq: recordPosition(seq, sub), fields, num };
}

/** Exact value of a metric field of a record, null when absent or not a usable number. */
export function numericValue(r: RawRecord, field: string): Decimal | null {
  const t = r.num[field];
  return t === undefined ? null : new Decimal(t);
}
