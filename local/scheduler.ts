/**
 * The local stand-in for EventBridge Scheduler: calls `runBatch()` every
 * `everySeconds`, never two runs at once (a tick that finds a run still going
 * is skipped, as a Step Functions run guarded by the batch lock would be).
 */
import type { LogSink } from '../functions/adapters/log.ts';

export interface SchedulerStats {
  runs: number;
  skipped: number;
  failures: number;
  lastStartedAt?: string;
  lastError?: string;
}

export interface Scheduler {
  stats(): SchedulerStats;
  /** Stops ticking and waits for a run in progress. */
  stop(): Promise<void>;
}

export interface SchedulerOptions {
  readonly everySeconds: number;
  readonly runBatch: () => Promise<unknown>;
  readonly logger?: Pick<LogSink, 'info' | 'warn'>;
}

export function startScheduler(opts: SchedulerOptions): Scheduler {
  if (!(opts.everySeconds > 0)) throw new RangeError(`everySeconds must be positive, received ${opts.everySeconds}`);
  const stats: SchedulerStats = { runs: 0, skipped: 0, failures: 0 };
  let running: Promise<void> | undefined;
  const tick = () => {
    if (running) {
      stats.skipped++;
      opts.logger?.info('scheduler: previous batch run still going, skipping this tick');
      return;
    }
    stats.runs++;
    stats.lastStartedAt = new Date().toISOString();
    running = Promise.resolve()
      .then(() => opts.runBatch())
      .then(
        () => undefined,
        (e: unknown) => {
          stats.failures++;
          stats.lastError = e instanceof Error ? e.message : String(e);
          opts.logger?.warn('scheduler: batch run failed', e);
        },
      )
      .finally(() => {
        running = undefined;
      });
  };
  const timer = setInterval(tick, opts.everySeconds * 1000);
  return {
    stats: () => ({ ...stats }),
    stop: async () => {
      clearInterval(timer);
      await running;
    },
  };
}
