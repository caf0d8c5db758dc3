/**
 * Exact decimal arithmetic for every metric in every layer.
 *
 * Values are DECIMAL(38, 9): at most 38 significant digits, 9 of them after the
 * point. That is what DynamoDB numbers (38 digits), Athena/Trino and DuckDB
 * DECIMAL(38, 9) all hold exactly, so the speed layer, the batch layer and the
 * merge agree to the last digit. decimal.js does the arithmetic (no float
 * accumulation anywhere).
 */
import { Decimal as DecimalJs } from 'decimal.js';

/** A Decimal constructor with enough precision that 38-digit sums never round. */
export const Decimal = DecimalJs.clone({ precision: 60, rounding: DecimalJs.ROUND_HALF_EVEN, toExpNeg: -60, toExpPos: 60 });
export type Decimal = InstanceType<typeof Decimal>;

/** Digits after the decimal point that every layer keeps. */
export const SCALE = 9;
/** Total significant digits that every layer keeps. */
export const PRECISION = 38;
/** Largest magnitude a stored value may reach: 10^(38-9). */
export const MAX_ABS = new Decimal(10).pow(PRECISION - SCALE);
/**
 * Significant digits a metric field of an incoming event may carry. Events are
 * JSON, parsed into IEEE doubles, which round-trip 15 significant digits exactly.
 */
export const MAX_INPUT_DIGITS = 15;

export class DecimalRangeError extends Error {}

/**
 * Parses a finite JS number into an exact decimal, or explains why it cannot be one.
 * The decimal is the shortest representation that round-trips the double
 * (`Number.prototype.toString`), so `0.1` is exactly 0.1.
 */
export function decimalFromNumber(value: number): Decimal {
  if (!Number.isFinite(value)) throw new DecimalRangeError(`must be a finite number, received ${String(value)}`);
  const d = new Decimal(value);
  if (d.decimalPlaces() > SCALE) {
    throw new DecimalRangeError(`has more than ${SCALE} digits after the decimal point (received ${String(value)})`);
  }
  if (d.precision(true) > MAX_INPUT_DIGITS) {
    throw new DecimalRangeError(`has more than ${MAX_INPUT_DIGITS} significant digits (received ${String(value)})`);
  }
  return d;
}

/** Throws when an accumulated value no longer fits DECIMAL(38, 9). */
export function checkRange(d: Decimal, what: string): Decimal {
  if (d.abs().gte(MAX_ABS)) throw new DecimalRangeError(`${what} overflows DECIMAL(${PRECISION}, ${SCALE}): ${d.toFixed()}`);
  return d;
}

/** Plain (never exponent) text of a decimal: how decimals travel in JSON, DynamoDB and SQL. */
export function decimalText(d: Decimal): string {
  return d.toFixed();
}

/** A decimal as a JSON number for API responses (exact while it has <= 15 significant digits). */
export function decimalToNumber(d: Decimal): number {
  return d.toNumber();
}
