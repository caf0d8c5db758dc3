/**
 * The packed form of batch-view rows: a block item's `rows` attribute (layout in core/keys.ts). The
 * batch writes blocks (batch/load.ts) and the query reads them (api/read-view.ts), so the one
 * encoder/decoder pair lives here.
 *
 * `rows` is the JSON text of an array of rows, each
 * `[bucket - block start (ms), [dims...], ...state column values in stateColumns(view) order]`.
 * A value is its decimal text or a sketch's canonical text as a JSON string (so nothing passes
 * through a double), or null for an empty min/max/sketch; a whole number of at most 15 digits in
 * canonical form (WHOLE) is a JSON number instead, which JSON.parse reads exactly and `String` gives
 * back as the same text: most values are counts, and their quotes (escaped again inside a request's
 * JSON) were a fifth of the bytes a rebuild wrote, billed in write units.
 *
 * Two forms (BlockForm). `inline` (layouts blocks-1 and blocks-2): every value in `rows`, as above.
 * `apart` (blocks-3): a sketch column's value in `rows` is the sketch's estimate (hll.ts `estimate`, a
 * JSON number; null for the empty sketch), and the sketch texts are in attributes of their own, one per
 * bucket of the block: `h<bucket - block start>` (sketchAttribute) holds the JSON array of the sketch
 * texts of that bucket's rows of the item, in row order, each row's in sketch column order (null for an
 * empty one); a bucket whose sketches are all empty has none. Sketch texts are most of a block's bytes
 * (85 % of a day block of page_views), and most queries need only the estimates of most rows: a reader
 * projects `rows` and the sketch attributes of the buckets it may have to merge (api/read-view.ts). A
 * JSON number in a sketch column tells the form, so a reader reads both. The estimate is stored as `estimate`
 * computes it when the block is written: changing that formula changes the layout (batch/load.ts STORAGE_LAYOUT).
 */
import { Buffer } from 'node:buffer';
import { estimate, parseSketch } from './hll.ts';
import { BLOCK_MAX_BYTES, blockStart, dimsKey, pad13, sharedDimsKey } from './keys.ts';
import { stateColumns } from './metrics.ts';
import type { Grain } from './time.ts';
import type { View } from './views.ts';

/** One row of a batch view: its bucket, dimension values in view order, and state columns as text. */
export interface BlockRow {
  readonly bucket: number;
  readonly dims: readonly (string | null)[];
  readonly values: Readonly<Record<string, string | null>>;
  /**
   * Sketch columns read as their estimate alone (decodeBlock with `estimates`: the form `apart` read without the
   * bucket's sketch attribute): column -> estimate, the column's value then null. Absent on every row the batch reads.
   */
  readonly estimates?: Readonly<Record<string, number>>;
}

/** How a block holds its sketches: inside `rows` (layouts blocks-1, blocks-2), or apart, per bucket (blocks-3). */
export type BlockForm = 'inline' | 'apart';

/** One chunk of a block as it is stored: its block start, chunk number, row count and packed text. */
export interface EncodedBlock {
  readonly block: number;
  readonly chunk: number;
  readonly n: number;
  readonly rows: string;
  /** Form `apart`: sketch attribute name (sketchAttribute) -> its JSON text; absent when no row has a sketch. */
  readonly sketches?: Readonly<Record<string, string>>;
}

/** The attribute of a block item (form `apart`) holding the sketches of the rows of the bucket `offset` ms past its start. */
export const sketchAttribute = (offset: number): string => `h${offset}`;

/** A view's state column names in stateColumns order, and which of them are sketches, computed once per view. */
interface Columns {
  readonly names: readonly string[];
  /** Per column: its position among the sketch columns, -1 for the others. */
  readonly sketch: readonly number[];
  readonly sketches: number;
}
const columnsByView = new WeakMap<View, Columns>();
function columnsOf(view: View): Columns {
  let c = columnsByView.get(view);
  if (!c) {
    const all = stateColumns(view);
    let k = 0;
    const sketch = all.map((x) => (x.component === 'hll' ? k++ : -1));
    c = { names: all.map((x) => x.column), sketch, sketches: k };
    columnsByView.set(view, c);
  }
  return c;
}

/** Whether a view has sketch columns (a `distinct` metric): only those have anything to hold apart. */
export const hasSketches = (view: View): boolean => columnsOf(view).sketches > 0;

const rowOrder = (r: BlockRow) => `${pad13(r.bucket)}#${dimsKey(r.dims)}`;

/**
 * The blocks of rows at `grain` (rows of ONE pk): grouped by block start, ordered by (bucket, dims)
 * inside, each cut into chunks of at most `maxBytes` bytes of text, sketch attributes included (a lone
 * row larger than that still gets a chunk of its own). Blocks come out in order of start, then chunk.
 */
export function encodeBlocks(
  view: View,
  grain: Grain,
  rows: readonly BlockRow[],
  maxBytes = BLOCK_MAX_BYTES,
  form: BlockForm = 'inline',
): EncodedBlock[] {
  const cols = columnsOf(view);
  const apart = form === 'apart' && cols.sketches > 0;
  // Rows are ordered by (bucket, their dims' JSON: sharedDimsKey, once per dims array), the order of rowOrder's text
  // while every bucket is a whole number with 13 digits (pad13: 1970 to 2286); else by that text.
  const byBlock = new Map<number, Entry[]>();
  let numeric = true;
  for (const row of rows) {
    const start = blockStart(row.bucket, grain);
    const list = byBlock.get(start);
    const entry: Entry = { bucket: row.bucket, dims: sharedDimsKey(row.dims), key: '', row };
    if (!(Number.isInteger(row.bucket) && row.bucket >= 0 && row.bucket < 1e13)) numeric = false;
    if (list) list.push(entry);
    else byBlock.set(start, [entry]);
  }
  const out: EncodedBlock[] = [];
  for (const start of [...byBlock.keys()].sort((a, b) => a - b)) {
    const entries = byBlock.get(start)!;
    if (numeric) entries.sort(byBucketDims);
    else {
      for (const e of entries) e.key = rowOrder(e.row);
      entries.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    }
    const whole = wholeChunk(start, entries, cols, apart, maxBytes);
    if (whole) {
      out.push(whole);
      continue;
    }
    // Over the limit: cut row by row into chunks, each row's text made alone, counted as `wholeChunk` counts.
    let parts: string[] = [];
    // Form `apart`: per bucket offset, its rows' sketch texts in row order, and whether any is not empty.
    let apartTexts = new Map<number, { texts: (string | null)[]; any: boolean }>();
    // The brackets of the array; each row then adds its text and a comma.
    let bytes = 2;
    let chunk = 0;
    const flush = () => {
      out.push({ block: start, chunk: chunk++, n: parts.length, rows: `[${parts.join(',')}]`, ...chunkSketches(apartTexts) });
      parts = [];
      apartTexts = new Map();
      bytes = 2;
    };
    for (const { row } of entries) {
      const offset = row.bucket - start;
      const mine: (string | null)[] | undefined = apart ? [] : undefined;
      const text = JSON.stringify(rowArray(row, offset, cols, mine));
      let size = Buffer.byteLength(text, 'utf8') + textsBytes(mine);
      // A bucket's first row of the chunk also adds its attribute: name, brackets and some slack.
      if (mine && !apartTexts.has(offset)) size += sketchAttribute(offset).length + 4;
      if (parts.length > 0 && bytes + 1 + size > maxBytes) flush();
      bytes += (parts.length > 0 ? 1 : 0) + size;
      parts.push(text);
      if (mine) {
        const any = mine.some((t) => t !== null);
        const s = apartTexts.get(offset);
        if (s) {
          s.texts.push(...mine);
          s.any ||= any;
        } else apartTexts.set(offset, { texts: mine, any });
      }
    }
    if (parts.length > 0) flush();
  }
  return out;
}

/**
 * A row as its block text holds it: `[offset, dims, ...values]`, a whole number bare (WHOLE; never a sketch's text:
 * a number in a sketch column is an estimate). With `texts` (form `apart`), a sketch column holds the sketch's
 * estimate and its canonical text (null when empty) is pushed onto `texts`.
 */
function rowArray(row: BlockRow, offset: number, c: Columns, texts: (string | null)[] | undefined): unknown[] {
  const { names: columns, sketch } = c;
  const out: unknown[] = new Array(2 + columns.length);
  out[0] = offset;
  out[1] = row.dims;
  for (let i = 0; i < columns.length; i++) {
    const value = row.values[columns[i]!] ?? null;
    if (sketch[i]! < 0) out[2 + i] = value !== null && WHOLE.test(value) ? Number(value) : value;
    else if (!texts) out[2 + i] = value;
    else {
      const parsed = value === null ? null : parseSketch(value);
      out[2 + i] = parsed === null ? null : estimate(parsed);
      texts.push(parsed === null ? null : parsed.toText());
    }
  }
  return out;
}

/** What sketch texts add to a chunk: each one's JSON (a canonical text is of the alphabet alone, hll.ts) and a comma. */
function textsBytes(texts: readonly (string | null)[] | undefined): number {
  let n = 0;
  for (const t of texts ?? []) n += (t === null ? 4 : t.length + 2) + 1;
  return n;
}

/** The sketch attributes of a chunk (form `apart`): a bucket's texts as a JSON array, for the buckets with a sketch. */
function chunkSketches(apartTexts: ReadonlyMap<number, { texts: readonly (string | null)[]; any: boolean }>): {
  sketches?: Record<string, string>;
} {
  let sketches: Record<string, string> | undefined;
  for (const [offset, s] of apartTexts) {
    if (!s.any) continue;
    sketches ??= {};
    sketches[sketchAttribute(offset)] = JSON.stringify(s.texts);
  }
  return sketches ? { sketches } : {};
}

/**
 * A block as one chunk, or undefined when it does not fit in `maxBytes` (then encodeBlocks cuts it row by row, to the
 * same text). Most blocks fit (an hour of a minute view's rows is ~25 KB): the text is then one JSON.stringify of the
 * block's rows, which costs a rebuild far less than one per row. Counts the bytes as the row-by-row cut does, so a
 * block fits here exactly when that cut would leave it whole.
 */
function wholeChunk(start: number, entries: readonly Entry[], c: Columns, apart: boolean, maxBytes: number): EncodedBlock | undefined {
  const rows: unknown[][] = new Array(entries.length);
  let sketchBytes = 0;
  const apartTexts = new Map<number, { texts: (string | null)[]; any: boolean }>();
  let bucket: { texts: (string | null)[]; any: boolean } | undefined;
  let bucketOffset = Number.NaN;
  const texts: (string | null)[] | undefined = apart ? [] : undefined;
  for (let k = 0; k < entries.length; k++) {
    const row = entries[k]!.row;
    const offset = row.bucket - start;
    if (texts && (offset !== bucketOffset || !bucket)) {
      // A bucket's rows are next to each other (ordered by bucket): its texts are pushed onto one list.
      bucketOffset = offset;
      bucket = { texts: [], any: false };
      apartTexts.set(offset, bucket);
      sketchBytes += sketchAttribute(offset).length + 4;
    }
    const mine = bucket?.texts;
    const before = mine?.length ?? 0;
    rows[k] = rowArray(row, offset, c, mine);
    if (mine && bucket) {
      for (let i = before; i < mine.length; i++) {
        const t = mine[i]!;
        bucket.any ||= t !== null;
        sketchBytes += (t === null ? 4 : t.length + 2) + 1;
      }
    }
  }
  const text = JSON.stringify(rows);
  if (Buffer.byteLength(text, 'utf8') + sketchBytes > maxBytes) return undefined;
  return { block: start, chunk: 0, n: rows.length, rows: text, ...chunkSketches(apartTexts) };
}

/** A whole number in canonical form (no sign on 0, no leading zero) of at most 15 digits: a JSON number reads it exactly. */
const WHOLE = /^(?:0|-?[1-9]\d{0,14})$/;

interface Entry {
  readonly bucket: number;
  /** The row's dims as JSON (dimsKey). */
  readonly dims: string;
  /** rowOrder's text, only when some bucket is outside what `byBucketDims` orders the same. */
  key: string;
  readonly row: BlockRow;
}

const byBucketDims = (a: Entry, b: Entry) => a.bucket - b.bucket || (a.dims < b.dims ? -1 : a.dims > b.dims ? 1 : 0);

export interface DecodeOptions {
  /** A sketch attribute of the item (form `apart`; sketchAttribute), or undefined when it was not read. */
  readonly sketches?: (attribute: string) => string | undefined;
  /**
   * Rows whose sketch attribute was not read come back with their sketch columns' estimates (BlockRow.estimates);
   * without this, such a row is an error (the batch must never write back a row it read without its sketches).
   */
  readonly estimates?: boolean;
}

/** Form `apart`: one bucket's sketch texts in an item (undefined: not looked up yet; null: not read) and its rows so far. */
interface Place {
  texts: unknown[] | null | undefined;
  seen: number;
}

/** The rows of one stored chunk (`block`: its start ms, `rows`: its text), values as the writer gave them. */
export function decodeBlock(view: View, block: number, rows: string, opts: DecodeOptions = {}): BlockRow[] {
  const { names: columns, sketch, sketches: perRow } = columnsOf(view);
  const width = 2 + columns.length;
  const parsed = JSON.parse(rows) as unknown;
  if (!Array.isArray(parsed)) throw new Error(`a batch block's rows must be a JSON array (block ${block})`);
  // Every row of a bucket has its place in the bucket's sketch attribute (form `apart`), rows of empty sketches too.
  const places = perRow > 0 ? new Map<number, Place>() : undefined;
  // A bucket's rows are next to each other (ordered by bucket): one lookup per bucket, not per row.
  let place: Place | undefined;
  let placeOffset = Number.NaN;
  // Plain loops: a query decodes thousands of rows, and a closure per row showed in its profile.
  const out: BlockRow[] = new Array(parsed.length);
  for (let k = 0; k < parsed.length; k++) {
    const r = parsed[k] as unknown;
    if (!Array.isArray(r) || typeof r[0] !== 'number' || !Array.isArray(r[1]) || r.length !== width) {
      throw new Error(`a batch block row must be [offset, dims, ${columns.length} values] (block ${block})`);
    }
    const offset = r[0];
    if (places && offset !== placeOffset) {
      placeOffset = offset;
      place = places.get(offset);
      if (!place) {
        place = { texts: undefined, seen: 0 };
        places.set(offset, place);
      }
    }
    const values: Record<string, string | null> = {};
    let estimates: Record<string, number> | undefined;
    for (let i = 0; i < columns.length; i++) {
      const v = r[2 + i] as unknown;
      if (typeof v === 'number' && sketch[i]! >= 0) {
        // Form `apart`: the estimate here, the text in the bucket's attribute.
        if (place!.texts === undefined) place!.texts = sketchTexts(opts.sketches?.(sketchAttribute(offset)), block, offset);
        const texts = place!.texts;
        if (texts === null) {
          if (!opts.estimates) throw new Error(`a batch block row was read without its sketches (block ${block}, offset ${offset})`);
          values[columns[i]!] = null;
          estimates ??= {};
          estimates[columns[i]!] = v;
          continue;
        }
        const t = texts[place!.seen * perRow + sketch[i]!];
        if (typeof t !== 'string') throw new Error(`a batch block's sketches miss a row's (block ${block}, offset ${offset})`);
        values[columns[i]!] = t;
        continue;
      }
      values[columns[i]!] = v === null || v === undefined ? null : typeof v === 'string' ? v : String(v);
    }
    if (place) place.seen++;
    // The parsed array itself when every value is text or null (as the writer writes them): one array less per row.
    const raw = r[1] as unknown[];
    let dims = raw as (string | null)[];
    for (let i = 0; i < raw.length; i++) {
      const d = raw[i];
      if (d === null || typeof d === 'string') continue;
      dims = raw.map((x) => (x === null ? null : typeof x === 'string' ? x : String(x)));
      break;
    }
    out[k] = estimates ? { bucket: block + offset, dims, values, estimates } : { bucket: block + offset, dims, values };
  }
  return out;
}

/** A sketch attribute's texts (JSON array), or null when it was not read. */
function sketchTexts(text: string | undefined, block: number, offset: number): unknown[] | null {
  if (text === undefined) return null;
  const parsed = JSON.parse(text) as unknown;
  if (!Array.isArray(parsed)) throw new Error(`a batch block's sketch attribute must be a JSON array (block ${block}, offset ${offset})`);
  return parsed;
}

/**
 * Of the items of several keys of one partition (newest writer first), those of each block's newest writer: the block
 * items a reader of copy-on-write blocks keeps (a block's chunks all come from the writer that wrote it).
 */
export function newestBlocks<T extends Record<string, unknown>>(layers: readonly (readonly T[])[]): T[] {
  const seen = new Set<string>();
  const out: T[] = [];
  for (const items of layers) {
    const here = new Set<string>();
    for (const item of items) {
      const block = blockOf(item);
      if (seen.has(block)) continue;
      here.add(block);
      out.push(item);
    }
    for (const b of here) seen.add(b);
  }
  return out;
}

/** A block item's block start as text: an SDK AttributeValue `{ N }`, or a document client's number (or NumberValue). */
function blockOf(item: Record<string, unknown>): string {
  const b = item.block;
  return typeof b === 'object' && b !== null && 'N' in b ? String((b as { N: unknown }).N) : String(b);
}
