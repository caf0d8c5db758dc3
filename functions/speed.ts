/**
 * The speed function, on the Kinesis event source mapping (ReportBatchItemFailures
 * on, ParallelizationFactor 1): the module-scope clients, configuration and
 * caches, handed to functions/speed/handler.ts once per container.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { clients } from './adapters/clients.ts';
import { loadConfig } from './config.ts';
import { METRIC_SERVICES, METRICS_NAMESPACE, SERVICE_NAMES } from './contract/telemetry.ts';
import { ItemCache } from './speed/apply.ts';
import { createSpeedHandler, type SpeedHandler } from './speed/handler.ts';
import { OutsideCopies } from './speed/outside.ts';

// test/simulation/harness.ts builds its handlers from the entry modules.
export { createSpeedHandler } from './speed/handler.ts';

const logger = new Logger({ serviceName: SERVICE_NAMES.speed });
const metrics = new Metrics({ namespace: METRICS_NAMESPACE, serviceName: METRIC_SERVICES.speed });
const config = loadConfig();
const aws = clients();

/** The Lambda entry point: clients, configuration and the caches live at module scope. */
export const handler: SpeedHandler = createSpeedHandler({
  ddb: aws.dynamodb,
  s3: aws.s3,
  get tables() {
    return { speed: config.tables.speed, dedup: config.tables.dedup, control: config.tables.control };
  },
  get failureBucket() {
    return config.buckets.failures;
  },
  views: config.views,
  settings: config.settings,
  cache: new ItemCache(),
  outside: new OutsideCopies(),
  logger,
  metrics,
});
