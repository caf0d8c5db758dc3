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
 *   3. the control item `backfill / <pseudo-shard>` { arrival T, state: writing }
 *      is written BEFORE the first object: from then on the planner cuts no later
 *      than T (complete before cut, invariant 4). A re-run finds it: `complete`
 *      adds nothing, `writing` (a crashed run) rewrites the same keys with the same T;
 *   4. every accepted record is registered with the speed layer's dedup table
 *      (`deps.register`: the CLI and the local cloud always pass it, wired to
 *      `registerCopies`, functions/speed/dedup.ts, which this module may not
 *      import): its copy (arrival T, the pseudo-shard, its seq) joins the id's
 *      chained claim, one conditional write per id, so a live copy decided
 *      afterwards is decided against it by the dedup rule, as the batch decides
 *      it; a re-run writes nothing again. An id whose live copy the speed layer
 *      already counted within H after T (decided before the registration) is
 *      `superseded`: its records are left out of the objects, so the batch
 *      counts that live copy as the speed layer did;
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
} from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import { validateEvent } from '../core/events.ts';
import { POINTER_KEY } from '../core/keys.ts';
import { padSeq, type RawRecord, toRawRecord } from '../core/record.ts';
import type { View } from '../core/views.ts';
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

export type BackfillState = 'writing' | 'complete';

/** The control item `backfill / <pseudo-shard>`. */
export interface BackfillItem {
  readonly shard: string;
  /** The arrival time of every record of the backfill, epoch ms. */
  readonly arrival: number;
  readonly state: BackfillState;
  readonly records: number;
  readonly objects: number;
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

/** What `BackfillDeps.register` does with one chunk of records. */
export type Register = (records: readonly RawRecord[]) => Promise<{ writes: number; superseded: ReadonlySet<string> }>;

/** Fault-injection points (tests): a hook crashes the backfill by throwing. */
export interface BackfillHooks {
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
   * Registers records (arrival T) in the speed layer's dedup table, returning the claims
   * written and the superseded ids: `copyRegistrar` of functions/speed/dedup.ts. Called
   * before any object is written (module comment, step 4). Absent: no registration (archive
   * tests only; live copies of backfilled ids could then count twice until a batch covers them).
   */
  readonly register?: Register;
  /** The views ingest validates with (metric fields must be numbers). */
  readonly views: readonly View[];
  readonly now?: () => number;
  /**
   * T for a new backfill instead of max(now, published cutoff): the local cloud's demo
   * history on a new data dir, and tests. Refused below the published cutoff; a re-run
   * keeps the T its first attempt recorded.
   */
  readonly arrival?: number;
  /** Records per object. @default BACKFILL_OBJECT_LINES */
  readonly objectLines?: number;
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
  /** Claims this run wrote to the dedup table (0 on a re-run that finds them all). */
  readonly claims: number;
  /** Records left out: their id's live copy was counted by the speed layer within H after T before they were registered. */
  readonly superseded: number;
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
    if (v.accepted === 0) return { shard: null, arrival: null, outcome: 'empty', objects: 0, claims: 0, superseded: 0, bytes: 0, ...base };

    const shard = v.shard();
    const ranges = objectRanges(v.accepted, deps.objectLines);
    const claim = await claimBackfill(deps, shard, v.accepted, ranges.length, now);
    if (claim.state === 'complete')
      return {
        shard,
        arrival: claim.arrival,
        outcome: 'already-complete',
        objects: claim.objects,
        claims: 0,
        superseded: 0,
        bytes: 0,
        ...base,
      };

    const T = claim.arrival;
    const registered = deps.register ? await registerBackfill(deps.register, spool, shard, T) : undefined;
    const claims = registered?.writes ?? 0;
    const superseded = registered?.superseded ?? new Set<string>();
    let left = 0;
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
      const record = backfillRecord(line, index++, shard, T);
      if (superseded.has(record.id)) left++;
      else batch.push(record);
      const r = ranges[range]!;
      if (index <= r.last) continue;
      // A range whose every record was superseded has no object (and no manifest entry).
      if (batch.length > 0) launch(r.first, r.last, batch);
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
      outcome: claim.resumed ? 'resumed' : 'written',
      objects: ranges.length,
      claims,
      superseded: left,
      bytes,
      ...base,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Ids registered per round: one BatchGetItem pass over their claims, then one conditional PutItem each. */
const REGISTER_CHUNK = 1000;

/** Step 4: the spool's records (arrival T) into the dedup table's chained claims: the claims written, the ids superseded. */
async function registerBackfill(
  register: Register,
  spool: string,
  shard: string,
  T: number,
): Promise<{ writes: number; superseded: Set<string> }> {
  let writes = 0;
  const superseded = new Set<string>();
  let index = 0;
  let chunk: RawRecord[] = [];
  const flush = async () => {
    if (chunk.length === 0) return;
    const r = await register(chunk);
    writes += r.writes;
    for (const id of r.superseded) superseded.add(id);
    chunk = [];
  };
  for await (const line of createInterface({ input: createReadStream(spool), crlfDelay: Number.POSITIVE_INFINITY })) {
    if (line === '') continue;
    chunk.push(backfillRecord(line, index++, shard, T));
    if (chunk.length >= REGISTER_CHUNK) await flush();
  }
  await flush();
  return { writes, superseded };
}

/**
 * Creates `backfill / <shard>` in state `writing` with T = max(now, published
 * cutoff), or finds the one an earlier run of the same content wrote.
 */
async function claimBackfill(
  deps: BackfillDeps,
  shard: string,
  records: number,
  objects: number,
  now: () => number,
): Promise<{ state: BackfillState; arrival: number; objects: number; resumed: boolean }> {
  const existing = await readBackfill(deps.ddb, deps.controlTable, shard);
  if (existing) return { state: existing.state, arrival: existing.arrival, objects: existing.objects, resumed: true };
  const pointer = await deps.ddb.send(
    new GetItemCommand({
      TableName: deps.controlTable,
      Key: { pk: { S: POINTER_KEY.pk }, sk: { S: POINTER_KEY.sk } },
      ConsistentRead: true,
      ProjectionExpression: 'cutoff',
    }),
  );
  const cutoff = Number(pointer.Item?.cutoff?.N ?? 0);
  if (deps.arrival !== undefined && deps.arrival < cutoff)
    throw new RangeError(`a backfill's arrival time must not be below the published cutoff ${new Date(cutoff).toISOString()}`);
  const arrival = deps.arrival ?? Math.max(now(), cutoff);
  try {
    await deps.ddb.send(
      new PutItemCommand({
        TableName: deps.controlTable,
        Item: {
          pk: { S: BACKFILL_PK },
          sk: { S: shard },
          arrival: { N: String(arrival) },
          state: { S: 'writing' },
          records: { N: String(records) },
          objects: { N: String(objects) },
          createdAt: { N: String(now()) },
        },
        ConditionExpression: 'attribute_not_exists(pk)',
      }),
    );
    return { state: 'writing', arrival, objects, resumed: false };
  } catch (e) {
    if (!(e instanceof ConditionalCheckFailedException)) throw e;
    // The same content claimed at the same moment by another run: follow its T.
    const other = await readBackfill(deps.ddb, deps.controlTable, shard);
    if (!other) throw e;
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
  return {
    shard,
    arrival: Number(i.arrival?.N),
    state: i.state?.S === 'complete' ? 'complete' : 'writing',
    records: Number(i.records?.N ?? 0),
    objects: Number(i.objects?.N ?? 0),
  };
}
