/**
 * The cutoff planner (invariant 4 of docs/design.md: complete before cut).
 *
 * The batch may cover arrival < C only if every record with arrival < C is in
 * the archive. Per shard, the archive's checkpoint says "every record up to
 * `seq` is archived". Whether a shard holds anything past it is asked of the
 * stream itself (a probe: GetShardIterator AFTER_SEQUENCE_NUMBER, or
 * TRIM_HORIZON without a checkpoint, then GetRecords Limit 1):
 *
 * - nothing past the checkpoint: the shard is *idle* (or a drained closed
 *   parent): archived up to the moment the probe started, whatever the age of
 *   its checkpoint. A record arriving after the probe started gets a later
 *   arrival time, up to the timestamps' approximation, which the margin absorbs;
 * - a record past it: the shard is *lagging*, archived through just before that
 *   record, the first unarchived one. Its arrival bounds C. (It is at least the
 *   checkpoint's arrival, as arrival times grow along a shard; using it rather
 *   than the checkpoint's lets a shard that was quiet for hours, then got one
 *   record the archive has not seen yet, hold C back only to that record.)
 *
 * Backfills (functions/archive/backfill.ts) write records with one arrival
 * time T under a pseudo-shard, announced by a control item `backfill / <shard>`
 * written before their first object. One still `writing` counts as a shard
 * archived only up to T - 1 ms (it bounds C by T, like a shard lagging at T);
 * a `complete` one as an idle shard.
 *
 * C = min over shards of the bound, less the safety margin, floored to a
 * window; never below the published cutoff. The pure part, `computeCutoff`,
 * takes everything as data so a property test can drive it.
 */
import { GetRecordsCommand, GetShardIteratorCommand, type KinesisClient, ListShardsCommand, type Shard } from '@aws-sdk/client-kinesis';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { BACKFILL_PK, CHECKPOINT_PK, kinesisSeq } from '../archive/layout.ts';
import { padSeq } from '../core/record.ts';
import type { Settings } from '../core/settings.ts';
import { floorTo } from '../core/time.ts';

export interface Checkpoint {
  /** Arrival of the last archived record, epoch ms. */
  readonly arrival: number;
  /** Padded sequence number of the last archived record. */
  readonly seq: string;
}

/** What the stream holds past a shard's checkpoint: nothing, or the first record there. */
export type Probe = { readonly kind: 'empty' } | { readonly kind: 'record'; readonly arrival: number; readonly seq: string };

export interface ArchiveProgress {
  readonly shardId: string;
  /** Closed (a split or merge parent): it gets no new records. */
  readonly closed: boolean;
  readonly checkpoint?: Checkpoint | undefined;
  readonly probe: Probe;
}

/** A backfill's control item as the planner reads it. */
export interface BackfillBound {
  /** Its pseudo-shard, `backfill-<hex>`. */
  readonly shard: string;
  /** The arrival time of all its records, epoch ms. */
  readonly arrival: number;
  readonly state: 'writing' | 'complete';
}

export interface ShardBound {
  readonly shardId: string;
  readonly state: 'idle' | 'lagging';
  /** Arrival time (epoch ms) before which everything of this shard is archived. */
  readonly bound: number;
}

export interface CutoffPlan {
  /** The cutoff to use: window-aligned, never below the published one. */
  readonly cutoff: number;
  /** The published cutoff (null before the first publish). */
  readonly previous: number | null;
  /** True when the cutoff passes the published one (else the run publishes nothing). */
  readonly advanced: boolean;
  /** The cutoff the archive alone allows (before the never-backwards rule). */
  readonly candidate: number;
  readonly shards: readonly ShardBound[];
  /** The shard that bounds the cutoff (undefined when every shard is idle). */
  readonly limitedBy?: string | undefined;
}

export interface CutoffInput {
  readonly shards: readonly ArchiveProgress[];
  /** When the probes started, epoch ms. */
  readonly now: number;
  readonly settings: Pick<Settings, 'windowSeconds' | 'cutoffMarginSeconds'>;
  /** The published cutoff, null before the first publish. */
  readonly published: number | null;
  /** The backfills' control items: one still writing bounds C by its arrival time. */
  readonly backfills?: readonly BackfillBound[] | undefined;
}

/** The pure planner: see the module comment. */
export function computeCutoff(input: CutoffInput): CutoffPlan {
  const shards: ShardBound[] = input.shards.map((s) =>
    s.probe.kind === 'empty'
      ? { shardId: s.shardId, state: 'idle', bound: input.now }
      : { shardId: s.shardId, state: 'lagging', bound: s.probe.arrival },
  );
  for (const b of input.backfills ?? [])
    shards.push(
      b.state === 'complete'
        ? { shardId: b.shard, state: 'idle', bound: input.now }
        : { shardId: b.shard, state: 'lagging', bound: b.arrival },
    );
  let limit = input.now;
  let limitedBy: string | undefined;
  for (const s of shards) {
    if (s.state === 'lagging' && s.bound < limit) {
      limit = s.bound;
      limitedBy = s.shardId;
    }
  }
  const candidate = floorTo(limit - input.settings.cutoffMarginSeconds * 1000, input.settings.windowSeconds * 1000);
  const previous = input.published;
  const advanced = previous === null ? candidate > 0 : candidate > previous;
  return {
    cutoff: previous === null ? candidate : Math.max(candidate, previous),
    previous,
    advanced,
    candidate,
    shards,
    limitedBy,
  };
}

// ---- gathering the inputs -----------------------------------------------------------------------

export async function listShards(kinesis: KinesisClient, streamName: string): Promise<Shard[]> {
  const out: Shard[] = [];
  let token: string | undefined;
  do {
    // With NextToken, ListShards refuses StreamName.
    const page = await kinesis.send(new ListShardsCommand(token ? { NextToken: token } : { StreamName: streamName }));
    out.push(...(page.Shards ?? []));
    token = page.NextToken;
  } while (token);
  return out;
}

/** Every item of one control-table partition, read consistently, page by page. */
async function partitionItems(doc: DynamoDBDocumentClient, table: string, pk: string): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  let start: Record<string, unknown> | undefined;
  do {
    const page = await doc.send(
      new QueryCommand({
        TableName: table,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': pk },
        ConsistentRead: true,
        ExclusiveStartKey: start,
      }),
    );
    out.push(...(page.Items ?? []));
    start = page.LastEvaluatedKey;
  } while (start);
  return out;
}

export async function readCheckpoints(doc: DynamoDBDocumentClient, table: string): Promise<Map<string, Checkpoint>> {
  const out = new Map<string, Checkpoint>();
  for (const item of await partitionItems(doc, table, CHECKPOINT_PK))
    out.set(String(item.sk), { arrival: Number(item.arrival), seq: String(item.seq) });
  return out;
}

/**
 * The backfills' control items `backfill / *` (functions/archive/backfill.ts). One still
 * `registering` its ids has no T yet and bounds nothing: the T it takes is at least the
 * published cutoff and 15 s past its own clock, so later than any C a run that did not see it cuts.
 */
export async function readBackfills(doc: DynamoDBDocumentClient, table: string): Promise<BackfillBound[]> {
  return (await partitionItems(doc, table, BACKFILL_PK))
    .filter((item) => item.state !== 'registering' && item.arrival !== undefined)
    .map((item) => ({
      shard: String(item.sk),
      arrival: Number(item.arrival),
      state: item.state === 'complete' ? 'complete' : 'writing',
    }));
}

/** Most GetRecords calls a probe follows through empty pages (sparse or trimmed shards). */
const MAX_PROBE_PAGES = 20;

/**
 * Asks the stream for the first record past a checkpoint. GetRecords may
 * answer an empty page while records lie further on (a long trimmed or sparse
 * stretch), so the probe follows the iterator until it finds a record, reaches
 * the tip (MillisBehindLatest 0) or the end of a closed shard.
 */
export async function probeShard(
  kinesis: KinesisClient,
  streamName: string,
  shardId: string,
  checkpoint: Checkpoint | undefined,
): Promise<Probe> {
  let iterator: string | undefined;
  try {
    const it = await kinesis.send(
      new GetShardIteratorCommand(
        checkpoint
          ? {
              StreamName: streamName,
              ShardId: shardId,
              ShardIteratorType: 'AFTER_SEQUENCE_NUMBER',
              StartingSequenceNumber: kinesisSeq(checkpoint.seq),
            }
          : { StreamName: streamName, ShardId: shardId, ShardIteratorType: 'TRIM_HORIZON' },
      ),
    );
    iterator = it.ShardIterator;
  } catch (e) {
    // A checkpoint older than the retention period: everything left is past it.
    if (checkpoint && (e as Error).name === 'InvalidArgumentException') return probeShard(kinesis, streamName, shardId, undefined);
    throw e;
  }
  for (let page = 0; iterator && page < MAX_PROBE_PAGES; page++) {
    const got = await kinesis.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 1 }));
    const r = got.Records?.[0];
    if (r?.SequenceNumber) {
      return { kind: 'record', arrival: r.ApproximateArrivalTimestamp?.getTime() ?? 0, seq: padSeq(r.SequenceNumber) };
    }
    if (got.MillisBehindLatest === 0 || !got.NextShardIterator) return { kind: 'empty' };
    iterator = got.NextShardIterator;
  }
  if (!iterator) return { kind: 'empty' };
  throw new Error(`probing ${shardId}: no record and not at the tip after ${MAX_PROBE_PAGES} GetRecords calls`);
}

/**
 * Reads shards, checkpoints, backfill items and probes; `now` is taken after the
 * backfill items are read (a backfill that writes its item later takes its T
 * later, up to the margin) and before the first probe.
 */
export async function gatherArchiveProgress(deps: {
  kinesis: KinesisClient;
  doc: DynamoDBDocumentClient;
  streamName: string;
  controlTable: string;
  now: () => number;
}): Promise<{ now: number; shards: ArchiveProgress[]; backfills: BackfillBound[] }> {
  const [shards, checkpoints, backfills] = await Promise.all([
    listShards(deps.kinesis, deps.streamName),
    readCheckpoints(deps.doc, deps.controlTable),
    readBackfills(deps.doc, deps.controlTable),
  ]);
  const now = deps.now();
  const progress = await Promise.all(
    shards.map(async (s): Promise<ArchiveProgress> => {
      const shardId = s.ShardId!;
      const checkpoint = checkpoints.get(shardId);
      return {
        shardId,
        closed: s.SequenceNumberRange?.EndingSequenceNumber !== undefined,
        checkpoint,
        probe: await probeShard(deps.kinesis, deps.streamName, shardId, checkpoint),
      };
    }),
  );
  return { now, shards: progress, backfills };
}
