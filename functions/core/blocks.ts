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

const rowOrder = (r: BlockRow) => `${pad13(r.bucket)}#${dimsKey(r.dims)}`;

/**
 * The blocks of rows at `grain` (rows of ONE pk): grouped by block start, ordered by (bucket, dims)
 * inside, each cut into chunks of at most `maxBytes` bytes of text (a lone row larger than that
 * still gets a chunk of its own). Blocks come out in order of start, then chunk.
 */
export function encodeBlocks(view: View, grain: Grain, rows: readonly BlockRow[], maxBytes = BLOCK_MAX_BYTES): EncodedBlock[] {
  const columns = stateColumns(view).map((c) => c.column);
  const byBlock = new Map<number, { key: string; row: BlockRow }[]>();
  for (const row of rows) {
    const start = blockStart(row.bucket, grain);
    const list = byBlock.get(start);
    const entry = { key: rowOrder(row), row };
    if (list) list.push(entry);
    else byBlock.set(start, [entry]);
  }
  const out: EncodedBlock[] = [];
  for (const start of [...byBlock.keys()].sort((a, b) => a - b)) {
    const entries = byBlock.get(start)!.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    let parts: string[] = [];
    // The brackets of the array; each row then adds its text and a comma.
    let bytes = 2;
    let chunk = 0;
    const flush = () => {
      out.push({ block: start, chunk: chunk++, n: parts.length, rows: `[${parts.join(',')}]` });
      parts = [];
      bytes = 2;
    };
    for (const { row } of entries) {
      const text = JSON.stringify([row.bucket - start, row.dims, ...columns.map((c) => row.values[c] ?? null)]);
      const size = Buffer.byteLength(text, 'utf8');
      if (parts.length > 0 && bytes + 1 + size > maxBytes) flush();
      bytes += (parts.length > 0 ? 1 : 0) + size;
      parts.push(text);
    }
    if (parts.length > 0) flush();
  }
  return out;
}

/** The rows of one stored chunk (`block`: its start ms, `rows`: its text), values as the writer gave them. */
export function decodeBlock(view: View, block: number, rows: string): BlockRow[] {
  const columns = stateColumns(view).map((c) => c.column);
  const parsed = JSON.parse(rows) as unknown;
  if (!Array.isArray(parsed)) throw new Error(`a batch block's rows must be a JSON array (block ${block})`);
  return parsed.map((r) => {
    if (!Array.isArray(r) || typeof r[0] !== 'number' || !Array.isArray(r[1]) || r.length !== 2 + columns.length) {
      throw new Error(`a batch block row must be [offset, dims, ${columns.length} values] (block ${block})`);
    }
    const values: Record<string, string | null> = {};
    columns.forEach((c, i) => {
      const v = r[2 + i] as unknown;
      values[c] = v === null || v === undefined ? null : String(v);
    });
    return { bucket: block + r[0], dims: (r[1] as unknown[]).map((d) => (d === null ? null : String(d))), values };
  });
}
