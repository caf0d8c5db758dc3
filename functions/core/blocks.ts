/**
 * The packed form of batch-view rows: a block item's `rows` attribute (layout in core/keys.ts). The
 * batch writes blocks (batch/load.ts) and the query reads them (api/read-view.ts), so the one
 * encoder/decoder pair lives here.
 *
 * `rows` is the JSON text of an array of rows, each
 * `[bucket - block start (ms), [dims...], ...state column values in stateColumns(view) order]`.
 * A value is its decimal text or a sketch's canonical text (both JSON strings, so nothing passes
 * through a double), or null for an empty min/max/sketch.
 */
import { Buffer } from 'node:buffer';
import { BLOCK_MAX_BYTES, blockStart, dimsKey, pad13 } from './keys.ts';
import { stateColumns } from './metrics.ts';
import type { Grain } from './time.ts';
import type { View } from './views.ts';

/** One row of a batch view: its bucket, dimension values in view order, and state columns as text. */
export interface BlockRow {
  readonly bucket: number;
  readonly dims: readonly (string | null)[];
  readonly values: Readonly<Record<string, string | null>>;
}

/** One chunk of a block as it is stored: its block start, chunk number, row count and packed text. */
export interface EncodedBlock {
  readonly block: number;
  readonly chunk: number;
  readonly n: number;
  readonly rows: string;
}

/** A view's state column names in stateColumns order, computed once per view (pure: the view's declaration). */
const columnNames = new WeakMap<View, readonly string[]>();
function columnsOf(view: View): readonly string[] {
  let c = columnNames.get(view);
  if (!c) {
    c = stateColumns(view).map((x) => x.column);
    columnNames.set(view, c);
  }
  return c;
}

const rowOrder = (r: BlockRow) => `${pad13(r.bucket)}#${dimsKey(r.dims)}`;

/**
 * The blocks of rows at `grain` (rows of ONE pk): grouped by block start, ordered by (bucket, dims)
 * inside, each cut into chunks of at most `maxBytes` bytes of text (a lone row larger than that
 * still gets a chunk of its own). Blocks come out in order of start, then chunk.
 */
export function encodeBlocks(view: View, grain: Grain, rows: readonly BlockRow[], maxBytes = BLOCK_MAX_BYTES): EncodedBlock[] {
  const columns = columnsOf(view);
  // The batch encodes every row it writes: each row's dims are made JSON once (the sort key's part and the row's
  // text), and rows are ordered by (bucket, that JSON), the order of rowOrder's text while every bucket is a
  // whole number with 13 digits (pad13: 1970 to 2286); else by that text.
  const byBlock = new Map<number, Entry[]>();
  let numeric = true;
  for (const row of rows) {
    const start = blockStart(row.bucket, grain);
    const list = byBlock.get(start);
    const entry: Entry = { bucket: row.bucket, dims: dimsKey(row.dims), key: '', row };
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
    let parts: string[] = [];
    // The brackets of the array; each row then adds its text and a comma.
    let bytes = 2;
    let chunk = 0;
    const flush = () => {
      out.push({ block: start, chunk: chunk++, n: parts.length, rows: `[${parts.join(',')}]` });
      parts = [];
      bytes = 2;
    };
    for (const { row, dims } of entries) {
      // JSON.stringify of [offset, dims, ...values], piece by piece.
      let text = `[${JSON.stringify(row.bucket - start)},${dims}`;
      for (const c of columns) text += `,${JSON.stringify(row.values[c] ?? null)}`;
      text += ']';
      const size = Buffer.byteLength(text, 'utf8');
      if (parts.length > 0 && bytes + 1 + size > maxBytes) flush();
      bytes += (parts.length > 0 ? 1 : 0) + size;
      parts.push(text);
    }
    if (parts.length > 0) flush();
  }
  return out;
}

interface Entry {
  readonly bucket: number;
  /** The row's dims as JSON (dimsKey). */
  readonly dims: string;
  /** rowOrder's text, only when some bucket is outside what `byBucketDims` orders the same. */
  key: string;
  readonly row: BlockRow;
}

const byBucketDims = (a: Entry, b: Entry) => a.bucket - b.bucket || (a.dims < b.dims ? -1 : a.dims > b.dims ? 1 : 0);

/** The rows of one stored chunk (`block`: its start ms, `rows`: its text), values as the writer gave them. */
export function decodeBlock(view: View, block: number, rows: string): BlockRow[] {
  const columns = columnsOf(view);
  const width = 2 + columns.length;
  const parsed = JSON.parse(rows) as unknown;
  if (!Array.isArray(parsed)) throw new Error(`a batch block's rows must be a JSON array (block ${block})`);
  // Plain loops: a query decodes thousands of rows, and a closure per row showed in its profile.
  const out: BlockRow[] = new Array(parsed.length);
  for (let k = 0; k < parsed.length; k++) {
    const r = parsed[k] as unknown;
    if (!Array.isArray(r) || typeof r[0] !== 'number' || !Array.isArray(r[1]) || r.length !== width) {
      throw new Error(`a batch block row must be [offset, dims, ${columns.length} values] (block ${block})`);
    }
    const values: Record<string, string | null> = {};
    for (let i = 0; i < columns.length; i++) {
      const v = r[2 + i] as unknown;
      values[columns[i]!] = v === null || v === undefined ? null : typeof v === 'string' ? v : String(v);
    }
    const raw = r[1] as unknown[];
    const dims: (string | null)[] = new Array(raw.length);
    for (let i = 0; i < raw.length; i++) {
      const d = raw[i];
      dims[i] = d === null ? null : typeof d === 'string' ? d : String(d);
    }
    out[k] = { bucket: block + r[0], dims, values };
  }
  return out;
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
