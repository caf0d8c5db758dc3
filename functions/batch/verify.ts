/**
 * The completeness check before anything is published: the archive's own
 * record of what it wrote (the object manifest, one control item per shard
 * and arrival hour, see archive/layout.ts) against what the engine actually
 * read, for the arrival hours the run reads (hour(from) .. hour(C - 1)) and
 * only those: its cost follows the run's range, never all history.
 *
 * The rule: every object a manifest item of those hours lists must be read,
 * with exactly the line count the archive recorded. Then, per (arrival hour,
 * shard), the lines read from the listed objects equal the lines recorded (the
 * sum of the item's `<first>-<last>=<lines>` entries), which is how a failure
 * is reported. A bare count per (hour, shard) would not do: objects no
 * manifest lists are fine (a crashed archive attempt can leave one behind,
 * with other boundaries than the retry's; its records are copies the dedup
 * absorbs), so an (hour, shard) may read more lines than recorded, and such
 * extra lines could hide a missing listed object whose records are not in them.
 *
 * A listed object the engine did not read (deleted, a partition Athena could
 * not see, a lost download) or read with another line count fails the run:
 * publishing would leave a hole that no later speed delta fills (the speed
 * layer only serves windows >= C), and an increment missing a copy inside its
 * look-back would count a later copy of that id again.
 */
import { type DynamoDBDocumentClient, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { OBJECT_MANIFEST_PK, objectManifestEntries } from '../archive/layout.ts';
import { pad13 } from '../core/keys.ts';
import { iso } from '../core/time.ts';
import { type CompactedHour, compactObjectKey } from './compact.ts';
import { type CompactedRead, type ObjectRead, readHours } from './engine.ts';

export interface ExpectedObject {
  readonly key: string;
  readonly lines: number;
  /** Start of the object's arrival hour, epoch ms. */
  readonly hour: number;
  readonly shard: string;
}

/**
 * Every object the archive recorded for the arrival hours a run reads: from
 * the hour of `from` (null or absent: the first there is) to the last hour
 * starting before `cutoff`. One Query over one manifest item per (hour, shard) in range.
 */
export async function readArchiveManifest(
  doc: DynamoDBDocumentClient,
  table: string,
  cutoff: number,
  from: number | null = null,
): Promise<ExpectedObject[]> {
  const { first } = readHours(cutoff, from);
  const out: ExpectedObject[] = [];
  let start: Record<string, unknown> | undefined;
  do {
    const page = await doc.send(
      new QueryCommand({
        TableName: table,
        // sk = <hour start, 13 digits>#<shard>: below pad13(cutoff) are exactly the hours starting before it,
        // from pad13(first) on the hours from the first one read (pad13(cutoff) itself is never a key).
        KeyConditionExpression: first === null ? 'pk = :pk AND sk < :cut' : 'pk = :pk AND sk BETWEEN :first AND :cut',
        ExpressionAttributeValues: { ':pk': OBJECT_MANIFEST_PK, ':cut': pad13(cutoff), ...(first !== null && { ':first': pad13(first) }) },
        ConsistentRead: true,
        ExclusiveStartKey: start,
      }),
    );
    for (const item of page.Items ?? []) {
      const objects = item.objects instanceof Set ? [...(item.objects as Set<string>)] : [];
      const hour = Number(item.hour);
      const shard = String(item.shard);
      out.push(...objectManifestEntries(hour, shard, objects).map((o) => ({ ...o, hour, shard })));
    }
    start = page.LastEvaluatedKey;
  } while (start);
  return out;
}

/** One (arrival hour, shard) whose listed objects were not all read whole. */
export interface ShortHour {
  readonly hour: number;
  readonly shard: string;
  /** Lines the manifest item records (the sum of its entries). */
  readonly recorded: number;
  /** Lines read from the objects it lists. */
  readonly read: number;
}

export interface Completeness {
  readonly complete: boolean;
  /** Manifest objects the engine did not read. */
  readonly missing: readonly ExpectedObject[];
  /** Manifest objects read with another line count. */
  readonly mismatched: readonly { readonly key: string; readonly expected: number; readonly read: number }[];
  /** The (hour, shard) pairs of the missing and mismatched objects, with their counts. */
  readonly short: readonly ShortHour[];
  /** Objects the engine read. */
  readonly objects: number;
  /** Records read with arrival < cutoff (copies included). */
  readonly records: number;
  /** Objects read that no manifest lists. */
  readonly extraObjects: number;
  /** Raw objects the run read (the hours of its range, listed or not). */
  readonly rawObjectsRead: number;
  /** Lines of those objects (all of them, copies and arrivals past the cutoff in its hour included). */
  readonly rawRowsRead: number;
  /** Bytes of those objects as stored (gzip); for Parquet, the column chunks read. */
  readonly rawBytesRead: number;
  /** Compacted hours read as Parquet. */
  readonly compactedHours: number;
  /** Compacted (hour, shard) pairs whose counts disagree, or compacted hours whose Parquet object was not read. */
  readonly compactedMismatches: readonly CompactedMismatch[];
}

/** A compacted hour that does not add up: `manifest` (item vs archive manifest) or `parquet` (item vs lines read). */
export interface CompactedMismatch {
  readonly hour: number;
  /** Absent: the hour's Parquet object was not read at all. */
  readonly shard?: string;
  readonly what: 'manifest' | 'parquet' | 'missing';
  readonly expected: number;
  readonly read: number;
}

/** The compacted hours of a run's range: their items and what the engine read of their Parquet objects. */
export interface CompactedInput {
  readonly items: ReadonlyMap<number, CompactedHour>;
  readonly reads: ReadonlyMap<number, CompactedRead>;
}

/**
 * Compacted hours (compact.ts) are checked by counts, never object by
 * object: per (hour, shard), the lines the archive's manifest records now
 * must equal those it recorded when the hour was compacted (the compaction
 * checked every listed object then), and the lines read from the Parquet
 * object must equal those the compaction wrote.
 */
export function checkCompleteness(
  expected: readonly ExpectedObject[],
  reads: ReadonlyMap<string, ObjectRead>,
  compacted: CompactedInput = { items: new Map(), reads: new Map() },
): Completeness {
  const missing: ExpectedObject[] = [];
  const mismatched: { key: string; expected: number; read: number }[] = [];
  const listed = new Set<string>();
  const groups = new Map<string, { hour: number; shard: string; recorded: number; read: number; short: boolean }>();
  const compactedMismatches: CompactedMismatch[] = [];
  const recordedNow = new Map<number, Map<string, number>>();
  for (const e of expected) {
    if (compacted.items.has(e.hour)) {
      const shards = recordedNow.get(e.hour) ?? new Map<string, number>();
      recordedNow.set(e.hour, shards);
      shards.set(e.shard, (shards.get(e.shard) ?? 0) + e.lines);
      continue;
    }
    listed.add(e.key);
    const id = `${e.hour}#${e.shard}`;
    const g = groups.get(id) ?? { hour: e.hour, shard: e.shard, recorded: 0, read: 0, short: false };
    groups.set(id, g);
    g.recorded += e.lines;
    const r = reads.get(e.key);
    g.read += r?.lines ?? 0;
    if (!r) missing.push(e);
    else if (r.lines !== e.lines) mismatched.push({ key: e.key, expected: e.lines, read: r.lines });
    if (r?.lines !== e.lines) g.short = true;
  }
  let records = 0;
  let extraObjects = 0;
  let rawRowsRead = 0;
  let rawBytesRead = 0;
  for (const [key, r] of reads) {
    records += r.covered;
    rawRowsRead += r.lines;
    rawBytesRead += r.bytes;
    if (!listed.has(key)) extraObjects++;
  }
  for (const [hour, item] of compacted.items) {
    const now = recordedNow.get(hour) ?? new Map<string, number>();
    for (const shard of new Set([...now.keys(), ...Object.keys(item.shards)])) {
      const atCompaction = item.shards[shard]?.recorded ?? 0;
      if ((now.get(shard) ?? 0) !== atCompaction)
        compactedMismatches.push({ hour, shard, what: 'manifest', expected: now.get(shard) ?? 0, read: atCompaction });
    }
    const read = compacted.reads.get(hour);
    if (!read) {
      const lines = Object.values(item.shards).reduce((n, s) => n + s.lines, 0);
      compactedMismatches.push({ hour, what: 'missing', expected: lines, read: 0 });
      continue;
    }
    for (const shard of new Set([...read.shards.keys(), ...Object.keys(item.shards)])) {
      const wrote = item.shards[shard]?.lines ?? 0;
      const got = read.shards.get(shard)?.lines ?? 0;
      if (wrote !== got) compactedMismatches.push({ hour, shard, what: 'parquet', expected: wrote, read: got });
    }
  }
  let compactedHours = 0;
  for (const [hour, r] of compacted.reads) {
    if (!compacted.items.has(hour)) continue;
    compactedHours++;
    for (const s of r.shards.values()) {
      records += s.covered;
      rawRowsRead += s.lines;
    }
    rawBytesRead += r.bytes;
  }
  const short = [...groups.values()].filter((g) => g.short).map(({ hour, shard, recorded, read }) => ({ hour, shard, recorded, read }));
  return {
    complete: missing.length === 0 && mismatched.length === 0 && compactedMismatches.length === 0,
    missing,
    mismatched,
    short,
    objects: reads.size,
    records,
    extraObjects,
    rawObjectsRead: reads.size + compactedHours,
    rawRowsRead,
    rawBytesRead,
    compactedHours,
    compactedMismatches,
  };
}

export class IncompleteArchiveError extends Error {
  constructor(readonly result: Completeness) {
    const parts: string[] = [];
    if (result.missing.length > 0) {
      const m = result.missing[0]!;
      parts.push(`${result.missing.length} raw object(s) missing, e.g. ${m.key} (${m.lines} records)`);
    }
    if (result.mismatched.length > 0) {
      const m = result.mismatched[0]!;
      parts.push(
        `${result.mismatched.length} raw object(s) with the wrong number of records, e.g. ${m.key} (${m.read} read, ${m.expected} written)`,
      );
    }
    if (result.short.length > 0) {
      const s = result.short[0]!;
      parts.push(
        `${result.short.length} (arrival hour, shard) pair(s) not read whole, e.g. ${iso(s.hour).slice(0, 13)}h ${s.shard} ` +
          `(${s.read} of ${s.recorded} recorded records read from its listed objects)`,
      );
    }
    if (result.compactedMismatches.length > 0) {
      const m = result.compactedMismatches[0]!;
      const at = `${iso(m.hour).slice(0, 13)}h${m.shard === undefined ? '' : ` ${m.shard}`}`;
      const why =
        m.what === 'missing'
          ? `its Parquet object ${compactObjectKey(m.hour)} was not found (${m.expected} records compacted)`
          : m.what === 'manifest'
            ? `the archive manifest records ${m.expected} records, the compaction recorded ${m.read}`
            : `${m.read} records read from its Parquet object, ${m.expected} compacted`;
      parts.push(`${result.compactedMismatches.length} compacted (arrival hour, shard) pair(s) that do not add up, e.g. ${at}: ${why}`);
    }
    super(`the archive is incomplete: ${parts.join('; ')}; nothing was published`);
    this.name = 'IncompleteArchiveError';
  }
}
