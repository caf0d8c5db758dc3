/**
 * Handler configuration from the environment, validated once per cold start.
 * The CDK stacks and the local cloud set these variables (names in resources.ts).
 */
import { DEMO_VIEWS } from './core/demo-views.ts';
import { DEFAULT_SETTINGS, type Settings, validateSettings } from './core/settings.ts';
import { parseViewsJson, type View } from './core/views.ts';
import { BUCKETS, type BucketName, SETTINGS_ENV, STREAM, TABLES, type TableName } from './resources.ts';

export interface Config {
  readonly streamName: string;
  readonly tables: Readonly<Record<TableName, string>>;
  readonly buckets: Readonly<Record<BucketName, string>>;
  readonly views: readonly View[];
  readonly settings: Settings;
}

type Env = Readonly<Record<string, string | undefined>>;

function intSetting(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n)) throw new Error(`environment variable ${name} must be a whole number, received "${raw}"`);
  return n;
}

/** Reads the configuration; names that are not set are reported only when `need`ed. */
export function loadConfig(env: Env = process.env): Config {
  const named = <T extends string>(specs: Record<T, { env: string }>) =>
    new Proxy({} as Record<T, string>, {
      get(_t, key: string) {
        const spec = specs[key as T];
        if (!spec) return undefined;
        const v = env[spec.env];
        if (!v) throw new Error(`environment variable ${spec.env} is not set`);
        return v;
      },
    });
  const settings = validateSettings({
    windowSeconds: intSetting(env, SETTINGS_ENV.windowSeconds, DEFAULT_SETTINGS.windowSeconds),
    dedupHorizonSeconds: intSetting(env, SETTINGS_ENV.dedupHorizonSeconds, DEFAULT_SETTINGS.dedupHorizonSeconds),
    maxBatchLagSeconds: intSetting(env, SETTINGS_ENV.maxBatchLagSeconds, DEFAULT_SETTINGS.maxBatchLagSeconds),
    keepVersions: intSetting(env, SETTINGS_ENV.keepVersions, DEFAULT_SETTINGS.keepVersions),
    cutoffMarginSeconds: intSetting(env, SETTINGS_ENV.cutoffMarginSeconds, DEFAULT_SETTINGS.cutoffMarginSeconds),
  });
  const viewsJson = env[SETTINGS_ENV.views];
  return {
    get streamName() {
      const v = env[STREAM.env];
      if (!v) throw new Error(`environment variable ${STREAM.env} is not set`);
      return v;
    },
    tables: named(TABLES),
    buckets: named(BUCKETS),
    views: viewsJson ? parseViewsJson(viewsJson) : DEMO_VIEWS,
    settings,
  };
}
