/**
 * Event-id deduplication of the speed layer: the dedup rule with a horizon
 * (invariant 3, docs/design.md; the contract in docs/api.md). A copy of an id
 * does not count when another copy of the id (counted or not) arrived within
 * H before it: `arrival - prevArrival <= H`, in ms, copies ordered by
 * (arrival, seq). A copy's decision depends only on the arrival of the copy
 * just before it, so the speed layer keeps per id the latest copy it saw.
 *
 * The claim of an id (one item of the dedup table) holds:
 *   - `shard`, `seq`, `arrival`: the latest copy seen (exact ms);
 *   - `fromSeq`, `before`: the first copy the batch that wrote the claim
 *     added, and the arrival of the copy just before that one (absent: none),
 *     so that a retry of that batch can replay its copies from the same start;
 *   - `expiresAt`: for TTL deletion only (`dedupExpiry`): latest arrival + H,
 *     plus the longest a record can wait for the mapping (its max record
 *     age, at most 7 days), so no claim is deleted while a copy still to be
 *     processed could arrive within H of it. Readers never drop a claim by its
 *     expiry: the exact rule on arrivals says when it no longer matters.
 *
 * When the id is the partition key (ingest's choice; other keys: "Any
 * partition key" below), all copies of an id share a shard, and a shard runs
 * one batch at a time (ParallelizationFactor 1), so nobody else writes a
 * batch's claims while it runs: claims are read in bulk (BatchGetItem, 100
 * keys a request) and written in bulk (BatchWriteItem, 25 a request), never a
 * conditional put per record. The same BatchGetItem reads the shard's progress
 * mark P (`speed / <shard>`, the position of the last record of the last
 * batch that completed: process.ts writes it after every speed item).
 *
 * Why a retry reaches the same decisions. Batches of a shard run in order;
 * every batch starts at or before P + 1 (a retry restarts at the failed batch's
 * first record; a re-created mapping starts earlier); every record <= P was
 * counted or dropped, and applied, by a batch that completed. So:
 *   1. a record with seq <= P is `redelivered`: its effects are all in the
 *      speed table already; it is neither counted nor claimed again;
 *   2. the first record r of an id past P whose predecessor is in the batch
 *      (a redelivered copy): its previous arrival is that copy's, exactly;
 *   3. otherwise r's predecessor is the latest copy <= P. A batch that
 *      completed wrote a claim for every copy it added, and claims never fall
 *      behind a completed batch (a writer adds copies past P only), so when
 *      the claim's latest copy is <= P (or on another shard: a parent shard is
 *      drained before its children) that copy is r's predecessor. When it is
 *      > P, the claim was written by an attempt that did not complete; every
 *      later batch starts at or before that attempt's first record and
 *      reaches this id's copies only through it, so r is the claim's
 *      `fromSeq` and its predecessor's arrival is `before`;
 *   4. from r on, the batch's copies are decided in (arrival, seq) order in
 *      memory, each against the one before it.
 * The decisions are thus a function of the shard's records alone, whatever
 * the attempt. The new claim (latest copy, `fromSeq` = r, `before`) may fall
 * behind the stored one when a shorter retry replays a longer failed attempt;
 * that is right, as the copies past it were never completed and the next
 * batch starts right after this one. A claim identical to the stored one is
 * not written again (a plain retry writes nothing).
 *
 * Positions. `seq` everywhere here is a record's position (`recordPosition`,
 * functions/core/record.ts): the padded sequence number, with `.` and the
 * padded sub-sequence number for a user record of a KPL aggregate, so string
 * order is (seq, subseq) order. P is the position of the batch's last event
 * (an aggregate's last user record), so every user record of a completed
 * batch is <= P and the argument above holds per user record.
 *
 * Any partition key. The batched path rests on all copies of an id sharing a
 * shard, true when the id is the partition key (`keyedById`: the record's, or
 * in an aggregate the user record's). A copy routed by another key may have
 * copies of its id on other shards, whose batches run concurrently. Such ids
 * (a copy keyed otherwise in the batch, or a claim already chained) take the
 * chained path instead: the claim keeps the id's latest CHAIN_MAX copies
 * (arrival, shard, position) with the decision taken when each was claimed,
 * and a version `v`; `decideChain` inserts the batch's new copies at their
 * (arrival, shard, seq) place and `claimChained` writes the claim with one
 * PutItem conditional on the version read (on a claim the batched path wrote:
 * on its latest copy and no version), per id and batch. Writers of one id thus
 * serialize: the one whose condition fails reads the claim again (strongly
 * consistent) and decides again, so each copy is decided against every copy
 * claimed before it, whatever shard claimed it, and no copy is claimed twice.
 * Retries: a copy <= P is redelivered as above; a copy past P already in the
 * chain was claimed by an attempt that did not complete and keeps that
 * decision (its deltas are applied now, once, by invariant 5), so a retry
 * reaches the same decisions whatever other shards claimed meanwhile; a copy
 * not in the chain is decided as new. When copies are claimed in their
 * (arrival, shard, seq) order, which holds whenever the shards keep up with
 * each other within the gaps between copies, each decision is the rule's. A
 * shard that lags can bring a copy older than one another shard already
 * counted within H after it: the rule moves the count to the older copy. The
 * lagging shard does that itself: its copy counts (if nothing within H before
 * it) and it applies a *retraction* of the later copy (`retraction`: the copy's
 * event, kept in the chain for every counted copy, aggregated with count and sums
 * negated, in the later copy's arrival window, in this shard's items at position
 * `<its position>~`, right after it), so its items' high-water marks apply it
 * exactly once; the chain marks the later copy `retractedBy` this copy, and a
 * retry of this shard emits the same retraction again while the later copy's own
 * shard keeps its decision (and applies its count once, as always): the two cancel.
 * Only the next copy can change (an insertion only brings its successor's
 * predecessor closer). min, max and sketches have no inverse and stay: copies
 * of an id are identical (a producer's retries), so the copy that counts
 * instead carries the same values and every merged answer is the rule's; copies
 * that differ keep the later copy's extremes and sketch in the speed part until a
 * batch covers it. A later copy whose event the chain does not hold (claimed by
 * the batched path, or over CHAIN_EVENT_MAX) keeps its count. The one race left:
 * an id-keyed copy's batched write (unconditional) landing on an id's first
 * chained claim, when one id is written both ways at the same moment
 * (docs/api.md, "Writing straight to Kinesis").
 *
 * Copies from outside the stream. A backfill's records never reach this
 * layer, but the batch orders them with the live ones (arrival T, pseudo-shard
 * `backfill-<hex>`), so before archiving them the backfill adds each to its
 * id's chain (`registerCopies`: the same conditional write and merge) and live
 * copies are decided against it like copies of another shard. Positions
 * compare within a shard only, so the pseudo-shard needs no progress mark.
 */
import {
  type AttributeValue,
  ConditionalCheckFailedException,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  type PutItemCommandInput,
} from '@aws-sdk/client-dynamodb';
import { batchGetAll, batchWriteAll } from '../adapters/batch-items.ts';
import { mapLimit } from '../core/limit.ts';
import type { RawRecord } from '../core/record.ts';
import { dedupExpiry, type Settings } from '../core/settings.ts';
import { TTL_ATTRIBUTE } from '../resources.ts';
import type { OutsideCopy } from './outside.ts';

/** Attempts at a claim whose version changes under its writer before the batch fails (and is retried whole). */
const MAX_ATTEMPTS = 8;

export interface Claim {
  /** Shard, padded sequence number and arrival (epoch ms) of the latest copy seen. */
  readonly shard: string;
  readonly seq: string;
  readonly arrival: number;
  /** Padded sequence number of the first copy the claim's writer added (undefined: a claim written before the horizon rule). */
  readonly fromSeq: string | undefined;
  /** Arrival of the copy just before `fromSeq` (undefined: none). */
  readonly before: number | undefined;
  /** A chained claim (ids with copies keyed otherwise than by their id): its copies, in (arrival, shard, seq) order. */
  readonly chain?: readonly ChainCopy[] | undefined;
  /** A chained claim's version: every conditional write moves it by one. */
  readonly version?: number | undefined;
}

/** One copy in a chained claim, with the decision taken when it was claimed. */
export interface ChainCopy {
  readonly arrival: number;
  readonly shard: string;
  /** Position (padded sequence number, or with the sub-sequence number of a user record of an aggregate). */
  readonly seq: string;
  /** The decision its shard took, and applies on every retry (a retraction never changes it). */
  readonly counted: boolean;
  /**
   * `<shard>|<position>` of the older copy whose late claim took this copy's count back (a shard
   * that lagged: "Any partition key" in the module comment); that copy's shard applies the retraction.
   */
  readonly retractedBy?: string | undefined;
  /** What a retraction needs of a counted live copy: its event as the speed layer read it. */
  readonly event?: ChainEvent | undefined;
  /** A copy from outside the stream (a backfill's): never applied by the speed layer. */
  readonly outside?: boolean | undefined;
}

/** The parts of a record a retraction re-aggregates (core/record.ts RawRecord, without its position). */
export interface ChainEvent {
  readonly type: string;
  readonly ts: number;
  readonly fields: Readonly<Record<string, string | null>>;
  readonly num: Readonly<Record<string, string>>;
}

/** Events larger than this (as JSON) are not kept in a chain: such a copy's count cannot be taken back. */
const CHAIN_EVENT_MAX = 4096;

/** `<shard>|<position>`: how a chain names one of its copies. */
const copyKey = (c: { shard: string; seq: string }) => `${c.shard}|${c.seq}`;

/**
 * The retraction of counted copy `target` by the older copy `by` of this shard: a record that
 * re-aggregates the target's event negated (count and sum taken back; min, max and sketches left, see
 * the module comment), at the target's arrival, in `by`'s shard's items, positioned right after
 * `by` (`<position>~` sorts after the position and before any later one), so the items' high-water
 * marks apply it exactly once.
 */
export function retraction(id: string, target: ChainCopy, by: RawRecord): RawRecord {
  const e = target.event!;
  return {
    id,
    type: e.type,
    ts: e.ts,
    fields: e.fields,
    num: e.num,
    arrival: target.arrival,
    shard: by.shard,
    seq: `${by.seq}~`,
    retract: true,
  };
}

/** A claim to store. */
export interface ClaimWrite extends Claim {
  readonly id: string;
}

export interface DedupIo {
  /** BatchGetItem / BatchWriteItem requests sent, retries of unprocessed parts included. */
  requests: number;
}

/** Where the shard's progress mark lives (control table, `speed / <shard>`). */
export interface ProgressKey {
  readonly table: string;
  readonly key: Record<string, AttributeValue>;
}

export interface ClaimsRead {
  readonly claims: Map<string, Claim>;
  /** The shard's progress mark: padded sequence number of the last record of the last completed batch. */
  readonly progress: string | undefined;
}

/**
 * Reads the claims of `ids`, and the shard's progress mark when `progress` is
 * given, in one pass of BatchGetItem (strongly consistent: what the previous
 * batch of the shard wrote must be seen). Expired claims are read like any
 * other (see the module comment). `horizonMs` dates a claim written before
 * the horizon rule, which has no arrival: its claim time (expiry - H), at or
 * after the copy's arrival.
 */
export async function readClaims(
  ddb: DynamoDBClient,
  table: string,
  ids: readonly string[],
  io: DedupIo,
  opts: { readonly horizonMs: number; readonly progress?: ProgressKey | undefined; readonly concurrency?: number },
): Promise<ClaimsRead> {
  const claims = new Map<string, Claim>();
  let progress: string | undefined;
  // The whole item: a claim holds nothing else, so a projection reads no less (nor fewer read units) and only
  // costs the emulator its evaluation per key.
  const keys = [...(opts.progress ? [opts.progress] : []), ...[...new Set(ids)].map((id) => ({ table, key: { id: { S: id } } }))];
  await batchGetAll(ddb, keys, {
    what: 'dedup: claim reads',
    concurrency: opts.concurrency ?? 8,
    io,
    onItems: (t, items) => {
      for (const item of items) {
        if (t === table) {
          const claim = parseClaim(item, opts.horizonMs);
          if (claim) claims.set(claim.id, claim);
        } else if (opts.progress && t === opts.progress.table) progress = item.seq?.S ?? progress;
      }
    },
  });
  return { claims, progress };
}

function parseClaim(item: Record<string, AttributeValue>, horizonMs: number): ClaimWrite | undefined {
  const id = item.id?.S;
  const shard = item.shard?.S;
  const seq = item.seq?.S;
  if (id === undefined || shard === undefined || seq === undefined) return undefined;
  const expiresAt = Number(item[TTL_ATTRIBUTE]?.N ?? Number.NaN);
  const arrival = item.arrival?.N !== undefined ? Number(item.arrival.N) : expiresAt * 1000 - horizonMs;
  if (!Number.isFinite(arrival)) return undefined;
  return {
    id,
    shard,
    seq,
    arrival,
    fromSeq: item.fromSeq?.S,
    before: item.before?.N !== undefined ? Number(item.before.N) : undefined,
    ...(item.copies?.L && { chain: item.copies.L.flatMap((v) => (v.S === undefined ? [] : [parseChainCopy(v.S)])) }),
    ...(item.v?.N !== undefined && { version: Number(item.v.N) }),
  };
}

/**
 * A chain copy as text: `<arrival>|<shard>|<position>|<0|1>` (the form before retractions), then
 * optional `|o` (outside), `|r=<shard>,<position>` (retracted by), and last `|e=<event json>` (JSON
 * may hold `|`; nothing before it holds `|e=`).
 */
export const parseChainCopy = (text: string): ChainCopy => {
  const at = text.indexOf('|e=');
  const head = (at < 0 ? text : text.slice(0, at)).split('|');
  const [arrival, shard, seq, counted] = head;
  const r = head.find((x, i) => i >= 4 && x.startsWith('r='));
  return {
    arrival: Number(arrival),
    shard: shard!,
    seq: seq!,
    counted: counted === '1',
    ...(head.slice(4).includes('o') && { outside: true }),
    ...(r !== undefined && { retractedBy: r.slice(2).replace(',', '|') }),
    ...(at >= 0 && { event: JSON.parse(text.slice(at + 3)) as ChainEvent }),
  };
};
export const chainCopyText = (c: ChainCopy) =>
  `${c.arrival}|${c.shard}|${c.seq}|${c.counted ? 1 : 0}` +
  (c.outside ? '|o' : '') +
  (c.retractedBy !== undefined ? `|r=${c.retractedBy.replace('|', ',')}` : '') +
  (c.event !== undefined ? `|e=${JSON.stringify(c.event)}` : '');

export interface Decision {
  /** Records that count: no other copy of their id arrived within H before them. */
  readonly counted: RawRecord[];
  /** Records that do not count: another copy of their id arrived within H before them. */
  readonly duplicates: RawRecord[];
  /** Records at or below the shard's progress mark: decided and applied by a batch that completed. */
  readonly redelivered: RawRecord[];
  /** Claims to store (those that differ from the stored ones). */
  readonly newClaims: ClaimWrite[];
}

const byArrivalSeq = (a: RawRecord, b: RawRecord) =>
  a.arrival !== b.arrival ? a.arrival - b.arrival : a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0;

/**
 * Decides every record of one shard's batch, given the stored claims of its
 * ids, the shard's progress mark and the ids' copies from outside the stream
 * (outside.ts; see the module comment). Pure: the same records, claims,
 * progress and outside copies give the same decision.
 */
export function decide(
  records: readonly RawRecord[],
  claims: ReadonlyMap<string, Claim>,
  horizonMs: number,
  progress?: string,
  outside?: ReadonlyMap<string, readonly OutsideCopy[]>,
): Decision {
  const byId = new Map<string, RawRecord[]>();
  for (const r of records) {
    const list = byId.get(r.id);
    if (list) list.push(r);
    else byId.set(r.id, [r]);
  }
  const counted = new Set<RawRecord>();
  const duplicates = new Set<RawRecord>();
  const redelivered = new Set<RawRecord>();
  const newClaims: ClaimWrite[] = [];
  for (const [id, copies] of byId) {
    copies.sort(byArrivalSeq);
    const claim = claims.get(id);
    let prev: number | undefined;
    let predecessorInBatch = false;
    let first: { seq: string; before: number | undefined } | undefined;
    let last: RawRecord | undefined;
    const extra = outside?.get(id);
    for (const r of copies) {
      if (progress !== undefined && r.seq <= progress) {
        redelivered.add(r);
        prev = r.arrival;
        predecessorInBatch = true;
        continue;
      }
      if (!first && !predecessorInBatch) prev = previousArrival(claim, r, progress);
      // A backfill's copy at or before r (at equal arrivals a pseudo-shard sorts first) may be nearer than the live one.
      if (extra) for (const o of extra) if (o.arrival <= r.arrival && (prev === undefined || o.arrival > prev)) prev = o.arrival;
      first ??= { seq: r.seq, before: prev };
      if (prev === undefined || r.arrival - prev > horizonMs) counted.add(r);
      else duplicates.add(r);
      prev = r.arrival;
      last = r;
    }
    if (!first || !last) continue;
    const next: ClaimWrite = { id, shard: last.shard, seq: last.seq, arrival: last.arrival, fromSeq: first.seq, before: first.before };
    if (!claim || !sameClaim(claim, next)) newClaims.push(next);
  }
  // In batch order, as the callers group and apply them.
  return {
    counted: records.filter((r) => counted.has(r)),
    duplicates: records.filter((r) => duplicates.has(r)),
    redelivered: records.filter((r) => redelivered.has(r)),
    newClaims,
  };
}

/** The arrival of the copy just before `r`, the id's first copy of the batch past the progress mark (case 3 of the module comment). */
function previousArrival(claim: Claim | undefined, r: RawRecord, progress: string | undefined): number | undefined {
  if (!claim) return undefined;
  // A claim from before the rule, from another (parent) shard, or whose latest copy completed: that copy.
  if (claim.fromSeq === undefined || claim.shard !== r.shard || (progress !== undefined && claim.seq <= progress)) return claim.arrival;
  // Written by an attempt that did not complete: this batch replays it from its first copy.
  if (r.seq === claim.fromSeq) return claim.before;
  // Not reachable while batches start at or before progress + 1; the latest copy is then the safe side.
  return claim.arrival;
}

const sameClaim = (a: Claim, b: Claim) =>
  a.shard === b.shard && a.seq === b.seq && a.arrival === b.arrival && a.fromSeq === b.fromSeq && a.before === b.before;

/**
 * Stores `claims` (plain puts: no other writer can race for these ids, see
 * the module comment), each expiring `dedupExpiry` after its latest arrival.
 * Throws when some stay unprocessed, so the batch fails before any delta is
 * applied and is retried whole.
 */
export async function writeClaims(
  ddb: DynamoDBClient,
  table: string,
  claims: readonly ClaimWrite[],
  settings: Pick<Settings, 'dedupHorizonSeconds'>,
  io: DedupIo,
  concurrency = 8,
): Promise<void> {
  await batchWriteAll(
    ddb,
    table,
    claims.map((c) => ({ PutRequest: { Item: claimItem(c, settings) } })),
    { what: 'dedup: claim writes', concurrency, io },
  );
}

/** The dedup table item of a claim. */
export function claimItem(c: ClaimWrite, settings: Pick<Settings, 'dedupHorizonSeconds'>): Record<string, AttributeValue> {
  return {
    id: { S: c.id },
    shard: { S: c.shard },
    seq: { S: c.seq },
    arrival: { N: String(c.arrival) },
    ...(c.fromSeq !== undefined && { fromSeq: { S: c.fromSeq } }),
    ...(c.before !== undefined && { before: { N: String(c.before) } }),
    [TTL_ATTRIBUTE]: { N: String(dedupExpiry(c.arrival, settings)) },
  };
}

// ---- ids keyed otherwise than by their id: chained claims, conditional writes ----------------------

/** Copies a chained claim keeps (the latest ones): enough for the retries and late shards met in practice. */
export const CHAIN_MAX = 32;

/** Is `r` routed by its event id? Unknown keys (records built by hand) are taken as keyed by id, as ingest writes them. */
export const keyedById = (r: RawRecord, partitionKey: string | undefined) => partitionKey === undefined || partitionKey === r.id;

const chainOrder = (a: { arrival: number; shard: string; seq: string }, b: { arrival: number; shard: string; seq: string }) =>
  a.arrival !== b.arrival
    ? a.arrival - b.arrival
    : a.shard !== b.shard
      ? a.shard < b.shard
        ? -1
        : 1
      : a.seq < b.seq
        ? -1
        : a.seq > b.seq
          ? 1
          : 0;

/** The copies a claim stands for: its chain, or the latest copy of a claim the batched path wrote (taken as counted). */
function chainOf(claim: Claim | undefined): ChainCopy[] {
  if (!claim) return [];
  if (claim.chain) return [...claim.chain].sort(chainOrder);
  return [{ arrival: claim.arrival, shard: claim.shard, seq: claim.seq, counted: true }];
}

export interface ChainDecision {
  readonly counted: RawRecord[];
  readonly duplicates: RawRecord[];
  readonly redelivered: RawRecord[];
  /** Counts taken back from later copies (`retraction`), to apply with the counted records. */
  readonly retractions: RawRecord[];
  /** The chain to store, or undefined when no copy was added (nothing to write). */
  readonly chain: ChainCopy[] | undefined;
}

/** The event of a record, as a chain keeps it (undefined when too large to keep). */
function chainEvent(r: RawRecord): ChainEvent | undefined {
  const e: ChainEvent = { type: r.type, ts: r.ts, fields: r.fields, num: r.num };
  return JSON.stringify(e).length <= CHAIN_EVENT_MAX ? e : undefined;
}

/**
 * Decides the copies of one id of a shard's batch against the id's chained
 * claim (pure; see the module comment, "Any partition key"): a copy at or
 * below the progress mark is redelivered; a copy already in the chain keeps
 * the decision taken when it was claimed (a retry), and re-emits the
 * retraction it made; any other copy is inserted at its (arrival, shard, seq)
 * place and counts iff the copy just before it is absent or arrived more than
 * H earlier. Its insertion can only bring the next copy's predecessor closer:
 * when that copy counted and is now within H after it (its shard claimed it
 * first, this shard lagged), its count is taken back by a retraction this
 * shard applies. A copy whose later copy's event is not kept (claimed
 * before retractions existed, or too large) cannot take its count back: then
 * the later copy keeps the count, as before. `outside`: the id's copies from
 * outside the stream (outside.ts), placed in the chain where the rule puts
 * them before anything is decided (kept in it once the chain is written);
 * never applied here, so a count they take from a later copy needs no
 * retraction and a count taken from them neither.
 */
export function decideChain(
  copies: readonly RawRecord[],
  claim: Claim | undefined,
  horizonMs: number,
  progress?: string,
  outside: readonly OutsideCopy[] = [],
): ChainDecision {
  const chain = chainOf(claim);
  for (const o of outside) {
    if (chain.some((c) => c.shard === o.shard && c.seq === o.seq)) continue;
    let at = chain.length;
    while (at > 0 && chainOrder(chain[at - 1]!, o) > 0) at--;
    const before = chain[at - 1];
    chain.splice(at, 0, { ...o, counted: before === undefined || o.arrival - before.arrival > horizonMs, outside: true });
  }
  const counted: RawRecord[] = [];
  const duplicates: RawRecord[] = [];
  const redelivered: RawRecord[] = [];
  const retractions: RawRecord[] = [];
  let added = false;
  for (const r of [...copies].sort(chainOrder)) {
    if (progress !== undefined && r.seq <= progress) {
      redelivered.push(r);
      continue;
    }
    const known = chain.find((c) => c.shard === r.shard && c.seq === r.seq);
    if (known) {
      (known.counted ? counted : duplicates).push(r);
      for (const t of chain) if (t.retractedBy === copyKey(r) && t.event) retractions.push(retraction(r.id, t, r));
      continue;
    }
    let at = chain.length;
    while (at > 0 && chainOrder(chain[at - 1]!, r) > 0) at--;
    const before = chain[at - 1];
    const after = chain[at];
    const byRule = before === undefined || r.arrival - before.arrival > horizonMs;
    // The next copy counts, and would not with this one before it: take its count back, or keep it there.
    const displaced = after?.counted === true && after.retractedBy === undefined && after.arrival - r.arrival <= horizonMs;
    const canRetract = displaced && (after.outside === true || after.event !== undefined);
    const isCounted = byRule && (!displaced || canRetract);
    if (canRetract) {
      chain[at] = { ...after, retractedBy: copyKey(r) };
      if (!after.outside) retractions.push(retraction(r.id, after, r));
    }
    const event = isCounted ? chainEvent(r) : undefined;
    chain.splice(at, 0, { arrival: r.arrival, shard: r.shard, seq: r.seq, counted: isCounted, ...(event && { event }) });
    (isCounted ? counted : duplicates).push(r);
    added = true;
  }
  return { counted, duplicates, redelivered, retractions, chain: added ? chain.slice(-CHAIN_MAX) : undefined };
}

/**
 * Claims the copies of ids keyed otherwise than by their id, one id at a
 * time, with a conditional PutItem on the claim's version (or, for a claim
 * the batched path wrote, on its latest copy): shards that race for an id
 * serialize, and the loser decides again on a fresh strongly consistent read.
 */
export async function claimChained(
  ddb: DynamoDBClient,
  table: string,
  byId: ReadonlyMap<string, readonly RawRecord[]>,
  claims: ReadonlyMap<string, Claim>,
  opts: {
    readonly horizonMs: number;
    readonly progress: string | undefined;
    readonly settings: Pick<Settings, 'dedupHorizonSeconds'>;
    readonly concurrency?: number;
    /** The ids' copies from outside the stream (outside.ts). */
    readonly outside?: ReadonlyMap<string, readonly OutsideCopy[]>;
  },
  io: DedupIo,
): Promise<{
  counted: Set<RawRecord>;
  duplicates: Set<RawRecord>;
  redelivered: Set<RawRecord>;
  /** Counts this shard takes back from later copies of other shards (`decideChain`), to apply. */
  retractions: RawRecord[];
  writes: number;
  /** Each id's chain as stored after its write (or as read, when nothing was added). */
  chains: Map<string, ChainCopy[]>;
}> {
  const out = {
    counted: new Set<RawRecord>(),
    duplicates: new Set<RawRecord>(),
    redelivered: new Set<RawRecord>(),
    retractions: [] as RawRecord[],
    writes: 0,
    chains: new Map<string, ChainCopy[]>(),
  };
  await mapLimit([...byId.entries()], opts.concurrency ?? 16, async ([id, copies]) => {
    let claim = claims.get(id);
    for (let attempt = 0; ; attempt++) {
      if (attempt >= MAX_ATTEMPTS)
        throw new Error(`dedup: the claim of ${id} still changing under its writer after ${MAX_ATTEMPTS} attempts`);
      const d = decideChain(copies, claim, opts.horizonMs, opts.progress, opts.outside?.get(id));
      if (d.chain) {
        const last = d.chain[d.chain.length - 1]!;
        const version = claim?.version ?? 0;
        const condition: Pick<PutItemCommandInput, 'ConditionExpression' | 'ExpressionAttributeNames' | 'ExpressionAttributeValues'> =
          !claim
            ? { ConditionExpression: 'attribute_not_exists(#id)', ExpressionAttributeNames: { '#id': 'id' } }
            : claim.version !== undefined
              ? {
                  ConditionExpression: '#v = :v',
                  ExpressionAttributeNames: { '#v': 'v' },
                  ExpressionAttributeValues: { ':v': { N: String(version) } },
                }
              : {
                  ConditionExpression: 'attribute_not_exists(#v) AND #shard = :shard AND #seq = :seq',
                  ExpressionAttributeNames: { '#v': 'v', '#shard': 'shard', '#seq': 'seq' },
                  ExpressionAttributeValues: { ':shard': { S: claim.shard }, ':seq': { S: claim.seq } },
                };
        try {
          io.requests++;
          await ddb.send(
            new PutItemCommand({
              TableName: table,
              Item: {
                id: { S: id },
                shard: { S: last.shard },
                seq: { S: last.seq },
                arrival: { N: String(last.arrival) },
                copies: { L: d.chain.map((c) => ({ S: chainCopyText(c) })) },
                v: { N: String(version + 1) },
                [TTL_ATTRIBUTE]: { N: String(dedupExpiry(last.arrival, opts.settings)) },
              },
              ...condition,
            }),
          );
          out.writes++;
        } catch (e) {
          if (!(e instanceof ConditionalCheckFailedException)) throw e;
          io.requests++;
          const got = await ddb.send(new GetItemCommand({ TableName: table, Key: { id: { S: id } }, ConsistentRead: true }));
          claim = got.Item ? parseClaim(got.Item, opts.horizonMs) : undefined;
          continue;
        }
      }
      for (const r of d.counted) out.counted.add(r);
      for (const r of d.duplicates) out.duplicates.add(r);
      for (const r of d.redelivered) out.redelivered.add(r);
      out.retractions.push(...d.retractions);
      out.chains.set(id, d.chain ?? chainOf(claim));
      return;
    }
  });
  return out;
}
