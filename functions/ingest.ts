/** POST /events: the Lambda entry point (the logic is functions/api/ingest.ts). */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { clients } from './adapters/clients.ts';
import type { ApiHandler } from './api/http.ts';
import { createIngestHandler } from './api/ingest.ts';
import { type Config, loadConfig } from './config.ts';
import { METRIC_SERVICES, METRICS_NAMESPACE, SERVICE_NAMES } from './contract/telemetry.ts';

// test/simulation builds its ingest from this module.
export { createIngestHandler };

const logger = new Logger({ serviceName: SERVICE_NAMES.ingest });
const metrics = new Metrics({ namespace: METRICS_NAMESPACE, serviceName: METRIC_SERVICES.ingest });
const config: Config = loadConfig();

/** Module-scope clients and views, as Powertools examples do. */
export const handler: ApiHandler = createIngestHandler({
  kinesis: clients().kinesis,
  get streamName() {
    return config.streamName;
  },
  views: config.views,
  logger,
  metrics,
});
