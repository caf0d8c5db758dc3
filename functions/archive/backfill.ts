/**
 * Backfill: history files into the raw archive, in the archive's own format
 * (docs/batch-layer.md, "Backfill"). One run over its input:
 *
 *   1. every event is validated exactly as ingest validates it (`validateEvent`);
 *      rejections go back with their position and field; accepted events are
 *      spooled (one JSON line each) and hashed;
 *   2. the accepted events' content names the run: pseudo-shard
 *      `backfill-<first 16 hex of their sha-256>`, seq = the event's index among
 *      them (padded), so the same files give the same keys, and an event without
 *      an id gets `bf-<hex>-<index>`: a re-run adds nothing;
 *   3. with `claims` (the CLI's default, the local cloud's demo): the control
 *      item `backfill / <pseudo-shard>` { state: registering } is written, then
 *      every accepted id goes into the backfill's id sets (core/backfill-ids.ts:
 *      ~100 ids an item, plain puts, the same bytes on a re-run), then T is
 *      taken and the item becomes { arrival T, buckets, state: writing }. T =
 *      max(now + BACKFILL_LEAD_MS, published cutoff): the speed layer decides
 *      every live copy at or after T with the id sets in view (functions/speed/
 *      outside.ts), and a copy before T needs none, so a live copy and a
 *      backfilled one are decided by the rule in both layers. Without `claims`
 *      the item is written `writing` with T = max(now, published cutoff) at once.
 *      Either way the item holds T BEFORE the first object: from then on the
 *      planner cuts no later than T (complete before cut, invariant 4). A re-run
 *      finds it: `complete` adds nothing, `writing` (a crashed run) rewrites the
 *      same keys with the same T, `registering` writes the id sets again first;
 *   5. objects of `objectLines` records each, gzip NDJSON `RawRecord` lines with
 *      arrival T, under the archive's key layout, each added to the object
 *      manifest of (hour(T), pseudo-shard), so the batch's completeness check
 *      covers them like any shard's;
 *   6. the item becomes `complete`: the planner treats the pseudo-shard as idle.
 *
 * T = max(now, the published cutoff), taken right before the item is written:
 * never below the cutoff (a clock behind the stream's would otherwise hide the
 * records from every increment), and close enough to the write that a batch run
 * which read the items just before it takes its own `now` within the margin.
 *
 * The pure parts (`BackfillValidator`, `backfillRecord`, `objectRanges`) take
 * everything as data; `runBackfill` takes its clients as parameters (the CLI,
 * the local cloud's demo and the tests call it).
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import {
  ConditionalCheckFailedException,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  UpdateItemCommand,
  type WriteRequest,
} from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import { batchWriteAll } from '../adapters/batch-items.ts';
import { BACKFILL_LEAD_MS, encodeIdSet, idSetBucket, idSetBuckets, idSetKey } from '../core/backfill-ids.ts';
import { validateEvent } from '../core/events.ts';
import { POINTER_KEY } from '../core/keys.ts';
import { padSeq, type RawRecord, toRawRecord } from '../core/record.ts';
import { DEFAULT_SETTINGS, dedupExpiry } from '../core/settings.ts';
import type { View } from '../core/views.ts';
import { TTL_ATTRIBUTE } from '../resources.ts';
import { writeRawObject } from './archive.ts';
import { BACKFILL_PK, BACKFILL_SHARD_PREFIX, HOUR_MS, objectManifestEntry, rawObjectKey } from './layout.ts';

/** Records per raw object. The archive writes up to a Lambda batch (1,000) per object; history comes in bulk. */
export const BACKFILL_OBJECT_LINES = 20_000;
/** Objects written at once. */
const WRITE_CONCURRENCY = 4;

/** Where an input event was: a file and its line (1-based), or an index (in-memory input). */
export type BackfillPosition = { readonly file?: string; readonly line: number } | { readonly index: number };

export interface BackfillInput {
  readonly position: BackfillPosition;
  /** The parsed event (or, with `invalid`, the text that did not parse). */
  readonly event: unknown;
  /** Why the input could not be read as an event (a line that is not JSON). */
  readonly invalid?: string;
}

export interface BackfillRejection {
  readonly position: BackfillPosition;
  /** The field at fault (`event` for the event as a whole), null when the line is not JSON. */
  readonly field: string | null;
  readonly message: string;
  readonly event: unknown;
}

export type BackfillState = 'registering' | 'writing' | 'complete';

/** The control item `backfill / <pseudo-shard>`. */
export interface BackfillItem {
  readonly shard: string;
  /** The arrival time of every record of the backfill, epoch ms (undefined while `registering`). */
  readonly arrival: number | undefined;
  readonly state: BackfillState;
  readonly records: number;
  readonly objects: number;
  /** The id sets' buckets (undefined: its ids were not registered, or not yet). */
  readonly buckets: number | undefined;
}

// ---- the pure core ------------------------------------------------------------------------------

/**
 * Pass 1: validates events one by one, as ingest does, and hashes the accepted
 * ones' JSON (the content that names the backfill).
 */
export class BackfillValidator {
  private readonly hash = createHash('sha256');
  accepted = 0;
  rejected = 0;

  constructor(private readonly views: readonly View[]) {}

  /** The accepted event as one JSON line (what the spool holds), or the rejection. */
  check(input: BackfillInput): { line: string } | { rejection: BackfillRejection } {
    if (input.invalid !== undefined) {
      this.rejected++;
      return { rejection: { position: input.position, field: null, message: input.invalid, event: input.event } };
    }
    const r = validateEvent(input.event, this.views);
    if (!('event' in r)) {
      this.rejected++;
      return { rejection: { position: input.position, field: r.field, message: r.message, event: input.event } };
    }
    const line = JSON.stringify(input.event);
    this.hash.update(line);
    this.hash.update('\n');
    this.accepted++;
    return { line };
  }

  /** The pseudo-shard of what was accepted (call once, after the last event). */
  shard(): string {
    return backfillShard(this.hash.digest('hex'));
  }
}

/** `backfill-<first 16 hex of the content's sha-256>`. */
export function backfillShard(sha256Hex: string): string {
  return `${BACKFILL_SHARD_PREFIX}${sha256Hex.slice(0, 16)}`;
}

/** The id of an event sent without one: from the content hash and its index, so a re-run gives the same. */
export function backfillId(shard: string, index: number): string {
  return `bf-${shard.slice(BACKFILL_SHARD_PREFIX.length)}-${index}`;
}

/** The archived form of the `index`-th accepted event of a backfill. */
export function backfillRecord(line: string, index: number, shard: string, arrival: number): RawRecord {
  const event = JSON.parse(line) as Record<string, unknown>;
  const withId = event.id === undefined ? { ...event, id: backfillId(shard, index) } : event;
  return toRawRecord(withId, arrival, shard, String(index));
}

/** The objects of a backfill of `records` records: index ranges [first, last], `lines` each. */
export function objectRanges(records: number, lines = BACKFILL_OBJECT_LINES): { first: number; last: number }[] {
  const out: { first: number; last: number }[] = [];
  for (let first = 0; first < records; first += lines) out.push({ first, last: Math.min(records, first + lines) - 1 });
  return out;
}

/** The raw object key and manifest entry of one object of a backfill. */
export function backfillObject(shard: string, arrival: number, first: number, last: number, lines = last - first + 1) {
  const [a, b] = [padSeq(String(first)), padSeq(String(last))];
  return { key: rawObjectKey(shard, arrival, a, b), entry: objectManifestEntry(a, b, lines) };
}

// ---- I/O ----------------------------------------------------------------------------------------

/** Fault-injection points (tests): a hook crashes the backfill by throwing. */
export interface BackfillHooks {
  /** After the id sets are written, before T is taken (step 3). */
  afterIdSets?(): void | Promise<void>;
  /** After an object and its manifest entry are written, with the number written so far. */
  afterObject?(written: number): void | Promise<void>;
}

export interface BackfillProgress {
  readonly phase: 'validate' | 'write';
  /** Events validated, or records written. */
  readonly done: number;
  readonly accepted: number;
  readonly rejected: number;
  /** Records to write (write phase). */
  readonly total?: number;
}

export interface BackfillDeps {
  readonly s3: S3Client;
  readonly ddb: DynamoDBClient;
  readonly rawBucket: string;
  readonly controlTable: string;
  /**
   * Registers the ids in id sets for the speed layer before T is taken (module comment,
   * step 3). Without it, a live copy of a backfilled id arriving within H after T counts in
   * the speed part until a version covers it (`tandem backfill --no-claims`).
   * @default false
   */
  readonly claims?: boolean;
  /** The deployment's dedup horizon H: how long the id sets must be kept. @default DEFAULT_SETTINGS' (7 days) */
  readonly dedupHorizonSeconds?: number;
  /** The views ingest validates with (metric fields must be numbers). */
  readonly views: readonly View[];
  readonly now?: () => number;
  /**
   * T for a new backfill instead of the module comment's: the local cloud's demo history on
   * a new data dir, and tests. Refused below the published cutoff; a re-run keeps the T its
   * first attempt recorded. With `claims`, the caller vouches that no live copy arriving at
   * or after it was decided before the registration (no speed layer ran yet, or none of the ids came in live).
   */
  readonly arrival?: number;
  /** Records per object. @default BACKFILL_OBJECT_LINES */
  readonly objectLines?: number;
  /** Id-set buckets grouped in memory at once; more go through temp files part by part. @default 10,000 (about 1 M ids) */
  readonly idSetBucketsInMemory?: number;
  /** Where the accepted events are spooled between the passes. @default the temp directory */
  readonly spoolDir?: string;
  readonly onReject?: (r: BackfillRejection) => void | Promise<void>;
  readonly onProgress?: (p: BackfillProgress) => void;
  readonly hooks?: BackfillHooks;
}

export interface BackfillSummary {
  /** The pseudo-shard (null when nothing was accepted). */
  readonly shard: string | null;
  /** The records' arrival time T, epoch ms (null when nothing was accepted). */
  readonly arrival: number | null;
  /** `written`: this run wrote it all; `resumed`: it finished a crashed run; `already-complete`: nothing to add. */
  readonly outcome: 'written' | 'resumed' | 'already-complete' | 'empty';
  readonly events: number;
  readonly accepted: number;
  readonly rejected: number;
  readonly objects: number;
  /** Distinct ids this run registered in id sets (0 without `claims`, or on a re-run that finds T taken). */
  readonly claims: number;
  /** Id-set items this run wrote. */
  readonly idSets: number;
  /** Compressed bytes written by this run. */
  readonly bytes: number;
}

/** Validates, then archives the accepted events (see the module comment). */
export async function runBackfill(
  input: AsyncIterable<BackfillInput> | Iterable<BackfillInput>,
  deps: BackfillDeps,
): Promise<BackfillSummary> {
  const now = deps.now ?? Date.now;
  const dir = mkdtempSync(join(deps.spoolDir ?? tmpdir(), 'tandem-backfill-'));
  try {
    const spool = join(dir, 'accepted.ndjson');
    const v = new BackfillValidator(deps.views);
    let events = 0;
    const out = createWriteStream(spool);
    try {
      for await (const item of input) {
        events++;
        const r = v.check(item);
        if ('line' in r) {
          if (!out.write(`${r.line}\n`)) await new Promise<void>((res) => out.once('drain', () => res()));
        } else await deps.onReject?.(r.rejection);
        if (events % 1000 === 0) deps.onProgress?.({ phase: 'validate', done: events, accepted: v.accepted, rejected: v.rejected });
      }
    } finally {
      await new Promise<void>((res, rej) => out.end((e?: Error | null) => (e ? rej(e) : res())));
    }
    deps.onProgress?.({ phase: 'validate', done: events, accepted: v.accepted, rejected: v.rejected });
    const base = { events, accepted: v.accepted, rejected: v.rejected };
    if (v.accepted === 0) return { shard: null, arrival: null, outcome: 'empty', objects: 0, claims: 0, idSets: 0, bytes: 0, ...base };

    const shard = v.shard();
    const ranges = objectRanges(v.accepted, deps.objectLines);
    let claim = await claimBackfill(deps, shard, v.accepted, ranges.length, now);
    // A run that finds the item (however far the crashed one got) finishes an interrupted backfill.
    const resumed = claim.resumed;
    let registered = { ids: 0, items: 0 };
    if (claim.state === 'registering') {
      // A run without `claims` finishing a crashed one that had them: its partial id sets stay unused (no buckets).
      const buckets = deps.claims ? idSetBuckets(v.accepted) : undefined;
      if (buckets !== undefined) registered = await registerIds(deps, spool, shard, buckets, now);
      await deps.hooks?.afterIdSets?.();
      claim = await takeArrival(deps, shard, buckets, now);
    }
    if (claim.state === 'complete')
      return {
        shard,
        arrival: claim.arrival,
        outcome: 'already-complete',
        objects: claim.objects,
        claims: registered.ids,
        idSets: registered.items,
        bytes: 0,
        ...base,
      };

    const T = claim.arrival;
    const hour = Math.floor(T / HOUR_MS) * HOUR_MS;
    let bytes = 0;
    let written = 0;
    let recordsWritten = 0;
    const inFlight = new Set<Promise<void>>();
    let failure: { error: unknown } | undefined;
    const writeObject = async (first: number, last: number, records: RawRecord[]) => {
      const { key, entry } = backfillObject(shard, T, first, last, records.length);
      bytes += (await writeRawObject(deps, { key, hour, shard, entry }, records)).bytes;
      written++;
      recordsWritten += records.length;
      deps.onProgress?.({ phase: 'write', done: recordsWritten, total: v.accepted, accepted: v.accepted, rejected: v.rejected });
      await deps.hooks?.afterObject?.(written);
    };
    const launch = (first: number, last: number, records: RawRecord[]) => {
      const p: Promise<void> = writeObject(first, last, records)
        .catch((error) => {
          failure ??= { error };
        })
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    };

    let index = 0;
    let range = 0;
    let batch: RawRecord[] = [];
    for await (const line of createInterface({ input: createReadStream(spool), crlfDelay: Number.POSITIVE_INFINITY })) {
      if (line === '') continue;
      batch.push(backfillRecord(line, index++, shard, T));
      const r = ranges[range]!;
      if (index <= r.last) continue;
      launch(r.first, r.last, batch);
      batch = [];
      range++;
      while (inFlight.size >= WRITE_CONCURRENCY) await Promise.race(inFlight);
      if (failure) break;
    }
    await Promise.all(inFlight);
    if (failure) throw failure.error;
    if (index !== v.accepted || range !== ranges.length) throw new Error(`backfill spool read ${index} of ${v.accepted} records back`);

    await deps.ddb.send(
      new UpdateItemCommand({
        TableName: deps.controlTable,
        Key: { pk: { S: BACKFILL_PK }, sk: { S: shard } },
        UpdateExpression: 'SET #state = :complete, #completedAt = :now',
        ExpressionAttributeNames: { '#state': 'state', '#completedAt': 'completedAt' },
        ExpressionAttributeValues: { ':complete': { S: 'complete' }, ':now': { N: String(now()) } },
      }),
    );
    return {
      shard,
      arrival: T,
      outcome: resumed ? 'resumed' : 'written',
      objects: ranges.length,
      claims: registered.ids,
      idSets: registered.items,
      bytes,
      ...base,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Buckets whose ids are grouped in memory at once (about 1 M ids); a larger backfill groups them part by part. */
const BUCKETS_PER_PART = 10_000;
/** Id-set writes in flight (BatchWriteItem, 25 items each). */
const ID_SET_CONCURRENCY = 8;
/** Id sets outlive the claims of copies at T by this much: registration and lead time (T is taken after them). */
const ID_SET_TTL_SLACK_MS = 7 * 24 * HOUR_MS;

/**
 * Step 3: every accepted id, with the index of its first copy, into the backfill's id sets
 * (plain puts: each item's bytes depend only on the content, so a re-run writes the same).
 * The ids are grouped by bucket in memory, or part by part through temp files beside the spool.
 */
async function registerIds(
  deps: BackfillDeps,
  spool: string,
  shard: string,
  buckets: number,
  now: () => number,
): Promise<{ ids: number; items: number }> {
  const perPart = deps.idSetBucketsInMemory ?? BUCKETS_PER_PART;
  const parts = Math.ceil(buckets / perPart);
  const grouped = new Map<number, Map<string, number>>();
  const add = (bucket: number, id: string, index: number) => {
    const set = grouped.get(bucket) ?? new Map<string, number>();
    grouped.set(bucket, set);
    if (!set.has(id)) set.set(id, index);
  };
  const partFiles = parts > 1 ? Array.from({ length: parts }, (_, p) => `${spool}.ids-${p}`) : [];
  const outs = partFiles.map((f) => createWriteStream(f));
  let index = 0;
  for await (const line of createInterface({ input: createReadStream(spool), crlfDelay: Number.POSITIVE_INFINITY })) {
    if (line === '') continue;
    const { id } = backfillRecord(line, index, shard, 0);
    const bucket = idSetBucket(id, buckets);
    if (parts === 1) add(bucket, id, index);
    else {
      const out = outs[Math.floor(bucket / perPart)]!;
      if (!out.write(`${JSON.stringify([bucket, id, index])}\n`)) await new Promise<void>((res) => out.once('drain', () => res()));
    }
    index++;
  }
  await Promise.all(outs.map((o) => new Promise<void>((res, rej) => o.end((e?: Error | null) => (e ? rej(e) : res())))));
  let ids = 0;
  let items = 0;
  const flush = async () => {
    const expiresAt = dedupExpiry(now() + ID_SET_TTL_SLACK_MS, {
      dedupHorizonSeconds: deps.dedupHorizonSeconds ?? DEFAULT_SETTINGS.dedupHorizonSeconds,
    });
    const puts: WriteRequest[] = [...grouped].map(([bucket, set]) => {
      ids += set.size;
      const key = idSetKey(shard, bucket);
      return {
        PutRequest: {
          Item: { pk: { S: key.pk }, sk: { S: key.sk }, ids: { S: encodeIdSet(set) }, [TTL_ATTRIBUTE]: { N: String(expiresAt) } },
        },
      };
    });
    grouped.clear();
    items += puts.length;
    await batchWriteAll(deps.ddb, deps.controlTable, puts, { what: 'backfill: id-set writes', concurrency: ID_SET_CONCURRENCY });
  };
  if (parts === 1) await flush();
  for (const file of partFiles) {
    for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Number.POSITIVE_INFINITY })) {
      if (line === '') continue;
      const [bucket, id, i] = JSON.parse(line) as [number, string, number];
      add(bucket, id, i);
    }
    await flush();
    rmSync(file, { force: true });
  }
  return { ids, items };
}

/** The published cutoff (0 before the first publish). */
async function publishedCutoff(deps: BackfillDeps): Promise<number> {
  const pointer = await deps.ddb.send(
    new GetItemCommand({
      TableName: deps.controlTable,
      Key: { pk: { S: POINTER_KEY.pk }, sk: { S: POINTER_KEY.sk } },
      ConsistentRead: true,
      ProjectionExpression: 'cutoff',
    }),
  );
  return Number(pointer.Item?.cutoff?.N ?? 0);
}

/** `deps.arrival`, refused below the published cutoff. */
function chosenArrival(deps: BackfillDeps, cutoff: number): number | undefined {
  if (deps.arrival !== undefined && deps.arrival < cutoff)
    throw new RangeError(`a backfill's arrival time must not be below the published cutoff ${new Date(cutoff).toISOString()}`);
  return deps.arrival;
}

type Claimed =
  | { readonly state: 'registering'; readonly objects: number; readonly resumed: boolean }
  | { readonly state: 'writing' | 'complete'; readonly arrival: number; readonly objects: number; readonly resumed: boolean };

const claimedOf = (item: BackfillItem, resumed: boolean): Claimed =>
  item.state === 'registering' || item.arrival === undefined
    ? { state: 'registering', objects: item.objects, resumed }
    : { state: item.state, arrival: item.arrival, objects: item.objects, resumed };

/**
 * Creates `backfill / <shard>`: `registering` with `claims`, else `writing` with T =
 * max(now, published cutoff); or finds the one an earlier run of the same content wrote.
 */
async function claimBackfill(deps: BackfillDeps, shard: string, records: number, objects: number, now: () => number): Promise<Claimed> {
  const existing = await readBackfill(deps.ddb, deps.controlTable, shard);
  if (existing) return claimedOf(existing, true);
  const cutoff = await publishedCutoff(deps);
  const fixed = chosenArrival(deps, cutoff);
  const arrival = deps.claims ? undefined : (fixed ?? Math.max(now(), cutoff));
  try {
    await deps.ddb.send(
      new PutItemCommand({
        TableName: deps.controlTable,
        Item: {
          pk: { S: BACKFILL_PK },
          sk: { S: shard },
          ...(arrival !== undefined && { arrival: { N: String(arrival) } }),
          state: { S: arrival === undefined ? 'registering' : 'writing' },
          records: { N: String(records) },
          objects: { N: String(objects) },
          createdAt: { N: String(now()) },
        },
        ConditionExpression: 'attribute_not_exists(pk)',
      }),
    );
    return arrival === undefined
      ? { state: 'registering', objects, resumed: false }
      : { state: 'writing', arrival, objects, resumed: false };
  } catch (e) {
    if (!(e instanceof ConditionalCheckFailedException)) throw e;
    // The same content claimed at the same moment by another run: follow it.
    const other = await readBackfill(deps.ddb, deps.controlTable, shard);
    if (!other) throw e;
    return claimedOf(other, true);
  }
}

/**
 * After the id sets (or, re-run without `claims`, none): T = max(now + BACKFILL_LEAD_MS,
 * published cutoff) (now alone when no id was registered), and the item becomes `writing`
 * with it. Another run of the same content that took T first wins: follow its T.
 */
async function takeArrival(
  deps: BackfillDeps,
  shard: string,
  buckets: number | undefined,
  now: () => number,
): Promise<Extract<Claimed, { state: 'writing' | 'complete' }>> {
  const cutoff = await publishedCutoff(deps);
  const arrival = chosenArrival(deps, cutoff) ?? Math.max(now() + (buckets === undefined ? 0 : BACKFILL_LEAD_MS), cutoff);
  try {
    const res = await deps.ddb.send(
      new UpdateItemCommand({
        TableName: deps.controlTable,
        Key: { pk: { S: BACKFILL_PK }, sk: { S: shard } },
        UpdateExpression: `SET #arrival = :arrival, #state = :writing${buckets === undefined ? '' : ', #buckets = :buckets'}`,
        ConditionExpression: '#state = :registering',
        ExpressionAttributeNames: { '#arrival': 'arrival', '#state': 'state', ...(buckets !== undefined && { '#buckets': 'buckets' }) },
        ExpressionAttributeValues: {
          ':arrival': { N: String(arrival) },
          ':writing': { S: 'writing' },
          ':registering': { S: 'registering' },
          ...(buckets !== undefined && { ':buckets': { N: String(buckets) } }),
        },
        ReturnValues: 'ALL_NEW',
      }),
    );
    return { state: 'writing', arrival, objects: Number(res.Attributes?.objects?.N ?? 0), resumed: false };
  } catch (e) {
    if (!(e instanceof ConditionalCheckFailedException)) throw e;
    const other = await readBackfill(deps.ddb, deps.controlTable, shard);
    if (!other || other.arrival === undefined || other.state === 'registering') throw e;
    return { state: other.state, arrival: other.arrival, objects: other.objects, resumed: true };
  }
}

/** The control item of one backfill, if any. */
export async function readBackfill(ddb: DynamoDBClient, table: string, shard: string): Promise<BackfillItem | undefined> {
  const got = await ddb.send(
    new GetItemCommand({ TableName: table, Key: { pk: { S: BACKFILL_PK }, sk: { S: shard } }, ConsistentRead: true }),
  );
  const i = got.Item;
  if (!i) return undefined;
  const state = i.state?.S === 'complete' ? 'complete' : i.state?.S === 'registering' ? 'registering' : 'writing';
  return {
    shard,
    arrival: i.arrival?.N === undefined ? undefined : Number(i.arrival.N),
    state,
    records: Number(i.records?.N ?? 0),
    objects: Number(i.objects?.N ?? 0),
    buckets: i.buckets?.N === undefined ? undefined : Number(i.buckets.N),
  };
}
