import { describe, expect, it } from 'vitest';
import {
  checkRange,
  Decimal,
  DecimalRangeError,
  decimalFromNumber,
  decimalText,
  decimalToNumber,
  MAX_ABS,
  MAX_INPUT_DIGITS,
  PRECISION,
  SCALE,
} from '../../functions/core/decimal.ts';

describe('decimal: inputs', () => {
  it('reads a double as the shortest decimal that round-trips it', () => {
    expect(decimalText(decimalFromNumber(0.1))).toBe('0.1');
    expect(decimalText(decimalFromNumber(-12.345))).toBe('-12.345');
    expect(decimalText(decimalFromNumber(1e-9))).toBe('0.000000001');
    expect(decimalText(decimalFromNumber(123456789012345))).toBe('123456789012345');
    expect(decimalText(decimalFromNumber(0.123456789))).toBe('0.123456789');
    expect(decimalText(decimalFromNumber(-0))).toBe('0');
  });

  it('rejects more than 9 fractional digits', () => {
    expect(() => decimalFromNumber(1.0000000001)).toThrow(DecimalRangeError);
    expect(() => decimalFromNumber(1e-10)).toThrow(`has more than ${SCALE} digits after the decimal point`);
    expect(() => decimalFromNumber(0.1 + 0.2)).toThrow(/after the decimal point \(received 0.30000000000000004\)/);
  });

  it('rejects more than 15 significant digits', () => {
    expect(() => decimalFromNumber(1234567890123456)).toThrow(`has more than ${MAX_INPUT_DIGITS} significant digits`);
    expect(() => decimalFromNumber(1e20)).toThrow(DecimalRangeError);
    expect(() => decimalFromNumber(123456.1234567891)).toThrow(DecimalRangeError);
  });

  it('rejects non-finite numbers', () => {
    for (const v of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      expect(() => decimalFromNumber(v)).toThrow(`must be a finite number, received ${String(v)}`);
    }
  });
});

describe('decimal: exact arithmetic within DECIMAL(38, 9)', () => {
  it('adds without float error', () => {
    const sum = [0.1, 0.2, 0.3].map(decimalFromNumber).reduce((a, b) => a.plus(b));
    expect(decimalText(sum)).toBe('0.6');
    expect(decimalToNumber(sum)).toBe(0.6);
  });

  it('keeps 38 digits exactly', () => {
    const big = new Decimal('99999999999999999999999999999.999999999');
    expect(big.precision(true)).toBe(PRECISION);
    expect(decimalText(checkRange(big, 'sum'))).toBe('99999999999999999999999999999.999999999');
    expect(decimalText(big.plus('0.000000001').minus('0.000000001'))).toBe('99999999999999999999999999999.999999999');
  });

  it('rejects sums that overflow', () => {
    expect(() => checkRange(MAX_ABS, 'sum sum')).toThrow(/sum sum overflows DECIMAL\(38, 9\): 1(0){29}$/);
    expect(() => checkRange(MAX_ABS.neg(), 'x')).toThrow(DecimalRangeError);
  });

  it('prints plain text, never exponents', () => {
    expect(decimalText(new Decimal('1e25'))).toBe('10000000000000000000000000');
    expect(decimalText(new Decimal('1e-9'))).toBe('0.000000001');
  });
});
