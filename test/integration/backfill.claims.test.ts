/**
 * Backfilled ids and their live copies (docs/batch-layer.md, "Backfill",
 * "Duplicates"): the backfill registers its ids in id sets before it takes its
 * arrival time T, and takes T a lead past the registration, so the speed layer
 * decides every live copy at or after T against the backfilled copy exactly as
 * the batch does (functions/speed/outside.ts). Against one local cloud with a
 * 30 s horizon, the merged answer equals the oracle over the copies that count
 * at every step: an id sent live before T (before or during the registration)
 * and then backfilled counts once (the live copy); an id backfilled and then
 * sent live within H after T counts once (the backfilled copy: not shown until
 * a batch passes T, then once, before and after the batch covers the live
 * copies); a live copy more than H after T counts again; a run that crashes
 * after its id sets and one that crashes after an object are re-run to the
 * same id sets and T, and a re-run of the completed backfill adds nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Clients, createClients } from '../../functions/adapters/clients.ts';
import { BackfillValidator, readBackfill, runBackfill } from '../../functions/archive/backfill.ts';
import { type Config, loadConfig } from '../../functions/config.ts';
import { BACKFILL_LEAD_MS, idSetBuckets } from '../../functions/core/backfill-ids.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { type LocalCloud, startLocalCloud } from '../../local/cloud.ts';
import { allIds, backfillDeps, readIdSets } from '../support/backfill.ts';
import { oracleRows } from '../support/oracle.ts';

const KEY = 'backfill-claims-key-0123456789';
const H_SECONDS = 30;
const HOUR = 3_600_000;
const DAY = 86_400_000;
// Views of plain metrics: what this test is about does not depend on the others.
const VIEWS = DEMO_VIEWS.filter((v) => !JSON.stringify(v).includes('distinct'));

let cloud: LocalCloud;
let clients: Clients;
let config: Config;
let dir: string;

beforeAll(async () => {
  const { mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  dir = mkdtempSync(join(tmpdir(), 'tandem-backfill-claims-'));
  process.env.TANDEM_DEDUP_HORIZON_SECONDS = String(H_SECONDS);
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
  expect(config.settings.dedupHorizonSeconds).toBe(H_SECONDS);
});
afterAll(async () => {
  for (const c of Object.values(clients ?? {})) c.destroy();
  await cloud?.stop();
  delete process.env.TANDEM_DEDUP_HORIZON_SECONDS;
  if (dir) (await import('node:fs')).rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One content per id (copies are a producer's retries), event times within the last hours. */
function event(id: string, k: number): Record<string, unknown> {
  const ts = new Date(Date.now() - ((k * 7919) % (3 * HOUR))).toISOString();
  return k % 2 === 0
    ? { id, type: 'page_view', ts, page: ['/', '/docs'][k % 2], country: ['US', 'DE', 'JP'][k % 3], load_ms: 100 + k }
    : { id, type: 'purchase', ts, country: ['US', 'DE', 'JP'][k % 3], amount: (1000 + k) / 100 };
}

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(`${cloud.url}${path}`, {
    method,
    headers: { 'x-api-key': KEY, ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

async function sendLive(events: readonly Record<string, unknown>[]): Promise<number> {
  const res = await api('POST', '/events', events);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  await cloud.idle();
  return Date.now();
}

/** Runs batches until one publishes a cutoff past `t`; returns it. */
async function batchPast(t: number): Promise<number> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const started = await api('POST', '/batch/runs', {});
    expect(started.status).toBe(202);
    let run: Record<string, unknown>;
    do {
      await sleep(200);
      run = (await api('GET', `/batch/runs/${started.body.id}`)).body;
    } while (!['SUCCEEDED', 'FAILED', 'SKIPPED'].includes(String(run.state)));
    expect(run.state, String(run.error)).not.toBe('FAILED');
    if (run.state === 'SUCCEEDED' && Date.parse(String(run.cutoff)) > t) return Date.parse(String(run.cutoff));
    if (Date.now() > deadline) throw new Error(`no batch run passed ${new Date(t).toISOString()}`);
    await sleep(1000);
  }
}

/** The merged answer of every view equals the oracle over `events` (the copies that count, already decided). */
async function expectMerged(events: readonly Record<string, unknown>[], step: string): Promise<void> {
  await cloud.idle(['speed']);
  const now = Date.now();
  const from = new Date(Math.floor((now - 2 * DAY) / DAY) * DAY).toISOString();
  const to = new Date(Math.ceil((now + HOUR) / DAY) * DAY).toISOString();
  for (const view of VIEWS) {
    const res = await api('GET', `/views/${view.name}?${new URLSearchParams({ from, to, grain: 'hour' })}`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const spec = {
      from: Date.parse(String(res.body.from)),
      to: Date.parse(String(res.body.to)),
      grain: 'hour' as const,
      groupBy: view.dimensions,
    };
    expect(res.body.rows, `${step}: ${view.name}`).toEqual(oracleRows(view, events, spec));
  }
}

/** The id sets of a backfill of `records` accepted events, as stored: id -> index of its first copy. */
const idSetsOf = async (shard: string, records: number) =>
  allIds(await readIdSets(clients.dynamodb, config.tables.control, shard, idSetBuckets(records)));

describe('backfilled ids in the speed layer', () => {
  it('live copies are decided against the backfilled ones, by the dedup rule, at every step', async () => {
    const ids = (p: string, n: number, from: number) => Array.from({ length: n }, (_, i) => event(`${p}-${i}`, from + i));
    const a = ids('a', 12, 0); // live before the backfill, then backfilled
    const b = ids('b', 12, 100); // backfilled, then live within H after T
    const c = ids('c', 8, 200); // backfilled, then live more than H after T
    const d = ids('d', 6, 300); // live only, after T: counts as usual
    const e = ids('e', 10, 400); // live while the backfill registers (no T yet), then backfilled
    const deps = {
      ...backfillDeps(clients, config),
      claims: true,
      dedupHorizonSeconds: H_SECONDS,
    };
    const history = [...a, ...b, ...c, ...e];
    const input = () => history.map((e, index) => ({ position: { index }, event: e }));
    const validator = new BackfillValidator(DEMO_VIEWS);
    for (const item of input()) validator.check(item);
    const shard = validator.shard();

    await sendLive(a);
    await expectMerged(a, 'a live');

    // A run that crashes after its id sets: no T yet, nothing archived.
    const crash = (what: string) => () => {
      throw new Error(`simulated crash ${what}`);
    };
    await expect(runBackfill(input(), { ...deps, hooks: { afterIdSets: crash('after the id sets') } })).rejects.toThrow(/simulated crash/);
    expect(await readBackfill(clients.dynamodb, config.tables.control, shard)).toMatchObject({ state: 'registering', arrival: undefined });
    const sets = await idSetsOf(shard, history.length);
    expect(sets).toEqual(new Map(history.map((h, i) => [String(h.id), i])));
    // A backfill still registering has no T: it holds no run back.
    await batchPast(Date.now() - 10_000);
    await sendLive(e);

    // Its re-run writes the same id sets, takes T a lead past them, and crashes after an object.
    const registered = Date.now();
    await expect(runBackfill(input(), { ...deps, objectLines: 10, hooks: { afterObject: crash('after an object') } })).rejects.toThrow(
      /simulated crash/,
    );
    const item = await readBackfill(clients.dynamodb, config.tables.control, shard);
    expect(item).toMatchObject({ state: 'writing', buckets: idSetBuckets(history.length) });
    const T = item!.arrival!;
    expect(T).toBeGreaterThanOrEqual(registered + BACKFILL_LEAD_MS);
    expect(await idSetsOf(shard, history.length)).toEqual(sets);
    // The next re-run completes it with the same T and registers nothing.
    const resumed = await runBackfill(input(), { ...deps, objectLines: 10 });
    expect(resumed).toMatchObject({ outcome: 'resumed', arrival: T, accepted: history.length, claims: 0, idSets: 0 });

    // Not past T yet: the backfill is not shown; live copies at or after T of backfilled ids do not count.
    await expectMerged([...a, ...e], 'backfilled');
    await sleep(Math.max(0, T + 500 - Date.now()));
    await sendLive([...b.slice(0, 6), ...d]);
    await expectMerged([...a, ...e, ...d], 'b live (1)');

    const cut = await batchPast(T);
    await expectMerged([...a, ...b, ...c, ...d, ...e], `a batch past T (cutoff ${cut - T} ms after T)`);
    const bLive2 = await sendLive(b.slice(6));
    expect(bLive2 - T).toBeLessThan(H_SECONDS * 1000);
    await expectMerged([...a, ...b, ...c, ...d, ...e], 'b live (2)');

    // More than H after T: a copy of a backfilled id counts again.
    await sleep(Math.max(0, T + H_SECONDS * 1000 + 1000 - Date.now()));
    await sendLive(c);
    await expectMerged([...a, ...b, ...c, ...d, ...e, ...c], 'c live beyond H');

    await batchPast(Date.now() - 1000);
    await expectMerged([...a, ...b, ...c, ...d, ...e, ...c], 'a batch past every live copy');

    // The same history again: already complete, nothing registered, the answer unchanged.
    expect(await runBackfill(input(), deps)).toMatchObject({ outcome: 'already-complete', claims: 0, idSets: 0 });
    await expectMerged([...a, ...b, ...c, ...d, ...e, ...c], 'a re-run');
  }, 240_000);
});
