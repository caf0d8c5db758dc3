/**
 * Backfill (functions/archive/backfill.ts, `tandem backfill`) against one local
 * cloud (emulators, both pollers, the real handlers behind the HTTP server):
 * rejections with file, line and field in the rejects file; re-running the same
 * files adds nothing (same keys, same bytes, the batch answer unchanged); a
 * backfill that crashes after some objects holds the planner back at its arrival
 * time until a re-run completes it with the same keys; and a merged query over
 * backfilled plus live events equals the oracle over the copies that count,
 * before a batch passes the backfill (it is not shown yet) and after (it is, once).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Clients, createClients } from '../../functions/adapters/clients.ts';
import { backfillId, objectRanges, readBackfill, runBackfill } from '../../functions/archive/backfill.ts';
import { OBJECT_MANIFEST_PK, objectManifestSk, rawObjectKey } from '../../functions/archive/layout.ts';
import { computeCutoff, gatherArchiveProgress } from '../../functions/batch/planner.ts';
import { type Config, loadConfig } from '../../functions/config.ts';
import { idSetBucket, idSetBuckets } from '../../functions/core/backfill-ids.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { padSeq } from '../../functions/core/record.ts';
import { type LocalCloud, startLocalCloud } from '../../local/cloud.ts';
import { REPO_ROOT } from '../../local/runtime.ts';
import { allIds, backfillDeps, readIdSets } from '../support/backfill.ts';
import { oracleRows } from '../support/oracle.ts';

const KEY = 'backfill-key-0123456789';
const HOUR = 3_600_000;
const DAY = 86_400_000;
const PAGES = ['/', '/pricing', '/docs'];
const COUNTRIES = ['US', 'DE', 'JP'];

let cloud: LocalCloud;
let clients: Clients;
let config: Config;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tandem-backfill-'));
  cloud = await startLocalCloud({
    port: 0,
    demo: false,
    batchEverySeconds: null,
    windowSeconds: 1,
    dataDir: join(dir, 'data'),
    apiKey: KEY,
    mappings: { speed: { maxBatchingWindowMs: 0, pollIntervalMs: 100 }, archive: { maxBatchingWindowMs: 200, pollIntervalMs: 250 } },
    logger: { info: () => undefined, warn: () => undefined, error: (m, ...x) => console.error(m, ...x) },
  });
  clients = createClients(process.env);
  config = loadConfig(process.env);
});
afterAll(async () => {
  for (const c of Object.values(clients ?? {})) c.destroy();
  await cloud?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Every copy written to the stream or the archive, in (arrival, shard, seq) order: phases never overlap. */
const copies: { id: string; event: Record<string, unknown>; backfill: string | null }[] = [];

/** The events that count: the first copy of each id (no copy here is resent beyond the dedup horizon). */
function counted(exclude: readonly string[] = []): Record<string, unknown>[] {
  const seen = new Set<string>();
  const out: Record<string, unknown>[] = [];
  for (const c of copies) {
    if (c.backfill !== null && exclude.includes(c.backfill)) continue;
    if (seen.has(c.id)) continue;
    seen.add(c.id);
    out.push({ ...c.event, id: c.id });
  }
  return out;
}

/** Records what a backfill of these (valid) events archived: ids as the backfill assigns them. */
function recordBackfill(events: readonly Record<string, unknown>[], shard: string): void {
  events.forEach((e, i) => {
    copies.push({ id: typeof e.id === 'string' ? e.id : backfillId(shard, i), event: e, backfill: shard });
  });
}

let seq = 0;
function makeEvents(n: number, prefix: string, opts: { withoutId?: number; now?: number } = {}): Record<string, unknown>[] {
  const now = opts.now ?? Date.now();
  return Array.from({ length: n }, (_, i) => {
    const k = seq++;
    const ts = new Date(now - ((k * 7919) % (3 * HOUR)) - (k % 10 === 0 ? DAY : 0)).toISOString();
    const kind = k % 5;
    const e: Record<string, unknown> =
      kind < 3
        ? { type: 'page_view', ts, page: PAGES[k % 3], country: COUNTRIES[k % 2], load_ms: 100 + (k % 400) }
        : kind === 3
          ? { type: 'purchase', ts, country: COUNTRIES[k % 3], amount: (((k * 37) % 20_000) + 100) / 100 }
          : { type: 'signup', ts, country: COUNTRIES[(k + 1) % 3], plan: 'free' };
    return i < (opts.withoutId ?? 0) ? e : { id: `${prefix}-${k}`, ...e };
  });
}

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(`${cloud.url}${path}`, {
    method,
    headers: { 'x-api-key': KEY, ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

/** Runs batches (as POST /batch/runs does) until one publishes a cutoff past `t`. */
async function batchPast(t: number): Promise<{ version: number; cutoff: number }> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const started = await api('POST', '/batch/runs', {});
    expect(started.status).toBe(202);
    let run: Record<string, unknown>;
    do {
      await new Promise((r) => setTimeout(r, 200));
      run = (await api('GET', `/batch/runs/${started.body.id}`)).body;
    } while (!['SUCCEEDED', 'FAILED', 'SKIPPED'].includes(String(run.state)));
    expect(run.state, String(run.error)).not.toBe('FAILED');
    if (run.state === 'SUCCEEDED' && Date.parse(String(run.cutoff)) > t)
      return { version: Number(run.version), cutoff: Date.parse(String(run.cutoff)) };
    if (Date.now() > deadline) throw new Error(`no batch run passed ${new Date(t).toISOString()}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function listRaw(shard: string): Promise<{ key: string; etag: string }[]> {
  const out: { key: string; etag: string }[] = [];
  let token: string | undefined;
  do {
    const page = await clients.s3.send(
      new ListObjectsV2Command({ Bucket: config.buckets.raw, Prefix: 'raw/', ...(token && { ContinuationToken: token }) }),
    );
    for (const o of page.Contents ?? []) if (o.Key!.includes(`/${shard}/`)) out.push({ key: o.Key!, etag: o.ETag! });
    token = page.NextContinuationToken;
  } while (token);
  return out.sort((a, b) => a.key.localeCompare(b.key));
}

/** Every demo view over a wide range at hour grain: the merged answer and the oracle's. */
async function expectMerged(events: Record<string, unknown>[]): Promise<void> {
  await cloud.idle(['speed']);
  const now = Date.now();
  const from = new Date(Math.floor((now - 3 * DAY) / DAY) * DAY).toISOString();
  const to = new Date(Math.ceil((now + HOUR) / DAY) * DAY).toISOString();
  for (const view of DEMO_VIEWS) {
    const params = new URLSearchParams({ from, to, grain: 'hour' });
    const res = await api('GET', `/views/${view.name}?${params}`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const spec = {
      from: Date.parse(String(res.body.from)),
      to: Date.parse(String(res.body.to)),
      grain: 'hour' as const,
      groupBy: view.dimensions,
    };
    expect(res.body.rows, view.name).toEqual(oracleRows(view, events, spec));
  }
}

/** The CLI as a child process, asynchronously: the local cloud it talks to runs in this process. */
function cli(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [join(REPO_ROOT, 'bin/tandem.js'), ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((res) => child.once('close', (status) => res({ status, stdout, stderr })));
}

describe('tandem backfill', () => {
  let first: { shard: string; arrival: number };
  const arrivals: number[] = [];

  it('archives NDJSON and gzip files, writes rejections with file, line and field, and a re-run adds nothing', async () => {
    const good = makeEvents(150, 'f', { withoutId: 20 });
    // A copy inside the file (same id, same body): archived twice, counted once.
    const withCopy = [...good.slice(0, 100), good[60]!, ...good.slice(100)];
    const bad = [
      { id: 'bad-1', type: 'purchase', ts: new Date().toISOString(), amount: '12.50' },
      { id: 'bad-2', ts: new Date().toISOString() },
    ];
    const a = [...withCopy.slice(0, 50), bad[0], ...withCopy.slice(50, 100)].map((e) => JSON.stringify(e));
    a.splice(10, 0, '{not json');
    const b = [...withCopy.slice(100), bad[1]].map((e) => JSON.stringify(e));
    writeFileSync(join(dir, 'a.ndjson.gz'), gzipSync(`${a.join('\n')}\n`));
    writeFileSync(join(dir, 'b.ndjson'), `${b.join('\n')}\n`);
    const args = [
      'backfill',
      'a.ndjson.gz',
      'b.ndjson',
      '--no-batch',
      '--json',
      '--rejected',
      'bad.ndjson',
      '--data-dir',
      join(dir, 'data'),
    ];

    const r1 = await cli(args);
    expect(r1.status, r1.stderr).toBe(1);
    const s1 = JSON.parse(r1.stdout) as Record<string, unknown>;
    expect(s1).toMatchObject({
      outcome: 'written',
      events: 154,
      accepted: 151,
      rejected: 3,
      rejectedFile: 'bad.ndjson',
      objects: 1,
      // Each id once (the copy inside the file is the same id), in ceil(151 / 100) id sets.
      claims: 150,
      idSets: 2,
      run: null,
    });
    const rejects = readFileSync(join(dir, 'bad.ndjson'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rejects.map(({ file, line, field }) => ({ file, line, field }))).toEqual([
      { file: 'a.ndjson.gz', line: 11, field: null },
      { file: 'a.ndjson.gz', line: 52, field: 'amount' },
      { file: 'b.ndjson', line: 52, field: 'type' },
    ]);
    expect(String(rejects[1]!.message)).toMatch(/must be a number/);
    first = { shard: String(s1.shard), arrival: Date.parse(String(s1.arrival)) };
    arrivals.push(first.arrival);
    expect(first.shard).toMatch(/^backfill-[0-9a-f]{16}$/);
    recordBackfill(withCopy, first.shard);
    const objects = await listRaw(first.shard);
    expect(objects.map((o) => o.key)).toEqual([rawObjectKey(first.shard, first.arrival, padSeq('0'), padSeq('150'))]);
    expect(await readBackfill(clients.dynamodb, config.tables.control, first.shard)).toMatchObject({ state: 'complete', records: 151 });

    const r2 = await cli(args);
    expect(r2.status, r2.stderr).toBe(1);
    expect(JSON.parse(r2.stdout)).toMatchObject({ outcome: 'already-complete', shard: first.shard, arrival: s1.arrival, accepted: 151 });
    expect(await listRaw(first.shard)).toEqual(objects);
  });

  it('--no-claims archives the same way but registers no id with the speed layer', async () => {
    const events = makeEvents(40, 'n');
    writeFileSync(join(dir, 'n.ndjson'), `${events.map((e) => JSON.stringify(e)).join('\n')}\n`);
    const r = await cli(['backfill', 'n.ndjson', '--no-batch', '--no-claims', '--json', '--data-dir', join(dir, 'data')]);
    expect(r.status, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(s).toMatchObject({ outcome: 'written', accepted: 40, claims: 0, objects: 1 });
    recordBackfill(events, String(s.shard));
    arrivals.push(Date.parse(String(s.arrival)));
    const idSet = async (shard: string) => (await readIdSets(clients.dynamodb, config.tables.control, shard, 1)).get(0);
    expect(await readBackfill(clients.dynamodb, config.tables.control, String(s.shard))).toMatchObject({ buckets: undefined });
    expect(await idSet(String(s.shard))).toBeUndefined();
    // The same kind of file registered (without the flag) does get its id sets: the lookup above can see one.
    const withClaims = makeEvents(5, 'y');
    writeFileSync(join(dir, 'y.ndjson'), `${withClaims.map((e) => JSON.stringify(e)).join('\n')}\n`);
    const r2 = await cli(['backfill', 'y.ndjson', '--no-batch', '--json', '--data-dir', join(dir, 'data')]);
    expect(r2.status, r2.stderr).toBe(0);
    const s2 = JSON.parse(r2.stdout) as Record<string, unknown>;
    expect(s2).toMatchObject({ claims: 5, idSets: 1 });
    recordBackfill(withClaims, String(s2.shard));
    arrivals.push(Date.parse(String(s2.arrival)));
    expect(await readBackfill(clients.dynamodb, config.tables.control, String(s2.shard))).toMatchObject({ buckets: 1 });
    expect(await idSet(String(s2.shard))).toEqual(new Map(withClaims.map((e, i) => [String(e.id), i])));
  });

  it('registers the ids of a history larger than memory takes part by part, to the same id sets', async () => {
    const events = makeEvents(350, 'p');
    const withCopy = [...events, events[10]!];
    const summary = await runBackfill(
      withCopy.map((event, index) => ({ position: { index }, event })),
      {
        ...backfillDeps(clients, config),
        claims: true,
        // One bucket in memory at a time: 4 buckets, 4 parts through temp files.
        idSetBucketsInMemory: 1,
      },
    );
    const buckets = idSetBuckets(withCopy.length);
    expect(buckets).toBe(4);
    expect(summary).toMatchObject({ outcome: 'written', accepted: 351, claims: 350, idSets: buckets });
    expect(await readBackfill(clients.dynamodb, config.tables.control, summary.shard!)).toMatchObject({ state: 'complete', buckets });
    const sets = await readIdSets(clients.dynamodb, config.tables.control, summary.shard!, buckets);
    expect(sets.size).toBe(buckets);
    for (const [bucket, set] of sets) for (const id of set.keys()) expect(idSetBucket(id, buckets), id).toBe(bucket);
    // Each id once, at its first copy's index (the copy at index 350 is events[10]'s second).
    expect(allIds(sets)).toEqual(new Map(events.map((e, i) => [String(e.id), i])));
    recordBackfill(withCopy, summary.shard!);
    arrivals.push(summary.arrival!);
  });

  it('a crashed backfill holds the cutoff at its arrival time; a re-run completes it with the same keys and T', async () => {
    const events = makeEvents(120, 'c', { withoutId: 10 });
    const input = () => events.map((event, index) => ({ position: { index }, event }));
    const deps = {
      ...backfillDeps(clients, config),
      objectLines: 25,
    };
    await expect(
      runBackfill(input(), {
        ...deps,
        hooks: {
          afterObject: (n) => {
            if (n === 2) throw new Error('simulated crash after 2 objects');
          },
        },
      }),
    ).rejects.toThrow(/simulated crash/);
    const [item] = (
      await gatherArchiveProgress({
        kinesis: clients.kinesis,
        doc: clients.doc,
        streamName: config.streamName,
        controlTable: config.tables.control,
        now: Date.now,
      })
    ).backfills.filter((b) => b.state === 'writing');
    expect(item).toBeDefined();
    const shard = item!.shard;
    const T = item!.arrival;
    // Give a run every reason to cut past T: it must not.
    await new Promise((r) => setTimeout(r, 7_000));
    const progress = await gatherArchiveProgress({
      kinesis: clients.kinesis,
      doc: clients.doc,
      streamName: config.streamName,
      controlTable: config.tables.control,
      now: Date.now,
    });
    const plan = computeCutoff({ ...progress, settings: config.settings, published: null });
    expect(plan.cutoff).toBeLessThanOrEqual(T);
    expect(plan.limitedBy).toBe(shard);
    const run = await api('POST', '/batch/runs', {});
    let state: Record<string, unknown>;
    do {
      await new Promise((r) => setTimeout(r, 200));
      state = (await api('GET', `/batch/runs/${run.body.id}`)).body;
    } while (!['SUCCEEDED', 'FAILED', 'SKIPPED'].includes(String(state.state)));
    expect(state.state, String(state.error)).not.toBe('FAILED');
    expect(Date.parse(String(state.cutoff))).toBeLessThanOrEqual(T);

    const resumed = await runBackfill(input(), deps);
    expect(resumed).toMatchObject({ outcome: 'resumed', shard, arrival: T, accepted: 120, objects: 5 });
    const want = objectRanges(120, 25).map((r) => rawObjectKey(shard, T, padSeq(String(r.first)), padSeq(String(r.last))));
    expect((await listRaw(shard)).map((o) => o.key)).toEqual(want);
    const manifest = await clients.dynamodb.send(
      new (await import('@aws-sdk/client-dynamodb')).GetItemCommand({
        TableName: config.tables.control,
        Key: { pk: { S: OBJECT_MANIFEST_PK }, sk: { S: objectManifestSk(Math.floor(T / HOUR) * HOUR, shard) } },
        ConsistentRead: true,
      }),
    );
    expect(manifest.Item?.objects?.SS?.length).toBe(5);
    expect(await readBackfill(clients.dynamodb, config.tables.control, shard)).toMatchObject({ state: 'complete', arrival: T });
    recordBackfill(events, shard);
    arrivals.push(T);
  });

  it('merged queries over backfilled and live events equal the oracle, before and after a batch passes the backfill', async () => {
    // The two backfills above count from here on.
    await batchPast(Math.max(...arrivals));

    // Live events first, some under ids the next backfill holds too (with other values: the live copy is first).
    const live = makeEvents(120, 'l');
    for (let i = 0; i < live.length; i += 40) {
      const res = await api('POST', '/events', live.slice(i, i + 40));
      expect(res.status, JSON.stringify(res.body)).toBe(200);
    }
    for (const e of live) copies.push({ id: String(e.id), event: e, backfill: null });
    const history = [...makeEvents(200, 'h', { withoutId: 30 }), ...live.slice(0, 15).map((e) => ({ ...e, country: 'BR' }))];
    const deps = {
      ...backfillDeps(clients, config),
    };
    const rejections: unknown[] = [];
    const bf = await runBackfill(
      history.map((event, index) => ({ position: { index }, event })),
      { ...deps, onReject: (r) => void rejections.push(r) },
    );
    expect(rejections).toEqual([]);
    expect(bf).toMatchObject({ outcome: 'written', accepted: 215, rejected: 0 });
    recordBackfill(history, bf.shard!);
    await cloud.idle();

    // Not shown before a batch passes T (the speed layer never sees it); everything else exactly once.
    await expectMerged(counted([bf.shard!]));
    await batchPast(bf.arrival!);
    await expectMerged(counted());

    // The same history again: nothing added to the archive, the answer unchanged after another run.
    const before = await listRaw(bf.shard!);
    expect(
      await runBackfill(
        history.map((event, index) => ({ position: { index }, event })),
        deps,
      ),
    ).toMatchObject({
      outcome: 'already-complete',
      shard: bf.shard,
      arrival: bf.arrival,
    });
    expect(await listRaw(bf.shard!)).toEqual(before);
    await batchPast(Date.now() - 1000);
    await expectMerged(counted());
  });
});
