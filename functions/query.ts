/** GET /views, GET /views/{name}, GET /status: the Lambda entry point (the logic is functions/api/query.ts). */
import { Logger } from '@aws-lambda-powertools/logger';
import { clients } from './adapters/clients.ts';
import type { ApiHandler } from './api/http.ts';
import { createQueryHandler, type QueryDeps } from './api/query.ts';
import { exactDocClient } from './api/read-view.ts';
import { type Config, loadConfig } from './config.ts';
import { SERVICE_NAMES } from './contract/telemetry.ts';

// test/simulation builds its query handler from this module.
export { createQueryHandler, type QueryDeps };

const logger = new Logger({ serviceName: SERVICE_NAMES.query });
const config: Config = loadConfig();
const doc = exactDocClient(clients().dynamodb);

export const handler: ApiHandler = createQueryHandler({
  doc,
  get tables() {
    return { speed: config.tables.speed, batchViews: config.tables.batchViews, control: config.tables.control };
  },
  views: config.views,
  settings: config.settings,
  logger,
});
