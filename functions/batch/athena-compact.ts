/**
 * Compaction on the Athena path (docs/batch-layer.md "Compaction", "Athena in AWS"): the steps the state machine
 * runs after a publish (functions/contract/state-machine.ts, states CompactPlan -> CompactHours (Map: CompactStart /
 * Wait / Poll / Stop -> CompactPut) -> CompactRecord). No Lambda reads or writes Parquet: per hour an Athena UNLOAD
 * writes it into a staging prefix of the results bucket, and a task copies the files under the hour's prefix of
 * compact/ and writes the `compacted / <hour>` item (compact.ts), as compactCovered does on DuckDB.
 *
 * What is checked where:
 * - the raw objects of an hour are checked one by one by the completeness check of the run that read them (the verify
 *   step, before the publish); that step keeps what it read per (hour, shard) in S3 (athena.ts verifiedHours);
 * - the plan compacts only hours that check read, and compares the archive manifest's lines per (hour, shard) now
 *   with those the check saw (a covered hour's manifest cannot change; a difference means something is wrong, and
 *   the hour is left alone);
 * - the item records per shard the lines the check read (every object of the hour, listed or not: what the UNLOAD
 *   reads), so each later run compares its Parquet counts per (hour, shard) with them (verify.ts).
 * A failure anywhere here never fails or un-publishes the run: the state machine catches it and the record step
 * writes it on the run item; the hour has no item, and a later run compacts it.
 */
import { CopyObjectCommand, DeleteObjectCommand } from '@aws-sdk/client-s3';
import { DeleteCommand, GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { HOUR_MS } from '../archive/layout.ts';
import { pad13 } from '../core/keys.ts';
import { iso } from '../core/time.ts';
import { compactUnloadSql, s3Location, type VerifiedHours } from './athena.ts';
import { COMPACTED_PK, type CompactedShard, compactHourPrefix, hoursToCompact, recordCompacted } from './compact.ts';
import { getRun, recordRunTimings, updateRun } from './control.ts';
import { athenaClients, type BatchContext, type CompiledQuery, compactFrom, listKeys, readObject } from './steps.ts';
import { readArchiveManifest } from './verify.ts';

/**
 * Hours one run compacts at most: a run normally covers one new hour; more only after failures or a long pause,
 * caught up this many at a time (the state machine's payload and the run's duration stay bounded).
 */
export const COMPACT_HOURS_PER_RUN = 24;

/** One hour to compact: its UNLOAD (head + attempt + tail), the staging prefix of its attempts, the counts of its item. */
export interface CompactHourTask {
  readonly hour: number;
  readonly location: string;
  readonly query: CompiledQuery;
  readonly shards: Readonly<Record<string, CompactedShard>>;
}

export interface CompactPlanInput {
  readonly runId: string;
  readonly cutoff: number;
  readonly database: string;
  /** The Glue table over raw/ (the UNLOAD reads the hour from it). */
  readonly table: string;
  readonly resultsLocation: string;
  /** What the run's completeness check read (verify step). */
  readonly verified: string;
}

export interface CompactPlanOutput {
  readonly hours: readonly CompactHourTask[];
  /** Hours left alone this run, with why (recorded as failed: a later run tries again). */
  readonly skipped: readonly { readonly hour: number; readonly error: string }[];
}

const label = (hour: number) => `${iso(hour).slice(0, 13)}h`;

/**
 * Picks the hours to compact after a publish at `cutoff`: the same rule as DuckDB's compactStep (covered whole by the
 * cutoff, from compactFrom on, not compacted yet, oldest first), among the hours the run's check read, at most
 * COMPACT_HOURS_PER_RUN; checks each against the archive manifest, and compiles its UNLOAD.
 */
export async function compactPlanStep(ctx: BatchContext, input: CompactPlanInput): Promise<CompactPlanOutput> {
  const { s3 } = athenaClients(ctx);
  const deps = { doc: ctx.doc, table: ctx.tables.control };
  const horizonMs = ctx.settings.dedupHorizonSeconds * 1000;
  const verified = JSON.parse(await readObject(s3, input.verified)) as VerifiedHours;
  if (verified.cutoff !== input.cutoff)
    throw new Error(`${input.verified} holds the check at cutoff ${verified.cutoff}, not the run's ${input.cutoff}`);
  const base = input.resultsLocation.endsWith('/') ? input.resultsLocation : `${input.resultsLocation}/`;
  const hours: CompactHourTask[] = [];
  const skipped: { hour: number; error: string }[] = [];
  for (const hour of await hoursToCompact(deps, input.cutoff, compactFrom(input.cutoff, horizonMs))) {
    if (hours.length >= COMPACT_HOURS_PER_RUN) break;
    // Outside the run's range (an increment reads H back): a run that reads it (any run within H, a rebuild) compacts it.
    const read = verified.hours[pad13(hour)];
    if (!read) continue;
    const recorded = new Map<string, number>();
    for (const e of await readArchiveManifest(ctx.doc, ctx.tables.control, hour + HOUR_MS, hour))
      recorded.set(e.shard, (recorded.get(e.shard) ?? 0) + e.lines);
    const changed = [...new Set([...recorded.keys(), ...Object.keys(read)])].find(
      (shard) => (recorded.get(shard) ?? 0) !== (read[shard]?.recorded ?? 0),
    );
    if (changed !== undefined) {
      const error =
        `${label(hour)}: the archive manifest records ${recorded.get(changed) ?? 0} records for ${changed}, ` +
        `the run's check saw ${read[changed]?.recorded ?? 0}`;
      skipped.push({ hour, error });
      continue;
    }
    const shards: Record<string, CompactedShard> = {};
    for (const [shard, s] of Object.entries(read)) shards[shard] = { lines: s.lines, recorded: s.recorded, objects: s.objects };
    const location = `${base}compact/${input.runId}/${pad13(hour)}/`;
    const query = { name: `compact-${pad13(hour)}`, ...compactUnloadSql(input.database, input.table, hour, location) };
    hours.push({ hour, location, query, shards });
  }
  return { hours, skipped };
}

export interface CompactPutInput {
  readonly runId: string;
  readonly hour: number;
  /** The prefix the successful UNLOAD attempt wrote (`<location>a<attempt>/`). */
  readonly location: string;
  readonly shards: Readonly<Record<string, CompactedShard>>;
  /** The raw bucket (compact/ is a prefix of it). */
  readonly rawBucket: string;
}

/** The object name of a staged file under the hour's prefix: Athena's own name, `.parquet` added (compact.ts parseCompactKey). */
export const compactFileName = (stagedKey: string): string => {
  const name = stagedKey.slice(stagedKey.lastIndexOf('/') + 1);
  return name.endsWith('.parquet') ? name : `${name}.parquet`;
};

/** Control-table partition key of the lease a put step holds on an hour while it replaces its files. */
export const COMPACTING_PK = 'compacting';

/** How long a put step's lease on an hour lasts: longer than one task may run (a Lambda's 15 minutes). */
export const COMPACT_LEASE_MS = 20 * 60_000;

/**
 * Puts an hour's UNLOAD output in place: deletes what its compact/ prefix holds (a crashed earlier attempt's files:
 * no item names them, so nothing reads them), copies the staged files there, then writes the hour's item. Retried, it
 * converges; once the item exists it does nothing (a run may be reading the files by then). The compaction runs
 * after the publish, without the batch lock, so two runs' puts of one hour could interleave their deletes and copies
 * and leave both file sets: a lease per hour (`compacting / <hour>`, taken conditionally, released at the end, lapsing
 * after COMPACT_LEASE_MS) lets one at a time do it; the other fails its hour, left to a later run.
 */
export async function compactPutStep(ctx: BatchContext, input: CompactPutInput): Promise<{ hour: number; files: number; bytes: number }> {
  const { s3 } = athenaClients(ctx);
  const deps = { doc: ctx.doc, table: ctx.tables.control };
  const done = await ctx.doc.send(
    new GetCommand({ TableName: ctx.tables.control, Key: { pk: COMPACTED_PK, sk: pad13(input.hour) }, ConsistentRead: true }),
  );
  if (done.Item) return { hour: input.hour, files: 0, bytes: Number(done.Item.bytes ?? 0) };
  const lease = { TableName: ctx.tables.control, Key: { pk: COMPACTING_PK, sk: pad13(input.hour) } };
  try {
    await ctx.doc.send(
      new PutCommand({
        TableName: ctx.tables.control,
        Item: { ...lease.Key, runId: input.runId, until: ctx.now() + COMPACT_LEASE_MS },
        ConditionExpression: 'attribute_not_exists(pk) OR #until < :now OR runId = :run',
        ExpressionAttributeNames: { '#until': 'until' },
        ExpressionAttributeValues: { ':now': ctx.now(), ':run': input.runId },
      }),
    );
  } catch (e) {
    if ((e as Error).name !== 'ConditionalCheckFailedException') throw e;
    throw new Error(`${label(input.hour)}: another run is putting this hour's files in place`);
  }
  try {
    const staged = (await listKeys(s3, input.location)).filter((f) => f.size > 0 && !f.key.endsWith('/'));
    const lines = Object.values(input.shards).reduce((n, s) => n + s.lines, 0);
    if (staged.length === 0 && lines > 0) throw new Error(`${label(input.hour)}: the UNLOAD left no file under ${input.location}`);
    const names = staged.map((f) => compactFileName(f.key));
    if (new Set(names).size !== names.length)
      throw new Error(`${label(input.hour)}: two staged files share a name under ${input.location}`);
    const prefix = compactHourPrefix(input.hour);
    for (const old of await listKeys(s3, `s3://${input.rawBucket}/${prefix}`))
      await s3.send(new DeleteObjectCommand({ Bucket: input.rawBucket, Key: old.key }));
    const from = s3Location(input.location).bucket;
    let bytes = 0;
    for (const [i, f] of staged.entries()) {
      const source = `${from}/${f.key.split('/').map(encodeURIComponent).join('/')}`;
      await s3.send(new CopyObjectCommand({ Bucket: input.rawBucket, Key: `${prefix}${names[i]}`, CopySource: source }));
      bytes += f.size;
    }
    await recordCompacted(deps, input.hour, { shards: input.shards, bytes }, ctx.now());
    return { hour: input.hour, files: staged.length, bytes };
  } finally {
    // Released whether it worked or not (a failed hour is retried at once by Step Functions, or by a later run).
    await ctx.doc
      .send(new DeleteCommand({ ...lease, ConditionExpression: 'runId = :run', ExpressionAttributeValues: { ':run': input.runId } }))
      .catch(() => undefined);
  }
}

export interface CompactRecordInput {
  readonly runId: string;
  /** Per hour of the Map: compacted, or its error (a readable message). */
  readonly results: readonly { readonly hour: number; readonly error?: string }[];
  readonly skipped: readonly { readonly hour: number; readonly error: string }[];
  /** Why the plan or the Map failed as a whole. */
  readonly error?: string;
}

/** Writes the compaction's outcome on the run item (`compaction`, `timings.compact`), as DuckDB's compactStep does. */
export async function compactRecordStep(ctx: BatchContext, input: CompactRecordInput): Promise<{ hours: number; failed: number }> {
  const c = { doc: ctx.doc, table: ctx.tables.control };
  const failed = [
    ...input.skipped,
    ...input.results.filter((r) => r.error !== undefined).map((r) => ({ hour: r.hour, error: `${label(r.hour)}: ${r.error}` })),
  ];
  const hours = input.results.filter((r) => r.error === undefined).length;
  const error = input.error ?? failed[0]?.error;
  await updateRun(c, input.runId, { compaction: { hours, failed: failed.length, ...(error !== undefined && { error }) } });
  for (const f of failed) console.error(`batch run ${input.runId}: compaction of ${f.error} (retried by a later run)`);
  if (input.error) console.error(`batch run ${input.runId}: compaction failed (retried by a later run): ${input.error}`);
  // Across Lambda invocations only wall clocks exist: from the publish to now.
  const finishedAt = (await getRun(c, input.runId))?.finishedAt;
  if (finishedAt !== undefined) await recordRunTimings(c, input.runId, { compact: Math.max(0, ctx.now() - finishedAt) });
  return { hours, failed: failed.length };
}
