/**
 * Where the archive puts things, shared by the archive (writer) and the batch
 * layer (reader):
 *
 * - raw objects `raw/dt=YYYY-MM-DD/hr=HH/<shardId>/<firstSeq>-<lastSeq>.json.gz`
 *   (docs/architecture.md): one per (archive batch, arrival hour), sequence
 *   numbers padded to 64 digits so keys sort in stream order; the first or last
 *   record of an object may be a user record of a KPL aggregate, whose position
 *   carries its sub-sequence number (`recordPosition`, functions/core/record.ts:
 *   `<64 digits>.<6 digits>`), and the order of keys is still stream order;
 * - the object manifest, control items `archive / <hour start ms, 13 digits>#<shardId>`
 *   with a string set `objects` of `<firstSeq>-<lastSeq>=<lines>`: every object
 *   the archive wrote for that shard and hour, with its record count. The batch
 *   compares it with what its engine actually read, so a missing or truncated
 *   object fails the run instead of publishing a hole;
 * - the checkpoint, control item `checkpoint / <shardId>`: `{ arrival, seq,
 *   records, updatedAt }`, "everything up to `seq` is archived".
 */
import { pad13 } from '../core/keys.ts';
import { POSITION_PATTERN } from '../core/record.ts';
import { arrivalPartition } from '../core/sql.ts';
import { RAW_PREFIX } from '../resources.ts';

export const HOUR_MS = 3_600_000;

/** Control-table partition keys of the archive's items. */
export const CHECKPOINT_PK = 'checkpoint';
export const OBJECT_MANIFEST_PK = 'archive';
/**
 * A backfill's control item, `backfill / <pseudo-shard>` { arrival, state: registering|writing|complete,
 * records, objects, buckets } (functions/archive/backfill.ts); the planner reads them: a backfill still
 * writing holds the cutoff at its arrival time, like a shard lagging there; the speed layer reads the
 * id sets of those with `buckets` (functions/speed/outside.ts, which keeps its own copy of this key).
 */
export const BACKFILL_PK = 'backfill';
/** Prefix of a backfill's pseudo-shard (its objects' shard in keys and manifest items). */
export const BACKFILL_SHARD_PREFIX = 'backfill-';

/** Key of one raw object. `firstSeq`/`lastSeq` are positions (`recordPosition`: padded sequence numbers, for plain records). */
export function rawObjectKey(shard: string, arrivalMs: number, firstSeq: string, lastSeq: string): string {
  const { dt, hr } = arrivalPartition(arrivalMs);
  return `${RAW_PREFIX}dt=${dt}/hr=${hr}/${shard}/${firstSeq}-${lastSeq}.json.gz`;
}

const KEY_RE = new RegExp(
  `^${RAW_PREFIX}dt=(\\d{4})-(\\d{2})-(\\d{2})/hr=(\\d{2})/([^/]+)/(${POSITION_PATTERN})-(${POSITION_PATTERN})\\.json\\.gz$`,
);

export interface RawObjectName {
  readonly key: string;
  /** Start of the arrival hour, epoch ms. */
  readonly hour: number;
  readonly shard: string;
  readonly firstSeq: string;
  readonly lastSeq: string;
}

/** Parses a raw object key; undefined for anything else under the prefix. */
export function parseRawObjectKey(key: string): RawObjectName | undefined {
  const m = KEY_RE.exec(key);
  if (!m) return undefined;
  const hour = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]));
  return { key, hour, shard: m[5]!, firstSeq: m[6]!, lastSeq: m[7]! };
}

/** Sort key of the manifest item of one shard and arrival hour. */
export function objectManifestSk(hourStartMs: number, shard: string): string {
  return `${pad13(hourStartMs)}#${shard}`;
}

/** One manifest entry: `<firstSeq>-<lastSeq>=<lines>` (positions, as in the object's key). */
export function objectManifestEntry(firstSeq: string, lastSeq: string, lines: number): string {
  return `${firstSeq}-${lastSeq}=${lines}`;
}

const MANIFEST_ENTRY_RE = /^(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)=(\d+)$/;

/** The object keys and line counts a manifest item lists. */
export function objectManifestEntries(hourStartMs: number, shard: string, entries: Iterable<string>): { key: string; lines: number }[] {
  const out: { key: string; lines: number }[] = [];
  for (const e of entries) {
    const m = MANIFEST_ENTRY_RE.exec(e);
    if (!m) throw new Error(`malformed archive manifest entry "${e}" (${objectManifestSk(hourStartMs, shard)})`);
    out.push({ key: rawObjectKey(shard, hourStartMs, m[1]!, m[2]!), lines: Number(m[3]) });
  }
  return out;
}

/** A padded sequence number as Kinesis wants it back (no leading zeros). */
export function kinesisSeq(padded: string): string {
  return padded.replace(/^0+(?=\d)/, '');
}
