/**
 * API Gateway REQUEST authorizer (the AWS target; the local HTTP server checks its
 * own key, and where the gateway has no authorizer the handlers check it themselves):
 * `x-api-key` is hashed (SHA-256) and looked up among the hashes in
 * TANDEM_API_KEY_HASHES and the control table's `apikey / <hash>` items (created and
 * revoked with `tandem keys`, no deploy), by `resolveKey` of functions/api/key-check.ts,
 * which the in-function check shares. No key -> 401 ("Unauthorized"), unknown or
 * revoked key -> Deny -> 403. The principal is the key's name. Keys are never logged;
 * not even their hashes.
 */
import type { Logger } from '@aws-lambda-powertools/logger';
import type { APIGatewayAuthorizerResult, APIGatewayRequestAuthorizerEvent } from 'aws-lambda';
import { type KeyLookupDeps, keyOf, resolveKey } from './key-check.ts';

export interface AuthorizerDeps extends KeyLookupDeps {
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

export function createAuthorizer(deps: AuthorizerDeps): Authorizer {
  return async (event) => {
    const key = keyOf(event.headers);
    // API Gateway answers 401 for exactly this error message.
    if (!key) throw new Error('Unauthorized');
    const name = await resolveKey(deps, key);
    if (name === undefined) {
      deps.logger.info('api key refused', { sourceIp: event.requestContext?.identity?.sourceIp, path: event.path });
      return policy('anonymous', 'Deny', event.methodArn);
    }
    return policy(name, 'Allow', event.methodArn);
  };
}
