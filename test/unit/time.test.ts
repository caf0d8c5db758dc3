import { describe, expect, it } from 'vitest';
import {
  bucketStart,
  floorTo,
  GRAIN_MS,
  grainRank,
  iso,
  MAX_TIME_MS,
  MIN_TIME_MS,
  parseTime,
  rollupBucket,
  TimeParseError,
  windowStart,
} from '../../functions/core/time.ts';

const T = Date.UTC(2024, 2, 15, 13, 47, 21, 500); // 2024-03-15T13:47:21.500Z

describe('time: parseTime', () => {
  it('reads ISO-8601 dates and date-times, zone-less as UTC', () => {
    expect(parseTime('2024-03-15T13:47:21.500Z')).toBe(T);
    expect(parseTime('2024-03-15T13:47:21.5Z')).toBe(T);
    expect(parseTime('2024-03-15T13:47:21.500')).toBe(T);
    expect(parseTime('2024-03-15 13:47:21.500')).toBe(T);
    expect(parseTime('2024-03-15')).toBe(Date.UTC(2024, 2, 15));
    expect(parseTime('2024-03-15T13:47')).toBe(Date.UTC(2024, 2, 15, 13, 47));
    expect(parseTime(' 2024-03-15T13:47:21.500Z ')).toBe(T);
  });

  it('applies zone offsets, with or without a colon', () => {
    expect(parseTime('2024-03-15T15:47:21.500+02:00')).toBe(T);
    expect(parseTime('2024-03-15T12:17:21.500-0130')).toBe(T);
  });

  it('truncates fractions past milliseconds', () => {
    expect(parseTime('2024-03-15T13:47:21.500999999Z')).toBe(T);
  });

  it('reads epoch milliseconds as a number or as digits', () => {
    expect(parseTime(T)).toBe(T);
    expect(parseTime(String(T))).toBe(T);
  });

  it.each([
    ['2024-02-30', 'is not a valid date-time'],
    ['2023-02-29T00:00:00Z', 'is not a valid date-time'],
    ['2024-06-31T00:00:00+00:00', 'is not a valid date-time'],
    ['2024-02-30T10:00:00+01:00', 'is not a valid date-time'],
    ['2024-13-01', 'is not a valid date-time'],
    ['2024-01-01T24:00:00Z', 'is not a valid date-time'],
    ['2024-01-01T24:00:00+01:00', 'is not a valid date-time'],
    ['2024-01-01T10:60Z', 'is not a valid date-time'],
    ['2024-01-01T10:00:60Z', 'is not a valid date-time'],
    ['2024-01-01T10:00:00+24:00', 'is not a valid date-time'],
    ['yesterday', 'must be an ISO-8601 time or epoch milliseconds'],
    ['Fri, 15 Mar 2024 13:47:21 GMT', 'must be an ISO-8601 time or epoch milliseconds'],
    ['', 'must be an ISO-8601 time or epoch milliseconds'],
    ['-1', 'must be an ISO-8601 time or epoch milliseconds'],
  ])('rejects %j: %s', (input, message) => {
    expect(() => parseTime(input)).toThrow(TimeParseError);
    expect(() => parseTime(input)).toThrow(message);
  });

  it('rejects fractional epoch milliseconds and non-time types', () => {
    expect(() => parseTime(1.5)).toThrow('must be whole epoch milliseconds, received 1.5');
    expect(() => parseTime(null)).toThrow('received null');
    expect(() => parseTime(true)).toThrow('received boolean');
    expect(() => parseTime(undefined)).toThrow('received undefined');
  });

  it('rejects times outside 2000..2999, at both edges', () => {
    expect(parseTime(MIN_TIME_MS)).toBe(MIN_TIME_MS);
    expect(parseTime(MAX_TIME_MS)).toBe(MAX_TIME_MS);
    expect(() => parseTime(MIN_TIME_MS - 1)).toThrow(/must be between 2000-01-01T00:00:00.000Z and 2999-12-31T23:59:59.999Z/);
    expect(() => parseTime(MAX_TIME_MS + 1)).toThrow(TimeParseError);
    expect(() => parseTime('1999-12-31T23:59:59Z')).toThrow(/must be between/);
    expect(() => parseTime(1_700_000_000)).toThrow(/must be between/); // epoch seconds by mistake
  });
});

describe('time: buckets, windows and cutoffs', () => {
  it('buckets event time per grain, UTC', () => {
    expect(bucketStart(T, 'minute')).toBe(Date.UTC(2024, 2, 15, 13, 47));
    expect(bucketStart(T, 'hour')).toBe(Date.UTC(2024, 2, 15, 13));
    expect(bucketStart(T, 'day')).toBe(Date.UTC(2024, 2, 15));
    expect(bucketStart(Date.UTC(2024, 2, 15, 13), 'hour')).toBe(Date.UTC(2024, 2, 15, 13));
  });

  it('floors arrival to windows of any length', () => {
    expect(windowStart(T, 60_000)).toBe(Date.UTC(2024, 2, 15, 13, 47));
    expect(windowStart(T, 300_000)).toBe(Date.UTC(2024, 2, 15, 13, 45));
    expect(windowStart(T, 1)).toBe(T);
  });

  it('floors cutoffs and rejects bad steps', () => {
    expect(floorTo(119_999, 60_000)).toBe(60_000);
    expect(floorTo(120_000, 60_000)).toBe(120_000);
    expect(() => floorTo(1, 0)).toThrow(RangeError);
    expect(() => floorTo(1, 1.5)).toThrow('step must be a positive whole number of ms, received 1.5');
    expect(() => floorTo(1, Number.NaN)).toThrow(RangeError);
  });

  it('ranks grains from fine to coarse', () => {
    expect(grainRank('minute')).toBeLessThan(grainRank('hour'));
    expect(grainRank('hour')).toBeLessThan(grainRank('day'));
    expect(grainRank('day')).toBeLessThan(grainRank('all'));
  });

  it('rolls buckets up to a coarser grain, and everything to one bucket with all', () => {
    const minute = bucketStart(T, 'minute');
    expect(rollupBucket(minute, 'minute', 0)).toBe(minute);
    expect(rollupBucket(minute, 'hour', 0)).toBe(Date.UTC(2024, 2, 15, 13));
    expect(rollupBucket(minute, 'day', 0)).toBe(Date.UTC(2024, 2, 15));
    expect(rollupBucket(minute, 'all', 42)).toBe(42);
    expect(GRAIN_MS.day).toBe(24 * GRAIN_MS.hour);
  });

  it('prints ISO-8601', () => {
    expect(iso(T)).toBe('2024-03-15T13:47:21.500Z');
  });
});
