/**
 * Settings shared by both layers, and the one place where the speed TTL and the
 * batch-lag alarm threshold are derived from each other (invariant 8, docs/design.md):
 * the alarm fires at `maxBatchLag`, and a speed item lives 3 x that past its
 * arrival window, so an alarm always comes before uncovered data can expire.
 */

export interface Settings {
  /** Arrival window length in seconds (cutoffs are multiples of it). */
  readonly windowSeconds: number;
  /**
   * The dedup horizon H: a copy of an event id does not count when another copy of the id arrived
   * within H before it (docs/api.md). Both layers apply it.
   */
  readonly dedupHorizonSeconds: number;
  /** The longest the published cutoff may lag before the lag alarm fires. */
  readonly maxBatchLagSeconds: number;
  /** Published batch versions kept readable (for rollback and in-flight queries). */
  readonly keepVersions: number;
  /** Safety margin below archived-through arrival times, as arrival timestamps are approximate. */
  readonly cutoffMarginSeconds: number;
}

export const DEFAULT_SETTINGS: Settings = {
  windowSeconds: 60,
  dedupHorizonSeconds: 7 * 24 * 3600,
  maxBatchLagSeconds: 6 * 3600,
  keepVersions: 3,
  cutoffMarginSeconds: 5,
};

/** Factor between the lag alarm threshold and the life of a speed item. */
export const SPEED_TTL_FACTOR = 3;

/** Seconds a speed item lives after the end of its arrival window. */
export function speedTtlSeconds(s: Pick<Settings, 'maxBatchLagSeconds'>): number {
  return SPEED_TTL_FACTOR * s.maxBatchLagSeconds;
}

/** The batch-lag alarm threshold in seconds (always < speedTtlSeconds). */
export function lagAlarmThresholdSeconds(s: Pick<Settings, 'maxBatchLagSeconds'>): number {
  return s.maxBatchLagSeconds;
}

/** Epoch seconds at which a speed item of the window starting at `windowStartMs` expires. */
export function speedExpiry(windowStartMs: number, s: Settings): number {
  return Math.ceil((windowStartMs + s.windowSeconds * 1000) / 1000) + speedTtlSeconds(s);
}

/**
 * The longest a Kinesis record can wait for a Lambda mapping: Lambda caps `maximumRecordAge` at 7 days
 * (lib/consumer.ts checks it). A copy processed later than its arrival + this is never processed.
 */
export const MAX_RECORD_AGE_SECONDS = 7 * 24 * 3600;

/**
 * Epoch seconds after which the dedup claim of an id whose latest copy arrived at `latestArrivalMs`
 * may be deleted (TTL): H after that arrival, rounded up, plus the longest a record can wait for the
 * mapping, so every copy that could still arrive within H of it is processed while the claim exists.
 * For deletion only: the speed layer decides on exact arrivals (functions/speed/dedup.ts).
 */
export function dedupExpiry(latestArrivalMs: number, s: Pick<Settings, 'dedupHorizonSeconds'>): number {
  return Math.ceil((latestArrivalMs + s.dedupHorizonSeconds * 1000) / 1000) + MAX_RECORD_AGE_SECONDS;
}

export function validateSettings(s: Settings): Settings {
  const whole = (n: number, name: string, min: number) => {
    if (!Number.isInteger(n) || n < min) throw new RangeError(`${name} must be a whole number >= ${min}, received ${n}`);
  };
  whole(s.windowSeconds, 'windowSeconds', 1);
  if (86400 % s.windowSeconds !== 0) throw new RangeError(`windowSeconds must divide a day (86400) evenly, received ${s.windowSeconds}`);
  // Any whole number of seconds is a valid rule; tests use a few seconds to put copies beyond H.
  whole(s.dedupHorizonSeconds, 'dedupHorizonSeconds', 1);
  whole(s.maxBatchLagSeconds, 'maxBatchLagSeconds', 60);
  whole(s.keepVersions, 'keepVersions', 1);
  whole(s.cutoffMarginSeconds, 'cutoffMarginSeconds', 0);
  return s;
}
