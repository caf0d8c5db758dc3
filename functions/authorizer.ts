/** The API Gateway REQUEST authorizer: the Lambda entry point (the logic is functions/api/authorizer.ts). */
import { Logger } from '@aws-lambda-powertools/logger';
import { clients } from './adapters/clients.ts';
import { type Authorizer, createAuthorizer } from './api/authorizer.ts';
import { parseKeyHashes } from './api/keys.ts';
import { SERVICE_NAMES } from './contract/telemetry.ts';
import { SETTINGS_ENV, TABLES } from './resources.ts';

const logger = new Logger({ serviceName: SERVICE_NAMES.authorizer });
export const handler: Authorizer = createAuthorizer({
  doc: clients().doc,
  controlTable: () => process.env[TABLES.control.env] || undefined,
  envHashes: parseKeyHashes(process.env[SETTINGS_ENV.apiKeyHashes]),
  logger,
});
