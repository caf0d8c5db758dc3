/**
 * POST /batch/runs, GET /batch/runs/{id}, POST /batch/rollback: the Lambda entry
 * point. HTTP is functions/api/batch.ts's, the run control functions/batch/runs.ts's;
 * this module wires the two (the only place that may import both).
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { clients } from './adapters/clients.ts';
import { createBatchRunsHandler } from './api/batch.ts';
import type { ApiHandler } from './api/http.ts';
import { type BatchApiDeps, batchRuns } from './batch/runs.ts';
import { loadConfig } from './config.ts';
import { SERVICE_NAMES } from './contract/telemetry.ts';

/** The batch routes over a deployment's clients and configuration, read per request (tests and test/simulation pass their own). */
export function createBatchApiHandler(deps: () => BatchApiDeps, logger: Logger): ApiHandler {
  return createBatchRunsHandler(() => batchRuns(deps(), logger), logger);
}

const logger = new Logger({ serviceName: SERVICE_NAMES.batchApi });
let deps: BatchApiDeps | undefined;

export const handler: ApiHandler = createBatchApiHandler(() => {
  deps ??= { clients: clients(), config: loadConfig() };
  return deps;
}, logger);
