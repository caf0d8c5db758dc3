/**
 * Compaction of the raw archive into Parquet (docs/batch-layer.md
 * "Compaction"). Once a published cutoff C covers an arrival hour h whole
 * (h + 1 h <= C: the archive was complete before C, so no record of h can
 * still arrive; extra objects of crashed attempts are copies the dedup
 * absorbs), its raw lines, all shards, are written once as Parquet under
 * `compact/dt=YYYY-MM-DD/hr=HH/` in the raw bucket (DuckDB: one `part-0.parquet`;
 * Athena: the files of an UNLOAD, athena-compact.ts), holding only
 * the columns the batch reads, then the control item `compacted / <hour, 13
 * digits>` records per shard what went in. The item is written only after the
 * object is whole: a crash between leaves no item, and the next run compacts
 * the hour again onto the same key. Later runs read that hour as Parquet, and
 * its completeness check compares the item's counts with the archive's
 * manifest and the Parquet's line counts, never object by object again.
 */
import { PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { HOUR_MS, OBJECT_MANIFEST_PK } from '../archive/layout.ts';
import { pad13 } from '../core/keys.ts';
import { arrivalPartition, COMPACT_PREFIX } from '../core/sql.ts';
import { iso } from '../core/time.ts';
import type { ExpectedObject } from './verify.ts';

export { COMPACT_PREFIX };
/** Control-table partition key of the compaction items. */
export const COMPACTED_PK = 'compacted';

/** The Parquet object of one compacted arrival hour as DuckDB writes it (the Athena path writes the files its UNLOAD left). */
export function compactObjectKey(hour: number): string {
  return `${compactHourPrefix(hour)}part-0.parquet`;
}

/** The key prefix of one compacted arrival hour (`compact/dt=…/hr=…/`): every `.parquet` object under it is the hour's. */
export function compactHourPrefix(hour: number): string {
  const { dt, hr } = arrivalPartition(hour);
  return `${COMPACT_PREFIX}dt=${dt}/hr=${hr}/`;
}

// Any `.parquet` name: DuckDB writes one `part-0.parquet`, an Athena UNLOAD several files named by Athena.
const COMPACT_KEY_RE = new RegExp(`^${COMPACT_PREFIX}dt=(\\d{4})-(\\d{2})-(\\d{2})/hr=(\\d{2})/[^/]+\\.parquet$`);

/** Parses a compacted object key (any `.parquet` object directly under an hour's prefix); undefined for anything else. */
export function parseCompactKey(key: string): { key: string; hour: number } | undefined {
  const m = COMPACT_KEY_RE.exec(key);
  if (!m) return undefined;
  return { key, hour: Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4])) };
}

/** What the compaction of one hour wrote for one shard. */
export interface CompactedShard {
  /** Lines in the Parquet object with this shard (copies of crashed archive attempts included). */
  readonly lines: number;
  /** Lines the archive's manifest recorded for (hour, shard) when the hour was compacted. */
  readonly recorded: number;
  /** Raw objects of (hour, shard) compacted (listed or not). */
  readonly objects: number;
}

/** The control item `compacted / <hour>`. */
export interface CompactedHour {
  readonly hour: number;
  readonly shards: Readonly<Record<string, CompactedShard>>;
  /** Size of the Parquet object, bytes. */
  readonly bytes: number;
  readonly at: number;
}

/** What an engine reports after writing an hour's Parquet object. */
export interface CompactResult {
  readonly shards: Readonly<Record<string, CompactedShard>>;
  readonly bytes: number;
}

/** An engine that can compact one hour (verifies it against `expected`, writes the object; throws on a hole). */
export interface Compactor {
  compactHour(hour: number, expected: readonly ExpectedObject[]): Promise<CompactResult>;
}

interface ControlDeps {
  readonly doc: import('@aws-sdk/lib-dynamodb').DynamoDBDocumentClient;
  readonly table: string;
}

async function queryAll(deps: ControlDeps, input: Omit<ConstructorParameters<typeof QueryCommand>[0], 'TableName'>) {
  const out: Record<string, unknown>[] = [];
  let start: Record<string, unknown> | undefined;
  do {
    const page = await deps.doc.send(new QueryCommand({ ...input, TableName: deps.table, ConsistentRead: true, ExclusiveStartKey: start }));
    out.push(...((page.Items ?? []) as Record<string, unknown>[]));
    start = page.LastEvaluatedKey;
  } while (start);
  return out;
}

/** The compacted hours in [hour(from), cutoff) (every one before the cutoff when from is null). */
export async function readCompacted(deps: ControlDeps, cutoff: number, from: number | null = null): Promise<Map<number, CompactedHour>> {
  const first = from === null ? null : from - (((from % HOUR_MS) + HOUR_MS) % HOUR_MS);
  const items = await queryAll(deps, {
    KeyConditionExpression: first === null ? 'pk = :pk AND sk < :cut' : 'pk = :pk AND sk BETWEEN :first AND :cut',
    ExpressionAttributeValues: { ':pk': COMPACTED_PK, ':cut': pad13(cutoff), ...(first !== null && { ':first': pad13(first) }) },
  });
  const out = new Map<number, CompactedHour>();
  for (const item of items) {
    const hour = Number(item.hour);
    // An hour compacted is whole before the cutoff; an item of the cutoff's own hour cannot exist (h + 1 h <= C).
    if (hour + HOUR_MS > cutoff) continue;
    out.set(hour, { hour, shards: item.shards as Record<string, CompactedShard>, bytes: Number(item.bytes), at: Number(item.at) });
  }
  return out;
}

/**
 * The arrival hours from hour(from) (null: the first there is) that a published
 * cutoff covers whole (h + 1 h <= cutoff), that the archive wrote objects for
 * and that are not compacted yet, oldest first. Two Queries over the window
 * (manifest sort keys only, compaction items): a run's compaction looks at a
 * bounded window, never at all history.
 */
export async function hoursToCompact(deps: ControlDeps, cutoff: number, from: number | null = null): Promise<number[]> {
  const first = from === null ? null : from - (((from % HOUR_MS) + HOUR_MS) % HOUR_MS);
  const last = pad13(cutoff - HOUR_MS + 1);
  const manifest = await queryAll(deps, {
    KeyConditionExpression: first === null ? 'pk = :pk AND sk < :cut' : 'pk = :pk AND sk BETWEEN :first AND :cut',
    ExpressionAttributeValues: { ':pk': OBJECT_MANIFEST_PK, ':cut': last, ...(first !== null && { ':first': pad13(first) }) },
    ProjectionExpression: 'sk',
  });
  const done = await readCompacted(deps, cutoff, first);
  const hours = new Set<number>();
  for (const item of manifest) {
    const hour = Number(String(item.sk).slice(0, 13));
    if (hour + HOUR_MS <= cutoff && !done.has(hour)) hours.add(hour);
  }
  return [...hours].sort((a, b) => a - b);
}

/** Records an hour as compacted: call only once its Parquet object is fully written. */
export async function recordCompacted(deps: ControlDeps, hour: number, result: CompactResult, at: number): Promise<void> {
  await deps.doc.send(
    new PutCommand({
      TableName: deps.table,
      Item: { pk: COMPACTED_PK, sk: pad13(hour), hour, shards: result.shards, bytes: result.bytes, at },
    }),
  );
}

export interface CompactionOutcome {
  /** Hours compacted by this call. */
  readonly compacted: readonly number[];
  /** Hours whose compaction failed (retried by the next run), with why. */
  readonly failed: readonly { readonly hour: number; readonly error: string }[];
}

export interface CompactDeps extends ControlDeps {
  readonly compactor: Compactor;
  readonly now: () => number;
  /** Reads the manifest objects of one hour (verify.ts readArchiveManifest for [hour, hour + 1 h)). */
  readonly expectedOf: (hour: number) => Promise<readonly ExpectedObject[]>;
  /** Called after an hour's object is written, before its item (tests crash there). */
  readonly afterObject?: (hour: number) => void | Promise<void>;
}

/**
 * Compacts every hour from hour(from) that the cutoff covers and no item
 * records yet, one at a time. An hour that fails (a missing or short raw
 * object, an S3 error) is reported and left for the next run; the others go on.
 */
export async function compactCovered(deps: CompactDeps, cutoff: number, from: number | null = null): Promise<CompactionOutcome> {
  const compacted: number[] = [];
  const failed: { hour: number; error: string }[] = [];
  for (const hour of await hoursToCompact(deps, cutoff, from)) {
    try {
      const result = await deps.compactor.compactHour(hour, await deps.expectedOf(hour));
      await deps.afterObject?.(hour);
      await recordCompacted(deps, hour, result, deps.now());
      compacted.push(hour);
    } catch (e) {
      failed.push({ hour, error: `${iso(hour).slice(0, 13)}h: ${e instanceof Error ? e.message : String(e)}` });
    }
  }
  return { compacted, failed };
}
