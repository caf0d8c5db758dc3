/**
 * HyperLogLog sketches of `distinct(field)` (docs/api.md, docs/views.md).
 *
 * Precision p = 12: m = 4096 registers, standard error 1.04 / sqrt(m) ~ 1.6 %.
 * Hash: MD5 of the field's canonical text (`RawRecord.fields[f]`) as UTF-8;
 * its first 64 bits (big-endian: the first 16 hex digits) are the hash. The
 * register index is the top 12 bits (hex digits 1-3), the rank the number of
 * leading zeros of the remaining 52 bits (hex digits 4-16) plus one, 53 when
 * they are all zero. MD5 is the one hash that node:crypto, DuckDB (`md5(text)`,
 * lowercase hex) and Trino (`md5(to_utf8(text))`, varbinary; `to_hex` is
 * uppercase) all compute by the same definition; DuckDB's `hash` and
 * `md5_number` and Trino's `xxhash64` have no counterpart in the others.
 * Nothing here depends on MD5 being secure, only on it being uniform.
 *
 * A sketch is the register array; merging is register-wise max (a commutative,
 * idempotent monoid whose identity is the empty sketch, stored as an absent
 * attribute, like an empty min). Its one canonical text (DynamoDB, JSON,
 * `stateToColumns`), over the 64 characters `ALPHABET` (ASCII order, so value
 * order is text order):
 *   - sparse, while 3 x registers set < 4096: per set register in index order,
 *     3 characters: index >> 6, index & 63, rank;
 *   - dense otherwise: 4096 characters, the rank of each register (0 = `-`).
 * A sparse text's length is a multiple of 3, never 4096, so the length tells
 * the form. Equal register arrays have equal texts: batch and speed compare bit for bit.
 *
 * The SQL computes the same registers and returns them as sorted
 * `<index: 3 hex digits><rank: 2 decimal digits>` groups (`parseSqlSketch`);
 * the batch engine turns that into the canonical text.
 */
import { createHash } from 'node:crypto';

export const HLL_PRECISION = 12;
export const HLL_REGISTERS = 1 << HLL_PRECISION;
/** Bits after the index: the rank is at most HLL_TAIL_BITS + 1. */
export const HLL_TAIL_BITS = 64 - HLL_PRECISION;
export const HLL_MAX_RANK = HLL_TAIL_BITS + 1;
/** The relative standard error of an estimate, 1.04 / sqrt(m). */
export const HLL_STANDARD_ERROR = 1.04 / Math.sqrt(HLL_REGISTERS);

export const ALPHABET = '-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz';
/** Character code -> value (-1: not in the alphabet): parsing reads every character of thousands of sketches a query. */
const CODE = new Int8Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) CODE[ALPHABET.charCodeAt(i)] = i;
/** Set registers above which the dense text (4096 characters) is shorter than the sparse one (3 a register). */
const SPARSE_MAX = Math.floor((HLL_REGISTERS - 1) / 3);

/**
 * A non-empty sketch: the set registers (index -> rank), or all of them. Immutable.
 * The empty sketch is `null` everywhere (the identity).
 */
export class Sketch {
  private constructor(
    /** Set registers, index -> rank (sparse form); null when `dense` holds them (or until read from `text`). */
    private stored: ReadonlyMap<number, number> | null,
    private storedDense: Uint8Array | null,
    /** The canonical text it was read from: registers are built only when asked for. */
    private readonly text: string | null = null,
    /** Known by its estimate alone (`ofEstimate`): no registers, no text. */
    private readonly known: number | null = null,
  ) {}

  /**
   * A sketch known only by its estimate (`estimate` gives it back): a batch block row read without its sketch
   * (core/blocks.ts, form `apart`) whose answer cell holds nothing else to merge it with (api/read-view.ts). It has
   * no registers nor text: merging or writing it throws.
   */
  static ofEstimate(value: number): Sketch {
    return new Sketch(null, null, null, value);
  }

  /** The estimate of a sketch made by `ofEstimate`, else null. */
  get knownEstimate(): number | null {
    return this.known;
  }

  private registersOnly(): void {
    if (this.known !== null) throw new Error('a sketch read as its estimate alone cannot be merged nor written');
  }

  /**
   * A sketch read from a canonical text already checked, kept as text: a query reads thousands of sketches a
   * request and most only need their estimate (`rankCounts`) or their text again; registers come on demand.
   */
  static ofText(text: string): Sketch {
    return new Sketch(null, null, text);
  }

  private get sparse(): ReadonlyMap<number, number> | null {
    this.registersOnly();
    this.load();
    return this.stored;
  }

  private get dense(): Uint8Array | null {
    this.registersOnly();
    this.load();
    return this.storedDense;
  }

  private load(): void {
    if (this.stored || this.storedDense || this.text === null) return;
    const t = this.text;
    if (t.length === HLL_REGISTERS) {
      const dense = new Uint8Array(HLL_REGISTERS);
      for (let k = 0; k < HLL_REGISTERS; k++) dense[k] = CODE[t.charCodeAt(k)]!;
      this.storedDense = dense;
      return;
    }
    const map = new Map<number, number>();
    for (let k = 0; k < t.length; k += 3) map.set(CODE[t.charCodeAt(k)]! * 64 + CODE[t.charCodeAt(k + 1)]!, CODE[t.charCodeAt(k + 2)]!);
    this.stored = map;
  }

  /** A sketch of the given registers (index -> rank >= 1); null when none is set. */
  static of(registers: Iterable<readonly [number, number]>): Sketch | null {
    const map = new Map<number, number>();
    for (const [i, r] of registers) {
      if (!Number.isInteger(i) || i < 0 || i >= HLL_REGISTERS) throw new Error(`HLL register index ${i} out of range`);
      if (!Number.isInteger(r) || r < 0 || r > HLL_MAX_RANK) throw new Error(`HLL rank ${r} out of range`);
      if (r > (map.get(i) ?? 0)) map.set(i, r);
    }
    return Sketch.fromMap(map);
  }

  /** A sketch of a full register array (taken, not copied): its canonical form by the number of registers set. */
  static fromRegisters(dense: Uint8Array): Sketch | null {
    let set = 0;
    for (let i = 0; i < HLL_REGISTERS; i++) if (dense[i]! > 0) set++;
    if (set === 0) return null;
    if (set > SPARSE_MAX) return new Sketch(null, dense);
    const map = new Map<number, number>();
    for (let i = 0; i < HLL_REGISTERS; i++) if (dense[i]! > 0) map.set(i, dense[i]!);
    return new Sketch(map, null);
  }

  /**
   * How many registers hold each rank: element k for rank k (0 = unset), up to HLL_MAX_RANK. Without
   * building the register array: a query finalizes one estimate per row, most of them sparse.
   */
  rankCounts(): number[] {
    return this.addCounts(new Array<number>(HLL_MAX_RANK + 1).fill(0));
  }

  /** Adds the rank counts to `c` (zeros, HLL_MAX_RANK + 1 of them) and returns it: from the text when read from one. */
  addCounts(c: number[]): number[] {
    this.registersOnly();
    const t = this.text;
    if (t !== null && this.stored === null && this.storedDense === null) {
      if (t.length === HLL_REGISTERS) for (let k = 0; k < HLL_REGISTERS; k++) c[CODE[t.charCodeAt(k)]!]!++;
      else {
        c[0] = HLL_REGISTERS - t.length / 3;
        for (let k = 2; k < t.length; k += 3) c[CODE[t.charCodeAt(k)]!]!++;
      }
      return c;
    }
    if (this.dense) for (const r of this.dense) c[r]!++;
    else {
      c[0] = HLL_REGISTERS - this.sparse!.size;
      for (const r of this.sparse!.values()) c[r]!++;
    }
    return c;
  }

  /** A sketch of registers already checked (index in range, rank 1..HLL_MAX_RANK), the map taken, not copied. */
  static ofMap(map: Map<number, number>): Sketch | null {
    return Sketch.fromMap(map);
  }

  private static fromMap(map: Map<number, number>): Sketch | null {
    if (map.size === 0) return null;
    if (map.size <= SPARSE_MAX) return new Sketch(map, null);
    const dense = new Uint8Array(HLL_REGISTERS);
    for (const [i, r] of map) dense[i] = r;
    return new Sketch(null, dense);
  }

  /** The rank of every register (0 when unset), a fresh array. */
  registers(): Uint8Array {
    if (this.dense) return this.dense.slice();
    const out = new Uint8Array(HLL_REGISTERS);
    for (const [i, r] of this.sparse!) out[i] = r;
    return out;
  }

  /** The set registers, index -> rank, in index order. */
  entries(): [number, number][] {
    if (this.sparse) return [...this.sparse].sort((a, b) => a[0] - b[0]);
    const out: [number, number][] = [];
    this.dense!.forEach((r, i) => {
      if (r > 0) out.push([i, r]);
    });
    return out;
  }

  /** The canonical text (module comment). */
  toText(): string {
    if (this.text !== null) return this.text;
    this.registersOnly();
    if (this.dense) {
      let out = '';
      for (const r of this.dense) out += ALPHABET[r];
      return out;
    }
    let out = '';
    for (const [i, r] of this.entries()) out += ALPHABET[i >> 6]! + ALPHABET[i & 63]! + ALPHABET[r]!;
    return out;
  }

  /** Register-wise max. */
  merge(other: Sketch): Sketch {
    const a = this.sparseText();
    const b = a === null ? null : other.sparseText();
    if (b !== null) {
      const t = mergeSparseTexts(a!, b);
      if (t !== null) return Sketch.ofText(t);
    }
    if (this.dense && other.dense) {
      const out = this.dense.slice();
      const theirs = other.dense;
      for (let i = 0; i < HLL_REGISTERS; i++) if (theirs[i]! > out[i]!) out[i] = theirs[i]!;
      return new Sketch(null, out);
    }
    if (this.dense || other.dense) {
      // Dense with sparse (rollups merge many small sketches into a big one): copy the dense, raise the sparse's registers.
      const [big, small] = this.dense ? [this, other] : [other, this];
      const out = big.dense!.slice();
      for (const [i, r] of small.sparse!) if (r > out[i]!) out[i] = r;
      return new Sketch(null, out);
    }
    const map = new Map(this.sparse!);
    for (const [i, r] of other.sparse!) if (r > (map.get(i) ?? 0)) map.set(i, r);
    return Sketch.fromMap(map)!;
  }

  /**
   * The merge of `sketches` when all were read from (or merged into) sparse texts with at most SPARSE_MAX registers
   * among them: ordered-list merges of their texts, without a register array. Else undefined.
   */
  static mergeSparse(sketches: readonly Sketch[]): Sketch | undefined {
    let total = 0;
    for (const x of sketches) {
      const t = x.sparseText();
      if (t === null) return undefined;
      total += t.length / 3;
      if (total > SPARSE_MAX) return undefined;
    }
    let out = sketches[0]!.text!;
    for (let k = 1; k < sketches.length; k++) out = mergeSparseTexts(out, sketches[k]!.text!)!;
    return Sketch.ofText(out);
  }

  /** The canonical sparse text this sketch was read from or merged into, else null (then its registers tell). */
  sparseCanonicalText(): string | null {
    return this.sparseText();
  }

  /** The canonical sparse text this sketch was read from or merged into, else null. */
  private sparseText(): string | null {
    return this.text !== null && this.text.length !== HLL_REGISTERS ? this.text : null;
  }

  /** Raises `registers` to this sketch's where lower (in place; `mergeAll`). */
  raise(registers: Uint8Array): void {
    this.registersOnly();
    if (this.text !== null && this.stored === null && this.storedDense === null) {
      // Straight from the canonical text (checked when read): a rollup merges many sketches that are never needed as registers.
      const t = this.text;
      if (t.length === HLL_REGISTERS) {
        for (let k = 0; k < HLL_REGISTERS; k++) {
          const r = CODE[t.charCodeAt(k)]!;
          if (r > registers[k]!) registers[k] = r;
        }
        return;
      }
      for (let k = 0; k < t.length; k += 3) {
        const i = CODE[t.charCodeAt(k)]! * 64 + CODE[t.charCodeAt(k + 1)]!;
        const r = CODE[t.charCodeAt(k + 2)]!;
        if (r > registers[i]!) registers[i] = r;
      }
      return;
    }
    if (this.dense) {
      for (let i = 0; i < HLL_REGISTERS; i++) if (this.dense[i]! > registers[i]!) registers[i] = this.dense[i]!;
      return;
    }
    for (const [i, r] of this.sparse!) if (r > registers[i]!) registers[i] = r;
  }

  equals(other: Sketch | null): boolean {
    return other !== null && this.toText() === other.toText();
  }
}

/** A register's index in a sparse text, ordered as the index (the alphabet is in ASCII order, every code below 128). */
const indexKey = (t: string, k: number) => t.charCodeAt(k) * 128 + t.charCodeAt(k + 1);

/**
 * The canonical sparse text of the register-wise max of two canonical sparse texts, by merging the two
 * ordered lists (runs from one side copied whole), or null when the result has too many registers for
 * the sparse form. The batch folds many small sketches a rollup row; a map per step cost far more.
 */
function mergeSparseTexts(a: string, b: string): string | null {
  let i = 0;
  let j = 0;
  let out = '';
  while (i < a.length && j < b.length) {
    const ia = indexKey(a, i);
    const ib = indexKey(b, j);
    if (ia < ib) {
      const from = i;
      do i += 3;
      while (i < a.length && indexKey(a, i) < ib);
      out += a.slice(from, i);
    } else if (ib < ia) {
      const from = j;
      do j += 3;
      while (j < b.length && indexKey(b, j) < ia);
      out += b.slice(from, j);
    } else {
      out += a.charCodeAt(i + 2) >= b.charCodeAt(j + 2) ? a.slice(i, i + 3) : b.slice(j, j + 3);
      i += 3;
      j += 3;
    }
  }
  if (i < a.length) out += a.slice(i);
  if (j < b.length) out += b.slice(j);
  return out.length / 3 > SPARSE_MAX ? null : out;
}

/** The register index and rank of one value (its canonical text). */
export function hashValue(text: string): { index: number; rank: number } {
  const hex = createHash('md5').update(text, 'utf8').digest('hex');
  return registerOf(hex);
}

/** Index and rank from the hex of the hash (the first 16 digits count), as the SQL computes them. */
export function registerOf(hex: string): { index: number; rank: number } {
  const index = Number.parseInt(hex.slice(0, 3), 16);
  // 52 bits fit a double exactly; leading zeros of 52 bits = clz32 of the top 20 and the low 32.
  const high = Number.parseInt(hex.slice(3, 8), 16);
  const low = Number.parseInt(hex.slice(8, 16), 16);
  const zeros = high !== 0 ? Math.clz32(high) - 12 : 20 + (low !== 0 ? Math.clz32(low) : 32);
  return { index, rank: zeros + 1 };
}

/** The sketch of one value; null for a missing field (it counts nowhere). */
export function sketchOf(text: string | null | undefined): Sketch | null {
  if (text === null || text === undefined) return null;
  const { index, rank } = hashValue(text);
  return Sketch.of([[index, rank]]);
}

/** Merge with null as the identity. */
export function mergeSketches(a: Sketch | null | undefined, b: Sketch | null | undefined): Sketch | null {
  if (!a) return b ?? null;
  if (!b) return a;
  return a.merge(b);
}

/**
 * The merge of many sketches at once (the monoid's fold, as a rollup needs it): one register array
 * raised by each, so k sketches cost k passes over their own registers, not k copies of a growing one.
 */
export function mergeAll(sketches: readonly (Sketch | null | undefined)[]): Sketch | null {
  const present = sketches.filter((x): x is Sketch => !!x);
  if (present.length <= 1) return present[0] ?? null;
  const sparse = Sketch.mergeSparse(present);
  if (sparse) return sparse;
  const out = new Uint8Array(HLL_REGISTERS);
  for (const x of present) x.raise(out);
  return Sketch.fromRegisters(out);
}

/** The value of the character at `k` of a sketch's text; throws when it is not in the alphabet. */
function codeAt(text: string, k: number): number {
  const c = text.charCodeAt(k);
  const v = c < 128 ? CODE[c]! : -1;
  if (v < 0) throw new Error(`not an HLL sketch: character ${JSON.stringify(text[k])}`);
  return v;
}

/** The rank at `k` of a sketch's text; throws when out of range. */
function rankAt(text: string, k: number): number {
  const r = codeAt(text, k);
  if (r > HLL_MAX_RANK) throw new Error(`HLL rank ${r} out of range`);
  return r;
}

/** Every UTF-16 code unit -> its value in the alphabet, -1 when not in it: the checks below need no branch per character. */
const CODE16 = new Int8Array(65536).fill(-1);
CODE16.set(CODE);

/** Throws what the first bad character or rank of `text` is (a text `parseSketch` found bad). */
function explainBad(text: string): never {
  for (let k = 0; k < text.length; k += text.length === HLL_REGISTERS ? 1 : 3) {
    if (text.length === HLL_REGISTERS) rankAt(text, k);
    else {
      codeAt(text, k);
      codeAt(text, k + 1);
      rankAt(text, k + 2);
    }
  }
  throw new Error('not an HLL sketch');
}

/**
 * Reads a canonical text (`Sketch.toText`); the empty text is the empty sketch. A query reads thousands a request:
 * the checks OR the characters' values together and look at the result once (the first fault is found again by
 * `explainBad`), and a canonical text is kept as it is, without registers or rank counts until they are asked for.
 */
export function parseSketch(text: string): Sketch | null {
  const n = text.length;
  let bad = 0;
  let maxRank = 0;
  if (n === HLL_REGISTERS) {
    let set = 0;
    for (let k = 0; k < HLL_REGISTERS; k++) {
      const r = CODE16[text.charCodeAt(k)]!;
      bad |= r;
      if (r > maxRank) maxRank = r;
      if (r > 0) set++;
    }
    if (bad < 0 || maxRank > HLL_MAX_RANK) explainBad(text);
    // Canonical (more registers set than the sparse form holds): kept as text; else normalized below.
    if (set > SPARSE_MAX) return Sketch.ofText(text);
    const dense = new Uint8Array(HLL_REGISTERS);
    for (let k = 0; k < HLL_REGISTERS; k++) dense[k] = CODE16[text.charCodeAt(k)]!;
    return Sketch.fromRegisters(dense);
  }
  if (n % 3 !== 0) throw new Error(`not an HLL sketch: length ${n}`);
  if (n === 0) return null;
  // Canonical sparse text (indices strictly increasing, every rank set): kept as text.
  let canonical = true;
  let last = -1;
  for (let k = 0; k < n; k += 3) {
    const a = CODE16[text.charCodeAt(k)]!;
    const b = CODE16[text.charCodeAt(k + 1)]!;
    const r = CODE16[text.charCodeAt(k + 2)]!;
    bad |= a | b | r;
    const i = a * 64 + b;
    if (i <= last || r === 0) canonical = false;
    if (r > maxRank) maxRank = r;
    last = i;
  }
  if (bad < 0 || maxRank > HLL_MAX_RANK) explainBad(text);
  if (canonical && n / 3 <= SPARSE_MAX) return Sketch.ofText(text);
  // Two characters of 64 values are an index below 4096 by construction.
  const regs = new Map<number, number>();
  for (let k = 0; k < n; k += 3) {
    const i = CODE16[text.charCodeAt(k)]! * 64 + CODE16[text.charCodeAt(k + 1)]!;
    const r = CODE16[text.charCodeAt(k + 2)]!;
    if (r > (regs.get(i) ?? 0)) regs.set(i, r);
  }
  return Sketch.ofMap(regs);
}

/** Reads the SQL's form: `<index, 3 hex digits><rank, 2 decimal digits>` groups (either case); empty or null is the empty sketch. */
export function parseSqlSketch(text: string | null): Sketch | null {
  if (text === null || text === '') return null;
  if (!/^([0-9a-fA-F]{3}\d{2})+$/.test(text)) throw new Error(`not an HLL register list from SQL: ${JSON.stringify(text.slice(0, 40))}`);
  const regs: [number, number][] = [];
  for (let k = 0; k < text.length; k += 5) regs.push([Number.parseInt(text.slice(k, k + 3), 16), Number(text.slice(k + 3, k + 5))]);
  return Sketch.of(regs);
}

/** `<index hex digit>` character code -> its value, -1 for any other character. */
const HEX16 = new Int8Array(65536).fill(-1);
for (const [k, c] of [...'0123456789abcdef'].entries()) HEX16[c.charCodeAt(0)] = HEX16[c.toUpperCase().charCodeAt(0)] = k;

/**
 * `parseSqlSketch(text)?.toText() ?? null`, straight from text to text when the SQL's groups are in strictly
 * increasing index order, every rank 1..53, and few enough for the sparse form (as the SQL writes them: grouped per
 * register, sorted): a rebuild turns hundreds of thousands of them (mostly a register or two a minute row) into
 * canonical text, and a register map each was a good part of its time. Anything else takes the general path.
 */
export function sqlSketchText(text: string | null): string | null {
  if (text === null || text === '') return null;
  const n = text.length;
  if (n % 5 !== 0 || n / 5 > SPARSE_MAX) return parseSqlSketch(text)?.toText() ?? null;
  let out = '';
  let last = -1;
  for (let k = 0; k < n; k += 5) {
    const a = HEX16[text.charCodeAt(k)]!;
    const b = HEX16[text.charCodeAt(k + 1)]!;
    const c = HEX16[text.charCodeAt(k + 2)]!;
    const d1 = text.charCodeAt(k + 3) - 48;
    const d2 = text.charCodeAt(k + 4) - 48;
    const index = (a << 8) | (b << 4) | c;
    const rank = d1 * 10 + d2;
    if ((a | b | c) < 0 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9 || index <= last || rank < 1 || rank > HLL_MAX_RANK) {
      return parseSqlSketch(text)?.toText() ?? null;
    }
    last = index;
    out += ALPHABET[index >> 6]! + ALPHABET[index & 63]! + ALPHABET[rank]!;
  }
  return out;
}

/**
 * The estimate of the number of distinct values, rounded to an integer:
 * Ertl's improved raw estimator ("New cardinality estimation algorithms for
 * HyperLogLog sketches", 2017, algorithm 6), with C_k = registers of rank k:
 *   E = m^2 / (2 ln 2 * (m sigma(C_0/m) + sum_{k=1..q} C_k 2^-k + m tau(1 - C_{q+1}/m) 2^-q)), q = 52,
 * unbiased over the whole range without the bias tables of HLL++ or the
 * switch between linear counting and the raw estimate of the original paper
 * (whose bias bump near 2.5 m is several %). 0 for the empty sketch.
 */
const scratch = new Array<number>(HLL_MAX_RANK + 1).fill(0);

export function estimate(sketch: Sketch | null): number {
  if (!sketch) return 0;
  const known = sketch.knownEstimate;
  if (known !== null) return known;
  // The estimate depends only on how many registers hold each rank: a sketch of a few registers (most rows of a
  // minute view: the batch stores every row's estimate) is looked up by its ranks, sorted.
  const text = sketch.sparseCanonicalText();
  if (text !== null && text.length <= 3 * SMALL_SKETCH) {
    const ranks: string[] = [];
    for (let k = 2; k < text.length; k += 3) ranks.push(text[k]!);
    const key = ranks.sort().join('');
    let e = smallEstimates.get(key);
    if (e === undefined) {
      e = computeEstimate(sketch);
      // Bounded: ranks are geometric (a few hundred keys in practice), a pathological input cannot grow it without end.
      if (smallEstimates.size >= 100_000) smallEstimates.clear();
      smallEstimates.set(key, e);
    }
    return e;
  }
  return computeEstimate(sketch);
}

/** Registers set up to which `estimate` keeps estimates by ranks (at most C(53 + 4, 4) ~ 400,000 keys; far fewer occur). */
const SMALL_SKETCH = 4;
const smallEstimates = new Map<string, number>();

function computeEstimate(sketch: Sketch): number {
  const m = HLL_REGISTERS;
  const q = HLL_TAIL_BITS;
  // One scratch array for every estimate (a query makes thousands; nothing here is asynchronous).
  const c = sketch.addCounts(scratch.fill(0));
  let z = m * tau(1 - c[q + 1]! / m);
  for (let k = q; k >= 1; k--) z = 0.5 * (z + c[k]!);
  z += m * sigma(c[0]! / m);
  return Math.round(m ** 2 / (2 * Math.LN2 * z));
}

function sigma(x0: number): number {
  if (x0 === 1) return Number.POSITIVE_INFINITY;
  let x = x0;
  let y = 1;
  let z = x;
  for (;;) {
    x *= x;
    const before = z;
    z += x * y;
    y += y;
    if (z === before) return z;
  }
}

function tau(x0: number): number {
  if (x0 === 0 || x0 === 1) return 0;
  let x = x0;
  let y = 1;
  let z = 1 - x;
  for (;;) {
    x = Math.sqrt(x);
    const before = z;
    y *= 0.5;
    z -= (1 - x) ** 2 * y;
    if (z === before) return z / 3;
  }
}
