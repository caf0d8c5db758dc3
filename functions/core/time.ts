/**
 * Event-time buckets, arrival windows and cutoffs. All times are epoch
 * milliseconds, UTC. One clock for the cut (invariant 1, docs/design.md): arrival windows
 * come from Kinesis' ApproximateArrivalTimestamp; `ts` only picks the bucket.
 */

export const GRAINS = ['minute', 'hour', 'day'] as const;
export type Grain = (typeof GRAINS)[number];
/** Grains a query may ask for: a view's grain or coarser, or `all` (one bucket). */
export const QUERY_GRAINS = ['minute', 'hour', 'day', 'all'] as const;
export type QueryGrain = (typeof QUERY_GRAINS)[number];

export const GRAIN_MS: Record<Grain, number> = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };

export class TimeParseError extends Error {}

/** Earliest and latest event times accepted (years 2000 through 2999, UTC). */
export const MIN_TIME_MS = Date.UTC(2000, 0, 1);
export const MAX_TIME_MS = Date.UTC(3000, 0, 1) - 1;

const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?(Z|[+-]\d{2}:?\d{2})?$/;

/**
 * Parses event or query time: ISO-8601 text (a date, or a date-time with an
 * optional zone; no zone means UTC) or epoch milliseconds (a number, or digits).
 * `Date.parse` is not used alone because it accepts many non-ISO forms and reads
 * zone-less date-times as local time.
 */
export function parseTime(value: unknown): number {
  let ms: number;
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new TimeParseError(`must be whole epoch milliseconds, received ${value}`);
    ms = value;
  } else if (typeof value === 'string') {
    const text = value.trim();
    if (/^\d{1,16}$/.test(text)) {
      ms = Number(text);
    } else {
      const m = ISO_RE.exec(text);
      if (!m) throw new TimeParseError(`must be an ISO-8601 time or epoch milliseconds, received "${value}"`);
      const zone = m[8] ?? 'Z';
      const fraction = (m[7] ?? '').padEnd(3, '0').slice(0, 3);
      const normalized =
        `${m[1]}-${m[2]}-${m[3]}T${m[4] ?? '00'}:${m[5] ?? '00'}:${m[6] ?? '00'}.${fraction}` +
        `${zone.length === 5 ? `${zone.slice(0, 3)}:${zone.slice(3)}` : zone}`;
      ms = Date.parse(normalized);
      if (Number.isNaN(ms) || !validFields(m)) {
        throw new TimeParseError(`is not a valid date-time, received "${value}"`);
      }
    }
  } else {
    throw new TimeParseError(`must be an ISO-8601 string or epoch milliseconds, received ${value === null ? 'null' : typeof value}`);
  }
  if (ms < MIN_TIME_MS || ms > MAX_TIME_MS) {
    throw new TimeParseError(
      `must be between ${new Date(MIN_TIME_MS).toISOString()} and ` +
        `${new Date(MAX_TIME_MS).toISOString()}, received ${JSON.stringify(value)}`,
    );
  }
  return ms;
}

// Date.parse rolls 2024-02-30 over to March and reads 24:00 as the next day,
// with or without a zone offset: reject dates and times that do not exist, as written.
function validFields(m: RegExpExecArray): boolean {
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const day = new Date(0);
  day.setUTCFullYear(y, mo - 1, d);
  if (day.getUTCFullYear() !== y || day.getUTCMonth() !== mo - 1 || day.getUTCDate() !== d) return false;
  if (Number(m[4] ?? 0) > 23 || Number(m[5] ?? 0) > 59 || Number(m[6] ?? 0) > 59) return false;
  const zone = /^[+-](\d{2}):?(\d{2})$/.exec(m[8] ?? '');
  return !zone || (Number(zone[1]) <= 23 && Number(zone[2]) <= 59);
}

/** Start of the event-time bucket of `tsMs` at `grain`. */
export function bucketStart(tsMs: number, grain: Grain): number {
  return floorTo(tsMs, GRAIN_MS[grain]);
}

/** Start of the arrival window of `arrivalMs`, windows being `windowMs` long from the epoch. */
export function windowStart(arrivalMs: number, windowMs: number): number {
  return floorTo(arrivalMs, windowMs);
}

/** Floors a time to a multiple of `stepMs` (cutoffs are floored to windows). */
export function floorTo(ms: number, stepMs: number): number {
  if (!(stepMs > 0) || !Number.isInteger(stepMs)) throw new RangeError(`step must be a positive whole number of ms, received ${stepMs}`);
  return Math.floor(ms / stepMs) * stepMs;
}

/** Rank of a grain, for "the view's or coarser" checks. */
export function grainRank(grain: QueryGrain): number {
  return QUERY_GRAINS.indexOf(grain);
}

/**
 * The bucket a view bucket rolls up to at a coarser query grain. With `all`
 * every bucket rolls up to the query's `from`.
 */
export function rollupBucket(bucket: number, grain: QueryGrain, allBucket: number): number {
  return grain === 'all' ? allBucket : bucketStart(bucket, grain);
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}
