/**
 * The archive function, on its own Kinesis event source mapping (big batches,
 * ReportBatchItemFailures on, ParallelizationFactor 1): the module-scope
 * clients and configuration, handed to functions/archive/handler.ts once per container.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { clients } from './adapters/clients.ts';
import { type ArchiveHandler, createArchiveHandler } from './archive/handler.ts';
import { loadConfig } from './config.ts';
import { METRIC_SERVICES, METRICS_NAMESPACE, SERVICE_NAMES } from './contract/telemetry.ts';

// test/simulation/harness.ts builds its handlers from the entry modules.
export { createArchiveHandler } from './archive/handler.ts';

const logger = new Logger({ serviceName: SERVICE_NAMES.archive });
const metrics = new Metrics({ namespace: METRICS_NAMESPACE, serviceName: METRIC_SERVICES.archive });
const config = loadConfig();
const aws = clients();

/** The Lambda entry point: clients and configuration live at module scope. */
export const handler: ArchiveHandler = createArchiveHandler({
  s3: aws.s3,
  ddb: aws.dynamodb,
  // Getters: names come from the environment, read on first use.
  get rawBucket() {
    return config.buckets.raw;
  },
  get failureBucket() {
    return config.buckets.failures;
  },
  get controlTable() {
    return config.tables.control;
  },
  logger,
  metrics,
});
