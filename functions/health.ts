/** GET /health: the Lambda entry point (functions/api/health.ts). */
import { Logger } from '@aws-lambda-powertools/logger';
import { createHealthHandler } from './api/health.ts';
import type { ApiHandler } from './api/http.ts';
import { SERVICE_NAMES } from './contract/telemetry.ts';

const logger = new Logger({ serviceName: SERVICE_NAMES.health });

export const handler: ApiHandler = createHealthHandler(logger);
