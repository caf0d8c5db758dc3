/**
 * README.md's "First five commands", as written: the commands are parsed from the
 * section's code blocks (the five, then the backfill line), the first one (`npm
 * start`, demo on) is started as `node bin/tandem.js local` on a free port and a
 * temporary data dir, and every other one runs with the CLI from a fresh
 * directory holding the repository's `examples/` (as a fresh clone would), each
 * expected to exit 0 with sensible output. `tandem send` and `tandem backfill`
 * exit 1 when they reject events, and examples/events.ndjson holds three bad
 * events on purpose: for those two, exit 1 with exactly those rejections written
 * to rejected.ndjson is the sensible outcome.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../local/runtime.ts';

const SECTION = '## First five commands';

/** The shell lines of the section's code blocks, comments dropped, `&&` chains split. */
function readmeCommands(readme: string): string[][] {
  const start = readme.indexOf(SECTION);
  if (start < 0) throw new Error(`README.md has no "${SECTION}" section`);
  const end = readme.indexOf('\n## ', start + SECTION.length);
  const section = readme.slice(start, end < 0 ? undefined : end);
  const lines: string[][] = [];
  for (const m of section.matchAll(/```sh\n([\s\S]*?)```/g)) {
    for (const raw of m[1]!.split('\n')) {
      const line = raw.replace(/\s+#.*$/, '').trim();
      if (line) lines.push(line.split('&&').map((c) => c.trim()));
    }
  }
  return lines;
}

const dirs: string[] = [];
let cloud: ChildProcess | undefined;

afterAll(async () => {
  if (cloud?.pid && cloud.exitCode === null) {
    const exited = new Promise((r) => cloud!.once('exit', r));
    process.kill(-cloud.pid, 'SIGINT');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
    if (cloud.exitCode === null) process.kill(-cloud.pid, 'SIGKILL');
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function run(args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [join(REPO_ROOT, 'bin/tandem.js'), ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
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

describe("README's first five commands", () => {
  it('parses the section: npm start first, then tandem commands', () => {
    const cmds = readmeCommands(readFileSync(join(REPO_ROOT, 'README.md'), 'utf8'));
    expect(cmds[0]).toEqual(['npm ci', 'npm start']);
    expect(cmds.length).toBeGreaterThanOrEqual(5);
    for (const chain of cmds.slice(1)) for (const c of chain) expect(c).toMatch(/^npx tandem /);
  });

  it('work as written on a fresh clone', async () => {
    const cmds = readmeCommands(readFileSync(join(REPO_ROOT, 'README.md'), 'utf8'));
    const work = mkdtempSync(join(tmpdir(), 'tandem-readme-'));
    dirs.push(work);
    // A fresh clone's working directory: the shipped examples, no data dir yet.
    symlinkSync(join(REPO_ROOT, 'examples'), join(work, 'examples'));
    const dataDir = join(work, '.tandem');

    // `npm start` = `node bin/tandem.js local` (package.json), on a free port, demo on.
    cloud = spawn(process.execPath, [join(REPO_ROOT, 'bin/tandem.js'), 'local', '--port', '0', '--data-dir', dataDir], {
      cwd: work,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    let err = '';
    cloud.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    cloud.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const deadline = Date.now() + 90_000;
    while (!/^API key: /m.test(out)) {
      if (cloud.exitCode !== null) throw new Error(`tandem local exited (${cloud.exitCode}): ${err}`);
      if (Date.now() > deadline) throw new Error(`tandem local did not come up: ${err}`);
      await new Promise((r) => setTimeout(r, 100));
    }

    const env: NodeJS.ProcessEnv = { ...process.env, TANDEM_DATA_DIR: dataDir };
    for (const k of Object.keys(env))
      if (k.startsWith('AWS_ENDPOINT_URL') || (k.startsWith('TANDEM_') && k !== 'TANDEM_DATA_DIR')) delete env[k];
    const rejectedLines = () => readFileSync(join(work, 'rejected.ndjson'), 'utf8').trim().split('\n').length;
    for (const chain of cmds.slice(1)) {
      for (const c of chain) {
        const args = c.replace(/^npx tandem /, '').split(/\s+/);
        let r = await run(args, work, env);
        // The demo's first events reach the speed layer seconds after start (longer on a loaded machine, or while the
        // first start synthesizes the IAM template): ask again, as a user would, until they show or a minute passes.
        for (const until = Date.now() + 60_000; args[0] === 'query' && !/page_view/.test(r.stdout) && Date.now() < until; ) {
          await new Promise((res) => setTimeout(res, 2_000));
          r = await run(args, work, env);
        }
        const what = `${c}\nexit ${r.status}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
        switch (args[0]) {
          case 'views':
            expect(r.status, what).toBe(0);
            for (const v of ['events_by_type', 'revenue_by_country', 'page_views']) expect(r.stdout, what).toContain(v);
            break;
          case 'send':
            expect(r.status, what).toBe(1);
            expect(r.stdout, what).toMatch(/^accepted 308 of 311 events; 3 rejected \(reasons in rejected\.ndjson\)/);
            expect(rejectedLines()).toBe(3);
            break;
          case 'query':
            expect(r.status, what).toBe(0);
            // The demo is sending: page views in the last 15 minutes.
            expect(r.stdout, what).toMatch(/page_view/);
            break;
          case 'batch':
            expect(r.status, what).toBe(0);
            expect(r.stdout, what).toMatch(/^batch run run-\S+: (SUCCEEDED|SKIPPED)/);
            break;
          case 'status':
            expect(r.status, what).toBe(0);
            expect(r.stdout, what).toMatch(/version/i);
            break;
          case 'backfill':
            expect(r.status, what).toBe(1);
            expect(r.stdout, what).toMatch(
              /^archived 308 events as backfill-[0-9a-f]{16} in 1 object\(s\), arrival \S+; 311 read, 3 rejected/,
            );
            expect(r.stdout, what).toMatch(/^batch run run-\S+: SUCCEEDED, cutoff/m);
            expect(rejectedLines()).toBe(3);
            break;
          default:
            throw new Error(`no check for README command: ${c}`);
        }
      }
    }
    expect(existsSync(join(dataDir, 'demo-history.json'))).toBe(true);
  }, 300_000);
});
