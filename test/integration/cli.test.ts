/**
 * The `tandem` CLI as a child process against the local cloud: every command,
 * `--json` output, and the exit codes (0 ok, 1 failure or rejected events,
 * 2 usage).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../local/emulators.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const KEY = 'cli-test-key';
const TS = Math.floor(Date.now() / 60_000) * 60_000;

interface Cloud {
  readonly url: string;
  stop(): Promise<void>;
}
let cloud: Cloud | undefined;
/** Working directory of the CLI runs (rejected files land here; no .tandem/ key is found). */
let cwd: string;
let dataDir: string;

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `tandem <args>` through the npm bin shim (bin/tandem.js), as `npx tandem` does. */
function tandem(args: readonly string[], opts: { input?: string; env?: Record<string, string | undefined> } = {}): Promise<Run> {
  return new Promise((res, rej) => {
    const env: Record<string, string | undefined> = {
      ...process.env,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      TANDEM_API_URL: cloud?.url,
      TANDEM_API_KEY: KEY,
      ...opts.env,
    };
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
    const child = spawn(process.execPath, [join(root, 'bin', 'tandem.js'), ...args], { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', rej);
    child.on('close', (code) => res({ code, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}

async function get<T>(path: string): Promise<T> {
  const res = await fetch(cloud!.url + path, { headers: { 'x-api-key': KEY } });
  if (!res.ok) throw new Error(`GET ${path}: ${res.status}`);
  return (await res.json()) as T;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const from = new Date(TS - 3_600_000).toISOString();

beforeAll(async () => {
  cwd = mkdtempSync(join(tmpdir(), 'tandem-cli-cwd-'));
  dataDir = mkdtempSync(join(tmpdir(), 'tandem-cli-data-'));
  const { startLocalCloud } = await import('../../local/cloud.ts');
  cloud = await startLocalCloud({ port: await freePort(), demo: false, windowSeconds: 2, batchEverySeconds: null, dataDir, apiKey: KEY });
}, 120_000);

afterAll(async () => {
  await cloud?.stop();
  rmSync(cwd, { recursive: true, force: true });
  rmSync(dataDir, { recursive: true, force: true });
});

describe('tandem CLI', () => {
  it('prints help with exit code 0, and usage errors with exit code 2', async () => {
    const help = await tandem(['query', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: tandem query');
    const missing = await tandem(['query']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("missing required argument 'view'");
    const badFlag = await tandem(['query', 'events_by_type', '--from', 'yesterday']);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toContain('--from');
    expect((await tandem(['send', 'events.ndjson', '--batch-size', '501'])).code).toBe(2);
    expect((await tandem(['batch', 'rollback', 'x'])).code).toBe(2);
    expect((await tandem(['no-such-command'])).code).toBe(2);
  });

  it('lists the views as a table and as one JSON document', async () => {
    const table = await tandem(['views']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/events_by_type.*minute.*type.*events: count\(\)/);
    const json = await tandem(['views', '--json']);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout).views.map((v: { name: string }) => v.name)).toEqual([
      'events_by_type',
      'revenue_by_country',
      'page_views',
    ]);
  });

  it('sends NDJSON from a file, writes the rejected events with reasons, and exits 1', async () => {
    const lines = [
      ...Array.from({ length: 3 }, (_, i) => JSON.stringify({ id: `cli-click-${i}`, type: 'cli_click', ts: TS })),
      JSON.stringify({ id: 'cli-bad-ts', type: 'cli_click', ts: 'not a time' }),
      JSON.stringify({ id: 'cli-view-0', type: 'cli_view', ts: TS }),
      '{ this is not json',
      JSON.stringify({ id: 'cli-buy-0', type: 'purchase', ts: TS, country: 'NL', amount: 19.99 }),
    ];
    writeFileSync(join(cwd, 'events.ndjson'), `${lines.join('\n')}\n`);
    const r = await tandem(['send', 'events.ndjson', '--rejected', 'bad.ndjson']);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('accepted 5 of 7 events; 2 rejected (reasons in bad.ndjson)');
    const rejected = readFileSync(join(cwd, 'bad.ndjson'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(rejected).toHaveLength(2);
    expect(rejected.find((x) => x.line === 4)).toMatchObject({ field: 'ts', event: { id: 'cli-bad-ts' } });
    expect(rejected.find((x) => x.line === 6)?.message).toMatch(/line 6 is not valid JSON/);
  });

  it('sends a JSON array from stdin with --json and exits 0', async () => {
    const events = [
      { id: 'cli-click-3', type: 'cli_click', ts: TS },
      { type: 'cli_click', ts: TS }, // no id: the CLI gives it one
    ];
    const r = await tandem(['send', '-', '--json'], { input: JSON.stringify(events) });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ sent: 2, accepted: 2, rejected: 0, rejectedFile: null });
  });

  it('queries a view as a table and as JSON, with grouping and filters', async () => {
    // 5 clicks, 1 view, 1 purchase accepted so far: wait for the speed layer.
    await until('the speed layer', async () => {
      const q = await get<{ rows: { events: number }[] }>(`/views/events_by_type?groupBy=&grain=all&from=${from}`);
      return q.rows[0]?.events === 7 ? true : undefined;
    });
    const json = await tandem(['query', 'events_by_type', '--from', from, '--grain', 'all', '--json']);
    expect(json.code).toBe(0);
    const answer = JSON.parse(json.stdout);
    expect(answer.batch).toBeNull();
    expect(Object.fromEntries(answer.rows.map((r: { type: string; events: number }) => [r.type, r.events]))).toEqual({
      cli_click: 5,
      cli_view: 1,
      purchase: 1,
    });

    const filtered = await tandem(['query', 'events_by_type', '--from', '-1h', '--grain', 'all', '--where', 'type=cli_click', '--json']);
    expect(JSON.parse(filtered.stdout).rows.map((r: { events: number }) => r.events)).toEqual([5]);

    const revenue = await tandem(['query', 'revenue_by_country', '--from', from, '--totals', '--grain', 'all', '--json']);
    expect(JSON.parse(revenue.stdout).rows).toEqual([
      expect.objectContaining({ orders: 1, revenue: 19.99, min_order: 19.99, max_order: 19.99, avg_order: 19.99 }),
    ]);

    const table = await tandem(['query', 'events_by_type', '--from', from, '--grain', 'all']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/│ bucket\s+│ type\s+│ events │/);
    expect(table.stdout).toMatch(/│ cli_click\s+│\s+5 │/);
    expect(table.stderr).toContain('no batch published yet');

    const unknown = await tandem(['query', 'no_such_view']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('404');
  });

  it('ranks rows with --order-by and --limit, and picks a coarser grain for a long range', async () => {
    // Same 7 events as above: 5 cli_click, 1 cli_view, 1 purchase; the tie of the last two goes by type.
    const top = await tandem([
      'query',
      'events_by_type',
      '--from',
      '-90d',
      '--grain',
      'all',
      '--order-by',
      '-events',
      '--limit',
      '2',
      '--json',
    ]);
    expect(top.code).toBe(0);
    expect(JSON.parse(top.stdout).rows.map((r: { type: string; events: number }) => [r.type, r.events])).toEqual([
      ['cli_click', 5],
      ['cli_view', 1],
    ]);
    const bottom = await tandem(['query', 'events_by_type', '--from', '-1h', '--grain', 'all', '--order-by', 'events', '--limit', '1']);
    expect(bottom.code).toBe(0);
    expect(bottom.stdout).toMatch(/│ cli_view\s+│\s+1 │/);
    expect(bottom.stdout).not.toContain('cli_click');
    expect(bottom.stderr).toContain('ordered by events within each bucket, at most 1 per bucket');

    // No --grain: day beyond 7 days, hour beyond 24 hours (the view's grain is minute), the view's grain otherwise.
    const long = await tandem(['query', 'events_by_type', '--from', '-90d', '--totals']);
    expect(long.code).toBe(0);
    expect(long.stderr).toContain('by day (the default for this range; --grain to choose)');
    expect(long.stdout).toMatch(/│\s+7 │/);
    expect(JSON.parse((await tandem(['query', 'events_by_type', '--from', '-3d', '--json'])).stdout).grain).toBe('hour');
    expect(JSON.parse((await tandem(['query', 'events_by_type', '--from', '-1h', '--json'])).stdout).grain).toBe('minute');
    expect(JSON.parse((await tandem(['query', 'events_by_type', '--from', '-90d', '--grain', 'hour', '--json'])).stdout).grain).toBe(
      'hour',
    );

    const badMetric = await tandem(['query', 'events_by_type', '--order-by', '-nope']);
    expect(badMetric.code).toBe(1);
    expect(badMetric.stderr).toContain('orderBy must be a metric of view "events_by_type" (events)');
    const badLimit = await tandem(['query', 'events_by_type', '--limit', '0']);
    expect(badLimit.code).toBe(2);
    expect(badLimit.stderr).toContain('--limit must be a whole number from 1 to 10000');
  });

  it('shows the status as text and as JSON', async () => {
    const text = await tandem(['status']);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('batch:    nothing published yet');
    const json = await tandem(['status', '--json']);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ batch: null, poison: { count: 0 } });
  });

  it('runs the batch and waits for it, then rolls back', async () => {
    await until('the archive', async () => {
      const s = await get<{ archive?: { shards?: { records?: number }[] } }>('/status');
      return (s.archive?.shards ?? []).reduce((n, x) => n + (x.records ?? 0), 0) >= 7 ? true : undefined;
    });
    const first = await tandem(['batch', 'run', '--wait', '--json']);
    expect(first.code).toBe(0);
    const run = JSON.parse(first.stdout);
    expect(run).toMatchObject({ state: 'SUCCEEDED', version: 1 });
    expect(first.stderr).toContain('plan');
    expect(first.stderr).toMatch(/events_by_type: \d+ rows/);

    const status = JSON.parse((await tandem(['status', '--json'])).stdout);
    expect(status.batch.version).toBe(1);
    expect((await tandem(['status'])).stdout).toContain('version 1, cutoff');

    // The merged answer is the same once the batch covers the events.
    const after = JSON.parse((await tandem(['query', 'events_by_type', '--from', from, '--grain', 'all', '--totals', '--json'])).stdout);
    expect(after.batch.version).toBe(1);
    expect(after.rows[0].events).toBe(7);

    const started = await tandem(['batch', 'run']);
    expect(started.code).toBe(0);
    const id = started.stdout.trim();
    expect(id).not.toBe('');
    await until(`run ${id}`, async () => ((await get<{ state: string }>(`/batch/runs/${id}`)).state === 'SUCCEEDED' ? true : undefined));

    // A rebuild of a view that does not exist: the API's 400 names `view`, nothing starts.
    const unknown = await tandem(['batch', 'rebuild', '--view', 'nope']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no view named "nope"/);

    const back = await tandem(['batch', 'rollback', '1', '--json']);
    expect(back.code).toBe(0);
    expect(JSON.parse(back.stdout).version).toBe(1);
    const gone = await tandem(['batch', 'rollback', '99']);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('404');
  });

  it('fails with exit code 1 on a refused key or an unreachable API', async () => {
    const refused = await tandem(['status', '--api-key', 'wrong']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('refused');
    const down = await tandem(['status', '--url', `http://127.0.0.1:${await freePort()}`]);
    expect(down.code).toBe(1);
    expect(down.stderr).toContain('cannot reach the Tandem API');
  });

  it('finds the key the local cloud saved in its data directory', async () => {
    const keyFile = join(dataDir, 'api-key');
    expect(existsSync(keyFile)).toBe(true);
    const r = await tandem(['status', '--json', '--data-dir', dataDir], { env: { TANDEM_API_KEY: undefined } });
    expect(r.code).toBe(0);
  });

  it('finds a running local cloud by its endpoints.json (API URL, and DynamoDB for keys), and not after it is gone', async () => {
    // As in a fresh shell: nothing says where the API or DynamoDB is (the local cloud in this process set some of these).
    const none = {
      TANDEM_API_URL: undefined,
      TANDEM_API_KEY: undefined,
      TANDEM_CONTROL_TABLE: undefined,
      AWS_ENDPOINT_URL: undefined,
      AWS_ENDPOINT_URL_DYNAMODB: undefined,
    };
    const endpoints = JSON.parse(readFileSync(join(dataDir, 'endpoints.json'), 'utf8'));
    expect(endpoints).toMatchObject({ pid: process.pid, api: cloud!.url });
    const status = await tandem(['status', '--json', '--data-dir', dataDir], { env: none });
    expect(status.code).toBe(0);
    const keys = await tandem(['keys', 'list', '--json', '--data-dir', dataDir], { env: none });
    expect(keys.stderr).toBe('');
    expect(keys.code).toBe(0);
    expect(JSON.parse(keys.stdout)).toHaveProperty('keys');
    // A file left by a killed local cloud (its pid gone) is not followed.
    const stale = mkdtempSync(join(tmpdir(), 'tandem-cli-stale-'));
    writeFileSync(join(stale, 'endpoints.json'), JSON.stringify({ ...endpoints, pid: 2 ** 22 + 1 }));
    const refused = await tandem(['keys', 'list', '--data-dir', stale], { env: none });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('which control table?');
  });

  it('creates, lists and revokes API keys in the control table', async () => {
    const created = await tandem(['keys', 'create', 'ci-bot', '--json']);
    expect(created.code).toBe(0);
    const { key, hash } = JSON.parse(created.stdout);
    expect(key).toMatch(/^tdm_/);
    const listed = JSON.parse((await tandem(['keys', 'list', '--json'])).stdout).keys;
    expect(listed).toEqual([expect.objectContaining({ name: 'ci-bot', hash, revoked: false })]);
    expect(listed[0]).not.toHaveProperty('key');
    expect((await tandem(['keys', 'create', 'ci-bot'])).code).toBe(1);
    expect((await tandem(['keys', 'create', 'bad name!'])).code).toBe(2);
    // The local cloud's gateway honours table keys as the AWS authorizer does.
    expect((await tandem(['views', '--api-key', key])).code).toBe(0);
    const revoked = await tandem(['keys', 'revoke', 'ci-bot', '--json']);
    expect(revoked.code).toBe(0);
    expect(JSON.parse(revoked.stdout).revoked).toEqual([expect.objectContaining({ name: 'ci-bot', revoked: true })]);
    const refused = await tandem(['views', '--api-key', key]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('refused');
  });
});
