/**
 * No orphaned emulators: after a clean stop, and after the parent is killed
 * with SIGKILL (no handler of the parent runs; the watchdog in each child
 * notices its parent is gone). Checked by PID.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { startEmulators } from '../../local/emulators.ts';
import { REPO_ROOT } from '../../local/runtime.ts';
import { alive, cmdline, waitGone } from '../support/procs.ts';

describe('emulator processes never outlive their parent', () => {
  it('stop() ends every emulator process', async () => {
    const set = await startEmulators();
    const pids = [set.kinesis.pid, set.dynamodb.pid, set.s3.pid];
    expect(pids.every(alive)).toBe(true);
    await set.stop();
    expect(await waitGone(pids, 1000)).toEqual([]);
  });

  it('a SIGKILL of the parent takes the emulators down with it', async () => {
    const parent = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'test/support/emulator-parent.ts')], {
      cwd: REPO_ROOT,
      env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const line = await new Promise<string>((res, rej) => {
      createInterface({ input: parent.stdout! }).once('line', res);
      parent.once('exit', (code) => rej(new Error(`parent exited early (${code})`)));
    });
    const { pids } = JSON.parse(line) as { pids: number[] };
    expect(pids).toHaveLength(3);
    expect(pids.every(alive)).toBe(true);
    expect(pids.map(cmdline).join('\n')).toMatch(/kinesalite[\s\S]*dynalite[\s\S]*s3rver/);
    parent.kill('SIGKILL');
    expect(await waitGone(pids)).toEqual([]);
  });
});
