import { describe, expect, it } from 'vitest';
import {
  DEFAULT_SETTINGS,
  dedupExpiry,
  lagAlarmThresholdSeconds,
  MAX_RECORD_AGE_SECONDS,
  SPEED_TTL_FACTOR,
  speedExpiry,
  speedTtlSeconds,
  validateSettings,
} from '../../functions/core/settings.ts';

describe('settings', () => {
  it('has the documented defaults, and they are valid', () => {
    expect(DEFAULT_SETTINGS.windowSeconds).toBe(60);
    expect(DEFAULT_SETTINGS.dedupHorizonSeconds).toBe(7 * 24 * 3600);
    expect(validateSettings(DEFAULT_SETTINGS)).toBe(DEFAULT_SETTINGS);
  });

  it('raises the lag alarm before any uncovered speed delta can expire (invariant 8)', () => {
    for (const maxBatchLagSeconds of [60, 3600, 6 * 3600, 86_400]) {
      expect(lagAlarmThresholdSeconds({ maxBatchLagSeconds })).toBeLessThan(speedTtlSeconds({ maxBatchLagSeconds }));
    }
    expect(speedTtlSeconds({ maxBatchLagSeconds: 100 })).toBe(SPEED_TTL_FACTOR * 100);
  });

  it('expires a speed delta a TTL after the end of its window, in epoch seconds', () => {
    const w = Date.UTC(2024, 2, 15, 13, 47);
    expect(speedExpiry(w, DEFAULT_SETTINGS)).toBe(w / 1000 + 60 + 3 * 6 * 3600);
  });

  it('expires a dedup claim a horizon after its latest arrival, rounded up, plus the longest record age', () => {
    expect(MAX_RECORD_AGE_SECONDS).toBe(7 * 24 * 3600);
    expect(dedupExpiry(1_000_500, DEFAULT_SETTINGS)).toBe(1001 + 7 * 24 * 3600 + MAX_RECORD_AGE_SECONDS);
    // Exact to the millisecond before rounding: 1,000,000 ms + 2 s is 1,002 s, not 1,003.
    expect(dedupExpiry(1_000_000, { dedupHorizonSeconds: 2 })).toBe(1002 + MAX_RECORD_AGE_SECONDS);
  });

  it.each([
    [{ windowSeconds: 0 }, 'windowSeconds must be a whole number >= 1, received 0'],
    [{ windowSeconds: 1.5 }, 'windowSeconds must be a whole number >= 1, received 1.5'],
    [{ windowSeconds: 7 }, 'windowSeconds must divide a day (86400) evenly, received 7'],
    [{ dedupHorizonSeconds: 0 }, 'dedupHorizonSeconds must be a whole number >= 1'],
    [{ dedupHorizonSeconds: 2.5 }, 'dedupHorizonSeconds must be a whole number >= 1'],
    [{ maxBatchLagSeconds: 59 }, 'maxBatchLagSeconds must be a whole number >= 60'],
    [{ keepVersions: 0 }, 'keepVersions must be a whole number >= 1'],
    [{ cutoffMarginSeconds: -1 }, 'cutoffMarginSeconds must be a whole number >= 0'],
  ])('rejects %j', (change, message) => {
    expect(() => validateSettings({ ...DEFAULT_SETTINGS, ...change })).toThrow(message);
  });
});
