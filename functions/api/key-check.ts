/**
 * The API key check, in one place for both ways it runs:
 *
 * - behind the REQUEST authorizer (functions/api/authorizer.ts), which API Gateway calls
 *   before the route's function (the AWS target);
 * - inside the API handlers themselves (`TANDEM_API_AUTH=in-function`), where the gateway
 *   has no Lambda authorizer: LocalStack's free plan neither creates nor invokes one
 *   (docs/deploy.md). The guard of functions/api/http.ts runs it before any routing.
 *
 * Either way `x-api-key` is hashed (SHA-256) and looked up among the hashes of
 * TANDEM_API_KEY_HASHES, then as `apikey / <hash>` in the control table; a revoked key is
 * refused. No key: 401; a key not found or revoked: 403, with the bodies API Gateway's
 * gateway responses give on AWS (lib/ingest-api.ts; a construct test keeps them equal).
 * Keys are never logged, nor their hashes.
 */
import type { Logger } from '@aws-lambda-powertools/logger';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { SETTINGS_ENV, TABLES } from '../resources.ts';
import { lookupKey, matchEnvKey, parseKeyHashes } from './keys.ts';

/** The value of TANDEM_API_AUTH that makes the API handlers check keys themselves. */
export const IN_FUNCTION = 'in-function';

/** The header that carries the key. */
export const KEY_HEADER = 'x-api-key';

/** The 401 answer: no key. The same body as the AWS gateway response `UNAUTHORIZED`. */
export const MISSING_KEY = { statusCode: 401, error: 'the x-api-key header is missing', field: KEY_HEADER } as const;

/** The 403 answer: a key not found or revoked. The same body as the AWS gateway response `ACCESS_DENIED`. */
export const INVALID_KEY = { statusCode: 403, error: 'the API key is not valid or was revoked', field: KEY_HEADER } as const;

/** An answer that refuses the request: its status and the contract's `{ error, field }` body. */
export type KeyRefusal = typeof MISSING_KEY | typeof INVALID_KEY;

/** The key a request carries, whatever the header's case (API Gateway keeps the client's); undefined when none or empty. */
export function keyOf(headers: Readonly<Record<string, string | undefined>> | null | undefined): string | undefined {
  for (const [k, v] of Object.entries(headers ?? {})) if (k.toLowerCase() === KEY_HEADER && v) return v;
  return undefined;
}

export interface KeyLookupDeps {
  readonly doc: Pick<DynamoDBDocumentClient, 'send'>;
  /** The control table (read lazily: a deployment may rely on env hashes only). */
  readonly controlTable: () => string | undefined;
  readonly envHashes: readonly { name: string; hash: string }[];
}

/**
 * The name of the active key `key`, or undefined (unknown or revoked): env hashes first
 * (no table read), then the control table. What the authorizer and the in-function check share.
 */
export async function resolveKey(deps: KeyLookupDeps, key: string): Promise<string | undefined> {
  const name = matchEnvKey(deps.envHashes, key);
  if (name !== undefined) return name;
  const table = deps.controlTable();
  return table ? lookupKey(deps.doc, table, key) : undefined;
}

export interface KeyCheckDeps extends KeyLookupDeps {
  readonly logger: Logger;
}

/**
 * Checks one request: undefined when it may go on (its requestContext then carries the
 * key's name, as after the authorizer), else the refusal to answer with (401 or 403).
 */
export type KeyCheck = (event: APIGatewayProxyEvent) => Promise<KeyRefusal | undefined>;

export function createKeyCheck(deps: KeyCheckDeps): KeyCheck {
  return async (event) => {
    const key = keyOf(event.headers);
    if (!key) return MISSING_KEY;
    const name = await resolveKey(deps, key);
    if (name === undefined) {
      deps.logger.info('api key refused', { sourceIp: event.requestContext?.identity?.sourceIp, path: event.path });
      return INVALID_KEY;
    }
    // What API Gateway passes on after the authorizer allowed (principal and context).
    if (event.requestContext) {
      (event.requestContext as { authorizer?: Record<string, unknown> | null }).authorizer = { principalId: name, keyName: name };
    }
    return undefined;
  };
}

type Env = Readonly<Record<string, string | undefined>>;

/**
 * The process's DynamoDB client, loaded on first use: a function without the check (GET /health,
 * every function behind the authorizer) never evaluates the SDK clients for it.
 */
async function defaultDoc(): Promise<Pick<DynamoDBDocumentClient, 'send'>> {
  return (await import('../adapters/clients.ts')).clients().doc;
}

/**
 * The check a handler runs from its environment: one when TANDEM_API_AUTH is `in-function`
 * (set by lib/ingest-api.ts on every function of a keyed route under ApiAuth.IN_FUNCTION),
 * else none (behind the authorizer, or in the local cloud, whose HTTP server checks keys).
 * Key hashes are validated here, at the handler's cold start, as the authorizer's are.
 */
export function keyCheckFromEnv(
  logger: Logger,
  env: Env = process.env,
  /** Called on each keyed request: return a shared client. */
  doc: () => Promise<Pick<DynamoDBDocumentClient, 'send'>> = defaultDoc,
): KeyCheck | undefined {
  const mode = env[SETTINGS_ENV.apiAuth];
  if (mode === undefined || mode === '') return undefined;
  if (mode !== IN_FUNCTION) throw new Error(`environment variable ${SETTINGS_ENV.apiAuth} must be "${IN_FUNCTION}", received "${mode}"`);
  const envHashes = parseKeyHashes(env[SETTINGS_ENV.apiKeyHashes]);
  return createKeyCheck({
    // The client is asked for on each keyed request (clients() makes it once), not at import.
    doc: { send: (async (command: unknown) => (await doc()).send(command as never)) as DynamoDBDocumentClient['send'] },
    controlTable: () => env[TABLES.control.env] || undefined,
    envHashes,
    logger,
  });
}
