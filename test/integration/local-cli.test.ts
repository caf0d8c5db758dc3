/**
 * `tandem local --no-demo` as a child process, as a user runs it: it comes up,
 * /health answers, the API key is enforced (401/403 without, 200 with), an
 * event sent over the API reaches the speed layer through the event source
 * mapping, and Ctrl-C (SIGINT) stops it and all its emulators.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../local/runtime.ts';
import { alive, cmdline, descendants, waitGone } from '../support/procs.ts';

const dirs: string[] = [];
let child: ChildProcess | undefined;

afterAll(async () => {
  if (child?.pid && alive(child.pid)) {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      child.kill('SIGKILL');
    }
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const cli = (args: string[]) =>
  spawn(process.execPath, [join(REPO_ROOT, 'bin/tandem.js'), ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
/**
 * What `npm start` runs (`node bin/tandem.js local`), in a process group of its own like a
 * terminal's. npm itself is left out: on Ctrl-C it dies of the signal (exit code null) while its
 * script goes on stopping, so only the script's own exit code says whether the stop was clean.
 */
const npmStartLike = (args: string[]) =>
  spawn(process.execPath, [join(REPO_ROOT, 'bin/tandem.js'), 'local', ...args], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });

describe('tandem local', () => {
  it('starts with --no-demo, enforces the API key, runs the handlers, and stops cleanly on Ctrl-C', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'tandem-local-'));
    dirs.push(dataDir);
    child = npmStartLike(['--no-demo', '--port', '0', '--data-dir', dataDir, '--batch-every', 'off']);
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const exited = new Promise<number | null>((res) => child!.once('exit', (code) => res(code)));
    const deadline = Date.now() + 90_000;
    while (!/^API key: /m.test(out)) {
      if (child.exitCode !== null) throw new Error(`tandem local exited (${child.exitCode}): ${err}`);
      if (Date.now() > deadline) throw new Error(`tandem local did not come up: ${err}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const url = /^API:\s+(\S+)/m.exec(out)![1]!;
    const key = /^API key:\s+(\S+)/m.exec(out)![1]!;
    expect(readFileSync(join(dataDir, 'api-key'), 'utf8').trim()).toBe(key);

    const health = await fetch(`${url}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
    expect((await fetch(`${url}/views`)).status).toBe(401);
    expect((await fetch(`${url}/views`, { headers: { 'x-api-key': `${key}-wrong` } })).status).toBe(403);
    const views = await fetch(`${url}/views`, { headers: { 'x-api-key': key } });
    expect(views.status).toBe(200);
    expect(JSON.stringify(await views.json())).toContain('events_by_type');

    // One event through ingest -> Kinesis -> the speed mapping -> the query.
    const ts = new Date().toISOString();
    const sent = await fetch(`${url}/events`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'cli-test-1', type: 'cli_test', ts }),
    });
    expect(await sent.json()).toMatchObject({ accepted: 1, rejected: [] });
    const from = new Date(Date.now() - 3_600_000).toISOString();
    let count: unknown;
    for (let i = 0; i < 150 && count !== 1; i++) {
      const r = await fetch(`${url}/views/events_by_type?grain=all&groupBy=type&type=cli_test&from=${encodeURIComponent(from)}`, {
        headers: { 'x-api-key': key },
      });
      const body = (await r.json()) as { rows?: { events?: unknown }[] };
      count = body.rows?.[0]?.events;
      if (count !== 1) await new Promise((r) => setTimeout(r, 200));
    }
    expect(count).toBe(1);

    const emulators = descendants(child.pid!).filter((p) => /kinesalite|kinesis-local|dynalite|s3rver/.test(cmdline(p)));
    expect(emulators).toHaveLength(3);
    // Ctrl-C in a terminal: SIGINT to the whole foreground process group, and npm relays it once more.
    process.kill(-child.pid!, 'SIGINT');
    process.kill(child.pid!, 'SIGINT');
    expect(await exited).toBe(0);
    expect(err).toMatch(/stopped/);
    expect(await waitGone(emulators, 5000)).toEqual([]);
    // What survives a restart is on disk.
    for (const d of ['kinesis', 'dynamodb', 's3', 'esm/speed.json', 'esm/archive.json']) expect(existsSync(join(dataDir, d))).toBe(true);
  });

  it('stops with exit code 1 and names the emulator when one dies', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'tandem-local-'));
    dirs.push(dataDir);
    child = cli(['local', '--no-demo', '--port', '0', '--data-dir', dataDir, '--batch-every', 'off']);
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const exited = new Promise<number | null>((res) => child!.once('exit', (code) => res(code)));
    const deadline = Date.now() + 90_000;
    while (!/^API key: /m.test(out)) {
      if (child.exitCode !== null) throw new Error(`tandem local exited (${child.exitCode}): ${err}`);
      if (Date.now() > deadline) throw new Error(`tandem local did not come up: ${err}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const emulators = descendants(child.pid!).filter((p) => /kinesalite|kinesis-local|dynalite|s3rver/.test(cmdline(p)));
    const dynalite = emulators.find((p) => /dynalite/.test(cmdline(p)))!;
    process.kill(dynalite, 'SIGKILL');
    expect(await exited).toBe(1);
    expect(err).toMatch(/dynamodb emulator \(pid \d+\) exited unexpectedly/);
    expect(await waitGone(emulators, 5000)).toEqual([]);
  });

  it('refuses bad flags with exit code 2 and a message naming the flag', () => {
    const r = spawnSync(process.execPath, [join(REPO_ROOT, 'bin/tandem.js'), 'local', '--window', '7'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--window must divide a day/);
    const b = spawnSync(process.execPath, [join(REPO_ROOT, 'bin/tandem.js'), 'local', '--batch-every', 'sometimes'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
    });
    expect(b.status).toBe(2);
    expect(b.stderr).toMatch(/--batch-every/);
  });
});
