/**
 * The batch layer's control-table items (docs/architecture.md): the lock
 * `lock / batch`, runs `run / <runId>`, version manifests `version / <N>` and
 * the published pointer `pointer / current`. Reads and writes go through the
 * document client; every number here is an epoch ms, a version or a count,
 * all exact as JavaScript numbers.
 */

import { randomBytes } from 'node:crypto';
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, type DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { type REBUILD_REASONS, RUN_ID_RE, type RunStage, type RunState, type VIEW_MODES } from '../contract/api.ts';
import { POINTER_KEY, padVersion, versionKey } from '../core/keys.ts';
import type { Grain } from '../core/time.ts';
import { TTL_ATTRIBUTE } from '../resources.ts';

export const LOCK_KEY = { pk: 'lock', sk: 'batch' } as const;
export const RUN_PK = 'run';
export const VERSION_PK = 'version';

/** Run items are kept this long, then expire (TTL). */
export const RUN_RETENTION_SECONDS = 90 * 86_400;

// The run's states, stages and id format are the API's (GET /batch/runs/{id}); the pointer's key is core's (the query reads it too).
export { POINTER_KEY, RUN_ID_RE, type RunStage, type RunState };

/** How a run computes a view: from all history, or the new arrivals merged into the published version. */
export type ViewMode = (typeof VIEW_MODES)[number];
/** Why a view is rebuilt. */
export type RebuildReason = (typeof REBUILD_REASONS)[number];

export interface ViewRun {
  readonly rows: number;
  readonly sqlMs: number;
  readonly loadMs: number;
  readonly mode?: ViewMode;
  readonly reason?: RebuildReason;
  /** Of `rows`, the rows the run wrote (the rest are shared with the version it increments). */
  readonly written?: number;
}

export interface RunItem {
  readonly runId: string;
  readonly state: RunState;
  readonly stage: RunStage;
  readonly startedAt: number;
  readonly finishedAt?: number;
  readonly version?: number;
  readonly cutoff?: number;
  /** The published cutoff when the run planned (its C must pass it). */
  readonly previousCutoff?: number | null;
  readonly views: Record<string, ViewRun>;
  /** Milliseconds per stage: plan (cutoff), stage (objects to the engine), verify, publish, total. */
  readonly timings?: Record<string, number>;
  /**
   * What the run read: objects, records (lines with arrival < cutoff), extra (unlisted) objects, and the
   * raw objects, lines and bytes (as stored) of its arrival range (the Verify step's session).
   */
  readonly archive?: {
    readonly objects: number;
    readonly records: number;
    readonly extraObjects: number;
    readonly rawObjectsRead?: number;
    readonly rawRowsRead?: number;
    readonly rawBytesRead?: number;
    /** Compacted arrival hours read as Parquet (their rows and column-chunk bytes are in the figures above). */
    readonly compactedHours?: number;
  };
  /** The compaction after the publish (batch/compact.ts): hours compacted, hours failed (retried next run), the first error. */
  readonly compaction?: { readonly hours: number; readonly failed: number; readonly error?: string };
  /** Why the run was skipped, or which shard held the cutoff back. */
  readonly note?: string;
  readonly error?: string;
}

/**
 * One view of a version. `partitions` maps each batch-view partition holding rows of the view
 * (its start ms, 13 digits) to the version that wrote those rows (copy-on-write: an increment
 * rewrites only the partitions it touches, the others stay with their writer). Manifests written
 * before increments existed hold a list of this version's own partition keys instead.
 */
export interface ViewManifest {
  /** Rows of the view in this version (shared ones included). */
  readonly rows: number;
  /**
   * Partition start -> its writer: the version whose keys hold the partition's rollups and the blocks it wrote. A list of
   * the version's own keys in manifests written before increments.
   */
  readonly partitions: Readonly<Record<string, number>> | readonly string[];
  /**
   * Partition start -> earlier writers, newest first, whose keys hold the partition's blocks its writer did not rewrite
   * (an increment rewrites only the blocks it touches; batch/load.ts mergePartition). A block is read from the first of
   * [writer, ...inherits] that holds it. Absent: the writer holds every block.
   */
  readonly inherits?: Readonly<Record<string, readonly number[]>>;
  readonly loaded: boolean;
  /** viewFingerprint of the declaration the rows were computed for. */
  readonly fingerprint?: string;
  /** The dedup horizon (ms) the rows were counted with: another one changes which copies count. */
  readonly horizonMs?: number;
  /**
   * How its rows are stored (batch/load.ts STORAGE_LAYOUT): rows written in another layout cannot be read by this
   * code, so an increment cannot merge into them and the view is rebuilt (`storage changed`). Absent: one item per row.
   */
  readonly layout?: string;
  readonly mode?: ViewMode;
  readonly reason?: RebuildReason;
  /** An increment: the version it merges into and that version's cutoff (the increment's `since`). */
  readonly base?: number;
  readonly since?: number;
  /**
   * The coarser grains its partitions also keep (batch/load.ts loadPartitions), and from which writer version on;
   * `dayBlocks`: minute views' day blocks (core/keys.ts batchDayBlockPk), block start (13 digits) -> writer version.
   */
  readonly rollups?: { readonly grains: readonly Grain[]; readonly from: number; readonly dayBlocks?: Readonly<Record<string, number>> };
}

export type VersionState = 'loading' | 'published' | 'retired';

export interface VersionManifest {
  readonly version: number;
  readonly cutoff: number;
  readonly state: VersionState;
  readonly createdAt: number;
  readonly runId: string;
  readonly publishedAt?: number;
  readonly retiredAt?: number;
  readonly views: Record<string, ViewManifest>;
}

export interface Pointer {
  readonly version: number;
  readonly cutoff: number;
  readonly publishedAt: number;
  readonly runId: string;
  readonly views: Record<string, { readonly rows: number }>;
  /** Set by a rollback: the version that was current before it. */
  readonly rolledBackFrom?: number;
}

export interface Control {
  readonly doc: DynamoDBDocumentClient;
  readonly table: string;
}

const strip = <T>(item: Record<string, unknown> | undefined): T | undefined => {
  if (!item) return undefined;
  const { pk: _pk, sk: _sk, [TTL_ATTRIBUTE]: _ttl, ...rest } = item;
  return rest as T;
};

/** A run id: sortable by start time, valid as a Step Functions execution name. */
export function newRunId(nowMs: number): string {
  const t = new Date(nowMs).toISOString().replace(/[-:]/g, '').replace('.', '');
  return `run-${t}-${randomBytes(3).toString('hex')}`;
}

// ---- lock ---------------------------------------------------------------------------------------

export type LockResult = { readonly acquired: true } | { readonly acquired: false; readonly holder: string; readonly expiresAt: number };

/**
 * Takes `lock / batch` for `runId` (again, if it already holds it). The lock
 * expires (epoch seconds, the table's TTL attribute) so a crashed run does not
 * hold it forever; a live run refreshes it.
 */
export async function acquireLock(c: Control, runId: string, nowMs: number, ttlSeconds: number): Promise<LockResult> {
  const nowS = Math.floor(nowMs / 1000);
  try {
    await c.doc.send(
      new PutCommand({
        TableName: c.table,
        Item: { ...LOCK_KEY, runId, acquiredAt: nowMs, [TTL_ATTRIBUTE]: nowS + ttlSeconds },
        ConditionExpression: 'attribute_not_exists(pk) OR #exp < :now OR runId = :runId',
        ExpressionAttributeNames: { '#exp': TTL_ATTRIBUTE },
        ExpressionAttributeValues: { ':now': nowS, ':runId': runId },
      }),
    );
    return { acquired: true };
  } catch (e) {
    if (!(e instanceof ConditionalCheckFailedException)) throw e;
    const held = await c.doc.send(new GetCommand({ TableName: c.table, Key: LOCK_KEY, ConsistentRead: true }));
    if (!held.Item) return acquireLock(c, runId, nowMs, ttlSeconds);
    return { acquired: false, holder: String(held.Item.runId), expiresAt: Number(held.Item[TTL_ATTRIBUTE]) };
  }
}

/** Extends the lock while `runId` holds it; false when it lost it (expired and taken). */
export async function refreshLock(c: Control, runId: string, nowMs: number, ttlSeconds: number): Promise<boolean> {
  try {
    await c.doc.send(
      new UpdateCommand({
        TableName: c.table,
        Key: LOCK_KEY,
        UpdateExpression: 'SET #exp = :exp',
        ConditionExpression: 'runId = :runId',
        ExpressionAttributeNames: { '#exp': TTL_ATTRIBUTE },
        ExpressionAttributeValues: { ':exp': Math.floor(nowMs / 1000) + ttlSeconds, ':runId': runId },
      }),
    );
    return true;
  } catch (e) {
    if (e instanceof ConditionalCheckFailedException) return false;
    throw e;
  }
}

export async function releaseLock(c: Control, runId: string): Promise<void> {
  try {
    await c.doc.send(
      new DeleteCommand({
        TableName: c.table,
        Key: LOCK_KEY,
        ConditionExpression: 'runId = :runId',
        ExpressionAttributeValues: { ':runId': runId },
      }),
    );
  } catch (e) {
    if (!(e instanceof ConditionalCheckFailedException)) throw e;
  }
}

/** The run holding the lock now, if any (an expired lock holds nothing). */
export async function lockHolder(c: Control, nowMs: number): Promise<string | undefined> {
  const got = await c.doc.send(new GetCommand({ TableName: c.table, Key: LOCK_KEY, ConsistentRead: true }));
  if (!got.Item || Number(got.Item[TTL_ATTRIBUTE]) < Math.floor(nowMs / 1000)) return undefined;
  return String(got.Item.runId);
}

// ---- runs ---------------------------------------------------------------------------------------

/** Creates the run item (a retried plan step finds it there and keeps it). */
export async function createRun(c: Control, runId: string, nowMs: number): Promise<void> {
  try {
    await c.doc.send(
      new PutCommand({
        TableName: c.table,
        Item: {
          pk: RUN_PK,
          sk: runId,
          runId,
          state: 'RUNNING',
          stage: 'plan',
          startedAt: nowMs,
          views: {},
          timings: {},
          [TTL_ATTRIBUTE]: Math.floor(nowMs / 1000) + RUN_RETENTION_SECONDS,
        },
        ConditionExpression: 'attribute_not_exists(pk)',
      }),
    );
  } catch (e) {
    if (!(e instanceof ConditionalCheckFailedException)) throw e;
  }
}

/** Sets top-level attributes of a run item (undefined values are left alone). */
export async function updateRun(c: Control, runId: string, set: Partial<Omit<RunItem, 'runId' | 'views'>>): Promise<void> {
  const entries = Object.entries(set).filter(([, v]) => v !== undefined);
  if (entries.length === 0) return;
  const names: Record<string, string> = {};
  const values: Record<string, unknown> = {};
  const parts = entries.map(([k, v], i) => {
    names[`#a${i}`] = k;
    values[`:v${i}`] = v;
    return `#a${i} = :v${i}`;
  });
  await c.doc.send(
    new UpdateCommand({
      TableName: c.table,
      Key: { pk: RUN_PK, sk: runId },
      UpdateExpression: `SET ${parts.join(', ')}`,
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    }),
  );
}

/** Records one view's rows and timings in the run item. */
export async function recordRunView(c: Control, runId: string, view: string, v: ViewRun): Promise<void> {
  await c.doc.send(
    new UpdateCommand({
      TableName: c.table,
      Key: { pk: RUN_PK, sk: runId },
      UpdateExpression: 'SET #views.#v = :v',
      ExpressionAttributeNames: { '#views': 'views', '#v': view },
      ExpressionAttributeValues: { ':v': v },
    }),
  );
}

/** Adds stage timings to the run item (`timings.<name> = ms`). */
export async function recordRunTimings(c: Control, runId: string, timings: Record<string, number>): Promise<void> {
  const entries = Object.entries(timings);
  if (entries.length === 0) return;
  const names: Record<string, string> = { '#t': 'timings' };
  const values: Record<string, unknown> = {};
  const parts = entries.map(([k, v], i) => {
    names[`#k${i}`] = k;
    values[`:v${i}`] = Math.round(v);
    return `#t.#k${i} = :v${i}`;
  });
  await c.doc.send(
    new UpdateCommand({
      TableName: c.table,
      Key: { pk: RUN_PK, sk: runId },
      UpdateExpression: `SET ${parts.join(', ')}`,
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    }),
  );
}

export async function getRun(c: Control, runId: string): Promise<RunItem | undefined> {
  const got = await c.doc.send(new GetCommand({ TableName: c.table, Key: { pk: RUN_PK, sk: runId }, ConsistentRead: true }));
  return strip<RunItem>(got.Item);
}

// ---- versions -----------------------------------------------------------------------------------

/**
 * Allocates the next version number: one above the highest manifest ever
 * written, claimed with a conditional put of its manifest (state `loading`).
 * Numbers are never reused, so rows a crashed run left behind can never mix
 * with a later version's.
 */
export async function allocateVersion(c: Control, runId: string, cutoff: number, nowMs: number): Promise<number> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const last = await c.doc.send(
      new QueryCommand({
        TableName: c.table,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': VERSION_PK },
        ScanIndexForward: false,
        Limit: 1,
        ConsistentRead: true,
      }),
    );
    const version = Number(last.Items?.[0]?.version ?? 0) + 1;
    try {
      await c.doc.send(
        new PutCommand({
          TableName: c.table,
          Item: { pk: VERSION_PK, sk: padVersion(version), version, cutoff, state: 'loading', createdAt: nowMs, runId, views: {} },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
      return version;
    } catch (e) {
      if (!(e instanceof ConditionalCheckFailedException)) throw e;
    }
  }
  throw new Error('could not allocate a batch version: too many concurrent writers');
}

export async function getManifest(c: Control, version: number): Promise<VersionManifest | undefined> {
  const got = await c.doc.send(new GetCommand({ TableName: c.table, Key: versionKey(version), ConsistentRead: true }));
  return strip<VersionManifest>(got.Item);
}

export async function listManifests(c: Control): Promise<VersionManifest[]> {
  const out: VersionManifest[] = [];
  let start: Record<string, unknown> | undefined;
  do {
    const page = await c.doc.send(
      new QueryCommand({
        TableName: c.table,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': VERSION_PK },
        ConsistentRead: true,
        ExclusiveStartKey: start,
      }),
    );
    for (const item of page.Items ?? []) out.push(strip<VersionManifest>(item)!);
    start = page.LastEvaluatedKey;
  } while (start);
  return out;
}

/** Records the plan of every view of a loading version (its mode, fingerprint, base), before any view step runs. */
export async function recordManifestPlan(c: Control, version: number, views: Record<string, ViewManifest>): Promise<void> {
  await c.doc.send(
    new UpdateCommand({
      TableName: c.table,
      Key: versionKey(version),
      UpdateExpression: 'SET #views = :views',
      ConditionExpression: '#state = :loading',
      ExpressionAttributeNames: { '#views': 'views', '#state': 'state' },
      ExpressionAttributeValues: { ':views': views, ':loading': 'loading' },
    }),
  );
}

/** Records one view of a version in its manifest (before its rows are written, then once loaded). */
export async function recordManifestView(c: Control, version: number, view: string, v: ViewManifest): Promise<void> {
  await c.doc.send(
    new UpdateCommand({
      TableName: c.table,
      Key: versionKey(version),
      UpdateExpression: 'SET #views.#v = :v',
      ConditionExpression: '#state = :loading',
      ExpressionAttributeNames: { '#views': 'views', '#v': view, '#state': 'state' },
      ExpressionAttributeValues: { ':v': v, ':loading': 'loading' },
    }),
  );
}

export async function setManifestState(c: Control, version: number, state: VersionState, nowMs: number): Promise<void> {
  const at = state === 'published' ? 'publishedAt' : state === 'retired' ? 'retiredAt' : 'updatedAt';
  await c.doc.send(
    new UpdateCommand({
      TableName: c.table,
      Key: versionKey(version),
      UpdateExpression: 'SET #state = :state, #at = :now',
      ConditionExpression: 'attribute_exists(pk)',
      ExpressionAttributeNames: { '#state': 'state', '#at': at },
      ExpressionAttributeValues: { ':state': state, ':now': nowMs },
    }),
  );
}

// ---- pointer ------------------------------------------------------------------------------------

export async function getPointer(c: Control): Promise<Pointer | undefined> {
  const got = await c.doc.send(new GetCommand({ TableName: c.table, Key: POINTER_KEY, ConsistentRead: true }));
  return strip<Pointer>(got.Item);
}

/**
 * Flips the pointer to `p` if its version is higher than the current one
 * (invariant 7, docs/design.md). Returns the pointer that stands afterwards and whether it is `p`.
 */
export async function flipPointer(c: Control, p: Pointer): Promise<{ published: boolean; current: Pointer }> {
  try {
    await c.doc.send(
      new PutCommand({
        TableName: c.table,
        Item: { ...POINTER_KEY, ...p },
        ConditionExpression: 'attribute_not_exists(pk) OR version < :v',
        ExpressionAttributeValues: { ':v': p.version },
      }),
    );
    return { published: true, current: p };
  } catch (e) {
    if (!(e instanceof ConditionalCheckFailedException)) throw e;
    const current = await getPointer(c);
    if (!current) throw new Error('the pointer condition failed but there is no pointer');
    // A retried publish of the same version finds its own flip.
    return { published: current.version === p.version && current.runId === p.runId, current };
  }
}

/** Points back to an older (or any kept) version, if the pointer is still `expected`. */
export async function replacePointer(c: Control, p: Pointer, expected: number | undefined): Promise<boolean> {
  try {
    await c.doc.send(
      new PutCommand({
        TableName: c.table,
        Item: { ...POINTER_KEY, ...p },
        ConditionExpression: expected === undefined ? 'attribute_not_exists(pk)' : 'version = :expected',
        ...(expected === undefined ? {} : { ExpressionAttributeValues: { ':expected': expected } }),
      }),
    );
    return true;
  } catch (e) {
    if (e instanceof ConditionalCheckFailedException) return false;
    throw e;
  }
}
