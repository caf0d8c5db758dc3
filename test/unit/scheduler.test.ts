import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { startScheduler } from '../../local/scheduler.ts';

describe('local batch scheduler', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('runs every N seconds and never two runs at once (a busy tick is skipped)', async () => {
    let active = 0;
    let maxActive = 0;
    const release: (() => void)[] = [];
    const runBatch = () => {
      active++;
      maxActive = Math.max(maxActive, active);
      return new Promise<void>((r) =>
        release.push(() => {
          active--;
          r();
        }),
      );
    };
    const s = startScheduler({ everySeconds: 10, runBatch });
    await vi.advanceTimersByTimeAsync(9_999);
    expect(s.stats().runs).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(s.stats().runs).toBe(1);
    // Three more ticks while the first run is still going: all skipped.
    await vi.advanceTimersByTimeAsync(30_000);
    expect(s.stats()).toMatchObject({ runs: 1, skipped: 3 });
    release.shift()!();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(s.stats()).toMatchObject({ runs: 2, skipped: 3 });
    expect(maxActive).toBe(1);
    const stopped = s.stop();
    release.shift()!();
    await stopped;
    await vi.advanceTimersByTimeAsync(60_000);
    expect(s.stats().runs).toBe(2);
  });

  it('a failed run is counted and the next tick runs again', async () => {
    let n = 0;
    const s = startScheduler({
      everySeconds: 1,
      runBatch: async () => {
        n++;
        if (n === 1) throw new Error('athena down');
      },
    });
    await vi.advanceTimersByTimeAsync(2_000);
    expect(s.stats()).toMatchObject({ runs: 2, failures: 1, lastError: 'athena down' });
    await s.stop();
  });

  it('rejects a non-positive interval', () => {
    expect(() => startScheduler({ everySeconds: 0, runBatch: async () => {} })).toThrow(/positive/);
  });
});
