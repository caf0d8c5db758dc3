/**
 * Triage of a failed check: where each acknowledged event is in every store
 * (the stream, the dedup claims, the speed table, the raw archive) relative to
 * the published cutoff, so a log says which layer lost or doubled what.
 * Read-only; runs after the failure, before the world is torn down.
 */

import { gunzipSync } from 'node:zlib';
import { type AttributeValue, ScanCommand } from '@aws-sdk/client-dynamodb';
import { GetRecordsCommand, GetShardIteratorCommand, ListShardsCommand } from '@aws-sdk/client-kinesis';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { deaggregateRecord, isAggregated } from '../../functions/adapters/kpl.ts';
import { storedCells } from '../support/speed.ts';
import type { World } from './harness.ts';

export interface StreamEntry {
  readonly shard: string;
  readonly seq: string;
  readonly partitionKey: string;
  readonly arrival: number;
  /**
   * The event ids the record carries: its own (partition key is not always the id: direct
   * producers key by user), or each user record's of a KPL aggregate; none for what is not an event.
   */
  readonly ids: readonly string[];
}

/** The `id` of an event's JSON, if the data is one. */
function idOf(data: Uint8Array): string[] {
  try {
    const e = JSON.parse(Buffer.from(data).toString('utf8')) as { id?: unknown };
    return typeof e?.id === 'string' ? [e.id] : [];
  } catch {
    return [];
  }
}

/** The ids in a record's data: one event, or a KPL aggregate's user records (decoded as the consumers decode them). */
function idsOf(data: Uint8Array, seq: string, partitionKey: string): string[] {
  if (!isAggregated(data)) return idOf(data);
  const d = deaggregateRecord(data, seq, partitionKey);
  return d.ok ? d.records.flatMap((u) => (u.ok ? idOf(u.data) : [])) : [];
}

/**
 * Every record the stream holds, with the ids its data carries when it can be read (poison
 * records are not JSON: they carry none; test/support/api.ts `readStream` parses every record).
 */
export async function streamEntries(w: World): Promise<StreamEntry[]> {
  const k = w.clients.kinesis;
  const shards = (await k.send(new ListShardsCommand({ StreamName: w.config.streamName }))).Shards ?? [];
  const out: StreamEntry[] = [];
  for (const s of shards) {
    let iterator = (
      await k.send(new GetShardIteratorCommand({ StreamName: w.config.streamName, ShardId: s.ShardId!, ShardIteratorType: 'TRIM_HORIZON' }))
    ).ShardIterator;
    while (iterator) {
      const got = await k.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 10_000 }));
      for (const r of got.Records ?? [])
        out.push({
          shard: s.ShardId!,
          seq: r.SequenceNumber!,
          partitionKey: r.PartitionKey!,
          arrival: r.ApproximateArrivalTimestamp!.getTime(),
          ids: idsOf(r.Data ?? new Uint8Array(), r.SequenceNumber!, r.PartitionKey!),
        });
      if ((got.Records?.length ?? 0) === 0) break;
      iterator = got.NextShardIterator;
    }
  }
  return out;
}

async function scan(w: World, table: string): Promise<Record<string, AttributeValue>[]> {
  const out: Record<string, AttributeValue>[] = [];
  let start: Record<string, AttributeValue> | undefined;
  do {
    const page = await w.clients.dynamodb.send(
      new ScanCommand({ TableName: table, ConsistentRead: true, ...(start && { ExclusiveStartKey: start }) }),
    );
    out.push(...(page.Items ?? []));
    start = page.LastEvaluatedKey;
  } while (start);
  return out;
}

async function archived(w: World): Promise<Map<string, { shard: string; seq: string; arrival: number; key: string }[]>> {
  const out = new Map<string, { shard: string; seq: string; arrival: number; key: string }[]>();
  let token: string | undefined;
  do {
    const page = await w.clients.s3.send(
      new ListObjectsV2Command({ Bucket: w.config.buckets.raw, Prefix: 'raw/', ...(token && { ContinuationToken: token }) }),
    );
    for (const o of page.Contents ?? []) {
      const obj = await w.clients.s3.send(new GetObjectCommand({ Bucket: w.config.buckets.raw, Key: o.Key! }));
      const text = gunzipSync(Buffer.from(await obj.Body!.transformToByteArray())).toString('utf8');
      for (const line of text.split('\n')) {
        if (!line) continue;
        const r = JSON.parse(line) as { id: string; shard: string; seq: string; arrival: number };
        out.set(r.id, [
          ...(out.get(r.id) ?? []),
          { shard: r.shard, seq: r.seq, arrival: r.arrival, key: o.Key!.split('/').slice(-2).join('/') },
        ]);
      }
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out;
}

const iso = (ms: number) => new Date(ms).toISOString().slice(11, 23);

/** Lines describing where the events of `ids` are (all acknowledged ids of a type, typically). */
export async function diagnose(w: World, ids: readonly string[], maxLines = 60): Promise<string[]> {
  const lines: string[] = [];
  const control = await scan(w, w.config.tables.control);
  const pointer = control.find((i) => i.pk?.S === 'pointer');
  const cutoff = pointer ? Number(pointer.cutoff?.N) : null;
  lines.push(`pointer: ${pointer ? `v${pointer.version?.N} cutoff ${iso(cutoff!)}` : 'none'}`);
  for (const i of control) {
    if (i.pk?.S === 'checkpoint' || i.pk?.S === 'speed')
      lines.push(`${i.pk.S} ${i.sk?.S}: seq …${i.seq?.S?.slice(-8)} arrival ${iso(Number(i.arrival?.N))}`);
    if (i.pk?.S === 'archive')
      lines.push(`manifest ${i.sk?.S}: ${(i.objects?.SS ?? []).map((e) => `…${e.slice(58, 64)}-…${e.slice(123)}`).join(' ')}`);
    if (i.pk?.S === 'version') lines.push(`version ${i.version?.N}: ${i.state?.S} cutoff ${iso(Number(i.cutoff?.N))} run ${i.runId?.S}`);
  }
  const stream = await streamEntries(w);
  const claims = new Map(
    (await scan(w, w.config.tables.dedup)).map((i) => [i.id?.S ?? '', { shard: i.shard?.S ?? '', seq: i.seq?.S ?? '' }]),
  );
  const arch = await archived(w);
  const windowMs = w.config.settings.windowSeconds * 1000;
  let shown = 0;
  for (const id of ids) {
    const copies = stream.filter((r) => r.partitionKey === id || r.ids.includes(id)).sort((a, b) => a.arrival - b.arrival);
    const claim = claims.get(id);
    const a = arch.get(id) ?? [];
    const first = copies[0];
    const firstWindow = first ? Math.floor(first.arrival / windowMs) * windowMs : undefined;
    const layer = first === undefined ? 'NOT IN STREAM' : cutoff !== null && first.arrival < cutoff ? 'batch' : 'speed';
    const claimed = claim ? copies.find((c) => c.seq.padStart(64, '0') === claim.seq) : undefined;
    const problem =
      layer === 'batch' && a.length === 0
        ? ' <- covered by the cut but not archived'
        : layer === 'speed' && !claim
          ? ' <- after the cut but never claimed by the speed layer'
          : claim && !claimed
            ? ' <- claimed by a copy that is not in the stream'
            : claimed && firstWindow !== undefined && claimed !== first
              ? ' <- the speed layer claimed a later copy'
              : '';
    if (problem === '' && shown >= maxLines / 2) continue;
    shown++;
    const where = copies.map((c) => `${c.shard.slice(-2)}/…${c.seq.slice(-6)}@${iso(c.arrival)}`).join(', ');
    lines.push(
      `${id}: ${copies.length} cop${copies.length === 1 ? 'y' : 'ies'} [${where}] ` +
        `claim ${claim ? `${claim.shard.slice(-2)}/…${claim.seq.slice(-6)}` : '-'} archived ${a.length}× layer ${layer}${problem}`,
    );
  }
  const speed = await scan(w, w.config.tables.speed);
  const byWindow = new Map<string, number>();
  for (const i of speed) {
    if (i.view?.S !== 'events_by_type') continue;
    for (const cell of storedCells(i)) {
      const k = `${iso(Number(i.window?.N))} ${i.shard?.S?.slice(-2)} ${JSON.stringify(cell.dims)}`;
      byWindow.set(k, (byWindow.get(k) ?? 0) + Number(cell.columns.records ?? 0));
    }
  }
  lines.push(
    `speed items of events_by_type (window shard dims: records): ${[...byWindow.entries()]
      .sort()
      .map(([k, v]) => `${k}: ${v}`)
      .join('; ')}`,
  );
  return lines.slice(0, maxLines + 20);
}
