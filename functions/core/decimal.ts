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
  // A non-zero integer below 10^15 prints the same digits as a double (the batch writes millions of counts).
  const n = smallInteger(d);
  return n === undefined || n === 0 ? d.toFixed() : String(n);
}

/**
 * The decimal's value when it is an integer of at most 15 digits (exact as a double), else undefined. From
 * decimal.js's documented form (digits `d` in words of 7, the first holding `e mod 7 + 1` of them; exponent
 * `e`; sign `s`), not its text: a query turns thousands of counts into numbers.
 */
export function smallInteger(d: Decimal): number | undefined {
  const w = d.d;
  const e = d.e;
  if (!w || e < 0 || e >= 15) return undefined;
  const words = Math.floor(e / 7) + 1;
  if (w.length > words) return undefined;
  let n = 0;
  for (let i = 0; i < w.length; i++) n = n * 1e7 + w[i]!;
  for (let i = w.length; i < words; i++) n *= 1e7;
  return d.s * n;
}

/** A decimal as a JSON number for API responses (exact while it has <= 15 significant digits). */
export function decimalToNumber(d: Decimal): number {
  return smallInteger(d) ?? d.toNumber();
}

/**
 * A decimal's plain text (`decimalText`) read back. Counts and most sums are integers below 10^7,
 * which decimal.js builds from a JS number without parsing text (its own fast path): the same value.
 */
export function decimalFromText(text: string): Decimal {
  const n = text.length;
  if (n > 0 && n <= 7 && (n === 1 || text.charCodeAt(0) !== 48)) {
    let digits = true;
    for (let i = 0; i < n && digits; i++) {
      const c = text.charCodeAt(i);
      digits = c >= 48 && c <= 57;
    }
    if (digits) return decimalOfInteger(+text);
  }
  return new Decimal(text);
}

/**
 * Decimals of the integers 0 to 9,999, made on first use and shared: decimal.js values are immutable, and
 * counts and most per-row sums are among them (a query or a rollup would otherwise make millions).
 */
const SMALL: (Decimal | undefined)[] = new Array(10_000);

/** The Decimal of a safe integer (shared for 0 to 9,999: `SMALL`). */
export function decimalOfInteger(n: number): Decimal {
  if (!(n >= 0 && n < 10_000 && Number.isInteger(n)) || Object.is(n, -0)) return new Decimal(n);
  let d = SMALL[n];
  if (d === undefined) {
    d = new Decimal(n);
    SMALL[n] = d;
  }
  return d;
}
