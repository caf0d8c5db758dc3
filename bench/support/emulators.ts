/**
 * Shared by the batch benchmarks: the three emulators (S3 on a throwaway data
 * directory), the machine's load average sampled while they run (the machine
 * may be shared: the figures are read in its context), and one stop for all.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunItem } from '../../functions/batch/control.ts';
import { emulatorEnv, startEmulator } from '../../local/emulators.ts';
import { cpuMsOf } from './cpu.ts';

export interface BenchEmulators {
  /** The environment that points the AWS SDK at the emulators. */
  readonly env: Record<string, string>;
  /** Mean 1-minute load average since the start. */
  meanLoad(): number;
  /** CPU time (ms) each emulator process has used so far (support/cpu.ts). */
  cpuMs(): { readonly dynamodb: number; readonly s3: number; readonly kinesis: number };
  /** Stops the emulators and removes their data directory and `dirs`. */
  stop(dirs?: readonly string[]): Promise<void>;
}

export async function startBenchEmulators(): Promise<BenchEmulators> {
  const kinesis = await startEmulator('kinesis');
  const dynamodb = await startEmulator('dynamodb');
  const s3dir = mkdtempSync(join(tmpdir(), 'tandem-bench-s3-'));
  const s3 = await startEmulator('s3', { dataDir: s3dir });
  const loads: number[] = [];
  const sampler = setInterval(() => loads.push(loadavg()[0]!), 5000);
  sampler.unref();
  return {
    env: emulatorEnv({ kinesis, dynamodb, s3 }),
    meanLoad: () => loads.reduce((a, b) => a + b, 0) / Math.max(1, loads.length),
    cpuMs: () => ({ dynamodb: cpuMsOf(dynamodb.pid), s3: cpuMsOf(s3.pid), kinesis: cpuMsOf(kinesis.pid) }),
    async stop(dirs = []) {
      clearInterval(sampler);
      await Promise.all([kinesis.stop(), dynamodb.stop(), s3.stop()]);
      for (const dir of [...dirs, s3dir]) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The run, or an error naming it when it did not succeed. */
export function succeeded(run: RunItem, what: string): RunItem {
  if (run.state !== 'SUCCEEDED') throw new Error(`${what} ${run.state}: ${run.error ?? run.note ?? ''}`);
  return run;
}
