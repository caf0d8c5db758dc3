/**
 * What the handlers publish and what the deployed alarms and dashboard read
 * (lib/monitoring.ts): the CloudWatch namespace, the `service` dimension and
 * metric names of each publishing handler, and the Powertools service name of
 * every handler. Deployed alarms, dashboards and log queries match these
 * strings, so they are part of the contract: the keys follow the glossary
 * (docs/architecture.md), the values never change.
 */
import type { HandlerName } from './routes.ts';

/** Namespace of every custom metric (Powertools Metrics `namespace`, `POWERTOOLS_METRICS_NAMESPACE`). */
export const METRICS_NAMESPACE = 'Tandem';

/** The dimension Powertools Metrics adds to every metric from its `serviceName`. */
export const SERVICE_DIMENSION = 'service';

/**
 * Powertools service name of each handler: the `service` key of its log lines
 * and its `POWERTOOLS_SERVICE_NAME` (lib/function.ts). Handlers also pass it
 * to their Logger, because the local cloud runs every handler in one process.
 */
export const SERVICE_NAMES = {
  ingest: 'tandem-ingest',
  query: 'tandem-query',
  batchApi: 'tandem-batch-api',
  health: 'tandem-health',
  speed: 'tandem-speed',
  archive: 'tandem-archive',
  batchTask: 'tandem-batch',
  authorizer: 'tandem-authorizer',
} as const satisfies Record<HandlerName, string>;

/** The `service` dimension of each publishing handler's metrics (Powertools Metrics `serviceName`). */
export const METRIC_SERVICES = {
  ingest: 'ingest',
  speed: 'speed',
  archive: 'archive',
  batchTask: 'batch',
} as const satisfies Partial<Record<HandlerName, string>>;

/** Metric names of functions/ingest.ts (Count, only when non-zero, per request). */
export const INGEST_METRICS = {
  eventsAccepted: 'EventsAccepted',
  eventsRejected: 'EventsRejected',
  eventsNotStored: 'EventsNotStored',
  putRecordsResent: 'PutRecordsResent',
} as const;

/** Metric names of the speed handler (per batch). */
export const SPEED_METRICS = {
  recordsIn: 'RecordsIn',
  duplicatesDropped: 'DuplicatesDropped',
  poisonRecords: 'PoisonRecords',
  // "Delta" is the speed item's former name; the deployed metric keeps it.
  speedItemsWritten: 'DeltaItemsWritten',
  speedItemsSkipped: 'DeltaItemsSkipped',
  conditionalCheckConflicts: 'ConditionalCheckConflicts',
  repairs: 'Repairs',
  dedupRequests: 'DedupRequests',
  batchAge: 'BatchAge',
  failedBatches: 'FailedBatches',
} as const;

/** Metric names of the archive handler (per batch). */
export const ARCHIVE_METRICS = {
  recordsIn: 'RecordsIn',
  recordsArchived: 'RecordsArchived',
  objectsWritten: 'ObjectsWritten',
  bytesWritten: 'BytesWritten',
  poisonRecords: 'PoisonRecords',
  batchAge: 'BatchAge',
  failedBatches: 'FailedBatches',
} as const;

/** Metric names of the batch-task handler. */
export const BATCH_METRICS = {
  /** Seconds since the published cutoff, after plan, publish and fail (the cutoff-age alarm). */
  cutoffAge: 'BatchCutoffAge',
  viewRows: 'BatchViewRows',
  viewSqlTime: 'BatchViewSqlTime',
  viewLoadTime: 'BatchViewLoadTime',
  runsFailed: 'BatchRunsFailed',
} as const;
