/**
 * The Lambda that the batch state machine (functions/contract/state-machine.ts)
 * calls for each step: the module-scope logger and metrics, and the batch
 * context (clients, configuration, engine) built on first use, handed to
 * functions/batch/task.ts.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { clients } from './adapters/clients.ts';
import { batchContext } from './batch/pipeline.ts';
import type { BatchContext } from './batch/steps.ts';
import { type BatchTaskHandler, createBatchTaskHandler } from './batch/task.ts';
import { loadConfig } from './config.ts';
import { METRIC_SERVICES, METRICS_NAMESPACE, SERVICE_NAMES } from './contract/telemetry.ts';

const logger = new Logger({ serviceName: SERVICE_NAMES.batchTask });
const metrics = new Metrics({ namespace: METRICS_NAMESPACE, serviceName: METRIC_SERVICES.batchTask });
let ctx: BatchContext | undefined;

/** The Lambda entry point. */
export const handler: BatchTaskHandler = createBatchTaskHandler(() => (ctx ??= batchContext(clients(), loadConfig())), logger, metrics);
