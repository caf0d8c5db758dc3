/**
 * Global setup of the `e2e` vitest project: the target is TANDEM_E2E_API_URL and
 * TANDEM_E2E_API_KEY when set (test/e2e/cli.ts sets them from --api/--key or
 * TANDEM_API_URL/TANDEM_API_KEY); else a local cloud started here as a child
 * process (`tandem local`, no demo, no schedule), stopped at teardown.
 *
 * A child process rather than startLocalCloud in this process: the local cloud
 * writes its endpoints and names into process.env, and this is vitest's main
 * process, whose environment the other projects' workers inherit. It also keeps
 * the suite honest: it reaches the cloud only over HTTP, as it would AWS.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { E2E_ENV, type E2eTarget, trimUrl } from './target.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const START_TIMEOUT_MS = 120_000;

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const url = process.env[E2E_ENV.url];
  if (url) {
    const key = process.env[E2E_ENV.key];
    if (!key) throw new Error(`${E2E_ENV.url} is set but ${E2E_ENV.key} is not: the suite needs an API key of the target`);
    const target: E2eTarget = { url: trimUrl(url), key, local: false };
    project.provide('e2eTarget', target);
    return undefined;
  }
  const dataDir = mkdtempSync(join(tmpdir(), 'tandem-e2e-'));
  const key = `e2e-${randomBytes(12).toString('hex')}`;
  const child = spawn(
    process.execPath,
    [
      join(ROOT, 'bin/tandem.js'),
      'local',
      '--port',
      '0',
      '--no-demo',
      '--batch-every',
      'off',
      // One-second windows and no cutoff margin: a batch run can cover what was sent a second ago.
      '--window',
      '1',
      '--data-dir',
      dataDir,
      '--api-key',
      key,
    ],
    { cwd: ROOT, env: { ...process.env, TANDEM_CUTOFF_MARGIN_SECONDS: '0' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const stop = async () => {
    await stopChild(child);
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    const apiUrl = await waitForApiLine(child);
    project.provide('e2eTarget', { url: trimUrl(apiUrl), key, local: true });
  } catch (e) {
    await stop();
    throw e;
  }
  return stop;
}

/** Resolves with the `API: <url>` line `tandem local` prints once it serves. */
function waitForApiLine(child: ChildProcess): Promise<string> {
  return new Promise((resolveUrl, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => fail(`no API line within ${START_TIMEOUT_MS / 1000} s`), START_TIMEOUT_MS);
    const fail = (why: string) => {
      clearTimeout(timer);
      reject(new Error(`the local cloud for the e2e suite did not start: ${why}\n${err.slice(-4000)}`));
    };
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      const m = /^API:\s+(\S+)/m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1]!);
      }
    });
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString('utf8');
    });
    child.once('exit', (code, signal) => fail(`tandem local exited (${signal ?? `code ${code}`})`));
    child.once('error', (e) => fail(e.message));
  });
}

/** SIGTERM (tandem local stops its emulators on it), then SIGKILL if it is still there after 20 s. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(timer);
}
