/**
 * API Gateway REQUEST authorizer (AWS only; the local HTTP server checks its
 * own key): `x-api-key` is hashed (SHA-256) and looked up among the control
 * table's `apikey / <hash>` items (created and revoked with `tandem keys`,
 * no deploy) and the hashes in TANDEM_API_KEY_HASHES. No key -> 401
 * ("Unauthorized"), unknown or revoked key -> Deny -> 403. The principal is the
 * key's name. Keys are never logged; not even their hashes.
 */
import type { Logger } from '@aws-lambda-powertools/logger';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { APIGatewayAuthorizerResult, APIGatewayRequestAuthorizerEvent } from 'aws-lambda';
import { lookupKey, matchEnvKey } from './keys.ts';

export interface AuthorizerDeps {
  readonly doc: Pick<DynamoDBDocumentClient, 'send'>;
  /** The control table (read lazily: a deployment may rely on env hashes only). */
  readonly controlTable: () => string | undefined;
  readonly envHashes: readonly { name: string; hash: string }[];
  readonly logger: Logger;
}

export type Authorizer = (event: APIGatewayRequestAuthorizerEvent) => Promise<APIGatewayAuthorizerResult>;

/**
 * The policy's resource: every method of the API's stage, not just the one
 * called, because API Gateway caches the answer per key (identity source
 * `x-api-key`) and reuses it for the other routes.
 */
export function apiWildcard(methodArn: string): string {
  // arn:aws:execute-api:<region>:<account>:<api id>/<stage>/<method>/<path...>
  const [api, stage] = methodArn.split('/');
  return api?.startsWith('arn:') && stage ? `${api}/${stage}/*` : methodArn;
}

export function policy(principalId: string, effect: 'Allow' | 'Deny', methodArn: string): APIGatewayAuthorizerResult {
  return {
    principalId,
    policyDocument: {
      Version: '2012-10-17',
      Statement: [{ Action: 'execute-api:Invoke', Effect: effect, Resource: apiWildcard(methodArn) }],
    },
    ...(effect === 'Allow' && { context: { keyName: principalId } }),
  };
}

function apiKeyOf(event: APIGatewayRequestAuthorizerEvent): string | undefined {
  for (const [k, v] of Object.entries(event.headers ?? {})) if (k.toLowerCase() === 'x-api-key' && v) return v;
  return undefined;
}

export function createAuthorizer(deps: AuthorizerDeps): Authorizer {
  return async (event) => {
    const key = apiKeyOf(event);
    // API Gateway answers 401 for exactly this error message.
    if (!key) throw new Error('Unauthorized');
    let name = matchEnvKey(deps.envHashes, key);
    const table = deps.controlTable();
    if (name === undefined && table) name = await lookupKey(deps.doc, table, key);
    if (name === undefined) {
      deps.logger.info('api key refused', { sourceIp: event.requestContext?.identity?.sourceIp, path: event.path });
      return policy('anonymous', 'Deny', event.methodArn);
    }
    return policy(name, 'Allow', event.methodArn);
  };
}
