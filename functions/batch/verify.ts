/**
 * The completeness check before anything is published: the archive's own
 * record of what it wrote (the object manifest, one control item per shard
 * and arrival hour, see archive/layout.ts) against what the engine actually
 * read, object by object. A manifest object the engine did not read (deleted,
 * a partition Athena could not see, a lost download) or read with fewer lines
 * than were written fails the run: publishing would leave a hole that no
 * later speed delta fills (the speed layer only serves windows >= C).
 *
 * Objects the engine read that no manifest lists are fine: a crashed archive
 * attempt can leave one behind, and its records are copies of records that a
 * retry archived again (the batch's per-id dedup absorbs them).
 */
import { type DynamoDBDocumentClient, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { OBJECT_MANIFEST_PK, objectManifestEntries } from '../archive/layout.ts';
import { pad13 } from '../core/keys.ts';
import type { ObjectRead } from './engine.ts';

export interface ExpectedObject {
  readonly key: string;
  readonly lines: number;
}

/** Every object the archive recorded for arrival hours starting before `cutoff`. */
export async function readArchiveManifest(doc: DynamoDBDocumentClient, table: string, cutoff: number): Promise<ExpectedObject[]> {
  const out: ExpectedObject[] = [];
  let start: Record<string, unknown> | undefined;
  do {
    const page = await doc.send(
      new QueryCommand({
        TableName: table,
        // sk = <hour start, 13 digits>#<shard>: below pad13(cutoff) are exactly the hours starting before it.
        KeyConditionExpression: 'pk = :pk AND sk < :cut',
        ExpressionAttributeValues: { ':pk': OBJECT_MANIFEST_PK, ':cut': pad13(cutoff) },
        ConsistentRead: true,
        ExclusiveStartKey: start,
      }),
    );
    for (const item of page.Items ?? []) {
      const objects = item.objects instanceof Set ? [...(item.objects as Set<string>)] : [];
      out.push(...objectManifestEntries(Number(item.hour), String(item.shard), objects));
    }
    start = page.LastEvaluatedKey;
  } while (start);
  return out;
}

export interface Completeness {
  readonly complete: boolean;
  /** Manifest objects the engine did not read. */
  readonly missing: readonly ExpectedObject[];
  /** Manifest objects read with another line count. */
  readonly mismatched: readonly { readonly key: string; readonly expected: number; readonly read: number }[];
  /** Objects the engine read. */
  readonly objects: number;
  /** Records read with arrival < cutoff (copies included). */
  readonly records: number;
  /** Objects read that no manifest lists. */
  readonly extraObjects: number;
}

export function checkCompleteness(expected: readonly ExpectedObject[], reads: ReadonlyMap<string, ObjectRead>): Completeness {
  const missing: ExpectedObject[] = [];
  const mismatched: { key: string; expected: number; read: number }[] = [];
  const listed = new Set<string>();
  for (const e of expected) {
    listed.add(e.key);
    const r = reads.get(e.key);
    if (!r) missing.push(e);
    else if (r.lines !== e.lines) mismatched.push({ key: e.key, expected: e.lines, read: r.lines });
  }
  let records = 0;
  let extraObjects = 0;
  for (const [key, r] of reads) {
    records += r.covered;
    if (!listed.has(key)) extraObjects++;
  }
  return { complete: missing.length === 0 && mismatched.length === 0, missing, mismatched, objects: reads.size, records, extraObjects };
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
    super(`the archive is incomplete: ${parts.join('; ')}; nothing was published`);
    this.name = 'IncompleteArchiveError';
  }
}
