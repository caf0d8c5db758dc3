/**
 * The local cloud's discovery files: what a running `tandem local` leaves in its
 * data directory so the CLI (`tandem status`, `tandem keys`, every command's
 * target) finds it whatever ports it got. The writer (local/cloud.ts) and the
 * readers (bin/) share this one module, so bin/ imports local/ and never the
 * other way round.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

type Env = Readonly<Record<string, string | undefined>>;

/** The local cloud's default data directory (`tandem local --data-dir`). */
export const DEFAULT_DATA_DIR = '.tandem';
/** File in the data directory where the local cloud keeps the API key it generated or was given. */
export const API_KEY_FILE = 'api-key';
/** File in the data directory where a running local cloud says where it listens (removed on a clean stop). */
export const ENDPOINTS_FILE = 'endpoints.json';

/** What a running local cloud writes to `<data dir>/endpoints.json`. */
export interface LocalEndpoints {
  readonly pid: number;
  readonly api: string;
  readonly kinesis: string;
  readonly dynamodb: string;
  readonly s3: string;
}

/** Writes `<dataDir>/endpoints.json` and returns its path (the local cloud removes it on a clean stop). */
export function writeLocalEndpoints(dataDir: string, endpoints: LocalEndpoints): string {
  const file = join(dataDir, ENDPOINTS_FILE);
  writeFileSync(file, `${JSON.stringify(endpoints, null, 2)}\n`);
  return file;
}

/**
 * The endpoints of the local cloud running on this data directory, if one is:
 * a file left by a local cloud that was killed (its pid gone) is ignored.
 */
export function readLocalEndpoints(dataDir: string | undefined, env: Env = process.env, cwd = process.cwd()): LocalEndpoints | undefined {
  const file = join(resolve(cwd, dataDir ?? env.TANDEM_DATA_DIR ?? DEFAULT_DATA_DIR), ENDPOINTS_FILE);
  try {
    const e = JSON.parse(readFileSync(file, 'utf8')) as LocalEndpoints;
    process.kill(e.pid, 0);
    return typeof e.api === 'string' && typeof e.dynamodb === 'string' ? e : undefined;
  } catch {
    return undefined;
  }
}
