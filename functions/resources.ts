/**
 * The one description of Tandem's stateful resources: stream, tables (key
 * schemas, TTL attribute), buckets, prefixes, and the environment variables
 * that carry their names to the handlers. `lib/` (CDK) and `local/` (the local
 * cloud) both read it, so the two cannot drift. No aws-cdk-lib import here.
 */

export type KeyType = 'S' | 'N';

export interface TableSpec {
  /** Logical id, also the local physical name suffix. */
  readonly id: string;
  /** Environment variable that carries the physical name to handlers. */
  readonly env: string;
  readonly partitionKey: { readonly name: string; readonly type: KeyType };
  readonly sortKey?: { readonly name: string; readonly type: KeyType };
  /** Attribute holding epoch *seconds* after which an item may be deleted (readers filter too). */
  readonly ttlAttribute?: string;
  readonly description: string;
}

export const TTL_ATTRIBUTE = 'expiresAt';

export const TABLES = {
  speed: {
    id: 'speed',
    env: 'TANDEM_SPEED_TABLE',
    partitionKey: { name: 'pk', type: 'S' },
    sortKey: { name: 'sk', type: 'S' },
    ttlAttribute: TTL_ATTRIBUTE,
    description: 'Speed-layer deltas per view, arrival hour and write shard (see docs/speed-layer.md)',
  },
  dedup: {
    id: 'dedup',
    env: 'TANDEM_DEDUP_TABLE',
    partitionKey: { name: 'id', type: 'S' },
    ttlAttribute: TTL_ATTRIBUTE,
    description: 'Event-id claims of the speed layer: (shard, sequence) of the first copy',
  },
  batchViews: {
    id: 'batch-views',
    env: 'TANDEM_BATCH_VIEWS_TABLE',
    partitionKey: { name: 'pk', type: 'S' },
    sortKey: { name: 'sk', type: 'S' },
    ttlAttribute: TTL_ATTRIBUTE,
    description: 'Batch-view rows per view, version and day',
  },
  control: {
    id: 'control',
    env: 'TANDEM_CONTROL_TABLE',
    partitionKey: { name: 'pk', type: 'S' },
    sortKey: { name: 'sk', type: 'S' },
    ttlAttribute: TTL_ATTRIBUTE,
    description: 'Published pointer, version manifests, archive checkpoints, batch runs and locks',
  },
} as const satisfies Record<string, TableSpec>;

export type TableName = keyof typeof TABLES;

export interface BucketSpec {
  readonly id: string;
  readonly env: string;
  readonly description: string;
}

export const BUCKETS = {
  raw: { id: 'raw', env: 'TANDEM_RAW_BUCKET', description: 'Raw archive: raw/dt=YYYY-MM-DD/hr=HH/<shard>/<firstSeq>-<lastSeq>.json.gz' },
  failures: { id: 'failures', env: 'TANDEM_FAILURE_BUCKET', description: 'On-failure destination of the event source mappings' },
} as const satisfies Record<string, BucketSpec>;

export type BucketName = keyof typeof BUCKETS;

export const STREAM = {
  id: 'events',
  env: 'TANDEM_STREAM_NAME',
  /** Shards of the local stream and of a provisioned stream in AWS. */
  defaultShards: 2,
} as const;

/** Key prefix of raw archive objects (the Glue table's location). */
export const RAW_PREFIX = 'raw/';
/** Key prefix of on-failure records. */
export const FAILURE_PREFIX = 'failures/';

/** Other settings the handlers read from the environment. */
export const SETTINGS_ENV = {
  views: 'TANDEM_VIEWS',
  windowSeconds: 'TANDEM_WINDOW_SECONDS',
  dedupHorizonSeconds: 'TANDEM_DEDUP_HORIZON_SECONDS',
  maxBatchLagSeconds: 'TANDEM_MAX_BATCH_LAG_SECONDS',
  keepVersions: 'TANDEM_KEEP_VERSIONS',
  cutoffMarginSeconds: 'TANDEM_CUTOFF_MARGIN_SECONDS',
  stateMachineArn: 'TANDEM_STATE_MACHINE_ARN',
  batchEngine: 'TANDEM_BATCH_ENGINE',
  athenaWorkgroup: 'TANDEM_ATHENA_WORKGROUP',
  athenaDatabase: 'TANDEM_ATHENA_DATABASE',
  athenaTable: 'TANDEM_ATHENA_TABLE',
  apiKeyHashes: 'TANDEM_API_KEY_HASHES',
  /** `in-function`: the API handlers check `x-api-key` themselves (no authorizer in front; functions/api/key-check.ts). */
  apiAuth: 'TANDEM_API_AUTH',
  /** Local directory where the DuckDB batch engine caches raw objects between runs. */
  stageDir: 'TANDEM_STAGE_DIR',
  corsOrigin: 'TANDEM_CORS_ORIGIN',
} as const;

/** Physical names the local cloud uses (AWS names come from CloudFormation through the env). */
export function localNames(prefix = 'tandem'): Record<string, string> {
  const env: Record<string, string> = { [STREAM.env]: `${prefix}-${STREAM.id}` };
  for (const t of Object.values(TABLES)) env[t.env] = `${prefix}-${t.id}`;
  for (const b of Object.values(BUCKETS)) env[b.env] = `${prefix}-${b.id}`;
  return env;
}
