/**
 * What every handler reads from its environment besides resource names: the
 * views (the same declaration the local cloud uses) and the shared settings,
 * under the variable names of `functions/resources.ts`.
 */
import type { Duration } from 'aws-cdk-lib';
import { DEFAULT_SETTINGS, type Settings, validateSettings } from '../functions/core/settings.ts';
import type { View } from '../functions/core/views.ts';
import { SETTINGS_ENV } from '../functions/resources.ts';

/** The shared settings as CDK props (flat, durations as `Duration`). */
export interface SettingsProps {
  /**
   * Arrival window: cutoffs and speed deltas are aligned to it. Must divide a day.
   *
   * @default Duration.seconds(60)
   */
  readonly window?: Duration;
  /**
   * How long the speed layer remembers event ids for deduplication.
   *
   * @default Duration.days(7)
   */
  readonly dedupHorizon?: Duration;
  /**
   * The longest the published batch cutoff may lag before the lag alarm fires;
   * speed deltas live three times as long (functions/core/settings.ts), so the
   * alarm always comes before uncovered data can expire.
   *
   * @default Duration.hours(6)
   */
  readonly maxBatchLag?: Duration;
  /**
   * Published batch versions kept readable for rollback and in-flight queries.
   *
   * @default 3
   */
  readonly keepVersions?: number;
  /**
   * Safety margin below the archived-through arrival time of every shard.
   *
   * @default Duration.seconds(5)
   */
  readonly cutoffMargin?: Duration;
}

/** Converts and validates the settings props (errors show the value received). */
export function toSettings(p: SettingsProps): Settings {
  const sec = (d: Duration | undefined, fallback: number) => (d === undefined ? fallback : d.toSeconds());
  return validateSettings({
    windowSeconds: sec(p.window, DEFAULT_SETTINGS.windowSeconds),
    dedupHorizonSeconds: sec(p.dedupHorizon, DEFAULT_SETTINGS.dedupHorizonSeconds),
    maxBatchLagSeconds: sec(p.maxBatchLag, DEFAULT_SETTINGS.maxBatchLagSeconds),
    keepVersions: p.keepVersions ?? DEFAULT_SETTINGS.keepVersions,
    cutoffMarginSeconds: sec(p.cutoffMargin, DEFAULT_SETTINGS.cutoffMarginSeconds),
  });
}

/** The environment variables carrying views and settings to every handler. */
export function settingsEnvironment(views: readonly View[], s: Settings): Record<string, string> {
  return {
    [SETTINGS_ENV.views]: JSON.stringify(views),
    [SETTINGS_ENV.windowSeconds]: String(s.windowSeconds),
    [SETTINGS_ENV.dedupHorizonSeconds]: String(s.dedupHorizonSeconds),
    [SETTINGS_ENV.maxBatchLagSeconds]: String(s.maxBatchLagSeconds),
    [SETTINGS_ENV.keepVersions]: String(s.keepVersions),
    [SETTINGS_ENV.cutoffMarginSeconds]: String(s.cutoffMarginSeconds),
  };
}
