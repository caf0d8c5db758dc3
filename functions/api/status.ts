/**
 * GET /status: what the control table says about both layers. A handful of
 * small reads: the pointer, the newest run items, the `speed / *`,
 * `checkpoint / *` and `stats / poison` items (one per shard each).
 */
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import type { ArchiveShard, LastRun, RunAnswer, SpeedShard, StatusAnswer } from '../contract/api.ts';
import type { Settings } from '../core/settings.ts';
import { emptyStats, num, queryAll, type ReadDeps, readPointer } from './read-view.ts';

type Item = Record<string, unknown>;

/** A stored time (epoch ms as a number or text, or ISO text) as ISO-8601; undefined when absent. */
export function isoTime(v: unknown): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  const text = String(v);
  const ms = /^\d+(\.\d+)?$/.test(text) ? Number(text) : Date.parse(text);
  return Number.isFinite(ms) ? new Date(ms).toISOString() : text;
}

const ms = (v: unknown): number | undefined => {
  const t = isoTime(v);
  return t === undefined ? undefined : Date.parse(t);
};

/** Plain JSON of an item: NumberValues to numbers (these are counts, times and timings, not metric states). */
function plain(v: unknown): unknown {
  if (v === null || v === undefined) return v;
  if (Array.isArray(v)) return v.map(plain);
  if (v instanceof Set) return [...v].map(plain);
  if (typeof v === 'object') {
    if (v.constructor?.name === 'NumberValue') return num(v);
    return Object.fromEntries(Object.entries(v as Item).map(([k, x]) => [k, plain(x)]));
  }
  return v;
}

const without = (item: Item, ...keys: string[]) => Object.fromEntries(Object.entries(item).filter(([k]) => !keys.includes(k)));

export interface StatusDeps extends Pick<ReadDeps, 'doc' | 'tables'> {
  readonly settings: Settings;
}

/** How many of the newest run items to look at for "the last run" (run ids sort by start time). */
const RECENT_RUNS = 10;

export async function readStatus(deps: StatusDeps, now: number): Promise<StatusAnswer> {
  const stats = emptyStats();
  const control = deps.tables.control;
  const partition = (pk: string, extra: { limit?: number; newestFirst?: boolean } = {}) =>
    queryAll(
      deps.doc,
      {
        TableName: control,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': pk },
        ConsistentRead: true,
        ...(extra.limit && { Limit: extra.limit }),
        ...(extra.newestFirst && { ScanIndexForward: false }),
      },
      stats,
      extra.limit,
    );
  const [pointer, runs, speed, checkpoints, poison] = await Promise.all([
    readPointer(deps),
    partition('run', { limit: RECENT_RUNS, newestFirst: true }),
    partition('speed'),
    partition('checkpoint'),
    deps.doc.send(new GetCommand({ TableName: control, Key: { pk: 'stats', sk: 'poison' }, ConsistentRead: true })).then((o) => o.Item),
  ]);
  const last = runs.map((r) => plain(r) as Item).sort((a, b) => (ms(b.startedAt) ?? 0) - (ms(a.startedAt) ?? 0))[0];
  const started = last && ms(last.startedAt);
  const finished = last && ms(last.finishedAt);
  return {
    now: new Date(now).toISOString(),
    batch: pointer && {
      version: pointer.version,
      cutoff: new Date(pointer.cutoff).toISOString(),
      lagSeconds: Math.max(0, Math.round((now - pointer.cutoff) / 1000)),
      ...(pointer.publishedAt && { publishedAt: isoTime(pointer.publishedAt) }),
      ...(pointer.runId && { runId: pointer.runId }),
    },
    // The same shape as GET /batch/runs/{id}, plus the run's duration.
    lastRun: last
      ? ({
          id: String(last.runId ?? last.sk),
          state: last.state as RunAnswer['state'],
          stage: last.stage as RunAnswer['stage'],
          startedAt: isoTime(last.startedAt) ?? null,
          finishedAt: isoTime(last.finishedAt) ?? null,
          durationMs: started !== undefined && finished !== undefined ? finished - started : null,
          version: (last.version ?? null) as number | null,
          cutoff: isoTime(last.cutoff) ?? null,
          previousCutoff: isoTime(last.previousCutoff) ?? null,
          views: (last.views ?? {}) as RunAnswer['views'],
          timings: (last.timings ?? {}) as RunAnswer['timings'],
          ...(last.archive !== undefined && { archive: last.archive as RunAnswer['archive'] }),
          ...(last.note !== undefined && { note: last.note as string }),
          ...(last.error !== undefined && { error: last.error as string }),
        } satisfies LastRun)
      : null,
    speed: {
      shards: speed.map((raw) => {
        const i = plain(raw) as Item;
        const arrival = ms(i.arrival);
        // The item's own attributes (seq, ...) in their order, times as ISO-8601.
        return {
          shard: String(i.sk),
          ...without(i, 'pk', 'sk', 'expiresAt'),
          ...(arrival !== undefined && { arrival: new Date(arrival).toISOString(), lagMs: Math.max(0, now - arrival) }),
          ...(i.updatedAt !== undefined && { updatedAt: isoTime(i.updatedAt) }),
        } as SpeedShard;
      }),
    },
    archive: {
      shards: checkpoints.map((raw) => {
        const i = plain(raw) as Item;
        return {
          shard: String(i.sk),
          ...without(i, 'pk', 'sk', 'expiresAt'),
          ...(i.arrival !== undefined && { arrival: isoTime(i.arrival) }),
          ...(i.updatedAt !== undefined && { updatedAt: isoTime(i.updatedAt) }),
        } as ArchiveShard;
      }),
    },
    windowSeconds: deps.settings.windowSeconds,
    dedupHorizonSeconds: deps.settings.dedupHorizonSeconds,
    maxBatchLagSeconds: deps.settings.maxBatchLagSeconds,
    poison: { count: poison?.count === undefined ? 0 : num(poison.count) },
  };
}
